use super::*;

const GOOD: &str = r#"
[objective]
p99_ms = 250

[[flow]]
source_system = "Journal A"
hsa_id = "SE2321000016-15CQ"
contract = "Update"
normal_per_hour = 3600
max_per_hour = 18000.5
max_occurs = "weekdays 08-10"
posts_per_call = 10

[[flow]]
source_system = "Journal A"
hsa_id = "SE2321000016-15CQ"
contract = "FindContent"
normal_per_hour = 7200
max_per_hour = 7200

[[flow]]
source_system = "Other index"
hsa_id = "SE-EI2"
contract = "ProcessNotification"
normal_per_hour = 100
max_per_hour = 200
posts_per_call = 1000

[[grundladdning]]
source_system = "Journal A"
hsa_id = "SE2321000016-15CQ"
posts = 2000000
concurrent_calls = 2
posts_per_call = 1000
"#;

/// `GOOD` with `from` replaced by `to` (exactly once).
fn variant(from: &str, to: &str) -> String {
    assert_eq!(GOOD.matches(from).count(), 1, "{from} must occur once");
    GOOD.replacen(from, to, 1)
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn reads_a_good_file() {
    let plan = parse(GOOD).unwrap();
    assert_eq!(plan.p99_bound, Some(Duration::from_millis(250)));
    assert_eq!(plan.flows.len(), 3);
    let update = &plan.flows[0];
    assert_eq!(update.contract, Operation::Update);
    assert_eq!(update.label(), "Journal A / Update");
    assert_eq!(update.max_per_hour, 18000.5);
    assert_eq!(update.max_occurs.as_deref(), Some("weekdays 08-10"));
    assert!((update.calls_per_second(3600.0) - 0.1).abs() < 1e-12);
    let find = &plan.flows[1];
    assert_eq!(
        (find.contract, find.posts_per_call),
        (Operation::FindContent, 1)
    );
    assert_eq!(find.calls_per_second(7200.0), 2.0);
    assert_eq!(plan.flows[2].contract, Operation::ProcessNotification);
    let g = &plan.grundladdning[0];
    assert_eq!(
        (g.posts, g.concurrent_calls, g.posts_per_call, g.pause_ms),
        (2_000_000, 2, 1000, DEFAULT_PAUSE_MS)
    );
}

#[test]
fn the_shipped_example_is_good() {
    let plan = parse(include_str!("../../examples/forstudie.toml")).unwrap();
    assert_eq!(plan.flows.len(), 4);
    assert_eq!(plan.grundladdning.len(), 1);
    assert_eq!(plan.p99_bound, Some(Duration::from_secs(1)));
}

#[test]
fn bad_values_name_row_source_system_and_field() {
    for (from, to, expect) in [
        (
            "max_per_hour = 18000.5",
            "max_per_hour = 100",
            "flow row 1 (Journal A), field `max_per_hour`: must be at least normal_per_hour (3600), got 100",
        ),
        (
            "contract = \"FindContent\"",
            "contract = \"Find\"",
            "flow row 2 (Journal A), field `contract`: \"Find\" is not a contract: use Update, FindContent or ProcessNotification",
        ),
        (
            "normal_per_hour = 100",
            "normal_per_hour = \"many\"",
            "flow row 3 (Other index), field `normal_per_hour`: must be a number, got string \"many\"",
        ),
        (
            "posts_per_call = 1000\n\n[[grund",
            "posts_per_call = 1001\n\n[[grund",
            "flow row 3 (Other index), field `posts_per_call`: must be between 1 and 1000 (the contract's limit), got 1001",
        ),
        (
            "normal_per_hour = 3600",
            "normal_per_hour = 0",
            "flow row 1 (Journal A), field `normal_per_hour`: must be above 0, got 0",
        ),
        (
            "max_per_hour = 7200",
            "max_per_hour = 7200\nposts_per_call = 5",
            "flow row 2 (Journal A), field `posts_per_call`: FindContent is one look-up per call: leave it out or write 1, got 5",
        ),
        (
            "hsa_id = \"SE-EI2\"",
            "hsa_id = \"SE EI2\"",
            "flow row 3 (Other index), field `hsa_id`: \"SE EI2\" contains white space",
        ),
        (
            "concurrent_calls = 2",
            "concurrent_calls = 0",
            "grundladdning row 1 (Journal A), field `concurrent_calls`: must be at least 1, got 0",
        ),
        (
            "posts = 2000000",
            "posts = -5",
            "grundladdning row 1 (Journal A), field `posts`: must be a whole number ≥ 0, got integer -5",
        ),
        (
            "p99_ms = 250",
            "p99_ms = 0",
            "[objective], field `p99_ms`: must be above 0, got 0",
        ),
    ] {
        assert_eq!(error(&variant(from, to)), expect, "{from} -> {to}");
    }
}

#[test]
fn missing_and_unknown_fields_are_named() {
    assert_eq!(
        error(&variant("normal_per_hour = 100\n", "")),
        "flow row 3 (Other index), field `normal_per_hour`: is missing"
    );
    assert_eq!(
        error(&variant("posts_per_call = 10\n", "")),
        "flow row 1 (Journal A), field `posts_per_call`: is missing"
    );
    let e = error(&variant(
        "max_occurs = \"weekdays 08-10\"",
        "max_occur = \"x\"",
    ));
    assert!(
        e.starts_with("flow row 1 (Journal A), field `max_occur`: unknown field (known: source_system, hsa_id, contract"),
        "{e}"
    );
    assert_eq!(
        error(&GOOD.replace("source_system = \"Other index\"\n", "")),
        "flow row 3, field `source_system`: is missing"
    );
}

#[test]
fn file_level_problems() {
    assert!(
        error("[[flow]\n").starts_with("not valid TOML: "),
        "{}",
        error("[[flow]")
    );
    assert_eq!(
        error("[objective]\np99_ms = 5\n"),
        "the file has no `[[flow]]` rows: at least one source system's traffic is needed"
    );
    assert_eq!(
        error(&format!("{GOOD}\n[setting]\nx = 1\n")),
        "unknown table `setting` (expected `objective`, `[[flow]]` or `[[grundladdning]]`)"
    );
    assert_eq!(
        error("flow = 3\n"),
        "`flow` must be an array of tables: write each row as `[[flow]]`"
    );
    let e = error(&GOOD.replacen(
        "hsa_id = \"SE2321000016-15CQ\"\nposts",
        "hsa_id = \"SE-OTHER\"\nposts",
        1,
    ));
    assert_eq!(
        e,
        "grundladdning row 1 (Journal A), field `hsa_id`: \"SE-OTHER\" differs from \"SE2321000016-15CQ\" given for the same source system in flow row 1"
    );
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.toml");
    let e = load(&path).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("cannot read the capacity file {}", path.display())),
        "{e}"
    );
    std::fs::write(&path, variant("posts = 2000000", "posts = 0")).unwrap();
    let e = load(&path).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: grundladdning row 1 (Journal A), field `posts`: must be at least 1, got 0",
            path.display()
        )
    );
}
