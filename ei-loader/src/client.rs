//! The index's two services over HTTP: Update (with the LogicalAddress header) and
//! FindContent, each call with its own `x-skltp-correlation-id`. Replies are sorted
//! into what the caller does next: done, a contract fault about the records (split
//! and isolate), a failure worth retrying, or a failure retrying cannot fix.

use ei_server::codec::client::{classify_find_content, classify_write, Outcome, SoapCall};
use ei_server::model::{RawEngagement, Transaction};
use ei_server::operation::WriteOperation;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// TLS files for an index reached over HTTPS: a client certificate for mutual TLS (the
/// platform's SITHS function certificate) and the CA certificates to trust. Paths are
/// absolute in a plan.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM client certificate (chain); needs `key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert` (PKCS#8, PKCS#1 or SEC1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// PEM CA certificates: when set, the only roots trusted for the server;
    /// otherwise the system's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

/// Why a call did not get a usable answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Transport errors, timeouts, HTTP 5xx other than contract faults: retry later.
    #[error("{0}")]
    Retryable(String),
    /// Retrying cannot help (wrong address, routing refused, not an index).
    #[error("{0}")]
    Fatal(String),
    /// The index is in maintenance (its write lock is on): wait and send again, for
    /// as long as it takes (not counted against the attempt limit).
    #[error("{0}")]
    Paused(String),
}

/// The answer to an Update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// ResultCode OK: every post is in the index.
    Ok,
    /// A contract fault about the records (EI002, EI004–EI006): nothing was applied.
    Rejected { code: String, text: String },
}

/// The codes that name a problem with the records rather than with the call.
const RECORD_CODES: [&str; 4] = ["EI002", "EI004", "EI005", "EI006"];

/// A client for one index.
#[derive(Clone, Debug)]
pub struct EiClient {
    http: reqwest::Client,
    update_url: String,
    find_content_url: String,
    logical_address: String,
}

impl EiClient {
    pub fn new(
        update_url: &str,
        find_content_url: &str,
        logical_address: &str,
        timeout: Duration,
        tls: &TlsFiles,
    ) -> Result<EiClient, CallError> {
        let builder = with_tls(reqwest::Client::builder().timeout(timeout), tls)?;
        let http = builder.build().map_err(|e| {
            CallError::Fatal(format!("cannot build the HTTP client: {}", chain(&e)))
        })?;
        Ok(EiClient {
            http,
            update_url: update_url.to_owned(),
            find_content_url: find_content_url.to_owned(),
            logical_address: logical_address.to_owned(),
        })
    }

    /// One Update with these transactions.
    pub async fn update(
        &self,
        txs: &[Transaction],
        correlation_id: &str,
    ) -> Result<UpdateOutcome, CallError> {
        let call = SoapCall::write(
            &self.update_url,
            WriteOperation::Update,
            &self.logical_address,
            txs,
            correlation_id,
        );
        let (status, reply) = self.post(call).await?;
        classify_update(status, &reply)
    }

    /// One FindContent; the engagements found.
    pub async fn find_content(
        &self,
        query: &RawEngagement,
        correlation_id: &str,
    ) -> Result<Vec<RawEngagement>, CallError> {
        let call = SoapCall::find_content(
            &self.find_content_url,
            &self.logical_address,
            query,
            correlation_id,
        );
        let (status, reply) = self.post(call).await?;
        match classify_find_content(status, &reply) {
            Outcome::Ok(e) => Ok(e),
            Outcome::Fault { text, .. } => {
                Err(CallError::Fatal(format!("FindContent fault: {text}")))
            }
            other => Err(unusable(other)),
        }
    }

    async fn post(&self, call: SoapCall) -> Result<(u16, Vec<u8>), CallError> {
        let url = call.url;
        let mut request = self.http.post(&url).body(call.body);
        for (name, value) in call.headers {
            request = request.header(name, value);
        }
        let resp = request
            .send()
            .await
            .map_err(|e| CallError::Retryable(format!("{url}: {}", chain(&e))))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| {
            CallError::Retryable(format!("{url}: reading the reply: {}", chain(&e)))
        })?;
        Ok((status, bytes.to_vec()))
    }
}

