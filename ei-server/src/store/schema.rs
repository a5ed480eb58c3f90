//! The storage schema, declared once: column families, key and value byte layouts.
//! The PostgreSQL backend's tables ([`super::pg::schema`], next to this file) reuse
//! these byte encodings for keys, values, outbox entries and dead letters.
//!
//! # Column families
//! | CF            | key                         | value                         |
//! |---------------|-----------------------------|-------------------------------|
//! | `engagements` | [`encode_key`] of the 9 key fields | [`encode_value`] of the 3 timestamps |
//! | `meta`        | ASCII name                  | see below                     |
//! | `outbox`      | sequence number, u64 BE     | [`encode_outbox`]: one notifiable change |
//! | `deadletters` | subscriber ‖ `0x00` ‖ batch id u64 BE | [`encode_dead_letter`]: an undeliverable batch |
//! | `audit`       | [`audit_key`]: resident ‖ time ms u64 BE ‖ sequence u64 BE | one access record, [`encode_audit_value`] (older: JSON) |
//!
//! `outbox` is one log shared by all subscribers, written in the same batch as the
//! posts it describes; each subscriber's position in it (the next sequence number to
//! deliver) is `meta` key `cursor/{logical address}` (u64 BE). Entries below every
//! subscriber's cursor are deleted.
//!
//! `meta` holds `schema_version` (u32 BE, currently [`SCHEMA_VERSION`]) and
//! `engagement_count` (u64 BE, the exact number of posts, updated in the same write
//! batch as the posts).
//!
//! `meta` key `subscriber/{logical address}` holds what the notifier knows of a
//! subscriber beyond its cursor, as JSON written and read by `notify::record`: its
//! last definition (url, filters, source), since when it is absent from the
//! subscriber set, whether and since when it is parked (over its outbox budget), and
//! the gaps it was told of (outbox ranges dropped after its grace period). A
//! subscriber is *known* while it has a cursor; dropping it deletes the cursor and
//! keeps the record (with the gap).
//!
//! Dead-letter ids count up per subscriber (the next id is one past the last stored).
//!
//! Statistics ([`super::stats`]): `meta` keys `stats/{field}/{value}` ([`stats_key`];
//! field = `sourceSystem`, `dataController` or `serviceDomain`, value = its UTF-8
//! bytes) hold the number of posts with that value (u64 BE; absent = 0), updated in
//! the same write batch as the posts; `stats_version` (u32 BE, [`STATS_VERSION`]) says
//! the counters are complete (a directory without it is counted by one scan at open).
//!
//! `meta` key `write_lock` is the maintenance switch ([`encode_write_lock`]): one byte
//! (1 on, 0 off) and the Unix second of the last change (u64 BE). Absent = off.
//!
//! `audit` is the access log ([`super::audit`]): one record per request and resident
//! (caller, correlation id, operation, service domain, posts returned or changed).
//! The resident is encoded like a key field (below), so one resident's records are
//! one contiguous range ordered by time: a lookup for a resident and a period is one
//! range scan. Records older than the retention are deleted by a periodic scan.
//!
//! # Key
//! The nine key fields in the order resident, serviceDomain, categorization,
//! logicalAddress, businessObjectInstanceIdentifier, clinicalProcessInterestId,
//! sourceSystem, dataController, owner. Each field is its UTF-8 bytes with every
//! `0x00` written as `0x00 0xFF`, followed by the terminator `0x00 0x01`. So
//! * byte order of keys = field-by-field order of the values (the terminator sorts
//!   below every continuation), and
//! * `encode(resident) ‖ encode(domain)` is a prefix of exactly the keys of that
//!   resident and domain: FindContent is one prefix scan (extended by the
//!   categorization when the query names one), with no secondary index.
//!
//! # Value
//! One flag byte (bit 0 mostRecentContent, bit 1 creationTime, bit 2 updateTime
//! present), then each present timestamp as the 14-digit number `yyyyMMddHHmmss` in
//! 6 big-endian bytes (it is below 2^47). At most 19 bytes.

use crate::model::{Engagement, EngagementKey, FindQuery, Timestamp};

