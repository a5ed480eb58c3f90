//! One worker of a run: takes a batch, sends it as one call when its turn comes (inside
//! a window, at least the agreed pause after its previous reply, within the global
//! call rate), retries failures with exponential backoff, and on a contract fault
//! splits the call to isolate the refused records, which go to the reject file with
//! the index's reason. A worker has at most one call in flight, so `concurrency`
//! workers never have more than `concurrency` calls in flight.

use crate::client::{CallError, EiClient, UpdateOutcome};
use crate::clock::{format_local, to_local, Clock};
use crate::journal::{ranges_of, Event, Journal};
use crate::plan::{Plan, Retry};
use crate::post::Post;
use crate::progress::Stats;
use crate::rejects::Rejects;
use crate::run_error::RunError;
use crate::window::{self, Window, WindowState};
use ei_server::model::Transaction;
use governor::clock::Clock as _;
use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch, Mutex};

/// governor's view of the run's [`Clock`], so the global rate uses the same time as
/// the pauses and windows (and a test clock drives all of them).
#[derive(Clone)]
pub struct GovernorClock {
    clock: Arc<dyn Clock>,
    origin: OffsetDateTime,
}

impl governor::clock::Clock for GovernorClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        (self.clock.now() - self.origin)
            .try_into()
            .unwrap_or_default()
    }
}

type Limiter = governor::RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    GovernorClock,
    governor::middleware::NoOpMiddleware<Duration>,
>;

/// What all workers share.
pub struct WorkerShared {
    client: EiClient,
    clock: Arc<dyn Clock>,
    gov_clock: GovernorClock,
    /// At most `concurrency` call starts per pause, spaced evenly; `None` with no pause.
    limiter: Option<Limiter>,
    journal: Arc<Journal>,
    rejects: Arc<Rejects>,
    stats: Arc<Stats>,
    stop_tx: Arc<watch::Sender<bool>>,
    stop_rx: watch::Receiver<bool>,
    batches: Mutex<Option<mpsc::Receiver<Vec<Post>>>>,
    windows: Vec<Window>,
    pause: Duration,
    retry: Retry,
    run_id: String,
    window_open: AtomicBool,
}

impl WorkerShared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        plan: &Plan,
        client: EiClient,
        clock: Arc<dyn Clock>,
        journal: Arc<Journal>,
        rejects: Arc<Rejects>,
        stats: Arc<Stats>,
        stop_tx: Arc<watch::Sender<bool>>,
        stop_rx: watch::Receiver<bool>,
        batches: mpsc::Receiver<Vec<Post>>,
    ) -> WorkerShared {
        let now = clock.now();
        let gov_clock = GovernorClock {
            clock: clock.clone(),
            origin: now,
        };
        let pause = Duration::from_millis(plan.throttle.pause_ms);
        let limiter = (pause / plan.throttle.concurrency > Duration::ZERO).then(|| {
            let quota = governor::Quota::with_period(pause / plan.throttle.concurrency)
                .expect("non-zero period")
                .allow_burst(NonZeroU32::MIN);
            governor::RateLimiter::direct_with_clock(quota, gov_clock.clone())
        });
        let open = matches!(
            window::state(&plan.schedule.windows, now),
            WindowState::Open { .. }
        );
        WorkerShared {
            client,
            clock: clock.clone(),
            gov_clock,
            limiter,
            journal,
            rejects,
            stats,
            stop_tx,
            stop_rx,
            batches: Mutex::new(Some(batches)),
            windows: plan.schedule.windows.clone(),
            pause,
            retry: plan.retry,
            run_id: format!("{}", now.unix_timestamp()),
            window_open: AtomicBool::new(open),
        }
    }

    /// Drops the batch queue so the producer stops.
    pub fn close(&self) {
        if let Ok(mut b) = self.batches.try_lock() {
            b.take();
        }
    }

    fn stopped(&self) -> bool {
        *self.stop_rx.borrow()
    }
}

