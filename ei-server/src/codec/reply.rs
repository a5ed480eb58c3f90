//! Reading replies and faults (for clients of the services: the loader, the
//! notifier, tests).

use super::{resolve_reference, xml_err, CodecError};
use crate::model::{Field, RawEngagement};
use quick_xml::events::Event;
use quick_xml::NsReader;

/// A reply, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Result {
        code: String,
        comment: Option<String>,
    },
    Engagements(Vec<RawEngagement>),
    Fault {
        code: String,
        message: String,
    },
}

/// Reads an Update/ProcessNotification/FindContent reply or a fault.
pub fn parse_reply(body: &[u8]) -> Result<Reply, CodecError> {
    let text = std::str::from_utf8(body).map_err(|e| CodecError::Encoding(e.to_string()))?;
    let mut reader = NsReader::from_str(text);
    let mut path: Vec<String> = Vec::new();
    let mut text_buf = String::new();
    let mut engagements: Vec<RawEngagement> = Vec::new();
    let (mut result, mut comment, mut fault_code, mut fault_string) = (None, None, None, None);
    let mut is_find = false;
    loop {
        let (_, event) = reader.read_resolved_event().map_err(xml_err)?;
        match event {
            Event::Start(e) => {
                let name = e.local_name().as_ref().to_owned();
                if name == "FindContentResponse" {
                    is_find = true;
                }
                if name == "engagement" && path.len() == 3 {
                    engagements.push(RawEngagement::default());
                }
                path.push(name);
                text_buf.clear();
            }
            Event::Empty(e) if e.local_name().as_ref() == "FindContentResponse" => is_find = true,
            Event::Text(t) => text_buf.push_str(&t.xml10_content()),
            Event::GeneralRef(r) => text_buf.push_str(&resolve_reference(&r)?),
            Event::End(_) => {
                let name = path.pop().unwrap_or_default();
                let value = std::mem::take(&mut text_buf);
                match name.as_str() {
                    "ResultCode" => result = Some(value),
                    "comment" => comment = Some(value),
                    "faultcode" => fault_code = Some(value),
                    "faultstring" => fault_string = Some(value),
                    n if path.len() == 4 => {
                        if let (Some(f), Some(e)) = (Field::from_name(n), engagements.last_mut()) {
                            e.set(f, value);
                        }
                    }
                    _ => {}
                }
            }
            Event::DocType(_) => return Err(CodecError::Doctype),
            Event::Eof => break,
            _ => {}
        }
    }
    if let Some(code) = fault_code {
        return Ok(Reply::Fault {
            code,
            message: fault_string.unwrap_or_default(),
        });
    }
    if is_find {
        return Ok(Reply::Engagements(engagements));
    }
    result
        .map(|code| Reply::Result { code, comment })
        .ok_or_else(|| CodecError::NoOperation("reply".into()))
}
