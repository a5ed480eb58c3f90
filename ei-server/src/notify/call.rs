//! The notifier's outgoing SOAP calls, built and judged by the one client in
//! [`crate::codec::client`]: a ProcessNotification to a subscriber (OK, refused with
//! ResultCode=ERROR, or a failure to retry) and the transport under both it and the
//! registry call: headers as the client built them, a timeout, and the answer body read
//! with a size cap (a subscriber or registry cannot make the index buffer without
//! bound).

use crate::codec::client::{classify_write, Outcome, SoapCall};
use crate::codec::WriteOperation;
use crate::model::Transaction;
use std::time::Duration;

/// How one call ended.
#[derive(Debug, PartialEq, Eq)]
pub enum CallOutcome {
    Delivered,
    /// ResultCode=ERROR, with the subscriber's comment: these transactions are refused.
    Refused(String),
    /// Transport error, HTTP error, fault, unreadable or oversized answer: retried.
    Failed(String),
}

/// Everything a ProcessNotification call needs besides the client.
pub struct NotificationCall<'a> {
    pub url: &'a str,
    pub logical_address: &'a str,
    pub own_hsa_id: &'a str,
    pub vp_instance_id: &'a str,
    pub correlation_id: &'a str,
    pub timeout: Duration,
    pub max_response_bytes: usize,
}

impl NotificationCall<'_> {
    /// Sends `txs` and judges the answer. Redirects are not followed (the client is
    /// built so): a 3xx is a failure.
    pub async fn send(&self, client: &reqwest::Client, txs: &[Transaction]) -> CallOutcome {
        let call = SoapCall::write(
            self.url,
            WriteOperation::ProcessNotification,
            self.logical_address,
            txs,
            self.correlation_id,
        )
        .sender(self.own_hsa_id, self.vp_instance_id);
        match send(client, call, self.timeout, self.max_response_bytes).await {
            Ok((status, body)) => judge(status, &body),
            Err(e) => CallOutcome::Failed(e),
        }
    }
}

/// Sends `call`; returns the status and the body (at most `max_bytes`), or why not.
pub async fn send(
    client: &reqwest::Client,
    call: SoapCall,
    timeout: Duration,
    max_bytes: usize,
) -> Result<(u16, Vec<u8>), String> {
    let mut req = client.post(&call.url).timeout(timeout);
    for (name, value) in &call.headers {
        req = req.header(*name, value);
    }
    let resp = req
        .body(call.body)
        .send()
        .await
        .map_err(|e| format!("transport: {}", chain(&e)))?;
    let status = resp.status().as_u16();
    let body = read_capped(resp, max_bytes)
        .await
        .map_err(|e| format!("HTTP {status}: {e}"))?;
    Ok((status, body))
}

/// Reads an answer body of at most `max` bytes.
pub async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!("answer larger than {max} bytes"));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading the answer failed: {}", chain(&e)))?
    {
        if out.len() + chunk.len() > max {
            return Err(format!("answer larger than {max} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Reads a subscriber's answer: OK (or INFO), ResultCode=ERROR, or a failure to retry.
pub fn judge(status: u16, body: &[u8]) -> CallOutcome {
    match classify_write(status, body) {
        Outcome::Ok(_) => CallOutcome::Delivered,
        Outcome::Refused { comment } => CallOutcome::Refused(comment),
        Outcome::Status { status, .. } if (300..400).contains(&status) => {
            CallOutcome::Failed(format!("HTTP {status}: redirect not followed"))
        }
        other => CallOutcome::Failed(other.to_string()),
    }
}

/// An error and its causes on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn judges_answers() {
        let mut ok = String::new();
        codec::write_result(
            &mut ok,
            WriteOperation::ProcessNotification,
            codec::ResultCode::Ok,
            None,
        );
        assert_eq!(judge(200, ok.as_bytes()), CallOutcome::Delivered);
        let mut err = String::new();
        codec::write_result(
            &mut err,
            WriteOperation::ProcessNotification,
            codec::ResultCode::Error,
            Some("no"),
        );
        assert_eq!(
            judge(200, err.as_bytes()),
            CallOutcome::Refused("no".into())
        );
        let mut fault = String::new();
        codec::write_fault(&mut fault, "soap:Server", "down");
        assert!(
            matches!(judge(500, fault.as_bytes()), CallOutcome::Failed(e) if e.contains("down"))
        );
        assert!(matches!(judge(502, b"Bad gateway"), CallOutcome::Failed(_)));
        assert!(
            matches!(judge(302, b""), CallOutcome::Failed(e) if e.contains("redirect not followed"))
        );
        assert!(
            matches!(judge(500, ok.as_bytes()), CallOutcome::Failed(_)),
            "OK with HTTP 500 is not delivered"
        );
    }
}
