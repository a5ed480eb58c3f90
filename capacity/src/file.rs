//! The capacity file: the förstudie's capacity tables in TOML, read into a checked
//! [`CapacityPlan`]. Every error names the table, the row (1-based, with its source
//! system when the row has one) and the field, so a planner can find the cell.
//!
//! ```toml
//! [objective]            # optional
//! p99_ms = 1000
//!
//! [[flow]]               # one row of the capacity table
//! source_system = "Journal A"
//! hsa_id = "SE2321000016-15CQ"
//! contract = "Update"    # Update | FindContent | ProcessNotification
//! normal_per_hour = 36000
//! max_per_hour = 108000
//! max_occurs = "weekdays 08-10"
//! posts_per_call = 10
//!
//! [[grundladdning]]      # one row of the grundladdning table
//! source_system = "Journal A"
//! hsa_id = "SE2321000016-15CQ"
//! posts = 5000000
//! concurrent_calls = 2
//! posts_per_call = 1000
//! pause_ms = 5000
//! ```

use ei_server::model::Field;
use ei_server::operation::Operation;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The most transactions one Update or ProcessNotification call may carry.
pub const MAX_POSTS_PER_CALL: u64 = 1000;

/// The contract's default pause between grundladdning calls.
pub const DEFAULT_PAUSE_MS: u64 = 5000;

/// A checked capacity file.
#[derive(Clone, Debug, PartialEq)]
pub struct CapacityPlan {
    pub flows: Vec<FlowRow>,
    pub grundladdning: Vec<GrundRow>,
    /// `[objective] p99_ms`, when the file sets it.
    pub p99_bound: Option<Duration>,
}

/// One row of the capacity table: a source system's expected traffic on one contract.
/// For FindContent the rates count look-ups (one per call).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowRow {
    pub source_system: String,
    pub hsa_id: String,
    pub contract: Operation,
    pub normal_per_hour: f64,
    pub max_per_hour: f64,
    pub max_occurs: Option<String>,
    pub posts_per_call: u64,
}

impl FlowRow {
    /// "Journal A / Update": how reports name the row.
    pub fn label(&self) -> String {
        format!("{} / {}", self.source_system, self.contract.name())
    }

    /// Calls per second for a rate in posts (or look-ups) per hour.
    pub fn calls_per_second(&self, per_hour: f64) -> f64 {
        per_hour / self.posts_per_call as f64 / 3600.0
    }
}

/// One row of the grundladdning table (always the Update contract).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GrundRow {
    pub source_system: String,
    pub hsa_id: String,
    pub posts: u64,
    pub concurrent_calls: u64,
    pub posts_per_call: u64,
    pub pause_ms: u64,
}

/// Why a capacity file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read the capacity file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Invalid { path: PathBuf, source: PlanError },
}

/// What is wrong with the file's contents.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("not valid TOML: {0}")]
    Toml(String),
    #[error("{place}: {problem}")]
    Field { place: String, problem: String },
    #[error("{0}")]
    File(String),
}

/// Reads and checks a capacity file.
pub fn load(path: &Path) -> Result<CapacityPlan, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|source| FileError::Invalid {
        path: path.to_owned(),
        source,
    })
}

/// Checks a capacity file's text.
pub fn parse(text: &str) -> Result<CapacityPlan, PlanError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| PlanError::Toml(e.to_string().trim_end().to_owned()))?;
    for key in table.keys() {
        if !["objective", "flow", "grundladdning"].contains(&key.as_str()) {
            return Err(PlanError::File(format!(
                "unknown table `{key}` (expected `objective`, `[[flow]]` or `[[grundladdning]]`)"
            )));
        }
    }
    let p99_bound = objective(table.get("objective"))?;
    let flows = rows(&table, "flow", flow_row)?;
    let grundladdning = rows(&table, "grundladdning", grund_row)?;
    if flows.is_empty() {
        return Err(PlanError::File(
            "the file has no `[[flow]]` rows: at least one source system's traffic is needed"
                .into(),
        ));
    }
    check_hsa_ids_agree(&flows, &grundladdning)?;
    Ok(CapacityPlan {
        flows,
        grundladdning,
        p99_bound,
    })
}

fn objective(value: Option<&toml::Value>) -> Result<Option<Duration>, PlanError> {
    let Some(value) = value else { return Ok(None) };
    let toml::Value::Table(t) = value else {
        return Err(PlanError::File("`objective` must be a table".into()));
    };
    let mut row = Row::new("objective", None, t);
    let p99 = row.opt_number("p99_ms")?;
    row.finish()?;
    match p99 {
        Some(ms) if ms <= 0.0 => Err(row.err("p99_ms", format!("must be above 0, got {ms}"))),
        Some(ms) => Ok(Some(Duration::from_secs_f64(ms / 1000.0))),
        None => Ok(None),
    }
}

