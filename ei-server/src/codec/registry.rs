//! The subscriber registry's call: GetLogicalAddresseesByServiceContract v2.

use super::reply::{read_elements, Element, SoapFault};
use super::write::{element, ENVELOPE_CLOSE};
use super::{CodecError, REGISTRY_NS};

pub const REGISTRY_RESPONDER_NS: &str =
    "urn:riv:infrastructure:itintegration:registry:GetLogicalAddresseesByServiceContractResponder:2";
pub const REGISTRY_CORE_NS: &str = "urn:riv:infrastructure:itintegration:registry:2";

/// One `logicalAddressRecord`: the address and its filters (domain, categorizations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddresseeRecord {
    pub logical_address: String,
    pub filters: Vec<(String, Vec<String>)>,
}

/// The registry request: who asks (`consumer`) for which contract namespace.
pub fn write_logical_addressees_request(
    out: &mut String,
    logical_address: &str,
    consumer: &str,
    namespace: &str,
) {
    out.push_str(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:a=""#,
    );
    out.push_str(REGISTRY_NS);
    out.push_str("\" xmlns:r=\"");
    out.push_str(REGISTRY_RESPONDER_NS);
    out.push_str("\" xmlns:c=\"");
    out.push_str(REGISTRY_CORE_NS);
    out.push_str("\"><soap:Header>");
    element(out, "a:LogicalAddress", logical_address);
    out.push_str("</soap:Header><soap:Body><r:GetLogicalAddresseesByServiceContract>");
    element(out, "r:serviceConsumerHsaId", consumer);
    out.push_str("<r:serviceContractNameSpace>");
    element(out, "c:ServiceContractNamespace", namespace);
    out.push_str("</r:serviceContractNameSpace></r:GetLogicalAddresseesByServiceContract>");
    out.push_str(ENVELOPE_CLOSE);
}

/// Reads the registry's answer (or its fault, as an error).
pub fn parse_logical_addressees_response(body: &[u8]) -> Result<Vec<AddresseeRecord>, CodecError> {
    let (records, fault) = read_logical_addressees(body)?;
    if fault.code.is_none() && fault.text.is_none() {
        return Ok(records);
    }
    Err(CodecError::NoOperation(format!(
        "registry answer (fault: {})",
        fault.text.unwrap_or_default()
    )))
}

/// The records of a registry answer, and its fault if it is one.
pub(super) fn read_logical_addressees(
    body: &[u8],
) -> Result<(Vec<AddresseeRecord>, SoapFault), CodecError> {
    let mut records: Vec<AddresseeRecord> = Vec::new();
    let fault = read_elements(body, |element| match element {
        Element::Open {
            name: "logicalAddressRecord",
            ..
        } => records.push(AddresseeRecord {
            logical_address: String::new(),
            filters: vec![],
        }),
        Element::Open { name: "filter", .. } => {
            if let Some(r) = records.last_mut() {
                r.filters.push((String::new(), vec![]));
            }
        }
        Element::Open { .. } => {}
        Element::Close {
            name, parent, text, ..
        } => {
            let filter = records.last_mut().and_then(|r| r.filters.last_mut());
            match (parent, name) {
                (Some("logicalAddressRecord"), "logicalAddress") => {
                    if let Some(r) = records.last_mut() {
                        r.logical_address = text.to_owned();
                    }
                }
                (Some("filter"), "serviceDomain") => {
                    if let Some(f) = filter {
                        f.0 = text.to_owned();
                    }
                }
                (Some("filter"), "categorization") => {
                    if let Some(f) = filter {
                        f.1.push(text.to_owned());
                    }
                }
                _ => {}
            }
        }
    })?;
    Ok((records, fault))
}
