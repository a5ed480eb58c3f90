//! `check`: every record through the server's own rules ([`ei_server::rules`]), every
//! key against every other in the load ([`crate::dedup`]), and the posts counted per
//! source system and data controller. Findings stream out through a callback as they
//! are found, so memory stays bounded whatever the size of the load.

use crate::dedup::{key_hash, DupFinder, Duplicate};
use crate::input::{read_all, InputError, Item, Location};
use ei_server::model::{Field, RawTransaction, Transaction};
use ei_server::operation::WriteOperation;
use ei_server::rules::{validate_transactions, EiError, RulesConfig};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::PathBuf;

/// Why a check could not finish (not a finding about a record).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("duplicate detection failed (temporary files): {0}")]
    Spill(std::io::Error),
    /// The caller's `on_finding` asked to stop (its output is gone).
    #[error("the check was stopped by its caller")]
    Stopped,
}

/// One problem with the load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// A record the server would refuse, or that cannot be read.
    Invalid {
        at: Location,
        field: Option<String>,
        message: String,
    },
    Duplicate(Duplicate),
}

/// What the load holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CheckReport {
    /// Records read (valid or not).
    pub records: u64,
    /// Records the rules accept (the posts that would be sent).
    pub valid: u64,
    pub invalid: u64,
    pub duplicates: u64,
    /// Valid records with deleteFlag true.
    pub deletes: u64,
    /// Valid posts per (sourceSystem, dataController).
    #[serde(serialize_with = "pairs")]
    pub per_source: BTreeMap<(String, String), u64>,
}

fn pairs<S: serde::Serializer>(
    m: &BTreeMap<(String, String), u64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(m.len()))?;
    for ((source, controller), posts) in m {
        let mut row = serde_json::Map::new();
        row.insert(Field::SourceSystem.name().into(), source.as_str().into());
        row.insert(
            Field::DataController.name().into(),
            controller.as_str().into(),
        );
        row.insert("posts".into(), (*posts).into());
        seq.serialize_element(&row)?;
    }
    seq.end()
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.invalid == 0 && self.duplicates == 0
    }
}

/// A record the rules refuse: the server's exact text and the field it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub code: String,
    pub field: Option<String>,
    pub text: String,
}

/// Validates one record exactly as Update would (as transaction #1 of a call).
pub fn validate(rules: &RulesConfig, tx: &RawTransaction) -> Result<Transaction, Invalid> {
    match validate_transactions(rules, WriteOperation::Update, vec![tx.clone()]) {
        Ok(mut v) => Ok(v.pop().expect("one transaction in, one out")),
        Err(e) => Err(invalid(&e)),
    }
}

fn invalid(e: &EiError) -> Invalid {
    let wire = e.wire();
    let field = match e {
        EiError::ReservedLogicalAddress { .. } => Some(Field::LogicalAddress.name().to_owned()),
        EiError::ReservedSourceSystem { .. } => Some(Field::SourceSystem.name().to_owned()),
        EiError::Payload(m) => quoted(m),
        _ => None,
    };
    Invalid {
        code: wire.code.unwrap_or("").to_owned(),
        field,
        text: wire.text,
    }
}

