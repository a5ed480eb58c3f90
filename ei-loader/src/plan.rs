//! The plan file: the order agreed with the platform operator (who loads what, how
//! fast, when) plus what `run` needs to hold to it (endpoints, retry policy, input
//! checksums). Built from validated options by [`build`], written as TOML, read back by
//! [`load`], and printed as the operator's order form by [`order_form`].
//!
//! (Over 500 lines with its tests because the plan's whole schema is declared and
//! documented here, once.)

use crate::clock::{format_date, format_local, from_local, parse_date, parse_local, to_local};
use crate::config::Profile;
use crate::window::{self, Window, WindowState};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;
use time::{Date, OffsetDateTime, PrimitiveDateTime};

/// The service contract every grundladdning uses.
pub const SERVICE_CONTRACT: &str = "urn:riv:itintegration:engagementindex:Update:1";
/// Days between order and start in production (contract §6).
pub const LEAD_TIME_DAYS: i64 = 14;

/// Why a plan cannot be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("a production load must start at least {LEAD_TIME_DAYS} days after the order date: ordered {order}, start {start} is {days} day(s) later (environment {env})")]
    LeadTime {
        order: String,
        start: String,
        days: i64,
        env: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid plan: {message}")]
    Parse { path: PathBuf, message: String },
}

/// A whole plan, as the TOML file holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub order: Order,
    pub target: Target,
    pub throttle: Throttle,
    pub schedule: Schedule,
    pub retry: Retry,
    pub estimate: Estimate,
    #[serde(rename = "input")]
    pub inputs: Vec<InputFile>,
}

/// The order as the operator's grundladdning form asks for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    pub source_system_name: String,
    pub source_system_hsa_id: String,
    pub service_contract: String,
    /// Posts to load (records that pass the rules).
    pub posts: u64,
    /// Records refused by the rules, accepted into the plan with `--accept-invalid`;
    /// `run` writes them to the reject file without sending them.
    pub invalid_records: u64,
    /// `YYYY-MM-DD`.
    pub order_date: String,
}

/// Where the load goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub environment: String,
    pub production: bool,
    pub update_url: String,
    pub find_content_url: String,
    /// The index's HSA-id: LogicalAddress of every Update.
    pub logical_address: String,
    pub reserved_hsa_ids: Vec<String>,
    /// HTTPS client certificate and trusted roots, when the profile sets them.
    #[serde(default)]
    pub tls: crate::client::TlsFiles,
}

/// How fast: never more than this.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    pub concurrency: u32,
    pub batch_size: u32,
    /// Each worker waits this long after a reply before its next call.
    pub pause_ms: u64,
}

/// When.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// `YYYY-MM-DDTHH:MM`, Swedish local time.
    pub planned_start: String,
    /// Daily windows in Swedish local time; empty = any time after the start.
    pub windows: Vec<Window>,
}

/// What to do when a call fails for reasons other than the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Attempts per call before the run stops (journal kept, resumable); 0 = no limit.
    pub max_attempts: u32,
    pub timeout_ms: u64,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            initial_backoff_ms: 1000,
            max_backoff_ms: 60_000,
            max_attempts: 0,
            timeout_ms: 60_000,
        }
    }
}

impl Retry {
    /// The wait before attempt `attempt + 1` (attempt counts from 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u64
            .checked_shl(attempt.saturating_sub(1).min(32))
            .unwrap_or(u64::MAX);
        Duration::from_millis(
            self.initial_backoff_ms
                .saturating_mul(factor)
                .min(self.max_backoff_ms),
        )
    }
}

/// How long it should take, and how that was worked out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Estimate {
    pub calls: u64,
    pub loading_seconds: u64,
    /// `YYYY-MM-DDTHH:MM` local: when the last call should end, windows included.
    pub finish: String,
    pub assumed_call_ms: u64,
    pub method: String,
}

/// One input file and what it held when planned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputFile {
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
}

/// What `plan` needs besides the load's facts.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    pub profile: Profile,
    pub source_system_name: String,
    pub start: PrimitiveDateTime,
    pub order_date: Date,
    pub throttle: Throttle,
    pub windows: Vec<Window>,
    pub retry: Retry,
    pub assumed_call_ms: u64,
}

/// Facts about the load from `check`.
#[derive(Clone, Debug)]
pub struct LoadFacts {
    pub source_system_hsa_id: String,
    pub posts: u64,
    pub invalid_records: u64,
    pub inputs: Vec<InputFile>,
}

