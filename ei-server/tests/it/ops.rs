//! What an operator's tools read: `/livez` and `/readyz` beside `/health` and
//! `/ready`, and a `/metrics` scrape that stays well-formed whatever a subscriber
//! from the registry is called, with the build, process, writer queue and RocksDB
//! families.

use crate::common::*;
use ei_server::config::RegistryConfig;

/// Checks one sample line of the Prometheus text format strictly: a metric name, an
/// optional label set whose values end only at an unescaped quote and escape only
/// `\\`, `\"` and `\n`, one space, a number. Returns the name and the raw labels.
fn parse_sample(line: &str) -> Result<(&str, String), String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .ok_or_else(|| format!("no value: {line:?}"))?;
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = String::new();
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices();
        loop {
            // label name
            let (start, _) = chars.next().ok_or("unterminated label set")?;
            if r[start..].starts_with('}') {
                rest = &r[start + 1..];
                break;
            }
            let eq = r[start..]
                .find("=\"")
                .ok_or(format!("no =\" in {line:?}"))?;
            let label = &r[start..start + eq];
            if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("bad label name {label:?} in {line:?}"));
            }
            for _ in 0..eq + 1 {
                chars.next();
            }
            // label value up to the unescaped quote
            loop {
                match chars
                    .next()
                    .ok_or(format!("unterminated value in {line:?}"))?
                {
                    (_, '\\') => match chars.next() {
                        Some((_, '\\' | '"' | 'n')) => {}
                        other => return Err(format!("bad escape {other:?} in {line:?}")),
                    },
                    (_, '"') => break,
                    (_, '\n') => return Err(format!("raw newline in {line:?}")),
                    _ => {}
                }
            }
            match chars.next() {
                Some((_, ',')) => {}
                Some((i, '}')) => {
                    rest = &r[i + 1..];
                    break;
                }
                other => return Err(format!("expected , or }} got {other:?} in {line:?}")),
            }
        }
        labels = line[name_end..line.len() - rest.len()].to_owned();
    }
    let value = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("no space before the value: {line:?}"))?;
    if value.parse::<f64>().is_err() && !["+Inf", "-Inf", "NaN"].contains(&value) {
        return Err(format!("bad value {value:?} in {line:?}"));
    }
    Ok((name, labels))
}

/// Every line of a scrape is a comment or a well-formed sample; returns the samples.
fn parse_scrape(text: &str) -> Vec<(String, String, f64)> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (name, labels) = parse_sample(line).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let value = line.rsplit(' ').next().unwrap().parse().unwrap_or(f64::NAN);
        samples.push((name.to_owned(), labels, value));
    }
    samples
}

fn value(samples: &[(String, String, f64)], name: &str, labels: &str) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| n == name && l == labels)
        .unwrap_or_else(|| panic!("no sample {name}{labels}"))
        .2
}

#[test]
fn the_scrape_checker_refuses_what_breaks_a_scrape() {
    assert!(parse_sample("a_total{x=\"ok \\\" \\\\ \\n\"} 1").is_ok());
    assert!(parse_sample("a_total{x=\"broken\"quote\"} 1").is_err());
    assert!(parse_sample("a_total{x=\"bad \\t escape\"} 1").is_err());
    assert!(parse_sample("a_total{x=\"unterminated} 1").is_err());
    assert!(parse_sample("a_total 1 2").is_err());
}

