//! Writing replies, faults and requests as strings (no XML library needed: every
//! text goes through `quick_xml::escape::escape`).

use super::{Operation, WriteOperation, CORE_NS, FIND_CONTENT_NS, REGISTRY_NS};
use crate::model::{Engagement, Field, PostRef, RawEngagement, Transaction};

pub(super) const ENVELOPE_OPEN: &str =
    r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>"#;
pub(super) const ENVELOPE_CLOSE: &str = "</soap:Body></soap:Envelope>";

/// The reply's ResultCode (the contract's `ResultCodeEnum`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultCode {
    Ok,
    /// Done, with information in the comment (RIV); the index never answers it.
    Info,
    Error,
}

impl ResultCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            ResultCode::Ok => "OK",
            ResultCode::Info => "INFO",
            ResultCode::Error => "ERROR",
        }
    }
}

impl TryFrom<&str> for ResultCode {
    type Error = super::CodecError;

    fn try_from(code: &str) -> Result<ResultCode, super::CodecError> {
        [ResultCode::Ok, ResultCode::Info, ResultCode::Error]
            .into_iter()
            .find(|c| c.as_str() == code)
            .ok_or_else(|| super::CodecError::ResultCode(code.to_owned()))
    }
}

/// `UpdateResponse` / `ProcessNotificationResponse`, with the responder namespace bound
/// to `ns2` (deployed clients match `<ns2:ResultCode>OK</ns2:ResultCode>` literally).
pub fn write_result(out: &mut String, op: WriteOperation, code: ResultCode, comment: Option<&str>) {
    let name = match op {
        WriteOperation::Update => "UpdateResponse",
        WriteOperation::ProcessNotification => "ProcessNotificationResponse",
    };
    out.push_str(ENVELOPE_OPEN);
    out.push_str("<ns2:");
    out.push_str(name);
    out.push_str(" xmlns=\"");
    out.push_str(CORE_NS);
    out.push_str("\" xmlns:ns2=\"");
    out.push_str(op.namespace());
    out.push_str("\"><ns2:ResultCode>");
    out.push_str(code.as_str());
    out.push_str("</ns2:ResultCode>");
    if let Some(c) = comment {
        element(out, "ns2:comment", c);
    }
    out.push_str("</ns2:");
    out.push_str(name);
    out.push('>');
    out.push_str(ENVELOPE_CLOSE);
}

/// `FindContentResponse` with its engagements (children in the core namespace,
/// XSD order, unset timestamps omitted).
pub fn write_find_content_response<'a>(
    out: &mut String,
    engagements: impl IntoIterator<Item = &'a Engagement>,
) {
    find_content_begin(out);
    for e in engagements {
        find_content_push(out, &e.as_post_ref());
    }
    find_content_end(out);
}

/// Starts a `FindContentResponse`; add posts with [`find_content_push`], close with
/// [`find_content_end`] (for writing straight from the store).
pub fn find_content_begin(out: &mut String) {
    out.push_str(ENVELOPE_OPEN);
    out.push_str("<ns2:FindContentResponse xmlns=\"");
    out.push_str(CORE_NS);
    out.push_str("\" xmlns:ns2=\"");
    out.push_str(FIND_CONTENT_NS);
    out.push_str("\">");
}

/// One `engagement` of a `FindContentResponse`.
pub fn find_content_push(out: &mut String, e: &PostRef<'_>) {
    out.push_str("<ns2:engagement>");
    write_engagement_fields(out, e, "");
    out.push_str("</ns2:engagement>");
}

/// Closes a `FindContentResponse`.
pub fn find_content_end(out: &mut String) {
    out.push_str("</ns2:FindContentResponse>");
    out.push_str(ENVELOPE_CLOSE);
}

/// The fields of an engagement in the XSD's sequence order, each element name
/// prefixed with `prefix` (empty for the default namespace).
fn write_engagement_fields(out: &mut String, e: &PostRef<'_>, prefix: &str) {
    for f in Field::XSD_ORDER {
        if let Some(v) = e.key_field(f) {
            prefixed_element(out, prefix, f.name(), v);
        } else if let Some(t) = e.timestamp(f) {
            prefixed_element(out, prefix, f.name(), &t.as_u64().to_string());
        }
    }
}

/// `<{prefix}{name}>{escaped text}</{prefix}{name}>` without building the tag.
fn prefixed_element(out: &mut String, prefix: &str, name: &str, text: &str) {
    out.push('<');
    out.push_str(prefix);
    out.push_str(name);
    out.push('>');
    out.push_str(&quick_xml::escape::escape(text));
    out.push_str("</");
    out.push_str(prefix);
    out.push_str(name);
    out.push('>');
}

/// A SOAP 1.1 fault.
pub fn write_fault(out: &mut String, fault_code: &str, fault_string: &str) {
    out.push_str(ENVELOPE_OPEN);
    out.push_str("<soap:Fault><faultcode>");
    out.push_str(fault_code);
    out.push_str("</faultcode>");
    element(out, "faultstring", fault_string);
    out.push_str("</soap:Fault>");
    out.push_str(ENVELOPE_CLOSE);
}

pub(super) fn element(out: &mut String, tag: &str, text: &str) {
    out.push('<');
    out.push_str(tag);
    out.push('>');
    out.push_str(&quick_xml::escape::escape(text));
    out.push_str("</");
    out.push_str(tag);
    out.push('>');
}

/// An Update or ProcessNotification request (for clients: the loader, the
/// notifier, tests).
pub fn write_write_request(
    out: &mut String,
    op: WriteOperation,
    logical_address: &str,
    txs: &[Transaction],
) {
    let op = op.operation();
    write_request_head(out, op, logical_address);
    for t in txs {
        out.push_str("<r:engagementTransaction><c:deleteFlag>");
        out.push_str(match t.action {
            crate::model::Action::Save => "false",
            crate::model::Action::Delete => "true",
        });
        out.push_str("</c:deleteFlag><c:engagement>");
        write_engagement_fields(out, &t.engagement.as_post_ref(), "c:");
        out.push_str("</c:engagement></r:engagementTransaction>");
    }
    write_request_tail(out, op);
}

/// A FindContent request from raw (possibly partial) fields.
pub fn write_find_content_request(out: &mut String, logical_address: &str, query: &RawEngagement) {
    write_request_head(out, Operation::FindContent, logical_address);
    for f in Field::ALL {
        if let Some(v) = query.get(f) {
            element(out, &format!("r:{}", f.name()), v);
        }
    }
    write_request_tail(out, Operation::FindContent);
}

fn write_request_head(out: &mut String, op: Operation, logical_address: &str) {
    out.push_str(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:a=""#,
    );
    out.push_str(REGISTRY_NS);
    out.push_str("\" xmlns:r=\"");
    out.push_str(op.namespace());
    out.push_str("\" xmlns:c=\"");
    out.push_str(CORE_NS);
    out.push_str("\"><soap:Header>");
    element(out, "a:LogicalAddress", logical_address);
    out.push_str("</soap:Header><soap:Body><r:");
    out.push_str(op.name());
    out.push('>');
}

fn write_request_tail(out: &mut String, op: Operation) {
    out.push_str("</r:");
    out.push_str(op.name());
    out.push('>');
    out.push_str(ENVELOPE_CLOSE);
}
