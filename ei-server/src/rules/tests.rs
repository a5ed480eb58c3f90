//! Every rule of contract §2–§4, in order, with its exact wire text.

use super::*;
use crate::model::RawEngagement;

fn cfg() -> RulesConfig {
    RulesConfig::new("ei-hsa-id", "platform-hsa-id")
}

fn raw(resident: &str) -> RawTransaction {
    let mut e = RawEngagement::default();
    for (f, v) in [
        (Field::RegisteredResidentIdentification, resident),
        (
            Field::ServiceDomain,
            "riv:clinicalprocess:healthcond:description",
        ),
        (Field::Categorization, "voo"),
        (Field::LogicalAddress, "SE2321000016-15CQ"),
        (Field::BusinessObjectInstanceIdentifier, "NA"),
        (Field::ClinicalProcessInterestId, "NA"),
        (Field::SourceSystem, "SE2321000016-15CQ"),
        (Field::DataController, "SE2321000016-A12B"),
        (Field::MostRecentContent, "20150310104108"),
    ] {
        e.set(f, v);
    }
    RawTransaction {
        delete_flag: Some("false".into()),
        engagement: e,
    }
}

fn with(mut t: RawTransaction, f: Field, v: Option<&str>) -> RawTransaction {
    t.engagement.fields[f.index()] = v.map(str::to_owned);
    t
}

fn update_err(txs: Vec<RawTransaction>) -> String {
    validate_update(&cfg(), Some("ei-hsa-id"), txs)
        .unwrap_err()
        .wire()
        .text
}

#[test]
fn correlation_id_is_mandatory() {
    assert!(check_correlation_id(Some("abc")).is_ok());
    for missing in [None, Some(""), Some("  ")] {
        let e = check_correlation_id(missing).unwrap_err();
        assert_eq!(
            e.wire().text,
            "Mandatory HTTP header x-skltp-correlation-id is missing"
        );
        assert_eq!(e.wire().code, None);
    }
}

#[test]
fn routing_must_name_this_index() {
    let e = validate_update(&cfg(), Some("other"), vec![raw("191212121212")]).unwrap_err();
    assert_eq!(
        e.wire().text,
        "EI003: Invalid routing. Logical address is other but the owner is ei-hsa-id. They must be the same. See rule for Update-R7 in service contract"
    );
    let e = validate_update(&cfg(), None, vec![raw("191212121212")]).unwrap_err();
    assert!(e.wire().text.contains("Logical address is missing but"));
    let mut c = cfg();
    c.alternative_hsa_id = Some("5565594230".into());
    assert!(validate_update(&c, Some("5565594230"), vec![raw("191212121212")]).is_ok());
    c.check_logical_address = false;
    assert!(validate_update(&c, Some("anything"), vec![raw("191212121212")]).is_ok());
}

#[test]
fn routing_is_checked_before_the_count() {
    let e = validate_update(&cfg(), Some("x"), vec![]).unwrap_err();
    assert_eq!(e.wire().code, Some("EI003"));
}

#[test]
fn transaction_count_bounds() {
    assert_eq!(
        update_err(vec![]),
        "EI000: A technical error has occurred, error message: The request contains less than 1 engagements. Minium number of engagements per request is 1."
    );
    let many = (0..1001).map(|i| raw(&format!("19121212{i:04}"))).collect();
    assert_eq!(
        update_err(many),
        "EI000: A technical error has occurred, error message: The request contains more than 1000 engagements. Maximum number of engagements per request is 1000."
    );
    let max: Vec<_> = (0..1000).map(|i| raw(&format!("19121212{i:04}"))).collect();
    assert_eq!(
        validate_update(&cfg(), Some("ei-hsa-id"), max)
            .unwrap()
            .len(),
        1000
    );
}

#[test]
fn duplicate_keys_name_both_transactions() {
    let txs = vec![raw("1"), raw("2"), raw("3"), raw("2")];
    assert_eq!(
        update_err(txs),
        "EI002: EngagementTransaction #2 and #4 have the same key. That is not allowed. See rule for Update-R1 in service contract"
    );
}

