//! The client side of a SOAP call, written once for every client of the services and
//! the registry (the loader, capacity, the load generator, the notifier).
//!
//! [`SoapCall`] is a request as plain data: the URL, the headers (content type,
//! SOAPAction, `x-skltp-correlation-id`, and the platform's headers where a caller adds
//! them) and the body. The caller's own HTTP client sends it: this crate is used
//! without its `server` feature (no HTTP library) by ei-loader and capacity, and each
//! client keeps its own transport settings (TLS identity, timeouts, pool sizes).
//!
//! [`classify_write`], [`classify_find_content`] and [`classify_logical_addressees`]
//! judge an answer (HTTP status and body) into one [`Outcome`], which each caller maps
//! onto what it does next: go on, retry, split the batch, or give up.

use super::registry::{read_logical_addressees, AddresseeRecord};
use super::reply::{parse_reply, Reply};
use super::{write, CodecError, Operation, ResultCode, WriteOperation};
use crate::model::{RawEngagement, Transaction};
use std::fmt;

/// The platform's correlation id, one per call.
pub const CORRELATION_ID_HEADER: &str = "x-skltp-correlation-id";
/// The consumer the platform received the call from (RIV-TA).
pub const ORIGINAL_CONSUMER_HEADER: &str = "x-rivta-original-serviceconsumer-hsaid";
/// The sender's HSA-id, for calls through the platform.
pub const SENDER_ID_HEADER: &str = "x-vp-sender-id";
/// The platform instance the sender belongs to.
pub const INSTANCE_ID_HEADER: &str = "x-vp-instance-id";
/// The content type of every SOAP 1.1 request.
pub const CONTENT_TYPE: &str = "text/xml; charset=UTF-8";

/// The SOAPAction of the registry's GetLogicalAddresseesByServiceContract.
const REGISTRY_ACTION: &str = "urn:riv:infrastructure:itintegration:registry:GetLogicalAddresseesByServiceContractResponder:2:GetLogicalAddresseesByServiceContract";

/// One SOAP request, ready for any HTTP client: `POST url` with `headers` and `body`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoapCall {
    pub url: String,
    /// Header names in lower case (except `SOAPAction`), values as sent.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl SoapCall {
    /// A call of `operation` whose body is already written (prepared workloads,
    /// templates): content type, SOAPAction and the correlation id.
    pub fn with_body(
        url: impl Into<String>,
        operation: Operation,
        correlation_id: impl Into<String>,
        body: impl Into<Vec<u8>>,
    ) -> SoapCall {
        SoapCall::new(url, operation.soap_action(), correlation_id, body)
    }

    /// An Update or ProcessNotification carrying `txs`, addressed (SOAP header
    /// LogicalAddress) to `logical_address`.
    pub fn write(
        url: impl Into<String>,
        operation: WriteOperation,
        logical_address: &str,
        txs: &[Transaction],
        correlation_id: impl Into<String>,
    ) -> SoapCall {
        let mut body = String::with_capacity(600 + txs.len() * 900);
        write::write_write_request(&mut body, operation, logical_address, txs);
        SoapCall::with_body(url, operation.operation(), correlation_id, body)
    }

    /// A FindContent with the set fields of `query`.
    pub fn find_content(
        url: impl Into<String>,
        logical_address: &str,
        query: &RawEngagement,
        correlation_id: impl Into<String>,
    ) -> SoapCall {
        let mut body = String::with_capacity(1024);
        write::write_find_content_request(&mut body, logical_address, query);
        SoapCall::with_body(url, Operation::FindContent, correlation_id, body)
    }

    /// The registry's GetLogicalAddresseesByServiceContract: which logical addresses
    /// `consumer` may call for the contract `namespace`.
    pub fn logical_addressees(
        url: impl Into<String>,
        logical_address: &str,
        consumer: &str,
        namespace: &str,
        correlation_id: impl Into<String>,
    ) -> SoapCall {
        let mut body = String::with_capacity(1024);
        super::write_logical_addressees_request(&mut body, logical_address, consumer, namespace);
        SoapCall::new(url, REGISTRY_ACTION.to_owned(), correlation_id, body)
    }

    fn new(
        url: impl Into<String>,
        soap_action: String,
        correlation_id: impl Into<String>,
        body: impl Into<Vec<u8>>,
    ) -> SoapCall {
        SoapCall {
            url: url.into(),
            headers: vec![
                ("content-type", CONTENT_TYPE.to_owned()),
                ("SOAPAction", soap_action),
                (CORRELATION_ID_HEADER, correlation_id.into()),
            ],
            body: body.into(),
        }
    }

    /// Adds the platform's sender headers: `x-vp-sender-id` and `x-vp-instance-id`.
    pub fn sender(mut self, sender_id: &str, instance_id: &str) -> SoapCall {
        self.headers.push((SENDER_ID_HEADER, sender_id.to_owned()));
        self.headers
            .push((INSTANCE_ID_HEADER, instance_id.to_owned()));
        self
    }

    /// Adds `x-rivta-original-serviceconsumer-hsaid`: the consumer a call is made for.
    pub fn original_consumer(mut self, hsa_id: &str) -> SoapCall {
        self.headers
            .push((ORIGINAL_CONSUMER_HEADER, hsa_id.to_owned()));
        self
    }

    /// The value of header `name` (case-insensitive), if set.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What an answer means, whatever the call. `T` is what a successful call returns:
