//! Configuration: built-in defaults, overridden by a TOML file, overridden by
//! environment variables, overridden by command-line flags (clap reads the last two).

use crate::rules::RulesConfig;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// How logical errors (EI002–EI006) are answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorMode {
    /// SOAP fault, HTTP 500 (what deployed clients expect).
    Fault,
    /// HTTP 200 with ResultCode=ERROR and the text in `comment` (what the service
    /// contract description prefers).
    ResultCode,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    Text,
    Json,
}

/// The server's whole configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Where the posts live: `rocksdb` (in `data_dir`) or a PostgreSQL URL (libpq
    /// syntax; several hosts with `target_session_attrs=read-write` for failover).
    pub store: String,
    pub hsa_id: String,
    pub alternative_hsa_id: Option<String>,
    pub platform_hsa_id: String,
    /// `None`: the index's own HSA-id and the platform's.
    pub reserved_hsa_ids: Option<Vec<String>>,
    pub check_logical_address: bool,
    pub error_mode: ErrorMode,
    pub max_body_bytes: usize,
    pub log_format: LogFormat,
    pub wal_sync: bool,
    pub max_group_requests: usize,
    pub block_cache_mb: usize,
    /// A request's head must arrive within this many ms of its first byte (TLS
    /// handshake included).
    pub header_read_timeout_ms: u64,
    /// A request's body must arrive within this many ms of its head.
    pub body_read_timeout_ms: u64,
    /// An idle keep-alive connection is closed after this many ms.
    pub idle_timeout_ms: u64,
    /// Most open connections on the service listener; more wait in the backlog.
    pub max_connections: usize,
    /// Most requests one service handles at once (body read included); more get the
    /// "busy, retry later" fault.
    pub max_in_flight: usize,
    /// Most write requests waiting for the writer; more get the busy fault.
    pub writer_queue: usize,
    /// Reads first: the nice increment (0..=19) of the threads doing write requests'
    /// work (parsing, rules, the store's writer, RocksDB's compactions); 0 = same
    /// priority as FindContent.
    pub write_nice: u8,
    /// On SIGTERM, in-flight requests get this many ms; then connections are dropped.
    pub drain_timeout_ms: u64,
    /// Free MiB on the data directory's filesystem below which `/ready` answers 503.
    pub min_free_disk_mb: u64,
    /// HTTPS on the service listener: the server's certificate chain (PEM); with
    /// `tls_key`. Reread on SIGHUP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// The server's private key (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// CA bundle (PEM) client certificates must chain to; set: every client must
    /// present a certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_ca: Option<PathBuf>,
    /// The admin listener (write lock, backup, stats, subscribers, dead letters).
    /// `notifications.admin_listen` is an older name for it.
    pub admin_listen: SocketAddr,
    /// Keep the access log (who looked up or changed which resident's posts).
    pub audit: bool,
    /// Days an access record is kept (0 = forever).
    pub audit_retention_days: u64,
    /// Who may call which service and write which source systems (the `[access]`
    /// table; needs `tls_client_ca`). Default: no checks.
    #[serde(skip_serializing_if = "crate::access::AccessConfig::is_unset")]
    pub access: crate::access::AccessConfig,
    /// The file this configuration was read from (`--config`): SIGHUP rereads its
    /// `[access]` table. Not a key.
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
    /// Subscribers and delivery of ProcessNotification (the `[notifications]` table).
    pub notifications: NotificationConfig,
}

/// One subscriber's filter: a service domain and 0..n categorizations (none = the
/// whole domain). Matching is case-insensitive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    pub service_domain: String,
    #[serde(default)]
    pub categorizations: Vec<String>,
}

/// A subscriber from the configuration file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriberConfig {
    /// The subscriber's logical address (the SOAP LogicalAddress header it gets).
    pub logical_address: String,
    /// Where to POST; default `notifications.default_url` (the platform's
    /// ProcessNotification URL, which routes on the LogicalAddress header).
    #[serde(default)]
    pub url: Option<String>,
    /// No filters = every change.
    #[serde(default)]
    pub filters: Vec<FilterConfig>,
    /// Client certificate (PEM chain) towards this subscriber; default
    /// `notifications.tls_cert`. Likewise its key and the CA bundle to trust.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
}

impl SubscriberConfig {
    /// A subscriber with no TLS settings of its own.
    pub fn new(logical_address: &str, url: Option<String>, filters: Vec<FilterConfig>) -> Self {
        SubscriberConfig {
            logical_address: logical_address.to_owned(),
            url,
            filters,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
        }
    }

