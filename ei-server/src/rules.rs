//! The contract's validation rules (contract §2–§4) as plain functions, and the one
//! table ([`EiError::wire`]) that maps every error to its EI code, exact text and
//! SOAP fault code. No I/O here: the server, the loader and the tests all call these.

use crate::model::{
    Action, Engagement, EngagementKey, Field, FindQuery, RawEngagement, RawFindContent,
    RawTransaction, Timestamp, Transaction,
};
use crate::operation::WriteOperation;

/// Most transactions one Update/ProcessNotification may carry.
pub const MAX_TRANSACTIONS: usize = 1000;

/// Most characters of one piece of user input echoed into a fault or a log line.
pub const MAX_ECHO: usize = 200;

/// Whether XML 1.0 allows `c` in a document (production `Char`; Rust's `char` has no
/// surrogates).
pub const fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// User input as it may be echoed into a fault or a log line: at most [`MAX_ECHO`]
/// characters (then `…`), and every control character or character XML 1.0 forbids
/// written as `\u{…}`, so it can neither forge a log line nor break a reply.
pub fn echo(s: &str) -> std::borrow::Cow<'_, str> {
    clip(s, MAX_ECHO)
}

/// [`echo`] with another length cap, counted in characters of the result.
fn clip(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    let plain = |c: char| !c.is_control() && is_xml_char(c);
    if s.len() <= max && s.chars().all(plain) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len().min(max + 8));
    let mut len = 0;
    for c in s.chars() {
        let piece = if plain(c) {
            c.to_string()
        } else {
            c.escape_unicode().to_string()
        };
        len += piece.chars().count();
        if len > max {
            out.push('…');
            break;
        }
        out.push_str(&piece);
    }
    out.into()
}

/// The first character XML 1.0 forbids in `value`, as an EI004 naming `field`.
fn check_xml_chars(field: &dyn std::fmt::Display, value: &str) -> Result<(), EiError> {
    // Fast path (bulk import): printable ASCII, TAB, LF and CR are all allowed.
    if value
        .bytes()
        .all(|b| (b' '..0x80).contains(&b) || matches!(b, b'\t' | b'\n' | b'\r'))
    {
        return Ok(());
    }
    match value.chars().find(|c| !is_xml_char(*c)) {
        None => Ok(()),
        Some(c) => Err(payload(format!(
            "Field \"{field}\" contains a character XML 1.0 does not allow (U+{:04X})",
            c as u32
        ))),
    }
}

/// Every field of an engagement (and the deleteFlag) free of characters XML forbids.
fn check_engagement_chars(e: &RawEngagement, delete_flag: Option<&str>) -> Result<(), EiError> {
    for f in Field::ALL {
        if let Some(v) = e.get(f) {
            check_xml_chars(&f, v)?;
        }
    }
    match delete_flag {
        Some(v) => check_xml_chars(&"deleteFlag", v),
        None => Ok(()),
    }
}
/// What a write refused by the write lock is told (after `EI000: … error message: `);
/// clients recognise a retryable maintenance pause by it.
pub const MAINTENANCE_TEXT: &str =
    "index in maintenance: writes are paused by the operator, retry later";

/// Who an error is the fault of, as SOAP 1.1 says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultCode {
    /// The caller sent something the contract does not allow (`soap:Client`).
    Client,
    /// The index failed (`soap:Server`).
    Server,
}

impl FaultCode {
    pub const fn qname(self) -> &'static str {
        match self {
            FaultCode::Client => "soap:Client",
            FaultCode::Server => "soap:Server",
        }
    }
}