/// Sleeps `d` on `clock`; true when `stop` was raised first (or already).
pub async fn sleep_or_stop(
    clock: &dyn Clock,
    d: Duration,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    if *stop.borrow() {
        return true;
    }
    let stopped = tokio::select! {
        _ = clock.sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    stopped || *stop.borrow()
}

/// One worker.
pub struct Worker {
    id: u32,
    shared: Arc<WorkerShared>,
    stop: watch::Receiver<bool>,
    /// When this worker's previous call was answered.
    last_reply: Option<OffsetDateTime>,
    calls: u64,
}

impl Worker {
    pub fn new(id: u32, shared: Arc<WorkerShared>) -> Worker {
        let stop = shared.stop_rx.clone();
        Worker {
            id,
            shared,
            stop,
            last_reply: None,
            calls: 0,
        }
    }

    /// Takes batches until there are none or the run stops.
    /// On an error every other worker is stopped too.
    pub async fn run(mut self) -> Result<(), RunError> {
        while let Some(batch) = self.next_batch().await {
            if let Err(e) = self.process(batch).await {
                self.shared.stop_tx.send_replace(true);
                return Err(e);
            }
        }
        Ok(())
    }

    async fn next_batch(&mut self) -> Option<Vec<Post>> {
        if self.shared.stopped() {
            return None;
        }
        let mut guard = self.shared.batches.lock().await;
        let rx = guard.as_mut()?;
        tokio::select! {
            b = rx.recv() => b,
            _ = self.stop.wait_for(|s| *s) => None,
        }
    }

    /// Sends a batch; splits it around refused records until every record is
    /// acknowledged or rejected, or the run stops.
    async fn process(&mut self, batch: Vec<Post>) -> Result<(), RunError> {
        let mut parts = VecDeque::from([batch]);
        while let Some(part) = parts.pop_front() {
            let Some(outcome) = self.call(&part).await? else {
                return Ok(());
            };
            match outcome {
                UpdateOutcome::Ok => self.acknowledged(&part).await?,
                UpdateOutcome::Rejected { code, text } => {
                    self.isolate(part, &code, &text, &mut parts).await?
                }
            }
        }
        Ok(())
    }

    async fn acknowledged(&self, part: &[Post]) -> Result<(), RunError> {
        let event = Event::Ack {
            call: self.call_id(),
            ranges: ranges_of(part.iter().map(|p| p.seq)),
        };
        self.journal(event).await?;
        let s = &self.shared.stats;
        s.loaded.fetch_add(part.len() as u64, Relaxed);
        s.loaded_this_run.fetch_add(part.len() as u64, Relaxed);
        Ok(())
    }

    /// A refused part: reject the record the fault names, or halve the part.
    async fn isolate(
        &self,
        mut part: Vec<Post>,
        code: &str,
        text: &str,
        parts: &mut VecDeque<Vec<Post>>,
    ) -> Result<(), RunError> {
        let named = named_transaction(code, text).filter(|i| (1..=part.len()).contains(i));
        match (part.len(), named) {
            (1, _) => self.reject(&part[0], code, text).await,
            (_, Some(i)) => {
                let bad = part.remove(i - 1);
                parts.push_front(part);
                self.reject(&bad, code, text).await
            }
            (n, None) => {
                let second = part.split_off(n / 2);
                parts.push_front(second);
                parts.push_front(part);
                Ok(())
            }
        }
    }

    async fn reject(&self, post: &Post, code: &str, text: &str) -> Result<(), RunError> {
        let (shared, post, code, text) = (
            self.shared.clone(),
            post.clone(),
            code.to_owned(),
            text.to_owned(),
        );
        tokio::task::spawn_blocking(move || {
            shared.rejects.reject(
                &shared.journal,
                post.seq,
                post.at,
                Some(&post.raw),
                &code,
                &text,
            )
        })
        .await
        .expect("reject task")?;
        self.shared.stats.rejected.fetch_add(1, Relaxed);
        Ok(())
    }

    async fn journal(&self, event: Event) -> Result<(), RunError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.journal.append(&event, true))
            .await
            .expect("journal task")?;
        Ok(())
    }

    fn call_id(&self) -> String {
        format!("{}-w{}-c{}", self.shared.run_id, self.id, self.calls)
    }

    /// One call, retried until it gets a contract answer; `None` when the run stops.
    async fn call(&mut self, part: &[Post]) -> Result<Option<UpdateOutcome>, RunError> {
        self.calls += 1;
        let txs: Vec<Transaction> = part.iter().map(|p| p.tx.clone()).collect();
        let ranges = ranges_of(part.iter().map(|p| p.seq));
        // Failed attempts count towards the limit and the backoff; maintenance pauses
        // only stretch the wait.
        let (mut failures, mut pauses) = (0u32, 0u32);
        for attempt in 1.. {
            if !self.wait_turn().await {
                return Ok(None);
            }
            let call = self.call_id();
            let at = format_local(to_local(self.shared.clock.now()));
            self.shared.journal.append(
                &Event::Send {
                    call: call.clone(),
                    attempt,
                    at,
                    ranges: ranges.clone(),
                },
                false,
            )?;
            let stats = &self.shared.stats;
            stats.in_flight.fetch_add(1, Relaxed);
            let result = self
                .shared
                .client
                .update(&txs, &format!("ei-loader-{call}-a{attempt}"))
                .await;
            stats.in_flight.fetch_sub(1, Relaxed);
            self.last_reply = Some(self.shared.clock.now());
            match result {
                Ok(outcome) => {
                    stats.calls.fetch_add(1, Relaxed);
                    return Ok(Some(outcome));
                }
                Err(CallError::Fatal(message)) => return Err(RunError::Fatal { call, message }),
                Err(CallError::Paused(message)) => {
                    stats.retries.fetch_add(1, Relaxed);
                    pauses += 1;
                    let wait = self.shared.retry.backoff(pauses);
                    stats.set_window(format!(
                        "index in maintenance (write lock), sending {call} again in {} s: {message}",
                        wait.as_secs()
                    ));
                    if sleep_or_stop(&*self.shared.clock, wait, &mut self.stop).await {
                        return Ok(None);
                    }
                }
                Err(CallError::Retryable(message)) => {
                    stats.retries.fetch_add(1, Relaxed);
                    failures += 1;
                    let max = self.shared.retry.max_attempts;
                    if max > 0 && failures >= max {
                        return Err(RunError::GaveUp {
                            call,
                            attempts: attempt,
                            message,
                        });
                    }
                    let backoff = self.shared.retry.backoff(failures);
                    if sleep_or_stop(&*self.shared.clock, backoff, &mut self.stop).await {
                        return Ok(None);
                    }
                }
            }
        }
        unreachable!("the attempt loop only ends by returning")
    }

    /// Waits until a call may start: a window is open, the pause since this worker's
    /// last reply has passed, and the global rate allows it. False when stopped.
    async fn wait_turn(&mut self) -> bool {
        let shared = self.shared.clone();
        let clock = &*shared.clock;
        loop {
            if shared.stopped() {
                return false;
            }
            let now = clock.now();
            let state = window::state(&shared.windows, now);
            shared.stats.set_window(state.describe());
            let wait = match state {
                WindowState::Closed { opens_at } => {
                    if shared.window_open.swap(false, Relaxed) {
                        shared.stats.window_pauses.fetch_add(1, Relaxed);
                    }
                    (opens_at - now).try_into().unwrap_or_default()
                }
                WindowState::Open { .. } => {
                    shared.window_open.store(true, Relaxed);
                    self.pause_left(now)
                        .or_else(|| self.rate_wait())
                        .unwrap_or_default()
                }
            };
            if wait.is_zero() {
                return true;
            }
            if sleep_or_stop(clock, wait, &mut self.stop).await {
                return false;
            }
        }
    }

    fn pause_left(&self, now: OffsetDateTime) -> Option<Duration> {
        let next = self.last_reply? + self.shared.pause;
        (next > now).then(|| (next - now).try_into().unwrap_or_default())
    }

    /// `None` when the global rate allows a call now (and takes its slot).
    fn rate_wait(&self) -> Option<Duration> {
        let limiter = self.shared.limiter.as_ref()?;
        limiter.check().err().map(|not_until| {
            not_until
                .wait_time_from(self.shared.gov_clock.now())
                .max(Duration::from_millis(1))
        })
    }
}

/// The transaction a fault names, 1-based: EI002's second number (the later of two
/// with the same key), EI005/EI006's only one. EI004 names none.
pub fn named_transaction(code: &str, text: &str) -> Option<usize> {
    if !matches!(code, "EI002" | "EI005" | "EI006") {
        return None;
    }
    text.split('#')
        .skip(1)
        .filter_map(|s| s.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_transaction_a_fault_names() {
        let ei002 = "EI002: EngagementTransaction #3 and #17 have the same key. That is not allowed. See rule for Update-R1 in service contract";
        assert_eq!(named_transaction("EI002", ei002), Some(17));
        let ei005 = "EI005: The logicalAddress in EngagementTransaction #4 is reserved and not allowed, hsa-id: X";
        assert_eq!(named_transaction("EI005", ei005), Some(4));
        assert_eq!(named_transaction("EI004", "EI004: The payload does not validate, error messge: mandatory field \"x\" is missing"), None);
    }
}
