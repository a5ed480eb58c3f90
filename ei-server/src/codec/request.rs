//! Reading the three requests: a small state machine over quick-xml's events, keyed
//! on the parent element. Only the root's namespace is checked (it must be the SOAP
//! 1.1 envelope's, declared on the root itself since nothing encloses it); below it
//! elements are matched by local name, so no namespace resolution runs per event.

use super::{resolve_reference, xml_err, CodecError, Operation, Request, SOAP_ENV_NS};
use crate::model::{Field, RawFindContent, RawTransaction};
use crate::rules::MAX_TRANSACTIONS;
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Where the reader is: the element at the top of the stack decides what its children
/// and text mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ctx {
    Envelope,
    Header,
    LogicalAddress,
    Body,
    Operation(Operation),
    Transaction,
    DeleteFlag,
    Engagement,
    EngagementField(Field),
    QueryField(Field),
    /// An element the contract does not name (or a reply element): skipped, text ignored.
    Ignored,
}

#[derive(Default)]
struct Builder {
    operation: Option<Operation>,
    logical_address: Option<String>,
    transactions: Vec<RawTransaction>,
    query: RawFindContent,
    text: String,
}

/// Reads one request body.
pub fn parse_request(body: &[u8]) -> Result<Request, CodecError> {
    let text = std::str::from_utf8(body).map_err(|e| CodecError::Encoding(e.to_string()))?;
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Ctx> = Vec::with_capacity(8);
    let mut b = Builder::default();
    let mut seen_root = false;
    loop {
        let event = reader.read_event().map_err(xml_err)?;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                if stack.is_empty() {
                    if seen_root {
                        return Err(CodecError::Xml("more than one root element".into()));
                    }
                    seen_root = true;
                }
                let ctx = child_ctx(stack.last().copied(), e)?;
                open(&mut b, ctx)?;
                if empty {
                    close(&mut b, ctx);
                } else {
                    stack.push(ctx);
                }
            }
            Event::End(_) => {
                let ctx = stack
                    .pop()
                    .ok_or_else(|| CodecError::Xml("unexpected end tag".into()))?;
                close(&mut b, ctx);
            }
            Event::Text(t) => {
                if captures(stack.last()) {
                    b.text.push_str(&t.xml10_content());
                } else if stack.is_empty() && !t.xml10_content().trim().is_empty() {
                    return Err(CodecError::Xml("text outside the root element".into()));
                }
            }
            Event::CData(c) => {
                if captures(stack.last()) {
                    b.text.push_str(&c.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                let resolved = resolve_reference(&r)?;
                if captures(stack.last()) {
                    b.text.push_str(&resolved);
                }
            }
            Event::DocType(_) => return Err(CodecError::Doctype),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(CodecError::Xml(
            "the document ends inside an element".into(),
        ));
    }
    if !seen_root {
        return Err(CodecError::Xml("the request body is empty".into()));
    }
    finish(b)
}

fn captures(ctx: Option<&Ctx>) -> bool {
    matches!(
        ctx,
        Some(Ctx::LogicalAddress | Ctx::DeleteFlag | Ctx::EngagementField(_) | Ctx::QueryField(_))
    )
}

/// What a child element means, given its parent.
fn child_ctx(parent: Option<Ctx>, e: &BytesStart<'_>) -> Result<Ctx, CodecError> {
    if parent.is_some() {
        check_attributes(e)?;
    }
    let local = e.local_name();
    let name = local.as_ref();
    Ok(match parent {
        None => {
            let ns = root_namespace(e)?;
            if name != "Envelope" || ns.as_deref() != Some(SOAP_ENV_NS) {
                let ns = ns.map_or("no namespace".to_owned(), |n| format!("namespace {n}"));
                return Err(CodecError::NotSoap(format!(
                    "the root element is {name} in {ns}"
                )));
            }
            Ctx::Envelope
        }
        Some(Ctx::Envelope) if name == "Header" => Ctx::Header,
        Some(Ctx::Envelope) if name == "Body" => Ctx::Body,
        Some(Ctx::Header) if name == "LogicalAddress" => Ctx::LogicalAddress,
        Some(Ctx::Body) => match Operation::from_name(name) {
            Some(op) => Ctx::Operation(op),
            None => Ctx::Ignored,
        },
        Some(Ctx::Operation(Operation::FindContent)) => match Field::from_name(name) {
            Some(f) => Ctx::QueryField(f),
            None => Ctx::Ignored,
        },
        Some(Ctx::Operation(_)) if name == "engagementTransaction" => Ctx::Transaction,
        Some(Ctx::Transaction) if name == "deleteFlag" => Ctx::DeleteFlag,
        Some(Ctx::Transaction) if name == "engagement" => Ctx::Engagement,
        Some(Ctx::Engagement) => match Field::from_name(name) {
            Some(f) => Ctx::EngagementField(f),
            None => Ctx::Ignored,
        },
        Some(_) => Ctx::Ignored,
    })
}

/// The namespace of the root element, from the declarations on the root itself.
fn root_namespace(e: &BytesStart<'_>) -> Result<Option<String>, CodecError> {
    let qname = e.name();
    let wanted = match qname.prefix() {
        Some(p) => format!("xmlns:{}", p.as_ref()),
        None => "xmlns".to_owned(),
    };
    for attr in e.attributes() {
        let attr = attr.map_err(|e| CodecError::Xml(e.to_string()))?;
        if attr.key.as_ref() == wanted {
            return Ok(Some(attr.value.into_owned()));
        }
    }
    match qname.prefix() {
        Some(p) => Err(CodecError::NotSoap(format!(
            "the root element's prefix {} is not declared",
            p.as_ref()
        ))),
        None => Ok(None),
    }
}

/// Checks the attributes of an element below the root for well-formedness (quotes,
/// duplicates, no `<` in a value, only resolvable references); their values are not
/// used. Elements without attributes cost one byte comparison.
fn check_attributes(e: &BytesStart<'_>) -> Result<(), CodecError> {
    for attr in e.attributes() {
        let attr = attr.map_err(|e| CodecError::Xml(e.to_string()))?;
        let value: &str = &attr.value;
        if value.contains('<') {
            return Err(CodecError::Xml(
                "an attribute value contains '<'".to_owned(),
            ));
        }
        if value.contains('&') {
            quick_xml::escape::unescape(value)
                .map_err(|e| CodecError::Xml(format!("an attribute value: {e}")))?;
        }
    }
    Ok(())
}

/// Starts an element. Refuses a second operation element in the Body (it would
/// otherwise be merged into the first) and the 1001st transaction (so an oversized
/// request costs no more than a full one).
fn open(b: &mut Builder, ctx: Ctx) -> Result<(), CodecError> {
    match ctx {
        Ctx::Operation(op) => {
            if let Some(first) = b.operation {
                return Err(CodecError::SecondOperation {
                    first: first.name(),
                    second: op.name(),
                });
            }
            b.operation = Some(op);
        }
        Ctx::Transaction => {
            if b.transactions.len() == MAX_TRANSACTIONS {
                return Err(CodecError::TooManyTransactions);
            }
            b.transactions.push(RawTransaction::default())
        }
        Ctx::LogicalAddress | Ctx::DeleteFlag | Ctx::EngagementField(_) | Ctx::QueryField(_) => {
            b.text.clear()
        }
        _ => {}
    }
    Ok(())
}

fn close(b: &mut Builder, ctx: Ctx) {
    let mut text = || std::mem::take(&mut b.text);
    match ctx {
        Ctx::LogicalAddress => b.logical_address = Some(text()),
        Ctx::DeleteFlag => {
            let v = text();
            if let Some(t) = b.transactions.last_mut() {
                t.delete_flag = Some(v);
            }
        }
        Ctx::EngagementField(f) => {
            let v = text();
            if let Some(t) = b.transactions.last_mut() {
                t.engagement.set(f, v);
            }
        }
        Ctx::QueryField(f) => {
            let v = text();
            b.query.fields.set(f, v);
        }
        _ => {}
    }
}

fn finish(b: Builder) -> Result<Request, CodecError> {
    match b.operation.map(Operation::write) {
        Some(None) => Ok(Request::FindContent {
            logical_address: b.logical_address,
            query: Box::new(b.query),
        }),
        Some(Some(operation)) => Ok(Request::Write {
            operation,
            logical_address: b.logical_address,
            transactions: b.transactions,
        }),
        None => Err(CodecError::NoOperation(
            "Update, ProcessNotification or FindContent".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(body: &str) -> String {
        format!("<s:Envelope xmlns:s=\"{SOAP_ENV_NS}\"><s:Body>{body}</s:Body></s:Envelope>")
    }

    #[test]
    fn a_second_operation_is_refused_not_merged() {
        let body = envelope("<Update><engagementTransaction/></Update><FindContent/>");
        let err = parse_request(body.as_bytes()).unwrap_err();
        assert!(err
            .to_string()
            .contains("second operation element (FindContent after Update)"));
    }

    #[test]
    fn reading_stops_at_the_1001st_transaction() {
        let txs = "<engagementTransaction/>".repeat(MAX_TRANSACTIONS);
        let ok = envelope(&format!("<Update>{txs}</Update>"));
        assert!(parse_request(ok.as_bytes()).is_ok());
        let over = envelope(&format!("<Update>{txs}<engagementTransaction/><<</Update>"));
        assert_eq!(
            parse_request(over.as_bytes()).unwrap_err(),
            CodecError::TooManyTransactions
        );
    }

    #[test]
    fn attributes_below_the_root_must_be_well_formed() {
        for bad in [
            "a=\"1\" a=\"2\"",
            "a=1",
            "a=\"<\"",
            "a=\"&x;\"",
            "a=\"&#0;\"",
        ] {
            let body = envelope(&format!("<FindContent {bad}/>"));
            assert!(parse_request(body.as_bytes()).is_err(), "{bad}");
        }
        let body = envelope("<FindContent a=\"&amp;&#65;\" b='x'/>");
        assert!(parse_request(body.as_bytes()).is_ok());
    }
}
