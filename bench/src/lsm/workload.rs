//! The workloads, their sizes and the per-phase outcome every engine
//! reports: what is run, on which keys, and what comes back.

use std::time::{Duration, Instant};

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::harness::Latency;

/// Bytes of a key, as db_bench's `--key_size=16`.
pub const KEY_SIZE: usize = 16;
/// Bytes of a value, as db_bench's `--value_size=100`.
pub const VALUE_SIZE: usize = 100;
/// User bytes of one write: key + value.
pub const ENTRY_BYTES: u64 = (KEY_SIZE + VALUE_SIZE) as u64;
/// `Next()` calls after each `Seek()` in `seekrandom`, db_bench's
/// `--seek_nexts` as its own `benchmark.sh` sets it.
pub const SEEK_NEXTS: usize = 10;
/// Percentage of reads in `readrandomwriterandom`.
pub const READ_PERCENT: u32 = 50;

/// One step of the run, in the order run (db_bench's canonical list). Each
/// works on the database the previous one left, except the two fills, which
/// start a fresh one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// `num` puts of keys `0, 1, ..` into a fresh database (`seq` db).
    FillSeq,
    /// `num` puts of uniformly random keys in `[0, num)` (with repeats, as
    /// db_bench) into a fresh database (`rand` db).
    FillRandom,
    /// `num` more random puts on the `rand` db.
    Overwrite,
    /// `reads` gets of random keys in `[0, num)`: hits and misses as the
    /// two random fills left them (about 86% hits).
    ReadRandom,
    /// `reads` gets of keys that sort between stored keys and are never
    /// present (db_bench's `readmissing`: the key with one more `'0'`).
    ReadMissing,
    /// One forward scan of the whole `rand` db.
    ReadSeq,
    /// `seeks` seeks to random keys, each followed by [`SEEK_NEXTS`] nexts.
    SeekRandom,
    /// `mixed_ops` operations on random keys, [`READ_PERCENT`]% gets, in
    /// rounds of 50 gets then 50 puts (db_bench `readrandomwriterandom`);
    /// its writes fill several memtables, so flushes and compactions run
    /// during it.
    Mixed,
}

impl Phase {
    /// Every phase, in run order.
    pub const ALL: [Phase; 8] = [
        Phase::FillSeq,
        Phase::FillRandom,
        Phase::Overwrite,
        Phase::ReadRandom,
        Phase::ReadMissing,
        Phase::ReadSeq,
        Phase::SeekRandom,
        Phase::Mixed,
    ];

    /// db_bench's name of the benchmark.
    pub fn db_bench_name(self) -> &'static str {
        match self {
            Phase::FillSeq => "fillseq",
            Phase::FillRandom => "fillrandom",
            Phase::Overwrite => "overwrite",
            Phase::ReadRandom => "readrandom",
            Phase::ReadMissing => "readmissing",
            Phase::ReadSeq => "readseq",
            Phase::SeekRandom => "seekrandom",
            Phase::Mixed => "readrandomwriterandom",
        }
    }

    /// Whether it writes (and so ends with a flush and a wait for
    /// compactions, counted in its write amplification).
    pub fn writes(self) -> bool {
        matches!(self, Phase::FillSeq | Phase::FillRandom | Phase::Overwrite | Phase::Mixed)
    }

    /// Whether it starts a fresh database.
    pub fn fresh(self) -> bool {
        matches!(self, Phase::FillSeq | Phase::FillRandom)
    }

    /// Which database it works on.
    pub fn db(self) -> Db {
        if self == Phase::FillSeq {
            Db::Seq
        } else {
            Db::Rand
        }
    }

    /// The phases that must have run before this one.
    pub fn prerequisites(self) -> &'static [Phase] {
        match self {
            Phase::FillSeq | Phase::FillRandom => &[],
            Phase::Overwrite => &[Phase::FillRandom],
            _ => &[Phase::FillRandom, Phase::Overwrite],
        }
    }

    /// A seed for this phase's random choices, distinct per phase so that,
    /// say, `readrandom` does not replay `fillrandom`'s key sequence (which
    /// would make every read a hit).
    pub fn seed(self, base: u64) -> u64 {
        base + 1000 * (self as u64 + 1)
    }
}

/// The two databases of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    /// Made by `fillseq`.
    Seq,
    /// Made by `fillrandom`, then `overwrite`, read and mixed.
    Rand,
}

