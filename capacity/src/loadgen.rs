//! The open-model load generator. Each stream's calls are due at fixed times
//! (`start + k / rate`), decided before the run, and a call is dispatched at its time
//! whether or not earlier calls have been answered: a slow server does not slow the
//! offered load down. Latency is measured from the *scheduled* time, so time spent
//! queueing (in the server, in the kernel, or here waiting for one of the
//! `max_in_flight` connections, or for a late timer) counts against the server,
//! never hidden (no coordinated omission).
//!
//! Calls still unanswered `drain` after the phase are counted as `unfinished` errors,
//! with their age as a lower bound on their latency; each call also has a `timeout`.

use crate::client::{CallError, Client};
use crate::progress::Progress;
use crate::stats::Tally;
use crate::workload::Request;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;

/// Builds call number `seq` of a stream.
pub type MakeRequest = Arc<dyn Fn(u64) -> Result<Request, ei_server::rules::EiError> + Send + Sync>;

/// One stream of calls at a constant rate.
#[derive(Clone)]
pub struct Stream {
    pub label: String,
    pub rate_per_s: f64,
    pub make: MakeRequest,
}

/// How a phase is run.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub duration: Duration,
    pub max_in_flight: usize,
    pub timeout: Duration,
    pub drain: Duration,
    /// The objective's p99 bound (calls above it are counted per stream).
    pub bound: Duration,
    /// Stop dispatching as soon as the objective is certainly broken (any error, or
    /// more than 1 % of a stream's planned calls over the bound).
    pub stop_when_failed: bool,
}

/// What one stream did.
#[derive(Clone, Debug)]
pub struct StreamResult {
    pub label: String,
    pub rate_per_s: f64,
    /// Calls the schedule held for the phase.
    pub planned: u64,
    /// Calls actually sent (fewer than planned only after an early stop).
    pub sent: u64,
    pub tally: Tally,
}

/// What a phase did.
#[derive(Clone, Debug)]
pub struct LoadResult {
    pub streams: Vec<StreamResult>,
    /// The window rates are computed over: the phase (or until the early stop), or
    /// until the last answer when that came later.
    pub elapsed: Duration,
    /// When the phase was stopped early because its objective was already broken.
    pub stopped_after: Option<Duration>,
    /// The longest a call waited between its scheduled time and being sent.
    pub max_send_lag: Duration,
}

/// Calls a stream's schedule holds for a phase: those due strictly inside it, so a
/// short phase never offers more than the rate (a rate too low for the phase gives 0).
pub fn planned_calls(rate_per_s: f64, duration: Duration) -> u64 {
    (rate_per_s * duration.as_secs_f64() + 1e-9).floor() as u64
}

/// When call `seq` of a stream at `rate_per_s` is due, after the phase's start.
pub fn due(rate_per_s: f64, seq: u64) -> Duration {
    Duration::from_secs_f64(seq as f64 / rate_per_s)
}

struct Shared {
    client: Client,
    sem: Semaphore,
    stop: AtomicBool,
    timeout: Duration,
    deadline: Instant,
}

struct Done {
    stream: usize,
    finished: Instant,
    scheduled: Instant,
    /// `None`: cancelled before sending, after an early stop.
    outcome: Option<Result<(), CallError>>,
    lag: Duration,
}