/// Every error a service call can end in.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EiError {
    /// Rule 1: the platform header is missing.
    #[error("Mandatory HTTP header x-skltp-correlation-id is missing")]
    MissingCorrelationId,
    /// EI000: a technical error; the text follows "error message: ".
    #[error("{0}")]
    Technical(String),
    /// EI002: two transactions share a key (1-based indexes).
    #[error("EngagementTransaction #{first} and #{second} have the same key")]
    DuplicateKey { first: usize, second: usize },
    /// EI003: the LogicalAddress header is not this index.
    #[error("Invalid routing: {given} is not {owner}")]
    InvalidRouting { given: String, owner: String },
    /// EI004: the payload does not validate; the text follows "error messge: ".
    #[error("{0}")]
    Payload(String),
    /// EI005: a reserved logicalAddress.
    #[error("reserved logicalAddress {value} in #{index}")]
    ReservedLogicalAddress { index: usize, value: String },
    /// EI006: a reserved sourceSystem.
    #[error("reserved sourceSystem {value} in #{index}")]
    ReservedSourceSystem { index: usize, value: String },
    /// The index failed (storage, shutdown); details are in the log, not on the wire.
    #[error("internal error: {0}")]
    Internal(String),
    /// Too many requests at once (a service's in-flight cap or the writer queue):
    /// nothing was done, the caller should retry later.
    #[error("the index is busy: {0}")]
    Busy(String),
    /// The operator has paused writes (the write lock); the caller retries later.
    #[error("index in maintenance")]
    Maintenance,
    /// The `[access]` table does not let `caller` call `service` (or write posts of
    /// `source_system` through it); nothing was done.
    #[error("{caller} may not call {service}")]
    Forbidden {
        caller: String,
        service: &'static str,
        source_system: Option<String>,
    },
}

/// An error as it goes on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError {
    /// `EI000` … `EI006`, or `None` for the header check.
    pub code: Option<&'static str>,
    pub fault_code: FaultCode,
    /// The complete `faultstring` (or `comment`): `EIxxx: {message}`.
    pub text: String,
}

impl EiError {
    /// The one table from error to wire: code, exact text, fault code.
    ///
    /// User input inside the text is capped and escaped ([`echo`]); a whole message
    /// that embeds input (a parser's or a validator's) is capped at twice that.
    pub fn wire(&self) -> WireError {
        use FaultCode::{Client, Server};
        let input = |s: &str| echo(s).into_owned();
        let long_input = |s: &str| clip(s, 2 * MAX_ECHO).into_owned();
        let (code, fault_code, message) = match self {
            EiError::MissingCorrelationId => (None, Client, self.to_string()),
            EiError::Technical(m) => (
                Some("EI000"),
                Client,
                format!(
                    "A technical error has occurred, error message: {}",
                    long_input(m)
                ),
            ),
            EiError::DuplicateKey { first, second } => (
                Some("EI002"),
                Client,
                format!(
                    "EngagementTransaction #{first} and #{second} have the same key. That is not allowed. See rule for Update-R1 in service contract"
                ),
            ),
            EiError::InvalidRouting {
                given: given_address,
                owner,
            } => (
                Some("EI003"),
                Client,
                format!(
                    "Invalid routing. Logical address is {} but the owner is {owner}. They must be the same. See rule for Update-R7 in service contract",
                    input(given_address)
                ),
            ),
            EiError::Payload(m) => (
                Some("EI004"),
                Client,
                format!(
                    "The payload does not validate, error messge: {}",
                    long_input(m)
                ),
            ),
            EiError::ReservedLogicalAddress { index, value } => (
                Some("EI005"),
                Client,
                format!(
                    "The logicalAddress in EngagementTransaction #{index} is reserved and not allowed, hsa-id: {}",
                    input(value)
                ),
            ),
            EiError::ReservedSourceSystem { index, value } => (
                Some("EI006"),
                Client,
                format!(
                    "The sourceSystem in EngagementTransaction #{index} is reserved and not allowed, hsa-id: {}",
                    input(value)
                ),
            ),
            EiError::Busy(_) => (
                Some("EI000"),
                Server,
                "A technical error has occurred, error message: the index is busy, retry later; the request was not applied".to_owned(),
            ),
            EiError::Maintenance => (
                Some("EI000"),
                Server,
                format!("A technical error has occurred, error message: {MAINTENANCE_TEXT}"),
            ),
            EiError::Forbidden {
                caller,
                service,
                source_system: None,
            } => (
                Some("EI000"),
                Client,
                format!(
                    "A technical error has occurred, error message: Caller {} is not authorized to call {service}",
                    input(caller)
                ),
            ),
            EiError::Forbidden {
                caller,
                service,
                source_system: Some(source),
            } => (
                Some("EI000"),
                Client,
                format!(
                    "A technical error has occurred, error message: Caller {} is not authorized to write posts of sourceSystem {} through {service}",
                    input(caller),
                    input(source)
                ),
            ),
            EiError::Internal(_) => (
                Some("EI000"),
                Server,
                "A technical error has occurred, error message: the index could not complete the request; it was not applied".to_owned(),
            ),
        };
        let text = match code {
            Some(code) => format!("{code}: {message}"),
            None => message,
        };
        WireError {
            code,
            fault_code,
            text,
        }
    }

