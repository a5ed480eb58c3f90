//! The `ei-server` command line. Without a subcommand it serves (the flags of
//! [`Args`], unchanged); the subcommands work on a stopped index's data directory:
//! `export`, `import` (also the Java index's MySQL export) and `restore` (of a backup
//! taken with `POST /admin/backup`). Each parses its flags into a plan, runs it,
//! prints diagnostics and one summary line on stderr, and returns its exit code.

use crate::config::{Args, Config, ConfigError};
use crate::rules::RulesConfig;
use crate::store::backup::{restore, BackupError};
use crate::store::export::ExportError;
use crate::store::import::ImportOptions;
use crate::transfer::import::{import, ImportFailed, ImportPlan, ImportSummary};
use crate::transfer::{export::export, Finding, FindingKind, Format};
use std::path::PathBuf;
use std::time::Instant;

/// The engagement index (Engagemangsindex): SOAP 1.1 services Update,
/// ProcessNotification and FindContent over HTTP, stored in embedded RocksDB.
///
/// Without a subcommand it serves. Every setting comes, in rising priority, from its
/// default, the TOML file given with --config (keys as the long flag names with '_'
/// for '-'), its environment variable, and its flag.
///
/// The subcommands export, import and restore work offline on a data directory (stop
/// the server first; export also reads a running server's directory). Backups are
/// taken while serving, with POST /admin/backup?to=DIR on the admin listener.
///
/// Exit codes: 0 after a clean shutdown (SIGTERM or Ctrl-C: in-flight requests are
/// drained and the store closed), 1 when the configuration is invalid, the store
/// cannot be opened or the address cannot be bound. Subcommands: see their --help.
#[derive(Debug, clap::Parser)]
#[command(name = "ei-server", version, verbatim_doc_comment)]
pub struct Cli {
    #[command(flatten)]
    pub serve: Args,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The offline data commands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    Export(ExportArgs),
    Import(ImportArgs),
    Restore(RestoreArgs),
}

/// Where the data directory is (and the rules' HSA-ids, for import).
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// TOML configuration file of the server; its data_dir and HSA-ids are used.
    #[arg(long, env = "EI_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of the RocksDB store [default: data_dir of --config, else ./data].
    #[arg(long, env = "EI_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl StoreArgs {
    /// The configuration; refused when its store is PostgreSQL (export, import and
    /// restore work on a RocksDB data directory; PostgreSQL has its own tools).
    fn config(&self) -> Result<Config, ConfigError> {
        let config = Config::load(&Args {
            config: self.config.clone(),
            data_dir: self.data_dir.clone(),
            ..Args::default()
        })?;
        match config.store_kind() {
            Ok(crate::store::StoreKind::RocksDb) => Ok(config),
            _ => Err(ConfigError::Invalid(format!(
                "store: {}: export, import and restore work on the RocksDB store only; \
                 on PostgreSQL use pg_dump, pg_restore or COPY",
                crate::store::StoreKind::parse(&config.store)
                    .map(|k| k.display())
                    .unwrap_or_default()
            ))),
        }
    }
}

/// Write every post, all twelve fields, as JSON lines or CSV.
///
/// Writes every post (all twelve fields: the nine key fields, mostRecentContent,
/// creationTime, updateTime) to stdout or a file, in key order, as JSON lines or CSV
/// with a header. Reads the store read-only, so it also runs beside a server
/// (showing what is flushed or logged at its start).
///
/// Exit codes: 0 done (also when the reader closes the pipe), 1 the store cannot be
/// read or the output cannot be written.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ExportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: ExportFormat,
    /// Write to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line (absent timestamps left out).
    Jsonl,
    /// CSV with a header of the contract's field names (absent = empty).
    Csv,
}