impl Db {
    /// Its directory name.
    pub fn dir_name(self) -> &'static str {
        match self {
            Db::Seq => "seq",
            Db::Rand => "rand",
        }
    }
}

/// How big a run is and the LSM shape every engine is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Keys (`--num`).
    pub num: u64,
    /// Gets of `readrandom` and `readmissing` (`--reads`).
    pub reads: u64,
    /// Seeks of `seekrandom`.
    pub seeks: u64,
    /// Operations of the mixed run.
    pub mixed_ops: u64,
    /// Block cache bytes.
    pub cache_size: u64,
    /// Memtable bytes (RocksDB `write_buffer_size`).
    pub memtable_size: u64,
    /// Frozen memtables allowed besides the active one.
    pub max_immutable_memtables: u64,
    /// Table size flush and compaction cut at (`target_file_size_base`).
    pub target_file_size: u64,
    /// Level-1 target bytes (`max_bytes_for_level_base`).
    pub base_level_size: u64,
    /// Growth factor between levels.
    pub level_size_ratio: u64,
    /// Levels, L0 included.
    pub num_levels: u64,
    /// L0 files that start a compaction.
    pub l0_compaction_trigger: u64,
    /// L0 files that slow writes down.
    pub l0_slowdown_trigger: u64,
    /// L0 files that stop writes.
    pub l0_stop_trigger: u64,
    /// Data block bytes.
    pub block_size: u64,
    /// Bloom filter bits per key.
    pub bloom_bits: u64,
    /// Base of every phase's seed.
    pub seed: u64,
}

impl Default for Plan {
    fn default() -> Self {
        Self::full()
    }
}

impl Plan {
    /// The full run: 5 M keys (about 580 MB of user data, against a 64 MiB
    /// block cache) and RocksDB 7.8.3's default LSM shape, which is also
    /// ekv's.
    pub fn full() -> Self {
        Self {
            num: 5_000_000,
            reads: 1_000_000,
            seeks: 100_000,
            mixed_ops: 5_000_000,
            cache_size: 64 << 20,
            memtable_size: 64 << 20,
            max_immutable_memtables: 2,
            target_file_size: 64 << 20,
            base_level_size: 256 << 20,
            level_size_ratio: 10,
            num_levels: 7,
            l0_compaction_trigger: 4,
            l0_slowdown_trigger: 20,
            l0_stop_trigger: 36,
            block_size: 4096,
            bloom_bits: 10,
            seed: 20_240_601,
        }
    }

    /// A check under two minutes for all engines: 200 k keys (23 MB against
    /// a 4 MiB cache), everything that scales with memtables cut by 32, so
    /// flushes and compactions still happen.
    pub fn quick() -> Self {
        Self {
            num: 200_000,
            reads: 50_000,
            seeks: 10_000,
            mixed_ops: 200_000,
            cache_size: 4 << 20,
            memtable_size: 2 << 20,
            target_file_size: 2 << 20,
            base_level_size: 8 << 20,
            ..Self::full()
        }
    }

    /// Operations a phase performs (writes, gets, seeks, entries scanned
    /// at most, or mixed operations).
    pub fn ops(&self, phase: Phase) -> u64 {
        match phase {
            Phase::FillSeq | Phase::FillRandom | Phase::Overwrite | Phase::ReadSeq => self.num,
            Phase::ReadRandom | Phase::ReadMissing => self.reads,
            Phase::SeekRandom => self.seeks,
            Phase::Mixed => self.mixed_ops,
        }
    }

    /// Bytes of live data in the `rand` db once `fillrandom` and
    /// `overwrite` have written `2 * num` uniformly random keys out of
    /// `num`: the expected number of distinct keys, `num * (1 - (1 -
    /// 1/num)^(2 num))` (about 86.5%), times key + value. Every engine's
    /// space amplification divides by this same number; the spread of the
    /// real count around it is below 0.1% at these sizes.
    pub fn live_bytes_after_overwrite(&self) -> f64 {
        let n = self.num as f64;
        let distinct = n * (1.0 - (2.0 * n * (-1.0 / n).ln_1p()).exp());
        distinct * ENTRY_BYTES as f64
    }
}