    /// This subscriber's own TLS files.
    pub fn tls(&self) -> TlsFiles {
        TlsFiles {
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_ca: self.tls_ca.clone(),
        }
    }
}

/// PEM files for HTTPS: a client certificate (chain) with its private key (e.g. the
/// SITHS function certificate towards the platform) and the CAs to trust instead of
/// the system's roots.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TlsFiles {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
}

impl TlsFiles {
    pub fn is_empty(&self) -> bool {
        self == &TlsFiles::default()
    }

    /// These files, each unset one taken from `default`.
    pub fn or(&self, default: &TlsFiles) -> TlsFiles {
        TlsFiles {
            tls_cert: self.tls_cert.clone().or_else(|| default.tls_cert.clone()),
            tls_key: self.tls_key.clone().or_else(|| default.tls_key.clone()),
            tls_ca: self.tls_ca.clone().or_else(|| default.tls_ca.clone()),
        }
    }
}

/// The subscriber registry (GetLogicalAddresseesByServiceContract v2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// The registry service's URL.
    pub url: String,
    /// LogicalAddress header of the registry call.
    pub logical_address: String,
    /// How long an answer is used before asking again.
    pub ttl_seconds: u64,
    /// The local copy used when the registry is down; default
    /// `{data_dir}/subscribers-cache.json`.
    pub cache_file: Option<PathBuf>,
    /// An answer that drops more than this percentage of the registry's known
    /// subscribers at once is suspect: warned about and not obeyed (the previous set
    /// is kept) until an operator forces a refresh.
    pub max_drop_percent: u32,
    /// Largest registry answer read, in bytes.
    pub max_response_bytes: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            url: String::new(),
            logical_address: "platform-hsa-id".into(),
            ttl_seconds: 7200,
            cache_file: None,
            max_drop_percent: 50,
            max_response_bytes: 32 << 20,
        }
    }
}

/// Notification delivery settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationConfig {
    pub subscribers: Vec<SubscriberConfig>,
    /// The platform's ProcessNotification URL, for subscribers without their own.
    pub default_url: Option<String>,
    pub registry: Option<RegistryConfig>,
    /// `x-vp-instance-id` on outgoing calls.
    pub vp_instance_id: String,
    /// First retry delay; doubles per attempt up to `max_backoff_ms`.
    pub retry_delay_ms: u64,
    pub max_backoff_ms: u64,
    /// Attempts per batch before it becomes a dead letter.
    pub max_attempts: u32,
    /// Most transactions per ProcessNotification.
    pub batch_size: usize,
    /// Most ProcessNotification calls per second per subscriber.
    pub rate_per_second: u32,
    /// Timeout of one call.
    pub timeout_ms: u64,
    /// Alias of the top-level `admin_listen` (the older place of the key); both set
    /// to different addresses is a configuration error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<SocketAddr>,
    /// When set, admin calls need `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
    /// A file holding the token (first line); read at start, instead of `admin_token`.
    pub admin_token_file: Option<PathBuf>,
    /// How long a subscriber missing from the subscriber set keeps its cursor and
    /// backlog; after it the gap is dropped explicitly (logged, counted, shown).
    pub absent_grace_seconds: u64,
    /// Outbox entries a subscriber may hold back before it is parked (0 = no limit).
    pub max_backlog_entries: u64,
    /// Age of a subscriber's oldest undelivered change before it is parked (0 = no
    /// limit).
    pub max_backlog_age_seconds: u64,
    /// Largest answer read from a subscriber, in bytes (larger = a failed call).
    pub max_response_bytes: usize,
    /// Default client certificate (PEM chain) for subscribers and the registry.
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// CA bundle (PEM) trusted instead of the system's roots.
    pub tls_ca: Option<PathBuf>,
}

impl Default for NotificationConfig {
    fn default() -> Self {
        NotificationConfig {
            subscribers: Vec::new(),
            default_url: None,
            registry: None,
            vp_instance_id: "ei".into(),
            retry_delay_ms: 5000,
            max_backoff_ms: 300_000,
            max_attempts: 10,
            batch_size: 1000,
            rate_per_second: 10,
            timeout_ms: 30_000,
            admin_listen: None,
            admin_token: None,
            admin_token_file: None,
            absent_grace_seconds: 7 * 24 * 3600,
            max_backlog_entries: 5_000_000,
            max_backlog_age_seconds: 0,
            max_response_bytes: 1 << 20,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
        }
    }
}

