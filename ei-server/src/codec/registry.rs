//! The subscriber registry's call: GetLogicalAddresseesByServiceContract v2.

use super::write::{element, ENVELOPE_CLOSE};
use super::{resolve_reference, xml_err, CodecError, REGISTRY_NS};
use quick_xml::events::Event;
use quick_xml::NsReader;

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
    let text = std::str::from_utf8(body).map_err(|e| CodecError::Encoding(e.to_string()))?;
    let mut reader = NsReader::from_str(text);
    let mut path: Vec<String> = Vec::new();
    let mut buf = String::new();
    let mut records: Vec<AddresseeRecord> = Vec::new();
    let mut fault: Option<String> = None;
    loop {
        let (_, event) = reader.read_resolved_event().map_err(xml_err)?;
        match event {
            Event::Start(e) => {
                let name = e.local_name().as_ref().to_owned();
                match name.as_str() {
                    "logicalAddressRecord" => records.push(AddresseeRecord {
                        logical_address: String::new(),
                        filters: vec![],
                    }),
                    "filter" => {
                        if let Some(r) = records.last_mut() {
                            r.filters.push((String::new(), vec![]));
                        }
                    }
                    _ => {}
                }
                path.push(name);
                buf.clear();
            }
            Event::Text(t) => buf.push_str(&t.xml10_content()),
            Event::GeneralRef(r) => buf.push_str(&resolve_reference(&r)?),
            Event::End(_) => {
                let name = path.pop().unwrap_or_default();
                let parent = path.last().map(String::as_str);
                let value = std::mem::take(&mut buf);
                let record = records.last_mut();
                match (parent, name.as_str(), record) {
                    (Some("logicalAddressRecord"), "logicalAddress", Some(r)) => {
                        r.logical_address = value
                    }
                    (Some("filter"), "serviceDomain", Some(r)) => {
                        if let Some(f) = r.filters.last_mut() {
                            f.0 = value;
                        }
                    }
                    (Some("filter"), "categorization", Some(r)) => {
                        if let Some(f) = r.filters.last_mut() {
                            f.1.push(value);
                        }
                    }
                    (_, "faultstring", _) => fault = Some(value),
                    _ => {}
                }
            }
            Event::DocType(_) => return Err(CodecError::Doctype),
            Event::Eof => break,
            _ => {}
        }
    }
    match fault {
        Some(f) => Err(CodecError::NoOperation(format!(
            "registry answer (fault: {f})"
        ))),
        None => Ok(records),
    }
}
