//! `run`: loads exactly what the plan says and no faster. A producer thread streams the
//! inputs (skipping what the journal says is done, rejecting what the rules refuse)
//! into batches of the agreed size; `concurrency` workers ([`crate::worker`]) send
//! them, one call each at a time, holding to the pause, the windows and the retry
//! policy. Ctrl-C (the `shutdown` future) stops new calls, lets the ones in flight
//! finish and be journalled, and ends the run as resumable.

use crate::check::validate;
use crate::client::EiClient;
use crate::clock::{format_local, to_local, Clock};
use crate::config::rules_for;
use crate::input::{read_all, Item};
use crate::journal::{self, Done, Event, Journal};
use crate::plan::{fingerprint, Plan};
use crate::post::Post;
use crate::progress::{Progress, Stats};
use crate::rejects::Rejects;
use crate::worker::{Worker, WorkerShared};
use serde::Serialize;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

pub use crate::rejects::rejects_path_for;
pub use crate::run_error::RunError;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// How to run.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Start now instead of at the planned start.
    pub now: bool,
    /// Draw progress bars (still only when stderr is a terminal).
    pub progress: bool,
}

/// How the run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every record is loaded or rejected.
    Completed,
    /// Stopped (Ctrl-C); run again to resume.
    Interrupted,
}

/// The end-of-run summary.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub outcome: Outcome,
    pub records: u64,
    /// Posts acknowledged by the index, all runs.
    pub loaded: u64,
    pub loaded_this_run: u64,
    /// Records rejected (reject file), all runs.
    pub rejected: u64,
    pub calls: u64,
    pub retries: u64,
    pub window_pauses: u64,
    pub seconds: f64,
    pub posts_per_second: f64,
    pub journal: PathBuf,
    pub reject_file: PathBuf,
}

/// What a run starts from: the checked inputs, the journal and what it says is done,
/// the reject file, and the counters.
struct Opened {
    inputs: Vec<PathBuf>,
    journal: Arc<Journal>,
    done: Done,
    rejects: Arc<Rejects>,
    stats: Arc<Stats>,
}

async fn open(plan_path: &Path, plan: &Plan, clock: &dyn Clock) -> Result<Opened, RunError> {
    let inputs = verify_inputs(plan).await?;
    let shas: Vec<String> = plan.inputs.iter().map(|i| i.sha256.clone()).collect();
    let (journal, done) = Journal::open(&journal::path_for(plan_path), &shas, now_text(clock))?;
    let rejects = Rejects::open(&rejects_path_for(plan_path), inputs.clone())?;
    let stats = Stats::default();
    stats.loaded.store(done.acked, Relaxed);
    stats.rejected.store(done.rejected, Relaxed);
    Ok(Opened {
        inputs,
        journal: Arc::new(journal),
        done,
        rejects: Arc::new(rejects),
        stats: Arc::new(stats),
    })
}