#[test]
fn update_ignores_the_sent_owner_when_comparing_keys() {
    let a = with(raw("1"), Field::Owner, Some("x"));
    let b = with(raw("1"), Field::Owner, Some("y"));
    assert_eq!(update_err(vec![a, b]).get(..5), Some("EI002"));
}

#[test]
fn duplicate_check_comes_before_the_field_checks_of_that_transaction() {
    let bad = with(raw("1"), Field::Categorization, Some(" voo"));
    let txs = vec![bad.clone(), bad];
    // #1 is checked completely first, so its whitespace error wins.
    assert!(update_err(txs).starts_with("EI004"));
    let ok_then_dup = vec![
        raw("1"),
        with(raw("1"), Field::MostRecentContent, Some("bad")),
    ];
    assert!(update_err(ok_then_dup).starts_with("EI002"));
}

#[test]
fn whitespace_in_key_fields() {
    for f in &Field::UPDATE_KEY {
        let t = with(raw("191212121212"), *f, Some(" padded\t"));
        assert_eq!(
            update_err(vec![t]),
            format!("EI004: The payload does not validate, error messge: mandatory field \"{f}\" contains white space in beginning or end")
        );
    }
}

#[test]
fn reserved_logical_address_and_source_system() {
    let t = with(raw("1"), Field::LogicalAddress, Some("platform-hsa-id"));
    assert_eq!(
        update_err(vec![raw("0"), t]),
        "EI005: The logicalAddress in EngagementTransaction #2 is reserved and not allowed, hsa-id: platform-hsa-id"
    );
    let t = with(raw("1"), Field::SourceSystem, Some("ei-hsa-id"));
    assert_eq!(
        update_err(vec![t]),
        "EI006: The sourceSystem in EngagementTransaction #1 is reserved and not allowed, hsa-id: ei-hsa-id"
    );
}

#[test]
fn whitespace_is_checked_before_reserved_ids() {
    let t = with(raw("1"), Field::LogicalAddress, Some("ei-hsa-id"));
    let t = with(t, Field::DataController, Some("x "));
    assert!(update_err(vec![t]).starts_with("EI004"));
}

#[test]
fn missing_mandatory_fields_in_table_order() {
    for f in &Field::UPDATE_KEY {
        for absent in [None, Some("")] {
            let t = with(raw("191212121212"), *f, absent);
            assert_eq!(
                update_err(vec![t]),
                format!("EI004: The payload does not validate, error messge: mandatory field \"{f}\" is missing")
            );
        }
    }
    let t = with(raw("1"), Field::ServiceDomain, None);
    let t = with(t, Field::Categorization, None);
    assert!(update_err(vec![t]).contains("\"serviceDomain\" is missing"));
}

#[test]
fn owner_is_mandatory_only_for_process_notification() {
    assert!(validate_update(&cfg(), Some("ei-hsa-id"), vec![raw("1")]).is_ok());
    let e = validate_notification(&cfg(), vec![raw("1")]).unwrap_err();
    assert_eq!(
        e.wire().text,
        "EI004: The payload does not validate, error messge: mandatory field \"owner\" is missing"
    );
}

#[test]
fn too_long_fields() {
    for f in Field::UPDATE_KEY.iter().chain(&[Field::MostRecentContent]) {
        let t = with(raw("1"), *f, Some(&"7".repeat(f.max_len() + 1)));
        assert_eq!(
            update_err(vec![t]),
            format!("EI004: The payload does not validate, error messge: Field \"{f}\" is to long")
        );
        let t = with(raw("1"), *f, Some(&"2".repeat(f.max_len())));
        let r = validate_update(&cfg(), Some("ei-hsa-id"), vec![t]);
        if *f != Field::MostRecentContent {
            assert!(r.is_ok(), "{f} at its maximum length is fine");
        }
    }
    // Characters, not bytes: 32 two-byte characters still fit the resident id.
    let t = with(
        raw("1"),
        Field::RegisteredResidentIdentification,
        Some(&"ö".repeat(32)),
    );
    assert!(validate_update(&cfg(), Some("ei-hsa-id"), vec![t]).is_ok());
}

