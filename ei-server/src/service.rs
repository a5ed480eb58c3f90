//! The three services: read the body, apply the contract's rules, write or read the
//! store, and encode the reply. Knows nothing of HTTP: [`Service::call`] takes the
//! correlation id and the body and returns a status and an XML body.

use crate::access::{AccessConfig, Identity};
use crate::apply::Change;
use crate::audit::Auditor;
use crate::clock;
use crate::codec::{self, CodecError, Request, ResultCode};
use crate::config::ErrorMode;
use crate::metrics::Metrics;
use crate::model::FindQuery;
use crate::operation::{Operation, WriteOperation};
use crate::rules::{self, EiError, RulesConfig};
use crate::store::audit::Access;
use crate::store::Store;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;

/// Bodies larger than this are parsed off the async executor.
const INLINE_PARSE_LIMIT: usize = 64 << 10;
/// A lookup scanning more stored posts than this goes to a blocking thread even when
/// they are all cached (a few hundred microseconds of work at most on the executor).
const INLINE_SCAN_LIMIT: usize = 1000;

/// A reply to send.
#[derive(Debug)]
pub struct Reply {
    /// 200, or 500 for a fault.
    pub status: u16,
    pub body: String,
    /// For metrics and logs: `OK`, the EI code, or `header`.
    pub outcome: &'static str,
}

/// What a write request did, for callers that build on it (notifications).
pub type Changes = Vec<Change>;

/// The services, sharing one store.
pub struct Service {
    rules: RulesConfig,
    error_mode: ErrorMode,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    /// Per operation (in [`Operation::ALL`] order): requests it may handle at once.
    in_flight: [tokio::sync::Semaphore; 3],
    max_in_flight: usize,
    /// The access log (off unless [`Service::with_auditor`]).
    auditor: Arc<Auditor>,
    /// Who may call what (no restriction unless [`Service::with_access`]); replaced
    /// whole on SIGHUP ([`Service::set_access`]).
    access: std::sync::RwLock<Arc<AccessConfig>>,
    /// Where write requests run (reads first, see [`crate::priority`]); `None`: on
    /// the caller's runtime.
    writes: Option<crate::priority::WriteRuntime>,
}

impl Service {
    pub fn new(rules: RulesConfig, error_mode: ErrorMode, store: Arc<Store>) -> Service {
        let metrics = store.metrics().clone();
        Service {
            rules,
            error_mode,
            store,
            in_flight: std::array::from_fn(|_| {
                tokio::sync::Semaphore::new(tokio::sync::Semaphore::MAX_PERMITS)
            }),
            max_in_flight: tokio::sync::Semaphore::MAX_PERMITS,
            auditor: Arc::new(Auditor::off(metrics.clone())),
            access: std::sync::RwLock::new(Arc::new(AccessConfig::default())),
            metrics,
            writes: None,
        }
    }

    /// Handles write requests on `writes` (see [`Service::call_shared`]).
    pub fn with_write_runtime(mut self, writes: crate::priority::WriteRuntime) -> Service {
        self.writes = Some(writes);
        self
    }

    /// [`Service::call_as`] from a shared service: a write request runs on the write
    /// runtime when there is one (reads first), anything else right here.
    pub async fn call_shared(
        this: &Arc<Service>,
        op: Operation,
        correlation_id: Option<&str>,
        who: &Identity,
        body: Bytes,
    ) -> Reply {
        let Some(writes) = this.writes.as_ref().filter(|_| op.write().is_some()) else {
            return this.call_as(op, correlation_id, who, body).await;
        };
        let service = this.clone();
        let id = correlation_id.map(str::to_owned);
        let who = who.clone();
        let work = async move { service.call_as(op, id.as_deref(), &who, body).await };
        let span = tracing::Span::current();
        match writes
            .run(tracing::Instrument::instrument(work, span))
            .await
        {
            Ok(reply) => reply,
            Err(e) => this.refuse(op, internal("write task", &e)),
        }
    }

    /// Lets callers call and write only what `access` allows.
    pub fn with_access(self, access: AccessConfig) -> Service {
        self.set_access(access);
        self
    }

