//! Sending one request to the index and judging its reply: a call succeeds only when
//! the server answers HTTP 200 with `ResultCode` OK (writes) or a FindContent reply.

use crate::workload::Request;
use ei_server::codec::client::{classify_find_content, classify_write, Outcome, SoapCall};
use ei_server::operation::Operation;
use ei_server::wsdl::endpoint_path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Why a call did not succeed. [`CallError::kind`] is the short name reports count by.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("SOAP fault {code}: {message}")]
    Fault { code: String, message: String },
    #[error("ResultCode ERROR: {comment}")]
    Result { comment: String },
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("unreadable reply: {0}")]
    Reply(String),
    #[error("connection failed: {0}")]
    Transport(String),
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("still unanswered when the phase ended")]
    Unfinished,
    #[error("the request could not be built: {0}")]
    Build(String),
}

impl CallError {
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Fault { .. } => "fault",
            CallError::Result { .. } => "result-error",
            CallError::Status(_) => "http-status",
            CallError::Reply(_) => "bad-reply",
            CallError::Transport(_) => "connection",
            CallError::Timeout(_) => "timeout",
            CallError::Unfinished => "unfinished",
            CallError::Build(_) => "build",
        }
    }
}

/// Why the target could not be asked for its status.
#[derive(Debug, thiserror::Error)]
#[error("GET {url}: {message}")]
pub struct StatusError {
    pub url: String,
    pub message: String,
}

/// A client of one index at `base` (e.g. `http://127.0.0.1:8080`).
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    next_id: std::sync::Arc<AtomicU64>,
}

impl Client {
    pub fn new(base: &str) -> Client {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .expect("an HTTP client without TLS always builds");
        Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            next_id: Default::default(),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Posts `req` to its endpoint with a fresh correlation id and judges the reply.
    pub async fn call(&self, req: Request) -> Result<(), CallError> {
        let op = req.operation;
        let url = format!("{}{}", self.base, endpoint_path(op));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let call = SoapCall::with_body(url, op, format!("capacity-{id}"), req.body);
        let mut request = self.http.post(call.url).body(call.body);
        for (name, value) in call.headers {
            request = request.header(name, value);
        }
        let resp = request
            .send()
            .await
            .map_err(|e| CallError::Transport(error_chain(&e)))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| CallError::Transport(error_chain(&e)))?;
        judge(op, status, &body)
    }

    /// Asks `GET /status`: `Err` only when no HTTP answer comes; the index's
    /// engagement count when the answer is ei-server's status JSON.
    pub async fn status(&self) -> Result<Option<u64>, StatusError> {
        let url = format!("{}/status", self.base);
        let resp = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| StatusError {
                url: url.clone(),
                message: error_chain(&e),
            })?;
        let json: Option<serde_json::Value> = resp.json().await.ok();
        Ok(json.and_then(|j| j.get("engagements").and_then(|v| v.as_u64())))
    }
}

/// Success is HTTP 200 and the reply the operation expects.
fn judge(op: Operation, status: u16, body: &[u8]) -> Result<(), CallError> {
    match op {
        Operation::FindContent => failure(classify_find_content(status, body)),
        Operation::Update | Operation::ProcessNotification => failure(classify_write(status, body)),
    }
}

/// The call error an outcome is, if it is one.
fn failure<T>(outcome: Outcome<T>) -> Result<(), CallError> {
    Err(match outcome {
        Outcome::Ok(_) => return Ok(()),
        Outcome::Fault { code, text, .. } => CallError::Fault {
            code,
            message: text,
        },
        Outcome::Refused { comment } => CallError::Result { comment },
        Outcome::Status { status, .. } => CallError::Status(status),
        Outcome::Unreadable { reason } => CallError::Reply(reason),
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use ei_server::codec;
    use ei_server::operation::WriteOperation;

    #[test]
    fn judges_replies() {
        let mut ok = String::new();
        codec::write_result(&mut ok, WriteOperation::Update, codec::ResultCode::Ok, None);
        assert_eq!(judge(Operation::Update, 200, ok.as_bytes()), Ok(()));
        assert_eq!(
            judge(Operation::Update, 502, ok.as_bytes()),
            Err(CallError::Status(502))
        );
        let mut fault = String::new();
        codec::write_fault(&mut fault, "soap:Client", "EI002: same key");
        let e = judge(Operation::Update, 500, fault.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), "fault");
        assert!(e.to_string().contains("EI002: same key"), "{e}");
        let mut err = String::new();
        let code = codec::ResultCode::Error;
        codec::write_result(&mut err, WriteOperation::Update, code, Some("EI004"));
        let e = judge(Operation::Update, 200, err.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), "result-error");
        let mut found = String::new();
        codec::write_find_content_response(&mut found, []);
        assert_eq!(judge(Operation::FindContent, 200, found.as_bytes()), Ok(()));
        assert_eq!(
            judge(Operation::FindContent, 200, b"<x/>")
                .unwrap_err()
                .kind(),
            "bad-reply"
        );
    }
}
