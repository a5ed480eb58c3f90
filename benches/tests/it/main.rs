//! ei-benches' integration tests, one binary: a smoke run of the load generator.

mod smoke;
