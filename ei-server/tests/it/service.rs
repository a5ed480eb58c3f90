//! The services without HTTP: [`Service::call`] on a real store in a temp dir, for
//! dispatch (which request each endpoint serves) and the error mode (a SOAP fault or
//! `ResultCode=ERROR`), and the outcome every call is counted under.

use crate::common::*;
use ei_server::codec::{parse_reply, Operation, Reply, ResultCode};
use ei_server::config::{Config, ErrorMode};
use ei_server::metrics::Metrics;
use ei_server::service::{self, Service};
use ei_server::store::Store;
use std::sync::Arc;

const DOMAIN: &str = "riv:clinicalprocess:healthcond:description";

/// A service over a fresh store, no listener.
struct Index {
    /// `None` only inside [`Index::reopen`].
    service: Option<Service>,
    config: Config,
    _dir: tempfile::TempDir,
}

fn index(adjust: impl FnOnce(&mut Config)) -> Index {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(|c| {
        c.data_dir = dir.path().join("data");
        adjust(c);
    });
    Index {
        service: Some(open_service(&config)),
        config,
        _dir: dir,
    }
}

fn open_service(config: &Config) -> Service {
    let metrics = Arc::new(Metrics::default());
    let store = ei_server::server::open_store(config, metrics).unwrap();
    Service::new(config.rules(), config.error_mode, Arc::new(store))
}

impl Index {
    fn service(&self) -> &Service {
        self.service.as_ref().expect("open")
    }

    async fn call(&self, op: Operation, body: &str) -> service::Reply {
        self.service()
            .call(op, Some("svc"), body.to_owned().into())
            .await
    }

    fn store(&self) -> &Arc<Store> {
        self.service().store()
    }

    /// Closes the store and opens it again (with new metrics).
    fn reopen(&mut self) {
        self.store().close();
        self.service = None;
        self.service = Some(open_service(&self.config));
    }