/// the comment of an OK or INFO write reply, the engagements found, the registry's
/// records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    /// HTTP 200 with the reply the call expects (for a write, ResultCode OK or INFO:
    /// RIV's "done, with information in the comment").
    Ok(T),
    /// HTTP 200 with ResultCode ERROR: the callee refused the request and applied
    /// nothing (the index in `result-code` error mode, or a subscriber).
    Refused { comment: String },
    /// A SOAP fault, whatever the HTTP status: `faultcode` and `faultstring`.
    Fault {
        status: u16,
        code: String,
        text: String,
    },
    /// Another HTTP status than 200, without a SOAP fault (a proxy's error page, a
    /// wrong URL, an overloaded gateway); the first 200 characters of the body.
    Status { status: u16, excerpt: String },
    /// HTTP 200, but not the reply the call expects (not XML, another call's reply).
    Unreadable { reason: String },
}

impl<T> Outcome<T> {
    /// The EI code (`EI000` … `EI006`) that opens a fault's text or a refusal's
    /// comment, as the index writes them.
    pub fn ei_code(&self) -> Option<&str> {
        let text = match self {
            Outcome::Fault { text, .. } => text,
            Outcome::Refused { comment } => comment,
            _ => return None,
        };
        let code = text.split(':').next()?.trim();
        let digits = code.strip_prefix("EI")?;
        (digits.len() == 3 && digits.bytes().all(|b| b.is_ascii_digit())).then_some(code)
    }

    /// A fault the callee blames on itself (`soap:Server` with any prefix, or a
    /// dotted `Server.…` subcode): worth a retry.
    pub fn is_server_fault(&self) -> bool {
        let Outcome::Fault { code, .. } = self else {
            return false;
        };
        let local = code.rsplit(':').next().unwrap_or_default();
        local == "Server" || local.starts_with("Server.")
    }
}

impl<T> fmt::Display for Outcome<T> {
    /// One line for logs and error messages (the payload of `Ok` is not shown).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok(_) => f.write_str("OK"),
            Outcome::Refused { comment } => write!(f, "ResultCode ERROR: {comment}"),
            Outcome::Fault { status, code, text } => {
                write!(f, "HTTP {status}: SOAP fault {code}: {text}")
            }
            Outcome::Status { status, excerpt } => write!(f, "HTTP {status}: {excerpt}"),
            Outcome::Unreadable { reason } => write!(f, "unreadable reply: {reason}"),
        }
    }
}