/// Load posts into an empty index (also the Java index's MySQL export).
///
/// Loads posts into an EMPTY index, offline, without the write path: the files are
/// read and validated on all cores, sorted, written as SST files and ingested whole.
/// owner, creationTime and updateTime are kept as given. Every record is checked
/// with the contract's rules (those of ProcessNotification: owner mandatory, every
/// timestamp valid); bad lines are reported as FILE:LINE: FIELD: REASON, duplicate
/// keys as FILE:LINE: duplicate key, first at FILE:LINE. When any line is bad
/// nothing is imported (unless --skip-invalid).
///
/// Formats (--format, detected per file by default): JSON lines and CSV with the
/// contract's field names (what export writes), and the Java index's table
/// engagement_index_table as MySQL exports it: SELECT * ... INTO OUTFILE and
/// mysqldump --tab (TAB-separated, \N for NULL; .txt/.tsv), the same with FIELDS
/// TERMINATED BY ',' OPTIONALLY ENCLOSED BY '"' (.csv without a header), and
/// mysql --batch (a header line, NULL for NULL). MySQL datetimes keep their
/// wall-clock value; the id column is checked against the key fields (a mismatch
/// is a warning, the row is imported by its fields).
///
/// Exit codes: 0 imported, 1 nothing imported (bad lines, a store that is not
/// empty, an unreadable file or a storage error).
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ImportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The files, read in this order.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Format of every file [default: detected from each file's name and first line].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Import the good lines even when some are bad (they are still reported).
    #[arg(long)]
    pub skip_invalid: bool,
    /// Memory for sorting, in MiB; beyond it sorted runs go to temporary files in
    /// the data directory.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    pub memory_mb: usize,
    /// Threads that parse and validate [default: the number of cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// Restore a backup into an empty data directory.
///
/// Restores a backup (made with POST /admin/backup?to=DIR) into an empty or missing
/// data directory; the server then opens it with the same posts. Offline.
///
/// Exit codes: 0 restored, 1 not restored (no backup there, a target that is not
/// empty, a backup that fails verification, an I/O error).
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct RestoreArgs {
    /// The backup directory.
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Which backup of the directory [default: the latest].
    #[arg(long, value_name = "ID")]
    pub backup_id: Option<u32>,
}

/// Why a subcommand failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Import(#[from] ImportFailed),
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error("{path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs a subcommand; its exit code.
pub fn run(command: Command) -> Result<u8, CommandError> {
    match command {
        Command::Export(a) => run_export(a),
        Command::Import(a) => run_import(a),
        Command::Restore(a) => run_restore(a),
    }
}

fn run_export(a: ExportArgs) -> Result<u8, CommandError> {
    let config = a.store.config()?;
    let format = match a.format {
        ExportFormat::Jsonl => Format::Jsonl,
        ExportFormat::Csv => Format::Csv,
    };
    let started = Instant::now();
    let n = match &a.out {
        Some(path) => {
            let f = std::fs::File::create(path).map_err(|source| CommandError::Output {
                path: path.clone(),
                source,
            })?;
            export(&config.data_dir, format, f)?
        }
        None => export(&config.data_dir, format, std::io::stdout().lock())?,
    };
    eprintln!(
        "exported {n} posts from {} in {:.1} s",
        config.data_dir.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}

fn run_import(a: ImportArgs) -> Result<u8, CommandError> {
    let config = a.store.config()?;
    let plan = ImportPlan {
        data_dir: config.data_dir.clone(),
        files: a.files,
        format: a.format,
        rules: RulesConfig {
            check_logical_address: false,
            ..config.rules()
        },
        skip_invalid: a.skip_invalid,
        threads: a
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        store: ImportOptions {
            memory_bytes: a.memory_mb << 20,
            ..ImportOptions::default()
        },
    };
    let started = Instant::now();
    let summary = import(&plan)?;
    for f in &summary.findings {
        eprintln!("{}", finding_line(&plan.files, f));
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("{}", summary_line(&summary, secs, plan.skip_invalid));
    Ok(if summary.ingested { 0 } else { 1 })
}

/// `FILE:LINE: FIELD: REASON` (as `ei-loader check` prints it).
fn finding_line(files: &[PathBuf], f: &Finding) -> String {
    let file = files
        .get(f.file as usize)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let warning = match f.kind {
        FindingKind::Warning => "warning: ",
        FindingKind::Invalid => "",
    };
    match &f.field {
        Some(field) => format!("{file}:{}: {warning}{field}: {}", f.line, f.message),
        None => format!("{file}:{}: {warning}{}", f.line, f.message),
    }
}

fn summary_line(s: &ImportSummary, secs: f64, skip_invalid: bool) -> String {
    let counts = format!(
        "{} records, {} invalid, {} duplicate keys, {} warnings",
        s.records, s.invalid, s.duplicates, s.warnings
    );
    if s.ingested {
        let skipped = if skip_invalid && s.invalid + s.duplicates > 0 {
            " (bad lines skipped)"
        } else {
            ""
        };
        format!(
            "imported {} posts{skipped}: {counts}, {secs:.1} s, {:.0} posts/s",
            s.imported,
            s.records as f64 / secs.max(1e-9)
        )
    } else {
        format!("nothing imported: {counts} (fix the lines above, or --skip-invalid to import the rest)")
    }
}

fn run_restore(a: RestoreArgs) -> Result<u8, CommandError> {
    let config = a.store.config()?;
    let r = restore(&a.from, &config.data_dir, a.backup_id)?;
    eprintln!(
        "restored backup {} from {} into {}: {} posts, {} bytes, {:.1} s",
        r.backup_id,
        a.from.display(),
        config.data_dir.display(),
        r.posts,
        r.bytes,
        r.seconds
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn no_subcommand_serves_with_the_same_flags() {
        let cli = Cli::try_parse_from([
            "ei-server",
            "--listen",
            "127.0.0.1:9",
            "--wal-sync",
            "false",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.listen.unwrap().to_string(), "127.0.0.1:9");
        assert_eq!(cli.serve.wal_sync, Some(false));
    }

    /// Export, import and restore work on a RocksDB directory; a configuration whose
    /// store is PostgreSQL is refused with the tools to use instead.
    #[test]
    fn subcommands_refuse_a_postgres_store() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ei.toml");
        std::fs::write(&file, "store = \"postgresql://ei:secret@db/ei\"\n").unwrap();
        let args = StoreArgs {
            config: Some(file),
            data_dir: None,
        };
        let err = args.config().unwrap_err().to_string();
        assert!(err.contains("RocksDB store only"), "{err}");
        assert!(err.contains("pg_dump"), "{err}");
        assert!(!err.contains("secret"), "the password is not shown: {err}");
    }

    #[test]
    fn subcommands_parse() {
        let cli = Cli::try_parse_from([
            "ei-server",
            "import",
            "--data-dir",
            "d",
            "--format",
            "mysql-tsv",
            "a.txt",
            "b.txt",
        ])
        .unwrap();
        let Some(Command::Import(a)) = cli.command else {
            panic!()
        };
        assert_eq!(a.files.len(), 2);
        assert_eq!(a.format, Some(Format::MysqlTsv));
        let cli = Cli::try_parse_from(["ei-server", "restore", "--from", "b", "--data-dir", "d"])
            .unwrap();
        assert!(matches!(cli.command, Some(Command::Restore(_))));
        assert!(Cli::try_parse_from(["ei-server", "import", "--data-dir", "d"]).is_err());
    }
}