/// Adds the client certificate and the trusted roots, when set.
fn with_tls(
    mut b: reqwest::ClientBuilder,
    tls: &TlsFiles,
) -> Result<reqwest::ClientBuilder, CallError> {
    let bad = |path: &Path, e: &dyn std::fmt::Display| {
        CallError::Fatal(format!("TLS file {}: {e}", path.display()))
    };
    let read = |path: &Path| std::fs::read(path).map_err(|e| bad(path, &e));
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            b = b.identity(reqwest::Identity::from_pem(&pem).map_err(|e| bad(cert, &chain(&e)))?);
        }
        (None, None) => {}
        _ => {
            return Err(CallError::Fatal(
                "a TLS client certificate needs both its cert and its key".into(),
            ))
        }
    }
    if let Some(ca) = &tls.ca {
        let roots =
            reqwest::Certificate::from_pem_bundle(&read(ca)?).map_err(|e| bad(ca, &chain(&e)))?;
        b = b.tls_certs_only(roots);
    }
    Ok(b)
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Sorts an Update reply (status and body) into what to do next.
pub fn classify_update(status: u16, body: &[u8]) -> Result<UpdateOutcome, CallError> {
    let outcome = classify_write(status, body);
    if let Some(rejected) = record_fault(&outcome) {
        return Ok(rejected);
    }
    let retry = outcome.is_server_fault() || matches!(outcome, Outcome::Fault { status: 503, .. });
    match outcome {
        Outcome::Ok(_) => Ok(UpdateOutcome::Ok),
        Outcome::Refused { comment } => Err(CallError::Fatal(format!(
            "the index answered ERROR: {comment}"
        ))),
        Outcome::Fault { text, .. } if text.contains(ei_server::rules::MAINTENANCE_TEXT) => {
            Err(CallError::Paused(format!("server fault: {text}")))
        }
        Outcome::Fault { text, .. } if retry => {
            Err(CallError::Retryable(format!("server fault: {text}")))
        }
        Outcome::Fault { text, .. } => Err(CallError::Fatal(format!(
            "the index refused the call: {text}"
        ))),
        other => Err(unusable(other)),
    }
}

/// `Rejected` when the answer is an EI002/EI004–EI006 fault or refusal.
fn record_fault<T>(outcome: &Outcome<T>) -> Option<UpdateOutcome> {
    let code = outcome.ei_code().filter(|c| RECORD_CODES.contains(c))?;
    let text = match outcome {
        Outcome::Fault { text, .. } => text,
        Outcome::Refused { comment } => comment,
        _ => return None,
    };
    Some(UpdateOutcome::Rejected {
        code: code.to_owned(),
        text: text.clone(),
    })
}

/// An answer that is not the contract's: 5xx and 429 are retried, anything else
/// (another status, an unreadable reply) is fatal.
fn unusable<T>(outcome: Outcome<T>) -> CallError {
    match outcome {
        Outcome::Status { status, .. } if status >= 500 || status == 429 => {
            CallError::Retryable(outcome.to_string())
        }
        other => CallError::Fatal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(code: &str, text: &str) -> Vec<u8> {
        let mut out = String::new();
        ei_server::codec::write_fault(&mut out, code, text);
        out.into_bytes()
    }

    #[test]
    fn sorts_replies() {
        let mut ok = String::new();
        ei_server::codec::write_result(
            &mut ok,
            WriteOperation::Update,
            ei_server::codec::ResultCode::Ok,
            None,
        );
        assert_eq!(classify_update(200, ok.as_bytes()), Ok(UpdateOutcome::Ok));
        let t = "EI005: The logicalAddress in EngagementTransaction #3 is reserved and not allowed, hsa-id: X";
        assert_eq!(
            classify_update(500, &fault("soap:Client", t)),
            Ok(UpdateOutcome::Rejected {
                code: "EI005".into(),
                text: t.into()
            })
        );
        assert!(matches!(
            classify_update(500, &fault("soap:Server", "EI000: A technical error")),
            Err(CallError::Retryable(_))
        ));
        // The index's "busy, retry later" fault (in-flight cap or writer queue full).
        let busy = ei_server::rules::EiError::Busy(String::new()).wire();
        assert!(matches!(
            classify_update(500, &fault(busy.fault_code.qname(), &busy.text)),
            Err(CallError::Retryable(m)) if m.contains("busy, retry later")
        ));
        let paused = ei_server::rules::EiError::Maintenance.wire().text;
        assert!(matches!(
            classify_update(500, &fault("soap:Server", &paused)),
            Err(CallError::Paused(_))
        ));
        assert!(matches!(
            classify_update(500, &fault("soap:Client", "EI003: Invalid routing")),
            Err(CallError::Fatal(_))
        ));
        assert!(matches!(
            classify_update(502, b"Bad gateway"),
            Err(CallError::Retryable(_))
        ));
        assert!(matches!(
            classify_update(404, b"not found"),
            Err(CallError::Fatal(_))
        ));
        let mut err = String::new();
        ei_server::codec::write_result(
            &mut err,
            WriteOperation::Update,
            ei_server::codec::ResultCode::Error,
            Some("EI004: bad"),
        );
        assert_eq!(
            classify_update(200, err.as_bytes()),
            Ok(UpdateOutcome::Rejected {
                code: "EI004".into(),
                text: "EI004: bad".into()
            })
        );
    }
}
