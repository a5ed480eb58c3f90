//! Time for the loader: an injectable [`Clock`] (so the window and lead-time rules are
//! testable without waiting) and conversions between instants and Swedish local time,
//! which is what operators write windows and start times in.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// A source of "now" and of waiting. Every wait the run does (planned start, windows,
/// pauses, backoff) goes through it.
pub trait Clock: Send + Sync {
    /// The current instant (UTC).
    fn now(&self) -> OffsetDateTime;
    /// Waits `d`.
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The machine's clock and tokio's timer.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock for tests: time stands still until someone sleeps, and sleeping moves it
/// forward at once.
#[derive(Debug)]
pub struct TestClock {
    now: Mutex<OffsetDateTime>,
}

impl TestClock {
    pub fn new(now: OffsetDateTime) -> TestClock {
        TestClock {
            now: Mutex::new(now),
        }
    }

    /// A test clock at a Swedish local time.
    pub fn at_local(local: PrimitiveDateTime) -> TestClock {
        TestClock::new(from_local(local))
    }

    pub fn advance(&self, d: Duration) {
        let mut now = self.now.lock().expect("clock lock");
        *now += d;
    }
}

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.now.lock().expect("clock lock")
    }
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.advance(d);
        Box::pin(tokio::task::yield_now())
    }
}

/// Swedish local time of an instant (the index's own EU summer-time rule).
pub fn to_local(utc: OffsetDateTime) -> PrimitiveDateTime {
    let n = ei_server::clock::swedish_time(utc.unix_timestamp()).as_u64();
    let part = |div: u64, modulo: u64| ((n / div) % modulo) as u8;
    let month = Month::try_from(part(100_000_000, 100)).expect("valid month");
    let date = Date::from_calendar_date((n / 10_000_000_000) as i32, month, part(1_000_000, 100))
        .expect("valid date");
    let time = Time::from_hms(part(10_000, 100), part(100, 100), part(1, 100)).expect("valid time");
    PrimitiveDateTime::new(date, time)
}

/// The instant of a Swedish local time. In the autumn's repeated hour the earlier
/// instant is taken; a time in the spring's skipped hour is read as winter time.
pub fn from_local(local: PrimitiveDateTime) -> OffsetDateTime {
    for offset in [2, 1] {
        let utc = local.assume_utc() - time::Duration::hours(offset);
        if to_local(utc) == local {
            return utc;
        }
    }
    local.assume_utc() - time::Duration::hours(1)
}

/// Parses `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM` (a bare date means midnight).
pub fn parse_local(s: &str) -> Option<PrimitiveDateTime> {
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, parse_hhmm(t)?),
        None => (s, Time::MIDNIGHT),
    };
    Some(PrimitiveDateTime::new(parse_date(date)?, time))
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<Date> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, &fmt).ok()
}

/// Parses `HH:MM`.
pub fn parse_hhmm(s: &str) -> Option<Time> {
    let (h, m) = s.split_once(':')?;
    Time::from_hms(h.parse().ok()?, m.parse().ok()?, 0).ok()
}

/// `YYYY-MM-DDTHH:MM`.
pub fn format_local(t: PrimitiveDateTime) -> String {
    format!(
        "{}T{:02}:{:02}",
        format_date(t.date()),
        t.hour(),
        t.minute()
    )
}

/// `YYYY-MM-DD`.
pub fn format_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn local_round_trips_in_winter_and_summer() {
        for l in [datetime!(2026-01-10 22:00), datetime!(2026-07-10 03:15)] {
            assert_eq!(to_local(from_local(l)), l);
        }
        assert_eq!(
            from_local(datetime!(2026-01-10 22:00)),
            datetime!(2026-01-10 21:00 UTC)
        );
        assert_eq!(
            from_local(datetime!(2026-07-10 22:00)),
            datetime!(2026-07-10 20:00 UTC)
        );
    }

    #[test]
    fn parses_operator_times() {
        assert_eq!(parse_local("2026-12-10"), Some(datetime!(2026-12-10 00:00)));
        assert_eq!(
            parse_local("2026-12-10T22:30"),
            Some(datetime!(2026-12-10 22:30))
        );
        assert_eq!(
            parse_local("2026-12-10 22:30"),
            Some(datetime!(2026-12-10 22:30))
        );
        assert_eq!(parse_local("2026-13-10"), None);
        assert_eq!(parse_local("2026-12-10T25:00"), None);
        assert_eq!(
            format_local(datetime!(2026-12-10 07:05)),
            "2026-12-10T07:05"
        );
    }

    #[test]
    fn test_clock_moves_only_when_sleeping() {
        let c = TestClock::new(datetime!(2026-01-01 00:00 UTC));
        assert_eq!(c.now(), datetime!(2026-01-01 00:00 UTC));
        drop(c.sleep(Duration::from_secs(90)));
        assert_eq!(c.now(), datetime!(2026-01-01 00:01:30 UTC));
    }
}