    /// EI002–EI006: the logical errors that may be answered as `ResultCode=ERROR`.
    pub fn is_logical(&self) -> bool {
        matches!(
            self,
            EiError::DuplicateKey { .. }
                | EiError::InvalidRouting { .. }
                | EiError::Payload(_)
                | EiError::ReservedLogicalAddress { .. }
                | EiError::ReservedSourceSystem { .. }
        )
    }
}

/// The parts of the configuration the rules need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesConfig {
    /// The index's own HSA-id: stamped as owner, checked against LogicalAddress.
    pub own_hsa_id: String,
    /// Another id the index also answers to in the LogicalAddress header.
    pub alternative_hsa_id: Option<String>,
    /// HSA-ids no logicalAddress or sourceSystem may carry.
    pub reserved_hsa_ids: Vec<String>,
    /// Whether Update checks the LogicalAddress header (rule 2).
    pub check_logical_address: bool,
}

impl RulesConfig {
    /// A configuration with the given own id, its reserved list = own + platform id.
    pub fn new(own_hsa_id: &str, platform_hsa_id: &str) -> RulesConfig {
        RulesConfig {
            own_hsa_id: own_hsa_id.to_owned(),
            alternative_hsa_id: None,
            reserved_hsa_ids: vec![own_hsa_id.to_owned(), platform_hsa_id.to_owned()],
            check_logical_address: true,
        }
    }
}

/// Rule 1, for all three services.
pub fn check_correlation_id(header: Option<&str>) -> Result<(), EiError> {
    match header {
        Some(v) if !v.trim().is_empty() => Ok(()),
        _ => Err(EiError::MissingCorrelationId),
    }
}

/// Rules 2–4 for Update: the routing check, the count, then every transaction in
/// document order. The owner of every transaction is stamped with the index's id.
pub fn validate_update(
    cfg: &RulesConfig,
    logical_address: Option<&str>,
    transactions: Vec<RawTransaction>,
) -> Result<Vec<Transaction>, EiError> {
    if cfg.check_logical_address {
        check_routing(cfg, logical_address)?;
    }
    validate_transactions(cfg, WriteOperation::Update, transactions)
}

/// Rules 3–4 for ProcessNotification (no routing check, owner mandatory), then loop
/// protection: transactions owned by this index are dropped (pR4).
pub fn validate_notification(
    cfg: &RulesConfig,
    transactions: Vec<RawTransaction>,
) -> Result<Vec<Transaction>, EiError> {
    let mut valid = validate_transactions(cfg, WriteOperation::ProcessNotification, transactions)?;
    valid.retain(|t| t.engagement.key.owner() != cfg.own_hsa_id);
    Ok(valid)
}

fn check_routing(cfg: &RulesConfig, given: Option<&str>) -> Result<(), EiError> {
    let ok =
        given.is_some_and(|g| g == cfg.own_hsa_id || cfg.alternative_hsa_id.as_deref() == Some(g));
    if ok {
        return Ok(());
    }
    Err(EiError::InvalidRouting {
        given: given.unwrap_or("missing").to_owned(),
        owner: cfg.own_hsa_id.clone(),
    })
}

fn check_count(n: usize) -> Result<(), EiError> {
    if n > MAX_TRANSACTIONS {
        return Err(EiError::Technical(format!(
            "The request contains more than {MAX_TRANSACTIONS} engagements. Maximum number of engagements per request is {MAX_TRANSACTIONS}."
        )));
    }
    if n < 1 {
        return Err(EiError::Technical(
            "The request contains less than 1 engagements. Minium number of engagements per request is 1.".to_owned(),
        ));
    }
    Ok(())
}

