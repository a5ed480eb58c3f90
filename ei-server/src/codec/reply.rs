//! Reading replies and faults (for clients of the services: the loader, the
//! notifier, tests), through one element loop that the registry's reader shares.

use super::{resolve_reference, xml_err, CodecError, ResultCode};
use crate::model::{Field, RawEngagement};
use quick_xml::events::Event;
use quick_xml::Reader;

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
        text: &'a str,
    },
}

/// The open elements' local names, kept in one buffer (no allocation per element).
#[derive(Default)]
struct Path {
    names: String,
    starts: Vec<usize>,
}

/// The one loop of the reply readers: walks the document by local names (prefixes
/// ignored, as the request reader does, so any binding reads alike), hands each
/// element to `visit` and collects a SOAP fault's `faultcode` and `faultstring` on the
/// way. An empty element opens and closes with empty text.
pub(super) fn read_elements(
    body: &[u8],
    mut visit: impl FnMut(Element<'_>),
) -> Result<SoapFault, CodecError> {
    let text = std::str::from_utf8(body).map_err(|e| CodecError::Encoding(e.to_string()))?;
    let mut reader = Reader::from_str(text);
    let mut path = Path::default();
    let mut buf = String::new();
    let mut fault = SoapFault::default();
    loop {
        let event = reader.read_event().map_err(xml_err)?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let local = e.local_name();
                let name: &str = local.as_ref();
                visit(Element::Open {
                    name,
                    depth: path.starts.len(),
                });
                path.starts.push(path.names.len());
                path.names.push_str(name);
                buf.clear();
                if matches!(event, Event::Empty(_)) {
                    close(&mut path, "", &mut fault, &mut visit);
                }
            }
            Event::Text(t) => buf.push_str(&t.xml10_content()),
            Event::CData(c) => buf.push_str(&c.xml10_content()),
            Event::GeneralRef(r) => buf.push_str(&resolve_reference(&r)?),
            Event::End(_) => {
                // Checked here, not only in the request reader: a client puts what it
                // reads (a subscriber's logical address) into requests it writes.
                if let Some(c) = buf.chars().find(|&c| !crate::rules::is_xml_char(c)) {
                    return Err(CodecError::Xml(format!(
                        "character U+{:04X} is not allowed in XML 1.0",
                        u32::from(c)
                    )));
                }
                close(&mut path, &buf, &mut fault, &mut visit);
                buf.clear();
            }
            Event::DocType(_) => return Err(CodecError::Doctype),
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(fault)
}

/// Closes the innermost element with `text`.
fn close(path: &mut Path, text: &str, fault: &mut SoapFault, visit: &mut impl FnMut(Element<'_>)) {
    let Some(start) = path.starts.pop() else {
        return;
    };
    let name = &path.names[start..];
    match name {
        "faultcode" => fault.code = Some(text.to_owned()),
        "faultstring" => fault.text = Some(text.to_owned()),
        _ => {}
    }
    visit(Element::Close {
        name,
        parent: path.starts.last().map(|&p| &path.names[p..start]),
        depth: path.starts.len(),
        text,
    });
    path.names.truncate(start);
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
            "ResultCode" => result = Some(text.to_owned()),
            "comment" => comment = Some(text.to_owned()),
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
