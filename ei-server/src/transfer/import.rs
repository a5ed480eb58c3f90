//! `ei-server import`: reads the files on one thread (in blocks of whole lines, or
//! CSV records), parses, validates and sorts them on worker threads, and hands the
//! sorted batches to the store's importer ([`crate::store::import`]), which merges
//! them into SST files and ingests them. Nothing reaches the store unless every line
//! is good (or the caller said to skip bad lines): an import needs an empty store,
//! so a half-done one would have to be wiped before the next try.

use super::mysql::{self, Dialect, Layout};
use super::{csv_record, json_record, validate, Column, Finding, FindingKind, Format};
use crate::rules::RulesConfig;
use crate::store::import::{
    BatchBuilder, ImportError, ImportOptions, Importer, Origin, SortedBatch,
};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

/// Bytes of whole lines per block handed to a worker.
const BLOCK_BYTES: usize = 2 << 20;
/// CSV records per block handed to a worker.
const BLOCK_LINES: usize = 8192;
/// Findings kept for the report; more are counted only.
const MAX_FINDINGS: usize = 10_000;

/// What to import, and how.
#[derive(Clone, Debug)]
pub struct ImportPlan {
    pub data_dir: PathBuf,
    pub files: Vec<PathBuf>,
    /// `None`: detected per file ([`Format::detect`]).
    pub format: Option<Format>,
    pub rules: RulesConfig,
    /// Import the good lines even when some are bad.
    pub skip_invalid: bool,
    /// Parsing and validating threads.
    pub threads: usize,
    pub store: ImportOptions,
}

/// What an import found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Records read (blank lines and headers not counted).
    pub records: u64,
    /// Posts in the store afterwards (0 when nothing was imported).
    pub imported: u64,
    pub invalid: u64,
    pub duplicates: u64,
    pub warnings: u64,
    /// Whether the posts were ingested.
    pub ingested: bool,
    /// The findings, in file and line order (at most 10,000).
    pub findings: Vec<Finding>,
}

/// Why an import stopped before judging every line.
#[derive(Debug, thiserror::Error)]
pub enum ImportFailed {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(transparent)]
    Store(#[from] ImportError),
}

/// One unit of work for a worker.
enum Work {
    Lines {
        file: u32,
        first_line: u64,
        /// Whole lines, each ended by `\n` (the last one perhaps not).
        text: Vec<u8>,
        kind: LineKind,
    },
    Csv {
        file: u32,
        columns: Arc<Vec<Column>>,
        records: Vec<(u64, Result<csv::StringRecord, String>)>,
    },
}

#[derive(Clone)]
enum LineKind {
    Jsonl,
    Mysql(Arc<Layout>),
}

/// A worker's answer.
struct Done {
    batch: SortedBatch,
    records: u64,
    findings: Vec<Finding>,
}

/// Runs the import.
pub fn import(plan: &ImportPlan) -> Result<ImportSummary, ImportFailed> {
    let threads = plan.threads.max(1);
    let store = ImportOptions {
        threads,
        ..plan.store.clone()
    };
    let mut importer = Importer::open_empty(&plan.data_dir, store)?;
    let (work_tx, work_rx) = sync_channel::<Work>(threads * 2);
    let (done_tx, done_rx) = sync_channel::<Done>(threads * 2);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let mut summary = ImportSummary::default();
    let read = std::thread::scope(|scope| -> Result<Result<(), ImportFailed>, ImportFailed> {
        let reader = scope.spawn(move || read_files(plan, work_tx));
        for _ in 0..threads {
            let (rx, tx) = (work_rx.clone(), done_tx.clone());
            scope.spawn(move || work(&plan.rules, rx, tx));
        }
        drop(done_tx);
        let mut added = Ok(());
        for done in done_rx {
            summary.records += done.records;
            for f in done.findings {
                match f.kind {
                    FindingKind::Invalid => summary.invalid += 1,
                    FindingKind::Warning => summary.warnings += 1,
                }
                keep(&mut summary.findings, f);
            }
            if added.is_ok() && done.batch.posts() > 0 {
                added = importer.add(done.batch);
            }
        }
        added?;
        Ok(reader.join().unwrap_or_else(|_| {
            Err(ImportFailed::File {
                path: PathBuf::new(),
                message: "the reading thread failed".into(),
            })
        }))
    })?;
    read?;
    let prepared = importer.prepare()?;
    for d in &prepared.duplicates {
        summary.duplicates += 1;
        keep(
            &mut summary.findings,
            Finding {
                file: d.at.file,
                line: d.at.line,
                field: None,
                message: format!(
                    "duplicate key, first at {}:{}",
                    plan.files[d.first.file as usize].display(),
                    d.first.line
                ),
                kind: FindingKind::Invalid,
            },
        );
    }
    summary.findings.sort_by_key(|f| (f.file, f.line));
    if (summary.invalid + summary.duplicates) > 0 && !plan.skip_invalid {
        prepared.discard();
        return Ok(summary);
    }
    let report = prepared.ingest()?;
    summary.imported = report.posts;
    summary.ingested = true;
    Ok(summary)
}

