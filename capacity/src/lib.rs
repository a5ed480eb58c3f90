//! capacity: turns a förstudie's capacity tables into load against an engagement
//! index and reports whether it holds, with what latency and headroom, and how long
//! the grundladdning will take.
//!
//! - [`file`]: the capacity file (TOML) → a checked [`file::CapacityPlan`];
//! - [`cli`]: command-line arguments → a validated [`run::Settings`], exit codes;
//! - [`target`]: a server URL, or ei-server embedded in-process (feature `embedded`);
//! - [`workload`]: the SOAP bodies, built with ei-server's rules and codec;
//! - [`client`]: one call and the judgement of its reply;
//! - [`loadgen`]: the open-model generator (latency from the schedule);
//! - [`stats`]: HDR histograms and counts;
//! - [`seed`]: pre-loading residents × engagements;
//! - [`grund`]: the grundladdning simulation and projection;
//! - [`run`]: the phases in order and the verdicts;
//! - [`report`]: the report's numbers, as Markdown, JSON and SVG, and where they go
//!   ([`report::publish`]: `--out` files, stdout, the summary line);
//! - [`progress`]: progress on stderr (terminals only).

pub mod cli;
pub mod client;
pub mod file;
pub mod grund;
pub mod loadgen;
pub mod progress;
pub mod report;
pub mod run;
pub mod seed;
pub mod stats;
pub mod target;
pub mod workload;