impl NotificationConfig {
    /// Whether any subscriber can exist (then the outbox records changes).
    pub fn enabled(&self) -> bool {
        !self.subscribers.is_empty() || self.registry.is_some()
    }

    /// The default TLS files.
    pub fn tls(&self) -> TlsFiles {
        TlsFiles {
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_ca: self.tls_ca.clone(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            store: "rocksdb".into(),
            hsa_id: "ei-hsa-id".into(),
            alternative_hsa_id: None,
            platform_hsa_id: "platform-hsa-id".into(),
            reserved_hsa_ids: None,
            check_logical_address: true,
            error_mode: ErrorMode::Fault,
            max_body_bytes: 16 << 20,
            log_format: LogFormat::Text,
            wal_sync: true,
            max_group_requests: 64,
            block_cache_mb: 128,
            header_read_timeout_ms: 30_000,
            body_read_timeout_ms: 60_000,
            idle_timeout_ms: 60_000,
            max_connections: 1024,
            max_in_flight: 64,
            writer_queue: 128,
            write_nice: 19,
            drain_timeout_ms: 30_000,
            min_free_disk_mb: 512,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            audit: true,
            audit_retention_days: 730,
            access: crate::access::AccessConfig::default(),
            config_file: None,
            notifications: NotificationConfig::default(),
        }
    }
}

impl Config {
    /// The `store` setting, read.
    pub fn store_kind(&self) -> Result<crate::store::StoreKind, crate::store::StoreError> {
        crate::store::StoreKind::parse(&self.store)
    }

    /// The service listener's TLS files; `None`: plain HTTP.
    pub fn tls_files(&self) -> Option<crate::tls::TlsFiles> {
        Some(crate::tls::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    /// The parts the contract rules need.
    pub fn rules(&self) -> RulesConfig {
        RulesConfig {
            own_hsa_id: self.hsa_id.clone(),
            alternative_hsa_id: self.alternative_hsa_id.clone(),
            reserved_hsa_ids: self
                .reserved_hsa_ids
                .clone()
                .unwrap_or_else(|| vec![self.hsa_id.clone(), self.platform_hsa_id.clone()]),
            check_logical_address: self.check_logical_address,
        }
    }

    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            source: e,
        })?;
        let parse = |message: String| ConfigError::Parse {
            path: path.to_owned(),
            message,
        };
        let mut c: Config = toml::from_str(&text).map_err(|e| parse(e.to_string()))?;
        // `[notifications] admin_listen` is the older name of the top-level key: it
        // applies when the top level does not set one, and may not contradict it.
        if let Some(alias) = c.notifications.admin_listen.take() {
            let top_level_set = toml::from_str::<toml::Table>(&text)
                .map_err(|e| parse(e.to_string()))?
                .contains_key("admin_listen");
            if top_level_set && alias != c.admin_listen {
                return Err(parse(format!(
                    "admin_listen = \"{}\" and notifications.admin_listen = \"{alias}\" \
                     disagree; set only admin_listen (the [notifications] key is its older name)",
                    c.admin_listen
                )));
            }
            c.admin_listen = alias;
        }
        Ok(c)
    }

    /// Defaults, then `--config` (if any), then environment and flags.
    pub fn load(args: &Args) -> Result<Config, ConfigError> {
        let mut c = match &args.config {
            Some(p) => Config::from_file(p)?,
            None => Config::default(),
        };
        c.config_file = args.config.clone();
        args.apply(&mut c);
        c.read_admin_token()?;
        c.check()?;
        Ok(c)
    }

    /// The `[access]` table of `config_file` as it is now, checked like at start (for
    /// the SIGHUP reload); `None` when the configuration came from no file.
    pub fn reread_access(&self) -> Option<Result<crate::access::AccessConfig, ConfigError>> {
        let path = self.config_file.as_ref()?;
        Some(Config::from_file(path).and_then(|file| {
            file.access
                .check(self.tls_client_ca.is_some())
                .map_err(ConfigError::Invalid)?;
            Ok(file.access)
        }))
    }