pub const CF_ENGAGEMENTS: &str = "engagements";
pub const CF_META: &str = "meta";
pub const META_SCHEMA_VERSION: &[u8] = b"schema_version";
pub const META_ENGAGEMENT_COUNT: &[u8] = b"engagement_count";
pub const CF_OUTBOX: &str = "outbox";
pub const CF_DEAD_LETTERS: &str = "deadletters";
pub const CF_AUDIT: &str = "audit";
pub const META_CURSOR_PREFIX: &str = "cursor/";
pub const META_SUBSCRIBER_PREFIX: &str = "subscriber/";
pub const META_WRITE_LOCK: &[u8] = b"write_lock";
pub const META_STATS_VERSION: &[u8] = b"stats_version";
pub const META_STATS_PREFIX: &str = "stats/";
pub const STATS_VERSION: u32 = 1;
pub const SCHEMA_VERSION: u32 = 1;

const ESCAPE: u8 = 0xFF;
const TERMINATOR: u8 = 0x01;

/// A stored byte string that does not decode: the data directory is not ours or is
/// damaged.
#[derive(Debug, thiserror::Error)]
#[error("corrupt record in the store: {0}")]
pub struct Corrupt(pub String);

fn push_part(out: &mut Vec<u8>, part: &str) {
    let bytes = part.as_bytes();
    if !bytes.contains(&0) {
        out.extend_from_slice(bytes);
    } else {
        for &b in bytes {
            out.push(b);
            if b == 0 {
                out.push(ESCAPE);
            }
        }
    }
    out.extend_from_slice(&[0, TERMINATOR]);
}

/// The store key of an engagement key.
pub fn encode_key(key: &EngagementKey) -> Vec<u8> {
    let parts = key.parts();
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 2).sum());
    encode_key_into(&mut out, key);
    out
}

/// Appends the store key of an engagement key to `out`.
pub fn encode_key_into(out: &mut Vec<u8>, key: &EngagementKey) {
    for p in key.parts() {
        push_part(out, p);
    }
}

/// Whether `bytes` is the store key of `key` (compares without encoding).
pub fn key_is(bytes: &[u8], key: &EngagementKey) -> bool {
    let mut rest = bytes;
    for p in key.parts() {
        let p = p.as_bytes();
        if p.contains(&0) {
            // Escaped parts are rare (never valid input): compare the encoding.
            return bytes == encode_key(key).as_slice();
        }
        match rest
            .strip_prefix(p)
            .and_then(|r| r.strip_prefix(&[0, TERMINATOR]))
        {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

/// The prefix every key matching the query starts with.
pub fn query_prefix(q: &FindQuery) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    push_part(&mut out, &q.registered_resident_identification);
    push_part(&mut out, &q.service_domain);
    if let Some(c) = &q.categorization {
        push_part(&mut out, c);
    }
    out
}

/// The smallest key above every key with this prefix (prefixes end in the
/// terminator byte, so incrementing it is enough).
pub fn prefix_upper_bound(prefix: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    if let Some(last) = out.last_mut() {
        *last += 1;
    }
    out
}

/// Decodes a store key.
pub fn decode_key(bytes: &[u8]) -> Result<EngagementKey, Corrupt> {
    let mut parts: [String; 9] = Default::default();
    let mut i = 0;
    for part in parts.iter_mut() {
        let mut buf = Vec::new();
        loop {
            match (bytes.get(i), bytes.get(i + 1)) {
                (Some(0), Some(&TERMINATOR)) => {
                    i += 2;
                    break;
                }
                (Some(0), Some(&ESCAPE)) => {
                    buf.push(0);
                    i += 2;
                }
                (Some(&b), _) if b != 0 => {
                    buf.push(b);
                    i += 1;
                }
                _ => return Err(Corrupt(format!("key ends early: {bytes:?}"))),
            }
        }
        *part = String::from_utf8(buf).map_err(|e| Corrupt(e.to_string()))?;
    }
    if i != bytes.len() {
        return Err(Corrupt(format!("key has trailing bytes: {bytes:?}")));
    }
    Ok(EngagementKey::from_parts(parts))
}

/// The key parts of a store key, borrowed from it unless a part holds an escaped
/// `0x00` (which XML text cannot carry, so in practice never).
pub fn key_parts(bytes: &[u8]) -> Result<[std::borrow::Cow<'_, str>; 9], Corrupt> {
    split_parts(bytes)
}

/// The store key of an engagement key without its first field (the resident): the
/// PostgreSQL backend keeps the resident in a column of its own and this in `key`
/// (see [`super::pg::schema`]).
pub fn encode_key_tail(key: &EngagementKey) -> Vec<u8> {
    let parts = &key.parts()[1..];
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 2).sum());
    for p in parts {
        push_part(&mut out, p);
    }
    out
}

