//! The domain: the engagement's fields, its nine-field key and the contract's timestamp.
//!
//! Values of [`EngagementKey`], [`Engagement`] and [`Timestamp`] are only built through
//! the contract's rules ([`crate::rules`]) or from a store that only ever held such
//! values, so code that holds one may rely on it being valid.

use std::fmt;

/// Every field of `EngagementType` the index reads or writes, in the contract's table
/// order (which is also the order validation reports problems in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    RegisteredResidentIdentification,
    ServiceDomain,
    Categorization,
    LogicalAddress,
    BusinessObjectInstanceIdentifier,
    ClinicalProcessInterestId,
    SourceSystem,
    DataController,
    Owner,
    MostRecentContent,
    CreationTime,
    UpdateTime,
}

impl Field {
    /// All fields, in table order.
    pub const ALL: [Field; 12] = [
        Field::RegisteredResidentIdentification,
        Field::ServiceDomain,
        Field::Categorization,
        Field::LogicalAddress,
        Field::BusinessObjectInstanceIdentifier,
        Field::ClinicalProcessInterestId,
        Field::SourceSystem,
        Field::DataController,
        Field::Owner,
        Field::MostRecentContent,
        Field::CreationTime,
        Field::UpdateTime,
    ];

    /// The nine fields of the unique key, in key (and store) order: the first nine of
    /// [`Field::ALL`].
    pub const KEY: [Field; 9] = Field::run::<0, 9>();

    /// The key fields a source system sets: all but owner, which the index stamps on
    /// an Update (so they are what Update requires and what tells two posts apart
    /// before the stamp).
    pub const UPDATE_KEY: [Field; 8] = Field::run::<0, 8>();

    /// The key fields FindContent filters on by exact match, after the resident,
    /// domain and categorization its key prefix covers.
    pub const FIND_FILTERS: [Field; 6] = Field::run::<3, 6>();

    /// The three timestamp fields.
    pub const TIMESTAMPS: [Field; 3] = Field::run::<9, 3>();

    /// `N` fields of [`Field::ALL`] from position `FROM` on: the named sets above are
    /// runs of the one ordered list, so they cannot disagree with it.
    const fn run<const FROM: usize, const N: usize>() -> [Field; N] {
        let mut out = [Field::RegisteredResidentIdentification; N];
        let mut i = 0;
        while i < N {
            out[i] = Field::ALL[FROM + i];
            i += 1;
        }
        out
    }

    /// All fields in the order of `EngagementType`'s XSD sequence (how they are
    /// written on the wire).
    pub const XSD_ORDER: [Field; 12] = [
        Field::RegisteredResidentIdentification,
        Field::ServiceDomain,
        Field::Categorization,
        Field::LogicalAddress,
        Field::BusinessObjectInstanceIdentifier,
        Field::ClinicalProcessInterestId,
        Field::MostRecentContent,
        Field::SourceSystem,
        Field::CreationTime,
        Field::UpdateTime,
        Field::DataController,
        Field::Owner,
    ];

