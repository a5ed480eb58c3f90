//! The Java index's table as MySQL exports it (`engagement_index_table`, columns as
//! in skltp/ei's `create-table-mysql.sql`): `SELECT … INTO OUTFILE` and `mysqldump
//! --tab` (TAB-separated, no header, `\N` for NULL, backslash escapes), the same with
//! `FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '"'` (CSV), and `mysql --batch`
//! (TAB-separated with a header line of column names and `NULL` for NULL).
//! `datetime` values (`YYYY-MM-DD HH:MM:SS`, no zone) become contract timestamps
//! with the same wall-clock value.
//!
//! The `id` column (SHA-256 of the key fields) carries nothing of its own: it is
//! checked against the key fields and a mismatch (a row edited by hand) is reported
//! as a warning; the row is imported by its fields.

use crate::model::{Field, RawEngagement, RawTransaction};
use sha2::{Digest, Sha256};

/// The table's columns in their declared order, with the contract field of each.
pub const COLUMNS: [(&str, Option<Field>); 13] = [
    ("id", None),
    (
        "business_object_instance_id",
        Some(Field::BusinessObjectInstanceIdentifier),
    ),
    ("categorization", Some(Field::Categorization)),
    (
        "clinical_process_interest_id",
        Some(Field::ClinicalProcessInterestId),
    ),
    ("creation_time", Some(Field::CreationTime)),
    ("data_controller", Some(Field::DataController)),
    ("logical_address", Some(Field::LogicalAddress)),
    ("most_recent_content", Some(Field::MostRecentContent)),
    ("owner", Some(Field::Owner)),
    (
        "registered_resident_id",
        Some(Field::RegisteredResidentIdentification),
    ),
    ("service_domain", Some(Field::ServiceDomain)),
    ("source_system", Some(Field::SourceSystem)),
    ("update_time", Some(Field::UpdateTime)),
];

/// How the fields of a line are separated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// TAB-separated (`INTO OUTFILE`, `mysqldump --tab`, `mysql --batch`).
    Tsv,
    /// Comma-separated, values optionally enclosed in `"`.
    Csv,
}

impl Dialect {
    fn separator(self) -> u8 {
        match self {
            Dialect::Tsv => b'\t',
            Dialect::Csv => b',',
        }
    }
}

/// How to read the lines of one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub dialect: Dialect,
    /// The column (index into [`COLUMNS`]) of each position in a line.
    pub columns: Vec<usize>,
    /// `NULL` (not only `\N`) means NULL: `mysql --batch` output, which has a header.
    pub null_word: bool,
}

impl Layout {
    /// The layout without a header: every column in the declared order.
    pub fn declared(dialect: Dialect) -> Layout {
        Layout {
            dialect,
            columns: (0..COLUMNS.len()).collect(),
            null_word: false,
        }
    }

    /// The layout a header line gives, if `line` is a header (every field a column
    /// name); `Err` when it is one but lacks a column.
    pub fn from_header(dialect: Dialect, line: &str) -> Option<Result<Layout, String>> {
        let names: Vec<&str> = line
            .trim_end_matches(['\r', '\n'])
            .split(dialect.separator() as char)
            .map(|n| n.trim().trim_matches('"').trim_matches('`'))
            .collect();
        let columns: Option<Vec<usize>> = names
            .iter()
            .map(|n| COLUMNS.iter().position(|(c, _)| c.eq_ignore_ascii_case(n)))
            .collect();
        let columns = columns?;
        let missing: Vec<&str> = COLUMNS
            .iter()
            .enumerate()
            .filter(|(i, (_, f))| f.is_some() && !columns.contains(i))
            .map(|(_, (c, _))| *c)
            .collect();
        Some(if missing.is_empty() {
            Ok(Layout {
                dialect,
                columns,
                null_word: true,
            })
        } else {
            Err(format!(
                "the header lacks the columns {}",
                missing.join(", ")
            ))
        })
    }