/// [`query_prefix`] without the resident: the prefix of the matching keys' tails.
pub fn query_prefix_tail(q: &FindQuery) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    push_part(&mut out, &q.service_domain);
    if let Some(c) = &q.categorization {
        push_part(&mut out, c);
    }
    out
}

/// The eight key parts after the resident of an [`encode_key_tail`].
pub fn key_tail_parts(bytes: &[u8]) -> Result<[std::borrow::Cow<'_, str>; 8], Corrupt> {
    split_parts(bytes)
}

/// `N` encoded key parts, borrowed unless a part holds an escaped `0x00`.
fn split_parts<const N: usize>(bytes: &[u8]) -> Result<[std::borrow::Cow<'_, str>; N], Corrupt> {
    // The usual key has no escaped byte (its escape, 0xFF, is not UTF-8): one UTF-8
    // check of the whole key, then every 0x00 ends a part.
    if let Some(parts) = std::str::from_utf8(bytes).ok().and_then(split_plain) {
        return Ok(parts);
    }
    split_escaped(bytes)
}

/// [`split_parts`] of a key that is UTF-8 throughout; `None` unless it is exactly `N`
/// terminated parts (then [`split_escaped`] decides, and names what is wrong).
fn split_plain<const N: usize>(text: &str) -> Option<[std::borrow::Cow<'_, str>; N]> {
    let mut parts: [std::borrow::Cow<'_, str>; N] = std::array::from_fn(|_| Default::default());
    let mut rest = text;
    for part in parts.iter_mut() {
        let end = rest.find('\0')?;
        (rest.as_bytes().get(end + 1) == Some(&TERMINATOR)).then_some(())?;
        *part = std::borrow::Cow::Borrowed(&rest[..end]);
        rest = &rest[end + 2..];
    }
    rest.is_empty().then_some(parts)
}

/// [`split_parts`] byte by byte, undoing escapes.
fn split_escaped<const N: usize>(bytes: &[u8]) -> Result<[std::borrow::Cow<'_, str>; N], Corrupt> {
    let mut parts: [std::borrow::Cow<'_, str>; N] = std::array::from_fn(|_| Default::default());
    let mut rest = bytes;
    for part in parts.iter_mut() {
        let end = rest
            .windows(2)
            .position(|w| w == [0, TERMINATOR])
            .ok_or_else(|| Corrupt(format!("key ends early: {bytes:?}")))?;
        let raw = &rest[..end];
        *part = if raw.contains(&0) {
            let mut buf = Vec::with_capacity(raw.len());
            let mut i = 0;
            while i < raw.len() {
                buf.push(raw[i]);
                i += if raw[i] == 0 { 2 } else { 1 };
            }
            std::borrow::Cow::Owned(String::from_utf8(buf).map_err(|e| Corrupt(e.to_string()))?)
        } else {
            std::borrow::Cow::Borrowed(
                std::str::from_utf8(raw).map_err(|e| Corrupt(e.to_string()))?,
            )
        };
        rest = &rest[end + 2..];
    }
    if !rest.is_empty() {
        return Err(Corrupt(format!("key has trailing bytes: {bytes:?}")));
    }
    Ok(parts)
}

/// The stored value of an engagement.
pub fn encode_value(e: &Engagement) -> Vec<u8> {
    let mut out = Vec::with_capacity(19);
    encode_value_into(&mut out, e);
    out
}

/// Appends the stored value of an engagement to `out`.
pub fn encode_value_into(out: &mut Vec<u8>, e: &Engagement) {
    encode_times_into(out, [e.most_recent_content, e.creation_time, e.update_time]);
}

/// Appends the stored value of the three timestamps (mostRecentContent,
/// creationTime, updateTime) to `out`.
pub fn encode_times_into(out: &mut Vec<u8>, times: [Option<Timestamp>; 3]) {
    let flags = out.len();
    out.push(0);
    for (bit, t) in times.iter().enumerate() {
        if let Some(t) = t {
            out[flags] |= 1 << bit;
            out.extend_from_slice(&t.as_u64().to_be_bytes()[2..]);
        }
    }
}

/// Decodes a stored value into an engagement with the given key.
pub fn decode_value(key: EngagementKey, bytes: &[u8]) -> Result<Engagement, Corrupt> {
    let [most_recent_content, creation_time, update_time] = decode_times(bytes)?;
    Ok(Engagement {
        key,
        most_recent_content,
        creation_time,
        update_time,
    })
}

/// The three timestamps of a stored value: mostRecentContent, creationTime,
/// updateTime.
pub fn decode_times(bytes: &[u8]) -> Result<[Option<Timestamp>; 3], Corrupt> {
    let (&flags, mut rest) = bytes
        .split_first()
        .ok_or_else(|| Corrupt("empty value".into()))?;
    let mut times = [None; 3];
    for (bit, slot) in times.iter_mut().enumerate() {
        if flags & (1 << bit) != 0 {
            if rest.len() < 6 {
                return Err(Corrupt(format!("value too short: {bytes:?}")));
            }
            let mut be = [0u8; 8];
            be[2..].copy_from_slice(&rest[..6]);
            rest = &rest[6..];
            let n = u64::from_be_bytes(be);
            *slot = Some(Timestamp::from_u64(n).map_err(|e| Corrupt(e.to_string()))?);
        }
    }
    if !rest.is_empty() || flags > 0b111 {
        return Err(Corrupt(format!("bad value: {bytes:?}")));
    }
    Ok(times)
}

/// The `meta` key of a statistics counter.
pub fn stats_key(field: &str, value: &str) -> Vec<u8> {
    format!("{META_STATS_PREFIX}{field}/{value}").into_bytes()
}

/// Decodes [`stats_key`] into (field, value).
pub fn decode_stats_key(key: &[u8]) -> Result<(String, String), Corrupt> {
    let bad = || Corrupt(format!("bad statistics key {key:?}"));
    let rest = key
        .strip_prefix(META_STATS_PREFIX.as_bytes())
        .ok_or_else(bad)?;
    let slash = rest.iter().position(|b| *b == b'/').ok_or_else(bad)?;
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| bad());
    Ok((text(&rest[..slash])?, text(&rest[slash + 1..])?))
}

/// The write lock as stored: whether writes are refused, and since when (Unix
/// seconds of the last switch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteLock {
    pub enabled: bool,
    pub since_unix: u64,
}

