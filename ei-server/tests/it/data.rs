//! The data kit on real stores: export → import round trips, the Java index's MySQL
//! export, bad lines, backup while writers run → restore, and `/admin/stats`.

use crate::common::*;
use ei_server::rules::RulesConfig;
use ei_server::store::import::ImportOptions;
use ei_server::transfer::export::export;
use ei_server::transfer::import::{import, ImportPlan};
use ei_server::transfer::{Finding, Format};
use std::path::{Path, PathBuf};

const DOMAIN: &str = "riv:clinicalprocess:healthcond:description";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn plan(data_dir: &Path, files: &[PathBuf]) -> ImportPlan {
    ImportPlan {
        data_dir: data_dir.to_owned(),
        files: files.to_vec(),
        format: None,
        rules: RulesConfig::new("5565594230", "platform-hsa-id"),
        skip_invalid: false,
        threads: 2,
        store: ImportOptions::default(),
    }
}

fn export_to_string(dir: &Path, format: Format) -> String {
    let mut out = Vec::new();
    export(dir, format, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn notification(resident: &str, owner: &str, times: &str) -> String {
    update_body("x", &[(resident, "voo", Some("20200101000000"))], false)
        .replace("Update", "ProcessNotification")
        .replace("UpdateResponder", "ProcessNotificationResponder")
        .replace(
            "</c:dataController>",
            &format!("</c:dataController><c:owner>{owner}</c:owner>{times}"),
        )
}

/// A server's directory with posts of both services (owners, all three times).
async fn populated_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let s = start_in(dir.path().to_owned(), |_| {}).await;
    let c = reqwest::Client::new();
    let posts: Vec<(String, String)> = (0..40)
        .map(|i| {
            (
                format!("1912121212{:02}", i % 13),
                format!("cat \"{i}\", å"),
            )
        })
        .collect();
    let refs: Vec<(&str, &str, Option<&str>)> = posts
        .iter()
        .map(|(r, c)| (r.as_str(), c.as_str(), Some("20240101120000")))
        .collect();
    update(&c, &s, &refs, false).await;
    update(&c, &s, &refs[..5], false).await; // unchanged: no updateTime
    let changed: Vec<_> = refs[5..10]
        .iter()
        .map(|(r, c, _)| (*r, *c, Some("20250101120000")))
        .collect();
    update(&c, &s, &changed, false).await;
    for (i, owner) in ["other-index", "third-index"].iter().enumerate() {
        let times = "<c:creationTime>20190101000000</c:creationTime><c:updateTime>20190202020202</c:updateTime>";
        let a = post(
            &c,
            &s.url(NOTIFY),
            notification(&format!("19500101{i:04}"), owner, times),
            Some("n"),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    s.stop().await.unwrap();
    dir
}

#[tokio::test]
async fn export_import_round_trip_is_equal() {
    let src = populated_dir().await;
    let jsonl = export_to_string(src.path(), Format::Jsonl);
    let csv = export_to_string(src.path(), Format::Csv);
    assert_eq!(jsonl.lines().count(), 42);
    assert!(
        jsonl.contains("\"updateTime\":"),
        "changed posts carry updateTime"
    );
    assert!(jsonl.contains("\"owner\":\"other-index\""));
    let files = tempfile::tempdir().unwrap();
    let a = write(files.path(), "a.jsonl", &jsonl);
    let b = write(files.path(), "b.csv", &csv);
    for (input, spill) in [(a, false), (b.clone(), true)] {
        let dst = tempfile::tempdir().unwrap();
        let mut p = plan(dst.path(), std::slice::from_ref(&input));
        if spill {
            // Every block spilled to its own run file: the merge of run files is used.
            p.store.memory_bytes = 1;
            p.threads = 3;
        }
        let summary = import(&p).unwrap();
        assert!(summary.ingested, "{input:?}: {:?}", summary.findings);
        assert_eq!((summary.records, summary.imported), (42, 42));
        assert_eq!(
            export_to_string(dst.path(), Format::Jsonl),
            jsonl,
            "{input:?}"
        );
        assert_eq!(export_to_string(dst.path(), Format::Csv), csv, "{input:?}");
        // The store opens with the right count and statistics.
        let s = start_in(dst.path().to_owned(), |_| {}).await;
        let c = reqwest::Client::new();
        let status = get_json(&c, &s.url("/status")).await;
        assert_eq!(status["engagements"], 42);
        let admin = format!("http://{}", status["admin_listen"].as_str().unwrap());
        let stats = get_json(&c, &format!("{admin}/admin/stats")).await;
        assert_eq!(stats["posts"], 42);
        assert_eq!(stats["sourceSystem"]["SE2321000016-15CQ"], 42);
        assert_eq!(stats["serviceDomain"][DOMAIN], 42);
        s.stop().await.unwrap();
    }
    // Into a store that is not empty: refused, nothing changed.
    let err = import(&plan(src.path(), &[b])).unwrap_err().to_string();
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(export_to_string(src.path(), Format::Jsonl), jsonl);
}

#[tokio::test]
async fn the_java_index_mysql_export_imports_with_times_kept() {
    let mut exports = Vec::new();
    for name in [
        "engagement_index_table.txt",
        "engagement_index_table.csv",
        "engagement_index_table.batch.tsv",
    ] {
        let dst = tempfile::tempdir().unwrap();
        let summary = import(&plan(dst.path(), &[Path::new(FIXTURES).join(name)])).unwrap();
        assert!(summary.ingested, "{name}: {:?}", summary.findings);
        assert_eq!((summary.imported, summary.warnings), (4, 0), "{name}");
        exports.push((dst, name));
    }
    let first = export_to_string(exports[0].0.path(), Format::Jsonl);
    for (dir, name) in &exports[1..] {
        assert_eq!(export_to_string(dir.path(), Format::Jsonl), first, "{name}");
    }
    let line = first.lines().find(|l| l.contains("195001012222")).unwrap();
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(json["owner"], "SE2321000016-OTHER");
    assert_eq!(json["businessObjectInstanceIdentifier"], "doc\tpart \\ 2");
    assert_eq!(json["categorization"], "vår");
    assert_eq!(json["creationTime"], "20181231235959");
    assert_eq!(json["mostRecentContent"], "20181231235959");
    assert_eq!(json["updateTime"], "20190101000000");

    // Served as imported: FindContent answers the kept times.
    let s = start_in(exports[0].0.path().to_owned(), |_| {}).await;
    let c = reqwest::Client::new();
    let a = post(
        &c,
        &s.url(FIND),
        find_body("191212121212", DOMAIN, ""),
        Some("f"),
    )
    .await;
    let found = engagements(&a.body);
    assert_eq!(found.len(), 1, "{}", a.body);
    use ei_server::model::Field;
    assert_eq!(found[0].get(Field::CreationTime), Some("20190331023000"));
    assert_eq!(
        found[0].get(Field::MostRecentContent),
        Some("20190330120000")
    );
    assert_eq!(found[0].get(Field::UpdateTime), None);
    assert_eq!(found[0].get(Field::Owner), Some("5565594230"));
    s.stop().await.unwrap();
}

fn finding(f: &Finding) -> (u32, u64, Option<&str>) {
    (f.file, f.line, f.field.as_deref())
}

#[test]
fn bad_lines_are_reported_and_nothing_is_imported() {
    let files = tempfile::tempdir().unwrap();
    let good = |r: &str| {
        format!(
            "{{\"registeredResidentIdentification\":\"{r}\",\"serviceDomain\":\"riv:d\",\"categorization\":\"c\",\"logicalAddress\":\"la\",\"businessObjectInstanceIdentifier\":\"NA\",\"clinicalProcessInterestId\":\"NA\",\"sourceSystem\":\"ss\",\"dataController\":\"dc\",\"owner\":\"o\",\"creationTime\":\"20240101000000\"}}"
        )
    };
    let jsonl = [
        good("191212121212"),
        good("191212121213").replace("20240101000000", "20241301000000"),
        good("191212121214").replace(",\"owner\":\"o\"", ""),
        "{not json".to_owned(),
        good("191212121212"),
        String::new(),
        good("191212121215"),
    ]
    .join("\n");
    let a = write(files.path(), "a.jsonl", &jsonl);
    let fixture =
        std::fs::read_to_string(Path::new(FIXTURES).join("engagement_index_table.txt")).unwrap();
    let mut tsv: Vec<String> = fixture.lines().take(2).map(str::to_owned).collect();
    tsv[0] = tsv[0].replacen('1', "2", 1); // the id no longer matches: a warning
    tsv.push("only\ttwo".to_owned());
    let b = write(files.path(), "b.txt", &(tsv.join("\n") + "\n"));

    let dst = tempfile::tempdir().unwrap();
    let summary = import(&plan(dst.path(), &[a.clone(), b.clone()])).unwrap();
    assert!(!summary.ingested);
    let got: Vec<_> = summary.findings.iter().map(finding).collect();
    assert_eq!(
        got,
        [
            (0, 2, Some("creationTime")),
            (0, 3, Some("owner")),
            (0, 4, None),
            (0, 5, None),
            (1, 1, Some("id")),
            (1, 3, None),
        ]
    );
    assert!(summary.findings[0].message.contains("invalid month (13)"));
    assert!(
        summary.findings[3].message == format!("duplicate key, first at {}:1", a.display()),
        "{}",
        summary.findings[3].message
    );
    assert!(summary.findings[5].message.contains("has 2 fields"));
    assert_eq!(
        (summary.invalid, summary.duplicates, summary.warnings),
        (4, 1, 1)
    );
    assert_eq!(
        export_to_string(dst.path(), Format::Jsonl),
        "",
        "nothing imported"
    );

    let mut p = plan(dst.path(), &[a, b]);
    p.skip_invalid = true;
    let summary = import(&p).unwrap();
    assert!(summary.ingested);
    assert_eq!(
        summary.imported, 4,
        "two good JSON lines and two MySQL rows"
    );
    assert_eq!(
        export_to_string(dst.path(), Format::Jsonl).lines().count(),
        4
    );
    let store = ei_server::store::Store::open(
        dst.path(),
        ei_server::store::StoreOptions::new("5565594230"),
        std::sync::Arc::new(ei_server::metrics::Metrics::default()),
    )
    .unwrap();
    let stats = store.stats();
    let count = |f| stats.of(f).map(|(_, n)| n).sum::<u64>();
    use ei_server::store::stats::StatsField;
    assert_eq!(
        StatsField::ALL.map(count),
        [4, 4, 4],
        "the duplicate line is not counted"
    );
    assert_eq!(
        stats.of(StatsField::SourceSystem).find(|(v, _)| *v == "ss"),
        Some(("ss", 2))
    );
    store.close();
}

/// The store and its statistics after an import of `files` (bad lines skipped).
fn imported(files: &[PathBuf], threads: usize, memory_bytes: usize) -> (u64, String, String) {
    let dst = tempfile::tempdir().unwrap();
    let mut p = plan(dst.path(), files);
    p.skip_invalid = true;
    p.threads = threads;
    p.store = ImportOptions {
        memory_bytes,
        sst_bytes: 16 << 10,
        ..ImportOptions::default()
    };
    let summary = import(&p).unwrap();
    assert!(summary.ingested);
    let dups: Vec<_> = summary.findings.iter().map(finding).collect();
    let store = ei_server::store::Store::open(
        dst.path(),
        ei_server::store::StoreOptions::new("5565594230"),
        std::sync::Arc::new(ei_server::metrics::Metrics::default()),
    )
    .unwrap();
    let stats = format!("{:?} {dups:?}", store.stats());
    store.close();
    (
        summary.imported,
        export_to_string(dst.path(), Format::Jsonl),
        stats,
    )
}

#[test]
fn ranges_and_spills_import_the_same_as_one_merge_in_memory() {
    let files = tempfile::tempdir().unwrap();
    let line = |i: u64| {
        let r = 190_000_000_000 + (i * 7919) % 3000;
        format!(
            "{{\"registeredResidentIdentification\":\"{r}\",\"serviceDomain\":\"riv:d{}\",\"categorization\":\"c\",\"logicalAddress\":\"la\",\"businessObjectInstanceIdentifier\":\"NA\",\"clinicalProcessInterestId\":\"NA\",\"sourceSystem\":\"ss{}\",\"dataController\":\"dc\",\"owner\":\"o\",\"creationTime\":\"20240101000000\"}}",
            i % 3,
            i % 7
        )
    };
    // Six files of 500 posts; every 100th line of the last three repeats a key of
    // the first three (15 duplicates across files, runs and ranges).
    let paths: Vec<PathBuf> = (0..6u64)
        .map(|f| {
            let text: Vec<String> = (0..500u64)
                .map(|n| {
                    let i = f * 500 + n;
                    if f >= 3 && n % 100 == 7 {
                        line(i - 1500)
                    } else {
                        line(i)
                    }
                })
                .collect();
            write(files.path(), &format!("{f}.jsonl"), &text.join("\n"))
        })
        .collect();
    let (posts, export, stats) = imported(&paths, 1, 1 << 30);
    assert_eq!(posts, 3000 - 15);
    assert_eq!(export.lines().count(), 3000 - 15);
    assert_eq!(stats.matches(", None)").count(), 15, "{stats}");
    // Three ranges, a spill after every batch, several SST files per range.
    let split = imported(&paths, 3, 64 << 10);
    assert_eq!(split, (posts, export, stats));
}

/// Writes new posts (never changing one) until told to stop; how many were answered.
async fn writer(
    base: String,
    id: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> usize {
    let c = reqwest::Client::new();
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let posts: Vec<(String, String)> = (0..20)
            .map(|i| (format!("19{id}{n:06}"), format!("c{i}")))
            .collect();
        let refs: Vec<_> = posts
            .iter()
            .map(|(r, c)| (r.as_str(), c.as_str(), None))
            .collect();
        let a = post(
            &c,
            &format!("{base}{UPDATE}"),
            update_body("5565594230", &refs, false),
            Some("w"),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
        n += 1;
    }
    n
}

async fn engagements_now(c: &reqwest::Client, s: &Harness) -> u64 {
    get_json(c, &s.url("/status")).await["engagements"]
        .as_u64()
        .unwrap()
}

async fn wait_for_posts(c: &reqwest::Client, s: &Harness, at_least: u64) {
    while engagements_now(c, s).await < at_least {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_while_writers_run_then_restore() {
    let src = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    let s = start_in(src.path().to_owned(), |_| {}).await;
    let c = reqwest::Client::new();
    let admin = format!(
        "http://{}",
        get_json(&c, &s.url("/status")).await["admin_listen"]
            .as_str()
            .unwrap()
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (1..=3)
        .map(|id| tokio::spawn(writer(s.base.clone(), id, stop.clone())))
        .collect();
    let url = format!("{admin}/admin/backup?to={}", backups.path().display());
    let mut reports = Vec::new();
    for at_least in [500, 1500] {
        wait_for_posts(&c, &s, at_least).await;
        let resp = c.post(&url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let r: serde_json::Value = resp.json().await.unwrap();
        assert!(r["posts"].as_u64().unwrap() >= at_least, "{r}");
        assert!(
            r["bytes"].as_u64().unwrap() > 0 && r["seconds"].as_f64().is_some(),
            "{r}"
        );
        reports.push(r);
    }
    assert_eq!(reports[1]["backup_id"], 2);
    let relative = c
        .post(format!("{admin}/admin/backup?to=relative/dir"))
        .send()
        .await
        .unwrap();
    assert_eq!(relative.status(), 400);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        assert!(w.await.unwrap() > 0);
    }
    s.stop().await.unwrap();
    let source = export_to_string(src.path(), Format::Jsonl);
    let source: std::collections::HashSet<&str> = source.lines().collect();

    for r in &reports {
        let dst = tempfile::tempdir().unwrap();
        let id = r["backup_id"].as_u64().unwrap() as u32;
        let restored =
            ei_server::store::backup::restore(backups.path(), dst.path(), Some(id)).unwrap();
        assert_eq!(
            restored.posts,
            r["posts"].as_u64().unwrap(),
            "the backup's count"
        );
        let lines = export_to_string(dst.path(), Format::Jsonl);
        assert_eq!(
            lines.lines().count() as u64,
            restored.posts,
            "count = posts: consistent"
        );
        for l in lines.lines() {
            assert!(
                source.contains(l),
                "restored post differs from the source: {l}"
            );
        }
        let err = ei_server::store::backup::restore(backups.path(), dst.path(), None).unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
    }
}
