//! Reading the load: CSV whose header names the contract's fields, or JSON lines with
//! one object per post. Both stream, one record at a time, so any size fits in
//! bounded memory. Every record gets a sequence number (its position in the whole
//! load, files in the order given) that the journal and the reject file refer to.
//!
//! A record that cannot be read (a JSON syntax error, a wrong number of CSV fields) is
//! an [`Item::Unreadable`], reported and counted like an invalid post; only problems
//! that make the whole file unusable (cannot open, bad header) are errors.

use ei_server::model::{Field, RawEngagement, RawTransaction};
use ei_server::records;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

pub use ei_server::records::DELETE_FLAG;

/// The two input formats, chosen by file extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `.csv`
    Csv,
    /// `.jsonl`, `.ndjson`
    Jsonl,
}

impl Format {
    pub fn of(path: &Path) -> Result<Format, InputError> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("csv") => Ok(Format::Csv),
            Some("jsonl" | "ndjson") => Ok(Format::Jsonl),
            _ => Err(InputError::Format(path.to_owned())),
        }
    }
}

/// Why an input file cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{0}: unknown input format (name the file .csv, .jsonl or .ndjson)")]
    Format(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: bad CSV header: {message}")]
    Header { path: PathBuf, message: String },
}

/// Where a record is: which input file (index into the load's files) and line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub file: usize,
    pub line: u64,
}

/// One item of the load. (Unboxed on purpose: items stream one at a time, and a box
/// would cost an allocation per record.)
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Record {
        seq: u64,
        at: Location,
        tx: RawTransaction,
    },
    Unreadable {
        seq: u64,
        at: Location,
        message: String,
    },
}

impl Item {
    pub fn seq(&self) -> u64 {
        match self {
            Item::Record { seq, .. } | Item::Unreadable { seq, .. } => *seq,
        }
    }
    pub fn at(&self) -> Location {
        match self {
            Item::Record { at, .. } | Item::Unreadable { at, .. } => *at,
        }
    }
}

/// Reads every file of a load in order, numbering items across files.
pub fn read_all(paths: &[PathBuf]) -> impl Iterator<Item = Result<Item, InputError>> + '_ {
    let mut seq = 0u64;
    paths
        .iter()
        .enumerate()
        .flat_map(move |(file, path)| {
            let items: Box<dyn Iterator<Item = Result<Item, InputError>>> = match open(file, path) {
                Ok(it) => it,
                Err(e) => Box::new(std::iter::once(Err(e))),
            };
            items
        })
        .map(move |mut r| {
            if let Ok(item) = &mut r {
                match item {
                    Item::Record { seq: s, .. } | Item::Unreadable { seq: s, .. } => *s = seq,
                }
                seq += 1;
            }
            r
        })
}

fn open(
    file: usize,
    path: &Path,
) -> Result<Box<dyn Iterator<Item = Result<Item, InputError>>>, InputError> {
    let format = Format::of(path)?;
    let f = File::open(path).map_err(|source| InputError::Io {
        path: path.to_owned(),
        source,
    })?;
    let reader = BufReader::with_capacity(1 << 16, f);
    Ok(match format {
        Format::Csv => Box::new(CsvItems::new(file, path, reader)?),
        Format::Jsonl => Box::new(JsonItems {
            file,
            path: path.to_owned(),
            lines: reader,
            line: 0,
            buf: String::new(),
        }),
    })
}

struct CsvItems {
    file: usize,
    path: PathBuf,
    columns: Vec<records::Column>,
    reader: csv::Reader<BufReader<File>>,
    record: csv::StringRecord,
}

impl CsvItems {
    fn new(file: usize, path: &Path, reader: BufReader<File>) -> Result<CsvItems, InputError> {
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
        let header_err = |message: String| InputError::Header {
            path: path.to_owned(),
            message,
        };
        let headers = reader
            .headers()
            .map_err(|e| header_err(e.to_string()))?
            .clone();
        let columns = records::header(&headers, &Field::UPDATE_KEY).map_err(header_err)?;
        Ok(CsvItems {
            file,
            path: path.to_owned(),
            columns,
            reader,
            record: csv::StringRecord::new(),
        })
    }
}

impl Iterator for CsvItems {
    type Item = Result<Item, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        let read = self.reader.read_record(&mut self.record);
        let line = self.record.position().map(|p| p.line()).unwrap_or(0);
        let at = Location {
            file: self.file,
            line,
        };
        match read {
            Ok(false) => None,
            Ok(true) if self.record.len() != self.columns.len() => Some(Ok(Item::Unreadable {
                seq: 0,
                at,
                message: format!(
                    "has {} fields, the header has {}",
                    self.record.len(),
                    self.columns.len()
                ),
            })),
            Ok(true) => Some(Ok(Item::Record {
                seq: 0,
                at,
                tx: records::transaction(&self.columns, &self.record),
            })),
            Err(e) if e.is_io_error() => Some(Err(InputError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(e.to_string()),
            })),
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(line);
                Some(Ok(Item::Unreadable {
                    seq: 0,
                    at: Location {
                        file: self.file,
                        line,
                    },
                    message: e.to_string(),
                }))
            }
        }
    }
}