/// `[enabled: 0 | 1][since: u64 BE]`.
pub fn encode_write_lock(l: WriteLock) -> [u8; 9] {
    let mut out = [0u8; 9];
    out[0] = u8::from(l.enabled);
    out[1..].copy_from_slice(&l.since_unix.to_be_bytes());
    out
}

/// Decodes [`encode_write_lock`].
pub fn decode_write_lock(bytes: &[u8]) -> Result<WriteLock, Corrupt> {
    match bytes {
        [flag @ (0 | 1), since @ ..] if since.len() == 8 => Ok(WriteLock {
            enabled: *flag == 1,
            since_unix: u64::from_be_bytes(since.try_into().expect("8 bytes")),
        }),
        _ => Err(Corrupt(format!("bad write_lock: {bytes:?}"))),
    }
}

/// One change in the outbox: the post after it (for a delete, as it was).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    pub action: crate::model::Action,
    pub engagement: Engagement,
    /// When the change was committed, milliseconds since the Unix epoch (0 = not
    /// recorded: entries written before the time was kept). The notifier's lag.
    pub committed_ms: u64,
}

/// `[action: 0 save, 1 delete][key length u32 BE][key][value][committed_ms u64 BE]`;
/// the value's length follows from its flag byte, and the time is absent in entries
/// written before it was kept.
pub fn encode_outbox(e: &OutboxEntry) -> Vec<u8> {
    let key = encode_key(&e.engagement.key);
    let value = encode_value(&e.engagement);
    let mut out = Vec::with_capacity(13 + key.len() + value.len());
    out.push(match e.action {
        crate::model::Action::Save => 0,
        crate::model::Action::Delete => 1,
    });
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(&key);
    out.extend_from_slice(&value);
    out.extend_from_slice(&e.committed_ms.to_be_bytes());
    out
}