fn keep(findings: &mut Vec<Finding>, f: Finding) {
    if findings.len() < MAX_FINDINGS {
        findings.push(f);
    }
}

/// The reading thread: every file in order, as blocks of work.
fn read_files(plan: &ImportPlan, tx: SyncSender<Work>) -> Result<(), ImportFailed> {
    for (i, path) in plan.files.iter().enumerate() {
        let fail = |message: String| ImportFailed::File {
            path: path.clone(),
            message,
        };
        let file = File::open(path).map_err(|e| fail(e.to_string()))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let first = peek_line(&mut reader).map_err(|e| fail(e.to_string()))?;
        let format = plan.format.unwrap_or_else(|| Format::detect(path, &first));
        let sent = match format {
            Format::Csv => read_csv(i as u32, reader, &tx).map_err(fail)?,
            Format::Jsonl => read_lines(i as u32, reader, LineKind::Jsonl, 0, &tx),
            Format::MysqlTsv | Format::MysqlCsv => {
                let dialect = match format {
                    Format::MysqlCsv => Dialect::Csv,
                    _ => Dialect::Tsv,
                };
                let (layout, skip) = match Layout::from_header(dialect, &first) {
                    Some(Ok(l)) => (l, 1),
                    Some(Err(e)) => return Err(fail(e)),
                    None => (Layout::declared(dialect), 0),
                };
                read_lines(
                    i as u32,
                    reader,
                    LineKind::Mysql(Arc::new(layout)),
                    skip,
                    &tx,
                )
            }
        };
        if !sent {
            break;
        }
        tracing::debug!(file = %path.display(), ?format, "read");
    }
    Ok(())
}

/// The first line, left in the reader's buffer (lossy: only for detection).
fn peek_line(reader: &mut BufReader<File>) -> std::io::Result<String> {
    let buf = reader.fill_buf()?;
    let end = buf.iter().position(|b| *b == b'\n').unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// Sends the file in blocks of whole lines (about [`BLOCK_BYTES`]); false when the
/// workers are gone. The first `skip` lines (a header) are left out.
fn read_lines(
    file: u32,
    mut reader: BufReader<File>,
    kind: LineKind,
    skip: u64,
    tx: &SyncSender<Work>,
) -> bool {
    let mut first_line = 1;
    let mut header = Vec::new();
    for _ in 0..skip {
        header.clear();
        if reader.read_until(b'\n', &mut header).unwrap_or(0) > 0 {
            first_line += 1;
        }
    }
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let mut block = std::mem::take(&mut carry);
        block.reserve(BLOCK_BYTES + 4096);
        let start = block.len();
        block.resize(start + BLOCK_BYTES, 0);
        let (n, error) = fill(&mut reader, &mut block[start..]);
        block.truncate(start + n);
        let end = error.is_some() || n == 0;
        if !end {
            // Keep the unfinished last line for the next block.
            let cut = block.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            carry = block.split_off(cut);
        }
        if let Some(e) = error {
            // Reported as the line after the last one read; the file ends there.
            if !block.is_empty() && block.last() != Some(&b'\n') {
                block.push(b'\n');
            }
            block.extend_from_slice(format!("\u{0}read error: {e}\n").as_bytes());
        }
        if !block.is_empty() {
            let lines = block.iter().filter(|b| **b == b'\n').count() as u64
                + u64::from(block.last() != Some(&b'\n'));
            let w = Work::Lines {
                file,
                first_line,
                text: block,
                kind: kind.clone(),
            };
            if tx.send(w).is_err() {
                return false;
            }
            first_line += lines;
        }
        if end {
            return true;
        }
    }
}

