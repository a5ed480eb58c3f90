//! The run's journal: an append-only JSON-lines file beside the plan that records each
//! call as it is sent and, durably (fsync) before anything else happens, each call
//! the index acknowledged and each record rejected. Reading it back gives the records
//! already done, so a run after Ctrl-C, a crash or a reboot re-sends only what was
//! never acknowledged. Its first line pins the input checksums: a journal of other
//! inputs is refused.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Half-open ranges `[from, to)` of record sequence numbers.
pub type Ranges = Vec<(u64, u64)>;

/// One journal line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "lowercase")]
pub enum Event {
    /// A run began (every run appends one).
    Start { at: String, inputs: Vec<String> },
    /// A call is about to be sent.
    Send {
        call: String,
        attempt: u32,
        at: String,
        ranges: Ranges,
    },
    /// The index answered OK to this call.
    Ack { call: String, ranges: Ranges },
    /// A record was rejected (by the rules before sending, or by the index).
    Reject { seq: u64, code: String },
    /// Every record is done.
    Done { at: String },
}

/// Why the journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("journal {path} line {line} is not a journal event: {message}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("the input files changed since this load started (journal {path}); refusing to resume: restore the inputs, or make a new plan and move the journal away")]
    InputsChanged { path: PathBuf },
}

/// The records a journal says are done.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Done {
    ranges: Ranges,
    pub acked: u64,
    pub rejected: u64,
}

impl Done {
    pub fn contains(&self, seq: u64) -> bool {
        let i = self.ranges.partition_point(|(_, to)| *to <= seq);
        self.ranges.get(i).is_some_and(|(from, _)| *from <= seq)
    }

    pub fn count(&self) -> u64 {
        self.acked + self.rejected
    }
}

/// Compresses ascending sequence numbers into ranges.
pub fn ranges_of(seqs: impl IntoIterator<Item = u64>) -> Ranges {
    let mut out: Ranges = Vec::new();
    for s in seqs {
        match out.last_mut() {
            Some((_, to)) if *to == s => *to += 1,
            _ => out.push((s, s + 1)),
        }
    }
    out
}

fn merge(mut ranges: Ranges) -> Ranges {
    ranges.sort_unstable();
    let mut out: Ranges = Vec::with_capacity(ranges.len());
    for (from, to) in ranges {
        match out.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => out.push((from, to)),
        }
    }
    out
}

/// An open journal.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
}

/// The journal's path for a plan: beside it, extension `.journal`.
pub fn path_for(plan: &Path) -> PathBuf {
    plan.with_extension("journal")
}

/// Every event of a journal file. A torn last line (a crash mid-write; it has no
/// newline yet) is left out; the length of the complete lines is returned with them.
pub fn read_events(path: &Path) -> Result<(Vec<Event>, u64), JournalError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(source) => {
            return Err(JournalError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    let mut events = Vec::new();
    for (i, line) in text[..complete].lines().enumerate() {
        let event = serde_json::from_str(line).map_err(|e| JournalError::Corrupt {
            path: path.to_owned(),
            line: i + 1,
            message: e.to_string(),
        })?;
        events.push(event);
    }
    Ok((events, complete as u64))
}

/// What a journal's events say is done.
pub fn done_of(events: &[Event]) -> Done {
    let mut ranges = Vec::new();
    let (mut acked, mut rejected) = (0, 0);
    for e in events {
        match e {
            Event::Ack { ranges: r, .. } => {
                acked += r.iter().map(|(a, b)| b - a).sum::<u64>();
                ranges.extend_from_slice(r);
            }
            Event::Reject { seq, .. } => {
                rejected += 1;
                ranges.push((*seq, seq + 1));
            }
            _ => {}
        }
    }
    Done {
        ranges: merge(ranges),
        acked,
        rejected,
    }
}

impl Journal {
    /// Opens (or starts) the journal at `path` for a load with these input checksums,
    /// appends a `start` event, and returns what is already done.
    pub fn open(
        path: &Path,
        inputs: &[String],
        at: String,
    ) -> Result<(Journal, Done), JournalError> {
        let (events, complete) = read_events(path)?;
        let first_inputs = events.iter().find_map(|e| match e {
            Event::Start { inputs, .. } => Some(inputs),
            _ => None,
        });
        if first_inputs.is_some_and(|i| i != inputs) {
            return Err(JournalError::InputsChanged {
                path: path.to_owned(),
            });
        }
        let done = done_of(&events);
        let io = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        file.set_len(complete).map_err(io)?;
        let journal = Journal {
            path: path.to_owned(),
            file: Mutex::new(file),
        };
        journal.append(
            &Event::Start {
                at,
                inputs: inputs.to_vec(),
            },
            true,
        )?;
        Ok((journal, done))
    }

    /// Appends one event; `durable` fsyncs before returning.
    pub fn append(&self, event: &Event, durable: bool) -> Result<(), JournalError> {
        let mut line = serde_json::to_string(event).expect("events serialise");
        line.push('\n');
        let mut f = self.file.lock().expect("journal lock");
        f.write_all(line.as_bytes())
            .and_then(|()| if durable { f.sync_data() } else { Ok(()) })
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_compress_and_done_answers_membership() {
        assert_eq!(
            ranges_of([1, 2, 3, 7, 8, 10]),
            vec![(1, 4), (7, 9), (10, 11)]
        );
        let events = vec![
            Event::Ack {
                call: "a".into(),
                ranges: vec![(0, 10)],
            },
            Event::Ack {
                call: "b".into(),
                ranges: vec![(20, 25), (10, 12)],
            },
            Event::Reject {
                seq: 15,
                code: "EI004".into(),
            },
        ];
        let d = done_of(&events);
        assert_eq!((d.acked, d.rejected, d.count()), (17, 1, 18));
        for s in [0, 9, 10, 11, 15, 20, 24] {
            assert!(d.contains(s), "{s}");
        }
        for s in [12, 14, 16, 19, 25] {
            assert!(!d.contains(s), "{s}");
        }
    }

    #[test]
    fn resumes_ignores_a_torn_line_and_refuses_other_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.journal");
        let inputs = vec!["abc".to_string()];
        let (j, done) = Journal::open(&p, &inputs, "t0".into()).unwrap();
        assert_eq!(done.count(), 0);
        j.append(
            &Event::Ack {
                call: "w0-1".into(),
                ranges: vec![(0, 5)],
            },
            true,
        )
        .unwrap();
        drop(j);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"{\"ev\":\"ack\",\"ca")
            .unwrap();
        let (_, done) = Journal::open(&p, &inputs, "t1".into()).unwrap();
        assert_eq!(done.acked, 5);
        let err = Journal::open(&p, &["other".to_string()], "t2".into()).unwrap_err();
        assert!(matches!(err, JournalError::InputsChanged { .. }));
    }
}
