//! Reading replies and faults (for clients of the services: the loader, the
//! notifier, tests), through one element loop that the registry's reader shares.

use super::{resolve_reference, xml_err, CodecError, ResultCode};
use crate::model::{Field, RawEngagement};
use quick_xml::events::Event;
use quick_xml::NsReader;

/// A reply, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Result {
        code: ResultCode,
        comment: Option<String>,
    },
    Engagements(Vec<RawEngagement>),
    Fault {
        code: String,
        message: String,
    },
}

/// A SOAP 1.1 fault found in a reply: `faultcode` and `faultstring`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct SoapFault {
    pub code: Option<String>,
    pub text: Option<String>,
}

/// One step of [`read_elements`]: an element opens, or closes with its text.
pub(super) enum Element<'a> {
    /// `depth` is the number of enclosing elements.
    Open { name: &'a str, depth: usize },
    /// `text` is the element's own text after its last child; `parent` the local name
    /// of the enclosing element.
    Close {
        name: &'a str,
        parent: Option<&'a str>,
        depth: usize,
        text: String,
    },
}

/// The one loop of the reply readers: walks the document by local names (prefixes
/// resolved, then ignored, so any binding reads alike), hands each element to `visit`
/// and collects a SOAP fault's `faultcode` and `faultstring` on the way. An empty
/// element opens and closes with empty text.
pub(super) fn read_elements(
    body: &[u8],
    mut visit: impl FnMut(Element<'_>),
) -> Result<SoapFault, CodecError> {
    let text = std::str::from_utf8(body).map_err(|e| CodecError::Encoding(e.to_string()))?;
    let mut reader = NsReader::from_str(text);
    let mut path: Vec<String> = Vec::new();
    let mut buf = String::new();
    let mut fault = SoapFault::default();
    loop {
        let (_, event) = reader.read_resolved_event().map_err(xml_err)?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let name: String = e.local_name().as_ref().to_owned();
                let depth = path.len();
                visit(Element::Open { name: &name, depth });
                path.push(name);
                buf.clear();
                if matches!(event, Event::Empty(_)) {
                    close(&mut path, String::new(), &mut fault, &mut visit);
                }
            }
            Event::Text(t) => buf.push_str(&t.xml10_content()),
            Event::CData(c) => buf.push_str(&c.xml10_content()),
            Event::GeneralRef(r) => buf.push_str(&resolve_reference(&r)?),
            Event::End(_) => close(&mut path, std::mem::take(&mut buf), &mut fault, &mut visit),
            Event::DocType(_) => return Err(CodecError::Doctype),
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(fault)
}

/// Closes the innermost element with `text`.
fn close(
    path: &mut Vec<String>,
    text: String,
    fault: &mut SoapFault,
    visit: &mut impl FnMut(Element<'_>),
) {
    let name = path.pop().unwrap_or_default();
    match name.as_str() {
        "faultcode" => fault.code = Some(text.clone()),
        "faultstring" => fault.text = Some(text.clone()),
        _ => {}
    }
    visit(Element::Close {
        name: &name,
        parent: path.last().map(String::as_str),
        depth: path.len(),
        text,
    });
}

/// Reads an Update/ProcessNotification/FindContent reply or a fault.
pub fn parse_reply(body: &[u8]) -> Result<Reply, CodecError> {
    let mut engagements: Vec<RawEngagement> = Vec::new();
    let (mut result, mut comment) = (None, None);
    let mut is_find = false;
    let fault = read_elements(body, |element| match element {
        Element::Open { name, depth } => match name {
            "FindContentResponse" => is_find = true,
            "engagement" if depth == 3 => engagements.push(RawEngagement::default()),
            _ => {}
        },
        Element::Close {
            name, depth, text, ..
        } => match name {
            "ResultCode" => result = Some(text),
            "comment" => comment = Some(text),
            n if depth == 4 => {
                if let (Some(f), Some(e)) = (Field::from_name(n), engagements.last_mut()) {
                    e.set(f, text);
                }
            }
            _ => {}
        },
    })?;
    if let Some(code) = fault.code {
        return Ok(Reply::Fault {
            code,
            message: fault.text.unwrap_or_default(),
        });
    }
    if is_find {
        return Ok(Reply::Engagements(engagements));
    }
    let code = result.ok_or_else(|| CodecError::NoOperation("reply".into()))?;
    Ok(Reply::Result {
        code: ResultCode::try_from(code.as_str())?,
        comment,
    })
}
