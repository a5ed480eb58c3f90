//! One outgoing SOAP call of the notifier and how its answer is judged: a
//! ProcessNotification to a subscriber (OK, ResultCode=ERROR, or a failure to retry),
//! and the answer body read with a size cap (a subscriber or registry cannot make the
//! index buffer without bound).

use crate::codec::{self, Operation, Reply};
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
        let mut body = String::with_capacity(600 + txs.len() * 900);
        codec::write_write_request(
            &mut body,
            Operation::ProcessNotification,
            self.logical_address,
            txs,
        );
        let sent = client
            .post(self.url)
            .timeout(self.timeout)
            .header("content-type", "text/xml; charset=UTF-8")
            .header("SOAPAction", "urn:riv:itintegration:engagementindex:ProcessNotificationResponder:1:ProcessNotification")
            .header("x-vp-sender-id", self.own_hsa_id)
            .header("x-vp-instance-id", self.vp_instance_id)
            .header("x-skltp-correlation-id", self.correlation_id)
            .body(body)
            .send()
            .await;
        match sent {
            Err(e) => CallOutcome::Failed(format!("transport: {}", chain(&e))),
            Ok(resp) => {
                let status = resp.status().as_u16();
                match read_capped(resp, self.max_response_bytes).await {
                    Err(e) => CallOutcome::Failed(format!("HTTP {status}: {e}")),
                    Ok(bytes) => judge(status, &bytes),
                }
            }
        }
    }
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

/// Reads a subscriber's answer: OK, ResultCode=ERROR, or a failure to retry.
pub fn judge(status: u16, body: &[u8]) -> CallOutcome {
    match codec::parse_reply(body) {
        Ok(Reply::Result { code, .. }) if status == 200 && code == "OK" => CallOutcome::Delivered,
        Ok(Reply::Result { code, comment }) if status == 200 && code == "ERROR" => {
            CallOutcome::Refused(comment.unwrap_or_default())
        }
        Ok(Reply::Fault { code, message }) => {
            CallOutcome::Failed(format!("HTTP {status}: fault {code}: {message}"))
        }
        Ok(other) => CallOutcome::Failed(format!("HTTP {status}: unexpected answer {other:?}")),
        Err(_) if (300..400).contains(&status) => {
            CallOutcome::Failed(format!("HTTP {status}: redirect not followed"))
        }
        Err(e) => CallOutcome::Failed(format!("HTTP {status}: unreadable answer: {e}")),
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

    #[test]
    fn judges_answers() {
        let mut ok = String::new();
        codec::write_result(
            &mut ok,
            Operation::ProcessNotification,
            codec::ResultCode::Ok,
            None,
        );
        assert_eq!(judge(200, ok.as_bytes()), CallOutcome::Delivered);
        let mut err = String::new();
        codec::write_result(
            &mut err,
            Operation::ProcessNotification,
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