    /// `ei_find_reads_total{from}`: where FindContent's scans ran.
    fn reads_from(&self, from: &str) -> u64 {
        let text = self.store().metrics().render(&[]);
        let line = format!("ei_find_reads_total{{from=\"{from}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&line))
            .map_or(0, |n| n.parse().unwrap())
    }

    /// `ei_requests_total` of `service` with `outcome`.
    fn counted(&self, service: &str, outcome: &str) -> u64 {
        let text = self.store().metrics().render(&[]);
        let line = format!("ei_requests_total{{service=\"{service}\",outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&line))
            .map_or(0, |n| n.parse().unwrap())
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        self.store().close();
    }
}

fn notification_body(owner: &str) -> String {
    update_body(
        "x",
        &[("191212121212", "upp", Some("20200101000000"))],
        false,
    )
    .replace("Update", "ProcessNotification")
    .replace(
        "</c:dataController>",
        &format!("</c:dataController><c:owner>{owner}</c:owner>"),
    )
}

fn one_post() -> String {
    update_body("5565594230", &[("191212121212", "voo", None)], false)
}

fn reply(r: &service::Reply) -> Reply {
    parse_reply(r.body.as_bytes()).unwrap()
}

/// `(fault code, EI code)` of a fault reply.
fn fault_of(r: &service::Reply) -> (String, String) {
    assert_eq!(r.status, 500, "{}", r.body);
    match reply(r) {
        Reply::Fault { code, message } => (code, message[..5].to_owned()),
        other => panic!("not a fault: {other:?}"),
    }
}

#[tokio::test]
async fn each_endpoint_serves_its_own_operation() {
    let ix = index(|_| {});
    let r = ix.call(Operation::Update, &one_post()).await;
    assert_eq!((r.status, r.outcome), (200, "OK"), "{}", r.body);
    assert!(matches!(
        reply(&r),
        Reply::Result {
            code: ResultCode::Ok,
            ..
        }
    ));
    let r = ix
        .call(Operation::ProcessNotification, &notification_body("other"))
        .await;
    assert_eq!((r.status, r.outcome), (200, "OK"), "{}", r.body);
    assert!(r.body.contains("ProcessNotificationResponse"), "{}", r.body);
    let r = ix
        .call(
            Operation::FindContent,
            &find_body("191212121212", DOMAIN, ""),
        )
        .await;
    assert_eq!((r.status, r.outcome), (200, "OK"), "{}", r.body);
    let Reply::Engagements(found) = reply(&r) else {
        panic!("{}", r.body)
    };
    assert_eq!(found.len(), 2, "own post and the other index's: {found:?}");
    assert_eq!(ix.store().engagement_count(), 2);
    for op in ["Update", "ProcessNotification", "FindContent"] {
        assert_eq!(ix.counted(op, "OK"), 1, "{op}");
    }
}

/// Guards dispatch: a request of another operation is refused as EI000 (the caller's
/// error) on every endpoint, and nothing is written.
#[tokio::test]
async fn a_request_on_the_wrong_endpoint_is_refused_and_changes_nothing() {
    let ix = index(|_| {});
    let find = find_body("191212121212", DOMAIN, "");
    let cases = [
        (Operation::Update, find.clone()),
        (Operation::Update, notification_body("other")),
        (Operation::ProcessNotification, one_post()),
        (Operation::ProcessNotification, find),
        (Operation::FindContent, one_post()),
    ];
    for (op, body) in &cases {
        let r = ix.call(*op, body).await;
        assert_eq!(r.outcome, "EI000", "{op:?}: {}", r.body);
        assert_eq!(
            fault_of(&r),
            ("soap:Client".into(), "EI000".into()),
            "{op:?}"
        );
    }
    assert_eq!(ix.store().engagement_count(), 0);
    assert_eq!(ix.counted("Update", "EI000"), 2);
}

#[tokio::test]
async fn a_missing_or_blank_correlation_id_is_refused_before_the_body_is_read() {
    let ix = index(|_| {});
    for id in [None, Some(""), Some("  ")] {
        let r = ix
            .service()
            .call(Operation::Update, id, "not xml at all".into())
            .await;
        assert_eq!((r.status, r.outcome), (500, "header"), "{id:?}");
        match reply(&r) {
            Reply::Fault { code, message } => {
                assert_eq!(code, "soap:Client");
                assert_eq!(
                    message,
                    "Mandatory HTTP header x-skltp-correlation-id is missing"
                );
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ix.counted("Update", "header"), 3);
}

/// The same three bad requests in both error modes: a logical error of a write is a
/// fault or `ResultCode=ERROR` as configured; FindContent's and technical errors are
/// faults in both.
#[tokio::test]
async fn the_error_mode_decides_how_logical_errors_are_answered() {
    let duplicate = update_body(
        "5565594230",
        &[("191212121212", "voo", None), ("191212121212", "voo", None)],
        false,
    );
    let bad_filter = find_body(
        "191212121212",
        DOMAIN,
        "<f:mostRecentContent>20241301000000</f:mostRecentContent>",
    );
    let unreadable = "<s:Envelope";
    for mode in [ErrorMode::Fault, ErrorMode::ResultCode] {
        let ix = index(|c| c.error_mode = mode);
        let r = ix.call(Operation::Update, &duplicate).await;
        assert_eq!(r.outcome, "EI002", "{mode:?}");
        match mode {
            ErrorMode::Fault => {
                assert_eq!(fault_of(&r), ("soap:Client".into(), "EI002".into()))
            }
            ErrorMode::ResultCode => {
                assert_eq!(r.status, 200, "{}", r.body);
                match reply(&r) {
                    Reply::Result { code, comment } => {
                        assert_eq!(code, ResultCode::Error);
                        assert!(comment.unwrap().starts_with("EI002: "));
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        let r = ix.call(Operation::FindContent, &bad_filter).await;
        assert_eq!(r.outcome, "EI004", "{mode:?}");
        assert_eq!(fault_of(&r), ("soap:Client".into(), "EI004".into()));
        let r = ix.call(Operation::Update, unreadable).await;
        assert_eq!(r.outcome, "EI000", "{mode:?}");
        assert_eq!(fault_of(&r), ("soap:Client".into(), "EI000".into()));
        assert_eq!(ix.store().engagement_count(), 0, "{mode:?}");
    }
}

/// A refusal before the service (the HTTP layer's oversized body) is answered and
/// counted exactly as the service would.
#[tokio::test]
async fn a_refusal_from_outside_is_answered_like_the_service() {
    let ix = index(|_| {});
    let e = ei_server::rules::EiError::Technical("the body is too large".into());
    let r = ix.service().refuse(Operation::FindContent, e);
    assert_eq!(r.outcome, "EI000");
    assert_eq!(fault_of(&r), ("soap:Client".into(), "EI000".into()));
    assert_eq!(ix.counted("FindContent", "EI000"), 1);
}

/// A lookup whose blocks are all in memory is answered on the request's own thread; one
/// that needs the disk goes to a blocking thread, with the same reply; each is counted.
#[tokio::test]
async fn a_lookup_reads_from_memory_when_cached_and_on_a_blocking_thread_when_not() {
    let mut ix = index(|_| {});
    let r = ix.call(Operation::Update, &one_post()).await;
    assert_eq!(r.outcome, "OK", "{}", r.body);
    let find = find_body("191212121212", DOMAIN, "");
    let fresh = ix.call(Operation::FindContent, &find).await;
    assert_eq!(fresh.outcome, "OK", "{}", fresh.body);
    assert!(matches!(reply(&fresh), Reply::Engagements(e) if e.len() == 1));
    assert_eq!((ix.reads_from("memory"), ix.reads_from("blocking")), (1, 0));

    // Reopened: the post is in a table file whose blocks nothing has read.
    ix.reopen();
    let from_disk = ix.call(Operation::FindContent, &find).await;
    assert_eq!(from_disk.body, fresh.body);
    assert_eq!((ix.reads_from("memory"), ix.reads_from("blocking")), (0, 1));
    let cached = ix.call(Operation::FindContent, &find).await;
    assert_eq!(cached.body, fresh.body);
    assert_eq!((ix.reads_from("memory"), ix.reads_from("blocking")), (1, 1));
}