/// Reads the array of tables `name` (absent = no rows) with `read` for each row.
fn rows<T>(
    table: &toml::Table,
    name: &'static str,
    read: fn(&mut Row<'_>) -> Result<T, PlanError>,
) -> Result<Vec<T>, PlanError> {
    let Some(value) = table.get(name) else {
        return Ok(Vec::new());
    };
    let toml::Value::Array(items) = value else {
        return Err(PlanError::File(format!(
            "`{name}` must be an array of tables: write each row as `[[{name}]]`"
        )));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let toml::Value::Table(t) = item else {
            return Err(PlanError::File(format!(
                "{name} row {} is not a table",
                i + 1
            )));
        };
        let mut row = Row::new(name, Some(i + 1), t);
        let value = read(&mut row)?;
        row.finish()?;
        out.push(value);
    }
    Ok(out)
}

fn flow_row(row: &mut Row<'_>) -> Result<FlowRow, PlanError> {
    let source_system = row.text("source_system")?;
    let hsa_id = row.hsa_id("hsa_id")?;
    let contract = row.contract("contract")?;
    let normal_per_hour = row.rate("normal_per_hour")?;
    let max_per_hour = row.rate("max_per_hour")?;
    if max_per_hour < normal_per_hour {
        return Err(row.err(
            "max_per_hour",
            format!("must be at least normal_per_hour ({normal_per_hour}), got {max_per_hour}"),
        ));
    }
    let max_occurs = row.opt_text("max_occurs")?;
    let posts_per_call = match (contract, row.opt_integer("posts_per_call")?) {
        (Operation::FindContent, None | Some(1)) => 1,
        (Operation::FindContent, Some(n)) => {
            return Err(row.err(
                "posts_per_call",
                format!("FindContent is one look-up per call: leave it out or write 1, got {n}"),
            ))
        }
        (_, None) => return Err(row.err("posts_per_call", "is missing".into())),
        (_, Some(n)) => row.posts_per_call("posts_per_call", n)?,
    };
    Ok(FlowRow {
        source_system,
        hsa_id,
        contract,
        normal_per_hour,
        max_per_hour,
        max_occurs,
        posts_per_call,
    })
}

fn grund_row(row: &mut Row<'_>) -> Result<GrundRow, PlanError> {
    let source_system = row.text("source_system")?;
    let hsa_id = row.hsa_id("hsa_id")?;
    if let Some(c) = row.opt_text("contract")? {
        if c != "Update" {
            return Err(row.err(
                "contract",
                format!("a grundladdning uses the Update contract, got \"{c}\""),
            ));
        }
    }
    let posts = row.positive_integer("posts")?;
    let concurrent_calls = row.positive_integer("concurrent_calls")?;
    if concurrent_calls > 64 {
        return Err(row.err(
            "concurrent_calls",
            format!("at most 64 are simulated, got {concurrent_calls}"),
        ));
    }
    let posts_per_call = row.positive_integer("posts_per_call")?;
    let posts_per_call = row.posts_per_call("posts_per_call", posts_per_call)?;
    let pause_ms = row.opt_integer("pause_ms")?.unwrap_or(DEFAULT_PAUSE_MS);
    Ok(GrundRow {
        source_system,
        hsa_id,
        posts,
        concurrent_calls,
        posts_per_call,
        pause_ms,
    })
}

/// One source system name must carry one HSA-id throughout the file.
fn check_hsa_ids_agree(flows: &[FlowRow], grund: &[GrundRow]) -> Result<(), PlanError> {
    let mut seen: Vec<(&str, &str, String)> = Vec::new();
    let all = flows
        .iter()
        .enumerate()
        .map(|(i, r)| (&r.source_system, &r.hsa_id, format!("flow row {}", i + 1)))
        .chain(grund.iter().enumerate().map(|(i, r)| {
            (
                &r.source_system,
                &r.hsa_id,
                format!("grundladdning row {}", i + 1),
            )
        }));
    for (name, id, place) in all {
        match seen.iter().find(|(n, _, _)| *n == name.as_str()) {
            Some((_, other, first)) if *other != id.as_str() => {
                return Err(PlanError::Field {
                    place: format!("{place} ({name}), field `hsa_id`"),
                    problem: format!(
                    "\"{id}\" differs from \"{other}\" given for the same source system in {first}"
                ),
                })
            }
            Some(_) => {}
            None => seen.push((name, id, place)),
        }
    }
    Ok(())
}

/// A row being read: hands out its fields with checks and remembers which it used,
/// so unknown (misspelt) keys are reported.
struct Row<'a> {
    table: &'static str,
    index: Option<usize>,
    who: Option<String>,
    t: &'a toml::Table,
    used: Vec<&'static str>,
}

