//! The front door as a hostile client meets it: input hardening (forbidden
//! characters, a second operation, broken attributes, the 1001st transaction, echoed
//! input, the WSDL's host, the header fault before the body).

use crate::common::*;

const OK_POST: [(&str, &str, Option<&str>); 1] = [("191212121212", "voo", None)];

/// Parses a reply as XML: every reply the server gives must be well-formed.
fn well_formed(body: &str) {
    ei_server::codec::parse_reply(body.as_bytes())
        .unwrap_or_else(|e| panic!("reply is not well-formed ({e}): {body}"));
}

#[tokio::test]
async fn characters_xml_forbids_are_ei004_naming_the_field_and_never_stored() {
    let s = start(|_| {}).await;
    let c = reqwest::Client::new();
    let body = update_body("5565594230", &OK_POST, false).replace(
        ">NA</c:businessObjectInstanceIdentifier>",
        ">N&#1;A</c:businessObjectInstanceIdentifier>",
    );
    let a = post(&c, &s.url(UPDATE), body, Some("c1")).await;
    let (_, fs) = fault(&a);
    assert_eq!(
        fs,
        "EI004: The payload does not validate, error messge: Field \"businessObjectInstanceIdentifier\" contains a character XML 1.0 does not allow (U+0001)"
    );
    // A raw control character (not a reference) in the deleteFlag, and one in a
    // FindContent field.
    let body = update_body("5565594230", &OK_POST, false).replace(">false<", ">fal\u{1f}se<");
    let (_, fs) = fault(&post(&c, &s.url(UPDATE), body, Some("c2")).await);
    assert!(
        fs.contains("Field \"deleteFlag\" contains a character"),
        "{fs}"
    );
    let a = post(
        &c,
        &s.url(FIND),
        find_body(
            "191212121212",
            "riv:clinicalprocess:healthcond:description",
            "<f:categorization>v&#xFFFE;</f:categorization>",
        ),
        Some("c3"),
    )
    .await;
    let (_, fs) = fault(&a);
    assert!(
        fs.contains(
            "Field \"categorization\" contains a character XML 1.0 does not allow (U+FFFE)"
        ),
        "{fs}"
    );
    let a = post(
        &c,
        &s.url(FIND),
        find_body(
            "191212121212",
            "riv:clinicalprocess:healthcond:description",
            "",
        ),
        Some("c4"),
    )
    .await;
    assert_eq!(a.status, 200);
    well_formed(&a.body);
    assert!(engagements(&a.body).is_empty(), "nothing was stored");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_second_operation_element_in_the_body_is_ei000() {
    let s = start(|_| {}).await;
    let c = reqwest::Client::new();
    let one = update_body("5565594230", &OK_POST, false);
    let start = one.find("<u:Update>").unwrap();
    let end = one.find("</s:Body>").unwrap();
    let twice = format!("{}{}{}", &one[..end], &one[start..end], &one[end..]);
    let (code, fs) = fault(&post(&c, &s.url(UPDATE), twice, Some("c")).await);
    assert_eq!(code, "soap:Client");
    assert!(
        fs.starts_with("EI000: A technical error has occurred, error message: the SOAP body holds a second operation element (Update after Update)"),
        "{fs}"
    );
    let status: serde_json::Value = get_json(&c, &s.url("/status")).await;
    assert_eq!(status["engagements"], 0);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn broken_attributes_below_the_root_are_ei000() {
    let s = start(|_| {}).await;
    let c = reqwest::Client::new();
    let ok = update_body("5565594230", &OK_POST, false);
    for broken in [
        "<u:Update a=\"1\" a=\"2\">",
        "<u:Update a=1>",
        "<u:Update a=\"x<y\">",
        "<u:Update a=\"&nope;\">",
        "<u:Update a=\"&#0;\">",
    ] {
        let body = ok.replace("<u:Update>", broken);
        let (_, fs) = fault(&post(&c, &s.url(UPDATE), body, Some("c")).await);
        assert!(
            fs.starts_with("EI000: A technical error has occurred, error message: "),
            "{broken}: {fs}"
        );
    }
    // Well-formed attributes below the root are still read past.
    let body = ok.replace("<u:Update>", "<u:Update a=\"x &amp; &#65;\" b='2'>");
    let a = post(&c, &s.url(UPDATE), body, Some("c")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn reading_stops_at_the_1001st_transaction() {
    let s = start(|_| {}).await;
    let c = reqwest::Client::new();
    let many: Vec<(String, &str, Option<&str>)> = (0..1001)
        .map(|i| (format!("19121212{i:04}"), "a", None))
        .collect();
    let refs: Vec<(&str, &str, Option<&str>)> =
        many.iter().map(|(r, c, m)| (r.as_str(), *c, *m)).collect();
    // Whatever follows the 1001st transaction (here: not even well-formed) is never read.
    let body = update_body("5565594230", &refs, false).replace("</u:Update>", "<<<</u:Update>");
    let (_, fs) = fault(&post(&c, &s.url(UPDATE), body, Some("c")).await);
    assert_eq!(fs, "EI000: A technical error has occurred, error message: The request contains more than 1000 engagements. Maximum number of engagements per request is 1000.");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn echoed_input_is_capped_and_escaped() {
    let s = start(|_| {}).await;
    let c = reqwest::Client::new();
    let long = "L".repeat(5000);
    let (_, fs) = fault(
        &post(
            &c,
            &s.url(UPDATE),
            update_body(&long, &OK_POST, false),
            Some("c"),
        )
        .await,
    );
    assert!(
        fs.contains(&format!("Logical address is {}… but", "L".repeat(200))),
        "{fs}"
    );
    assert!(fs.len() < 500, "{} chars", fs.len());
    // A line feed (by reference) cannot start a new log line or fault line.
    let (_, fs) = fault(
        &post(
            &c,
            &s.url(UPDATE),
            update_body("x&#10;INFO forged", &OK_POST, false),
            Some("c"),
        )
        .await,
    );
    assert!(
        fs.contains("Logical address is x\\u{a}INFO forged but"),
        "{fs}"
    );
    assert!(!fs.contains('\n'));
    // A parser's message embedding input is capped too.
    let body = format!("<{} xmlns=\"{}\"/>", "e".repeat(5000), "urn:x");
    let (_, fs) = fault(&post(&c, &s.url(UPDATE), body, Some("c")).await);
    assert!(fs.len() < 600, "{} chars: {fs}", fs.len());
    s.stop().await.unwrap();
}

#[tokio::test]
async fn the_wsdl_address_uses_a_validated_host() {
    let s = start(|_| {}).await;
    let c = reqwest::Client::new();
    let wsdl = |host: &'static str, proto: &'static str| {
        let c = c.clone();
        let url = s.url(&format!("{UPDATE}?wsdl"));
        async move {
            c.get(url)
                .header("host", host)
                .header("x-forwarded-proto", proto)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let w = wsdl("ei.example:8443", "https").await;
    assert!(w.contains("location='https://ei.example:8443/skltp-ei/update-service/v1'"));
    let w = wsdl("[::1]:80", "http").await;
    assert!(w.contains("location='http://[::1]:80/skltp-ei/update-service/v1'"));
    for bad in ["evil'/><x", "a b", "user@host", "h:99999999"] {
        let w = wsdl(bad, "javascript").await;
        assert!(
            w.contains("location='http://localhost/skltp-ei/update-service/v1'"),
            "{bad}"
        );
        assert!(!w.contains("evil"));
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn the_header_fault_comes_first_even_for_an_oversized_body() {
    let s = start(|c| c.max_body_bytes = 100_000).await;
    let c = reqwest::Client::new();
    let (_, fs) = fault(&post(&c, &s.url(UPDATE), "x".repeat(200_000), None).await);
    assert_eq!(
        fs,
        "Mandatory HTTP header x-skltp-correlation-id is missing"
    );
    s.stop().await.unwrap();
}

// ---- Bounded resources ----

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The server's value of one metric line (`name{labels}`), 0 when absent.
async fn metric(c: &reqwest::Client, s: &Harness, line: &str) -> u64 {
    let text = get_text(c, &s.url("/metrics")).await;
    text.lines()
        .find_map(|l| l.strip_prefix(line).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

/// Waits (polling the server's own counter) until `line` reaches `want`.
async fn wait_metric(c: &reqwest::Client, s: &Harness, line: &str, want: u64) {
    for _ in 0..600 {
        if metric(c, s, line).await >= want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{line} never reached {want}");
}

/// Feeds `bytes` one at a time, 50 ms apart, until the server closes the connection;
/// returns what the server sent.
async fn trickle(addr: &str, head: &[u8], bytes: &[u8]) -> String {
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(head).await.unwrap();
    let (mut rd, mut wr) = sock.into_split();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        let _ = rd.read_to_end(&mut got).await;
        String::from_utf8_lossy(&got).into_owned()
    });
    for b in bytes.iter().cycle().take(10_000) {
        if reader.is_finished() || wr.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        reader.is_finished(),
        "the server never closed the slow connection"
    );
    reader.await.unwrap()
}

fn addr(s: &Harness) -> String {
    s.base.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn a_client_sending_its_head_byte_by_byte_is_cut_off() {
    let s = start(|c| c.header_read_timeout_ms = 300).await;
    let c = reqwest::Client::new();
    let got = trickle(
        &addr(&s),
        b"POST /skltp-ei/update-service/v1 HTTP/1.1\r\n",
        b"x-slow: yes\r\n",
    )
    .await;
    assert_eq!(got, "", "no reply to a head that never completed");
    wait_metric(
        &c,
        &s,
        "ei_connections_closed_total{reason=\"header_timeout\"}",
        1,
    )
    .await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_body_sent_byte_by_byte_gets_a_fault_after_the_body_timeout() {
    let s = start(|c| c.body_read_timeout_ms = 300).await;
    let head =
        "POST /skltp-ei/update-service/v1 HTTP/1.1\r\nhost: x\r\nx-skltp-correlation-id: slow\r\n\
                content-type: text/xml\r\ncontent-length: 100000\r\n\r\n";
    let got = trickle(&addr(&s), head.as_bytes(), b"<").await;
    assert!(got.starts_with("HTTP/1.1 500"), "{got}");
    assert!(
        got.contains("the request body was not received within 300 ms"),
        "{got}"
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let s = start(|c| c.idle_timeout_ms = 300).await;
    let c = reqwest::Client::new();
    let mut sock = tokio::net::TcpStream::connect(addr(&s)).await.unwrap();
    sock.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    // The server answers, then closes the connection once it has been idle.
    let read = tokio::time::timeout(Duration::from_secs(60), sock.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the idle connection stayed open");
    assert!(String::from_utf8_lossy(&got).ends_with("OK"));
    wait_metric(&c, &s, "ei_connections_closed_total{reason=\"idle\"}", 1).await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_service_at_its_in_flight_cap_answers_busy_retry_later() {
    let s = start(|c| c.max_in_flight = 1).await;
    let c = reqwest::Client::new();
    // One Update holds the only slot while its body is still arriving.
    let mut slow = tokio::net::TcpStream::connect(addr(&s)).await.unwrap();
    let body = update_body("5565594230", &OK_POST, false);
    let head = format!(
        "POST {UPDATE} HTTP/1.1\r\nhost: x\r\nx-skltp-correlation-id: holder\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body.as_bytes()[..10]).await.unwrap();
    let mut busy = None;
    for _ in 0..600 {
        let a = post(&c, &s.url(UPDATE), body.clone(), Some("second")).await;
        if a.status == 500 {
            busy = Some(fault(&a));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, text) = busy.expect("the second Update was never refused");
    assert_eq!(code, "soap:Server");
    assert_eq!(text, "EI000: A technical error has occurred, error message: the index is busy, retry later; the request was not applied");
    assert_eq!(
        metric(
            &c,
            &s,
            "ei_requests_total{service=\"Update\",outcome=\"busy\"}"
        )
        .await,
        1
    );
    // FindContent has its own slot; the held Update completes normally.
    let a = post(
        &c,
        &s.url(FIND),
        find_body(
            "191212121212",
            "riv:clinicalprocess:healthcond:description",
            "",
        ),
        Some("f"),
    )
    .await;
    assert_eq!(a.status, 200);
    slow.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut reply = vec![0u8; 4096];
    let n = slow.read(&mut reply).await.unwrap();
    assert!(String::from_utf8_lossy(&reply[..n]).starts_with("HTTP/1.1 200"));
    s.stop().await.unwrap();
}

// ---- Health and recovery ----

/// A small tmpfs mounted for one test (needs root and mount permission; `None`
/// where the machine forbids it).
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(megabytes: u32) -> Option<SmallFs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallFs { dir })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

/// An Update of 1000 new posts for residents `19{batch:05}{j:05}`.
fn thousand(batch: usize) -> String {
    let posts: Vec<(String, &str, Option<&str>)> = (0..1000)
        .map(|j| (format!("19{batch:05}{j:05}"), "a", None))
        .collect();
    let refs: Vec<(&str, &str, Option<&str>)> =
        posts.iter().map(|(r, c, m)| (r.as_str(), *c, *m)).collect();
    update_body("5565594230", &refs, false)
}

async fn ready(c: &reqwest::Client, s: &Harness) -> (u16, String) {
    let r = c.get(s.url("/ready")).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn a_full_disk_makes_the_index_unready_and_it_resumes_writing_when_space_is_back() {
    let Some(fs) = SmallFs::mount(32) else {
        eprintln!("skipped: this machine does not let the test mount a tmpfs");
        return;
    };
    let filler = fs.dir.path().join("filler");
    std::fs::write(&filler, vec![1u8; 12 << 20]).unwrap();
    let s = start_in(fs.dir.path().join("data"), |c| c.min_free_disk_mb = 4).await;
    let c = reqwest::Client::new();
    assert_eq!(ready(&c, &s).await.0, 200);
    let mut acknowledged = Vec::new();
    for batch in 0..1000 {
        let a = post(&c, &s.url(UPDATE), thousand(batch), Some("fill")).await;
        if a.status != 200 {
            let (code, _) = fault(&a);
            assert_eq!(code, "soap:Server");
            break;
        }
        acknowledged.push(batch);
    }
    assert!(!acknowledged.is_empty() && acknowledged.len() < 1000);
    let (status, why) = ready(&c, &s).await;
    assert_eq!(status, 503);
    assert!(why.contains("the last group commit failed"), "{why}");
    let status: serde_json::Value = get_json(&c, &s.url("/status")).await;
    assert_eq!(status["ready"], false);
    // Reads go on.
    let domain = "riv:clinicalprocess:healthcond:description";
    let a = post(
        &c,
        &s.url(FIND),
        find_body("190000000999", domain, ""),
        Some("r"),
    )
    .await;
    assert_eq!(engagements(&a.body).len(), 1);
    // Space comes back: the index recovers by itself.
    std::fs::remove_file(&filler).unwrap();
    let mut recovered = false;
    for _ in 0..600 {
        if ready(&c, &s).await.0 == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "still not ready: {}", ready(&c, &s).await.1);
    assert_eq!(metric(&c, &s, "ei_store_recoveries").await, 1);
    let a = post(
        &c,
        &s.url(UPDATE),
        update_body("5565594230", &OK_POST, false),
        Some("after"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // Nothing acknowledged was lost.
    for batch in acknowledged {
        let resident = format!("19{batch:05}00999");
        let a = post(
            &c,
            &s.url(FIND),
            find_body(&resident, domain, ""),
            Some("r"),
        )
        .await;
        assert_eq!(engagements(&a.body).len(), 1, "{resident}");
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn free_disk_under_the_floor_makes_the_index_unready_and_status_says_why() {
    let s = start(|c| c.min_free_disk_mb = u64::MAX >> 21).await;
    let c = reqwest::Client::new();
    let (status, why) = ready(&c, &s).await;
    assert_eq!(status, 503);
    assert!(
        why.contains("free disk space") && why.contains("under the floor"),
        "{why}"
    );
    let status: serde_json::Value = get_json(&c, &s.url("/status")).await;
    assert_eq!(status["ready"], false);
    assert!(status["not_ready_because"][0]
        .as_str()
        .unwrap()
        .contains("free disk space"));
    s.stop().await.unwrap();
}
