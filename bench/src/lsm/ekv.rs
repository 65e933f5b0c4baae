//! ekv's LSM tree as a shard runs it: one glommio executor, the workload
//! in the main task, flushes ([`Lsm::run_flusher`]) and compactions
//! ([`Lsm::run_compactor`]), each its own task, in a task queue of lower
//! shares on the same core, yielding to the foreground through
//! [`Options::yield_hook`].
//!
//! Each phase opens the tree, runs, settles (write phases: flush and wait
//! for compactions) and closes it, as each `db_bench` invocation does, so
//! both start every phase with a cold block cache.

use std::path::Path;
use std::rc::Rc;

use ekv_io::GlommioFs;
use ekv_lsm::{IterOptions, Lsm, Options, Stats};
use glommio::{Latency as TqLatency, Shares};

use super::workload::{
    encode_key, Keys, Meter, MixedSchedule, Outcome, Phase, Plan, Values, KEY_SIZE, SEEK_NEXTS,
};
use super::{sysio, BoxError};
use crate::harness::{self, Latency};

/// Shares of the background task queue; the foreground (glommio's default
/// queue) has 1000. When both have work, flushes and compactions get a
/// third of the core; when a writer stalls, they get all of it.
pub const BACKGROUND_SHARES: usize = 500;

/// The tree's options for a plan: the same shape every engine gets.
pub fn options(plan: &Plan) -> Options {
    // Every work slice, background work gives the core to the foreground
    // queue if it has anything to run.
    let yield_hook: ekv_lsm::YieldHook =
        Rc::new(|| Box::pin(async { glommio::executor().yield_task_queue_now().await }));
    Options {
        memtable_size: plan.memtable_size as usize,
        max_immutable_memtables: plan.max_immutable_memtables as usize,
        block_size: plan.block_size as usize,
        bloom_bits_per_key: plan.bloom_bits as usize,
        block_cache_size: plan.cache_size as usize,
        target_file_size: plan.target_file_size,
        base_level_size: plan.base_level_size,
        level_size_ratio: plan.level_size_ratio,
        num_levels: plan.num_levels as usize,
        l0_compaction_trigger: plan.l0_compaction_trigger as usize,
        l0_slowdown_trigger: plan.l0_slowdown_trigger as usize,
        l0_stop_trigger: plan.l0_stop_trigger as usize,
        yield_hook: Some(yield_hook),
        ..Options::default()
    }
}

/// Runs one phase on the tree in `dir` on a fresh executor.
///
/// # Errors
/// The tree fails to open, read, write, settle or close.
pub fn run(phase: Phase, plan: &Plan, dir: &Path) -> Result<Outcome, BoxError> {
    let (plan, dir) = (plan.clone(), dir.to_path_buf());
    let before = sysio::write_bytes()?;
    let mut outcome = harness::run_on_executor("ekv-bench-lsm", move || async move {
        phase_on_executor(phase, &plan, &dir).await.map_err(|e| e.to_string())
    })?;
    outcome.disk_bytes_written = sysio::write_bytes()?.saturating_sub(before);
    Ok(outcome)
}

async fn phase_on_executor(phase: Phase, plan: &Plan, dir: &Path) -> Result<Outcome, BoxError> {
    let fs = GlommioFs::new(dir).await?;
    let lsm = Lsm::open(fs, dir.to_path_buf(), options(plan)).await?;
    let tq = glommio::executor().create_task_queue(
        Shares::Static(BACKGROUND_SHARES),
        TqLatency::NotImportant,
        "lsm-bg",
    );
    let (f, c) = (lsm.clone(), lsm.clone());
    let flusher = glommio::spawn_local_into(async move { f.run_flusher().await }, tq)?;
    let compactor = glommio::spawn_local_into(async move { c.run_compactor().await }, tq)?;
    // glommio 0.9 can park the executor while a task queue is still
    // runnable (when it is preempted before running any queue); nothing
    // then wakes it. A pending timer does: this one bounds such a stall to
    // 10 ms. See linux-only.md.
    let keep_alive = Rc::new(std::cell::Cell::new(true));
    let alive = keep_alive.clone();
    let ticker = glommio::spawn_local(async move {
        while alive.get() {
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
        }
    });

    let ran = workload(phase, plan, &lsm).await;
    let settled = match (&ran, phase.writes()) {
        (Ok(_), true) => match lsm.flush().await {
            Ok(()) => lsm.wait_for_compactions().await,
            Err(e) => Err(e),
        },
        _ => Ok(()),
    };
    let stats = lsm.stats();
    let closed = lsm.close().await;
    let flushed = flusher.await;
    let compacted = compactor.await;
    keep_alive.set(false);
    ticker.await;
    let mut outcome = ran?;
    settled?;
    closed?;
    flushed?;
    compacted?;
    outcome.stall_ms = Some(stats.stall_micros as f64 / 1e3);
    outcome.internals = internals(phase, &stats, outcome.found.map_or(0, |(_, gets)| gets));
    Ok(outcome)
}