/// Rules 3 and 4a–4f, stopping at the first error.
pub fn validate_transactions(
    cfg: &RulesConfig,
    service: WriteOperation,
    mut transactions: Vec<RawTransaction>,
) -> Result<Vec<Transaction>, EiError> {
    check_count(transactions.len())?;
    if service == WriteOperation::Update {
        for t in &mut transactions {
            t.engagement.set(Field::Owner, cfg.own_hsa_id.as_str());
        }
    }
    // Rule 4a compares raw keys: index of the first transaction with each key.
    let mut seen: std::collections::HashMap<[&str; 9], usize> =
        std::collections::HashMap::with_capacity(transactions.len());
    for (i, t) in transactions.iter().enumerate() {
        let key = Field::KEY.map(|f| t.engagement.get(f).unwrap_or(""));
        if let Some(first) = seen.insert(key, i + 1) {
            return Err(EiError::DuplicateKey {
                first,
                second: i + 1,
            });
        }
        check_transaction(cfg, service, i + 1, t)?;
    }
    drop(seen);
    transactions
        .into_iter()
        .map(|t| build_transaction(service, t))
        .collect()
}

/// Rules 4b–4f for transaction number `index` (1-based).
fn check_transaction(
    cfg: &RulesConfig,
    service: WriteOperation,
    index: usize,
    t: &RawTransaction,
) -> Result<(), EiError> {
    let e = &t.engagement;
    check_engagement_chars(e, t.delete_flag.as_deref())?;
    for f in Field::KEY {
        if let Some(v) = e.get(f) {
            if v.trim() != v {
                return Err(payload(format!(
                    "mandatory field \"{f}\" contains white space in beginning or end"
                )));
            }
        }
    }
    let is_reserved = |v: &&str| cfg.reserved_hsa_ids.iter().any(|r| r == v);
    if let Some(v) = e.get(Field::LogicalAddress).filter(is_reserved) {
        return Err(EiError::ReservedLogicalAddress {
            index,
            value: v.to_owned(),
        });
    }
    if let Some(v) = e.get(Field::SourceSystem).filter(is_reserved) {
        return Err(EiError::ReservedSourceSystem {
            index,
            value: v.to_owned(),
        });
    }
    check_fields(e, mandatory_fields(service), timestamp_fields(service))?;
    check_delete_flag(t.delete_flag.as_deref())
}

/// The mandatory fields (rule 4d): the key fields, owner only for ProcessNotification.
fn mandatory_fields(service: WriteOperation) -> &'static [Field] {
    match service {
        WriteOperation::Update => &Field::UPDATE_KEY,
        WriteOperation::ProcessNotification => &Field::KEY,
    }
}

/// The timestamps rule 4f parses: Update ignores creationTime/updateTime (the index
/// sets them), so only mostRecentContent is checked there.
fn timestamp_fields(service: WriteOperation) -> &'static [Field] {
    match service {
        WriteOperation::Update => &[Field::MostRecentContent],
        WriteOperation::ProcessNotification => &Field::TIMESTAMPS,
    }
}

/// Rules 4d (missing), 4e (too long) and 4f (bad timestamp), each over all fields
/// in table order before the next.
fn check_fields(
    e: &RawEngagement,
    mandatory: &[Field],
    timestamps: &[Field],
) -> Result<(), EiError> {
    if let Some(f) = mandatory
        .iter()
        .find(|f| e.get(**f).is_none_or(str::is_empty))
    {
        return Err(payload(format!("mandatory field \"{f}\" is missing")));
    }
    let checked = Field::KEY.iter().chain(timestamps);
    if let Some(f) = checked
        .into_iter()
        .find(|f| e.get(**f).is_some_and(|v| v.chars().count() > f.max_len()))
    {
        return Err(payload(format!("Field \"{f}\" is to long")));
    }
    for f in timestamps {
        if let Some(v) = e.get(*f).filter(|v| !v.is_empty()) {
            Timestamp::try_from(v).map_err(|why| payload(format!("Field \"{f}\": {why}")))?;
        }
    }
    Ok(())
}