    /// The `[access]` table in force.
    pub fn access(&self) -> Arc<AccessConfig> {
        self.access
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the `[access]` table; requests already past a check keep the old one.
    pub fn set_access(&self, access: AccessConfig) {
        *self.access.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(access);
    }

    /// Whether `who` may call `op` at all (before its body is read); the refusal is
    /// answered and recorded as the service would.
    pub fn authorize(&self, op: Operation, who: &Identity) -> Result<(), Reply> {
        self.access()
            .check_service(who, op)
            .map_err(|e| self.refuse(op, e))
    }

    /// Records every served request in `auditor`'s access log.
    pub fn with_auditor(mut self, auditor: Arc<Auditor>) -> Service {
        self.auditor = auditor;
        self
    }

    /// Caps the requests each operation handles at once (see [`Service::admit`]).
    pub fn with_max_in_flight(mut self, n: usize) -> Service {
        self.in_flight = std::array::from_fn(|_| tokio::sync::Semaphore::new(n));
        self.max_in_flight = n;
        self
    }

    /// Admits one request of `op` (held until its reply is written, body read
    /// included), or answers it with the busy fault when `op` is at its cap.
    pub fn admit(&self, op: Operation) -> Result<tokio::sync::SemaphorePermit<'_>, Reply> {
        let i = Operation::ALL
            .iter()
            .position(|o| *o == op)
            .expect("every operation is in ALL");
        self.in_flight[i].try_acquire().map_err(|_| {
            self.refuse(
                op,
                EiError::Busy(format!(
                    "{} already handles {} requests",
                    op.name(),
                    self.max_in_flight
                )),
            )
        })
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Handles one call of `op` by an anonymous caller and records it in the metrics
    /// (and as `anonymous` in the access log).
    pub async fn call(&self, op: Operation, correlation_id: Option<&str>, body: Bytes) -> Reply {
        self.call_as(op, correlation_id, &Identity::Anonymous, body)
            .await
    }

    /// [`Service::call`] for `who` (see [`crate::access::identify`]): what it may
    /// call and write is checked, and the access log names it.
    pub async fn call_as(
        &self,
        op: Operation,
        correlation_id: Option<&str>,
        who: &Identity,
        body: Bytes,
    ) -> Reply {
        let started = Instant::now();
        let access = self
            .auditor
            .enabled()
            .then(|| crate::audit::access(who.name().to_owned(), correlation_id));
        let reply = match self.dispatch(op, correlation_id, who, access, body).await {
            Ok(r) => r,
            Err(e) => self.error_reply(op, &e),
        };
        self.metrics.request(op, reply.outcome, started.elapsed());
        reply
    }

    async fn dispatch(
        &self,
        op: Operation,
        correlation_id: Option<&str>,
        who: &Identity,
        access: Option<Access>,
        body: Bytes,
    ) -> Result<Reply, EiError> {
        rules::check_correlation_id(correlation_id)?;
        self.access().check_service(who, op)?;
        // Maintenance is answered before the body is read (the writer checks again).
        if op != Operation::FindContent && self.store.is_write_locked() {
            return Err(EiError::Maintenance);
        }
        let request = parse(body)
            .await
            .map_err(|e| EiError::Technical(e.to_string()))?;
        if request.operation() != op {
            return Err(EiError::Technical(format!(
                "this endpoint serves {op} but the request is {}",
                request.operation()
            )));
        }
        match request {
            Request::FindContent { query, .. } => {
                let q = rules::validate_find(*query)?;
                let (found, body, q) = self.find(q).await?;
                tracing::debug!(found, "FindContent");
                if let Some(access) = access {
                    self.auditor.lookup(vec![access.into_record(
                        op.name(),
                        q.registered_resident_identification,
                        q.service_domain,
                        found as u64,
                    )]);
                }
                Ok(ok_reply(body))
            }
            Request::Write {
                operation,
                logical_address,
                transactions,
            } => self
                .write_as(
                    operation,
                    logical_address.as_deref(),
                    transactions,
                    who,
                    access,
                )
                .await
                .map(|_| {
                    let mut body = String::with_capacity(400);
                    codec::write_result(&mut body, operation, ResultCode::Ok, None);
                    ok_reply(body)
                }),
        }
    }

    /// Looks `q` up and writes the FindContent reply: from memory on this thread when
    /// every block the scan needs is cached (no file read, so nothing blocks the
    /// executor) and it is short, else again on a blocking thread, which may read the
    /// disk. Answers the posts found, the reply body, and `q` back.
    async fn find(&self, q: FindQuery) -> Result<(usize, String, FindQuery), EiError> {
        let mut body = String::with_capacity(8192);
        codec::find_content_begin(&mut body);
        let head = body.len();
        let cached = self
            .store
            .find_cached(&q, INLINE_SCAN_LIMIT, |p| {
                codec::find_content_push(&mut body, p)
            })
            .map_err(|e| internal("find", &e))?;
        self.metrics.find_read(cached.is_none());
        let (found, mut body, q) = match cached {
            Some(found) => (found, body, q),
            None => {
                // The posts the declined scan wrote go; the reply's head stays.
                body.truncate(head);
                let store = self.store.clone();
                tokio::task::spawn_blocking(move || {
                    let found = store.find_each(&q, |p| codec::find_content_push(&mut body, p))?;
                    Ok::<_, crate::store::StoreError>((found, body, q))
                })
                .await
                .map_err(|e| internal("find task", &e))?
                .map_err(|e| internal("find", &e))?
            }
        };
        codec::find_content_end(&mut body);
        Ok((found, body, q))
    }

    /// Validates and applies an Update or ProcessNotification; returns its effective
    /// changes.
    pub async fn write(
        &self,
        op: WriteOperation,
        logical_address: Option<&str>,
        transactions: Vec<crate::model::RawTransaction>,
    ) -> Result<Changes, EiError> {
        self.write_as(
            op,
            logical_address,
            transactions,
            &Identity::Anonymous,
            None,
        )
        .await
    }

    /// [`Service::write`] for `who`, who may write only the source systems
    /// `[access.update_sources]` gives it; recorded in the access log as `access` (in
    /// the same group commit as the posts).
    pub async fn write_as(
        &self,
        op: WriteOperation,
        logical_address: Option<&str>,
        transactions: Vec<crate::model::RawTransaction>,
        who: &Identity,
        access: Option<Access>,
    ) -> Result<Changes, EiError> {
        let valid = match op {
            WriteOperation::Update => {
                rules::validate_update(&self.rules, logical_address, transactions)?
            }
            WriteOperation::ProcessNotification => {
                rules::validate_notification(&self.rules, transactions)?
            }
        };
        self.access().check_sources(
            who,
            op,
            valid.iter().map(|t| t.engagement.key.source_system()),
        )?;
        if valid.is_empty() {
            // ProcessNotification whose every transaction was this index's own (pR4).
            return Ok(Vec::new());
        }
        let n = valid.len();
        let changes = self
            .store
            .write_audited(op, valid, clock::now(), access)
            .await
            .map_err(|e| match *e {
                crate::store::StoreError::Busy => EiError::Busy("the writer queue is full".into()),
                crate::store::StoreError::WriteLocked => EiError::Maintenance,
                _ => internal("write", &*e),
            })?;
        tracing::info!(transactions = n, changes = changes.len(), "{op} applied");
        Ok(changes)
    }

    /// Answers a call refused before it reached the service (e.g. an oversized body)
    /// exactly as the service would, and records it.
    pub fn refuse(&self, op: Operation, e: EiError) -> Reply {
        let reply = self.error_reply(op, &e);
        self.metrics
            .request(op, reply.outcome, std::time::Duration::ZERO);
        reply
    }

    fn error_reply(&self, op: Operation, e: &EiError) -> Reply {
        let wire = e.wire();
        let outcome = match e {
            EiError::Busy(_) => "busy",
            EiError::Forbidden { .. } => "forbidden",
            _ => wire.code.unwrap_or("header"),
        };
        if matches!(e, EiError::Internal(_)) {
            tracing::error!(code = outcome, "request failed: {e}");
        } else if matches!(e, EiError::Busy(_)) {
            tracing::warn!(code = outcome, "request refused: {e}");
        } else {
            tracing::info!(code = outcome, "request refused: {}", wire.text);
        }
        let mut body = String::with_capacity(512);
        let write = op.write().filter(|_| e.is_logical());
        if let (ErrorMode::ResultCode, Some(write)) = (self.error_mode, write) {
            codec::write_result(&mut body, write, ResultCode::Error, Some(&wire.text));
            return Reply {
                status: 200,
                body,
                outcome,
            };
        }
        codec::write_fault(&mut body, wire.fault_code.qname(), &wire.text);
        Reply {
            status: 500,
            body,
            outcome,
        }
    }
}

fn internal(what: &str, e: &dyn std::fmt::Display) -> EiError {
    tracing::error!(error = %e, "{what} failed");
    EiError::Internal(format!("{what}: {e}"))
}

fn ok_reply(body: String) -> Reply {
    Reply {
        status: 200,
        body,
        outcome: "OK",
    }
}

async fn parse(body: Bytes) -> Result<Request, CodecError> {
    if body.len() <= INLINE_PARSE_LIMIT {
        return codec::parse_request(&body);
    }
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _enter = span.enter();
        codec::parse_request(&body)
    })
    .await
    .unwrap_or_else(|e| Err(CodecError::Xml(format!("parser task failed: {e}"))))
}
