//! The server in-process on 127.0.0.1:0 over real HTTP: each service, each fault, the
//! WSDL and XSDs, the operations endpoints, and concurrent writers.

use crate::common::*;
use ei_server::config::ErrorMode;
use ei_server::model::Field;

const DOMAIN: &str = "riv:clinicalprocess:healthcond:description";

#[tokio::test]
pub(crate) async fn update_then_find_content_with_the_platform_samples() {
    let s = start(|_| {}).await;
    let c = reqwest::Client::new();
    let a = post(
        &c,
        &s.url(UPDATE),
        fill(SAMPLE_1, "19121212"),
        Some("corr-1"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.content_type, "text/xml; charset=UTF-8");
    assert!(
        a.body.contains("<ns2:ResultCode>OK</ns2:ResultCode>"),
        "{}",
        a.body
    );

    let find = SAMPLE_FIND
        .replace("${citizenId1}", "191212120001")
        .replace("urn:riv:test:domain-1", "urn:riv:test:domain-scaletest1");
    let a = post(&c, &s.url(FIND), find, Some("corr-2")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let found = engagements(&a.body);
    assert_eq!(found.len(), 1);
    let e = &found[0];
    assert_eq!(e.get(Field::Owner), Some("5565594230"), "owner stamped");
    assert_eq!(
        e.get(Field::BusinessObjectInstanceIdentifier),
        Some("172560")
    );
    assert_eq!(e.get(Field::MostRecentContent), Some("20150310104108"));
    assert_eq!(e.get(Field::CreationTime).map(str::len), Some(14));
    assert_eq!(
        e.get(Field::UpdateTime),
        None,
        "unset updateTime is omitted"
    );
    s.stop().await.unwrap();
}

#[tokio::test]
pub(crate) async fn full_1000_post_sample_and_filters() {
    let s = start(|_| {}).await;
    let c = reqwest::Client::new();
    let a = post(&c, &s.url(UPDATE), fill(SAMPLE_1000, "19121212"), Some("c")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let status: serde_json::Value = get_json(&c, &s.url("/status")).await;
    assert_eq!(status["engagements"], 1000);

    // Resend: identical posts are not rewritten.
    let a = post(&c, &s.url(UPDATE), fill(SAMPLE_1000, "19121212"), Some("c")).await;
    assert_eq!(a.status, 200);
    let metrics = get_text(&c, &s.url("/metrics")).await;
    assert!(
        metrics.contains("ei_engagements_changed_total{kind=\"inserted\"} 1000"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ei_engagements_changed_total{kind=\"unchanged\"} 1000"),
        "{metrics}"
    );

    // Count what the sample holds for one resident/domain and compare with FindContent.
    let sample = fill(SAMPLE_1000, "19121212");
    let ei_server::codec::Request::Write { transactions, .. } =
        ei_server::codec::parse_request(sample.as_bytes()).unwrap()
    else {
        panic!()
    };
    let first = &transactions[0].engagement;
    let (resident, domain) = (
        first.get(Field::RegisteredResidentIdentification).unwrap(),
        first.get(Field::ServiceDomain).unwrap(),
    );
    let same = |t: &&ei_server::model::RawTransaction| {
        t.engagement.get(Field::RegisteredResidentIdentification) == Some(resident)
            && t.engagement.get(Field::ServiceDomain) == Some(domain)
    };
    let expected = transactions.iter().filter(same).count();
    let a = post(&c, &s.url(FIND), find_body(resident, domain, ""), Some("c")).await;
    assert_eq!(engagements(&a.body).len(), expected);

    let cat = first.get(Field::Categorization).unwrap();
    let expected_cat = transactions
        .iter()
        .filter(same)
        .filter(|t| t.engagement.get(Field::Categorization) == Some(cat))
        .count();
    let extra = format!("<f:categorization>{cat}</f:categorization>");
    let a = post(
        &c,
        &s.url(FIND),
        find_body(resident, domain, &extra),
        Some("c"),
    )
    .await;
    assert_eq!(engagements(&a.body).len(), expected_cat);

    let a = post(
        &c,
        &s.url(FIND),
        find_body(
            resident,
            domain,
            "<f:mostRecentContent>29990101000000</f:mostRecentContent>",
        ),
        Some("c"),
    )
    .await;
    assert_eq!(engagements(&a.body).len(), 0, "mostRecentContent >= filter");
    let a = post(
        &c,
        &s.url(FIND),
        find_body(resident, domain, "<f:sourceSystem>nobody</f:sourceSystem>"),
        Some("c"),
    )
    .await;
    assert_eq!(engagements(&a.body).len(), 0, "exact-match filter");
    s.stop().await.unwrap();
}

#[tokio::test]
pub(crate) async fn update_lifecycle_over_http() {
    let s = start(|_| {}).await;
    let c = reqwest::Client::new();
    let find_url = s.url(FIND);
    let find = || {
        post(
            &c,
            &find_url,
            find_body("191212121212", DOMAIN, ""),
            Some("c"),
        )
    };
    update(
        &c,
        &s,
        &[("191212121212", "voo", Some("20200101000000"))],
        false,
    )
    .await;
    let before = engagements(&find().await.body);
    let created = before[0].get(Field::CreationTime).unwrap().to_owned();
    update(
        &c,
        &s,
        &[("191212121212", "voo", Some("20210101000000"))],
        false,
    )
    .await;
    let after = engagements(&find().await.body);
    assert_eq!(
        after[0].get(Field::CreationTime),
        Some(created.as_str()),
        "creationTime never changes"
    );
    assert_eq!(
        after[0].get(Field::MostRecentContent),
        Some("20210101000000")
    );
    assert!(after[0].get(Field::UpdateTime).is_some());
    let a = post(
        &c,
        &s.url(UPDATE),
        update_body("5565594230", &[("191212121212", "voo", None)], true),
        Some("c"),
    )
    .await;
    assert_eq!(a.status, 200);
    assert!(engagements(&find().await.body).is_empty());
    s.stop().await.unwrap();
}

#[tokio::test]
pub(crate) async fn every_fault_over_http() {
    let s = start(|c| c.max_body_bytes = 2_000_000).await;
    let c = reqwest::Client::new();
    let ok_post = [("191212121212", "voo", None)];
    let cases: Vec<(&str, String, Option<&str>, &str, &str)> = vec![
        (UPDATE, update_body("5565594230", &ok_post, false), None, "soap:Client", "Mandatory HTTP header x-skltp-correlation-id is missing"),
        (FIND, find_body("1", "d", ""), None, "soap:Client", "Mandatory HTTP header x-skltp-correlation-id is missing"),
        (UPDATE, update_body("wrong", &ok_post, false), Some("c"), "soap:Client",
         "EI003: Invalid routing. Logical address is wrong but the owner is 5565594230. They must be the same. See rule for Update-R7 in service contract"),
        (UPDATE, update_body("5565594230", &[], false), Some("c"), "soap:Client",
         "EI000: A technical error has occurred, error message: The request contains less than 1 engagements. Minium number of engagements per request is 1."),
        (UPDATE, update_body("5565594230", &[("1", "a", None), ("1", "a", None)], false), Some("c"), "soap:Client",
         "EI002: EngagementTransaction #1 and #2 have the same key. That is not allowed. See rule for Update-R1 in service contract"),
        (UPDATE, update_body("5565594230", &[("1 ", "a", None)], false), Some("c"), "soap:Client",
         "EI004: The payload does not validate, error messge: mandatory field \"registeredResidentIdentification\" contains white space in beginning or end"),
        (UPDATE, update_body("5565594230", &[("1", "a", Some("20150230000000"))], false), Some("c"), "soap:Client",
         "EI004: The payload does not validate, error messge: Field \"mostRecentContent\": 20150230000000 has an invalid day (30)"),
        (UPDATE, update_body("5565594230", &[("1", &"x".repeat(256), None)], false), Some("c"), "soap:Client",
         "EI004: The payload does not validate, error messge: Field \"categorization\" is to long"),
        (UPDATE, update_body("5565594230", &ok_post, false).replace("SE2321000016-15CQ</c:logicalAddress>", "5565594230</c:logicalAddress>"), Some("c"), "soap:Client",
         "EI005: The logicalAddress in EngagementTransaction #1 is reserved and not allowed, hsa-id: 5565594230"),
        (UPDATE, update_body("5565594230", &ok_post, false).replace("SE2321000016-15CQ</c:sourceSystem>", "platform-hsa-id</c:sourceSystem>"), Some("c"), "soap:Client",
         "EI006: The sourceSystem in EngagementTransaction #1 is reserved and not allowed, hsa-id: platform-hsa-id"),
        (NOTIFY, update_body("x", &ok_post, false).replace("Update", "ProcessNotification").replace("UpdateResponder", "ProcessNotificationResponder"), Some("c"), "soap:Client",
         "EI004: The payload does not validate, error messge: mandatory field \"owner\" is missing"),
        (FIND, find_body("", "d", ""), Some("c"), "soap:Client",
         "EI000: A technical error has occurred, error message: registeredResidentIdentification is mandatory but missing"),
        (FIND, find_body("1", "", ""), Some("c"), "soap:Client",
         "EI000: A technical error has occurred, error message: serviceDomain is mandatory but missing"),
        (UPDATE, "<not-closed>".into(), Some("c"), "soap:Client", "EI000: A technical error has occurred, error message: the request is not"),
        (UPDATE, "<!DOCTYPE x [<!ENTITY a \"b\">]><x/>".into(), Some("c"), "soap:Client",
         "EI000: A technical error has occurred, error message: DOCTYPE and entity declarations are not allowed"),
        (UPDATE, find_body("1", "d", ""), Some("c"), "soap:Client",
         "EI000: A technical error has occurred, error message: this endpoint serves Update but the request is FindContent"),
        (UPDATE, "x".repeat(2_000_001), Some("c"), "soap:Client",
         "EI000: A technical error has occurred, error message: the request body is larger than the limit of 2000000 bytes"),
    ];
    for (path, body, corr, code, text) in cases {
        let a = post(&c, &s.url(path), body, corr).await;
        let (fc, fs) = fault(&a);
        assert_eq!(a.content_type, "text/xml; charset=UTF-8");
        assert_eq!(fc, code, "{text}");
        assert!(fs.starts_with(text), "got {fs}\nwant {text}");
    }
    let many: Vec<(String, &str, Option<&str>)> = (0..1001)
        .map(|i| (format!("19121212{i:04}"), "a", None))
        .collect();
    let refs: Vec<(&str, &str, Option<&str>)> =
        many.iter().map(|(r, c, m)| (r.as_str(), *c, *m)).collect();
    let (_, fs) = fault(
        &post(
            &c,
            &s.url(UPDATE),
            update_body("5565594230", &refs, false),
            Some("c"),
        )
        .await,
    );
    assert_eq!(fs, "EI000: A technical error has occurred, error message: The request contains more than 1000 engagements. Maximum number of engagements per request is 1000.");

    let metrics = get_text(&c, &s.url("/metrics")).await;
    assert!(
        metrics.contains("ei_requests_total{service=\"Update\",outcome=\"EI004\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ei_requests_total{service=\"Update\",outcome=\"header\"} 1"),
        "{metrics}"
    );
    let status: serde_json::Value = get_json(&c, &s.url("/status")).await;
    assert_eq!(status["engagements"], 0, "no fault wrote anything");
    s.stop().await.unwrap();
}

#[tokio::test]
pub(crate) async fn result_code_mode_answers_logical_errors_with_error() {
    let s = start(|c| c.error_mode = ErrorMode::ResultCode).await;
    let c = reqwest::Client::new();
    let a = post(
        &c,
        &s.url(UPDATE),
        update_body("5565594230", &[("1", "a", None), ("1", "a", None)], false),
        Some("c"),
    )
    .await;
    assert_eq!(a.status, 200);
    assert!(
        a.body.contains("<ns2:ResultCode>ERROR</ns2:ResultCode>"),
        "{}",
        a.body
    );
    assert!(
        a.body
            .contains("<ns2:comment>EI002: EngagementTransaction #1 and #2"),
        "{}",
        a.body
    );
    // EI000 stays a fault.
    let a = post(
        &c,
        &s.url(UPDATE),
        update_body("5565594230", &[], false),
        Some("c"),
    )
    .await;
    assert_eq!(fault(&a).1.get(..5), Some("EI000"));
    s.stop().await.unwrap();
}

#[tokio::test]
pub(crate) async fn logical_address_check_can_be_turned_off_and_alternative_id_accepted() {
    let s = start(|c| {
        c.hsa_id = "own".into();
        c.alternative_hsa_id = Some("5565594230".into());
    })
    .await;
    let c = reqwest::Client::new();
    let a = post(&c, &s.url(UPDATE), fill(SAMPLE_1, "19121212"), Some("c")).await;
    assert_eq!(a.status, 200, "alternative id routes: {}", a.body);
    s.stop().await.unwrap();
    let s = start(|c| c.check_logical_address = false).await;
    let a = post(
        &c,
        &s.url(UPDATE),
        update_body("anything", &[("1", "a", None)], false),
        Some("c"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    s.stop().await.unwrap();
}

#[tokio::test]
pub(crate) async fn process_notification_stores_foreign_posts_and_drops_own() {
    let s = start(|_| {}).await;
    let c = reqwest::Client::new();
    let body = |owner: &str| {
        update_body("x", &[("191212121212", "voo", Some("20200101000000"))], false)
            .replace("Update", "ProcessNotification")
            .replace("UpdateResponder", "ProcessNotificationResponder")
            .replace("</c:dataController>", &format!("</c:dataController><c:owner>{owner}</c:owner><c:creationTime>20190101000000</c:creationTime>"))
    };
    let a = post(&c, &s.url(NOTIFY), body("5565594230"), Some("c")).await;
    assert_eq!(a.status, 200);
    assert!(
        a.body.contains("<ns2:ProcessNotificationResponse"),
        "{}",
        a.body
    );
    let find_url = s.url(FIND);
    let found = |c: &reqwest::Client| {
        let (c, url) = (c.clone(), find_url.clone());
        async move { post(&c, &url, find_body("191212121212", DOMAIN, ""), Some("c")).await }
    };
    assert!(
        engagements(&found(&c).await.body).is_empty(),
        "loop protection drops own posts"
    );
    post(&c, &s.url(NOTIFY), body("other-index"), Some("c")).await;
    let e = engagements(&found(&c).await.body);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].get(Field::Owner), Some("other-index"));
    assert_eq!(
        e[0].get(Field::CreationTime),
        Some("20190101000000"),
        "stored as given"
    );
    s.stop().await.unwrap();
}

#[tokio::test]
pub(crate) async fn wsdl_xsd_and_operations_endpoints() {
    let s = start(|_| {}).await;
    let c = reqwest::Client::new();
    for path in [UPDATE, NOTIFY, FIND] {
        let r = c.get(s.url(&format!("{path}?wsdl"))).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let w = r.text().await.unwrap();
        assert!(w.contains(&format!("location='{}{path}'", s.base)), "{w}");
        let xsd = w
            .split("schemaLocation='")
            .nth(1)
            .unwrap()
            .split('\'')
            .next()
            .unwrap()
            .to_owned();
        let r = c.get(&xsd).send().await.unwrap();
        assert_eq!(r.status(), 200, "{xsd}");
        assert!(r.text().await.unwrap().contains("<xs:schema"));
    }
    assert_eq!(c.get(s.url(UPDATE)).send().await.unwrap().status(), 400);
    assert_eq!(
        c.get(s.url("/skltp-ei/schemas/nope.xsd"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(get_text(&c, &s.url("/health")).await, "OK");
    assert_eq!(c.get(s.url("/ready")).send().await.unwrap().status(), 200);
    let status: serde_json::Value = get_json(&c, &s.url("/status")).await;
    assert_eq!(status["config"]["hsa_id"], "5565594230");
    assert!(status["store_bytes"].as_u64().unwrap() > 0);
    let m = get_text(&c, &s.url("/metrics")).await;
    assert!(m.contains("# TYPE ei_request_duration_seconds histogram"));
    assert!(m.contains("ei_engagements 0"));
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
pub(crate) async fn concurrent_clients_on_overlapping_keys() {
    let s = start(|_| {}).await;
    let c = reqwest::Client::new();
    let shared: Vec<String> = (0..20).map(|i| format!("cat-{i}")).collect();
    let insert: Vec<(&str, &str, Option<&str>)> = shared
        .iter()
        .map(|k| ("191212121212", k.as_str(), None))
        .collect();
    post(
        &c,
        &s.url(UPDATE),
        update_body("5565594230", &insert, false),
        Some("c"),
    )
    .await;
    let created: Vec<String> = engagements(
        &post(
            &c,
            &s.url(FIND),
            find_body("191212121212", DOMAIN, ""),
            Some("c"),
        )
        .await
        .body,
    )
    .iter()
    .map(|e| e.get(Field::CreationTime).unwrap().to_owned())
    .collect();

    let clients = 16;
    let rounds = 10;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (c, url, shared) = (c.clone(), s.url(UPDATE), shared.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..rounds {
                let mrc = format!(
                    "2020{:02}{:02}0000{:02}",
                    client % 12 + 1,
                    round + 1,
                    client
                );
                let own = format!("client-{client}");
                let mut posts: Vec<(&str, &str, Option<&str>)> = shared
                    .iter()
                    .map(|k| ("191212121212", k.as_str(), Some(mrc.as_str())))
                    .collect();
                posts.push(("191212121213", own.as_str(), Some(mrc.as_str())));
                let a = post(
                    &c,
                    &url,
                    update_body("5565594230", &posts, false),
                    Some("c"),
                )
                .await;
                assert_eq!(a.status, 200, "{}", a.body);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let after = engagements(
        &post(
            &c,
            &s.url(FIND),
            find_body("191212121212", DOMAIN, ""),
            Some("c"),
        )
        .await
        .body,
    );
    assert_eq!(after.len(), 20);
    let last_round: Vec<String> = (0..clients)
        .map(|client| format!("2020{:02}{:02}0000{:02}", client % 12 + 1, rounds, client))
        .collect();
    for (e, created) in after.iter().zip(&created) {
        assert_eq!(
            e.get(Field::CreationTime),
            Some(created.as_str()),
            "creationTime never changes"
        );
        let mrc = e.get(Field::MostRecentContent).unwrap();
        assert!(
            last_round.iter().any(|m| m == mrc),
            "{mrc} is some client's last write"
        );
    }
    // Every request is atomic: all shared posts carry the same client's last value.
    let first = after[0].get(Field::MostRecentContent);
    assert!(
        after
            .iter()
            .all(|e| e.get(Field::MostRecentContent) == first),
        "one request's posts were interleaved with another's"
    );
    let own = engagements(
        &post(
            &c,
            &s.url(FIND),
            find_body("191212121213", DOMAIN, ""),
            Some("c"),
        )
        .await
        .body,
    );
    assert_eq!(own.len(), clients as usize, "no client's insert lost");
    for e in &own {
        let client: u32 = e
            .get(Field::Categorization)
            .unwrap()
            .trim_start_matches("client-")
            .parse()
            .unwrap();
        assert_eq!(
            e.get(Field::MostRecentContent),
            Some(last_round[client as usize].as_str()),
            "each client's last update wins for its key"
        );
    }
    let status: serde_json::Value = get_json(&c, &s.url("/status")).await;
    assert_eq!(status["engagements"], 20 + clients);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn restart_on_the_same_data_dir_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_in(dir.path().to_owned(), |_| {}).await;
    let c = reqwest::Client::new();
    post(&c, &s.url(UPDATE), fill(SAMPLE_50(), "19121212"), Some("c")).await;
    s.stop().await.unwrap();
    let s = start_in(dir.path().to_owned(), |_| {}).await;
    let status: serde_json::Value = get_json(&c, &s.url("/status")).await;
    assert_eq!(status["engagements"], 50);
    s.stop().await.unwrap();
}

#[allow(non_snake_case)]
fn SAMPLE_50() -> &'static str {
    include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/samples/Update_50_OK.xml"
    ))
}