    /// The element name on the wire.
    pub const fn name(self) -> &'static str {
        match self {
            Field::RegisteredResidentIdentification => "registeredResidentIdentification",
            Field::ServiceDomain => "serviceDomain",
            Field::Categorization => "categorization",
            Field::LogicalAddress => "logicalAddress",
            Field::BusinessObjectInstanceIdentifier => "businessObjectInstanceIdentifier",
            Field::ClinicalProcessInterestId => "clinicalProcessInterestId",
            Field::SourceSystem => "sourceSystem",
            Field::DataController => "dataController",
            Field::Owner => "owner",
            Field::MostRecentContent => "mostRecentContent",
            Field::CreationTime => "creationTime",
            Field::UpdateTime => "updateTime",
        }
    }

    /// Maximum length in characters (contract §1).
    pub const fn max_len(self) -> usize {
        match self {
            Field::RegisteredResidentIdentification => 32,
            Field::ServiceDomain | Field::Categorization => 255,
            Field::LogicalAddress | Field::SourceSystem | Field::DataController | Field::Owner => {
                64
            }
            Field::BusinessObjectInstanceIdentifier | Field::ClinicalProcessInterestId => 128,
            Field::MostRecentContent | Field::CreationTime | Field::UpdateTime => 14,
        }
    }

    /// Looks a field up by its element name (case-sensitive, as XML is).
    pub fn from_name(name: &str) -> Option<Field> {
        // A match (not a search of ALL): the parser calls this for every element.
        Some(match name {
            "registeredResidentIdentification" => Field::RegisteredResidentIdentification,
            "serviceDomain" => Field::ServiceDomain,
            "categorization" => Field::Categorization,
            "logicalAddress" => Field::LogicalAddress,
            "businessObjectInstanceIdentifier" => Field::BusinessObjectInstanceIdentifier,
            "clinicalProcessInterestId" => Field::ClinicalProcessInterestId,
            "sourceSystem" => Field::SourceSystem,
            "dataController" => Field::DataController,
            "owner" => Field::Owner,
            "mostRecentContent" => Field::MostRecentContent,
            "creationTime" => Field::CreationTime,
            "updateTime" => Field::UpdateTime,
            _ => return None,
        })
    }

    /// Position in [`Field::ALL`], used to index per-field arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Position in [`Field::KEY`]; `None` for the timestamps.
    pub const fn key_index(self) -> Option<usize> {
        // KEY is ALL's first nine fields, in the same order (checked below).
        if self.index() < Field::KEY.len() {
            Some(self.index())
        } else {
            None
        }
    }
}

// `key_index` relies on the key fields leading `Field::ALL` in key order.
const _: () = {
    let mut i = 0;
    while i < Field::KEY.len() {
        assert!(Field::KEY[i] as usize == i);
        i += 1;
    }
};

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A contract timestamp `yyyyMMddHHmmss` (local Swedish time, no zone), held as the
/// 14-digit number so that numeric order is chronological order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(u64);

/// Why a text is not a contract timestamp; the text ends up in an EI004 message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("{0} is not 14 digits (yyyyMMddHHmmss)")]
    Format(String),
    #[error("{value} has an invalid {part} ({got})")]
    OutOfRange {
        value: String,
        part: &'static str,
        got: u32,
    },
}

impl Timestamp {
    /// Builds a timestamp from calendar parts, checking each range.
    pub fn from_parts(
        year: u32,
        month: u32,
        day: u32,
        hour: u32,
        minute: u32,
        second: u32,
    ) -> Result<Timestamp, TimestampError> {
        let n = ((((year as u64 * 100 + month as u64) * 100 + day as u64) * 100 + hour as u64)
            * 100
            + minute as u64)
            * 100
            + second as u64;
        // The text of the value is only built for an error.
        let bad = |part, got| TimestampError::OutOfRange {
            value: format!("{n:014}"),
            part,
            got,
        };
        if !(1000..=9999).contains(&year) {
            return Err(bad("year", year));
        }
        if !(1..=12).contains(&month) {
            return Err(bad("month", month));
        }
        if day < 1 || day > days_in_month(year, month) {
            return Err(bad("day", day));
        }
        if hour > 23 {
            return Err(bad("hour", hour));
        }
        if minute > 59 {
            return Err(bad("minute", minute));
        }
        if second > 59 {
            return Err(bad("second", second));
        }
        Ok(Timestamp(n))
    }

    /// The 14-digit number (for compact storage).
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Rebuilds a timestamp from [`Timestamp::as_u64`], checking it.
    pub fn from_u64(n: u64) -> Result<Timestamp, TimestampError> {
        if n >= 100_000_000_000_000 {
            return Err(TimestampError::Format(n.to_string()));
        }
        let part = |div: u64, modulo: u64| ((n / div) % modulo) as u32;
        Timestamp::from_parts(
            part(10_000_000_000, 10_000),
            part(100_000_000, 100),
            part(1_000_000, 100),
            part(10_000, 100),
            part(100, 100),
            part(1, 100),
        )
    }
}

/// Days in a month of the proleptic Gregorian calendar.
pub const fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

impl TryFrom<&str> for Timestamp {
    type Error = TimestampError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        let b = s.as_bytes();
        if b.len() != 14 || !b.iter().all(u8::is_ascii_digit) {
            return Err(TimestampError::Format(s.to_owned()));
        }
        let num = |from: usize, to: usize| {
            b[from..to]
                .iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
        };
        Timestamp::from_parts(
            num(0, 4),
            num(4, 6),
            num(6, 8),
            num(8, 10),
            num(10, 12),
            num(12, 14),
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:014}", self.0)
    }
}