/// The rows of ekv's own counters for a phase.
fn internals(phase: Phase, s: &Stats, gets: u64) -> Vec<(String, f64)> {
    let mut v = vec![
        ("stall_ms".to_owned(), s.stall_micros as f64 / 1e3),
        ("stop_ms".to_owned(), s.stop_micros as f64 / 1e3),
        ("max_stall_ms".to_owned(), s.max_stall_micros as f64 / 1e3),
        ("stalled_writes".to_owned(), s.stall_count as f64),
    ];
    if phase.writes() {
        v.push(("flushes".to_owned(), s.flushes as f64));
        v.push(("compactions".to_owned(), s.compactions as f64));
        v.push(("trivial_moves".to_owned(), s.trivial_moves as f64));
        v.push(("table_write_amp".to_owned(), s.write_amplification()));
    }
    if !phase.writes() || phase == Phase::Mixed {
        v.push(("cache_hit_pct".to_owned(), s.cache_hit_ratio() * 100.0));
        if matches!(phase, Phase::ReadRandom | Phase::ReadMissing) && gets > 0 {
            v.push(("table_probes_per_get".to_owned(), s.table_probes as f64 / gets as f64));
        }
    }
    for (i, l) in s.levels.iter().enumerate().filter(|(_, l)| l.files > 0) {
        v.push((format!("L{i}_files"), l.files as f64));
        v.push((format!("L{i}_mib"), l.bytes as f64 / (1u64 << 20) as f64));
    }
    v
}

async fn workload(phase: Phase, plan: &Plan, lsm: &Lsm<GlommioFs>) -> Result<Outcome, BoxError> {
    let cf = lsm.default_cf();
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
                lsm.put(cf, &key, values.next_value()).await?;
                meter.done(&mut lat);
            }
            writes = n;
        }
        Phase::ReadRandom | Phase::ReadMissing => {
            let size = if phase == Phase::ReadMissing { KEY_SIZE + 1 } else { KEY_SIZE };
            for _ in 0..n {
                encode_key(keys.random(), size, &mut key);
                if lsm.get(cf, &key).await?.is_some() {
                    found += 1;
                }
                gets += 1;
                meter.done(&mut lat);
            }
        }
        Phase::ReadSeq => {
            let mut it = lsm.iter(cf, IterOptions::default())?;
            it.seek_to_first().await?;
            let mut bytes = 0usize;
            while it.valid() && meter.ops() < n {
                bytes += it.key().len() + it.value().len();
                it.next().await?;
                meter.done(&mut lat);
            }
            std::hint::black_box(bytes);
        }
        Phase::SeekRandom => {
            // One iterator for the whole run, as db_bench's seekrandom.
            let mut it = lsm.iter(cf, IterOptions::default())?;
            let mut bytes = 0usize;
            for _ in 0..n {
                encode_key(keys.random(), KEY_SIZE, &mut key);
                it.seek(&key).await?;
                if it.valid() && it.key() == key.as_slice() {
                    found += 1;
                }
                let mut j = 0;
                while j < SEEK_NEXTS && it.valid() {
                    bytes += it.key().len() + it.value().len();
                    it.next().await?;
                    j += 1;
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
                    if lsm.get(cf, &key).await?.is_some() {
                        found += 1;
                    }
                    gets += 1;
                    meter.done(&mut lat);
                } else {
                    lsm.put(cf, &key, values.next_value()).await?;
                    writes += 1;
                    meter.done(&mut write_lat);
                }
            }
        }
    }
    Ok(Outcome::measured(phase, &meter, &lat, &write_lat, (found, gets), writes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny plan: enough keys for several flushes and a compaction.
    fn tiny() -> Plan {
        Plan {
            num: 20_000,
            reads: 2_000,
            seeks: 200,
            mixed_ops: 20_000,
            cache_size: 256 << 10,
            memtable_size: 256 << 10,
            target_file_size: 256 << 10,
            base_level_size: 1 << 20,
            ..Plan::quick()
        }
    }

    #[test]
    fn phases_reopen_the_tree_on_fresh_executors() {
        let root = crate::harness::data_dir(None).unwrap();
        let plan = tiny();
        let dir = root.path().join("ekv").join("rand");
        for phase in [Phase::FillRandom, Phase::Overwrite, Phase::ReadRandom, Phase::ReadSeq, Phase::Mixed] {
            let o = run(phase, &plan, &dir).unwrap_or_else(|e| panic!("{phase:?}: {e}"));
            assert_eq!(o.ops, if phase == Phase::ReadSeq { o.ops } else { plan.ops(phase) }, "{phase:?}");
            if phase.writes() {
                assert!(o.disk_bytes_written > 0 && o.write_amp().unwrap() > 0.5, "{phase:?} {o:?}");
            }
            if phase == Phase::ReadRandom {
                let (found, of) = o.found.unwrap();
                assert!(found > of / 2 && found < of, "{found} of {of}");
            }
            if phase == Phase::ReadSeq {
                // About 86% of the keys exist after two random fills.
                assert!(o.ops > plan.num * 8 / 10 && o.ops < plan.num, "{}", o.ops);
            }
        }
    }
}
