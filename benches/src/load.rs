//! The end-to-end load generator behind `ei-load`: SOAP over HTTP on loopback against
//! a server started in-process (or at a URL), in phases: pre-load, 1000-post Updates
//! by C clients, 1-post Updates, FindContent alone and while Updates run. Each phase
//! records the achieved rate, latency percentiles (HdrHistogram, microseconds) and the
//! server's group commits (`ei_store_group_commits_total` from `/metrics`).

use crate::data::{self, Posts, UpdateTemplate, INDEX_HSA_ID};
use crate::raw;
use crate::report::{PhaseRow, Report};
use anyhow::Context;
use ei_server::codec::client::{classify_find_content, classify_write, Outcome, SoapCall};
use ei_server::harness::{DataDir, Harness, Options};
use ei_server::operation::Operation;
use ei_server::wsdl::endpoint_path;
use hdrhistogram::Histogram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the server is.
#[derive(Clone, Debug)]
pub enum Target {
    /// Start `ei_server::server::run` in this process (a temp dir unless given).
    InProcess {
        data_dir: Option<PathBuf>,
        wal_sync: bool,
        max_group_requests: usize,
        block_cache_mb: usize,
    },
    /// A running server (its HSA-id must be 5565594230, the samples' address).
    Url { base: String, pid: Option<u32> },
}

/// TLS towards an `https://` `--url`: the CAs to trust and the client certificate to
/// present (a server with `tls_client_ca` asks for one).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ClientTls {
    /// With an https:// --url: PEM bundle of the CAs to trust instead of the system's.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// With an https:// --url: client certificate (PEM), presented to the server.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl ClientTls {
    /// `b` with these files (rustls).
    fn apply(&self, mut b: reqwest::ClientBuilder) -> anyhow::Result<reqwest::ClientBuilder> {
        let read = |p: &PathBuf| std::fs::read(p).with_context(|| p.display().to_string());
        if let Some(ca) = &self.tls_ca {
            b = b.tls_certs_only(reqwest::Certificate::from_pem_bundle(&read(ca)?)?);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            let pem = [read(cert)?, b"\n".to_vec(), read(key)?].concat();
            b = b.identity(reqwest::Identity::from_pem(&pem)?);
        }
        Ok(b.tls_backend_rustls())
    }
}

/// What the 1000-post Update phases send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum UpdateKind {
    /// Pre-loaded posts with a new mostRecentContent each request (index size stays).
    Changed,
    /// Posts of new residents (the index grows by 1000 per request).
    New,
    /// Pre-loaded posts exactly as stored (no change to write).
    Same,
}

/// How FindContent replies are judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Verify {
    /// `codec::client::classify_find_content`: the reply read in full, as every
    /// client of the index reads it (~190 µs of the client's CPU per 50 rows).
    Full,
    /// HTTP 200 and the number of `<ns2:engagement>` elements (a substring count):
    /// a lean client, so that the load generator is not what limits the rate.
    Count,
}

/// A validated run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub target: Target,
    /// Posts to load before the phases (rounded up to whole 1000-post bodies).
    pub preload_posts: u64,
    /// Posts of ei-load's data the index already holds (an earlier run's pre-load):
    /// the phases use them, the pre-load adds its posts after them.
    pub preloaded_posts: u64,
    pub preload_clients: usize,
    /// Client counts for the 1000-post Update phases.
    pub update_clients: Vec<usize>,
    pub update_kind: UpdateKind,
    /// Client counts for the 1-post Update phases.
    pub single_clients: Vec<usize>,
    /// Client counts for FindContent alone.
    pub find_clients: Vec<usize>,
    /// Rows each FindContent returns: 50 (resident + domain) or 10 (+ categorization).
    pub find_rows: u64,
    /// Mixed phases: FindContent clients and 1000-post Update clients together, one
    /// phase per pair.
    pub mixed: Vec<(usize, usize)>,
    /// Posts per second the Update clients of the mixed phases send together (each
    /// request is due at its slot of a fixed schedule; `None`: as fast as they can).
    pub update_rate: Option<u64>,
    /// How FindContent replies are judged.
    pub verify: Verify,
    /// Length of each timed phase.
    pub phase: Duration,
    /// After the run, flush and compact the data dir and report that size too.
    pub compact: bool,
    /// TLS towards `Target::Url`.
    pub tls: ClientTls,
}

/// One kind of request.
#[derive(Clone, Copy, Debug)]
enum Work {
    Update(UpdateKind),
    Single,
    Find,
}

