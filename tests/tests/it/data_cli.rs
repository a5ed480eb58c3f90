//! The built binary's data subcommands as processes: `--help`, the MySQL fixture
//! imported with `ei-server import`, bad lines and their exit code, `export`, and a
//! backup of the running server restored with `ei-server restore`.

use ei_e2e::{server_binary, ServerProcess};
use std::path::Path;
use std::process::{Command, Output};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../ei-server/tests/fixtures/engagement_index_table.txt"
);

fn ei(args: &[&str]) -> Output {
    Command::new(server_binary())
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("EI_DATA_DIR")
        .env_remove("EI_CONFIG")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_lists_the_subcommands_and_keeps_the_serving_flags() {
    let help = text(&ei(&["--help"]).stdout);
    for word in [
        "export",
        "import",
        "restore",
        "--listen",
        "--data-dir",
        "--admin-listen",
        "Exit codes",
    ] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
    let help = text(&ei(&["import", "--help"]).stdout);
    for word in [
        "--skip-invalid",
        "--format",
        "mysql-tsv",
        "INTO OUTFILE",
        "Exit codes",
        "--memory-mb",
    ] {
        assert!(help.contains(word), "import --help lacks {word}:\n{help}");
    }
    let help = text(&ei(&["restore", "--help"]).stdout);
    assert!(
        help.contains("--from") && help.contains("Exit codes"),
        "{help}"
    );
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn import_export_and_bad_lines_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = ei(&["import", "--data-dir", path(&data), FIXTURE]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("imported 4 posts"),
        "{}",
        text(&out.stderr)
    );
    let out = ei(&["export", "--data-dir", path(&data), "--format", "csv"]);
    assert_eq!(out.status.code(), Some(0));
    let csv = text(&out.stdout);
    assert_eq!(csv.lines().count(), 5, "header and four posts:\n{csv}");
    assert!(csv.contains("20181231235959,20190101000000"), "{csv}");

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"registeredResidentIdentification\":\"1\"}\n{oops\n",
    )
    .unwrap();
    let other = dir.path().join("other");
    let out = ei(&["import", "--data-dir", path(&other), path(&bad)]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("bad.jsonl:1: serviceDomain: EI004"), "{err}");
    assert!(err.contains("bad.jsonl:2: not a post"), "{err}");
    assert!(err.contains("nothing imported"), "{err}");
    let out = ei(&["import", "--data-dir", path(&data), FIXTURE]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not empty"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_of_the_running_binary_restores_with_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    assert_eq!(
        ei(&["import", "--data-dir", path(&data), FIXTURE])
            .status
            .code(),
        Some(0)
    );
    let mut server = ServerProcess::start(&data, &[]);
    let c = reqwest::Client::new();
    let status: serde_json::Value = c
        .get(format!("{}/status", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin = status["admin_listen"].as_str().unwrap();
    let backups = dir.path().join("backups");
    let r: serde_json::Value = c
        .post(format!("http://{admin}/admin/backup?to={}", path(&backups)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["posts"], 4, "{r}");
    assert_eq!(server.terminate(), Some(0));
    let restored = dir.path().join("restored");
    let out = ei(&[
        "restore",
        "--from",
        path(&backups),
        "--data-dir",
        path(&restored),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("4 posts"),
        "{}",
        text(&out.stderr)
    );
    let a = text(&ei(&["export", "--data-dir", path(&data)]).stdout);
    let b = text(&ei(&["export", "--data-dir", path(&restored)]).stdout);
    assert_eq!(a.lines().count(), 4);
    assert_eq!(a, b);
    let out = ei(&[
        "restore",
        "--from",
        path(&backups),
        "--data-dir",
        path(&restored),
    ]);
    assert_eq!(out.status.code(), Some(1), "a target that is not empty");
}
