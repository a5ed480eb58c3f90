//! The connection layer under the routes: accepts at most `max_connections` at once,
//! serves HTTP/1.1 with hyper, and bounds the time a client may take. A request's
//! head must arrive within the header-read timeout of its first byte; an idle
//! keep-alive connection is closed after the idle timeout (the body's own timeout is
//! the SOAP handler's, which answers it with a fault). On stop: no more accepts,
//! idle connections close, in-flight requests get the drain deadline, then whatever is
//! still open is dropped.
//!
//! With TLS ([`crate::tls::Tls`]) each accepted socket first completes its handshake
//! (within the header-read timeout) with the configuration current at accept, and
//! every request on it carries the [`Caller`] the client certificate names.
//!
//! Why not `axum::serve`: it installs no timer, so a client sending one byte at a
//! time held a connection (and SIGTERM) forever.

use crate::tls::{Caller, Tls};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// The bounds of one listener.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub header_read: Duration,
    pub idle: Duration,
    pub max_connections: usize,
    pub drain: Duration,
}

/// What the connection layer counts, for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnStats {
    open: AtomicU64,
    accepted: AtomicU64,
    header_timeouts: AtomicU64,
    idle_closed: AtomicU64,
    dropped_at_drain: AtomicU64,
    tls_failed: AtomicU64,
}

impl ConnStats {
    /// Connections closed because their request head was too slow.
    pub fn header_timeouts(&self) -> u64 {
        self.header_timeouts.load(Relaxed)
    }

    /// Connections dropped when the drain deadline passed.
    pub fn dropped_at_drain(&self) -> u64 {
        self.dropped_at_drain.load(Relaxed)
    }

    /// Connections whose TLS handshake failed or timed out.
    pub fn tls_failed(&self) -> u64 {
        self.tls_failed.load(Relaxed)
    }

    /// Prometheus text.
    pub fn render(&self) -> String {
        let g = |v: &AtomicU64| v.load(Relaxed);
        format!(
            "# HELP ei_connections_open Open connections on the service listener.\n\
             # TYPE ei_connections_open gauge\nei_connections_open {}\n\
             # HELP ei_connections_accepted_total Connections accepted.\n\
             # TYPE ei_connections_accepted_total counter\nei_connections_accepted_total {}\n\
             # HELP ei_connections_closed_total Connections the server closed, by reason.\n\
             # TYPE ei_connections_closed_total counter\n\
             ei_connections_closed_total{{reason=\"header_timeout\"}} {}\n\
             ei_connections_closed_total{{reason=\"idle\"}} {}\n\
             ei_connections_closed_total{{reason=\"drain_deadline\"}} {}\n\
             ei_connections_closed_total{{reason=\"tls_handshake\"}} {}\n",
            g(&self.open),
            g(&self.accepted),
            g(&self.header_timeouts),
            g(&self.idle_closed),
            g(&self.dropped_at_drain),
            g(&self.tls_failed),
        )
    }
}