/// A stop flag raised when `shutdown` resolves (or by a failing worker).
fn stop_on(
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (
    Arc<watch::Sender<bool>>,
    watch::Receiver<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = watch::channel(false);
    let tx = Arc::new(tx);
    let stopper = tx.clone();
    let task = tokio::spawn(async move {
        shutdown.await;
        stopper.send_replace(true);
    });
    (tx, rx, task)
}

/// Runs the plan at `plan_path` until done or `shutdown` resolves.
pub async fn run(
    plan_path: &Path,
    plan: &Plan,
    clock: Arc<dyn Clock>,
    opts: RunOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Summary, RunError> {
    let started = Instant::now();
    let o = open(plan_path, plan, &*clock).await?;
    let (stop_tx, stop_rx, signal) = stop_on(shutdown);
    let total = plan.order.posts + plan.order.invalid_records;
    let concurrency = plan.throttle.concurrency;
    let progress = Arc::new(Progress::new(total, opts.progress));
    let ticker = progress.clone().tick(o.stats.clone(), concurrency);
    let mut stop = stop_rx.clone();
    let in_time = opts.now || wait_for_start(plan, &*clock, &o.stats, &mut stop).await?;
    let result = match in_time {
        true => load(plan, &o, clock.clone(), stop_tx, stop_rx).await,
        false => Ok(()),
    };
    signal.abort();
    ticker.abort();
    progress.finish(&o.stats, concurrency);
    result?;
    let interrupted = *stop.borrow() || !in_time;
    if !interrupted {
        let at = now_text(&*clock);
        o.journal.append(&Event::Done { at }, true)?;
    }
    let (journal, reject_file) = (journal::path_for(plan_path), rejects_path_for(plan_path));
    Ok(summary(
        &o.stats,
        total,
        interrupted,
        started.elapsed(),
        journal,
        reject_file,
    ))
}

fn now_text(clock: &dyn Clock) -> String {
    format_local(to_local(clock.now()))
}

/// Checks every input against the plan's checksum (on a blocking thread).
async fn verify_inputs(plan: &Plan) -> Result<Vec<PathBuf>, RunError> {
    let inputs = plan.inputs.clone();
    tokio::task::spawn_blocking(move || {
        for i in &inputs {
            if fingerprint(&i.path)?.sha256 != i.sha256 {
                return Err(RunError::InputChanged {
                    path: i.path.clone(),
                });
            }
        }
        Ok(inputs.into_iter().map(|i| i.path).collect())
    })
    .await
    .expect("checksum task")
}

/// Waits for the planned start; false when stopped first.
async fn wait_for_start(
    plan: &Plan,
    clock: &dyn Clock,
    stats: &Stats,
    stop: &mut watch::Receiver<bool>,
) -> Result<bool, RunError> {
    let start = plan.start()?;
    loop {
        let now = clock.now();
        if now >= start {
            return Ok(true);
        }
        stats.set_window(format!(
            "waiting for the planned start {}",
            plan.schedule.planned_start
        ));
        let wait: Duration = (start - now).try_into().unwrap_or_default();
        if crate::worker::sleep_or_stop(clock, wait, stop).await {
            return Ok(false);
        }
    }
}

/// The producer and the workers, until the load is done, stopped or failed.
async fn load(
    plan: &Plan,
    o: &Opened,
    clock: Arc<dyn Clock>,
    stop_tx: Arc<watch::Sender<bool>>,
    stop_rx: watch::Receiver<bool>,
) -> Result<(), RunError> {
    let client = EiClient::new(
        &plan.target.update_url,
        &plan.target.find_content_url,
        &plan.target.logical_address,
        Duration::from_millis(plan.retry.timeout_ms),
        &plan.target.tls,
    )
    .map_err(|e| RunError::Fatal {
        call: "-".into(),
        message: e.to_string(),
    })?;
    let (tx, rx) = mpsc::channel::<Vec<Post>>(plan.throttle.concurrency as usize * 2);
    let producer = {
        let (plan, inputs, done) = (plan.clone(), o.inputs.clone(), o.done.clone());
        let (journal, rejects, stats) = (o.journal.clone(), o.rejects.clone(), o.stats.clone());
        tokio::task::spawn_blocking(move || {
            produce(&plan, &inputs, &done, &journal, &rejects, &stats, tx)
        })
    };
    let shared = Arc::new(WorkerShared::new(
        plan,
        client,
        clock,
        o.journal.clone(),
        o.rejects.clone(),
        o.stats.clone(),
        stop_tx.clone(),
        stop_rx,
        rx,
    ));
    let workers: Vec<_> = (0..plan.throttle.concurrency)
        .map(|id| tokio::spawn(Worker::new(id, shared.clone()).run()))
        .collect();
    let mut first_err = None;
    for w in workers {
        if let Err(e) = w.await.expect("worker task") {
            stop_tx.send_replace(true);
            first_err.get_or_insert(e);
        }
    }
    shared.close();
    let produced = producer.await.expect("producer task");
    match (first_err, produced) {
        (Some(e), _) | (None, Err(e)) => Err(e),
        (None, Ok(_)) => Ok(()),
    }
}

/// Streams the inputs into batches; rejects records the rules refuse. Returns the
/// number of records read.
fn produce(
    plan: &Plan,
    inputs: &[PathBuf],
    done: &Done,
    journal: &Journal,
    rejects: &Rejects,
    stats: &Stats,
    tx: mpsc::Sender<Vec<Post>>,
) -> Result<u64, RunError> {
    let rules = rules_for(&plan.target.logical_address, &plan.target.reserved_hsa_ids);
    let size = plan.throttle.batch_size as usize;
    let mut batch = Vec::with_capacity(size);
    let mut records = 0;
    for item in read_all(inputs) {
        let item = item?;
        records += 1;
        if done.contains(item.seq()) {
            continue;
        }
        match item {
            Item::Unreadable { seq, at, message } => {
                rejects.reject(journal, seq, at, None, "unreadable", &message)?;
                stats.rejected.fetch_add(1, Relaxed);
            }
            Item::Record { seq, at, tx: raw } => match validate(&rules, &raw) {
                Ok(t) => batch.push(Post {
                    seq,
                    at,
                    tx: t,
                    raw,
                }),
                Err(bad) => {
                    rejects.reject(journal, seq, at, Some(&raw), &bad.code, &bad.text)?;
                    stats.rejected.fetch_add(1, Relaxed);
                }
            },
        }
        if batch.len() == size
            && tx
                .blocking_send(std::mem::replace(&mut batch, Vec::with_capacity(size)))
                .is_err()
        {
            return Ok(records);
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(batch);
    }
    Ok(records)
}

fn summary(
    stats: &Stats,
    records: u64,
    interrupted: bool,
    elapsed: Duration,
    journal: PathBuf,
    reject_file: PathBuf,
) -> Summary {
    let loaded = stats.loaded.load(Relaxed);
    let this_run = stats.loaded_this_run.load(Relaxed);
    let seconds = elapsed.as_secs_f64();
    Summary {
        outcome: if interrupted {
            Outcome::Interrupted
        } else {
            Outcome::Completed
        },
        records,
        loaded,
        loaded_this_run: this_run,
        rejected: stats.rejected.load(Relaxed),
        calls: stats.calls.load(Relaxed),
        retries: stats.retries.load(Relaxed),
        window_pauses: stats.window_pauses.load(Relaxed),
        seconds,
        posts_per_second: if seconds > 0.0 {
            this_run as f64 / seconds
        } else {
            0.0
        },
        journal,
        reject_file,
    }
}
