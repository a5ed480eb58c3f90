//! The codec against the platform's own sample bodies, hand-written lenient variants,
//! malformed input, and write → read round trips.

use super::*;
use crate::model::{Action, Engagement, Field, RawEngagement, Timestamp, Transaction};
use crate::rules::{validate_update, RulesConfig};

const SAMPLE_1: &str = include_str!("../../../tests/samples/Update_1_OK.xml");
const SAMPLE_1000: &str = include_str!("../../../tests/samples/Update_1000_OK.xml");
const SAMPLE_FIND: &str = include_str!("../../../tests/samples/FindContent_OK.xml");

fn parse_write(body: &str) -> (WriteOperation, Option<String>, Vec<RawTransaction>) {
    match parse_request(body.as_bytes()).unwrap() {
        Request::Write {
            operation,
            logical_address,
            transactions,
        } => (operation, logical_address, transactions),
        other => panic!("not a write: {other:?}"),
    }
}

#[test]
fn reads_the_platform_sample_update() {
    let (op, la, txs) = parse_write(SAMPLE_1);
    assert_eq!(op, WriteOperation::Update);
    assert_eq!(la.as_deref(), Some("5565594230"));
    assert_eq!(txs.len(), 1);
    let e = &txs[0].engagement;
    assert_eq!(txs[0].delete_flag.as_deref(), Some("false"));
    assert_eq!(
        e.get(Field::RegisteredResidentIdentification),
        Some("${citizenId1}")
    );
    assert_eq!(
        e.get(Field::ServiceDomain),
        Some("urn:riv:test:domain-scaletest1")
    );
    assert_eq!(
        e.get(Field::BusinessObjectInstanceIdentifier),
        Some("172560")
    );
    assert_eq!(e.get(Field::MostRecentContent), Some("20150310104108"));
    assert_eq!(e.get(Field::Owner), None);
}

#[test]
fn reads_the_1000_post_sample() {
    let (_, _, txs) = parse_write(SAMPLE_1000);
    assert_eq!(txs.len(), 1000);
    assert!(txs
        .iter()
        .all(|t| t.engagement.get(Field::DataController).is_some()));
}