    /// Reads `admin_token_file` (its first line, trimmed) into `admin_token`.
    fn read_admin_token(&mut self) -> Result<(), ConfigError> {
        let n = &mut self.notifications;
        let Some(path) = &n.admin_token_file else {
            return Ok(());
        };
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.clone(),
            source: e,
        })?;
        let token = text.lines().next().unwrap_or("").trim();
        if token.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "admin_token_file: {} holds no token",
                path.display()
            )));
        }
        n.admin_token = Some(token.to_owned());
        Ok(())
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError::Invalid(format!("{key}: {why}")));
        let n = &self.notifications;
        if let Some(alias) = n.admin_listen.filter(|a| *a != self.admin_listen) {
            return bad(
                "notifications.admin_listen",
                &format!(
                    "{alias} disagrees with admin_listen = {}; set only admin_listen",
                    self.admin_listen
                ),
            );
        }
        if !self.admin_listen.ip().is_loopback()
            && n.admin_token.as_deref().is_none_or(str::is_empty)
        {
            return bad(
                "admin_token",
                "an admin listener not on loopback needs admin_token or admin_token_file",
            );
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return bad("tls_key", "tls_cert is set, its key is missing"),
            (None, Some(_)) => {
                return bad("tls_cert", "tls_key is set, its certificate is missing")
            }
            (None, None) if self.tls_client_ca.is_some() => {
                return bad(
                    "tls_client_ca",
                    "client certificates need HTTPS: set tls_cert and tls_key",
                )
            }
            _ => {}
        }
        self.access
            .check(self.tls_client_ca.is_some())
            .map_err(ConfigError::Invalid)?;
        if self.hsa_id.trim().is_empty() {
            return bad("hsa_id", "must not be empty");
        }
        match self.store_kind() {
            Err(e) => return bad("store", &e.to_string()),
            Ok(crate::store::StoreKind::Postgres(_)) if !cfg!(feature = "postgres") => {
                return bad(
                    "store",
                    "this build has no PostgreSQL support (cargo feature `postgres`)",
                )
            }
            Ok(_) => {}
        }
        if self.max_body_bytes < 4096 {
            return bad("max_body_bytes", "must be at least 4096");
        }
        let zero = [
            (
                "header_read_timeout_ms",
                self.header_read_timeout_ms as usize,
            ),
            ("body_read_timeout_ms", self.body_read_timeout_ms as usize),
            ("idle_timeout_ms", self.idle_timeout_ms as usize),
            ("max_connections", self.max_connections),
            ("max_in_flight", self.max_in_flight),
            ("writer_queue", self.writer_queue),
        ];
        if let Some((key, _)) = zero.iter().find(|(_, v)| *v == 0) {
            return bad(key, "must be at least 1");
        }
        if self.max_group_requests == 0 {
            return bad("max_group_requests", "must be at least 1");
        }
        if self.write_nice > 19 {
            return bad("write_nice", "must be 0..=19");
        }
        let n = &self.notifications;
        if n.batch_size == 0 || n.batch_size > crate::rules::MAX_TRANSACTIONS {
            return bad("notifications.batch_size", "must be 1..=1000");
        }
        if n.max_attempts == 0 || n.rate_per_second == 0 {
            return bad(
                "notifications",
                "max_attempts and rate_per_second must be at least 1",
            );
        }
        if let Some(s) = n
            .subscribers
            .iter()
            .find(|s| s.url.is_none() && n.default_url.is_none())
        {
            return bad(
                "notifications.subscribers",
                &format!(
                    "{} has no url and there is no default_url",
                    s.logical_address
                ),
            );
        }
        if n.registry.as_ref().is_some_and(|r| r.url.is_empty()) {
            return bad("notifications.registry.url", "must be set");
        }
        if n.registry
            .as_ref()
            .is_some_and(|r| r.max_drop_percent > 100)
        {
            return bad("notifications.registry.max_drop_percent", "must be 0..=100");
        }
        for (who, tls) in std::iter::once(("notifications", n.tls())).chain(
            n.subscribers
                .iter()
                .map(|s| (s.logical_address.as_str(), s.tls())),
        ) {
            if tls.tls_cert.is_some() != tls.tls_key.is_some() {
                return bad(
                    "notifications",
                    &format!("{who}: tls_cert and tls_key go together"),
                );
            }
        }
        Ok(())
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

