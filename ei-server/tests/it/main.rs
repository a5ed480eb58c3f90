//! ei-server's integration tests, one binary (RocksDB is linked once): the server
//! in-process on `127.0.0.1:0` through [`ei_server::harness`], a module per area.

mod access;
mod audit;
mod common;
mod data;
mod faults;
mod frontdoor;
mod fuzz_samples;
mod http;
mod model;
mod notify;
mod on_postgres;
mod ops;
mod pki;
mod service;
mod tls;
mod write_lock;