impl<'a> Row<'a> {
    fn new(table: &'static str, index: Option<usize>, t: &'a toml::Table) -> Row<'a> {
        let who = t
            .get("source_system")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        Row {
            table,
            index,
            who,
            t,
            used: Vec::new(),
        }
    }

    fn place(&self) -> String {
        let mut s = match self.index {
            Some(i) => format!("{} row {i}", self.table),
            None => format!("[{}]", self.table),
        };
        if let Some(who) = &self.who {
            s.push_str(&format!(" ({who})"));
        }
        s
    }

    fn err(&self, field: &str, problem: String) -> PlanError {
        PlanError::Field {
            place: format!("{}, field `{field}`", self.place()),
            problem,
        }
    }

    fn get(&mut self, field: &'static str) -> Option<&'a toml::Value> {
        self.used.push(field);
        self.t.get(field)
    }

    fn opt_text(&mut self, field: &'static str) -> Result<Option<String>, PlanError> {
        match self.get(field) {
            None => Ok(None),
            Some(toml::Value::String(s)) if s.trim().is_empty() => {
                Err(self.err(field, "is empty".into()))
            }
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.err(
                field,
                format!("must be text, got {} {other}", other.type_str()),
            )),
        }
    }

    fn text(&mut self, field: &'static str) -> Result<String, PlanError> {
        self.opt_text(field)?
            .ok_or_else(|| self.err(field, "is missing".into()))
    }

    fn hsa_id(&mut self, field: &'static str) -> Result<String, PlanError> {
        let id = self.text(field)?;
        let max = Field::SourceSystem.max_len();
        if id.trim() != id || id.contains(char::is_whitespace) {
            return Err(self.err(field, format!("\"{id}\" contains white space")));
        }
        if id.chars().count() > max {
            return Err(self.err(field, format!("\"{id}\" is longer than {max} characters")));
        }
        Ok(id)
    }

    fn contract(&mut self, field: &'static str) -> Result<Operation, PlanError> {
        let name = self.text(field)?;
        Operation::from_name(&name).ok_or_else(|| {
            self.err(
                field,
                format!(
                    "\"{name}\" is not a contract: use Update, FindContent or ProcessNotification"
                ),
            )
        })
    }

    fn opt_number(&mut self, field: &'static str) -> Result<Option<f64>, PlanError> {
        match self.get(field) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) => Ok(Some(*n as f64)),
            Some(toml::Value::Float(x)) if x.is_finite() => Ok(Some(*x)),
            Some(other) => Err(self.err(
                field,
                format!("must be a number, got {} {other}", other.type_str()),
            )),
        }
    }

    /// A rate per hour: a number above zero.
    fn rate(&mut self, field: &'static str) -> Result<f64, PlanError> {
        match self.opt_number(field)? {
            None => Err(self.err(field, "is missing".into())),
            Some(x) if x <= 0.0 => Err(self.err(field, format!("must be above 0, got {x}"))),
            Some(x) => Ok(x),
        }
    }

    fn opt_integer(&mut self, field: &'static str) -> Result<Option<u64>, PlanError> {
        match self.get(field) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) if *n >= 0 => Ok(Some(*n as u64)),
            Some(other) => Err(self.err(
                field,
                format!(
                    "must be a whole number ≥ 0, got {} {other}",
                    other.type_str()
                ),
            )),
        }
    }

    fn positive_integer(&mut self, field: &'static str) -> Result<u64, PlanError> {
        match self.opt_integer(field)? {
            None => Err(self.err(field, "is missing".into())),
            Some(0) => Err(self.err(field, "must be at least 1, got 0".into())),
            Some(n) => Ok(n),
        }
    }

    fn posts_per_call(&self, field: &'static str, n: u64) -> Result<u64, PlanError> {
        if (1..=MAX_POSTS_PER_CALL).contains(&n) {
            Ok(n)
        } else {
            Err(self.err(
                field,
                format!(
                    "must be between 1 and {MAX_POSTS_PER_CALL} (the contract's limit), got {n}"
                ),
            ))
        }
    }

    /// Refuses keys no reader asked for (most often a misspelt field name).
    fn finish(&self) -> Result<(), PlanError> {
        match self.t.keys().find(|k| !self.used.contains(&k.as_str())) {
            Some(k) => Err(self.err(
                k,
                format!("unknown field (known: {})", self.used.join(", ")),
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