/// Judges the answer to an Update or ProcessNotification.
pub fn classify_write(status: u16, body: &[u8]) -> Outcome<Option<String>> {
    judge(
        status,
        body,
        parse_reply(body).map(|reply| match reply {
            Reply::Result { code, comment } => match code {
                ResultCode::Ok | ResultCode::Info => Read::Expected(comment),
                ResultCode::Error => Read::Refused(comment.unwrap_or_default()),
            },
            Reply::Fault { code, message } => Read::Fault(code, message),
            Reply::Engagements(_) => Read::Other("a FindContentResponse to a write".into()),
        }),
    )
}

/// Judges the answer to a FindContent.
pub fn classify_find_content(status: u16, body: &[u8]) -> Outcome<Vec<RawEngagement>> {
    judge(
        status,
        body,
        parse_reply(body).map(|reply| match reply {
            Reply::Engagements(e) => Read::Expected(e),
            Reply::Fault { code, message } => Read::Fault(code, message),
            Reply::Result { code, .. } => Read::Other(format!(
                "a ResultCode {} reply to FindContent",
                code.as_str()
            )),
        }),
    )
}

/// Judges the registry's answer to GetLogicalAddresseesByServiceContract.
pub fn classify_logical_addressees(status: u16, body: &[u8]) -> Outcome<Vec<AddresseeRecord>> {
    judge(
        status,
        body,
        read_logical_addressees(body).map(|(records, fault)| match (fault.code, fault.text) {
            (None, None) => Read::Expected(records),
            (code, text) => Read::Fault(code.unwrap_or_default(), text.unwrap_or_default()),
        }),
    )
}

/// A body, read for one kind of call.
enum Read<T> {
    Expected(T),
    Refused(String),
    Fault(String, String),
    Other(String),
}