/// `deleteFlag` is an `xs:boolean`; absent means false.
fn parse_delete_flag(flag: Option<&str>) -> Result<Action, EiError> {
    match flag.map(str::trim) {
        None | Some("false") | Some("0") => Ok(Action::Save),
        Some("true") | Some("1") => Ok(Action::Delete),
        Some(other) => Err(payload(format!(
            "Field \"deleteFlag\": {other} is not a boolean (true, false, 1 or 0)"
        ))),
    }
}

fn check_delete_flag(flag: Option<&str>) -> Result<(), EiError> {
    parse_delete_flag(flag).map(|_| ())
}

fn payload(message: String) -> EiError {
    EiError::Payload(message)
}

/// Turns a checked raw transaction into a valid one.
fn build_transaction(service: WriteOperation, t: RawTransaction) -> Result<Transaction, EiError> {
    let action = parse_delete_flag(t.delete_flag.as_deref())?;
    let mut fields = t.engagement.fields;
    let mut take = |f: Field| fields[f.index()].take().unwrap_or_default();
    let key = EngagementKey::from_parts(Field::KEY.map(&mut take));
    let mut ts = |f: Field| -> Result<Option<Timestamp>, EiError> {
        match fields[f.index()].take().filter(|v| !v.is_empty()) {
            Some(v) => Timestamp::try_from(v.as_str())
                .map(Some)
                .map_err(|why| payload(format!("Field \"{f}\": {why}"))),
            None => Ok(None),
        }
    };
    let most_recent_content = ts(Field::MostRecentContent)?;
    let (creation_time, update_time) = match service {
        WriteOperation::Update => (None, None),
        WriteOperation::ProcessNotification => (ts(Field::CreationTime)?, ts(Field::UpdateTime)?),
    };
    Ok(Transaction {
        action,
        engagement: Engagement {
            key,
            most_recent_content,
            creation_time,
            update_time,
        },
    })
}

/// FindContent's rules: resident and domain mandatory (EI000), the rest optional
/// exact-match filters, mostRecentContent a `>=` bound.
pub fn validate_find(raw: RawFindContent) -> Result<FindQuery, EiError> {
    check_engagement_chars(&raw.fields, None)?;
    let mut f = raw.fields.fields;
    let mut take = |field: Field| f[field.index()].take().filter(|v| !v.is_empty());
    let missing = |field: Field| EiError::Technical(format!("{field} is mandatory but missing"));
    let resident = take(Field::RegisteredResidentIdentification)
        .ok_or_else(|| missing(Field::RegisteredResidentIdentification))?;
    let domain = take(Field::ServiceDomain).ok_or_else(|| missing(Field::ServiceDomain))?;
    let categorization = take(Field::Categorization);
    let filters = Field::FIND_FILTERS
        .into_iter()
        .filter_map(|field| take(field).map(|v| (field, v)))
        .collect();
    let most_recent_content = match take(Field::MostRecentContent) {
        Some(v) => Some(
            Timestamp::try_from(v.as_str())
                .map_err(|why| payload(format!("Field \"{}\": {why}", Field::MostRecentContent)))?,
        ),
        None => None,
    };
    Ok(FindQuery {
        registered_resident_identification: resident,
        service_domain: domain,
        categorization,
        filters,
        most_recent_content,
    })
}

/// Builds a valid key from parts already known to be valid (the store's own data,
/// test fixtures). Checks lengths and whitespace so misuse cannot smuggle in a key
/// the service would have refused.
pub fn key_from_parts(parts: [String; 9]) -> Result<EngagementKey, EiError> {
    for (f, v) in Field::KEY.iter().zip(&parts) {
        if v.is_empty() || v.trim() != v || v.chars().count() > f.max_len() {
            return Err(payload(format!("mandatory field \"{f}\" is not valid")));
        }
    }
    Ok(EngagementKey::from_parts(parts))
}

#[cfg(test)]
mod tests;