/// A registry that names one subscriber with a quote, a backslash and a newline.
async fn hostile_registry() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/reg", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/reg",
        axum::routing::post(|| async {
            "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>\
             <r:GetLogicalAddresseesByServiceContractResponse xmlns:r=\"urn:riv:infrastructure:itintegration:registry:GetLogicalAddresseesByServiceContractResponder:2\">\
             <r:logicalAddressRecord><r:logicalAddress>SE\"quoted\\back&#10;line</r:logicalAddress></r:logicalAddressRecord>\
             </r:GetLogicalAddresseesByServiceContractResponse></s:Body></s:Envelope>"
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn a_subscriber_named_with_quote_backslash_and_newline_does_not_break_the_scrape() {
    let registry = hostile_registry().await;
    let s = start(|c| {
        c.admin_listen = "127.0.0.1:0".parse().unwrap();
        // Nobody listens on port 1: deliveries fail and are retried, which is fine here.
        c.notifications.default_url = Some("http://127.0.0.1:1/pn".into());
        c.notifications.registry = Some(RegistryConfig {
            url: registry,
            ..RegistryConfig::default()
        });
    })
    .await;
    let c = reqwest::Client::new();
    let status: serde_json::Value = get_json(&c, &s.url("/status")).await;
    assert_eq!(
        status["subscribers"], 1,
        "the registry's subscriber is known"
    );
    let text = c.get(s.url("/metrics")).send().await.unwrap();
    let text = text.text().await.unwrap();
    let samples = parse_scrape(&text);
    assert_eq!(
        value(
            &samples,
            "ei_notify_pending",
            "{subscriber=\"SE\\\"quoted\\\\back\\nline\"}"
        ),
        0.0,
        "the address is escaped, not cut"
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn livez_and_readyz_answer_like_health_and_ready() {
    let s = start(|_| {}).await;
    let c = reqwest::Client::new();
    for (k8s, old, body) in [("/livez", "/health", "OK"), ("/readyz", "/ready", "READY")] {
        for path in [k8s, old] {
            let r = c.get(s.url(path)).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            assert_eq!(r.text().await.unwrap(), body, "{path}");
        }
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_show_build_process_writer_queue_and_rocksdb_internals() {
    let s = start(|c| c.block_cache_mb = 16).await;
    let c = reqwest::Client::new();
    let a = post(
        &c,
        &s.url(UPDATE),
        fill(SAMPLE_1000, "19121212"),
        Some("ops-metrics"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let text = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let samples = parse_scrape(&text);
    let version = format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
    assert_eq!(value(&samples, "ei_build_info", &version), 1.0);
    assert_eq!(value(&samples, "ei_ready", ""), 1.0, "as /readyz answers");
    assert_eq!(value(&samples, "ei_store_write_queue_depth", ""), 0.0);
    assert_eq!(
        value(&samples, "ei_rocksdb_block_cache_capacity_bytes", ""),
        (16 << 20) as f64
    );
    assert_eq!(value(&samples, "ei_rocksdb_write_stopped", ""), 0.0);
    assert!(
        value(
            &samples,
            "ei_rocksdb_memtable_bytes",
            "{cf=\"engagements\"}"
        ) > 100_000.0,
        "the 1000 posts sit in the memtable"
    );
    for level in 0..7 {
        let labels = format!("{{cf=\"engagements\",level=\"{level}\"}}");
        assert_eq!(
            value(&samples, "ei_rocksdb_sst_bytes", &labels),
            0.0,
            "nothing flushed yet"
        );
    }
    for kind in ["delay", "stop"] {
        let labels = format!("{{cf=\"engagements\",kind=\"{kind}\"}}");
        assert_eq!(
            value(&samples, "ei_rocksdb_write_stalls_total", &labels),
            0.0
        );
    }
    assert!(
        value(
            &samples,
            "ei_rocksdb_pending_compaction_bytes",
            "{cf=\"engagements\"}"
        ) >= 0.0
    );
    assert!(value(&samples, "ei_data_dir_filesystem_available_bytes", "") > 0.0);
    assert!(value(&samples, "process_resident_memory_bytes", "") > 1e6);
    assert!(value(&samples, "process_open_fds", "") > 3.0);
    assert!(value(&samples, "process_cpu_seconds_total", "") > 0.0);
    let families = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
    assert_eq!(families, helps, "every family has HELP and TYPE");
    s.stop().await.unwrap();
}

/// The packaged `/etc/ei/ei.toml` (ei-server/debian/ei.toml).
const CONFFILE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/debian/ei.toml"));

/// The conffile's commented `# key = value` lines of the top level and of
/// `[notifications]` (not its example subscriber and registry tables), uncommented;
/// example lines (marked `# default: ...`) left out.
fn commented_defaults(conffile: &str) -> String {
    let mut out = String::new();
    let mut section = "";
    for line in conffile.lines() {
        let Some(l) = line.strip_prefix("# ") else {
            continue;
        };
        if l.starts_with('[') {
            section = l.trim();
            if section == "[notifications]" {
                out.push_str("[notifications]\n");
            }
            continue;
        }
        let is_pair = l.split_once(" = ").is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        });
        if is_pair
            && !l.contains("# default:")
            && (section.is_empty() || section == "[notifications]")
        {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

#[test]
fn the_conffile_loads_and_its_commented_values_are_the_real_defaults() {
    let packaged: ei_server::config::Config = toml::from_str(CONFFILE).unwrap();
    let expected = ei_server::config::Config {
        data_dir: "/var/lib/ei/data".into(),
        ..Default::default()
    };
    assert_eq!(packaged, expected, "only data_dir is set");

    let uncommented = commented_defaults(CONFFILE);
    let defaults: ei_server::config::Config = toml::from_str(&uncommented)
        .unwrap_or_else(|e| panic!("the commented defaults do not parse: {e}\n{uncommented}"));
    let mut all_reserved = ei_server::config::Config::default();
    all_reserved.reserved_hsa_ids = Some(all_reserved.rules().reserved_hsa_ids);
    assert_eq!(
        defaults, all_reserved,
        "a commented value differs from its default"
    );

    // Every key the server knows is in the file.
    let table = toml::Table::try_from(ei_server::config::Config::default()).unwrap();
    let notifications = table["notifications"].as_table().unwrap();
    let keys = table
        .keys()
        .filter(|k| *k != "notifications")
        .chain(notifications.keys().filter(|k| *k != "subscribers"))
        .map(String::as_str)
        .chain([
            "alternative_hsa_id",
            "reserved_hsa_ids",
            "tls_cert",
            "tls_key",
            "tls_client_ca",
            "default_url",
            "admin_token",
        ])
        .chain([
            "logical_address",
            "url",
            "filters",
            "ttl_seconds",
            "cache_file",
        ]);
    for key in keys {
        assert!(
            CONFFILE.contains(&format!("# {key} = ")) || CONFFILE.contains(&format!("\n{key} = ")),
            "the conffile does not show {key}"
        );
    }
}