/// The one table from (status, body read) to outcome: a fault wins whatever the
/// status; then only HTTP 200 can succeed.
fn judge<T>(status: u16, body: &[u8], read: Result<Read<T>, CodecError>) -> Outcome<T> {
    match read {
        Ok(Read::Fault(code, text)) => Outcome::Fault { status, code, text },
        _ if status != 200 => Outcome::Status {
            status,
            excerpt: String::from_utf8_lossy(body).chars().take(200).collect(),
        },
        Ok(Read::Expected(t)) => Outcome::Ok(t),
        Ok(Read::Refused(comment)) => Outcome::Refused { comment },
        Ok(Read::Other(reason)) => Outcome::Unreadable { reason },
        Err(e) => Outcome::Unreadable {
            reason: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{write_fault, write_find_content_response, write_result};

    fn result(code: ResultCode, comment: Option<&str>) -> Vec<u8> {
        let mut out = String::new();
        write_result(&mut out, WriteOperation::Update, code, comment);
        out.into_bytes()
    }

    fn fault(code: &str, text: &str) -> Vec<u8> {
        let mut out = String::new();
        write_fault(&mut out, code, text);
        out.into_bytes()
    }

    #[test]
    fn builds_the_headers_every_call_carries() {
        let call = SoapCall::find_content("http://i/f", "ei", &RawEngagement::default(), "c-1")
            .sender("me", "vp-1")
            .original_consumer("consumer-1");
        assert_eq!(call.url, "http://i/f");
        assert_eq!(call.header("Content-Type"), Some(CONTENT_TYPE));
        assert_eq!(
            call.header("soapaction"),
            Some("urn:riv:itintegration:engagementindex:FindContentResponder:1:FindContent")
        );
        assert_eq!(call.header(CORRELATION_ID_HEADER), Some("c-1"));
        assert_eq!(call.header(SENDER_ID_HEADER), Some("me"));
        assert_eq!(call.header(INSTANCE_ID_HEADER), Some("vp-1"));
        assert_eq!(call.header(ORIGINAL_CONSUMER_HEADER), Some("consumer-1"));
        let text = String::from_utf8(call.body).unwrap();
        assert!(
            text.contains("<a:LogicalAddress>ei</a:LogicalAddress>"),
            "{text}"
        );
        let write = SoapCall::write("u", WriteOperation::ProcessNotification, "SE1", &[], "c-3");
        assert_eq!(
            write.header("SOAPAction"),
            Some("urn:riv:itintegration:engagementindex:ProcessNotificationResponder:1:ProcessNotification")
        );
        match crate::codec::parse_request(&write.body).unwrap() {
            crate::codec::Request::Write {
                operation,
                logical_address,
                ..
            } => assert_eq!(
                (operation, logical_address.as_deref()),
                (WriteOperation::ProcessNotification, Some("SE1"))
            ),
            other => panic!("{other:?}"),
        }
        let registry = SoapCall::logical_addressees("u", "reg", "ei", "ns", "c-2");
        assert!(registry
            .header("SOAPAction")
            .unwrap()
            .ends_with(":GetLogicalAddresseesByServiceContract"));
    }

    #[test]
    fn classifies_write_replies() {
        let ok = result(ResultCode::Ok, None);
        assert_eq!(classify_write(200, &ok), Outcome::Ok(None));
        let info = result(ResultCode::Info, Some("noted"));
        assert_eq!(
            classify_write(200, &info),
            Outcome::Ok(Some("noted".into()))
        );
        let unknown = String::from_utf8(ok.clone())
            .unwrap()
            .replace(">OK<", ">DONE<");
        assert!(matches!(
            classify_write(200, unknown.as_bytes()),
            Outcome::Unreadable { .. }
        ));
        assert_eq!(
            classify_write(500, &ok),
            Outcome::Status {
                status: 500,
                excerpt: String::from_utf8_lossy(&ok).chars().take(200).collect()
            },
            "OK with HTTP 500 is not a success"
        );
        let refused = classify_write(200, &result(ResultCode::Error, Some("EI004: bad")));
        assert_eq!(
            refused,
            Outcome::Refused {
                comment: "EI004: bad".into()
            }
        );
        assert_eq!(refused.ei_code(), Some("EI004"));
        let f = classify_write(500, &fault("soap:Server", "EI000: down"));
        assert_eq!(
            f,
            Outcome::Fault {
                status: 500,
                code: "soap:Server".into(),
                text: "EI000: down".into()
            }
        );
        assert!(f.is_server_fault());
        assert_eq!(f.ei_code(), Some("EI000"));
        let client = classify_write(500, &fault("soap:Client", "not an EI code: x"));
        assert!(!client.is_server_fault());
        assert_eq!(client.ei_code(), None);
        assert_eq!(
            classify_write(502, b"Bad gateway"),
            Outcome::Status {
                status: 502,
                excerpt: "Bad gateway".into()
            }
        );
        assert!(matches!(
            classify_write(200, b"<x/>"),
            Outcome::Unreadable { .. }
        ));
        let mut found = String::new();
        write_find_content_response(&mut found, []);
        assert!(matches!(
            classify_write(200, found.as_bytes()),
            Outcome::Unreadable { .. }
        ));
    }

    #[test]
    fn classifies_find_content_and_registry_replies() {
        let mut found = String::new();
        write_find_content_response(&mut found, []);
        assert_eq!(
            classify_find_content(200, found.as_bytes()),
            Outcome::Ok(vec![])
        );
        assert!(matches!(
            classify_find_content(200, &result(ResultCode::Ok, None)),
            Outcome::Unreadable { .. }
        ));
        assert!(matches!(
            classify_find_content(500, &fault("soap:Client", "EI004: x")),
            Outcome::Fault { status: 500, .. }
        ));
        let answer = br#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>
            <r:GetLogicalAddresseesByServiceContractResponse xmlns:r="urn:x">
            <r:logicalAddressRecord><r:logicalAddress>SE1</r:logicalAddress></r:logicalAddressRecord>
            </r:GetLogicalAddresseesByServiceContractResponse></s:Body></s:Envelope>"#;
        match classify_logical_addressees(200, answer) {
            Outcome::Ok(records) => assert_eq!(records[0].logical_address, "SE1"),
            other => panic!("{other}"),
        }
        assert!(matches!(
            classify_logical_addressees(500, &fault("soap:Server", "registry down")),
            Outcome::Fault { .. }
        ));
        assert!(matches!(
            classify_logical_addressees(404, b"no"),
            Outcome::Status { status: 404, .. }
        ));
    }
}
