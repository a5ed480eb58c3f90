//! The end-to-end tests, one binary: the built `ei-server` run as a process with a
//! temp data dir (crash, signal, CLI and real-client tests), a module per area.

mod data_cli;
mod durability;
mod failover;
mod notify_chaos;
mod notify_crash;
mod reads_first;
mod shutdown;
mod soap_client;
mod supervision;