/// The nine fields that identify an engagement, in key order (see [`Field::KEY`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EngagementKey {
    parts: [String; 9],
}

impl EngagementKey {
    /// Builds a key from its parts in [`Field::KEY`] order. Callers outside the rules
    /// and the store use [`crate::rules`] instead, which checks the parts.
    pub(crate) fn from_parts(parts: [String; 9]) -> EngagementKey {
        EngagementKey { parts }
    }

    /// The parts in [`Field::KEY`] order.
    pub fn parts(&self) -> &[String; 9] {
        &self.parts
    }

    /// One key field's value; `None` for the non-key fields.
    pub fn get(&self, field: Field) -> Option<&str> {
        field.key_index().map(|i| self.parts[i].as_str())
    }

    /// A key field's value (one of [`Field::KEY`]).
    fn part(&self, field: Field) -> &str {
        self.get(field).unwrap_or_default()
    }

    pub fn registered_resident_identification(&self) -> &str {
        self.part(Field::RegisteredResidentIdentification)
    }
    pub fn service_domain(&self) -> &str {
        self.part(Field::ServiceDomain)
    }
    pub fn categorization(&self) -> &str {
        self.part(Field::Categorization)
    }
    pub fn logical_address(&self) -> &str {
        self.part(Field::LogicalAddress)
    }
    pub fn source_system(&self) -> &str {
        self.part(Field::SourceSystem)
    }
    pub fn data_controller(&self) -> &str {
        self.part(Field::DataController)
    }
    pub fn owner(&self) -> &str {
        self.part(Field::Owner)
    }

    /// The same key with another owner (ProcessNotification's owner change, Update's
    /// owner stamping).
    pub fn with_owner(&self, owner: &str) -> EngagementKey {
        let mut parts = self.parts.clone();
        parts[Field::Owner.index()] = owner.to_owned();
        EngagementKey { parts }
    }
}

/// A valid engagement: its key and its three optional timestamps.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Engagement {
    pub key: EngagementKey,
    pub most_recent_content: Option<Timestamp>,
    pub creation_time: Option<Timestamp>,
    pub update_time: Option<Timestamp>,
}

impl Engagement {
    /// A field's value as text (timestamps formatted), `None` when unset.
    pub fn field(&self, field: Field) -> Option<String> {
        match field {
            Field::MostRecentContent => self.most_recent_content.map(|t| t.to_string()),
            Field::CreationTime => self.creation_time.map(|t| t.to_string()),
            Field::UpdateTime => self.update_time.map(|t| t.to_string()),
            key_field => self.key.get(key_field).map(str::to_owned),
        }
    }
}

/// A post borrowed from where it is stored (key parts and timestamps), so a reply
/// can be written without building an [`Engagement`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostRef<'a> {
    /// The key parts in [`Field::KEY`] order.
    pub parts: [std::borrow::Cow<'a, str>; 9],
    pub most_recent_content: Option<Timestamp>,
    pub creation_time: Option<Timestamp>,
    pub update_time: Option<Timestamp>,
}

impl PostRef<'_> {
    /// A key field's value; `None` for the non-key fields.
    pub fn key_field(&self, field: Field) -> Option<&str> {
        field.key_index().map(|i| &*self.parts[i])
    }

    /// A timestamp field's value; `None` when unset or for the key fields.
    pub fn timestamp(&self, field: Field) -> Option<Timestamp> {
        match field {
            Field::MostRecentContent => self.most_recent_content,
            Field::CreationTime => self.creation_time,
            Field::UpdateTime => self.update_time,
            _ => None,
        }
    }

    /// An owned engagement.
    pub fn to_engagement(&self) -> Engagement {
        Engagement {
            key: EngagementKey::from_parts(self.parts.clone().map(|p| p.into_owned())),
            most_recent_content: self.most_recent_content,
            creation_time: self.creation_time,
            update_time: self.update_time,
        }
    }
}