/// Shared by all clients of a run.
struct Ctx {
    http: reqwest::Client,
    base: String,
    template: UpdateTemplate,
    posts: Posts,
    find_rows: u64,
    verify: Verify,
    /// The server's pid when it runs as its own process (its CPU is measured).
    server_pid: Option<u32>,
    /// Bodies 0..loaded are in the index.
    loaded: AtomicU64,
    next_new_body: AtomicU64,
    next_single: AtomicU64,
    next_mrc: AtomicU64,
}

/// What one client measured.
struct Tally {
    hist: Histogram<u64>,
    requests: u64,
    errors: u64,
    posts: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            hist: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds"),
            requests: 0,
            errors: 0,
            posts: 0,
            first_error: None,
        }
    }

    fn merge(&mut self, o: Tally) {
        self.hist.add(o.hist).expect("same bounds");
        self.requests += o.requests;
        self.errors += o.errors;
        self.posts += o.posts;
        self.first_error = self.first_error.take().or(o.first_error);
    }
}

/// A server started in this process (through ei-server's harness), on a directory
/// that outlives it so its size can be measured after the stop.
struct Local {
    server: Harness,
    _temp: Option<tempfile::TempDir>,
}

/// Runs the plan and returns its report.
pub async fn run(plan: Plan) -> anyhow::Result<Report> {
    let (base, local, pid) = start(&plan.target).await?;
    let ctx = Arc::new(Ctx {
        http: plan
            .tls
            .apply(reqwest::Client::builder().pool_max_idle_per_host(256))?
            .build()?,
        base,
        template: UpdateTemplate::sample_1000(),
        posts: Posts::new(),
        find_rows: plan.find_rows,
        verify: plan.verify,
        server_pid: pid,
        loaded: AtomicU64::new(0),
        next_new_body: AtomicU64::new(0),
        next_single: AtomicU64::new(0),
        next_mrc: AtomicU64::new(0),
    });
    wait_ready(&ctx).await?;
    let (target, wal_sync) = match &plan.target {
        Target::InProcess { wal_sync, .. } => ("in-process".to_owned(), Some(*wal_sync)),
        Target::Url { base, .. } => (base.clone(), None),
    };
    let mut report = Report::new(target, wal_sync, plan.preload_posts);
    report.rows = phases(&ctx, &plan).await?;
    report.index_posts = status_posts(&ctx).await.ok();
    report.peak_rss_bytes = raw::peak_rss(pid);
    if let Some(Local { server, _temp }) = local {
        let dir = server.data_dir.clone();
        server.stop().await?;
        report.disk_bytes = Some(raw::dir_size(&dir));
        if plan.compact {
            raw::compact(&dir)?;
            report.disk_bytes_compacted = Some(raw::dir_size(&dir));
        }
    }
    Ok(report)
}

async fn start(target: &Target) -> anyhow::Result<(String, Option<Local>, Option<u32>)> {
    let (dir, temp, wal_sync, max_group, cache) = match target {
        Target::Url { base, pid } => return Ok((base.trim_end_matches('/').into(), None, *pid)),
        Target::InProcess {
            data_dir: Some(d),
            wal_sync,
            max_group_requests,
            block_cache_mb,
        } => (
            d.clone(),
            None,
            *wal_sync,
            *max_group_requests,
            *block_cache_mb,
        ),
        Target::InProcess {
            data_dir: None,
            wal_sync,
            max_group_requests,
            block_cache_mb,
        } => {
            let t = tempfile::tempdir()?;
            let d = t.path().to_owned();
            (d, Some(t), *wal_sync, *max_group_requests, *block_cache_mb)
        }
    };
    let config = ei_server::config::Config {
        data_dir: dir.clone(),
        hsa_id: INDEX_HSA_ID.into(),
        wal_sync,
        max_group_requests: max_group,
        block_cache_mb: cache,
        ..Default::default()
    };
    let options = Options {
        data_dir: DataDir::Config,
        ..Options::default()
    };
    let server = Harness::start(config, options).await?;
    let base = server.base.clone();
    let local = Local {
        server,
        _temp: temp,
    };
    Ok((base, Some(local), None))
}

