//! The SOAP 1.1 wire format: reading the three requests and their replies, writing
//! replies, faults and requests. Lenient in what it reads (any prefixes, unknown
//! elements ignored, children in any order) and strict on well-formedness: anything it
//! cannot read is a [`CodecError`], never a panic. DOCTYPE (and so every entity
//! declaration) is refused; only the five predefined entities and character references
//! are resolved.
//!
//! Submodules: [`request`] reads requests, [`write`] writes replies, faults and
//! requests, [`reply`] reads replies (for clients), [`registry`] is the subscriber
//! registry's call, [`client`] builds a call's headers and judges its answer (every
//! client's one way to call). `quick_xml` is used only in this module tree.

pub mod client;
mod registry;
mod reply;
mod request;
mod write;

pub use registry::{
    parse_logical_addressees_response, write_logical_addressees_request, AddresseeRecord,
    REGISTRY_CORE_NS, REGISTRY_RESPONDER_NS,
};
pub use reply::{parse_reply, Reply};
pub use request::parse_request;
pub use write::{
    find_content_begin, find_content_end, find_content_push, write_fault,
    write_find_content_request, write_find_content_response, write_result, write_write_request,
    ResultCode,
};

use crate::model::{RawFindContent, RawTransaction};
/// The codec names requests by the crate's one operation vocabulary.
pub use crate::operation::{Operation, WriteOperation};

pub const SOAP_ENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const REGISTRY_NS: &str = "urn:riv:itintegration:registry:1";
pub const CORE_NS: &str = "urn:riv:itintegration:engagementindex:1";
pub const UPDATE_NS: &str = Operation::Update.namespace();
pub const NOTIFICATION_NS: &str = Operation::ProcessNotification.namespace();
pub const FIND_CONTENT_NS: &str = Operation::FindContent.namespace();

/// A request body, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Update or ProcessNotification: the header's LogicalAddress and the transactions.
    Write {
        operation: WriteOperation,
        logical_address: Option<String>,
        transactions: Vec<RawTransaction>,
    },
    FindContent {
        logical_address: Option<String>,
        query: Box<RawFindContent>,
    },
}

impl Request {
    /// The operation the body asks for.
    pub fn operation(&self) -> Operation {
        match self {
            Request::Write { operation, .. } => operation.operation(),
            Request::FindContent { .. } => Operation::FindContent,
        }
    }
}

/// Why a body could not be read. The text goes into an EI000 fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("the request is not well-formed XML: {0}")]
    Xml(String),
    #[error("the request is not UTF-8 encoded: {0}")]
    Encoding(String),
    #[error("DOCTYPE and entity declarations are not allowed")]
    Doctype,
    #[error("unknown entity &{0}; (only the predefined XML entities are allowed)")]
    Entity(String),
    #[error("the request is not a SOAP 1.1 envelope: {0}")]
    NotSoap(String),
    #[error("the SOAP body holds no {0} request")]
    NoOperation(String),
    #[error("unknown ResultCode {0:?} (the contract has OK, INFO and ERROR)")]
    ResultCode(String),
    /// A second operation element in the Body (it would otherwise be merged into the
    /// first).
    #[error("the SOAP body holds a second operation element ({second} after {first})")]
    SecondOperation {
        first: &'static str,
        second: &'static str,
    },
    /// Reading stops at the 1001st transaction; the text is the count rule's (rule 3).
    #[error("The request contains more than {max} engagements. Maximum number of engagements per request is {max}.", max = crate::rules::MAX_TRANSACTIONS)]
    TooManyTransactions,
}

/// Maps a quick-xml error into ours.
fn xml_err(e: quick_xml::Error) -> CodecError {
    CodecError::Xml(e.to_string())
}

/// Resolves a character reference or one of the five predefined entities.
fn resolve_reference(r: &quick_xml::events::BytesRef<'_>) -> Result<String, CodecError> {
    if r.is_char_ref() {
        return match r.resolve_char_ref() {
            Ok(Some(c)) => Ok(c.to_string()),
            _ => Err(CodecError::Xml(format!(
                "invalid character reference &{};",
                &*r.clone().into_inner()
            ))),
        };
    }
    let name = r.clone().into_inner();
    quick_xml::escape::resolve_predefined_entity(&name)
        .map(str::to_owned)
        .ok_or_else(|| CodecError::Entity(name.into_owned()))
}

#[cfg(test)]
mod tests;