/// Writes db_bench's key for `v` into `out`: the low 8 bytes of `v` big-
/// endian, then `'0'` up to `key_size` (db_bench `GenerateKeyFromInt`
/// without prefixes). So keys sort as their numbers, and `readmissing`'s
/// keys (`key_size + 1`) sort right after a stored key, never equal to one.
pub fn encode_key(v: u64, key_size: usize, out: &mut Vec<u8>) {
    out.clear();
    let be = v.to_be_bytes();
    let n = key_size.min(8);
    out.extend_from_slice(&be[8 - n..]);
    out.resize(key_size, b'0');
}

/// Values: consecutive 100-byte windows of one megabyte of random bytes
/// (db_bench's `RandomGenerator` does the same with compressible bytes;
/// with compression off that makes no difference).
#[derive(Debug)]
pub struct Values {
    data: Vec<u8>,
    pos: usize,
}

impl Values {
    /// A megabyte of bytes from `seed`.
    pub fn new(seed: u64) -> Self {
        let mut data = vec![0u8; 1 << 20];
        ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut data);
        Self { data, pos: 0 }
    }

    /// The next value.
    pub fn next_value(&mut self) -> &[u8] {
        if self.pos + VALUE_SIZE > self.data.len() {
            self.pos = 0;
        }
        let v = &self.data[self.pos..self.pos + VALUE_SIZE];
        self.pos += VALUE_SIZE;
        v
    }
}

/// The key numbers a phase uses, from its own seed.
#[derive(Debug)]
pub struct Keys {
    rng: ChaCha8Rng,
    num: u64,
    next_seq: u64,
}

impl Keys {
    /// Keys of `phase` for a plan.
    pub fn new(plan: &Plan, phase: Phase) -> Self {
        Self { rng: ChaCha8Rng::seed_from_u64(phase.seed(plan.seed)), num: plan.num, next_seq: 0 }
    }

    /// A uniformly random key number in `[0, num)`.
    pub fn random(&mut self) -> u64 {
        self.rng.gen_range(0..self.num)
    }

    /// `0, 1, 2, ...`.
    pub fn sequential(&mut self) -> u64 {
        let v = self.next_seq;
        self.next_seq += 1;
        v
    }
}

/// Which operation a mixed round does next: [`READ_PERCENT`] gets then the
/// rest puts, in rounds of 100 (db_bench's `get_weight`/`put_weight`).
#[derive(Debug, Default)]
pub struct MixedSchedule {
    gets_left: u32,
    puts_left: u32,
}

impl MixedSchedule {
    /// `true` for a get, `false` for a put.
    pub fn next_is_read(&mut self) -> bool {
        if self.gets_left == 0 && self.puts_left == 0 {
            self.gets_left = READ_PERCENT;
            self.puts_left = 100 - READ_PERCENT;
        }
        if self.gets_left > 0 {
            self.gets_left -= 1;
            true
        } else {
            self.puts_left -= 1;
            false
        }
    }
}

/// Times operations db_bench's way: each sample is the time since the
/// previous operation finished (so it includes the key choice and the
/// loop's own work, as db_bench's `FinishedOps` does), and the rate is
/// operations over the whole loop.
#[derive(Debug)]
pub struct Meter {
    start: Instant,
    last: Instant,
    ops: u64,
}

impl Default for Meter {
    fn default() -> Self {
        Self::start()
    }
}

impl Meter {
    /// Starts the clock.
    pub fn start() -> Self {
        let now = Instant::now();
        Self { start: now, last: now, ops: 0 }
    }

    /// One operation finished; its sample goes into `into`.
    pub fn done(&mut self, into: &mut Latency) {
        let now = Instant::now();
        into.record(now - self.last);
        self.last = now;
        self.ops += 1;
    }

    /// Operations so far.
    pub fn ops(&self) -> u64 {
        self.ops
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A latency distribution reduced to the numbers reported, in µs: from a
/// [`Latency`] for engines driven here, from db_bench's histogram for
/// RocksDB.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Dist {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
}

impl From<&Latency> for Dist {
    fn from(l: &Latency) -> Self {
        Self { count: l.count(), p50: l.p50(), p99: l.p99(), p999: l.p999(), max: l.max() }
    }
}

/// What one engine reports for one phase.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Operations done (for `readseq`, entries scanned).
    pub ops: u64,
    /// Operations per second over the operation loop (not the settling
    /// after it).
    pub ops_per_s: f64,
    /// The phase's operation: puts, gets, seeks (seek + nexts), nexts; the
    /// gets of the mixed run.
    pub lat: Dist,
    /// The puts of the mixed run.
    pub write_lat: Option<Dist>,
    /// Gets that found a value, and gets done (reads and seeks only).
    pub found: Option<(u64, u64)>,
    /// Bytes the engine's process wrote to storage during the phase,
    /// settling included (`/proc/<pid>/io` `write_bytes`).
    pub disk_bytes_written: u64,
    /// Key + value bytes the phase put.
    pub user_bytes_written: u64,
    /// Time writers were stalled, as the engine counts it, in ms.
    pub stall_ms: Option<f64>,
    /// Engine-specific numbers, reported as they are: `(metric, value)`.
    pub internals: Vec<(String, f64)>,
}