/// Decodes [`encode_outbox`]; returns the entry and the bytes it used.
pub fn decode_outbox(bytes: &[u8]) -> Result<OutboxEntry, Corrupt> {
    let bad = || Corrupt(format!("bad outbox entry: {bytes:?}"));
    let action = match bytes.first() {
        Some(0) => crate::model::Action::Save,
        Some(1) => crate::model::Action::Delete,
        _ => return Err(bad()),
    };
    let len = bytes.get(1..5).ok_or_else(bad)?;
    let len = u32::from_be_bytes(len.try_into().map_err(|_| bad())?) as usize;
    let key = bytes.get(5..5 + len).ok_or_else(bad)?;
    let flags = *bytes.get(5 + len).ok_or_else(bad)?;
    let value_len = 1 + 6 * (flags & 0b111).count_ones() as usize;
    let value = bytes.get(5 + len..5 + len + value_len).ok_or_else(bad)?;
    let committed_ms = match bytes.get(5 + len + value_len..).ok_or_else(bad)? {
        [] => 0,
        t => u64::from_be_bytes(t.try_into().map_err(|_| bad())?),
    };
    let engagement = decode_value(decode_key(key)?, value)?;
    Ok(OutboxEntry {
        action,
        engagement,
        committed_ms,
    })
}

/// A dead-letter batch: `[error length u32 BE][error UTF-8]` then each entry as
/// `[length u32 BE][encode_outbox]`.
pub fn encode_dead_letter(error: &str, entries: &[OutboxEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(error.len() as u32).to_be_bytes());
    out.extend_from_slice(error.as_bytes());
    for e in entries {
        let b = encode_outbox(e);
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(&b);
    }
    out
}

/// Decodes [`encode_dead_letter`] into (error, entries).
pub fn decode_dead_letter(bytes: &[u8]) -> Result<(String, Vec<OutboxEntry>), Corrupt> {
    let bad = || Corrupt("bad dead letter".into());
    let mut rest = bytes;
    let take = |rest: &mut &[u8]| -> Result<Vec<u8>, Corrupt> {
        let len = rest.get(..4).ok_or_else(bad)?;
        let len = u32::from_be_bytes(len.try_into().map_err(|_| bad())?) as usize;
        let body = rest.get(4..4 + len).ok_or_else(bad)?.to_vec();
        *rest = &rest[4 + len..];
        Ok(body)
    };
    let error = String::from_utf8(take(&mut rest)?).map_err(|_| bad())?;
    let mut entries = Vec::new();
    while !rest.is_empty() {
        entries.push(decode_outbox(&take(&mut rest)?)?);
    }
    Ok((error, entries))
}

/// The `deadletters` key of a subscriber's batch.
pub fn dead_letter_key(subscriber: &str, batch: u64) -> Vec<u8> {
    let mut k = dead_letter_prefix(subscriber);
    k.extend_from_slice(&batch.to_be_bytes());
    k
}

/// The prefix of all of a subscriber's dead letters.
pub fn dead_letter_prefix(subscriber: &str) -> Vec<u8> {
    let mut k = subscriber.as_bytes().to_vec();
    k.push(0);
    k
}

/// The `meta` key of a subscriber's cursor.
pub fn cursor_key(subscriber: &str) -> Vec<u8> {
    format!("{META_CURSOR_PREFIX}{subscriber}").into_bytes()
}

/// The `meta` key of a subscriber's record.
pub fn subscriber_key(subscriber: &str) -> Vec<u8> {
    format!("{META_SUBSCRIBER_PREFIX}{subscriber}").into_bytes()
}

