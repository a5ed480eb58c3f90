//! Seeding: before the phases, pre-load N residents × M engagements (Update calls of
//! 1000 posts, a few at a time, as fast as the server takes them) so that FindContent
//! reads an index of a realistic size. Resident `r` gets the categories
//! `seed-0 … seed-{M-1}` in [`crate::workload::DOMAIN`] from [`SEED_SOURCE`].

use crate::client::Client;
use crate::progress::Progress;
use crate::workload::{Bodies, Post, SEED_SOURCE};
use ei_server::operation::WriteOperation;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Calls in flight while seeding.
pub const SEED_CONCURRENCY: usize = 4;
const POSTS_PER_CALL: u64 = 1000;

/// How much to seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SeedSpec {
    pub residents: u64,
    pub per_resident: u64,
}

/// How seeding went.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeedResult {
    pub residents: u64,
    pub per_resident: u64,
    pub posts: u64,
    pub calls: u64,
    pub failed_calls: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub posts_per_second: f64,
}

#[derive(Default)]
struct Counts {
    posts: u64,
    calls: u64,
    failed: u64,
    first_error: Option<String>,
}

/// Loads `spec` into the index behind `client`.
pub async fn seed(
    client: &Client,
    bodies: &Bodies,
    spec: SeedSpec,
    progress: &Progress,
) -> SeedResult {
    let total = spec.residents * spec.per_resident;
    let calls = total.div_ceil(POSTS_PER_CALL);
    let next = Arc::new(AtomicU64::new(0));
    let counts = Arc::new(Mutex::new(Counts::default()));
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..SEED_CONCURRENCY {
        let (client, bodies) = (client.clone(), bodies.clone());
        let (next, counts) = (next.clone(), counts.clone());
        workers.spawn(async move {
            loop {
                let call = next.fetch_add(1, Ordering::Relaxed);
                if call >= calls {
                    break;
                }
                let first = call * POSTS_PER_CALL;
                let last = (first + POSTS_PER_CALL).min(total);
                let outcome = seed_call(&client, &bodies, spec, first..last).await;
                record(&counts, outcome, last - first);
            }
        });
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            done = workers.join_next() => if done.is_none() { break },
            _ = tick.tick() => {
                let posts = counts.lock().expect("not poisoned").posts;
                progress.status(&format!("seeding: {posts}/{total} posts"));
            }
        }
    }
    let c = std::mem::take(&mut *counts.lock().expect("not poisoned"));
    let seconds = start.elapsed().as_secs_f64();
    SeedResult {
        residents: spec.residents,
        per_resident: spec.per_resident,
        posts: c.posts,
        calls: c.calls,
        failed_calls: c.failed,
        first_error: c.first_error,
        seconds,
        posts_per_second: c.posts as f64 / seconds.max(1e-9),
    }
}

async fn seed_call(
    client: &Client,
    bodies: &Bodies,
    spec: SeedSpec,
    posts: std::ops::Range<u64>,
) -> Result<(), String> {
    let posts: Vec<Post<'_>> = posts
        .map(|p| Post {
            resident: p / spec.per_resident,
            categorization: format!("seed-{}", p % spec.per_resident),
            source_system: SEED_SOURCE,
            owner: None,
        })
        .collect();
    let req = bodies
        .write(WriteOperation::Update, &posts)
        .map_err(|e| e.to_string())?;
    client.call(req).await.map_err(|e| e.to_string())
}

fn record(counts: &Mutex<Counts>, outcome: Result<(), String>, posts: u64) {
    let mut c = counts.lock().expect("not poisoned");
    c.calls += 1;
    match outcome {
        Ok(()) => c.posts += posts,
        Err(e) => {
            c.failed += 1;
            c.first_error.get_or_insert(e);
        }
    }
}
