//! Environment profiles: a TOML file with one `[env.NAME]` table per environment
//! (test, QA, production …), selected with `--env`. A profile says where the index is,
//! its HSA-id (the LogicalAddress every Update carries), the ids it reserves, and
//! whether it is a production environment (which brings the 14-day lead time).

use crate::client::TlsFiles;
use ei_server::operation::Operation;
use ei_server::rules::RulesConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The national platform's HSA-id, the default reserved id besides the index's own.
pub const DEFAULT_PLATFORM_HSA_ID: &str = "platform-hsa-id";

/// Why a profile could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the environment file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the environment file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("the environment file {path} has no [env.{name}] (it has: {known})")]
    Unknown {
        path: PathBuf,
        name: String,
        known: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfilesFile {
    env: BTreeMap<String, ProfileToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileToml {
    url: String,
    update_url: Option<String>,
    find_content_url: Option<String>,
    logical_address: String,
    platform_hsa_id: Option<String>,
    reserved_hsa_ids: Option<Vec<String>>,
    #[serde(default)]
    production: bool,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
}

/// One environment, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub update_url: String,
    pub find_content_url: String,
    /// The index's HSA-id: the Update's LogicalAddress header and the owner of posts.
    pub logical_address: String,
    /// Ids refused as logicalAddress/sourceSystem (the server's EI005/EI006 list).
    pub reserved_hsa_ids: Vec<String>,
    /// Production environments need the 14-day lead time.
    pub production: bool,
    /// Client certificate and trusted roots for HTTPS (absolute paths).
    pub tls: TlsFiles,
}

impl Profile {
    /// A profile for an index at `base_url` (endpoints at their standard paths).
    pub fn new(name: &str, base_url: &str, logical_address: &str, production: bool) -> Profile {
        Profile {
            name: name.to_owned(),
            update_url: endpoint(base_url, Operation::Update),
            find_content_url: endpoint(base_url, Operation::FindContent),
            logical_address: logical_address.to_owned(),
            reserved_hsa_ids: vec![
                logical_address.to_owned(),
                DEFAULT_PLATFORM_HSA_ID.to_owned(),
            ],
            production,
            tls: TlsFiles::default(),
        }
    }

    /// The contract rules as this environment's index applies them.
    pub fn rules(&self) -> RulesConfig {
        rules_for(&self.logical_address, &self.reserved_hsa_ids)
    }
}

/// The contract rules for an index id and its reserved list.
pub fn rules_for(own_hsa_id: &str, reserved: &[String]) -> RulesConfig {
    let mut rules = RulesConfig::new(own_hsa_id, DEFAULT_PLATFORM_HSA_ID);
    rules.reserved_hsa_ids = reserved.to_vec();
    rules
}

/// `base` joined with the standard endpoint path of `op`.
pub fn endpoint(base: &str, op: Operation) -> String {
    format!(
        "{}{}",
        base.trim_end_matches('/'),
        ei_server::wsdl::endpoint_path(op)
    )
}

/// Loads profile `name` from the file at `path`.
pub fn load(path: &Path, name: &str) -> Result<Profile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path, name)
}

fn parse(text: &str, path: &Path, name: &str) -> Result<Profile, ConfigError> {
    let file: ProfilesFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let known = file.env.keys().cloned().collect::<Vec<_>>().join(", ");
    let p = file
        .env
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| p);
    let p = p.ok_or_else(|| ConfigError::Unknown {
        path: path.to_owned(),
        name: name.to_owned(),
        known,
    })?;
    if p.tls_cert.is_some() != p.tls_key.is_some() {
        return Err(ConfigError::Parse {
            path: path.to_owned(),
            message: format!("[env.{name}] needs both tls_cert and tls_key, or neither"),
        });
    }
    let platform = p
        .platform_hsa_id
        .unwrap_or_else(|| DEFAULT_PLATFORM_HSA_ID.to_owned());
    Ok(Profile {
        name: name.to_owned(),
        update_url: p
            .update_url
            .unwrap_or_else(|| endpoint(&p.url, Operation::Update)),
        find_content_url: p
            .find_content_url
            .unwrap_or_else(|| endpoint(&p.url, Operation::FindContent)),
        reserved_hsa_ids: p
            .reserved_hsa_ids
            .unwrap_or_else(|| vec![p.logical_address.clone(), platform]),
        logical_address: p.logical_address,
        production: p.production,
        tls: TlsFiles {
            cert: p.tls_cert.map(|f| beside(path, f)),
            key: p.tls_key.map(|f| beside(path, f)),
            ca: p.tls_ca.map(|f| beside(path, f)),
        },
    })
}

/// A path from the profiles file: relative ones are relative to the file's folder.
fn beside(file: &Path, p: PathBuf) -> PathBuf {
    let dir = file.parent().unwrap_or(Path::new("."));
    let joined = if p.is_absolute() { p } else { dir.join(p) };
    std::path::absolute(&joined).unwrap_or(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[env.test]
url = "http://127.0.0.1:8080/"
logical_address = "ei-test"

[env.prod]
url = "https://ei.example"
logical_address = "5565594230"
platform_hsa_id = "SE-PLATFORM"
production = true
tls_cert = "/etc/siths/client.pem"
tls_key = "client.key"
tls_ca = "ca.pem"
"#;

    #[test]
    fn resolves_endpoints_and_reserved_ids() {
        let p = parse(FILE, Path::new("envs.toml"), "test").unwrap();
        assert_eq!(
            p.update_url,
            "http://127.0.0.1:8080/skltp-ei/update-service/v1"
        );
        assert_eq!(
            p.find_content_url,
            "http://127.0.0.1:8080/skltp-ei/find-content-service/v1"
        );
        assert_eq!(p.reserved_hsa_ids, ["ei-test", DEFAULT_PLATFORM_HSA_ID]);
        assert!(!p.production);
        let prod = parse(FILE, Path::new("conf/envs.toml"), "prod").unwrap();
        assert_eq!(prod.reserved_hsa_ids, ["5565594230", "SE-PLATFORM"]);
        assert!(prod.production);
        assert_eq!(
            prod.tls.cert.as_deref(),
            Some(Path::new("/etc/siths/client.pem"))
        );
        assert_eq!(
            prod.tls.key,
            Some(std::path::absolute("conf/client.key").unwrap())
        );
        assert_eq!(p.tls, TlsFiles::default());
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let half = "[env.x]\nurl = \"https://i\"\nlogical_address = \"a\"\ntls_cert = \"c.pem\"\n";
        let err = parse(half, Path::new("e.toml"), "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("both tls_cert and tls_key"), "{err}");
    }

    #[test]
    fn unknown_environment_names_the_known_ones() {
        let err = parse(FILE, Path::new("envs.toml"), "qa")
            .unwrap_err()
            .to_string();
        assert!(err.contains("prod, test"), "{err}");
    }
}