/// Serves `app` on `listener` (HTTPS when `tls` is set) until `stop` turns true, then
/// drains within the deadline. Returns when every connection is closed or dropped.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stats: Arc<ConnStats>,
    tls: Option<Arc<Tls>>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = stopped(&mut stop) => break,
        };
        let socket = tokio::select! {
            r = listener.accept() => match r {
                Ok((socket, _)) => socket,
                Err(e) => {
                    // Out of file descriptors and the like: back off, do not spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        stats.accepted.fetch_add(1, Relaxed);
        let _ = socket.set_nodelay(true);
        let (app, stats, stop) = (app.clone(), stats.clone(), stop.clone());
        match &tls {
            None => {
                tasks.spawn(async move {
                    connection(socket, app, limits, stats, stop, None).await;
                    drop(permit);
                });
            }
            Some(tls) => {
                let acceptor = tls.acceptor();
                tasks.spawn(async move {
                    if let Some((io, caller)) = handshake(acceptor, socket, &limits, &stats).await {
                        connection(io, app, limits, stats, stop, Some(caller)).await;
                    }
                    drop(permit);
                });
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.drain, drain).await.is_err() {
        let n = tasks.len();
        stats.dropped_at_drain.fetch_add(n as u64, Relaxed);
        tracing::warn!(
            connections = n,
            "drain deadline passed; dropping the connections still open"
        );
        tasks.shutdown().await;
    }
}

/// Resolves once `stop` is true (the guard `wait_for` returns is not `Send`).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Counts an open connection for as long as it lives.
struct OpenGuard(Arc<ConnStats>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Relaxed);
    }
}

/// The TLS handshake, within the header-read timeout; the caller its client
/// certificate names. `None` (counted, logged at debug) when it fails.
async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    socket: TcpStream,
    limits: &Limits,
    stats: &ConnStats,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, Caller)> {
    let peer = socket.peer_addr().ok();
    match tokio::time::timeout(limits.header_read, acceptor.accept(socket)).await {
        Ok(Ok(tls)) => {
            let hsa_id = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(crate::tls::caller_hsa_id)
                .map(Arc::from);
            Some((tls, Caller { hsa_id }))
        }
        Ok(Err(e)) => {
            stats.tls_failed.fetch_add(1, Relaxed);
            tracing::debug!(?peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            stats.tls_failed.fetch_add(1, Relaxed);
            tracing::debug!(
                ?peer,
                "TLS handshake not done within the header-read timeout"
            );
            None
        }
    }
}

/// One connection: hyper's HTTP/1.1 under a watchdog for the head and idle timeouts.
/// `caller`: on HTTPS, who is calling, attached to every request.
async fn connection<I>(
    socket: I,
    app: Router,
    limits: Limits,
    stats: Arc<ConnStats>,
    mut stop: watch::Receiver<bool>,
    caller: Option<Caller>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    stats.open.fetch_add(1, Relaxed);
    let _open = OpenGuard(stats.clone());
    let activity = Arc::new(Activity::new());
    let io = Watched {
        inner: socket,
        activity: activity.clone(),
    };
    let tower = hyper_util::service::TowerToHyperService::new(app);
    let tracked = activity.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        if let Some(c) = &caller {
            req.extensions_mut().insert(c.clone());
        }
        let busy = RequestGuard::start(tracked.clone());
        let fut = hyper::service::Service::call(&tower, req);
        async move {
            let r = fut.await;
            drop(busy);
            r
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut stopping = false;
    // One timer for the connection's life, moved only when the deadline does: while a
    // request is handled there is none, and the timer left armed firing early finds
    // nothing expired (cheaper than re-arming it at every wake-up).
    let check = tokio::time::sleep(limits.idle);
    tokio::pin!(check);
    loop {
        if let Some(at) = activity.deadline(&limits) {
            if check.deadline() != at {
                check.as_mut().reset(at);
            }
        }
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = activity.changed.notified() => {}
            _ = check.as_mut() => {
                match activity.expired(&limits, Instant::now()) {
                    Some(Phase::Head) => {
                        stats.header_timeouts.fetch_add(1, Relaxed);
                        tracing::info!("closing a connection: request head not received within the header-read timeout");
                        return;
                    }
                    Some(Phase::Idle) => {
                        stats.idle_closed.fetch_add(1, Relaxed);
                        return;
                    }
                    None => {
                        // Not expired (a request is handled, or one ended since):
                        // look again within the shortest timeout (never late).
                        let later = Instant::now() + limits.idle.min(limits.header_read);
                        check.as_mut().reset(later);
                    }
                }
            }
            _ = stopped(&mut stop), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Where a connection is, for its watchdog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request (since `since`).
    Idle,
    /// A request's first bytes have arrived, its head has not.
    Head,
}

#[derive(Debug)]
struct ActivityState {
    in_flight: u32,
    idle_since: Instant,
    head_started: Option<Instant>,
}

/// Shared by a connection's I/O wrapper, its service and its watchdog, which is
/// woken whenever the phase changes.
#[derive(Debug)]
struct Activity {
    state: Mutex<ActivityState>,
    changed: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            state: Mutex::new(ActivityState {
                in_flight: 0,
                idle_since: Instant::now(),
                head_started: None,
            }),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes arrived: between requests they start a head.
    fn read(&self) {
        let mut s = self.lock();
        if s.in_flight == 0 && s.head_started.is_none() {
            s.head_started = Some(Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }

    /// When the watchdog must look again: `None` while a request is handled.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        let s = self.lock();
        match (s.in_flight, s.head_started) {
            (0, Some(t)) => Some(t + limits.header_read),
            (0, None) => Some(s.idle_since + limits.idle),
            _ => None,
        }
    }

    /// The phase whose timeout has passed at `now`, if any.
    fn expired(&self, limits: &Limits, now: Instant) -> Option<Phase> {
        let s = self.lock();
        match (s.in_flight, s.head_started) {
            (0, Some(t)) if now >= t + limits.header_read => Some(Phase::Head),
            (0, None) if now >= s.idle_since + limits.idle => Some(Phase::Idle),
            _ => None,
        }
    }
}

/// Marks a request as handled (its head was read) until its response is ready.
struct RequestGuard(Arc<Activity>);

impl RequestGuard {
    /// No wake-up for the watchdog: a handled request has no deadline, so the one it
    /// has armed can only fire early, and finds nothing expired.
    fn start(a: Arc<Activity>) -> RequestGuard {
        let mut s = a.lock();
        s.in_flight += 1;
        s.head_started = None;
        drop(s);
        RequestGuard(a)
    }
}

impl Drop for RequestGuard {
    /// The idle deadline starts now, later than any the watchdog has armed; when that
    /// one fires, the watchdog moves on to this one (no wake-up needed here either).
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.in_flight -= 1;
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
        }
    }
}

/// The socket, telling [`Activity`] when bytes arrive.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