struct JsonItems {
    file: usize,
    path: PathBuf,
    lines: BufReader<File>,
    line: u64,
    buf: String,
}

impl Iterator for JsonItems {
    type Item = Result<Item, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            match self.lines.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) => self.line += 1,
                Err(source) => {
                    return Some(Err(InputError::Io {
                        path: self.path.clone(),
                        source,
                    }))
                }
            }
            if self.buf.trim().is_empty() {
                continue;
            }
            let at = Location {
                file: self.file,
                line: self.line,
            };
            return Some(Ok(match json_transaction(&self.buf) {
                Ok(tx) => Item::Record { seq: 0, at, tx },
                Err(message) => Item::Unreadable {
                    seq: 0,
                    at,
                    message,
                },
            }));
        }
    }
}

/// One JSON object: field names to strings (null = absent); deleteFlag may also be a
/// JSON boolean.
pub fn json_transaction(line: &str) -> Result<RawTransaction, String> {
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(line).map_err(|e| format!("not a JSON object: {e}"))?;
    let mut tx = RawTransaction::default();
    for (k, v) in map {
        let text = match v {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s,
            serde_json::Value::Bool(b) if k == DELETE_FLAG => b.to_string(),
            other => return Err(format!("{k:?} must be a string, not {other}")),
        };
        match (k.as_str(), Field::from_name(&k)) {
            (DELETE_FLAG, _) => tx.delete_flag = Some(text),
            (_, Some(f)) => tx.engagement.set(f, text),
            (_, None) => return Err(format!("unknown key {k:?}")),
        }
    }
    Ok(tx)
}

/// A record's fields as a JSON object (for the reject file and reports).
pub fn record_json(tx: &RawTransaction) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    if let Some(d) = &tx.delete_flag {
        map.insert(DELETE_FLAG.into(), d.clone().into());
    }
    for f in Field::ALL {
        if let Some(v) = tx.engagement.get(f) {
            map.insert(f.name().into(), v.into());
        }
    }
    serde_json::Value::Object(map)
}

/// The key fields a FindContent for this post filters on (all but owner).
pub fn key_query(e: &RawEngagement) -> RawEngagement {
    let mut q = RawEngagement::default();
    for f in &Field::UPDATE_KEY {
        if let Some(v) = e.get(*f) {
            q.set(*f, v);
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::File::create(&p)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        p
    }

    const HEADER: &str = "registeredResidentIdentification,serviceDomain,categorization,logicalAddress,businessObjectInstanceIdentifier,clinicalProcessInterestId,mostRecentContent,sourceSystem,dataController,deleteFlag\n";

    #[test]
    fn reads_csv_and_jsonl_with_lines_and_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let csv = write(dir.path(), "a.csv", &format!("{HEADER}191212121212,d,NA,LA,NA,NA,,SS,DC,\n191212121213,d,NA,LA,NA,NA,20240101120000,SS,DC,true\n1,2\n"));
        let jl = write(
            dir.path(),
            "b.jsonl",
            "{\"registeredResidentIdentification\":\"1\",\"deleteFlag\":true}\n\n{bad\n",
        );
        let items: Vec<Item> = read_all(&[csv, jl]).map(Result::unwrap).collect();
        assert_eq!(items.len(), 5);
        assert_eq!(
            items.iter().map(Item::seq).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        let Item::Record { at, tx, .. } = &items[1] else {
            panic!()
        };
        assert_eq!(*at, Location { file: 0, line: 3 });
        assert_eq!(tx.delete_flag.as_deref(), Some("true"));
        assert_eq!(
            tx.engagement.get(Field::MostRecentContent),
            Some("20240101120000")
        );
        let Item::Record { tx, .. } = &items[0] else {
            panic!()
        };
        assert_eq!(
            tx.engagement.get(Field::MostRecentContent),
            None,
            "empty cell is absent"
        );
        assert!(
            matches!(&items[2], Item::Unreadable { at: Location { file: 0, line: 4 }, message, .. } if message.contains("has 2 fields"))
        );
        let Item::Record { at, tx, .. } = &items[3] else {
            panic!()
        };
        assert_eq!(
            (*at, tx.delete_flag.as_deref()),
            (Location { file: 1, line: 1 }, Some("true"))
        );
        assert!(matches!(
            &items[4],
            Item::Unreadable {
                at: Location { file: 1, line: 3 },
                ..
            }
        ));
    }

    #[test]
    fn bad_header_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "a.csv",
            "registeredResidentIdentification,color\n",
        );
        let err = read_all(&[p]).next().unwrap().unwrap_err().to_string();
        assert!(err.contains("unknown column \"color\""), "{err}");
        let p = write(dir.path(), "b.csv", "registeredResidentIdentification\n");
        let err = read_all(&[p]).next().unwrap().unwrap_err().to_string();
        assert!(err.contains("\"serviceDomain\" is missing"), "{err}");
        assert!(Format::of(Path::new("x.xml")).is_err());
    }

    #[test]
    fn json_values_must_be_strings() {
        assert!(json_transaction("{\"serviceDomain\": 5}")
            .unwrap_err()
            .contains("must be a string"));
        assert!(json_transaction("{\"color\": \"red\"}")
            .unwrap_err()
            .contains("unknown key"));
        assert!(json_transaction("[1]").is_err());
    }
}