#[test]
fn missing_comes_before_too_long() {
    let t = with(
        raw("1"),
        Field::RegisteredResidentIdentification,
        Some(&"1".repeat(40)),
    );
    let t = with(t, Field::DataController, None);
    assert!(update_err(vec![t]).ends_with("mandatory field \"dataController\" is missing"));
}

#[test]
fn bad_timestamps() {
    let t = with(raw("1"), Field::MostRecentContent, Some("20151310104108"));
    assert_eq!(
        update_err(vec![t]),
        "EI004: The payload does not validate, error messge: Field \"mostRecentContent\": 20151310104108 has an invalid month (13)"
    );
    let t = with(raw("1"), Field::MostRecentContent, Some("2015031010"));
    assert_eq!(
        update_err(vec![t]),
        "EI004: The payload does not validate, error messge: Field \"mostRecentContent\": 2015031010 is not 14 digits (yyyyMMddHHmmss)"
    );
    // Update ignores creationTime/updateTime: the index sets them.
    let t = with(raw("1"), Field::CreationTime, Some("garbage"));
    let ok = validate_update(&cfg(), Some("ei-hsa-id"), vec![t]).unwrap();
    assert_eq!(ok[0].engagement.creation_time, None);
    // ProcessNotification stores them, so checks them.
    let t = with(raw("1"), Field::Owner, Some("other-index"));
    let t = with(t, Field::UpdateTime, Some("20150230000000"));
    let e = validate_notification(&cfg(), vec![t]).unwrap_err();
    assert!(e
        .wire()
        .text
        .ends_with("Field \"updateTime\": 20150230000000 has an invalid day (30)"));
}

#[test]
fn delete_flag() {
    let ok = |flag: Option<&str>| {
        let t = RawTransaction {
            delete_flag: flag.map(Into::into),
            ..raw("1")
        };
        validate_update(&cfg(), Some("ei-hsa-id"), vec![t]).map(|v| v[0].action)
    };
    assert_eq!(ok(None), Ok(Action::Save));
    assert_eq!(ok(Some("false")), Ok(Action::Save));
    assert_eq!(ok(Some("0")), Ok(Action::Save));
    assert_eq!(ok(Some("true")), Ok(Action::Delete));
    assert_eq!(ok(Some("1")), Ok(Action::Delete));
    assert!(ok(Some("yes"))
        .unwrap_err()
        .wire()
        .text
        .contains("\"deleteFlag\""));
}

#[test]
fn update_stamps_the_owner() {
    let t = with(raw("1"), Field::Owner, Some("someone-else"));
    let v = validate_update(&cfg(), Some("ei-hsa-id"), vec![t]).unwrap();
    assert_eq!(v[0].engagement.key.owner(), "ei-hsa-id");
    assert_eq!(
        v[0].engagement.most_recent_content.unwrap().to_string(),
        "20150310104108"
    );
}

#[test]
fn notification_loop_protection_drops_own_posts() {
    let mine = with(raw("1"), Field::Owner, Some("ei-hsa-id"));
    let theirs = with(raw("2"), Field::Owner, Some("other-index"));
    let v = validate_notification(&cfg(), vec![mine, theirs]).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].engagement.key.owner(), "other-index");
}

#[test]
fn notification_keeps_the_given_times() {
    let t = with(raw("2"), Field::Owner, Some("other-index"));
    let t = with(t, Field::CreationTime, Some("20200101000000"));
    let v = validate_notification(&cfg(), vec![t]).unwrap();
    assert_eq!(
        v[0].engagement.creation_time.unwrap().to_string(),
        "20200101000000"
    );
    assert_eq!(v[0].engagement.update_time, None);
}