async fn wait_ready(ctx: &Ctx) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match ctx.http.get(format!("{}/ready", ctx.base)).send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            _ if Instant::now() > deadline => {
                anyhow::bail!("the server at {} is not ready", ctx.base)
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The phases in order; each row carries its own rate and latencies.
async fn phases(ctx: &Arc<Ctx>, plan: &Plan) -> anyhow::Result<Vec<PhaseRow>> {
    let mut rows = Vec::new();
    let already = plan.preloaded_posts / data::POSTS_PER_BODY;
    ctx.loaded.fetch_max(already, Relaxed);
    ctx.next_new_body.fetch_max(already, Relaxed);
    let bodies = plan.preload_posts.div_ceil(data::POSTS_PER_BODY);
    if bodies > 0 {
        let row = preload(ctx, bodies, plan.preload_clients).await?;
        rows.push(row);
    }
    let kind = plan.update_kind;
    for &c in &plan.update_clients {
        let name = format!("update 1000 ({kind:?})").to_lowercase();
        rows.push(timed(ctx, &name, Work::Update(kind), c, plan.phase).await?);
    }
    for &c in &plan.single_clients {
        rows.push(timed(ctx, "update 1", Work::Single, c, plan.phase).await?);
    }
    for &c in &plan.find_clients {
        let name = format!("find {} rows", plan.find_rows);
        rows.push(timed(ctx, &name, Work::Find, c, plan.phase).await?);
    }
    for &(finds, updates) in &plan.mixed {
        let pace = plan.update_rate;
        rows.extend(mixed(ctx, kind, (finds, updates), pace, plan.phase).await?);
    }
    Ok(rows)
}

/// What a phase reads before and after: time, group commits, CPU (own and server's).
struct Meter {
    started: Instant,
    commits: Option<u64>,
    cpu: Option<f64>,
    server_cpu: Option<f64>,
}

impl Meter {
    async fn start(ctx: &Ctx) -> Meter {
        let commits = group_commits(ctx).await.ok();
        Meter {
            commits,
            cpu: raw::cpu_seconds(None),
            server_cpu: ctx.server_pid.and_then(|p| raw::cpu_seconds(Some(p))),
            started: Instant::now(),
        }
    }

    /// The phase's figures for `t` (`shared`: the phase ran other work beside `t`,
    /// so the commits and CPU are not `t`'s alone).
    async fn finish(&self, ctx: &Ctx, t: &Tally, shared: bool) -> crate::report::Measured {
        let secs = self.started.elapsed().as_secs_f64();
        let cpu = Some(raw::cpu_seconds(None).zip(self.cpu)).flatten();
        let server = ctx.server_pid.and_then(|p| raw::cpu_seconds(Some(p)));
        let commits = delta(self.commits, group_commits(ctx).await.ok());
        crate::report::Measured {
            requests: t.requests,
            errors: t.errors,
            posts: t.posts,
            secs,
            p50_us: t.hist.value_at_quantile(0.50),
            p99_us: t.hist.value_at_quantile(0.99),
            max_us: t.hist.max(),
            group_commits: commits,
            cpu_secs: cpu.map(|(b, a)| b - a),
            server_cpu_secs: server.zip(self.server_cpu).map(|(b, a)| b - a),
            shared,
            first_error: t.first_error.clone(),
        }
    }
}

/// Loads `bodies` new 1000-post bodies with `clients` clients (new keys).
async fn preload(ctx: &Arc<Ctx>, bodies: u64, clients: usize) -> anyhow::Result<PhaseRow> {
    let meter = Meter::start(ctx).await;
    let start = ctx.next_new_body.load(Relaxed);
    let end = start + bodies;
    let tasks: Vec<_> = (0..clients.max(1))
        .map(|_| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let mut t = Tally::new();
                loop {
                    let k = ctx.next_new_body.fetch_add(1, Relaxed);
                    if k >= end {
                        break t;
                    }
                    let body = ctx.template.body(k, data::SAMPLE_MRC);
                    one(
                        &ctx,
                        Work::Update(UpdateKind::New),
                        (Operation::Update, body, 1000),
                        &mut t,
                    )
                    .await;
                }
            })
        })
        .collect();
    let tally = join(tasks).await?;
    ctx.loaded.fetch_max(end, Relaxed);
    let m = meter.finish(ctx, &tally, false).await;
    Ok(PhaseRow::new("preload (new)", clients, m))
}

/// `clients` clients doing `work` for `length`.
async fn timed(
    ctx: &Arc<Ctx>,
    name: &str,
    work: Work,
    clients: usize,
    length: Duration,
) -> anyhow::Result<PhaseRow> {
    let meter = Meter::start(ctx).await;
    let end = meter.started + length;
    let tally = join(spawn_clients(ctx, work, clients, end, None)).await?;
    let m = meter.finish(ctx, &tally, false).await;
    Ok(PhaseRow::new(name, clients, m))
}

