//! The workloads: YCSB's core workloads A-F plus raw and batched writes,
//! the operations they issue, the records' keys and values, and the key
//! space that inserts grow.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use clap::ValueEnum;
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;

use super::distribution::{fnv_hash64, Distribution, KeyChooser};

/// Every key starts with this (YCSB's `user` table prefix).
pub const KEY_PREFIX: &[u8] = b"user";
/// The first key past every record's key: scans stop here.
pub const KEYS_END: &[u8] = b"uses";
/// The longest scan of workload E; scan lengths are uniform in
/// `1..=SCAN_MAX` (YCSB's `maxscanlength`).
pub const SCAN_MAX: usize = 100;

/// The key of record `record`: `user` and the 19-digit FNV hash of its
/// number, as YCSB's hashed (not ordered) inserts, so that consecutive
/// records land anywhere in the key space. 23 bytes.
pub fn key(record: u64) -> Vec<u8> {
    [KEY_PREFIX, format!("{:019}", fnv_hash64(record)).as_bytes()].concat()
}

/// A value of `size` random bytes.
pub fn value(rng: &mut impl RngCore, size: usize) -> Vec<u8> {
    let mut v = vec![0u8; size];
    rng.fill_bytes(&mut v);
    v
}

/// The workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// YCSB A, update heavy: 50% reads, 50% updates.
    A,
    /// YCSB B, read mostly: 95% reads, 5% updates.
    B,
    /// YCSB C, read only.
    C,
    /// YCSB D, read latest: 95% reads, 5% inserts; reads favour the newest
    /// records.
    D,
    /// YCSB E, short ranges: 95% scans of 1..=100 records, 5% inserts.
    E,
    /// YCSB F, read-modify-write: 50% reads, 50% read-then-update (timed
    /// as one operation).
    F,
    /// Raw writes: every operation puts a new value to an existing record.
    Write,
    /// Batched writes: every operation puts `--batch-size` records at once.
    Batch,
}

impl Workload {
    /// The name used in case names.
    pub fn name(self) -> &'static str {
        match self {
            Workload::A => "ycsb-a",
            Workload::B => "ycsb-b",
            Workload::C => "ycsb-c",
            Workload::D => "ycsb-d",
            Workload::E => "ycsb-e",
            Workload::F => "ycsb-f",
            Workload::Write => "write",
            Workload::Batch => "batch",
        }
    }

    /// The operation mix.
    pub fn mix(self) -> Mix {
        use OpKind::*;
        let entries: &'static [(OpKind, f64)] = match self {
            Workload::A => &[(Read, 0.5), (Update, 0.5)],
            Workload::B => &[(Read, 0.95), (Update, 0.05)],
            Workload::C => &[(Read, 1.0)],
            Workload::D => &[(Read, 0.95), (Insert, 0.05)],
            Workload::E => &[(Scan, 0.95), (Insert, 0.05)],
            Workload::F => &[(Read, 0.5), (ReadModifyWrite, 0.5)],
            Workload::Write => &[(Update, 1.0)],
            Workload::Batch => &[(Batch, 1.0)],
        };
        Mix { entries }
    }

    /// YCSB's request distribution for the workload: latest for D, zipfian
    /// for the rest.
    pub fn default_distribution(self) -> Distribution {
        match self {
            Workload::D => Distribution::Latest,
            _ => Distribution::Zipfian,
        }
    }

    /// Whether it adds records.
    pub fn inserts(self) -> bool {
        self.mix().proportion(OpKind::Insert) > 0.0
    }
}

/// What an operation does; latencies are kept per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    /// Get one record.
    Read,
    /// Put a new value to an existing record.
    Update,
    /// Put a new record.
    Insert,
    /// Read up to N records in key order from a record's key.
    Scan,
    /// Read a record, then update it; timed as one operation.
    ReadModifyWrite,
    /// Put several records in one request.
    Batch,
}

impl OpKind {
    /// Every kind, in report order.
    pub const ALL: [OpKind; 6] =
        [OpKind::Read, OpKind::Update, OpKind::Insert, OpKind::Scan, OpKind::ReadModifyWrite, OpKind::Batch];

    /// The name used in case names and plots.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Read => "read",
            OpKind::Update => "update",
            OpKind::Insert => "insert",
            OpKind::Scan => "scan",
            OpKind::ReadModifyWrite => "rmw",
            OpKind::Batch => "batch",
        }
    }
}

/// The proportions of the kinds of a workload; they sum to 1.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    entries: &'static [(OpKind, f64)],
}

impl Mix {
    /// The kind for a uniform draw `u` in [0, 1).
    pub fn pick(&self, u: f64) -> OpKind {
        let mut acc = 0.0;
        for &(kind, p) in self.entries {
            acc += p;
            if u < acc {
                return kind;
            }
        }
        // Rounding can leave the sum a hair under 1.
        self.entries.last().map_or(OpKind::Read, |&(k, _)| k)
    }

