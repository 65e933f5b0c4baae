//! The fjall peer (feature `fjall`): fjall 2.11 driven from a plain thread,
//! as it is meant to be used, with its own flush and compaction threads.
//!
//! Made as close to the others as fjall allows: the same block cache,
//! memtable size (and a write buffer of the same number of memtables),
//! block size, bloom bits, table size, level base and ratio (fjall's
//! leveled strategy derives the L1 target from table size × L0 trigger,
//! which is RocksDB's 256 MiB for the full run), no compression, one flush
//! and one compaction thread (RocksDB's `--max_background_jobs=2`).
//!
//! fjall cannot turn its journal off. It runs with
//! `manual_journal_persist`, so the journal is never flushed or synced per
//! write, only buffered; its bytes still reach the disk when a buffer fills
//! and count in fjall's write amplification. fjall has no direct I/O: it
//! reads through the page cache, which holds its whole data set on this
//! machine, so its reads do not touch the disk and are not comparable with
//! ekv's and RocksDB's direct reads. Its L0 stall triggers (20, 32) are
//! fixed.

use std::path::Path;
use std::time::Duration;

use fjall::compaction::{Leveled, Strategy};
use fjall::{AbstractTree, CompressionType, Config, Keyspace, PartitionCreateOptions, PartitionHandle};

use super::workload::{
    encode_key, Keys, Meter, MixedSchedule, Outcome, Phase, Plan, Values, KEY_SIZE, SEEK_NEXTS,
};
use super::{sysio, BoxError};
use crate::harness::Latency;

const PARTITION: &str = "bench";

fn open(plan: &Plan, dir: &Path) -> Result<(Keyspace, PartitionHandle), BoxError> {
    let keyspace = Config::new(dir)
        .cache_size(plan.cache_size)
        .max_write_buffer_size(plan.memtable_size * (plan.max_immutable_memtables + 1))
        .manual_journal_persist(true)
        .flush_workers(1)
        .compaction_workers(1)
        .open()?;
    let strategy = Leveled {
        l0_threshold: u8::try_from(plan.l0_compaction_trigger)?,
        target_size: u32::try_from(plan.target_file_size)?,
        level_ratio: u8::try_from(plan.level_size_ratio)?,
    };
    let opts = PartitionCreateOptions::default()
        .max_memtable_size(u32::try_from(plan.memtable_size)?)
        .block_size(u32::try_from(plan.block_size)?)
        .bloom_filter_bits(Some(u8::try_from(plan.bloom_bits)?))
        .compression(CompressionType::None)
        .compaction_strategy(Strategy::Leveled(strategy))
        .manual_journal_persist(true);
    let partition = keyspace.open_partition(PARTITION, opts)?;
    Ok((keyspace, partition))
}

/// Flushes the memtable and waits until compactions have stopped: none
/// running, L0 below its trigger, and no new one finished for 300 ms
/// (fjall has no "wait for compactions"; db_bench's is as approximate).
fn settle(plan: &Plan, keyspace: &Keyspace, partition: &PartitionHandle) -> Result<(), BoxError> {
    partition.rotate_memtable_and_wait()?;
    let mut last = keyspace.compactions_completed();
    let mut quiet = 0;
    while quiet < 6 {
        std::thread::sleep(Duration::from_millis(50));
        let done = keyspace.compactions_completed();
        let idle = keyspace.active_compactions() == 0
            && (partition.tree.l0_run_count() as u64) < plan.l0_compaction_trigger
            && done == last;
        quiet = if idle { quiet + 1 } else { 0 };
        last = done;
    }
    Ok(())
}

/// Runs one phase on the keyspace in `dir`, on this thread.
///
/// # Errors
/// fjall fails to open, read, write or settle.
pub fn run(phase: Phase, plan: &Plan, dir: &Path) -> Result<Outcome, BoxError> {
    let before = sysio::write_bytes()?;
    let (keyspace, partition) = open(plan, dir)?;
    let mut outcome = workload(phase, plan, &partition)?;
    if phase.writes() {
        settle(plan, &keyspace, &partition)?;
    }
    outcome.internals = vec![
        ("tables".to_owned(), partition.segment_count() as f64),
        ("compactions".to_owned(), keyspace.compactions_completed() as f64),
    ];
    drop(partition);
    drop(keyspace);
    outcome.disk_bytes_written = sysio::write_bytes()?.saturating_sub(before);
    Ok(outcome)
}

fn workload(phase: Phase, plan: &Plan, part: &PartitionHandle) -> Result<Outcome, BoxError> {
    let mut keys = Keys::new(plan, phase);
    let mut values = Values::new(phase.seed(plan.seed));
    let mut key = Vec::with_capacity(KEY_SIZE + 1);
    let mut lat = Latency::new();
    let mut write_lat = Latency::new();
    let (mut found, mut gets, mut writes) = (0u64, 0u64, 0u64);
    let n = plan.ops(phase);
    let mut meter = Meter::start();
    match phase {
        Phase::FillSeq | Phase::FillRandom | Phase::Overwrite => {
            for _ in 0..n {
                let v = if phase == Phase::FillSeq { keys.sequential() } else { keys.random() };
                encode_key(v, KEY_SIZE, &mut key);
                part.insert(key.as_slice(), values.next_value())?;
                meter.done(&mut lat);
            }
            writes = n;
        }
        Phase::ReadRandom | Phase::ReadMissing => {
            let size = if phase == Phase::ReadMissing { KEY_SIZE + 1 } else { KEY_SIZE };
            for _ in 0..n {
                encode_key(keys.random(), size, &mut key);
                if part.get(&key)?.is_some() {
                    found += 1;
                }
                gets += 1;
                meter.done(&mut lat);
            }
        }
        Phase::ReadSeq => {
            let mut bytes = 0usize;
            for kv in part.iter().take(usize::try_from(n)?) {
                let (k, v) = kv?;
                bytes += k.len() + v.len();
                meter.done(&mut lat);
            }
            std::hint::black_box(bytes);
        }
        Phase::SeekRandom => {
            // fjall has no reusable iterator with seek: each seek is a new
            // range iterator from the key.
            let mut bytes = 0usize;
            for _ in 0..n {
                encode_key(keys.random(), KEY_SIZE, &mut key);
                let mut it = part.range(key.as_slice()..);
                if let Some(first) = it.next() {
                    let (k, v) = first?;
                    if *k == *key {
                        found += 1;
                    }
                    bytes += k.len() + v.len();
                    for kv in it.take(SEEK_NEXTS) {
                        let (k, v) = kv?;
                        bytes += k.len() + v.len();
                    }
                }
                gets += 1;
                meter.done(&mut lat);
            }
            std::hint::black_box(bytes);
        }
        Phase::Mixed => {
            let mut schedule = MixedSchedule::default();
            for _ in 0..n {
                encode_key(keys.random(), KEY_SIZE, &mut key);
                if schedule.next_is_read() {
                    if part.get(&key)?.is_some() {
                        found += 1;
                    }
                    gets += 1;
                    meter.done(&mut lat);
                } else {
                    part.insert(key.as_slice(), values.next_value())?;
                    writes += 1;
                    meter.done(&mut write_lat);
                }
            }
        }
    }
    Ok(Outcome::measured(phase, &meter, &lat, &write_lat, (found, gets), writes))
}