/// The first `"…"` in a message (EI004 texts quote the field name).
fn quoted(m: &str) -> Option<String> {
    let rest = &m[m.find('"')? + 1..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// Checks the whole load, calling `on_finding` for each problem (invalid records in
/// input order, then duplicates); `on_finding` breaking stops the check early with
/// [`CheckError::Stopped`].
pub fn check(
    inputs: &[PathBuf],
    rules: &RulesConfig,
    run_len: usize,
    mut on_finding: impl FnMut(&Finding) -> ControlFlow<()>,
) -> Result<CheckReport, CheckError> {
    let mut report = CheckReport::default();
    let mut dups = DupFinder::with_run_len(run_len);
    for item in read_all(inputs) {
        report.records += 1;
        let (at, tx) = match item? {
            Item::Record { at, tx, .. } => (at, tx),
            Item::Unreadable { at, message, .. } => {
                report.invalid += 1;
                go_on(on_finding(&Finding::Invalid {
                    at,
                    field: None,
                    message,
                }))?;
                continue;
            }
        };
        match validate(rules, &tx) {
            Ok(t) => {
                count_valid(&mut report, &t);
                let key = &t.engagement.key;
                let parts: Vec<&str> = Field::UPDATE_KEY
                    .iter()
                    .filter_map(|f| key.get(*f))
                    .collect();
                dups.add(key_hash(&parts), at).map_err(CheckError::Spill)?;
            }
            Err(bad) => {
                report.invalid += 1;
                go_on(on_finding(&Finding::Invalid {
                    at,
                    field: bad.field,
                    message: bad.text,
                }))?;
            }
        }
    }
    // The merge of the sorted runs goes on after a stop, but reports nothing more.
    let mut stopped = false;
    report.duplicates = dups
        .finish(|d| {
            stopped = stopped || on_finding(&Finding::Duplicate(d)).is_break();
        })
        .map_err(CheckError::Spill)?;
    if stopped {
        return Err(CheckError::Stopped);
    }
    Ok(report)
}

/// `Stopped` when the caller broke.
fn go_on(flow: ControlFlow<()>) -> Result<(), CheckError> {
    match flow {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(CheckError::Stopped),
    }
}

fn count_valid(report: &mut CheckReport, t: &Transaction) {
    report.valid += 1;
    if t.action == ei_server::model::Action::Delete {
        report.deletes += 1;
    }
    let k = &t.engagement.key;
    let pair = (k.source_system().to_owned(), k.data_controller().to_owned());
    *report.per_source.entry(pair).or_default() += 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const HEADER: &str = "registeredResidentIdentification,serviceDomain,categorization,logicalAddress,businessObjectInstanceIdentifier,clinicalProcessInterestId,mostRecentContent,sourceSystem,dataController\n";

    fn file(dir: &std::path::Path, name: &str, rows: &[&str]) -> PathBuf {
        let p = dir.join(name);
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(HEADER.as_bytes()).unwrap();
        for r in rows {
            writeln!(f, "{r}").unwrap();
        }
        p
    }

    #[test]
    fn reports_bad_records_by_line_and_field_and_duplicates_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = file(
            dir.path(),
            "a.csv",
            &[
                "191212121212,dom,NA,LA,NA,NA,20240101120000,SS1,DC1",
                "191212121213,dom,NA,LA,NA,NA,20241301120000,SS1,DC1",
                "191212121214,dom,NA,ei-hsa,NA,NA,,SS1,DC1",
                "191212121215,,NA,LA,NA,NA,,SS1,DC1",
            ],
        );
        let b = file(
            dir.path(),
            "b.csv",
            &[
                "191212121216,dom,NA,LA,NA,NA,,SS2,DC1",
                "191212121212,dom,NA,LA,NA,NA,20250101120000,SS1,DC1",
            ],
        );
        let rules = crate::config::rules_for("ei-hsa", &["ei-hsa".into()]);
        let mut found = Vec::new();
        let report = check(&[a.clone(), b.clone()], &rules, 1, |f| {
            found.push(f.clone());
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(
            (
                report.records,
                report.valid,
                report.invalid,
                report.duplicates
            ),
            (6, 3, 3, 1)
        );
        let at = |file, line| Location { file, line };
        assert_eq!(found[0], Finding::Invalid {
            at: at(0, 3),
            field: Some("mostRecentContent".into()),
            message: "EI004: The payload does not validate, error messge: Field \"mostRecentContent\": 20241301120000 has an invalid month (13)".into(),
        });
        assert!(
            matches!(&found[1], Finding::Invalid { at: l, field: Some(f), message } if *l == at(0, 4) && f == "logicalAddress" && message.starts_with("EI005:"))
        );
        assert!(
            matches!(&found[2], Finding::Invalid { at: l, field: Some(f), .. } if *l == at(0, 5) && f == "serviceDomain")
        );
        assert_eq!(
            found[3],
            Finding::Duplicate(Duplicate {
                first: at(0, 2),
                again: at(1, 3)
            })
        );
        assert_eq!(
            report.per_source.get(&("SS1".into(), "DC1".into())),
            Some(&2)
        );
        assert_eq!(
            report.per_source.get(&("SS2".into(), "DC1".into())),
            Some(&1)
        );
        let mut seen = 0;
        let stopped = check(&[a, b], &rules, 1, |_| {
            seen += 1;
            ControlFlow::Break(())
        });
        assert!(matches!(stopped, Err(CheckError::Stopped)), "{stopped:?}");
        assert_eq!(seen, 1, "nothing is reported after the caller stops");
    }
}
