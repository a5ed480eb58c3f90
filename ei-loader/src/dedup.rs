//! Duplicate keys across the whole load in bounded memory. Each post's key is reduced
//! to a 128-bit hash (two independent SipHash-1-3 digests; a false match needs a
//! collision of both, about 1 in 10^20 for 10^9 posts) plus its location: 24 bytes.
//! Entries are sorted in runs of at most `run_len` (48 MB at the default), runs beyond
//! the first are spilled to temporary files, and a k-way merge finds equal hashes.

use crate::input::Location;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufReader, BufWriter, Read, Write};

/// Entries per in-memory run by default (2 Mi entries, 48 MB).
pub const DEFAULT_RUN_LEN: usize = 1 << 21;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    hash: u128,
    /// File index in the top 16 bits, line below.
    at: u64,
}

impl Entry {
    const BYTES: usize = 24;

    fn to_bytes(self) -> [u8; Self::BYTES] {
        let mut b = [0u8; Self::BYTES];
        b[..16].copy_from_slice(&self.hash.to_le_bytes());
        b[16..].copy_from_slice(&self.at.to_le_bytes());
        b
    }

    fn from_bytes(b: &[u8; Self::BYTES]) -> Entry {
        Entry {
            hash: u128::from_le_bytes(b[..16].try_into().expect("16 bytes")),
            at: u64::from_le_bytes(b[16..].try_into().expect("8 bytes")),
        }
    }
}

fn pack(at: Location) -> u64 {
    ((at.file as u64) << 48) | (at.line & ((1 << 48) - 1))
}

fn unpack(at: u64) -> Location {
    Location {
        file: (at >> 48) as usize,
        line: at & ((1 << 48) - 1),
    }
}

/// The 128-bit digest of a key (its parts in key order).
pub fn key_hash(parts: &[&str]) -> u128 {
    let digest = |salt: u8| {
        let mut h = DefaultHasher::new();
        salt.hash(&mut h);
        parts.hash(&mut h);
        h.finish()
    };
    (u128::from(digest(1)) << 64) | u128::from(digest(2))
}

/// A key seen twice: where it was first and where again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Duplicate {
    pub first: Location,
    pub again: Location,
}

/// Collects key hashes, then reports duplicates.
pub struct DupFinder {
    run_len: usize,
    current: Vec<Entry>,
    spilled: Vec<std::fs::File>,
}

impl Default for DupFinder {
    fn default() -> Self {
        DupFinder::with_run_len(DEFAULT_RUN_LEN)
    }
}

impl DupFinder {
    pub fn with_run_len(run_len: usize) -> DupFinder {
        DupFinder {
            run_len: run_len.max(1),
            current: Vec::new(),
            spilled: Vec::new(),
        }
    }

    pub fn add(&mut self, hash: u128, at: Location) -> std::io::Result<()> {
        self.current.push(Entry { hash, at: pack(at) });
        if self.current.len() >= self.run_len {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> std::io::Result<()> {
        self.current.sort_unstable();
        let mut file = tempfile::tempfile()?;
        let mut w = BufWriter::new(&mut file);
        for e in self.current.drain(..) {
            w.write_all(&e.to_bytes())?;
        }
        w.flush()?;
        drop(w);
        use std::io::Seek;
        file.rewind()?;
        self.spilled.push(file);
        Ok(())
    }

    /// Every duplicate, each later occurrence paired with the first, in hash order.
    pub fn finish(mut self, mut report: impl FnMut(Duplicate)) -> std::io::Result<u64> {
        self.current.sort_unstable();
        let mut sources: Vec<Box<dyn Iterator<Item = std::io::Result<Entry>>>> = Vec::new();
        for f in self.spilled.drain(..) {
            sources.push(Box::new(RunReader(BufReader::with_capacity(1 << 16, f))));
        }
        sources.push(Box::new(
            std::mem::take(&mut self.current).into_iter().map(Ok),
        ));
        let mut heap = BinaryHeap::new();
        for (i, s) in sources.iter_mut().enumerate() {
            if let Some(e) = s.next().transpose()? {
                heap.push(Reverse((e, i)));
            }
        }
        let (mut count, mut first): (u64, Option<Entry>) = (0, None);
        while let Some(Reverse((e, i))) = heap.pop() {
            if let Some(next) = sources[i].next().transpose()? {
                heap.push(Reverse((next, i)));
            }
            match first {
                Some(f) if f.hash == e.hash => {
                    count += 1;
                    report(Duplicate {
                        first: unpack(f.at),
                        again: unpack(e.at),
                    });
                }
                _ => first = Some(e),
            }
        }
        Ok(count)
    }
}

struct RunReader(BufReader<std::fs::File>);

impl Iterator for RunReader {
    type Item = std::io::Result<Entry>;
    fn next(&mut self) -> Option<Self::Item> {
        let mut b = [0u8; Entry::BYTES];
        match self.0.read_exact(&mut b) {
            Ok(()) => Some(Ok(Entry::from_bytes(&b))),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => None,
            Err(e) => Some(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(file: usize, line: u64) -> Location {
        Location { file, line }
    }

    fn find(run_len: usize, keys: &[(&str, Location)]) -> Vec<Duplicate> {
        let mut d = DupFinder::with_run_len(run_len);
        for (k, l) in keys {
            d.add(key_hash(&[k]), *l).unwrap();
        }
        let mut out = Vec::new();
        let n = d.finish(|x| out.push(x)).unwrap();
        assert_eq!(n as usize, out.len());
        out.sort_by_key(|x| x.again);
        out
    }

    #[test]
    fn finds_duplicates_in_memory_and_across_spilled_runs() {
        let keys = [
            ("a", at(0, 2)),
            ("b", at(0, 3)),
            ("a", at(1, 7)),
            ("c", at(1, 8)),
            ("a", at(2, 9)),
            ("c", at(2, 10)),
        ];
        let expect = vec![
            Duplicate {
                first: at(0, 2),
                again: at(1, 7),
            },
            Duplicate {
                first: at(1, 8),
                again: at(2, 10),
            },
            Duplicate {
                first: at(0, 2),
                again: at(2, 9),
            },
        ];
        let mut expect_sorted = expect.clone();
        expect_sorted.sort_by_key(|x| x.again);
        for run_len in [1, 2, 4, 100] {
            assert_eq!(find(run_len, &keys), expect_sorted, "run_len {run_len}");
        }
    }

    #[test]
    fn key_parts_do_not_run_together() {
        assert_ne!(key_hash(&["ab", "c"]), key_hash(&["a", "bc"]));
    }
}
