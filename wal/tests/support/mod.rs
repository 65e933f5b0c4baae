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
    if let Some(diff) = differs(wal, model).await {
        panic!("{what}: {diff}");
    }
}

/// How `wal` differs from `model`, if it does.
pub async fn differs<F: FileSystem>(wal: &Wal<F>, model: &Model) -> Option<String> {
    macro_rules! check {
        ($cond:expr, $($fmt:tt)*) => {
            if !$cond {
                return Some(format!($($fmt)*));
            }
        };
    }
    let regions = wal.regions();
    let want: Vec<RegionId> = model.regions.keys().copied().collect();
    check!(regions == want, "region set {regions:?} != {want:?}");
    for (id, r) in &model.regions {
        check!(
            wal.first_index(*id) == Some(r.first),
            "{id}: first index {:?} != {}",
            wal.first_index(*id),
            r.first
        );
        let last = r.next().saturating_sub(1);
        check!(wal.last_index(*id) == Some(last), "{id}: last index {:?} != {last}", wal.last_index(*id));
        check!(
            wal.hard_state(*id) == r.hard_state,
            "{id}: hard state {:?} != {:?}",
            wal.hard_state(*id),
            r.hard_state
        );
        if r.entries.is_empty() {
            continue;
        }
        let got = match wal.entries(*id, r.first, r.next(), u64::MAX).await {
            Ok(g) => g,
            Err(e) => return Some(format!("{id}: entries: {e}")),
        };
        check!(got.len() == r.entries.len(), "{id}: {} entries != {}", got.len(), r.entries.len());
        for (g, w) in got.iter().zip(&r.entries) {
            check!(g == w, "{id}: entry {}: {g:?} != {w:?}", w.index);
        }
        for w in &r.entries {
            check!(wal.term(*id, w.index).ok() == Some(w.term), "{id}: term of {}", w.index);
        }
        // Out of range is an error, never a wrong answer.
        check!(matches!(wal.term(*id, r.next()), Err(Error::Unavailable { .. })), "{id}: past the end");
        if r.first > 0 {
            check!(matches!(wal.term(*id, r.first - 1), Err(Error::Compacted { .. })), "{id}: before first");
        }
        // A size-limited read returns a non-empty prefix.
        let one = wal.entries(*id, r.first, r.next(), 1).await.ok();
        check!(one.as_deref() == Some(&r.entries[..1]), "{id}: max_bytes=1 read");
    }
    None
}

/// A valid random round over `regions` regions: appends (sometimes
/// overwriting), hard states, compactions.
pub fn random_round(model: &Model, rng: &mut impl rand::Rng, regions: u64, salt: &mut u64) -> Vec<Step> {
    let mut view = model.clone();
    let mut steps = Vec::new();
    for _ in 0..rng.gen_range(1..8) {
        let region = RegionId(rng.gen_range(1..=regions));
        let cur = view.regions.get(&region).cloned().unwrap_or_default();
        *salt += 1;
        let step = match rng.gen_range(0..10) {
            0..=6 => {
                let at = if !cur.entries.is_empty() && rng.gen_bool(0.15) {
                    cur.first + rng.gen_range(0..cur.entries.len() as u64)
                } else {
                    cur.next()
                };
                let n = rng.gen_range(1..4);
                let len = [3usize, 60, 500, 2000][rng.gen_range(0..4)];
                Step::Append {
                    region,
                    entries: (0..n).map(|i| entry(at + i, 1 + *salt / 50, len, *salt)).collect(),
                }
            }
            7 | 8 => Step::HardState {
                region,
                state: HardState {
                    term: 1 + *salt / 50,
                    vote: rng.gen_range(0..4),
                    commit: cur.next().saturating_sub(1),
                },
            },
            _ => Step::Compact { region, to: cur.first + rng.gen_range(0..=(cur.next() - cur.first)) },
        };
        view.apply_batch(std::slice::from_ref(&step));
        steps.push(step);
    }
    steps
}