    /// One line (without its line end) as a transaction and its `id` column.
    pub fn record(&self, line: &str) -> Result<(RawTransaction, Option<String>), String> {
        let values = split(line, self.dialect)?;
        if values.len() != self.columns.len() {
            return Err(format!(
                "has {} fields, the table has {}",
                values.len(),
                self.columns.len()
            ));
        }
        let mut e = RawEngagement::default();
        let mut id = None;
        for (value, &c) in values.into_iter().zip(&self.columns) {
            let value = value.filter(|v| !(self.null_word && v == "NULL"));
            match (COLUMNS[c].1, value) {
                (None, v) => id = v,
                (Some(_), None) => {}
                (Some(f), Some(v)) if Field::TIMESTAMPS.contains(&f) => e.set(f, datetime(&v)),
                (Some(f), Some(v)) => e.set(f, v),
            }
        }
        Ok((
            RawTransaction {
                delete_flag: None,
                engagement: e,
            },
            id,
        ))
    }
}

/// Splits one line into values (`None` = `\N`), undoing MySQL's backslash escapes
/// and, in CSV, the optional `"` enclosure.
pub fn split(line: &str, dialect: Dialect) -> Result<Vec<Option<String>>, String> {
    let sep = dialect.separator();
    let b = line.as_bytes();
    let mut out = Vec::with_capacity(13);
    let mut i = 0;
    loop {
        let enclosed = dialect == Dialect::Csv && b.get(i) == Some(&b'"');
        if enclosed {
            i += 1;
        }
        let start = i;
        let end = if enclosed { b'"' } else { sep };
        // Most values hold no escape: one copy of the slice (ASCII boundaries, so
        // it stays valid UTF-8).
        let plain = match b[i..].iter().position(|&c| c == b'\\' || c == end) {
            Some(k) if b[i + k] == end => Some(i + k),
            None if !enclosed => Some(b.len()),
            _ => None,
        };
        let value = match plain {
            Some(stop) => {
                i = stop + usize::from(enclosed);
                line[start..stop].to_owned()
            }
            None => {
                let (value, next) = unescaped(b, start, enclosed, sep)?;
                i = next;
                value
            }
        };
        let null = !enclosed && &b[start..i] == b"\\N";
        out.push((!null).then_some(value));
        match b.get(i) {
            None => return Ok(out),
            Some(&c) if c == sep => i += 1,
            Some(_) => return Err(format!("unexpected text after a closing \" at column {i}")),
        }
    }
}

/// A value with backslash escapes from `start`; the value and the position after it
/// (after the closing `"` when enclosed).
fn unescaped(b: &[u8], start: usize, enclosed: bool, sep: u8) -> Result<(String, usize), String> {
    let mut i = start;
    let mut value = Vec::with_capacity(32);
    let mut closed = !enclosed;
    while i < b.len() {
        match b[i] {
            b'\\' if i + 1 < b.len() => {
                value.push(unescape(b[i + 1]));
                i += 2;
            }
            b'"' if enclosed => {
                closed = true;
                i += 1;
                break;
            }
            c if c == sep && !enclosed => break,
            c => {
                value.push(c);
                i += 1;
            }
        }
    }
    if !closed {
        return Err(format!(
            "a value opened with \" at column {start} is not closed"
        ));
    }
    let value = String::from_utf8(value).map_err(|_| "is not UTF-8".to_owned())?;
    Ok((value, i))
}

fn unescape(c: u8) -> u8 {
    match c {
        b'0' => 0,
        b'b' => 8,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'Z' => 0x1A,
        other => other,
    }
}

/// `YYYY-MM-DD HH:MM:SS` (a fraction of a second dropped: the contract counts
/// seconds) as `YYYYMMDDHHMMSS`; anything else unchanged, for the rules to refuse.
pub fn datetime(v: &str) -> String {
    let b = v.as_bytes();
    let shape = b.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b' ' || b[10] == b'T')
        && b[13] == b':'
        && b[16] == b':'
        && (b.len() == 19 || (b[19] == b'.' && b[20..].iter().all(u8::is_ascii_digit)));
    if !shape {
        return v.to_owned();
    }
    [
        &v[0..4],
        &v[5..7],
        &v[8..10],
        &v[11..13],
        &v[14..16],
        &v[17..19],
    ]
    .concat()
}

