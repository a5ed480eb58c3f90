//! A real SOAP client library (Python's zeep) imports the services from their WSDL
//! URL alone and calls them against the built binary. The setup script installs zeep;
//! without it this test fails, it does not skip.

use ei_e2e::ServerProcess;

#[test]
fn zeep_imports_the_wsdl_and_calls_update_and_find_content() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/zeep_client.py");
    let python = std::env::var("EI_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(&server.base)
        .output()
        .expect("run python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "zeep client failed (is zeep installed? see scripts/setup.sh):\n{stderr}"
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["update"], "OK");
    let found = answer["found"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{answer}");
    assert_eq!(found[0]["categorization"], "voo");
    assert_eq!(found[0]["owner"], "5565594230");
    assert_eq!(found[0]["mostRecentContent"], "20240102030405");
    assert_eq!(found[0]["creationTime"].as_str().unwrap().len(), 14);
    let fault = answer["fault"].as_str().unwrap();
    assert!(fault.contains("EI002"), "{fault}");
}