/// Checks the options against the contract and the environment's lead time.
pub fn validate_options(o: &PlanOptions) -> Result<(), PlanError> {
    let t = o.throttle;
    if !(1..=ei_server::rules::MAX_TRANSACTIONS as u32).contains(&t.batch_size) {
        return Err(PlanError::Invalid(format!(
            "posts per call must be 1..=1000, not {}",
            t.batch_size
        )));
    }
    if t.concurrency == 0 {
        return Err(PlanError::Invalid(
            "concurrent calls must be at least 1".into(),
        ));
    }
    if o.profile.production {
        let days = (o.start.date() - o.order_date).whole_days();
        if days < LEAD_TIME_DAYS {
            return Err(PlanError::LeadTime {
                order: format_date(o.order_date),
                start: format_local(o.start),
                days,
                env: o.profile.name.clone(),
            });
        }
    }
    Ok(())
}

/// The plan for a load.
pub fn build(o: &PlanOptions, facts: LoadFacts) -> Result<Plan, PlanError> {
    validate_options(o)?;
    let estimate = estimate(
        facts.posts,
        o.throttle,
        o.assumed_call_ms,
        o.start,
        &o.windows,
    );
    Ok(Plan {
        order: Order {
            source_system_name: o.source_system_name.clone(),
            source_system_hsa_id: facts.source_system_hsa_id,
            service_contract: SERVICE_CONTRACT.into(),
            posts: facts.posts,
            invalid_records: facts.invalid_records,
            order_date: format_date(o.order_date),
        },
        target: Target {
            environment: o.profile.name.clone(),
            production: o.profile.production,
            update_url: o.profile.update_url.clone(),
            find_content_url: o.profile.find_content_url.clone(),
            logical_address: o.profile.logical_address.clone(),
            reserved_hsa_ids: o.profile.reserved_hsa_ids.clone(),
            tls: o.profile.tls.clone(),
        },
        throttle: o.throttle,
        schedule: Schedule {
            planned_start: format_local(o.start),
            windows: o.windows.clone(),
        },
        retry: o.retry,
        estimate,
        inputs: facts.inputs,
    })
}

/// Calls of `batch_size` spread over `concurrency` workers, each call taking the
/// assumed service time then the pause; the resulting loading time is laid into the
/// windows from the planned start.
pub fn estimate(
    posts: u64,
    t: Throttle,
    call_ms: u64,
    start: PrimitiveDateTime,
    windows: &[Window],
) -> Estimate {
    let calls = posts.div_ceil(u64::from(t.batch_size));
    let rounds = calls.div_ceil(u64::from(t.concurrency));
    let loading_ms = rounds * (call_ms + t.pause_ms);
    let finish = finish_time(
        from_local(start),
        Duration::from_millis(loading_ms),
        windows,
    );
    Estimate {
        calls,
        loading_seconds: loading_ms.div_ceil(1000),
        finish: format_local(to_local(finish)),
        assumed_call_ms: call_ms,
        method: format!(
            "ceil({posts} posts / {} per call) = {calls} calls over {} concurrent workers = {rounds} rounds; each round takes the assumed {call_ms} ms per call plus the {} ms pause; laid into the windows from the planned start",
            t.batch_size, t.concurrency, t.pause_ms
        ),
    }
}

/// When `work` of running time is done, starting at `start`, running only in windows.
pub fn finish_time(start: OffsetDateTime, work: Duration, windows: &[Window]) -> OffsetDateTime {
    let (mut now, mut left) = (start, work);
    loop {
        match window::state(windows, now) {
            WindowState::Open { closes_at: None } => return now + left,
            WindowState::Open {
                closes_at: Some(end),
            } => {
                let open: Duration = (end - now).try_into().unwrap_or_default();
                if open >= left {
                    return now + left;
                }
                left -= open;
                now = end;
            }
            WindowState::Closed { opens_at } => now = opens_at,
        }
    }
}

impl Plan {
    /// The instant of the planned start.
    pub fn start(&self) -> Result<OffsetDateTime, PlanError> {
        parse_local(&self.schedule.planned_start)
            .map(from_local)
            .ok_or_else(|| {
                PlanError::Invalid(format!(
                    "bad planned_start {:?}",
                    self.schedule.planned_start
                ))
            })
    }

    pub fn input_paths(&self) -> Vec<PathBuf> {
        self.inputs.iter().map(|i| i.path.clone()).collect()
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a plan serialises")
    }

    pub fn save(&self, path: &Path) -> Result<(), PlanError> {
        std::fs::write(path, self.to_toml()).map_err(|source| PlanError::Io {
            path: path.to_owned(),
            source,
        })
    }
}

/// Reads and checks a plan file.
pub fn load(path: &Path) -> Result<Plan, PlanError> {
    let text = std::fs::read_to_string(path).map_err(|source| PlanError::Io {
        path: path.to_owned(),
        source,
    })?;
    let plan: Plan = toml::from_str(&text).map_err(|e| PlanError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    plan.start()?;
    parse_date(&plan.order.order_date)
        .ok_or_else(|| PlanError::Invalid(format!("bad order_date {:?}", plan.order.order_date)))?;
    let t = plan.throttle;
    if t.concurrency == 0 || !(1..=1000).contains(&t.batch_size) {
        return Err(PlanError::Invalid(
            "the throttle needs concurrency >= 1 and batch_size 1..=1000".into(),
        ));
    }
    Ok(plan)
}

/// An input file's size and SHA-256.
pub fn fingerprint(path: &Path) -> Result<InputFile, PlanError> {
    let io = |source| PlanError::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        hasher.update(&buf[..n]);
    }
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = std::path::absolute(path).map_err(io)?;
    Ok(InputFile {
        path,
        bytes,
        sha256,
    })
}

