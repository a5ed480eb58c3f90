//! What a run shows while it works: a bar of posts (rate, ETA) and a status line
//! (calls, in flight, retries, rejected, window state) on stderr, drawn only when
//! stderr is a terminal. The counters live in [`Stats`], which the summary reads too.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The run's counters, shared by the workers.
#[derive(Debug, Default)]
pub struct Stats {
    /// Posts acknowledged (this run and earlier ones).
    pub loaded: AtomicU64,
    pub loaded_this_run: AtomicU64,
    /// Records rejected (this run and earlier ones).
    pub rejected: AtomicU64,
    /// Calls acknowledged or rejected by the index in this run.
    pub calls: AtomicU64,
    pub in_flight: AtomicU64,
    pub retries: AtomicU64,
    /// Times the run stopped at the end of a window.
    pub window_pauses: AtomicU64,
    pub window: Mutex<String>,
}

impl Stats {
    pub fn set_window(&self, state: String) {
        *self.window.lock().expect("stats lock") = state;
    }
}

/// The bars.
pub struct Progress {
    _multi: MultiProgress,
    posts: ProgressBar,
    status: ProgressBar,
}

impl Progress {
    /// Bars for `total` records, drawn on stderr when it is a terminal and `show`.
    pub fn new(total: u64, show: bool) -> Progress {
        let target = if show && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let posts = multi.add(ProgressBar::new(total));
        posts.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} posts  {rate}  ETA {eta}")
                .expect("valid template")
                .with_key(
                    "rate",
                    |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0} posts/s", state.per_sec());
                    },
                ),
        );
        let status = multi.add(ProgressBar::new_spinner());
        status.set_style(ProgressStyle::with_template("{msg}").expect("valid template"));
        Progress {
            _multi: multi,
            posts,
            status,
        }
    }

    /// Redraws from the counters.
    pub fn update(&self, stats: &Stats, concurrency: u32) {
        self.posts
            .set_position(stats.loaded.load(Relaxed) + stats.rejected.load(Relaxed));
        self.status.set_message(format!(
            "calls {}  in flight {}/{}  retries {}  rejected {}  window: {}",
            stats.calls.load(Relaxed),
            stats.in_flight.load(Relaxed),
            concurrency,
            stats.retries.load(Relaxed),
            stats.rejected.load(Relaxed),
            stats.window.lock().expect("stats lock"),
        ));
    }

    /// Redraws every 200 ms until dropped (the returned task is aborted then).
    pub fn tick(
        self: Arc<Self>,
        stats: Arc<Stats>,
        concurrency: u32,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                self.update(&stats, concurrency);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }

    pub fn finish(&self, stats: &Stats, concurrency: u32) {
        self.update(stats, concurrency);
        self.posts.abandon();
        self.status.abandon();
    }
}
