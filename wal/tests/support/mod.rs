//! An in-memory model of the log, and checks of a `Wal` against it.

#![allow(dead_code)]

use std::collections::BTreeMap;

use bytes::Bytes;
use ekv_io::FileSystem;
use ekv_proto::RegionId;
use ekv_wal::{Entry, EntryType, Error, HardState, LogBatch, Wal};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRegion {
    pub first: u64,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
}

impl Default for ModelRegion {
    fn default() -> Self {
        Self { first: 1, entries: Vec::new(), hard_state: None }
    }
}

impl ModelRegion {
    pub fn next(&self) -> u64 {
        self.first + self.entries.len() as u64
    }
}

/// What the log must hold: the same rules, written the plain way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pub regions: BTreeMap<RegionId, ModelRegion>,
}

/// One step of a batch.
#[derive(Debug, Clone)]
pub enum Step {
    Append { region: RegionId, entries: Vec<Entry> },
    HardState { region: RegionId, state: HardState },
    Compact { region: RegionId, to: u64 },
    Remove { region: RegionId },
}

impl Model {
    /// Applies a batch whole, or returns false (and changes nothing) if the
    /// log must refuse it.
    pub fn apply_batch(&mut self, steps: &[Step]) -> bool {
        let mut next = self.clone();
        for s in steps {
            if !next.apply(s) {
                return false;
            }
        }
        *self = next;
        true
    }

    fn apply(&mut self, step: &Step) -> bool {
        match step {
            Step::Append { region, entries } => {
                let at = entries[0].index;
                let r = self.regions.entry(*region).or_default();
                if r.entries.is_empty() {
                    r.first = at;
                    r.entries = entries.clone();
                    return true;
                }
                if at < r.first || at > r.next() {
                    return false;
                }
                r.entries.truncate((at - r.first) as usize);
                r.entries.extend(entries.iter().cloned());
                true
            }
            Step::HardState { region, state } => {
                self.regions.entry(*region).or_default().hard_state = Some(*state);
                true
            }
            Step::Compact { region, to } => {
                let r = self
                    .regions
                    .entry(*region)
                    .or_insert_with(|| ModelRegion { first: *to, ..Default::default() });
                if *to > r.first {
                    let drop = ((*to - r.first) as usize).min(r.entries.len());
                    r.entries.drain(..drop);
                    if r.entries.is_empty() {
                        r.first = *to;
                    } else {
                        r.first += drop as u64;
                    }
                }
                true
            }
            Step::Remove { region } => {
                self.regions.remove(region);
                true
            }
        }
    }
}

pub fn to_batch(steps: &[Step]) -> LogBatch {
    let mut b = LogBatch::new();
    for s in steps {
        match s {
            Step::Append { region, entries } => b.add_entries(*region, entries.clone()),
            Step::HardState { region, state } => b.put_hard_state(*region, *state),
            Step::Compact { region, to } => b.compact(*region, *to),
            Step::Remove { region } => b.remove(*region),
        }
    }
    b
}

pub fn entry(index: u64, term: u64, len: usize, salt: u64) -> Entry {
    let data: Vec<u8> = (0..len).map(|i| (index.wrapping_mul(31) ^ salt ^ i as u64) as u8).collect();
    Entry {
        index,
        term,
        entry_type: if salt % 7 == 0 { EntryType::ConfChangeV2 } else { EntryType::Normal },
        data: Bytes::from(data),
        context: if salt % 5 == 0 { Bytes::from_static(b"ctx") } else { Bytes::new() },
    }
}

/// Panics unless `wal` holds exactly what `model` says.
pub async fn must_match<F: FileSystem>(wal: &Wal<F>, model: &Model, what: &str) {
    let regions = wal.regions();
    let want: Vec<RegionId> = model.regions.keys().copied().collect();
    assert_eq!(regions, want, "{what}: region set");
    for (id, r) in &model.regions {
        assert_eq!(wal.first_index(*id), Some(r.first), "{what}: {id} first index");
        assert_eq!(wal.last_index(*id), Some(r.next().saturating_sub(1)), "{what}: {id} last index");
        assert_eq!(wal.hard_state(*id), r.hard_state, "{what}: {id} hard state");
        if r.entries.is_empty() {
            continue;
        }
        let got = wal
            .entries(*id, r.first, r.next(), u64::MAX)
            .await
            .unwrap_or_else(|e| panic!("{what}: {id}: {e}"));
        assert_eq!(got.len(), r.entries.len(), "{what}: {id} entry count");
        for (g, w) in got.iter().zip(&r.entries) {
            assert_eq!(g, w, "{what}: {id} entry {}", w.index);
        }
        for w in &r.entries {
            assert_eq!(wal.term(*id, w.index).unwrap(), w.term, "{what}: {id} term of {}", w.index);
        }
        // Out of range is an error, never a wrong answer.
        assert!(
            matches!(wal.term(*id, r.next()), Err(Error::Unavailable { .. })),
            "{what}: {id} past the end"
        );
        if r.first > 0 {
            assert!(
                matches!(wal.term(*id, r.first - 1), Err(Error::Compacted { .. })),
                "{what}: {id} before first"
            );
        }
        // A size-limited read returns a non-empty prefix.
        let one = wal.entries(*id, r.first, r.next(), 1).await.unwrap();
        assert_eq!(one.len(), 1, "{what}: {id} max_bytes returns at least one entry");
        assert_eq!(one[0], r.entries[0]);
    }
}
