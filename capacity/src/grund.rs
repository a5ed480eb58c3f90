//! The grundladdning simulation: the ordered load as the source system will run it
//! (`concurrent_calls` callers, each sending `posts_per_call` new posts, waiting for
//! the answer, then pausing `pause_ms`), for a limited window, and the projection of
//! how long the whole load takes at the rate reached. This is a closed model on
//! purpose: it is how the load is specified. The caller runs normal flow alongside.

use crate::client::{CallError, Client};
use crate::file::GrundRow;
use crate::progress::Progress;
use crate::stats::Tally;
use crate::workload::{Bodies, Post, GRUND_RESIDENT_BASE};
use ei_server::operation::WriteOperation;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// What the simulation measured.
#[derive(Clone, Debug)]
pub struct GrundOutcome {
    pub calls: Tally,
    pub posts_acknowledged: u64,
    /// The window, or until the last answer when that came later.
    pub elapsed: Duration,
    /// Whether every post of the load was sent within the window.
    pub finished: bool,
}

impl GrundOutcome {
    /// Posts acknowledged per second within the window (edge effects included: a
    /// window of a few cycles over- or underestimates; see [`Self::steady_rate`]).
    pub fn posts_per_second(&self) -> f64 {
        self.posts_acknowledged as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The rate the load keeps up over its whole length: each of the concurrent
    /// callers completes one call per (mean call latency + pause), and only the
    /// successful share counts. `None` when no call succeeded.
    pub fn steady_rate(&self, row: &GrundRow) -> Option<f64> {
        let count = self.calls.count();
        if self.calls.ok == 0 || count == 0 {
            return None;
        }
        let cycle = self.calls.latency.mean() / 1e6 + row.pause_ms as f64 / 1000.0;
        let success = self.calls.ok as f64 / count as f64;
        Some(row.concurrent_calls as f64 * row.posts_per_call as f64 * success / cycle)
    }

    /// The whole load's duration: measured when it finished within the window, else
    /// all posts ÷ [`Self::steady_rate`].
    pub fn projected(&self, row: &GrundRow) -> Option<Duration> {
        if self.finished {
            return Some(self.elapsed);
        }
        let rate = self.steady_rate(row)?;
        Some(Duration::from_secs_f64(row.posts as f64 / rate))
    }
}

#[derive(Default)]
struct Shared {
    tally: Tally,
    acked: u64,
    last_answer: Duration,
}

/// Runs `row`'s load against `client` for `window`.
pub async fn simulate(
    client: &Client,
    bodies: &Bodies,
    row: &GrundRow,
    window: Duration,
    timeout: Duration,
    progress: &Progress,
) -> GrundOutcome {
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..row.concurrent_calls {
        let caller = Caller {
            client: client.clone(),
            bodies: bodies.clone(),
            row: row.clone(),
            next: next.clone(),
            shared: shared.clone(),
            start,
            window,
            timeout,
        };
        callers.spawn(caller.run());
    }
    while callers.join_next().await.is_some() {}
    progress.line(&format!("grundladdning of {} simulated", row.source_system));
    let s = std::mem::take(&mut *shared.lock().expect("not poisoned"));
    // A caller that found no posts left had taken a call number past the end.
    let finished = next.load(Ordering::Relaxed) * row.posts_per_call >= row.posts;
    GrundOutcome {
        calls: s.tally,
        posts_acknowledged: s.acked,
        elapsed: if finished {
            s.last_answer
        } else {
            window.max(s.last_answer)
        },
        finished,
    }
}

struct Caller {
    client: Client,
    bodies: Bodies,
    row: GrundRow,
    next: Arc<AtomicU64>,
    shared: Arc<Mutex<Shared>>,
    start: Instant,
    window: Duration,
    timeout: Duration,
}

impl Caller {
    async fn run(self) {
        while self.start.elapsed() < self.window {
            let call = self.next.fetch_add(1, Ordering::Relaxed);
            let first = call * self.row.posts_per_call;
            if first >= self.row.posts {
                break;
            }
            let last = (first + self.row.posts_per_call).min(self.row.posts);
            let sent = Instant::now();
            let outcome = match tokio::time::timeout(self.timeout, self.call(first..last)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(CallError::Timeout(self.timeout)),
            };
            self.record(sent, &outcome, last - first);
            let pause = Duration::from_millis(self.row.pause_ms);
            if self.start.elapsed() + pause >= self.window {
                break; // the next call would start after the window
            }
            tokio::time::sleep(pause).await;
        }
    }

    async fn call(&self, posts: std::ops::Range<u64>) -> Result<(), CallError> {
        let posts: Vec<Post<'_>> = posts
            .map(|p| Post {
                resident: GRUND_RESIDENT_BASE + p,
                categorization: "voo".into(),
                source_system: &self.row.hsa_id,
                owner: None,
            })
            .collect();
        let req = self
            .bodies
            .write(WriteOperation::Update, &posts)
            .map_err(|e| CallError::Build(e.to_string()))?;
        self.client.call(req).await
    }

    fn record(&self, sent: Instant, outcome: &Result<(), CallError>, posts: u64) {
        let mut s = self.shared.lock().expect("not poisoned");
        s.tally.record(sent.elapsed(), outcome, Duration::MAX);
        if outcome.is_ok() {
            s.acked += posts;
        }
        s.last_answer = s.last_answer.max(self.start.elapsed());
    }
}