/// Reads until `buf` is full or the file ends; the bytes read and any error.
fn fill(reader: &mut BufReader<File>, buf: &mut [u8]) -> (usize, Option<std::io::Error>) {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

/// Reads the contract's CSV (a record may span lines) and sends record blocks.
fn read_csv(file: u32, reader: BufReader<File>, tx: &SyncSender<Work>) -> Result<bool, String> {
    let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let header = csv
        .headers()
        .map_err(|e| format!("bad CSV header: {e}"))?
        .clone();
    let columns = Arc::new(
        crate::records::header(&header, &crate::model::Field::KEY)
            .map_err(|e| format!("bad CSV header: {e}"))?,
    );
    let mut records = Vec::with_capacity(BLOCK_LINES);
    let mut record = csv::StringRecord::new();
    loop {
        let read = csv.read_record(&mut record);
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        match read {
            Ok(false) => break,
            Ok(true) => records.push((line, Ok(record.clone()))),
            Err(e) if e.is_io_error() => return Err(e.to_string()),
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(line);
                records.push((line, Err(e.to_string())));
            }
        }
        if records.len() == BLOCK_LINES {
            let block = std::mem::replace(&mut records, Vec::with_capacity(BLOCK_LINES));
            let w = Work::Csv {
                file,
                columns: columns.clone(),
                records: block,
            };
            if tx.send(w).is_err() {
                return Ok(false);
            }
        }
    }
    Ok(records.is_empty()
        || tx
            .send(Work::Csv {
                file,
                columns,
                records,
            })
            .is_ok())
}

/// A worker: parse, validate and sort blocks until the reader is done.
fn work(rules: &RulesConfig, rx: Arc<Mutex<Receiver<Work>>>, tx: SyncSender<Done>) {
    loop {
        let next = rx.lock().map(|r| r.recv());
        let Ok(Ok(w)) = next else { return };
        if tx.send(process(rules, w)).is_err() {
            return;
        }
    }
}

fn process(rules: &RulesConfig, w: Work) -> Done {
    let mut out = Block::default();
    match w {
        Work::Lines {
            file,
            first_line,
            text,
            kind,
        } => {
            out.batch = BatchBuilder::with_capacity(text.len() / 256);
            let text = text.strip_suffix(b"\n").unwrap_or(&text);
            for (i, raw) in text.split(|b| *b == b'\n').enumerate() {
                let line = first_line + i as u64;
                let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                let at = Origin { file, line };
                let Ok(text) = std::str::from_utf8(raw) else {
                    out.invalid(at, None, "is not UTF-8".to_owned());
                    continue;
                };
                if text.trim().is_empty() {
                    continue;
                }
                if let Some(why) = text.strip_prefix('\u{0}') {
                    out.invalid(at, None, why.to_owned());
                    continue;
                }
                match &kind {
                    LineKind::Jsonl => out.add(rules, at, json_record(text), None),
                    LineKind::Mysql(layout) => match layout.record(text) {
                        Ok((tx, id)) => out.add(rules, at, Ok(tx), id),
                        Err(e) => out.invalid(at, None, e),
                    },
                }
            }
        }
        Work::Csv {
            file,
            columns,
            records,
        } => {
            out.batch = BatchBuilder::with_capacity(records.len());
            for (line, r) in records {
                let at = Origin { file, line };
                let tx = r.and_then(|r| csv_record(&columns, &r));
                out.add(rules, at, tx, None);
            }
        }
    }
    Done {
        batch: out.batch.finish(),
        records: out.records,
        findings: out.findings,
    }
}

/// One block's results being built.
#[derive(Default)]
struct Block {
    batch: BatchBuilder,
    records: u64,
    findings: Vec<Finding>,
}

impl Block {
    fn add(
        &mut self,
        rules: &RulesConfig,
        at: Origin,
        tx: Result<crate::model::RawTransaction, String>,
        java_id: Option<String>,
    ) {
        let tx = match tx {
            Ok(tx) => tx,
            Err(e) => return self.invalid(at, None, e),
        };
        if let Some(id) = java_id {
            if !mysql::java_id_matches(&tx.engagement, &id) {
                self.finding(
                    at,
                    Some("id"),
                    "does not match the key fields (a row edited by hand?); imported by its fields"
                        .into(),
                    FindingKind::Warning,
                );
            }
        }
        match validate(rules, tx) {
            Ok(e) => self.batch.push(&e, at),
            Err((field, message)) => {
                self.records += 1;
                self.finding(at, field.as_deref(), message, FindingKind::Invalid);
                return;
            }
        }
        self.records += 1;
    }

    fn invalid(&mut self, at: Origin, field: Option<&str>, message: String) {
        self.records += 1;
        self.finding(at, field, message, FindingKind::Invalid);
    }

    fn finding(&mut self, at: Origin, field: Option<&str>, message: String, kind: FindingKind) {
        self.findings.push(Finding {
            file: at.file,
            line: at.line,
            field: field.map(str::to_owned),
            message,
            kind,
        });
    }
}
