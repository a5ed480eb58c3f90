//! ei-loader's integration tests, one binary (RocksDB is linked once): the real index
//! in-process, the loader as a library and as its built binary, a module per area.

mod cli;
mod common;
mod rejects;
mod resume;
mod server_down;
mod throttle;
mod tls;
mod verify_probe;
mod windows;
