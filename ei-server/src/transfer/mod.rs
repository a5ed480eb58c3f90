//! Posts as files, for export, import and migration: JSON lines and CSV with the
//! contract's field names (what `ei-server export` writes and `ei-loader` reads), and
//! the Java index's MySQL export ([`mysql`]). Reading turns each line into a raw
//! transaction; [`validate`] applies the contract's rules (those of
//! ProcessNotification: all nine key fields, owner included, and every timestamp
//! checked). The pipelines are [`import`] and [`export`].

pub mod export;
pub mod import;
pub mod mysql;

use crate::model::{Engagement, Field, RawTransaction};
use crate::operation::WriteOperation;
use crate::records;
use crate::rules::{validate_transactions, EiError, RulesConfig};
use std::path::Path;

pub use crate::records::{Column, DELETE_FLAG};

/// The file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object per line, keys = the contract's field names.
    Jsonl,
    /// CSV with a header line of the contract's field names.
    Csv,
    /// The Java index's table, TAB-separated (`SELECT … INTO OUTFILE`,
    /// `mysqldump --tab`, `mysql --batch`).
    MysqlTsv,
    /// The Java index's table as `INTO OUTFILE … FIELDS TERMINATED BY ','
    /// OPTIONALLY ENCLOSED BY '"'`.
    MysqlCsv,
}

impl Format {
    /// The format a file's name and first line suggest: `.jsonl`/`.ndjson`/`.json`
    /// are JSON lines; `.csv` is the contract's CSV when its first line names
    /// `registeredResidentIdentification`, else MySQL CSV; anything else (`.tsv`,
    /// `.txt` from `mysqldump --tab`) is MySQL TSV.
    pub fn detect(path: &Path, first_line: &str) -> Format {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("jsonl" | "ndjson" | "json") => Format::Jsonl,
            Some("csv") if first_line.contains(Field::RegisteredResidentIdentification.name()) => {
                Format::Csv
            }
            Some("csv") => Format::MysqlCsv,
            _ => Format::MysqlTsv,
        }
    }
}

/// A line that cannot be imported: where, which field (when one is to blame), why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub file: u32,
    pub line: u64,
    pub field: Option<String>,
    pub message: String,
    pub kind: FindingKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindingKind {
    /// The line is not imported.
    Invalid,
    /// The line is imported, but something about it is worth a look.
    Warning,
}

/// One JSON line: the contract's field names, string values (null = absent);
/// deleteFlag may be a boolean.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct JsonPost {
    registered_resident_identification: Option<String>,
    service_domain: Option<String>,
    categorization: Option<String>,
    logical_address: Option<String>,
    business_object_instance_identifier: Option<String>,
    clinical_process_interest_id: Option<String>,
    source_system: Option<String>,
    data_controller: Option<String>,
    owner: Option<String>,
    most_recent_content: Option<String>,
    creation_time: Option<String>,
    update_time: Option<String>,
    delete_flag: Option<JsonFlag>,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum JsonFlag {
    Bool(bool),
    Text(String),
}

/// One JSON line as a raw transaction.
pub fn json_record(line: &str) -> Result<RawTransaction, String> {
    let p: JsonPost = serde_json::from_str(line).map_err(|e| format!("not a post: {e}"))?;
    let mut tx = RawTransaction::default();
    let fields = [
        p.registered_resident_identification,
        p.service_domain,
        p.categorization,
        p.logical_address,
        p.business_object_instance_identifier,
        p.clinical_process_interest_id,
        p.source_system,
        p.data_controller,
        p.owner,
        p.most_recent_content,
        p.creation_time,
        p.update_time,
    ];
    for (f, v) in Field::ALL.into_iter().zip(fields) {
        if let Some(v) = v {
            tx.engagement.set(f, v);
        }
    }
    tx.delete_flag = p.delete_flag.map(|f| match f {
        JsonFlag::Bool(b) => b.to_string(),
        JsonFlag::Text(t) => t,
    });
    Ok(tx)
}