// The serving flags. The command's help text is on `crate::cli::Cli`, which
// flattens these into the `ei-server` command beside its subcommands.
#[derive(Debug, Default, clap::Parser)]
pub struct Args {
    /// TOML configuration file; with TLS, SIGHUP rereads its [access] table (and the
    /// TLS files).
    #[arg(long, env = "EI_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on for the services and the operations endpoints
    /// [default: 127.0.0.1:8080].
    #[arg(long, env = "EI_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Directory of the RocksDB store; created when missing [default: ./data].
    #[arg(long, env = "EI_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where the posts live: `rocksdb` (in --data-dir) or a PostgreSQL URL in libpq
    /// syntax, e.g. postgresql://ei@db1:5432,db2:5432/ei?target_session_attrs=read-write
    /// (several hosts: writes follow the primary after a failover) [default: rocksdb].
    #[arg(long, env = "EI_STORE", value_name = "rocksdb|URL")]
    pub store: Option<String>,
    /// The index's own HSA-id: the owner stamped on every Update and the
    /// LogicalAddress Update must be sent to [default: ei-hsa-id].
    #[arg(long, env = "EI_HSA_ID", value_name = "ID")]
    pub hsa_id: Option<String>,
    /// A second LogicalAddress Update also accepts (e.g. the national 5565594230).
    #[arg(long, env = "EI_ALTERNATIVE_HSA_ID", value_name = "ID")]
    pub alternative_hsa_id: Option<String>,
    /// The platform's HSA-id; reserved by default [default: platform-hsa-id].
    #[arg(long, env = "EI_PLATFORM_HSA_ID", value_name = "ID")]
    pub platform_hsa_id: Option<String>,
    /// Comma-separated HSA-ids no logicalAddress (EI005) or sourceSystem (EI006) may
    /// be [default: the own and the platform HSA-id].
    #[arg(
        long,
        env = "EI_RESERVED_HSA_IDS",
        value_name = "IDS",
        value_delimiter = ','
    )]
    pub reserved_hsa_ids: Option<Vec<String>>,
    /// Check that Update's LogicalAddress header names this index (EI003)
    /// [default: true].
    #[arg(long, env = "EI_CHECK_LOGICAL_ADDRESS", value_name = "BOOL")]
    pub check_logical_address: Option<bool>,
    /// Answer EI002-EI006 as SOAP faults or as ResultCode=ERROR [default: fault].
    #[arg(long, env = "EI_ERROR_MODE", value_enum)]
    pub error_mode: Option<ErrorMode>,
    /// Largest request body in bytes; larger ones get a fault [default: 16777216].
    #[arg(long, env = "EI_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Log format on stderr; the level comes from RUST_LOG [default: text].
    #[arg(long, env = "EI_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Sync the WAL before answering a write. Turning this off loses acknowledged
    /// writes on power loss: for benchmarks only [default: true].
    #[arg(long, env = "EI_WAL_SYNC", value_name = "BOOL")]
    pub wal_sync: Option<bool>,
    /// Most write requests one group commit (one fsync) takes [default: 64].
    #[arg(long, env = "EI_MAX_GROUP_REQUESTS", value_name = "N")]
    pub max_group_requests: Option<usize>,
    /// RocksDB block cache in MiB [default: 128].
    #[arg(long, env = "EI_BLOCK_CACHE_MB", value_name = "MIB")]
    pub block_cache_mb: Option<usize>,
    /// A request's head must arrive within this many ms of its first byte (TLS
    /// handshake included); slower clients are disconnected [default: 30000].
    #[arg(long, env = "EI_HEADER_READ_TIMEOUT_MS", value_name = "MS")]
    pub header_read_timeout_ms: Option<u64>,
    /// A request's body must arrive within this many ms of its head; slower bodies
    /// get an EI000 fault [default: 60000].
    #[arg(long, env = "EI_BODY_READ_TIMEOUT_MS", value_name = "MS")]
    pub body_read_timeout_ms: Option<u64>,
    /// Idle keep-alive connections are closed after this many ms [default: 60000].
    #[arg(long, env = "EI_IDLE_TIMEOUT_MS", value_name = "MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Most open connections on the service listener; further clients wait in the
    /// listen backlog [default: 1024].
    #[arg(long, env = "EI_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Most requests one service (Update, ProcessNotification, FindContent) handles
    /// at once, body read included; more get a soap:Server fault "busy, retry later"
    /// [default: 64].
    #[arg(long, env = "EI_MAX_IN_FLIGHT", value_name = "N")]
    pub max_in_flight: Option<usize>,
    /// Most write requests queued for the store's writer; more get the busy fault
    /// [default: 128].
    #[arg(long, env = "EI_WRITER_QUEUE", value_name = "N")]
    pub writer_queue: Option<usize>,
    /// Reads first: write requests (parsing, rules, the store's writer thread,
    /// RocksDB's compactions) run on threads this much nicer (0..=19) than
    /// FindContent, so the kernel gives lookups the CPU first; 0 = same priority
    /// [default: 19].
    #[arg(long, env = "EI_WRITE_NICE", value_name = "N")]
    pub write_nice: Option<u8>,
    /// On SIGTERM or Ctrl-C, in-flight requests get this many ms to finish; then the
    /// remaining connections are dropped and the store is closed [default: 30000].
    #[arg(long, env = "EI_DRAIN_TIMEOUT_MS", value_name = "MS")]
    pub drain_timeout_ms: Option<u64>,
    /// Free MiB on the data directory's filesystem below which /ready answers 503
    /// (and a failed write is not retried until there is more) [default: 512].
    #[arg(long, env = "EI_MIN_FREE_DISK_MB", value_name = "MIB")]
    pub min_free_disk_mb: Option<u64>,
    /// Admin listener: write lock, backup, statistics, and (when subscribers are
    /// configured) notification subscribers and dead letters [default:
    /// 127.0.0.1:8081] (the file's admin_listen; [notifications] admin_listen is its
    /// older name). Subscribers, the registry and delivery settings are set in the
    /// [notifications] table of the configuration file (see README).
    #[arg(long, env = "EI_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// Keep the access log of FindContent, Update and ProcessNotification (caller,
    /// resident, posts), read with GET /admin/audit [default: true].
    #[arg(long, env = "EI_AUDIT", value_name = "BOOL")]
    pub audit: Option<bool>,
    /// Days an access record is kept; older ones are deleted hourly (0 = forever)
    /// [default: 730].
    #[arg(long, env = "EI_AUDIT_RETENTION_DAYS", value_name = "DAYS")]
    pub audit_retention_days: Option<u64>,
    /// Bearer token admin calls must carry; mandatory when --admin-listen is not a
    /// loopback address [default: none].
    #[arg(long, env = "EI_ADMIN_TOKEN", value_name = "TOKEN")]
    pub admin_token: Option<String>,
    /// File whose first line is the admin token (keeps it out of the process list
    /// and the environment) [default: none].
    #[arg(long, env = "EI_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// HTTPS on the service listener: the server's certificate chain, PEM (needs
    /// --tls-key; both reread on SIGHUP) [default: none, plain HTTP].
    #[arg(long, env = "EI_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The server's private key, PEM (PKCS#8, PKCS#1 or SEC1) [default: none].
    #[arg(long, env = "EI_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// CA bundle, PEM: every client must present a certificate chaining to one of
    /// these; its HSA-id (subject serialNumber, else CN) names the caller [default:
    /// none, no client certificates asked for].
    #[arg(long, env = "EI_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
}

