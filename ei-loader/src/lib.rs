//! `ei-loader`: plans, runs and verifies a grundladdning (the initial bulk load of a
//! source system's engagements into the index), contract §6.
//!
//! - [`input`]: CSV and JSON-lines records, streamed;
//! - [`check`]: the server's own rules per record, duplicates across the load
//!   ([`dedup`]), counts per source system and data controller;
//! - [`plan`]: the order (TOML plan file, order form, 14-day rule, estimate);
//! - [`run`] and [`worker`]: the throttled, windowed, resumable load, with its
//!   [`journal`], retries and reject file ([`rejects`]); the producer hands the
//!   workers [`post`]s; both stop with a [`run_error`]; [`progress`] draws it;
//! - [`verify`]: the care provider's spot check (stickprov) with FindContent;
//! - [`probe`]: the platform's connectivity test (förbindelseprov);
//! - [`client`]: the two services over HTTP; [`config`]: environment profiles;
//! - [`clock`] and [`window`]: injectable time, Swedish local time, load windows;
//! - [`args`] and [`cli`]: the command line (clap arguments → validated options → the
//!   commands).

pub mod args;
pub mod check;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod dedup;
pub mod input;
pub mod journal;
pub mod plan;
pub mod post;
pub mod probe;
pub mod progress;
pub mod rejects;
pub mod run;
pub mod run_error;
pub mod verify;
pub mod window;
pub mod worker;