#[test]
fn reads_the_sample_find_content_despite_leading_whitespace() {
    match parse_request(SAMPLE_FIND.as_bytes()).unwrap() {
        Request::FindContent { query, .. } => {
            assert_eq!(
                query.fields.get(Field::RegisteredResidentIdentification),
                Some("${citizenId1}")
            );
            assert_eq!(
                query.fields.get(Field::ServiceDomain),
                Some("urn:riv:test:domain-1")
            );
            assert_eq!(query.fields.get(Field::Categorization), None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn lenient_prefixes_order_unknown_elements_and_missing_delete_flag() {
    let body = r#"<?xml version="1.0"?>
<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/">
 <e:Body>
  <Update xmlns="urn:riv:itintegration:engagementindex:UpdateResponder:1" xmlns:x="urn:other">
   <x:extension><engagementTransaction><deleteFlag>true</deleteFlag></engagementTransaction></x:extension>
   <engagementTransaction>
    <engagement>
      <owner>ignored</owner><dataController>dc</dataController>
      <x:unknown>skip <b>me</b></x:unknown>
      <registeredResidentIdentification>191212121212</registeredResidentIdentification>
      <categorization>a &amp; b &#x41;<![CDATA[<c>]]></categorization>
    </engagement>
   </engagementTransaction>
  </Update>
 </e:Body>
</e:Envelope>"#;
    let (_, la, txs) = parse_write(body);
    assert_eq!(la, None);
    assert_eq!(
        txs.len(),
        1,
        "transactions inside unknown elements are not read"
    );
    assert_eq!(txs[0].delete_flag, None);
    let e = &txs[0].engagement;
    assert_eq!(e.get(Field::Categorization), Some("a & b A<c>"));
    assert_eq!(e.get(Field::DataController), Some("dc"));
    assert_eq!(
        e.get(Field::RegisteredResidentIdentification),
        Some("191212121212")
    );
}

#[test]
fn empty_elements_are_empty_strings() {
    let body = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:ProcessNotification xmlns:u="urn:x"><u:engagementTransaction><u:engagement><u:owner/></u:engagement></u:engagementTransaction></u:ProcessNotification></s:Body></s:Envelope>"#;
    let (op, _, txs) = parse_write(body);
    assert_eq!(op, WriteOperation::ProcessNotification);
    assert_eq!(txs[0].engagement.get(Field::Owner), Some(""));
}

#[test]
fn refuses_what_it_cannot_read() {
    let env = |inner: &str| {
        format!(
            r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>{inner}</s:Body></s:Envelope>"#
        )
    };
    let cases: Vec<(String, &str)> = vec![
        ("".into(), "empty"),
        ("<a>".into(), "not a SOAP 1.1 envelope"),
        (env("<Update><engagementTransaction></Update>"), "not well-formed"),
        (env("<Update>"), "not well-formed"),
        (r#"<!DOCTYPE x [<!ENTITY e "boom">]><x/>"#.into(), "DOCTYPE"),
        (env("<Update><engagementTransaction><engagement><owner>&e;</owner></engagement></engagementTransaction></Update>"), "unknown entity &e;"),
        (env("<Unknown/>"), "holds no"),
        (r#"<Envelope xmlns="http://www.w3.org/2003/05/soap-envelope"/>"#.into(), "not a SOAP 1.1 envelope"),
        (format!("{}<x/>", env("")), "more than one root"),
        (env("<Update>&#0;</Update>"), "character reference"),
        ("<s:Envelope><s:Body/></s:Envelope>".into(), "prefix s is not declared"),
        ("<Envelope><Body/></Envelope>".into(), "in no namespace"),
    ];
    for (body, why) in cases {
        let err = parse_request(body.as_bytes()).unwrap_err().to_string();
        assert!(err.contains(why), "{body}: {err} should mention {why}");
    }
    let err = parse_request(&[0xff, 0xfe, b'<']).unwrap_err();
    assert!(matches!(err, CodecError::Encoding(_)));
}

#[test]
fn update_reply_binds_ns2() {
    let mut out = String::new();
    write_result(&mut out, WriteOperation::Update, ResultCode::Ok, None);
    assert!(out.contains("<ns2:ResultCode>OK</ns2:ResultCode>"));
    assert!(out.contains(r#"xmlns:ns2="urn:riv:itintegration:engagementindex:UpdateResponder:1""#));
    assert_eq!(
        parse_reply(out.as_bytes()).unwrap(),
        Reply::Result {
            code: ResultCode::Ok,
            comment: None
        }
    );
    out.clear();
    write_result(
        &mut out,
        WriteOperation::ProcessNotification,
        ResultCode::Error,
        Some("EI002: x < y"),
    );
    assert!(out.contains("<ns2:ProcessNotificationResponse"));
    assert_eq!(
        parse_reply(out.as_bytes()).unwrap(),
        Reply::Result {
            code: ResultCode::Error,
            comment: Some("EI002: x < y".into())
        }
    );
}

#[test]
fn fault_round_trip_escapes_text() {
    let mut out = String::new();
    write_fault(&mut out, "soap:Client", "EI004: field \"a\" <b> & c");
    assert_eq!(
        parse_reply(out.as_bytes()).unwrap(),
        Reply::Fault {
            code: "soap:Client".into(),
            message: "EI004: field \"a\" <b> & c".into()
        }
    );
}

fn sample_transactions() -> Vec<Transaction> {
    let filled = (1..=4).fold(SAMPLE_1000.to_owned(), |s, i| {
        s.replace(&format!("${{citizenId{i}}}"), &format!("19121212{i:04}"))
    });
    let (_, _, raw) = parse_write(&filled);
    validate_update(
        &RulesConfig::new("5565594230", "p"),
        Some("5565594230"),
        raw,
    )
    .unwrap()
}

#[test]
fn write_request_round_trips_through_the_reader() {
    let mut txs = sample_transactions();
    txs[3].action = Action::Delete;
    txs[5].engagement.most_recent_content = None;
    let mut out = String::new();
    write_write_request(&mut out, WriteOperation::Update, "5565594230", &txs);
    let (op, la, raw) = parse_write(&out);
    assert_eq!(
        (op, la.as_deref()),
        (WriteOperation::Update, Some("5565594230"))
    );
    let back = validate_update(
        &RulesConfig::new("5565594230", "p"),
        Some("5565594230"),
        raw,
    )
    .unwrap();
    assert_eq!(back, txs);
}

#[test]
fn find_content_reply_round_trips_and_omits_unset_times() {
    let mut txs = sample_transactions();
    txs.truncate(50);
    let mut es: Vec<Engagement> = txs.into_iter().map(|t| t.engagement).collect();
    es[0].creation_time = Some(Timestamp::try_from("20200101120000").unwrap());
    es[0].key = es[0].key.with_owner("a<&>b");
    let mut out = String::new();
    write_find_content_response(&mut out, &es);
    assert!(!out.contains("<updateTime>"), "unset updateTime is omitted");
    let Reply::Engagements(back) = parse_reply(out.as_bytes()).unwrap() else {
        panic!()
    };
    assert_eq!(back.len(), 50);
    for (raw, e) in back.iter().zip(&es) {
        for f in Field::ALL {
            assert_eq!(raw.get(f).map(str::to_owned), e.field(f), "{f}");
        }
    }
}

#[test]
fn find_content_request_round_trips() {
    let mut q = RawEngagement::default();
    q.set(Field::RegisteredResidentIdentification, "191212121212");
    q.set(Field::ServiceDomain, "d");
    q.set(Field::MostRecentContent, "20200101000000");
    let mut out = String::new();
    write_find_content_request(&mut out, "ei", &q);
    match parse_request(out.as_bytes()).unwrap() {
        Request::FindContent {
            logical_address,
            query,
        } => {
            assert_eq!(logical_address.as_deref(), Some("ei"));
            assert_eq!(query.fields, q);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_find_content_reply() {
    let mut out = String::new();
    write_find_content_response(&mut out, &[]);
    assert_eq!(
        parse_reply(out.as_bytes()).unwrap(),
        Reply::Engagements(vec![])
    );
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        // Printable text including XML specials and non-ASCII, no edge whitespace.
        "[a-zA-Z0-9<>&\"'åäö:;._ -]{0,20}[a-zA-Z0-9<>&åäö]"
    }

    proptest! {
        #[test]
        fn any_field_text_survives_write_and_read(values in proptest::collection::vec(text(), 9)) {
            let mut q = RawEngagement::default();
            for (f, v) in Field::KEY.iter().zip(&values) {
                q.set(*f, v.clone());
            }
            let mut out = String::new();
            write_find_content_request(&mut out, "ei", &q);
            let Request::FindContent { query, .. } = parse_request(out.as_bytes()).unwrap() else { panic!() };
            prop_assert_eq!(query.fields, q);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_request(&bytes);
        }

        #[test]
        fn truncated_bodies_are_errors_not_panics(cut in 0usize..1376) {
            let body = &SAMPLE_1.as_bytes()[..cut.min(SAMPLE_1.len())];
            if cut < SAMPLE_1.trim_end().len() {
                prop_assert!(parse_request(body).is_err());
            }
        }
    }
}

#[test]
fn registry_request_and_response() {
    let mut out = String::new();
    write_logical_addressees_request(&mut out, "reg", "ei-hsa-id", NOTIFICATION_NS);
    assert!(out.contains("<r:serviceConsumerHsaId>ei-hsa-id</r:serviceConsumerHsaId>"));
    assert!(out.contains(NOTIFICATION_NS));
    let answer = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>
      <GetLogicalAddresseesByServiceContractResponse xmlns="urn:riv:infrastructure:itintegration:registry:GetLogicalAddresseesByServiceContractResponder:2">
        <logicalAddressRecord><logicalAddress>SE1</logicalAddress>
          <filter><serviceDomain>riv:a</serviceDomain><categorization>x</categorization><categorization>y</categorization></filter>
          <filter><serviceDomain>riv:b</serviceDomain></filter>
        </logicalAddressRecord>
        <logicalAddressRecord><logicalAddress>SE2</logicalAddress></logicalAddressRecord>
      </GetLogicalAddresseesByServiceContractResponse></s:Body></s:Envelope>"#;
    let records = parse_logical_addressees_response(answer.as_bytes()).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].logical_address, "SE1");
    assert_eq!(
        records[0].filters,
        vec![
            ("riv:a".to_owned(), vec!["x".to_owned(), "y".to_owned()]),
            ("riv:b".to_owned(), vec![])
        ]
    );
    assert_eq!(records[1].filters, vec![]);
    let mut fault = String::new();
    write_fault(&mut fault, "soap:Server", "down");
    assert!(parse_logical_addressees_response(fault.as_bytes()).is_err());
}

#[test]
fn envelope_in_the_default_namespace_is_read() {
    let body = r#"<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body><FindContent xmlns="urn:riv:itintegration:engagementindex:FindContentResponder:1"><registeredResidentIdentification>1</registeredResidentIdentification></FindContent></Body></Envelope>"#;
    let Request::FindContent { query, .. } = parse_request(body.as_bytes()).unwrap() else {
        panic!()
    };
    assert_eq!(
        query.fields.get(Field::RegisteredResidentIdentification),
        Some("1")
    );
}

/// Found by the `registry` fuzz target: a logical address the registry sends with a
/// character XML 1.0 forbids (raw or as a reference) went into the header of every
/// notification to that subscriber, which was then not well-formed XML. A reply or
/// registry answer with such a character is itself not XML: refused.
#[test]
fn replies_with_characters_xml_forbids_are_refused() {
    for bad in ["\u{13}", "&#19;", "&#x1;"] {
        let answer = format!(
            "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>\
             <r:GetLogicalAddresseesByServiceContractResponse xmlns:r=\"urn:riv:infrastructure:itintegration:registry:GetLogicalAddresseesByServiceContractResponder:2\">\
             <r:logicalAddressRecord><r:logicalAddress>{bad}E1</r:logicalAddress></r:logicalAddressRecord>\
             </r:GetLogicalAddresseesByServiceContractResponse></s:Body></s:Envelope>"
        );
        let err = parse_logical_addressees_response(answer.as_bytes()).unwrap_err();
        assert!(
            err.to_string().contains("not allowed in XML 1.0"),
            "{bad:?}: {err}"
        );
        let fault = format!(
            "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><s:Fault>\
             <faultcode>s:Server</faultcode><faultstring>x{bad}</faultstring></s:Fault></s:Body></s:Envelope>"
        );
        assert!(parse_reply(fault.as_bytes()).is_err(), "{bad:?}");
    }
}