impl Args {
    fn apply(&self, c: &mut Config) {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { c.$f = v.clone(); } )* };
        }
        set!(
            listen,
            data_dir,
            store,
            hsa_id,
            platform_hsa_id,
            check_logical_address,
            error_mode,
            max_body_bytes,
            log_format,
            wal_sync,
            max_group_requests,
            block_cache_mb,
            header_read_timeout_ms,
            body_read_timeout_ms,
            idle_timeout_ms,
            max_connections,
            max_in_flight,
            writer_queue,
            write_nice,
            drain_timeout_ms,
            min_free_disk_mb,
            audit,
            audit_retention_days
        );
        if let Some(v) = &self.alternative_hsa_id {
            c.alternative_hsa_id = Some(v.clone());
        }
        if let Some(v) = &self.reserved_hsa_ids {
            c.reserved_hsa_ids = Some(v.clone());
        }
        if let Some(v) = self.admin_listen {
            // The flag wins over the file's key under either name.
            c.admin_listen = v;
            c.notifications.admin_listen = None;
        }
        if let Some(v) = &self.admin_token {
            c.notifications.admin_token = Some(v.clone());
        }
        if let Some(v) = &self.admin_token_file {
            c.notifications.admin_token_file = Some(v.clone());
        }
        for (flag, key) in [
            (&self.tls_cert, &mut c.tls_cert),
            (&self.tls_key, &mut c.tls_key),
            (&self.tls_client_ca, &mut c.tls_client_ca),
        ] {
            if let Some(v) = flag {
                *key = Some(v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn defaults() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(
            c.rules().reserved_hsa_ids,
            vec!["ei-hsa-id", "platform-hsa-id"]
        );
        assert!(c.rules().check_logical_address);
    }

    #[test]
    fn flags_override_file_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ei.toml");
        std::fs::write(
            &file,
            "hsa_id = \"from-file\"\nerror_mode = \"result-code\"\nmax_body_bytes = 100000\n",
        )
        .unwrap();
        let args = Args::try_parse_from([
            "ei-server",
            "--config",
            file.to_str().unwrap(),
            "--max-body-bytes",
            "200000",
        ])
        .unwrap();
        let c = Config::load(&args).unwrap();
        assert_eq!(c.hsa_id, "from-file");
        assert_eq!(c.error_mode, ErrorMode::ResultCode);
        assert_eq!(c.max_body_bytes, 200000);
        assert_eq!(
            c.rules().reserved_hsa_ids,
            vec!["from-file", "platform-hsa-id"]
        );
    }

    #[test]
    fn notification_tables() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ei.toml");
        std::fs::write(
            &file,
            r#"
[notifications]
default_url = "http://127.0.0.1:1/vp"
retry_delay_ms = 100
[[notifications.subscribers]]
logical_address = "SE1"
filters = [{ service_domain = "riv:a", categorizations = ["x"] }]
[[notifications.subscribers]]
logical_address = "SE2"
url = "http://127.0.0.1:2/pn"
"#,
        )
        .unwrap();
        let c = Config::from_file(&file).unwrap();
        assert!(c.notifications.enabled());
        assert_eq!(
            c.notifications.subscribers[0].filters[0].categorizations,
            vec!["x"]
        );
        assert_eq!(c.notifications.retry_delay_ms, 100);
        assert_eq!(c.notifications.max_attempts, 10);
        std::fs::write(
            &file,
            "[[notifications.subscribers]]\nlogical_address = \"SE1\"\n",
        )
        .unwrap();
        let args = Args::try_parse_from(["ei-server", "--config", file.to_str().unwrap()]).unwrap();
        assert!(Config::load(&args)
            .unwrap_err()
            .to_string()
            .contains("SE1 has no url"));
    }

    #[test]
    fn an_admin_listener_off_loopback_needs_a_token_which_may_come_from_a_file() {
        let args = Args::try_parse_from(["ei-server", "--admin-listen", "0.0.0.0:8081"]).unwrap();
        let err = Config::load(&args).unwrap_err().to_string();
        assert!(err.contains("admin_token"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let args = Args::try_parse_from([
            "ei-server",
            "--admin-listen",
            "0.0.0.0:8081",
            "--admin-token-file",
            file.to_str().unwrap(),
        ])
        .unwrap();
        let c = Config::load(&args).unwrap();
        assert_eq!(c.notifications.admin_token.as_deref(), Some("s3cret"));
    }

    #[test]
    fn admin_listen_is_top_level_with_the_notifications_key_as_its_alias() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ei.toml");
        let load = |text: &str, flags: &[&str]| {
            std::fs::write(&file, text).unwrap();
            let mut argv = vec!["ei-server", "--config", file.to_str().unwrap()];
            argv.extend_from_slice(flags);
            Config::load(&Args::try_parse_from(argv).unwrap()).map(|c| c.admin_listen)
        };
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(load("", &[]).unwrap(), addr("127.0.0.1:8081"));
        assert_eq!(
            load("admin_listen = \"127.0.0.1:9001\"\n", &[]).unwrap(),
            addr("127.0.0.1:9001")
        );
        // The older key alone still works.
        assert_eq!(
            load("[notifications]\nadmin_listen = \"127.0.0.1:9002\"\n", &[]).unwrap(),
            addr("127.0.0.1:9002")
        );
        // Both, agreeing: fine. Both, disagreeing (even with the default): an error
        // that names both keys and the file.
        let both = |top: &str, alias: &str| {
            format!("admin_listen = \"{top}\"\n[notifications]\nadmin_listen = \"{alias}\"\n")
        };
        assert_eq!(
            load(&both("127.0.0.1:9003", "127.0.0.1:9003"), &[]).unwrap(),
            addr("127.0.0.1:9003")
        );
        for (top, alias) in [
            ("127.0.0.1:9003", "127.0.0.1:9004"),
            ("127.0.0.1:8081", "127.0.0.1:9004"),
        ] {
            let err = load(&both(top, alias), &[]).unwrap_err().to_string();
            assert!(
                err.contains("ei.toml")
                    && err.contains("notifications.admin_listen")
                    && err.contains(top)
                    && err.contains(alias),
                "{err}"
            );
        }
        // The flag (or EI_ADMIN_LISTEN) wins over the file under either name.
        assert_eq!(
            load(
                "[notifications]\nadmin_listen = \"127.0.0.1:9002\"\n",
                &["--admin-listen", "127.0.0.1:9005"]
            )
            .unwrap(),
            addr("127.0.0.1:9005")
        );
        // Set in code, the alias may not contradict the top level either.
        let mut c = Config::default();
        c.notifications.admin_listen = Some(addr("127.0.0.1:9006"));
        let err = c.check().unwrap_err().to_string();
        assert!(err.contains("notifications.admin_listen") && err.contains("admin_listen = "));
    }

    #[test]
    fn the_access_table_needs_client_certificates_and_known_keys() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ei.toml");
        let load = |text: &str| {
            std::fs::write(&file, text).unwrap();
            Config::load(
                &Args::try_parse_from(["ei-server", "--config", file.to_str().unwrap()]).unwrap(),
            )
        };
        let table = "[access]\nplatform = [\"SE-VP\"]\nfind_content = [\"SE-R\"]\n\
                     [access.update_sources]\nSE-W = [\"SE-SRC\"]\n";
        let tls = "tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\ntls_client_ca = \"ca.pem\"\n";
        let c = load(&format!("{tls}{table}")).unwrap();
        assert_eq!(c.access.find_content, Some(vec!["SE-R".to_owned()]));
        assert_eq!(
            c.access.update, None,
            "a missing key: anyone who passed TLS"
        );
        assert_eq!(c.access.update_sources.unwrap()["SE-W"], vec!["SE-SRC"]);
        // Without client certificates nobody is verified: refused, saying what to set.
        let err = load(table).unwrap_err().to_string();
        assert!(
            err.contains("tls_client_ca") && err.contains("[access]"),
            "{err}"
        );
        // An empty table asks for nothing.
        assert!(load("[access]\n").unwrap().access == crate::access::AccessConfig::default());
        let err = load(&format!("{tls}[access]\nfind_contents = []\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ei.toml") && err.contains("find_contents"),
            "{err}"
        );
    }

    #[test]
    fn the_access_table_is_reread_from_the_file_and_checked_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ei.toml");
        std::fs::write(
            &file,
            "tls_cert = \"c\"\ntls_key = \"k\"\ntls_client_ca = \"ca\"\n",
        )
        .unwrap();
        let args = Args::try_parse_from(["ei-server", "--config", file.to_str().unwrap()]).unwrap();
        let c = Config::load(&args).unwrap();
        assert_eq!(c.reread_access().unwrap().unwrap(), Default::default());
        std::fs::write(&file, "[access]\nupdate = [\"SE-W\"]\n").unwrap();
        let reread = c.reread_access().unwrap().unwrap();
        assert_eq!(reread.update, Some(vec!["SE-W".to_owned()]));
        // A broken table is an error (the server then keeps the one in force).
        std::fs::write(&file, "[access]\nupdates = [\"SE-W\"]\n").unwrap();
        let err = c.reread_access().unwrap().unwrap_err().to_string();
        assert!(err.contains("updates"), "{err}");
        std::fs::write(&file, "[access]\nupdate = [\" SE-W\"]\n").unwrap();
        assert!(c.reread_access().unwrap().is_err());
        // Without a file there is nothing to reread.
        assert!(Config::default().reread_access().is_none());
    }

    #[test]
    fn reserved_list_from_flag() {
        let args = Args::try_parse_from(["ei-server", "--reserved-hsa-ids", "a,b,c"]).unwrap();
        assert_eq!(
            Config::load(&args).unwrap().rules().reserved_hsa_ids,
            vec!["a", "b", "c"]
        );
    }

    #[test]
    fn bad_files_name_the_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ei.toml");
        std::fs::write(&file, "hsa_idd = \"x\"\n").unwrap();
        let err = Config::from_file(&file).unwrap_err().to_string();
        assert!(err.contains("ei.toml") && err.contains("hsa_idd"), "{err}");
        let err = Config::from_file(&dir.path().join("missing.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.toml"), "{err}");
        let args = Args::try_parse_from(["ei-server", "--max-body-bytes", "10"]).unwrap();
        assert!(Config::load(&args)
            .unwrap_err()
            .to_string()
            .contains("max_body_bytes"));
    }
}
