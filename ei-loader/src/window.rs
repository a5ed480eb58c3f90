//! The agreed load windows: daily ranges of Swedish local time (`22:00-06:00` runs
//! overnight), and whether the load may run at an instant or when it next may.
//! No windows at all means "any time".

use crate::clock::{format_local, from_local, parse_hhmm, to_local};
use std::fmt;
use std::str::FromStr;
use time::{OffsetDateTime, Time};

/// One daily window, `start-end` in local time; an end at or before the start means
/// the window runs past midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Window {
    start: Time,
    end: Time,
}

/// Why a window text does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad window {0:?}: write HH:MM-HH:MM in Swedish local time, e.g. 22:00-06:00")]
pub struct WindowError(String);

impl FromStr for Window {
    type Err = WindowError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || WindowError(s.to_owned());
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let (start, end) = (
            parse_hhmm(a.trim()).ok_or_else(bad)?,
            parse_hhmm(b.trim()).ok_or_else(bad)?,
        );
        if start == end {
            return Err(bad());
        }
        Ok(Window { start, end })
    }
}

impl TryFrom<String> for Window {
    type Error = WindowError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Window> for String {
    fn from(w: Window) -> String {
        w.to_string()
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start.hour(),
            self.start.minute(),
            self.end.hour(),
            self.end.minute()
        )
    }
}

/// Whether the load may run now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowState {
    /// Open; `closes_at` is `None` when there are no windows.
    Open { closes_at: Option<OffsetDateTime> },
    /// Closed until `opens_at`.
    Closed { opens_at: OffsetDateTime },
}

impl WindowState {
    /// For progress lines: `open until 06:00`, `waiting until 2026-12-10T22:00`.
    pub fn describe(&self) -> String {
        match self {
            WindowState::Open { closes_at: None } => "open (no windows)".into(),
            WindowState::Open { closes_at: Some(t) } => {
                format!("open until {}", format_local(to_local(*t)))
            }
            WindowState::Closed { opens_at } => {
                format!("waiting until {}", format_local(to_local(*opens_at)))
            }
        }
    }
}

/// The state at `now`. Overlapping or touching windows count as one.
pub fn state(windows: &[Window], now: OffsetDateTime) -> WindowState {
    if windows.is_empty() {
        return WindowState::Open { closes_at: None };
    }
    let spans = merged_spans(windows, now);
    if let Some((_, end)) = spans.iter().find(|(s, e)| *s <= now && now < *e) {
        return WindowState::Open {
            closes_at: Some(*end),
        };
    }
    let opens_at = spans
        .iter()
        .map(|(s, _)| *s)
        .find(|s| *s > now)
        .expect("a daily window opens within two days");
    WindowState::Closed { opens_at }
}

/// Every occurrence of the windows from the day before `now` to two days after, as
/// instants, sorted and merged.
fn merged_spans(windows: &[Window], now: OffsetDateTime) -> Vec<(OffsetDateTime, OffsetDateTime)> {
    let today = to_local(now).date();
    let mut spans: Vec<_> = (-1..=2)
        .flat_map(|d| {
            windows
                .iter()
                .map(move |w| (today + time::Duration::days(d), w))
        })
        .map(|(day, w)| {
            let end_day = if w.end <= w.start {
                day.next_day().expect("date in range")
            } else {
                day
            };
            (
                from_local(day.with_time(w.start)),
                from_local(end_day.with_time(w.end)),
            )
        })
        .collect();
    spans.sort();
    let mut merged: Vec<(OffsetDateTime, OffsetDateTime)> = Vec::with_capacity(spans.len());
    for (s, e) in spans {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn at(l: time::PrimitiveDateTime) -> OffsetDateTime {
        from_local(l)
    }

    #[test]
    fn parses_and_prints() {
        let w: Window = "22:00-06:00".parse().unwrap();
        assert_eq!(w.to_string(), "22:00-06:00");
        assert!("22:00".parse::<Window>().is_err());
        assert!("10:00-10:00".parse::<Window>().is_err());
        assert!("24:00-06:00".parse::<Window>().is_err());
    }

    #[test]
    fn no_windows_is_always_open() {
        assert_eq!(
            state(&[], at(datetime!(2026-12-10 12:00))),
            WindowState::Open { closes_at: None }
        );
    }

    #[test]
    fn overnight_window_open_and_closed() {
        let w = ["22:00-06:00".parse().unwrap()];
        assert_eq!(
            state(&w, at(datetime!(2026-12-10 23:00))),
            WindowState::Open {
                closes_at: Some(at(datetime!(2026-12-11 06:00)))
            }
        );
        assert_eq!(
            state(&w, at(datetime!(2026-12-11 05:59))),
            WindowState::Open {
                closes_at: Some(at(datetime!(2026-12-11 06:00)))
            }
        );
        assert_eq!(
            state(&w, at(datetime!(2026-12-11 06:00))),
            WindowState::Closed {
                opens_at: at(datetime!(2026-12-11 22:00))
            }
        );
        assert_eq!(
            state(&w, at(datetime!(2026-12-10 12:00))),
            WindowState::Closed {
                opens_at: at(datetime!(2026-12-10 22:00))
            }
        );
    }

    #[test]
    fn touching_windows_merge_and_summer_time_is_local() {
        let w = [
            "18:00-22:00".parse().unwrap(),
            "22:00-23:00".parse().unwrap(),
        ];
        assert_eq!(
            state(&w, at(datetime!(2026-07-01 19:00))),
            WindowState::Open {
                closes_at: Some(datetime!(2026-07-01 21:00 UTC))
            }
        );
    }
}