    /// The proportion of `kind`.
    pub fn proportion(&self, kind: OpKind) -> f64 {
        self.entries.iter().filter(|(k, _)| *k == kind).map(|(_, p)| p).sum()
    }

    /// The kinds it issues.
    pub fn kinds(&self) -> impl Iterator<Item = OpKind> + '_ {
        self.entries.iter().map(|&(k, _)| k)
    }
}

/// One operation, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Get `key`.
    Read { key: Vec<u8> },
    /// Put `value` to the existing `key`.
    Update { key: Vec<u8>, value: Vec<u8> },
    /// Put record `record` (key `key`), which does not exist yet.
    Insert { record: u64, key: Vec<u8>, value: Vec<u8> },
    /// Read `count` records in key order from `start`.
    Scan { start: Vec<u8>, count: usize },
    /// Get `key`, then put `value` to it.
    ReadModifyWrite { key: Vec<u8>, value: Vec<u8> },
    /// Put every pair in one request; the keys are distinct.
    Batch { pairs: Vec<(Vec<u8>, Vec<u8>)> },
}

impl Op {
    /// Its kind.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Read { .. } => OpKind::Read,
            Op::Update { .. } => OpKind::Update,
            Op::Insert { .. } => OpKind::Insert,
            Op::Scan { .. } => OpKind::Scan,
            Op::ReadModifyWrite { .. } => OpKind::ReadModifyWrite,
            Op::Batch { .. } => OpKind::Batch,
        }
    }
}

/// The records of one run against one target: `[0, existing)` are all
/// written; inserts take the next numbers. Shared by the run's clients.
#[derive(Debug)]
pub struct KeySpace {
    next: AtomicU64,
    existing: AtomicU64,
    /// Inserts finished past `existing`, waiting for the ones before them
    /// (YCSB's acknowledged counter), so reads never pick a record whose
    /// insert is still in flight.
    finished: Mutex<BTreeSet<u64>>,
}

impl KeySpace {
    /// `records` loaded records.
    pub fn new(records: u64) -> Self {
        Self { next: AtomicU64::new(records), existing: AtomicU64::new(records), finished: Mutex::default() }
    }

    /// Records `[0, existing)` are written.
    pub fn existing(&self) -> u64 {
        self.existing.load(Ordering::Acquire)
    }

    /// The number of a new record to insert.
    pub fn allocate(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The insert of `record` is over (done or failed: a failed one must
    /// not hold back the records after it forever).
    pub fn acknowledge(&self, record: u64) {
        let mut finished = self.finished.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        finished.insert(record);
        let mut existing = self.existing.load(Ordering::Acquire);
        while finished.remove(&existing) {
            existing += 1;
        }
        self.existing.store(existing, Ordering::Release);
    }
}

/// Settings of the operations a workload issues.
#[derive(Debug, Clone, Copy)]
pub struct OpShape {
    /// Bytes of every value.
    pub value_size: usize,
    /// Records of a batch operation.
    pub batch_size: usize,
}

/// Generates one client's operations.
#[derive(Debug)]
pub struct OpGen<'a> {
    mix: Mix,
    chooser: KeyChooser,
    keys: &'a KeySpace,
    shape: OpShape,
    rng: ChaCha8Rng,
}

impl<'a> OpGen<'a> {
    /// A generator of `workload`'s operations choosing keys with `chooser`
    /// among `keys`, drawing from `rng`.
    pub fn new(
        workload: Workload,
        chooser: KeyChooser,
        keys: &'a KeySpace,
        shape: OpShape,
        rng: ChaCha8Rng,
    ) -> Self {
        Self { mix: workload.mix(), chooser, keys, shape, rng }
    }

    /// The next operation.
    pub fn next_op(&mut self) -> Op {
        let kind = self.mix.pick(self.rng.gen());
        match kind {
            OpKind::Read => Op::Read { key: self.existing_key() },
            OpKind::Update => Op::Update { key: self.existing_key(), value: self.value() },
            OpKind::Insert => {
                let record = self.keys.allocate();
                Op::Insert { record, key: key(record), value: self.value() }
            }
            OpKind::Scan => Op::Scan { start: self.existing_key(), count: self.rng.gen_range(1..=SCAN_MAX) },
            OpKind::ReadModifyWrite => Op::ReadModifyWrite { key: self.existing_key(), value: self.value() },
            OpKind::Batch => Op::Batch { pairs: self.batch() },
        }
    }

    /// Marks `op` answered (or failed): an insert's record may now be
    /// chosen by reads.
    pub fn complete(&self, op: &Op) {
        if let Op::Insert { record, .. } = op {
            self.keys.acknowledge(*record);
        }
    }