#[test]
fn errors_map_to_fault_codes_and_logical_flag() {
    assert_eq!(
        EiError::Technical("x".into()).wire().fault_code,
        FaultCode::Client
    );
    assert_eq!(
        EiError::Internal("disk".into()).wire().fault_code,
        FaultCode::Server
    );
    assert!(
        !EiError::Internal("disk".into())
            .wire()
            .text
            .contains("disk"),
        "internal causes stay in the log"
    );
    assert!(EiError::Payload("x".into()).is_logical());
    let m = EiError::Maintenance.wire();
    assert_eq!((m.code, m.fault_code), (Some("EI000"), FaultCode::Server));
    assert!(
        m.text.contains("index in maintenance") && m.text.contains(MAINTENANCE_TEXT),
        "{}",
        m.text
    );
    assert!(!EiError::Maintenance.is_logical());
    assert!(!EiError::Technical("x".into()).is_logical());
    assert!(!EiError::MissingCorrelationId.is_logical());
}

fn find(fields: &[(Field, &str)]) -> RawFindContent {
    let mut r = RawFindContent::default();
    for (f, v) in fields {
        r.fields.set(*f, *v);
    }
    r
}

#[test]
fn find_content_mandatory_fields() {
    let e = validate_find(find(&[(Field::ServiceDomain, "d")])).unwrap_err();
    assert_eq!(
        e.wire().text,
        "EI000: A technical error has occurred, error message: registeredResidentIdentification is mandatory but missing"
    );
    let e = validate_find(find(&[(Field::RegisteredResidentIdentification, "1")])).unwrap_err();
    assert_eq!(
        e.wire().text,
        "EI000: A technical error has occurred, error message: serviceDomain is mandatory but missing"
    );
}

#[test]
fn find_content_filters() {
    let q = validate_find(find(&[
        (Field::RegisteredResidentIdentification, "1"),
        (Field::ServiceDomain, "d"),
        (Field::Categorization, "c"),
        (Field::SourceSystem, "s"),
        (Field::Owner, "o"),
        (Field::MostRecentContent, "20200101000000"),
    ]))
    .unwrap();
    assert_eq!(q.categorization.as_deref(), Some("c"));
    assert_eq!(
        q.filters,
        vec![
            (Field::SourceSystem, "s".into()),
            (Field::Owner, "o".into())
        ]
    );
    let e = validate_find(find(&[
        (Field::RegisteredResidentIdentification, "1"),
        (Field::ServiceDomain, "d"),
        (Field::MostRecentContent, "2020"),
    ]))
    .unwrap_err();
    assert_eq!(e.wire().code, Some("EI004"));
}

#[test]
fn echo_caps_and_escapes_user_input() {
    assert_eq!(echo("SE123"), "SE123");
    assert_eq!(echo("a\nb\u{1}c\u{FFFE}"), "a\\u{a}b\\u{1}c\\u{fffe}");
    let long = "x".repeat(1000);
    assert_eq!(echo(&long), format!("{}…", "x".repeat(MAX_ECHO)));
    assert!(is_xml_char('\t') && is_xml_char('é') && is_xml_char('\u{10000}'));
    assert!(!is_xml_char('\u{0}') && !is_xml_char('\u{1F}') && !is_xml_char('\u{FFFF}'));
}

#[test]
fn every_wire_text_is_capped_and_free_of_control_characters() {
    let long = "\n".repeat(10_000);
    for e in [
        EiError::Technical(long.clone()),
        EiError::Payload(long.clone()),
        EiError::InvalidRouting {
            given: long.clone(),
            owner: "o".into(),
        },
        EiError::ReservedLogicalAddress {
            index: 1,
            value: long.clone(),
        },
        EiError::ReservedSourceSystem {
            index: 1,
            value: long.clone(),
        },
    ] {
        let text = e.wire().text;
        assert!(text.chars().count() < 2 * MAX_ECHO + 200, "{text}");
        assert!(!text.contains('\n'), "{text}");
    }
}