impl Outcome {
    /// What an operation loop measured: its meter, the read (or only) and
    /// write latencies, `(found, gets)` and the number of puts.
    pub fn measured(
        phase: Phase,
        meter: &Meter,
        lat: &Latency,
        write_lat: &Latency,
        (found, gets): (u64, u64),
        writes: u64,
    ) -> Self {
        Outcome {
            ops: meter.ops(),
            ops_per_s: meter.ops() as f64 / meter.elapsed().as_secs_f64(),
            lat: Dist::from(lat),
            write_lat: (phase == Phase::Mixed).then(|| Dist::from(write_lat)),
            found: (gets > 0).then_some((found, gets)),
            user_bytes_written: writes * ENTRY_BYTES,
            ..Outcome::default()
        }
    }
}

impl Outcome {
    /// Write amplification: storage bytes over user bytes (None when the
    /// phase put nothing).
    pub fn write_amp(&self) -> Option<f64> {
        (self.user_bytes_written > 0).then(|| self.disk_bytes_written as f64 / self.user_bytes_written as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_db_bench_layout() {
        let mut k = Vec::new();
        encode_key(0x0102_0304_0506_0708, 16, &mut k);
        assert_eq!(&k[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&k[8..], b"00000000");
        encode_key(5, 17, &mut k);
        assert_eq!(k.len(), 17);
        assert_eq!(&k[..8], &5u64.to_be_bytes());
        assert_eq!(&k[8..], b"000000000");
        // Keys sort as their numbers; a missing key sorts right after its stored twin.
        let (mut a, mut b, mut m) = (Vec::new(), Vec::new(), Vec::new());
        encode_key(255, 16, &mut a);
        encode_key(256, 16, &mut b);
        encode_key(255, 17, &mut m);
        assert!(a < m && m < b);
        // Short keys keep the low bytes, as db_bench does.
        encode_key(0x0102, 2, &mut k);
        assert_eq!(k, [1, 2]);
    }

    #[test]
    fn mixed_schedule_is_rounds_of_50_gets_then_50_puts() {
        let mut s = MixedSchedule::default();
        let ops: Vec<bool> = (0..200).map(|_| s.next_is_read()).collect();
        assert!(ops[..50].iter().all(|&r| r));
        assert!(ops[50..100].iter().all(|&r| !r));
        assert!(ops[100..150].iter().all(|&r| r));
        assert_eq!(ops.iter().filter(|&&r| r).count(), 100);
    }

    #[test]
    fn live_bytes_follow_the_birthday_bound() {
        let plan = Plan { num: 1_000_000, ..Plan::quick() };
        let frac = plan.live_bytes_after_overwrite() / (1_000_000.0 * ENTRY_BYTES as f64);
        assert!((frac - (1.0 - (-2.0f64).exp())).abs() < 1e-5, "{frac}");
    }

    #[test]
    fn values_roll_over_and_phases_differ_in_seed() {
        let mut v = Values::new(1);
        let first = v.next_value().to_vec();
        for _ in 1..(1 << 20) / VALUE_SIZE {
            assert_eq!(v.next_value().len(), VALUE_SIZE);
        }
        assert_eq!(v.next_value(), &first[..]);
        let seeds: std::collections::BTreeSet<u64> = Phase::ALL.iter().map(|p| p.seed(7)).collect();
        assert_eq!(seeds.len(), Phase::ALL.len());
        let plan = Plan::quick();
        let mut a = Keys::new(&plan, Phase::FillRandom);
        let mut b = Keys::new(&plan, Phase::ReadRandom);
        let (xa, xb): (Vec<u64>, Vec<u64>) = (0..8).map(|_| (a.random(), b.random())).unzip();
        assert_ne!(xa, xb);
        assert!(xa.iter().all(|&x| x < plan.num));
    }
}
