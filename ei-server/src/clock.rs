//! "Now" as the contract wants it: local Swedish time (Europe/Stockholm), second
//! precision, no zone. Sweden follows the EU rule since 1996: CET (UTC+1), and CEST
//! (UTC+2) from 01:00 UTC on the last Sunday of March to 01:00 UTC on the last Sunday
//! of October. Implemented here rather than through a time-zone database so the
//! binary needs no tzdata and the rule is unit-tested.

use crate::model::Timestamp;
use std::time::{SystemTime, UNIX_EPOCH};
use time::{Date, Month, OffsetDateTime};

/// The current time in Sweden.
pub fn now() -> Timestamp {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    swedish_time(secs)
}

/// Swedish local time of a Unix time in seconds.
pub fn swedish_time(unix_secs: i64) -> Timestamp {
    let utc = OffsetDateTime::from_unix_timestamp(unix_secs).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let offset_hours = if is_summer_time(utc) { 2 } else { 1 };
    let local = utc + time::Duration::hours(offset_hours);
    Timestamp::from_parts(
        local.year() as u32,
        u8::from(local.month()) as u32,
        local.day() as u32,
        local.hour() as u32,
        local.minute() as u32,
        local.second() as u32,
    )
    .expect("a real date is a valid timestamp")
}

/// Is this UTC instant inside EU summer time?
fn is_summer_time(utc: OffsetDateTime) -> bool {
    let year = utc.year();
    let start = last_sunday(year, Month::March)
        .with_hms(1, 0, 0)
        .expect("01:00 exists");
    let end = last_sunday(year, Month::October)
        .with_hms(1, 0, 0)
        .expect("01:00 exists");
    let t = time::PrimitiveDateTime::new(utc.date(), utc.time());
    t >= start && t < end
}

fn last_sunday(year: i32, month: Month) -> Date {
    let last = Date::from_calendar_date(year, month, time::util::days_in_month(month, year))
        .expect("last day of month exists");
    let back = last.weekday().number_days_from_sunday();
    last - time::Duration::days(i64::from(back))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        // RFC 3339 UTC instant to Unix seconds.
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp()
    }

    #[test]
    fn winter_is_utc_plus_one() {
        assert_eq!(
            swedish_time(at("2026-01-15T12:00:00Z")).to_string(),
            "20260115130000"
        );
        assert_eq!(
            swedish_time(at("2026-12-31T23:30:00Z")).to_string(),
            "20270101003000"
        );
    }

    #[test]
    fn summer_is_utc_plus_two() {
        assert_eq!(
            swedish_time(at("2026-07-01T12:00:00Z")).to_string(),
            "20260701140000"
        );
    }

    #[test]
    fn switches_at_one_utc_on_the_last_sundays() {
        // 2026: last Sunday of March is the 29th, of October the 25th.
        assert_eq!(
            swedish_time(at("2026-03-29T00:59:59Z")).to_string(),
            "20260329015959"
        );
        assert_eq!(
            swedish_time(at("2026-03-29T01:00:00Z")).to_string(),
            "20260329030000"
        );
        assert_eq!(
            swedish_time(at("2026-10-25T00:59:59Z")).to_string(),
            "20261025025959"
        );
        assert_eq!(
            swedish_time(at("2026-10-25T01:00:00Z")).to_string(),
            "20261025020000"
        );
    }

    #[test]
    fn now_is_a_plausible_timestamp() {
        let n = now().to_string();
        assert!(n.starts_with("20"), "{n}");
    }
}
