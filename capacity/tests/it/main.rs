//! capacity's integration tests, one binary (RocksDB is linked once): the generator
//! and whole runs against the embedded server and loopback stubs, and the built
//! binary, a module per area.

mod cli;
mod common;
mod loadgen;
mod run;