/// FindContent clients while 1000-post Update clients run (at `rate` posts/s
/// together, if given).
async fn mixed(
    ctx: &Arc<Ctx>,
    kind: UpdateKind,
    (finds, updates): (usize, usize),
    rate: Option<u64>,
    length: Duration,
) -> anyhow::Result<Vec<PhaseRow>> {
    let meter = Meter::start(ctx).await;
    let end = meter.started + length;
    let pace = rate.map(|r| Pace::new(meter.started, r));
    let u = spawn_clients(ctx, Work::Update(kind), updates, end, pace);
    let f = spawn_clients(ctx, Work::Find, finds, end, None);
    let (u, f) = (join(u).await?, join(f).await?);
    let name = format!("find {} rows, during updates", ctx.find_rows);
    let at = rate.map_or(String::new(), |r| format!(" at {r}/s"));
    let uname = format!("update 1000 ({kind:?}){at}, during finds").to_lowercase();
    let mut fm = meter.finish(ctx, &f, updates > 0).await;
    fm.group_commits = None; // the Updates' commits, on their row
    let mut um = meter.finish(ctx, &u, true).await;
    // Both rows cover the same span: the second reading differs only by the time
    // the first one took.
    um.secs = fm.secs;
    let mut rows = vec![PhaseRow::new(&name, finds, fm)];
    if updates > 0 {
        rows.push(PhaseRow::new(&uname, updates, um));
    }
    Ok(rows)
}

/// A fixed schedule shared by a phase's clients: request `k` is due at
/// `start + k × 1000 / rate` seconds. A client takes the next slot, waits for it
/// and sends; a late client sends at once, so a server that keeps up sees exactly
/// the rate and one that cannot shows it as a lower achieved rate.
#[derive(Clone)]
struct Pace {
    start: Instant,
    interval: Duration,
    next: Arc<AtomicU64>,
}