/// Runs `streams` at their rates for `schedule.duration`, all at once.
pub async fn run(
    client: &Client,
    streams: &[Stream],
    schedule: &Schedule,
    progress: &Progress,
    phase: &str,
) -> LoadResult {
    let start = Instant::now();
    let shared = Arc::new(Shared {
        client: client.clone(),
        sem: Semaphore::new(schedule.max_in_flight.max(1)),
        stop: AtomicBool::new(false),
        timeout: schedule.timeout,
        deadline: start + schedule.duration + schedule.drain,
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let planned: Vec<u64> = streams
        .iter()
        .map(|s| planned_calls(s.rate_per_s, schedule.duration))
        .collect();
    for (i, s) in streams.iter().enumerate() {
        let stream = ScheduledStream {
            index: i,
            rate: s.rate_per_s,
            calls: planned[i],
            make: s.make.clone(),
            start,
        };
        tokio::spawn(stream.dispatch(shared.clone(), tx.clone()));
    }
    drop(tx);
    let collected = collect(rx, &shared, &planned, schedule, progress, phase, start).await;
    let window = collected.stopped_after.unwrap_or(schedule.duration);
    LoadResult {
        streams: streams
            .iter()
            .zip(planned)
            .zip(collected.tallies)
            .zip(collected.sent)
            .map(|(((s, planned), tally), sent)| StreamResult {
                label: s.label.clone(),
                rate_per_s: s.rate_per_s,
                planned,
                sent,
                tally,
            })
            .collect(),
        elapsed: window.max(collected.last_answer),
        stopped_after: collected.stopped_after,
        max_send_lag: collected.max_lag,
    }
}

struct ScheduledStream {
    index: usize,
    rate: f64,
    calls: u64,
    make: MakeRequest,
    start: Instant,
}

impl ScheduledStream {
    /// Dispatches each call at its time; the times never depend on answers.
    async fn dispatch(self, shared: Arc<Shared>, tx: mpsc::UnboundedSender<Done>) {
        for seq in 0..self.calls {
            let at = self.start + due(self.rate, seq);
            tokio::time::sleep_until(at).await;
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
            let call = Call {
                stream: self.index,
                seq,
                at,
                make: self.make.clone(),
            };
            tokio::spawn(call.run(shared.clone(), tx.clone()));
        }
    }
}

struct Call {
    stream: usize,
    seq: u64,
    at: Instant,
    make: MakeRequest,
}

impl Call {
    async fn run(self, shared: Arc<Shared>, tx: mpsc::UnboundedSender<Done>) {
        let limit = (self.at + shared.timeout).min(shared.deadline);
        let mut lag = Duration::ZERO;
        let work = async {
            let _permit = shared
                .sem
                .acquire()
                .await
                .expect("the semaphore is never closed");
            if shared.stop.load(Ordering::Relaxed) {
                return None;
            }
            lag = self.at.elapsed();
            Some(match (self.make)(self.seq) {
                Ok(req) => shared.client.call(req).await,
                Err(e) => Err(CallError::Build(e.to_string())),
            })
        };
        let outcome = match tokio::time::timeout_at(limit, work).await {
            Ok(outcome) => outcome,
            Err(_) if limit < shared.deadline => Some(Err(CallError::Timeout(shared.timeout))),
            Err(_) => Some(Err(CallError::Unfinished)),
        };
        let _ = tx.send(Done {
            stream: self.stream,
            finished: Instant::now(),
            scheduled: self.at,
            outcome,
            lag,
        });
    }
}

struct Collected {
    tallies: Vec<Tally>,
    sent: Vec<u64>,
    last_answer: Duration,
    stopped_after: Option<Duration>,
    max_lag: Duration,
}

/// Records every answer as it comes, shows progress each second, and decides the
/// early stop.
async fn collect(
    mut rx: mpsc::UnboundedReceiver<Done>,
    shared: &Shared,
    planned: &[u64],
    schedule: &Schedule,
    progress: &Progress,
    phase: &str,
    start: Instant,
) -> Collected {
    let mut c = Collected {
        tallies: vec![Tally::default(); planned.len()],
        sent: vec![0; planned.len()],
        last_answer: Duration::ZERO,
        stopped_after: None,
        max_lag: Duration::ZERO,
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            done = rx.recv() => {
                let Some(done) = done else { break };
                let Some(outcome) = done.outcome else { continue };
                let t = &mut c.tallies[done.stream];
                t.record(done.finished - done.scheduled, &outcome, schedule.bound);
                c.sent[done.stream] += 1;
                c.last_answer = c.last_answer.max(done.finished - start);
                c.max_lag = c.max_lag.max(done.lag);
                let broken = outcome.is_err() || t.over_bound * 100 > planned[done.stream];
                if schedule.stop_when_failed && broken && c.stopped_after.is_none() {
                    shared.stop.store(true, Ordering::Relaxed);
                    c.stopped_after = Some(start.elapsed());
                }
            }
            _ = tick.tick() => progress.load_tick(phase, start.elapsed(), schedule.duration, &c.tallies),
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the schedule itself: a stream offers exactly its rate, evenly spaced,
    /// every call due strictly inside the phase.
    #[test]
    fn the_schedule_spaces_calls_evenly_inside_the_phase() {
        let phase = Duration::from_secs(3);
        for (rate, calls) in [(40.0, 120), (10.0, 30), (4.0, 12), (0.25, 0), (2.5, 7)] {
            let n = planned_calls(rate, phase);
            assert_eq!(n, calls, "{rate}/s");
            let times: Vec<Duration> = (0..n).map(|k| due(rate, k)).collect();
            assert!(times.iter().all(|t| *t < phase), "{rate}/s: {times:?}");
            for (k, pair) in times.windows(2).enumerate() {
                let gap = (pair[1] - pair[0]).as_secs_f64();
                assert!((gap - 1.0 / rate).abs() < 1e-6, "{rate}/s, call {k}: {gap}");
            }
        }
        assert_eq!(due(20.0, 0), Duration::ZERO);
        assert!((due(20.0, 19).as_secs_f64() - 0.95).abs() < 1e-6);
    }
}