/// The `id` the Java index gives a post: lower-case hex SHA-256 of the key fields
/// concatenated without separators, in its own order (null counts as "").
pub fn java_id(e: &RawEngagement) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in java_digest(e) {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
    out
}

/// Whether `id` is [`java_id`] of `e` (compared without building the hex string).
pub fn java_id_matches(e: &RawEngagement, id: &str) -> bool {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let id = id.as_bytes();
    id.len() == 64
        && java_digest(e)
            .iter()
            .zip(id.chunks_exact(2))
            .all(|(b, h)| h[0] == HEX[usize::from(b >> 4)] && h[1] == HEX[usize::from(b & 15)])
}

fn java_digest(e: &RawEngagement) -> [u8; 32] {
    let mut h = Sha256::new();
    for f in [
        Field::RegisteredResidentIdentification,
        Field::ServiceDomain,
        Field::Categorization,
        Field::LogicalAddress,
        Field::BusinessObjectInstanceIdentifier,
        Field::SourceSystem,
        Field::DataController,
        Field::Owner,
        Field::ClinicalProcessInterestId,
    ] {
        h.update(e.get(f).unwrap_or("").as_bytes());
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_tsv_with_escapes_and_nulls() {
        let v = split("a\\tb\t\\N\tc\\\\d\\ne\t", Dialect::Tsv).unwrap();
        assert_eq!(
            v,
            [
                Some("a\tb".to_owned()),
                None,
                Some("c\\d\ne".to_owned()),
                Some(String::new())
            ]
        );
    }

    #[test]
    fn splits_csv_with_optional_enclosure() {
        let v = split("\"a,b\",\\N,\"say \\\"hi\\\"\",7", Dialect::Csv).unwrap();
        assert_eq!(
            v,
            [
                Some("a,b".to_owned()),
                None,
                Some("say \"hi\"".to_owned()),
                Some("7".to_owned())
            ]
        );
        assert!(split("\"open", Dialect::Csv).is_err());
        assert!(split("\"a\"b", Dialect::Csv).is_err());
    }

    #[test]
    fn datetimes_keep_their_wall_clock() {
        assert_eq!(datetime("2024-03-31 02:30:00"), "20240331023000");
        assert_eq!(datetime("2024-03-31 02:30:00.000000"), "20240331023000");
        assert_eq!(datetime("20240331023000"), "20240331023000");
        assert_eq!(datetime("0000-00-00 00:00:00"), "00000000000000");
        assert_eq!(datetime("2024-03-31"), "2024-03-31");
    }

    #[test]
    fn header_and_declared_layouts() {
        let names: Vec<&str> = COLUMNS.iter().rev().map(|(c, _)| *c).collect();
        let l = Layout::from_header(Dialect::Tsv, &names.join("\t"))
            .unwrap()
            .unwrap();
        assert_eq!(l.columns[0], 12);
        assert!(l.null_word);
        assert!(Layout::from_header(Dialect::Tsv, "0123\tabc").is_none());
        let err = Layout::from_header(Dialect::Tsv, "id\towner")
            .unwrap()
            .unwrap_err();
        assert!(err.contains("registered_resident_id"), "{err}");
    }

    #[test]
    fn java_id_is_sha256_of_the_key_fields_in_its_order() {
        let mut e = RawEngagement::default();
        e.set(Field::RegisteredResidentIdentification, "a");
        e.set(Field::ClinicalProcessInterestId, "b");
        // sha256("ab"), the two non-empty fields first and last in the Java order.
        assert_eq!(
            java_id(&e),
            "fb8e20fc2e4c3f248c60c39bd652f3c1347298bb977b8b4d5903b85055620603"
        );
        assert!(java_id_matches(&e, &java_id(&e)));
        assert!(!java_id_matches(&e, &java_id(&e).to_uppercase()));
        assert!(!java_id_matches(&e, &java_id(&e)[..63]));
        e.set(Field::Owner, "x");
        assert!(!java_id_matches(
            &e,
            "fb8e20fc2e4c3f248c60c39bd652f3c1347298bb977b8b4d5903b85055620603"
        ));
    }
}