/// One CSV record as a raw transaction (an empty cell is an absent field).
pub fn csv_record(
    columns: &[Column],
    record: &csv::StringRecord,
) -> Result<RawTransaction, String> {
    if record.len() != columns.len() {
        return Err(format!(
            "has {} fields, the header has {}",
            record.len(),
            columns.len()
        ));
    }
    Ok(records::transaction(columns, record))
}

/// Why a record is refused: the field to blame (when one is) and the text.
pub type Refusal = (Option<String>, String);

/// Applies the contract's rules to one record to import: those of
/// ProcessNotification (owner mandatory, creationTime and updateTime checked and
/// kept as given). A delete cannot be imported.
pub fn validate(rules: &RulesConfig, tx: RawTransaction) -> Result<Engagement, Refusal> {
    if matches!(tx.delete_flag.as_deref().map(str::trim), Some("true" | "1")) {
        return Err((
            Some(DELETE_FLAG.to_owned()),
            "a delete cannot be imported (import loads posts into an empty index)".to_owned(),
        ));
    }
    match validate_transactions(rules, WriteOperation::ProcessNotification, vec![tx]) {
        Ok(mut v) => Ok(v.pop().expect("one transaction in, one out").engagement),
        Err(e) => Err(refusal(&e)),
    }
}

fn refusal(e: &EiError) -> Refusal {
    let field = match e {
        EiError::ReservedLogicalAddress { .. } => Some(Field::LogicalAddress.name().to_owned()),
        EiError::ReservedSourceSystem { .. } => Some(Field::SourceSystem.name().to_owned()),
        EiError::Payload(m) => quoted(m),
        _ => None,
    };
    (field, e.wire().text)
}

/// The first `"…"` in a message (EI004 texts quote the field name).
fn quoted(m: &str) -> Option<String> {
    let rest = &m[m.find('"')? + 1..];
    Some(rest[..rest.find('"')?].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats() {
        let p = |s: &str| Path::new(s).to_owned();
        assert_eq!(Format::detect(&p("a.jsonl"), "{"), Format::Jsonl);
        assert_eq!(
            Format::detect(
                &p("a.csv"),
                "registeredResidentIdentification,serviceDomain"
            ),
            Format::Csv
        );
        assert_eq!(
            Format::detect(&p("a.csv"), "\"ab12\",\"x\""),
            Format::MysqlCsv
        );
        assert_eq!(
            Format::detect(&p("engagement_index_table.txt"), "ab\tx"),
            Format::MysqlTsv
        );
    }

    #[test]
    fn json_records_and_their_errors() {
        let tx = json_record(
            r#"{"registeredResidentIdentification":"1","owner":"o","creationTime":null,"deleteFlag":true}"#,
        )
        .unwrap();
        assert_eq!(tx.engagement.get(Field::Owner), Some("o"));
        assert_eq!(tx.engagement.get(Field::CreationTime), None);
        assert_eq!(tx.delete_flag.as_deref(), Some("true"));
        assert!(json_record(r#"{"color":"red"}"#)
            .unwrap_err()
            .contains("color"));
        assert!(json_record(r#"{"owner":5}"#).is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let rules = RulesConfig::new("ei", "platform");
        let mut tx = RawTransaction::default();
        for f in Field::KEY {
            tx.engagement.set(f, "x");
        }
        tx.engagement.set(Field::CreationTime, "20241301000000");
        let (field, text) = validate(&rules, tx.clone()).unwrap_err();
        assert_eq!(field.as_deref(), Some("creationTime"));
        assert!(text.contains("invalid month (13)"), "{text}");
        tx.engagement.set(Field::CreationTime, "20241201000000");
        let e = validate(&rules, tx.clone()).unwrap();
        assert_eq!(e.creation_time.unwrap().to_string(), "20241201000000");
        tx.delete_flag = Some("true".into());
        assert_eq!(
            validate(&rules, tx).unwrap_err().0.as_deref(),
            Some("deleteFlag")
        );
    }
}
