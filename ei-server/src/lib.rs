//! The engagement index (Engagemangsindex).
//!
//! Always available (no RocksDB, no runtime; what `ei-loader` and `capacity` reuse
//! with `default-features = false`):
//! - [`model`]: the engagement, its key, the contract timestamp;
//! - [`operation`]: which operation a request is (Update, ProcessNotification,
//!   FindContent), end to end;
//! - [`records`]: posts as CSV rows (the header and row readers ei-loader and
//!   `ei-server import` share);
//! - [`rules`]: every validation rule and the error → wire table;
//! - [`apply`]: what a valid request does to the index (pure);
//! - [`codec`]: the SOAP 1.1 reader and writer (`quick_xml` only here);
//! - [`clock`]: Swedish local time;
//! - [`wsdl`]: the embedded WSDL/XSDs and endpoint paths;
//! - [`metrics`]: counters and histograms in Prometheus text.
//!
//! With the `server` feature (default): [`access`] (who is calling, who may call
//! and write what), [`store`] (RocksDB, group commit, outbox),
//! [`notify`] (subscribers, delivery, admin endpoints),
//! [`service`] (the three services), [`http`] (axum), [`scrape`] (the gauges read
//! at scrape time: process, filesystem, RocksDB internals), [`systemd`] (sd_notify
//! READY/STOPPING/WATCHDOG), [`priority`] (reads first: write requests on niced
//! threads), [`ops_admin`] (write lock, backup, statistics on the
//! admin listener), [`config`] and [`server`] (`run(listener, config, shutdown)`),
//! [`transfer`] (export, import and the Java index's MySQL export), [`cli`] (the
//! `ei-server` command line and its subcommands) and [`harness`] (the server
//! in-process for tests, benchmarks and `capacity --embedded`).
//!
//! Layers flow one way: http → service → (codec, rules, apply) → store.

pub mod apply;
pub mod clock;
pub mod codec;
pub mod metrics;
pub mod model;
pub mod operation;
pub mod records;
pub mod rules;
pub mod wsdl;

#[cfg(feature = "server")]
pub mod access;
#[cfg(feature = "server")]
pub mod admin;
#[cfg(feature = "server")]
pub mod audit;
#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod harness;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod notify;
#[cfg(feature = "server")]
pub mod ops_admin;
#[cfg(feature = "server")]
pub mod priority;
#[cfg(feature = "server")]
pub mod scrape;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod systemd;
#[cfg(feature = "server")]
pub mod tls;
#[cfg(feature = "server")]
pub mod transfer;