    fn existing_key(&mut self) -> Vec<u8> {
        key(self.chooser.next(&mut self.rng, self.keys.existing()))
    }

    fn value(&mut self) -> Vec<u8> {
        value(&mut self.rng, self.shape.value_size)
    }

    /// `batch_size` distinct records: a store may refuse a batch that
    /// writes one key twice. Fewer when the skew makes distinct ones too
    /// hard to find.
    fn batch(&mut self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let existing = self.keys.existing();
        let want = self.shape.batch_size.min(usize::try_from(existing).unwrap_or(usize::MAX));
        let mut records = BTreeSet::new();
        for _ in 0..want.saturating_mul(8) {
            if records.len() == want {
                break;
            }
            records.insert(self.chooser.next(&mut self.rng, existing));
        }
        records.into_iter().map(|r| (key(r), self.value())).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::SeedableRng;

    use super::*;

    fn mix_counts(workload: Workload, draws: usize) -> BTreeMap<OpKind, usize> {
        let keys = KeySpace::new(1000);
        let chooser = KeyChooser::new(workload.default_distribution(), 1000, workload.inserts());
        let shape = OpShape { value_size: 8, batch_size: 4 };
        let mut gen = OpGen::new(workload, chooser, &keys, shape, ChaCha8Rng::seed_from_u64(5));
        let mut counts = BTreeMap::new();
        for _ in 0..draws {
            let op = gen.next_op();
            gen.complete(&op);
            *counts.entry(op.kind()).or_default() += 1;
        }
        counts
    }

    #[test]
    fn workload_mixes_match_their_proportions() {
        const DRAWS: usize = 40_000;
        let all = [
            Workload::A,
            Workload::B,
            Workload::C,
            Workload::D,
            Workload::E,
            Workload::F,
            Workload::Write,
            Workload::Batch,
        ];
        for w in all {
            let counts = mix_counts(w, DRAWS);
            let mix = w.mix();
            for kind in OpKind::ALL {
                let got = *counts.get(&kind).unwrap_or(&0) as f64 / DRAWS as f64;
                let want = mix.proportion(kind);
                // 3 standard deviations of a binomial share at 40k draws is under 0.008.
                assert!((got - want).abs() < 0.01, "{}: {} {got} vs {want}", w.name(), kind.name());
            }
            assert_eq!(counts.values().sum::<usize>(), DRAWS);
        }
    }

    #[test]
    fn ops_carry_the_shape() {
        let keys = KeySpace::new(100);
        let shape = OpShape { value_size: 37, batch_size: 10 };
        let chooser = KeyChooser::new(Distribution::Zipfian, 100, false);
        let mut gen = OpGen::new(Workload::Batch, chooser, &keys, shape, ChaCha8Rng::seed_from_u64(1));
        for _ in 0..100 {
            let Op::Batch { pairs } = gen.next_op() else { panic!("batch workload issued another kind") };
            assert_eq!(pairs.len(), 10);
            let distinct: BTreeSet<_> = pairs.iter().map(|(k, _)| k).collect();
            assert_eq!(distinct.len(), 10, "batch keys are distinct");
            assert!(pairs.iter().all(|(k, v)| k.starts_with(KEY_PREFIX) && v.len() == 37));
        }
        let chooser = KeyChooser::new(Distribution::Zipfian, 100, true);
        let mut gen = OpGen::new(Workload::E, chooser, &keys, shape, ChaCha8Rng::seed_from_u64(2));
        for _ in 0..1000 {
            match gen.next_op() {
                Op::Scan { start, count } => {
                    assert!((1..=SCAN_MAX).contains(&count));
                    assert!(start.as_slice() < KEYS_END);
                }
                Op::Insert { record, key: k, value } => {
                    assert!(record >= 100);
                    assert_eq!(k, key(record));
                    assert_eq!(value.len(), 37);
                    keys.acknowledge(record);
                }
                other => panic!("workload E issued {other:?}"),
            }
        }
    }

    #[test]
    fn keys_are_fixed_length_and_inside_the_key_range() {
        for r in [0, 1, 99_999, u64::MAX] {
            let k = key(r);
            assert_eq!(k.len(), 23);
            assert!(k.starts_with(KEY_PREFIX) && k.as_slice() < KEYS_END);
        }
        assert_ne!(key(1), key(2));
    }

    #[test]
    fn key_space_acknowledges_in_order() {
        let keys = KeySpace::new(10);
        let (a, b, c) = (keys.allocate(), keys.allocate(), keys.allocate());
        assert_eq!((a, b, c), (10, 11, 12));
        keys.acknowledge(b);
        assert_eq!(keys.existing(), 10, "record 10 is still in flight");
        keys.acknowledge(a);
        assert_eq!(keys.existing(), 12);
        keys.acknowledge(c);
        assert_eq!(keys.existing(), 13);
    }
}