/// The order as the operator's form wants it (Swedish labels, English in brackets).
pub fn order_form(p: &Plan) -> String {
    let windows = if p.schedule.windows.is_empty() {
        "hela dygnet (any time)".to_owned()
    } else {
        p.schedule
            .windows
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
            + " (svensk tid)"
    };
    let rows = [
        (
            "Källsystem, namn (source system name)",
            p.order.source_system_name.clone(),
        ),
        (
            "Källsystem, HSA-id (source system HSA-id)",
            p.order.source_system_hsa_id.clone(),
        ),
        (
            "Tjänstekontrakt (service contract)",
            format!("{} (Update)", p.order.service_contract),
        ),
        ("Antal indexposter (index posts)", p.order.posts.to_string()),
        (
            "Antal samtidiga anrop (concurrent calls)",
            p.throttle.concurrency.to_string(),
        ),
        (
            "Poster per anrop (posts per call)",
            p.throttle.batch_size.to_string(),
        ),
        (
            "Paus mellan anrop (pause between calls)",
            format!("{} ms", p.throttle.pause_ms),
        ),
        ("Tidsfönster (time windows)", windows),
        (
            "Planerad start (planned start)",
            p.schedule.planned_start.replace('T', " "),
        ),
        ("Beställningsdatum (order date)", p.order.order_date.clone()),
        (
            "Miljö (environment)",
            format!("{} ({})", p.target.environment, p.target.update_url),
        ),
        (
            "Beräknad tid (estimated duration)",
            format!(
                "{} calls, {} s of loading, done about {}",
                p.estimate.calls,
                p.estimate.loading_seconds,
                p.estimate.finish.replace('T', " ")
            ),
        ),
    ];
    let mut out = String::from("Beställning av grundladdning (order for an initial load)\n");
    for (label, value) in rows {
        out.push_str(&format!("  {label:<44} {value}\n"));
    }
    out.push_str(&format!(
        "  Uppskattning (how estimated): {}\n",
        p.estimate.method
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    fn options(production: bool, order: Date, start: PrimitiveDateTime) -> PlanOptions {
        PlanOptions {
            profile: Profile::new("e", "http://127.0.0.1:1", "ei", production),
            source_system_name: "Journal".into(),
            start,
            order_date: order,
            throttle: Throttle {
                concurrency: 1,
                batch_size: 1000,
                pause_ms: 5000,
            },
            windows: vec![],
            retry: Retry::default(),
            assumed_call_ms: 1000,
        }
    }

    #[test]
    fn production_needs_fourteen_days_and_test_does_not() {
        let order = date!(2026 - 12 - 01);
        assert!(validate_options(&options(true, order, datetime!(2026-12-15 00:00))).is_ok());
        let err = validate_options(&options(true, order, datetime!(2026-12-14 23:59))).unwrap_err();
        assert!(matches!(err, PlanError::LeadTime { days: 13, .. }), "{err}");
        assert!(validate_options(&options(false, order, datetime!(2026-12-01 00:00))).is_ok());
    }

    #[test]
    fn batch_size_is_bounded_by_the_contract() {
        let mut o = options(false, date!(2026 - 12 - 01), datetime!(2026-12-01 00:00));
        o.throttle.batch_size = 1001;
        assert!(validate_options(&o).is_err());
    }

    #[test]
    fn estimate_lays_the_work_into_windows() {
        let t = Throttle {
            concurrency: 2,
            batch_size: 1000,
            pause_ms: 5000,
        };
        let w = vec!["22:00-06:00".parse().unwrap()];
        // 10_000_000 posts = 10_000 calls = 5_000 rounds of 6 s = 30_000 s = 8 h 20 min:
        // the 8 h of the first night, then 20 min of the next.
        let e = estimate(10_000_000, t, 1000, datetime!(2026-12-10 22:00), &w);
        assert_eq!((e.calls, e.loading_seconds), (10_000, 30_000));
        assert_eq!(e.finish, "2026-12-11T22:20");
        let e = estimate(1000, t, 1000, datetime!(2026-12-10 12:00), &[]);
        assert_eq!(e.finish, "2026-12-10T12:00");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let r = Retry {
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
            max_attempts: 0,
            timeout_ms: 1,
        };
        let ms: Vec<u128> = (1..=6).map(|a| r.backoff(a).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
    }
}