/// The `audit` key of `resident`'s record at `time_ms` (Unix ms) with sequence `seq`:
/// the resident as a key field (escaped, terminated), then both numbers u64 BE.
pub fn audit_key(resident: &str, time_ms: u64, seq: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(resident.len() + 18);
    for &b in resident.as_bytes() {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
    out.extend_from_slice(&time_ms.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out
}

/// The first byte of an `audit` value in [`encode_audit_value`]'s layout. Values
/// written before it are JSON objects (first byte `{`) and still read.
const AUDIT_VALUE_V1: u8 = 0x01;

/// The `audit` value of a record (the resident and the time are in its key too; the
/// time is kept here as well so a value reads whole): `0x01`, time ms u64 BE, posts
/// u64 BE, then operation, caller, correlation id and service domain, each as a u32
/// BE length and its UTF-8 bytes. About half the size of the JSON it replaced, and
/// written without a serializer on the access log's hot path.
pub fn encode_audit_value(out: &mut Vec<u8>, r: &super::audit::AuditRecord) {
    out.push(AUDIT_VALUE_V1);
    out.extend_from_slice(&r.time_ms.to_be_bytes());
    out.extend_from_slice(&r.posts.to_be_bytes());
    for text in [
        &r.operation,
        &r.caller,
        &r.correlation_id,
        &r.service_domain,
    ] {
        out.extend_from_slice(&(text.len() as u32).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
}

/// Reads an `audit` value of `resident` (the key's): [`encode_audit_value`]'s layout,
/// or the JSON object of a record written before it.
pub fn decode_audit_value(
    value: &[u8],
    resident: &str,
) -> Result<super::audit::AuditRecord, Corrupt> {
    let bad = |what: &str| Corrupt(format!("an audit record does not parse: {what}"));
    match value.first() {
        Some(b'{') => serde_json::from_slice(value).map_err(|e| bad(&e.to_string())),
        Some(&AUDIT_VALUE_V1) => {
            let mut rest = &value[1..];
            let mut number = || -> Result<u64, Corrupt> {
                let (n, tail) = rest
                    .split_first_chunk::<8>()
                    .ok_or_else(|| bad("too short"))?;
                rest = tail;
                Ok(u64::from_be_bytes(*n))
            };
            let (time_ms, posts) = (number()?, number()?);
            let mut text = || -> Result<String, Corrupt> {
                let (n, tail) = rest
                    .split_first_chunk::<4>()
                    .ok_or_else(|| bad("too short"))?;
                let n = u32::from_be_bytes(*n) as usize;
                let bytes = tail.get(..n).ok_or_else(|| bad("a text is cut"))?;
                rest = &tail[n..];
                String::from_utf8(bytes.to_vec()).map_err(|e| bad(&e.to_string()))
            };
            let (operation, caller) = (text()?, text()?);
            let (correlation_id, service_domain) = (text()?, text()?);
            if !rest.is_empty() {
                return Err(bad("trailing bytes"));
            }
            Ok(super::audit::AuditRecord {
                time_ms,
                caller,
                correlation_id,
                operation,
                resident: resident.to_owned(),
                service_domain,
                posts,
            })
        }
        _ => Err(bad("unknown layout")),
    }
}

/// The time (Unix ms) in an [`audit_key`]; `None` when the key is too short.
pub fn audit_key_time(key: &[u8]) -> Option<u64> {
    let n = key.len().checked_sub(16)?;
    Some(u64::from_be_bytes(key[n..n + 8].try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(parts: [&str; 9]) -> EngagementKey {
        EngagementKey::from_parts(parts.map(str::to_owned))
    }

    fn eng(k: EngagementKey, m: Option<u64>, c: Option<u64>, u: Option<u64>) -> Engagement {
        let t = |n: Option<u64>| n.map(|n| Timestamp::from_u64(n).unwrap());
        Engagement {
            key: k,
            most_recent_content: t(m),
            creation_time: t(c),
            update_time: t(u),
        }
    }

    #[test]
    fn key_round_trip_with_nul_and_unicode() {
        let k = key(["1912", "d\0x", "", "å", "\0", "\0\0", "s", "dc", "o"]);
        let bytes = encode_key(&k);
        assert_eq!(decode_key(&bytes).unwrap(), k);
        let parts = key_parts(&bytes).unwrap();
        assert_eq!(parts.map(|p| p.into_owned()), k.parts().clone());
        assert!(key_parts(b"a\0\x01").is_err());
        assert!(matches!(
            key_parts(&encode_key(&key(["a"; 9]))).unwrap()[0],
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn audit_value_round_trip_reads_old_json_and_refuses_damage() {
        let r = crate::store::audit::AuditRecord {
            time_ms: 1_796_156_897_603,
            caller: "SE2321000016-15CQ".into(),
            correlation_id: "ä\0\"x".into(),
            operation: "FindContent".into(),
            resident: "191212121212".into(),
            service_domain: "riv:clinicalprocess:healthcond:description".into(),
            posts: 7,
        };
        let mut v = Vec::new();
        encode_audit_value(&mut v, &r);
        let json = serde_json::to_vec(&r).unwrap();
        assert!(
            v.len() < json.len() * 2 / 3,
            "{} vs JSON {}",
            v.len(),
            json.len()
        );
        assert_eq!(decode_audit_value(&v, "191212121212").unwrap(), r);
        assert_eq!(
            decode_audit_value(&json, "191212121212").unwrap(),
            r,
            "JSON"
        );
        for cut in 1..v.len() {
            assert!(
                decode_audit_value(&v[..cut], "191212121212").is_err(),
                "{cut}"
            );
        }
        let mut longer = v.clone();
        longer.push(0);
        assert!(decode_audit_value(&longer, "191212121212").is_err());
        assert!(decode_audit_value(&[0x02], "191212121212").is_err());
        assert!(decode_audit_value(&[], "191212121212").is_err());
    }

    #[test]
    fn key_is_tells_a_keys_bytes_from_others() {
        let plain = key(["1912", "d", "", "å", "x", "y", "s", "dc", "o"]);
        let nul = key(["1912", "d\0x", "", "å", "\0", "\0\0", "s", "dc", "o"]);
        for k in [&plain, &nul] {
            assert!(key_is(&encode_key(k), k));
        }
        assert!(!key_is(&encode_key(&plain), &nul));
        assert!(!key_is(&encode_key(&nul), &plain));
        let other = key(["1912", "d", "", "å", "x", "y", "s", "dc", "p"]);
        assert!(!key_is(&encode_key(&plain), &other));
        let bytes = encode_key(&plain);
        assert!(!key_is(&bytes[..bytes.len() - 1], &plain));
        assert!(!key_is(&[bytes.as_slice(), b"z"].concat(), &plain));
        assert!(!key_is(b"", &plain));
    }

    #[test]
    fn value_round_trip_and_size() {
        let k = key(["1"; 9]);
        for (m, c, u) in [
            (None, None, None),
            (Some(20150310104108), Some(20200101000000), None),
            (
                Some(99991231235959),
                Some(10000101000000),
                Some(20261122203000),
            ),
        ] {
            let e = eng(k.clone(), m, c, u);
            let v = encode_value(&e);
            assert!(v.len() <= 19);
            assert_eq!(decode_value(k.clone(), &v).unwrap(), e);
        }
    }

    #[test]
    fn outbox_and_dead_letter_round_trip() {
        let e = OutboxEntry {
            action: crate::model::Action::Delete,
            engagement: eng(
                key(["1", "d", "c", "l", "b", "i", "s", "dc", "o"]),
                Some(20200101000000),
                Some(20210101000000),
                None,
            ),
            committed_ms: 1_700_000_000_123,
        };
        assert_eq!(decode_outbox(&encode_outbox(&e)).unwrap(), e);
        let old_format = encode_outbox(&e);
        let old_format = &old_format[..old_format.len() - 8];
        assert_eq!(
            decode_outbox(old_format).unwrap().committed_ms,
            0,
            "entries written before the commit time was kept still decode"
        );
        let d = encode_dead_letter("HTTP 500", &[e.clone(), e.clone()]);
        assert_eq!(
            decode_dead_letter(&d).unwrap(),
            ("HTTP 500".to_owned(), vec![e.clone(), e])
        );
        assert!(decode_outbox(&[2]).is_err());
        assert!(decode_dead_letter(&[0, 0, 0, 9]).is_err());
        assert!(dead_letter_key("a", 1).starts_with(&dead_letter_prefix("a")));
        assert!(!dead_letter_key("ab", 1).starts_with(&dead_letter_prefix("a")));
    }

    #[test]
    fn stats_key_round_trip() {
        let k = stats_key("serviceDomain", "riv:a/b");
        assert_eq!(
            decode_stats_key(&k).unwrap(),
            ("serviceDomain".to_owned(), "riv:a/b".to_owned())
        );
        assert!(decode_stats_key(b"stats/x").is_err());
        assert!(decode_stats_key(b"other/x/y").is_err());
    }

    #[test]
    fn write_lock_round_trip() {
        for l in [
            WriteLock::default(),
            WriteLock {
                enabled: true,
                since_unix: 1_790_000_000,
            },
        ] {
            assert_eq!(decode_write_lock(&encode_write_lock(l)).unwrap(), l);
        }
        assert!(decode_write_lock(&[2; 9]).is_err());
        assert!(decode_write_lock(&[1]).is_err());
    }

    #[test]
    fn corrupt_bytes_are_errors() {
        assert!(decode_key(b"abc").is_err());
        assert!(decode_key(b"").is_err());
        assert!(decode_value(key(["1"; 9]), &[]).is_err());
        assert!(decode_value(key(["1"; 9]), &[1, 0, 0]).is_err());
        assert!(decode_value(key(["1"; 9]), &[8]).is_err());
    }

    #[test]
    fn prefix_selects_exactly_resident_and_domain() {
        let q = FindQuery {
            registered_resident_identification: "1912".into(),
            service_domain: "d".into(),
            categorization: None,
            filters: vec![],
            most_recent_content: None,
        };
        let p = query_prefix(&q);
        let upper = prefix_upper_bound(&p);
        let inside = encode_key(&key(["1912", "d", "c", "l", "b", "i", "s", "dc", "o"]));
        let longer_domain = encode_key(&key(["1912", "d2", "c", "l", "b", "i", "s", "dc", "o"]));
        let longer_resident = encode_key(&key(["19121", "d", "c", "l", "b", "i", "s", "dc", "o"]));
        assert!(inside.starts_with(&p) && inside.as_slice() < upper.as_slice());
        assert!(!longer_domain.starts_with(&p));
        assert!(!longer_resident.starts_with(&p));
    }

    proptest! {
        #[test]
        fn key_order_is_field_order(a in proptest::collection::vec("[\\x00-\\x02a-c]{0,3}", 9),
                                    b in proptest::collection::vec("[\\x00-\\x02a-c]{0,3}", 9)) {
            let ka = EngagementKey::from_parts(a.clone().try_into().unwrap());
            let kb = EngagementKey::from_parts(b.clone().try_into().unwrap());
            prop_assert_eq!(encode_key(&ka).cmp(&encode_key(&kb)), a.cmp(&b));
            prop_assert_eq!(decode_key(&encode_key(&ka)).unwrap(), ka);
        }

        /// Both ways of splitting a key (the whole-key UTF-8 check when nothing is
        /// escaped, byte by byte otherwise) give back its parts, and cut or padded
        /// keys are errors.
        #[test]
        fn key_parts_round_trip(a in proptest::collection::vec("[\\x00-\\x02a-cå]{0,3}", 9),
                                cut in 1usize..4) {
            let k = EngagementKey::from_parts(a.clone().try_into().unwrap());
            let bytes = encode_key(&k);
            let parts = key_parts(&bytes).unwrap().map(|p| p.into_owned());
            prop_assert_eq!(parts.to_vec(), a);
            prop_assert!(key_parts(&bytes[..bytes.len() - cut.min(bytes.len())]).is_err());
            let mut longer = bytes.clone();
            longer.push(b'x');
            prop_assert!(key_parts(&longer).is_err());
        }
    }
}
