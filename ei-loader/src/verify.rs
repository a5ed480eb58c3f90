//! `verify`: the care provider's spot check (stickprov). Picks N records at random from
//! the plan's inputs (reservoir sampling: one pass, memory for N records), looks each
//! up with FindContent by its full key and reports any that are missing or differ.
//! A record with deleteFlag true is expected to be absent.

use crate::check::validate;
use crate::client::{CallError, EiClient};
use crate::config::rules_for;
use crate::input::{key_query, read_all, InputError, Item, Location};
use crate::plan::Plan;
use ei_server::model::{Action, Field, RawEngagement, Transaction};
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Why a verification could not be done.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("FindContent failed: {0}")]
    Call(#[from] CallError),
}

/// A sampled record the index does not hold as loaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub file: PathBuf,
    pub line: u64,
    pub resident: String,
    pub problem: String,
}

/// The spot check's result.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    pub sampled: usize,
    pub matched: usize,
    pub mismatches: Vec<Mismatch>,
}

/// Picks up to `n` records uniformly at random (seeded) among those that pass the
/// rules and are not in `rejected` (sequence numbers the run rejected).
pub fn sample(
    plan: &Plan,
    n: usize,
    seed: u64,
    rejected: &HashSet<u64>,
) -> Result<Vec<(Location, Transaction)>, InputError> {
    let rules = rules_for(&plan.target.logical_address, &plan.target.reserved_hsa_ids);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut chosen: Vec<(Location, Transaction)> = Vec::with_capacity(n);
    let mut seen = 0usize;
    for item in read_all(&plan.input_paths()) {
        let Item::Record { seq, at, tx } = item? else {
            continue;
        };
        if rejected.contains(&seq) {
            continue;
        }
        let Ok(t) = validate(&rules, &tx) else {
            continue;
        };
        seen += 1;
        if chosen.len() < n {
            chosen.push((at, t));
        } else {
            let j = rng.usize(..seen);
            if j < n {
                chosen[j] = (at, t);
            }
        }
    }
    Ok(chosen)
}

/// The records a plan's run rejected (from its journal): not expected in the index.
pub fn rejected(plan_path: &Path) -> Result<HashSet<u64>, crate::journal::JournalError> {
    let (events, _) = crate::journal::read_events(&crate::journal::path_for(plan_path))?;
    Ok(events
        .into_iter()
        .filter_map(|e| match e {
            crate::journal::Event::Reject { seq, .. } => Some(seq),
            _ => None,
        })
        .collect())
}

/// Looks every sampled record up and compares.
pub async fn verify(
    plan: &Plan,
    client: &EiClient,
    picked: &[(Location, Transaction)],
) -> Result<VerifyReport, VerifyError> {
    let mut report = VerifyReport {
        sampled: picked.len(),
        ..VerifyReport::default()
    };
    for (i, (at, t)) in picked.iter().enumerate() {
        let mut raw = RawEngagement::default();
        for f in Field::KEY {
            raw.set(f, t.engagement.key.get(f).unwrap_or_default());
        }
        let mut query = key_query(&raw);
        query.set(Field::Owner, plan.target.logical_address.as_str());
        let found = client
            .find_content(&query, &format!("ei-loader-verify-{i}"))
            .await?;
        match compare(t, &found) {
            None => report.matched += 1,
            Some(problem) => report.mismatches.push(Mismatch {
                file: plan
                    .inputs
                    .get(at.file)
                    .map(|f| f.path.clone())
                    .unwrap_or_default(),
                line: at.line,
                resident: t
                    .engagement
                    .key
                    .registered_resident_identification()
                    .to_owned(),
                problem,
            }),
        }
    }
    Ok(report)
}

/// What is wrong with the index's answer for this record, if anything.
pub fn compare(t: &Transaction, found: &[RawEngagement]) -> Option<String> {
    match (t.action, found) {
        (Action::Delete, []) => None,
        (Action::Delete, _) => Some("deleted in the input but present in the index".into()),
        (Action::Save, []) => Some("missing from the index".into()),
        (Action::Save, [e]) => {
            let want = t.engagement.most_recent_content.map(|m| m.to_string());
            let got = e.get(Field::MostRecentContent).map(str::to_owned);
            (want != got).then(|| {
                format!(
                    "{} differs: input {}, index {}",
                    Field::MostRecentContent,
                    want.as_deref().unwrap_or("none"),
                    got.as_deref().unwrap_or("none")
                )
            })
        }
        (Action::Save, many) => Some(format!("{} posts in the index for one key", many.len())),
    }
}
