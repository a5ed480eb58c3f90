//! The fault-injection seam: the writer thread asks it before each group commit, so a
//! test can make the next commits fail as RocksDB does on an I/O error, or hold the
//! writer so that requests queue behind a group. Nothing in the server arms it (no
//! configuration key, no endpoint); tests reach it through [`super::Store::faults`]
//! (e.g. `harness.store().faults()`). Unarmed it costs one relaxed atomic load per
//! group commit.
//!
//! What an injected fault means: RocksDB inserts a synced batch into the memtable only
//! after its WAL record is written *and* synced, so a failed write or sync leaves the
//! batch invisible and returns an error. The seam fails the group commit at exactly
//! that point, before `DB::write`: the writer must then answer every request of the
//! group with the error and change nothing (count, outbox sequence, metrics). With
//! [`Times::UntilCleared`] it also plays RocksDB's background error after a failed
//! sync, when every later write fails until the database is resumed; [`Faults::clear`]
//! is the resume.

use super::StoreError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Where the I/O fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Appending the group's batch to the WAL.
    Write,
    /// Syncing the WAL (only a store with `sync` on syncs; otherwise it never fires).
    Sync,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Fault::Write => "injected I/O error writing the WAL",
            Fault::Sync => "injected I/O error syncing the WAL",
        })
    }
}

/// How many group commits an armed fault fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Times {
    /// The next `n` commits that reach the fault's point.
    Next(u64),
    /// Every commit until [`Faults::clear`].
    UntilCleared,
}

#[derive(Default)]
struct State {
    fault: Option<(Fault, Times)>,
    injected: u64,
    /// The writer must wait before its next group.
    hold: bool,
    /// The writer must wait at the fault point (its group built, not committed).
    hold_commit: bool,
    /// The writer is waiting.
    held: bool,
}

/// The seam one store's writer thread consults. See the module documentation.
#[derive(Default)]
pub struct Faults {
    /// Any fault or hold armed (the writer's fast path).
    armed: AtomicBool,
    state: Mutex<State>,
    changed: Condvar,
}

impl Faults {
    /// Fails the group commits `times` says at `fault`'s point.
    pub fn fail(&self, fault: Fault, times: Times) {
        self.update(|s| s.fault = Some((fault, times)));
    }

    /// Stops failing and releases a hold: the store works as before.
    pub fn clear(&self) {
        self.update(|s| {
            s.fault = None;
            s.hold = false;
            s.hold_commit = false;
        });
    }

    /// Faults injected so far (each failed one group commit).
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    /// Makes the writer wait before its next group commit (after it has taken the
    /// group from the queue) until the returned [`Hold`] is released or dropped.
    pub fn hold_writer(&self) -> Hold<'_> {
        self.update(|s| s.hold = true);
        Hold { faults: self }
    }

    /// The writer, having taken a group: waits while held.
    pub(super) fn before_group(&self) {
        if !self.armed.load(Ordering::Relaxed) {
            return;
        }
        drop(self.park_while(|s| s.hold));
    }

    /// Parks the writer (saying so in `held`) while `hold` says; answers the state,
    /// locked, once it no longer does.
    fn park_while(&self, hold: impl Fn(&State) -> bool) -> MutexGuard<'_, State> {
        let mut s = self.lock();
        while hold(&s) {
            s.held = true;
            self.changed.notify_all();
            s = self
                .changed
                .wait(s)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        s.held = false;
        s
    }

    /// Like [`Faults::hold_writer`], but the writer parks at the fault point: after
    /// it has built the group (on PostgreSQL: with its transaction open, the counter
    /// row locked and the outbox numbers taken), before the commit.
    pub fn hold_writer_before_commit(&self) -> Hold<'_> {
        self.update(|s| s.hold_commit = true);
        Hold { faults: self }
    }

    /// The writer, about to write a group's batch (`sync`: the WAL will be synced):
    /// waits while held there, then the injected error, if a fault is armed for this
    /// point.
    pub(super) fn before_write(&self, sync: bool) -> Result<(), StoreError> {
        if !self.armed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut s = self.park_while(|s| s.hold_commit);
        let Some((fault, times)) = s.fault else {
            return Ok(());
        };
        if fault == Fault::Sync && !sync {
            return Ok(());
        }
        s.fault = match times {
            Times::Next(n) if n <= 1 => None,
            Times::Next(n) => Some((fault, Times::Next(n - 1))),
            Times::UntilCleared => Some((fault, times)),
        };
        s.injected += 1;
        self.rearm(&s);
        Err(StoreError::Injected(fault))
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        let mut s = self.lock();
        f(&mut s);
        self.rearm(&s);
        self.changed.notify_all();
    }

    fn rearm(&self, s: &State) {
        self.armed.store(
            s.fault.is_some() || s.hold || s.hold_commit,
            Ordering::Relaxed,
        );
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A hold on the writer (see [`Faults::hold_writer`]); released when dropped.
pub struct Hold<'a> {
    faults: &'a Faults,
}

impl Hold<'_> {
    /// Blocks until the writer waits at the hold (it has taken a group), or `limit`
    /// passes; returns whether it waits.
    pub fn wait_until_held(&self, limit: Duration) -> bool {
        let s = self.faults.lock();
        let (s, _) = self
            .faults
            .changed
            .wait_timeout_while(s, limit, |s| !s.held)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.held
    }

    /// Lets the writer go on.
    pub fn release(self) {}
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.faults.update(|s| {
            s.hold = false;
            s.hold_commit = false;
        });
    }
}