impl Pace {
    fn new(start: Instant, posts_per_s: u64) -> Pace {
        let per_request = data::POSTS_PER_BODY as f64 / posts_per_s.max(1) as f64;
        Pace {
            start,
            interval: Duration::from_secs_f64(per_request),
            next: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Waits for the next free slot; `None` once it is past `end`.
    async fn wait(&self, end: Instant) -> Option<()> {
        let k = self.next.fetch_add(1, Relaxed);
        let due = self.start + self.interval.mul_f64(k as f64);
        if due >= end {
            return None;
        }
        tokio::time::sleep_until(due.into()).await;
        Some(())
    }
}

fn spawn_clients(
    ctx: &Arc<Ctx>,
    work: Work,
    clients: usize,
    end: Instant,
    pace: Option<Pace>,
) -> Vec<tokio::task::JoinHandle<Tally>> {
    (0..clients)
        .map(|i| {
            let ctx = ctx.clone();
            let pace = pace.clone();
            tokio::spawn(async move {
                let mut t = Tally::new();
                let mut rng =
                    0x9E37_79B9_7F4A_7C15u64 ^ (i as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407);
                while Instant::now() < end {
                    if let Some(p) = &pace {
                        if p.wait(end).await.is_none() {
                            break;
                        }
                    }
                    rng = xorshift(rng);
                    let req = request(&ctx, work, rng);
                    one(&ctx, work, req, &mut t).await;
                }
                t
            })
        })
        .collect()
}

async fn join(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> anyhow::Result<Tally> {
    let mut all = Tally::new();
    for t in tasks {
        all.merge(t.await.context("a client task panicked")?);
    }
    Ok(all)
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// An operation, a body, and the posts it sends (Update) or should find (FindContent).
type Request = (Operation, Vec<u8>, u64);

/// Sends one request and records it.
async fn one(ctx: &Ctx, work: Work, (op, body, posts): Request, t: &mut Tally) {
    let url = format!("{}{}", ctx.base, endpoint_path(op));
    let call = SoapCall::with_body(url, op, "ei-load", body);
    let started = Instant::now();
    let result = send(ctx, call).await;
    let micros = started.elapsed().as_micros().max(1) as u64;
    t.hist.saturating_record(micros);
    t.requests += 1;
    match result.and_then(|(status, reply)| check(ctx.verify, work, status, &reply, posts)) {
        Ok(n) => t.posts += n,
        Err(e) => {
            t.errors += 1;
            t.first_error.get_or_insert(format!("{e:#}"));
        }
    }
}

/// The endpoint, body and posts (sent, or expected back) of the next request.
fn request(ctx: &Ctx, work: Work, rng: u64) -> Request {
    let loaded = ctx.loaded.load(Relaxed).max(1);
    match work {
        Work::Update(UpdateKind::New) => {
            let k = ctx.next_new_body.fetch_add(1, Relaxed);
            (
                Operation::Update,
                ctx.template.body(k, data::SAMPLE_MRC),
                1000,
            )
        }
        Work::Update(UpdateKind::Changed) => {
            let mrc = data::timestamp(ctx.next_mrc.fetch_add(1, Relaxed));
            (
                Operation::Update,
                ctx.template.body(rng % loaded, mrc),
                1000,
            )
        }
        Work::Update(UpdateKind::Same) => (
            Operation::Update,
            ctx.template.body(rng % loaded, data::SAMPLE_MRC),
            1000,
        ),
        Work::Single => {
            let n = ctx.next_single.fetch_add(1, Relaxed);
            (
                Operation::Update,
                data::singles_body(&ctx.posts, n, 1).into_bytes(),
                1,
            )
        }
        Work::Find => {
            let r = (rng >> 8) % (loaded * data::RESIDENTS_PER_BODY);
            let d = 1 + (rng >> 4) % data::DOMAINS;
            let c = (ctx.find_rows == 10).then_some(1 + (rng % 5));
            let body = data::find_body(&data::resident(r), d, c);
            (Operation::FindContent, body.into_bytes(), ctx.find_rows)
        }
    }
}

async fn send(ctx: &Ctx, call: SoapCall) -> anyhow::Result<(u16, bytes::Bytes)> {
    let mut request = ctx.http.post(call.url).body(call.body);
    for (name, value) in call.headers {
        request = request.header(name, value);
    }
    let resp = request.send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.bytes().await?))
}

/// Posts the reply accounts for: sent posts for an OK Update, rows for FindContent
/// (which must be the rows expected).
fn check(
    verify: Verify,
    work: Work,
    status: u16,
    body: &[u8],
    expected: u64,
) -> anyhow::Result<u64> {
    match work {
        Work::Find if verify == Verify::Count => {
            let rows = count_rows(body);
            match status {
                200 if rows == expected => Ok(expected),
                200 => anyhow::bail!("FindContent returned {rows} rows, expected {expected}"),
                s => anyhow::bail!("FindContent answered HTTP {s}"),
            }
        }
        Work::Find => match classify_find_content(status, body) {
            Outcome::Ok(rows) if rows.len() as u64 == expected => Ok(expected),
            Outcome::Ok(rows) => {
                anyhow::bail!(
                    "FindContent returned {} rows, expected {expected}",
                    rows.len()
                )
            }
            other => anyhow::bail!("{other}"),
        },
        _ => match classify_write(status, body) {
            Outcome::Ok(_) => Ok(expected),
            other => anyhow::bail!("{other}"),
        },
    }
}

fn delta(before: Option<u64>, after: Option<u64>) -> Option<u64> {
    Some(after?.saturating_sub(before?))
}

/// The `<ns2:engagement>` elements of a FindContent reply (the server's own prefix).
fn count_rows(body: &[u8]) -> u64 {
    memchr::memmem::find_iter(body, b"<ns2:engagement>").count() as u64
}

/// The server's `ei_store_group_commits_total`.
async fn group_commits(ctx: &Ctx) -> anyhow::Result<u64> {
    let text = ctx
        .http
        .get(format!("{}/metrics", ctx.base))
        .send()
        .await?
        .text()
        .await?;
    metric(&text, "ei_store_group_commits_total").context("no ei_store_group_commits_total")
}

/// An unlabelled counter's value in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// The exact number of posts from `/status`.
async fn status_posts(ctx: &Ctx) -> anyhow::Result<u64> {
    let v: serde_json::Value = ctx
        .http
        .get(format!("{}/status", ctx.base))
        .send()
        .await?
        .json()
        .await?;
    v["engagements"]
        .as_u64()
        .context("no engagements in /status")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_counter() {
        let text = "# TYPE ei_store_group_commits_total counter\nei_store_group_commits_total 42\nei_store_group_commits_totalx 1\n";
        assert_eq!(metric(text, "ei_store_group_commits_total"), Some(42));
        assert_eq!(metric(text, "nope"), None);
    }
}