impl Engagement {
    /// The engagement as a [`PostRef`] (borrowing its strings).
    pub fn as_post_ref(&self) -> PostRef<'_> {
        let p = self.key.parts();
        PostRef {
            parts: std::array::from_fn(|i| std::borrow::Cow::Borrowed(p[i].as_str())),
            most_recent_content: self.most_recent_content,
            creation_time: self.creation_time,
            update_time: self.update_time,
        }
    }
}

/// What a transaction asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Insert the post, or update the stored one.
    Save,
    /// Delete the post (`deleteFlag` true); deleting a missing post is not an error.
    Delete,
}

/// One validated `engagementTransaction`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    pub action: Action,
    pub engagement: Engagement,
}

/// An `engagement` exactly as read off the wire: each field as sent, or `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawEngagement {
    pub fields: [Option<String>; 12],
}

impl RawEngagement {
    pub fn get(&self, field: Field) -> Option<&str> {
        self.fields[field.index()].as_deref()
    }
    pub fn set(&mut self, field: Field, value: impl Into<String>) {
        self.fields[field.index()] = Some(value.into());
    }
}

/// An `engagementTransaction` as read off the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawTransaction {
    /// The `deleteFlag` text; `None` when the element is absent (which means false).
    pub delete_flag: Option<String>,
    pub engagement: RawEngagement,
}

/// The FindContent request as read off the wire (the same fields as an engagement,
/// all optional there; the rules decide which are mandatory).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawFindContent {
    pub fields: RawEngagement,
}

/// A validated FindContent query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FindQuery {
    pub registered_resident_identification: String,
    pub service_domain: String,
    pub categorization: Option<String>,
    /// Exact-match filters on the other key fields (logicalAddress … owner).
    pub filters: Vec<(Field, String)>,
    /// `mostRecentContent >= this`; posts without one drop out.
    pub most_recent_content: Option<Timestamp>,
}

impl FindQuery {
    /// Does a stored post pass this query's filters? (The store's prefix scan already
    /// guarantees resident, domain and, when given, categorization.)
    pub fn matches(&self, e: &PostRef<'_>) -> bool {
        self.filters
            .iter()
            .all(|(f, v)| e.key_field(*f) == Some(v.as_str()))
            && match self.most_recent_content {
                None => true,
                Some(min) => e.most_recent_content.is_some_and(|t| t >= min),
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_timestamps() {
        let t = Timestamp::try_from("20150310104108").unwrap();
        assert_eq!(t.to_string(), "20150310104108");
        assert_eq!(t.as_u64(), 20150310104108);
        assert!(Timestamp::try_from("20240229235959").is_ok(), "leap day");
        assert!(
            Timestamp::try_from("20000229000000").is_ok(),
            "400-year leap"
        );
    }

    #[test]
    fn rejects_invalid_timestamps() {
        for (s, why) in [
            ("2015031010410", "20150310104 is not 14 digits"),
            ("201503101041089", "not 14 digits"),
            ("2015031010410a", "not 14 digits"),
            ("20151310104108", "invalid month (13)"),
            ("20150010104108", "invalid month (0)"),
            ("20150230104108", "invalid day (30)"),
            ("20230229000000", "invalid day (29)"),
            ("19000229000000", "invalid day (29)"),
            ("20150431000000", "invalid day (31)"),
            ("20150300000000", "invalid day (0)"),
            ("20150310244108", "invalid hour (24)"),
            ("20150310106008", "invalid minute (60)"),
            ("20150310104160", "invalid second (60)"),
            ("09990310104108", "invalid year (999)"),
        ] {
            let err = Timestamp::try_from(s).unwrap_err().to_string();
            let expect = why.split(" is ").last().unwrap();
            assert!(err.contains(expect), "{s}: {err} should contain {expect}");
        }
    }

    #[test]
    fn timestamp_order_is_chronological() {
        let a = Timestamp::try_from("20151231235959").unwrap();
        let b = Timestamp::try_from("20160101000000").unwrap();
        assert!(a < b);
        assert_eq!(Timestamp::from_u64(a.as_u64()).unwrap(), a);
    }

    #[test]
    fn field_names_round_trip() {
        for f in Field::ALL {
            assert_eq!(Field::from_name(f.name()), Some(f));
        }
        assert_eq!(Field::from_name("deleteFlag"), None);
    }
}
