//! The invariants the fuzz targets check, one function per target: no input makes the
//! codec panic, and every reply the server would write for a request it read (the
//! result, the fault, the posts served back later by FindContent, the notification
//! sent on to subscribers) is well-formed XML 1.0 that reads back.

use ei_server::codec::{self, client, Reply, Request, ResultCode, WriteOperation};
use ei_server::rules::{self, EiError, RulesConfig};
use quick_xml::events::Event;
use quick_xml::Reader;

/// The logical address the samples in tests/samples are sent to.
const OWN_HSA_ID: &str = "5565594230";

/// A request body as the service handles it: read, validated by the contract's rules,
/// answered with a result or a fault (both error modes); valid posts are also written
/// out as FindContent would serve them and as a notification would carry them.
pub fn check_request(data: &[u8]) {
    let cfg = RulesConfig::new(OWN_HSA_ID, "SE-PLATFORM");
    let request = match codec::parse_request(data) {
        Ok(request) => request,
        Err(e) => {
            check_error_replies(None, &EiError::Technical(e.to_string()));
            return;
        }
    };
    match request {
        Request::FindContent { query, .. } => {
            let raw = query.fields.clone();
            if let Err(e) = rules::validate_find(*query) {
                check_error_replies(None, &e);
            } else {
                let mut out = String::new();
                codec::write_find_content_request(&mut out, OWN_HSA_ID, &raw);
                assert_well_formed(&out);
            }
        }
        Request::Write {
            operation,
            logical_address,
            transactions,
        } => {
            let valid = match operation {
                WriteOperation::Update => {
                    rules::validate_update(&cfg, logical_address.as_deref(), transactions)
                }
                WriteOperation::ProcessNotification => {
                    rules::validate_notification(&cfg, transactions)
                }
            };
            match valid {
                Err(e) => check_error_replies(Some(operation), &e),
                Ok(valid) => {
                    let mut out = String::new();
                    codec::write_result(&mut out, operation, ResultCode::Ok, None);
                    assert_reads_back(&out);
                    // What FindContent serves once these are stored.
                    let mut out = String::new();
                    codec::write_find_content_response(
                        &mut out,
                        valid.iter().map(|t| &t.engagement),
                    );
                    match assert_reads_back(&out) {
                        Reply::Engagements(read) => assert_eq!(read.len(), valid.len()),
                        other => panic!("FindContent reply read back as {other:?}"),
                    }
                    // What a subscriber receives.
                    let mut out = String::new();
                    codec::write_write_request(
                        &mut out,
                        WriteOperation::ProcessNotification,
                        "SE-SUBSCRIBER",
                        &valid,
                    );
                    assert_well_formed(&out);
                    let again = codec::parse_request(out.as_bytes())
                        .unwrap_or_else(|e| panic!("notification does not read back: {e}\n{out}"));
                    match again {
                        Request::Write { transactions, .. } => {
                            assert_eq!(transactions.len(), valid.len())
                        }
                        other => panic!("notification read back as {other:?}"),
                    }
                }
            }
        }
    }
}

/// The fault, and for a write also the ResultCode ERROR reply, for `e`.
fn check_error_replies(write: Option<WriteOperation>, e: &EiError) {
    let wire = e.wire();
    let mut out = String::new();
    codec::write_fault(&mut out, wire.fault_code.qname(), &wire.text);
    match assert_reads_back(&out) {
        Reply::Fault { message, .. } => assert_eq!(message, wire.text),
        other => panic!("fault read back as {other:?}"),
    }
    if let Some(op) = write.filter(|_| e.is_logical()) {
        let mut out = String::new();
        codec::write_result(&mut out, op, ResultCode::Error, Some(&wire.text));
        match assert_reads_back(&out) {
            Reply::Result { code, comment } => {
                assert_eq!(code, ResultCode::Error);
                assert_eq!(comment.as_deref(), Some(wire.text.as_str()));
            }
            other => panic!("ERROR result read back as {other:?}"),
        }
    }
}

/// A reply body as the loader, capacity and the notifier read it: never a panic,
/// whatever the status.
pub fn check_reply(data: &[u8]) {
    let _ = codec::parse_reply(data);
    for status in [200, 500] {
        let _ = client::classify_write(status, data);
        let _ = client::classify_find_content(status, data);
    }
}

/// The registry's answer as the notifier reads it: never a panic, and every logical
/// address it yields can be put into a well-formed notification.
pub fn check_registry(data: &[u8]) {
    let _ = client::classify_logical_addressees(200, data);
    if let Ok(records) = codec::parse_logical_addressees_response(data) {
        for r in records {
            let mut out = String::new();
            codec::write_write_request(
                &mut out,
                WriteOperation::ProcessNotification,
                &r.logical_address,
                &[],
            );
            assert_well_formed(&out);
        }
    }
}

/// Well-formed, and read back by the codec's own reply reader.
fn assert_reads_back(xml: &str) -> Reply {
    assert_well_formed(xml);
    codec::parse_reply(xml.as_bytes())
        .unwrap_or_else(|e| panic!("a reply the server writes does not read back: {e}\n{xml}"))
}

/// Reads `xml` to the end: tags balanced, one root, attributes well-formed, every
/// character (also those of references) one XML 1.0 allows.
pub fn assert_well_formed(xml: &str) {
    if let Some(c) = xml.chars().find(|&c| !is_xml_char(c)) {
        panic!(
            "character U+{:04X} is not allowed in XML 1.0:\n{xml:?}",
            c as u32
        );
    }
    let mut reader = Reader::from_str(xml);
    let mut depth = 0usize;
    let mut roots = 0usize;
    loop {
        let event = reader
            .read_event()
            .unwrap_or_else(|e| panic!("not well-formed: {e}\n{xml}"));
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if depth == 0 {
                    roots += 1;
                }
                for a in e.attributes().with_checks(true) {
                    a.unwrap_or_else(|e| panic!("bad attribute: {e}\n{xml}"));
                }
                if matches!(event, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::End(_) => depth -= 1,
            Event::GeneralRef(r) => {
                if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) if is_xml_char(c) => {}
                        _ => panic!("bad character reference\n{xml}"),
                    }
                } else {
                    let name = r.clone().into_inner();
                    assert!(
                        quick_xml::escape::resolve_predefined_entity(&name).is_some(),
                        "undeclared entity &{name};\n{xml}"
                    );
                }
            }
            Event::Text(t) => {
                assert!(
                    depth > 0 || t.xml10_content().trim().is_empty(),
                    "text outside the root\n{xml}"
                )
            }
            Event::DocType(_) => panic!("a reply with a DOCTYPE\n{xml}"),
            Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(depth, 0, "unclosed elements\n{xml}");
    assert_eq!(roots, 1, "not exactly one root element\n{xml}");
}

/// XML 1.0's `Char` production.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}
