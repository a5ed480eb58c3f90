//! A record on its way from the producer to a worker: where it came from,
//! validated and as read.

use crate::input::Location;
use ei_server::model::{RawTransaction, Transaction};

/// One record on its way: where it came from, validated and as read.
#[derive(Clone, Debug)]
pub struct Post {
    pub seq: u64,
    pub at: Location,
    pub tx: Transaction,
    pub raw: RawTransaction,
}
