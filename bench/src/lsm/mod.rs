//! The `lsm` suite: ekv's LSM tree against RocksDB's `db_bench` (and,
//! with the `fjall` feature, fjall) on db_bench's workloads, in one run.
//!
//! ```text
//! bench/setup-lsm                                   # installs db_bench (rocksdb-tools)
//! cargo run --release -p ekv-bench -- lsm [--quick] [--json] [--unpinned]
//! cargo run --release -p ekv-bench --features fjall -- lsm
//! ```
//!
//! # What runs
//!
//! db_bench's canonical sequence, 16-byte keys (db_bench's layout) and
//! 100-byte values, 5 M keys (200 k with `--quick`), each step on the
//! database the one before left ([`workload::Phase`]): `fillseq` (fresh),
//! `fillrandom` (fresh), `overwrite`, `readrandom`, `readmissing`,
//! `readseq`, `seekrandom` (10 nexts per seek) and `readrandomwriterandom`
//! (50% reads, with flushes and compactions running). Phases go in turn
//! through every engine (ekv, RocksDB, fjall), so the machine's drift
//! touches all alike. Each engine opens its database for a phase and closes
//! it after (db_bench is one process per phase), and write phases end with
//! a flush and a wait for compactions, counted in their write bytes but
//! not in their rates.
//!
//! # How engines are made comparable
//!
//! - The same LSM shape ([`workload::Plan`]): memtable, frozen memtables,
//!   block cache, table size, L1 target and ratio, L0 triggers, block size,
//!   bloom bits; no compression; no log (RocksDB `--disable_wal`).
//! - The same I/O: ekv does all its I/O with `O_DIRECT`, so RocksDB runs
//!   with direct reads, flushes and compactions; the data set is about
//!   nine times the block cache, so reads reach the disk. (fjall cannot; see
//!   [`fjall`].)
//! - The same CPU: unless `--unpinned`, the whole process (ekv's executor
//!   with its foreground and background task queues, fjall's threads) and
//!   every `db_bench` child are pinned to one CPU, the last one allowed. A
//!   shard of ekv has one core for its foreground and background work;
//!   pinned, RocksDB's foreground thread and its two background threads
//!   share one core too.
//! - The same measures: ops/s over the operation loop and per-operation
//!   latency, each sample the time since the previous operation ended
//!   (db_bench's `--histogram`); write amplification = bytes the engine's
//!   process wrote to storage (`/proc/<pid>/io` `write_bytes`, settling
//!   included) / key+value bytes put; space amplification = allocated
//!   bytes of the database directory after `overwrite` settles / expected
//!   live key+value bytes (RocksDB's `LOG*` info logs left out).

mod ekv;
#[cfg(feature = "fjall")]
mod fjall;
mod rocksdb;
mod sysio;
mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::Args;

use crate::harness::{self, CaseResult, Machine, Report};
use workload::{Outcome, Phase, Plan, SEEK_NEXTS};

pub(crate) type BoxError = Box<dyn std::error::Error>;

/// Options of the `lsm` suite only.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct LsmArgs {
    /// Do not pin the engines to one CPU: RocksDB's and fjall's background
    /// threads may then use every core, while ekv's shard still runs on one
    /// thread.
    #[arg(long)]
    pub unpinned: bool,
}

/// An engine of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Engine {
    Ekv,
    RocksDb,
    #[cfg(feature = "fjall")]
    Fjall,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Ekv => "ekv",
            Engine::RocksDb => "rocksdb",
            #[cfg(feature = "fjall")]
            Engine::Fjall => "fjall",
        }
    }

    /// Files of its database directory that are not data (left out of the
    /// space used).
    fn is_info_log(self, name: &str) -> bool {
        self == Engine::RocksDb && name.starts_with("LOG")
    }
}

/// Runs the LSM suite.
///
/// # Errors
/// The data directory cannot be made, or ekv fails. A peer that fails is
/// reported in the notes and left out of the rest of the run.
pub fn run(opts: &crate::Opts, args: LsmArgs) -> Result<Report, BoxError> {
    let data = harness::data_dir(opts.dir.clone())?;
    let mut report = Report::new("lsm", Machine::detect(Some(data.path())));
    let plan = if opts.quick { Plan::quick() } else { Plan::full() };

    let wanted: Vec<Phase> = Phase::ALL.into_iter().filter(|&p| opts.wants(&case_base(p, &plan))).collect();
    let to_run: Vec<Phase> = Phase::ALL
        .into_iter()
        .filter(|p| wanted.contains(p) || wanted.iter().any(|w| w.prerequisites().contains(p)))
        .collect();

    let mut engines = vec![Engine::Ekv];
    let db_bench = rocksdb::DbBench::find();
    match &db_bench {
        Some(b) => {
            engines.push(Engine::RocksDb);
            report.note(format!("RocksDB: {}", b.path().display()));
        }
        None => {
            let msg = format!(
                "RocksDB baseline SKIPPED: db_bench not found (PATH, /usr/bin, ${}). Install it with `bench/setup-lsm` \
                 (Debian package rocksdb-tools, RocksDB {}), then rerun; ekv rows below have no baseline",
                rocksdb::DB_BENCH_ENV,
                rocksdb::EXPECTED_VERSION
            );
            eprintln!("ekv-bench lsm: {msg}");
            report.note(msg);
        }
    }
    #[cfg(feature = "fjall")]
    engines.push(Engine::Fjall);

    let original_cpus = sysio::allowed_cpu_list();
    let cpu = if args.unpinned { None } else { sysio::last_allowed_cpu() };
    let cpu = match cpu.map(|c| (c, sysio::pin_process(&c.to_string()))) {
        Some((c, Ok(()))) => {
            let how: Vec<String> = engines
                .iter()
                .map(|e| match e {
                    Engine::Ekv => "ekv: its executor, foreground and background task queues".to_owned(),
                    Engine::RocksDb => {
                        format!(
                            "RocksDB: `taskset -c {c} db_bench`, its foreground thread and 2 background jobs"
                        )
                    }
                    #[cfg(feature = "fjall")]
                    Engine::Fjall => {
                        "fjall: the driving thread and its flush and compaction threads".to_owned()
                    }
                })
                .collect();
            report.note(format!("pinned: every engine ran on CPU {c} alone ({})", how.join("; ")));
            Some(c)
        }
        Some((c, Err(e))) => {
            report.note(format!("could not pin to CPU {c} ({e}); engines ran unpinned"));
            None
        }
        None => {
            report.note(
                "unpinned: peers' background threads could use every core; ekv's shard ran on one thread",
            );
            None
        }
    };

    let mut runner =
        Runner { plan: plan.clone(), root: data.path().to_path_buf(), db_bench, cpu, ..Runner::default() };
    let result = runner.run_all(&engines, &to_run);
    if cpu.is_some() {
        if let Some(all) = &original_cpus {
            let _ = sysio::pin_process(all);
        }
    }
    result?;

    for r in rows(&runner, &wanted) {
        report.push(r);
    }
    for n in notes(&runner, &plan) {
        report.note(n);
    }
    for n in runner.failures {
        report.note(n);
    }
    drop(data);
    Ok(report)
}

/// The case name of a phase, with its parameters.
fn case_base(p: Phase, plan: &Plan) -> String {
    let name = p.db_bench_name();
    match p {
        Phase::FillSeq | Phase::FillRandom | Phase::Overwrite | Phase::ReadSeq => {
            format!("{name}/num={}", plan.num)
        }
        Phase::ReadRandom | Phase::ReadMissing => format!("{name}/reads={}", plan.reads),
        Phase::SeekRandom => format!("{name}/seeks={}/nexts={SEEK_NEXTS}", plan.seeks),
        Phase::Mixed => format!("{name}/ops={}/readpct={}", plan.mixed_ops, workload::READ_PERCENT),
    }
}

/// Runs phases through engines and keeps what they report.
#[derive(Debug, Default)]
struct Runner {
    plan: Plan,
    root: PathBuf,
    db_bench: Option<rocksdb::DbBench>,
    cpu: Option<usize>,
    outcomes: BTreeMap<(Engine, Phase), Outcome>,
    /// Space amplification after `overwrite` settled.
    space_amp: BTreeMap<Engine, f64>,
    /// Peers that failed: left out from then on.
    failed: BTreeSet<Engine>,
    /// Why they failed.
    failures: Vec<String>,
    rocksdb_meta: Option<rocksdb::Meta>,
}

impl Runner {
    fn dir(&self, engine: Engine, p: Phase) -> PathBuf {
        self.root.join(engine.name()).join(p.db().dir_name())
    }

    fn run_all(&mut self, engines: &[Engine], phases: &[Phase]) -> Result<(), BoxError> {
        for &p in phases {
            for &e in engines {
                if self.failed.contains(&e) {
                    continue;
                }
                let dir = self.dir(e, p);
                if p.fresh() && dir.exists() {
                    std::fs::remove_dir_all(&dir)?;
                }
                std::fs::create_dir_all(dir.parent().unwrap_or(&self.root))?;
                eprintln!("ekv-bench lsm: {} {} ...", e.name(), p.db_bench_name());
                let t = std::time::Instant::now();
                match self.run_one(e, p, &dir) {
                    Ok(o) => {
                        eprintln!(
                            "ekv-bench lsm: {} {}: {:.0} ops/s, {:.1} s",
                            e.name(),
                            p.db_bench_name(),
                            o.ops_per_s,
                            t.elapsed().as_secs_f64()
                        );
                        self.outcomes.insert((e, p), o);
                    }
                    Err(err) if e == Engine::Ekv => {
                        return Err(format!("ekv {}: {err}", p.db_bench_name()).into());
                    }
                    Err(err) => {
                        let msg = format!(
                            "{} failed in {} and was left out from there on: {err}",
                            e.name(),
                            p.db_bench_name()
                        );
                        eprintln!("ekv-bench lsm: {msg}");
                        self.failures.push(msg);
                        self.failed.insert(e);
                        continue;
                    }
                }
                if p == Phase::Overwrite {
                    let used = sysio::allocated_bytes(&dir, &|n| e.is_info_log(n))?;
                    self.space_amp.insert(e, used as f64 / self.plan.live_bytes_after_overwrite());
                }
            }
            if p == Phase::FillSeq {
                // Nothing reads the `seq` database again; free the space.
                for &e in engines {
                    let _ = std::fs::remove_dir_all(self.dir(e, p));
                }
            }
        }
        Ok(())
    }

    fn run_one(&mut self, e: Engine, p: Phase, dir: &Path) -> Result<Outcome, BoxError> {
        match e {
            Engine::Ekv => ekv::run(p, &self.plan, dir),
            Engine::RocksDb => {
                let bench = self.db_bench.as_ref().ok_or("no db_bench")?;
                let (o, meta) = bench.run(p, &self.plan, dir, self.cpu)?;
                self.rocksdb_meta.get_or_insert(meta);
                Ok(o)
            }
            #[cfg(feature = "fjall")]
            Engine::Fjall => fjall::run(p, &self.plan, dir),
        }
    }
}

/// The targets the issue sets, by phase and metric, against RocksDB.
fn rocksdb_target(p: Phase, metric: &str) -> Option<&'static str> {
    match (p, metric) {
        (Phase::FillRandom | Phase::ReadRandom, "ops_per_s") => Some(">= 1.0"),
        (Phase::Mixed, "read_p99_us") => Some("<= 1.0"),
        _ => None,
    }
}

/// `(metric, value)` of one engine's outcome that have a peer counterpart.
fn comparable(p: Phase, o: &Outcome, space_amp: Option<f64>) -> Vec<(&'static str, f64)> {
    let mut m = vec![("ops_per_s", o.ops_per_s)];
    match o.write_lat {
        Some(w) => m.extend([
            ("read_p50_us", o.lat.p50),
            ("read_p99_us", o.lat.p99),
            ("read_p999_us", o.lat.p999),
            ("write_p50_us", w.p50),
            ("write_p99_us", w.p99),
            ("write_p999_us", w.p999),
            ("write_max_us", w.max),
        ]),
        None => m.extend([("p50_us", o.lat.p50), ("p99_us", o.lat.p99), ("p999_us", o.lat.p999)]),
    }
    if let Some((found, of)) = o.found {
        if of > 0 {
            m.push(("found_pct", found as f64 * 100.0 / of as f64));
        }
    }
    if let Some(wa) = o.write_amp() {
        m.push(("write_amp", wa));
    }
    if let Some(ms) = o.stall_ms.filter(|_| p.writes()) {
        m.push(("stall_ms", ms));
    }
    if let Some(sa) = space_amp.filter(|_| p == Phase::Overwrite) {
        m.push(("space_amp", sa));
    }
    m
}

fn rows(r: &Runner, wanted: &[Phase]) -> Vec<CaseResult> {
    let mut out = Vec::new();
    // Keys are sorted by engine first, so dedup leaves each peer once.
    let mut peers: Vec<Engine> = r.outcomes.keys().map(|(e, _)| *e).filter(|e| *e != Engine::Ekv).collect();
    peers.dedup();
    for &p in wanted {
        let Some(ekv) = r.outcomes.get(&(Engine::Ekv, p)) else { continue };
        let base = case_base(p, &r.plan);
        let ekv_metrics = comparable(p, ekv, r.space_amp.get(&Engine::Ekv).copied());
        let mut compared = false;
        for &peer in &peers {
            let Some(po) = r.outcomes.get(&(peer, p)) else { continue };
            compared = true;
            let peer_metrics = comparable(p, po, r.space_amp.get(&peer).copied());
            let case = format!("{base}/vs={}", peer.name());
            for (metric, v) in &ekv_metrics {
                let Some((_, b)) = peer_metrics.iter().find(|(m, _)| m == metric) else { continue };
                let target = if peer == Engine::RocksDb { rocksdb_target(p, metric) } else { None };
                out.push(CaseResult::against(&case, *metric, *v, *b, target));
            }
        }
        if !compared {
            for (metric, v) in &ekv_metrics {
                out.push(CaseResult::plain(&base, *metric, *v));
            }
        }
        let case = format!("{base}/ekv");
        for (metric, v) in &ekv.internals {
            let row = CaseResult::plain(&case, metric.clone(), *v);
            out.push(if p == Phase::Mixed && metric == "max_stall_ms" {
                row.with_target("<= 50")
            } else {
                row
            });
        }
        for &peer in &peers {
            let Some(po) = r.outcomes.get(&(peer, p)) else { continue };
            let case = format!("{base}/{}", peer.name());
            for (metric, v) in &po.internals {
                out.push(CaseResult::plain(&case, metric.clone(), *v));
            }
        }
    }
    out
}

fn notes(r: &Runner, plan: &Plan) -> Vec<String> {
    let mib = |b: u64| b >> 20;
    let mut n = vec![
        format!(
            "{} run: num={} keys of 16 B (db_bench layout: 8-byte big-endian number, '0'-padded) with 100 B values; \
             reads={}, seeks={} (+{SEEK_NEXTS} nexts each, db_bench --seek_nexts as its benchmark.sh sets it), \
             mixed ops={} (rounds of 50 gets then 50 puts); block cache {} MiB, memtable {} MiB (+{} frozen), \
             tables {} MiB, L1 {} MiB x{}, L0 triggers {}/{}/{}, 4 KiB blocks, bloom {} bits/key, no compression, no log",
            if plan.num == Plan::full().num { "full" } else { "quick" },
            plan.num,
            plan.reads,
            plan.seeks,
            plan.mixed_ops,
            mib(plan.cache_size),
            mib(plan.memtable_size),
            plan.max_immutable_memtables,
            mib(plan.target_file_size),
            mib(plan.base_level_size),
            plan.level_size_ratio,
            plan.l0_compaction_trigger,
            plan.l0_slowdown_trigger,
            plan.l0_stop_trigger,
            plan.bloom_bits,
        ),
        "ratio = ekv / peer: above 1 is better for ops_per_s, below 1 is better for latencies, write_amp, \
         space_amp and stall_ms"
            .to_owned(),
        "readrandom reads random keys of [0, num) after fillrandom+overwrite (about 86% exist: found_pct); \
         readmissing reads keys that never exist (one more '0', sorting between stored keys); readseq scans \
         the whole rand db; every phase has its own seed"
            .to_owned(),
        format!(
            "write_amp: bytes written to storage by the engine's process during the phase, flush and wait for \
             compactions included (/proc io write_bytes; for db_bench the reaped child's) / 116 B per put; \
             space_amp: allocated bytes of the db dir after overwrite settled / {:.1} MiB expected live data \
             (num x (1 - e^-2) keys x 116 B)",
            plan.live_bytes_after_overwrite() / f64::from(1u32 << 20)
        ),
        format!(
            "ekv: background (flush, compaction) in a glommio task queue of {} shares against the foreground's \
             1000, yielding through Options::yield_hook; `/ekv` rows are its own counters (stall, levels after \
             the phase)",
            ekv::BACKGROUND_SHARES
        ),
    ];
    if let Some(meta) = &r.rocksdb_meta {
        let version = meta.version.as_deref().unwrap_or("unknown");
        n.push(format!(
            "RocksDB {version} db_bench, one invocation per phase: --disable_wal --compression_type=none \
             --use_direct_reads --use_direct_io_for_flush_and_compaction --max_background_jobs=2 --threads=1 \
             --histogram, same shape flags; write phases add stats,flush,waitforcompaction; stall_ms is its \
             'Cumulative stall'"
        ));
        if version != rocksdb::EXPECTED_VERSION {
            n.push(format!(
                "db_bench is RocksDB {version}, not {}: numbers may differ",
                rocksdb::EXPECTED_VERSION
            ));
        }
        if meta.assertions {
            n.push(
                "this db_bench was built with assertions on (it prints 'Assertions are enabled; benchmarks \
                 unnecessarily slow'): Debian's build; RocksDB's figures carry that cost"
                    .to_owned(),
            );
        }
    }
    #[cfg(feature = "fjall")]
    if r.outcomes.keys().any(|(e, _)| *e == Engine::Fjall) {
        n.push(
            "fjall 2.11 (fjall 3 needs Rust 1.90): journal cannot be disabled, so it runs unsynced and \
             unflushed (manual_journal_persist) and its bytes count in its write_amp; no direct I/O, so its reads \
             come from the page cache (the whole data set fits); seekrandom opens a range iterator per seek; one \
             flush and one compaction thread"
                .to_owned(),
        );
    }
    if let Some(o) = r.outcomes.get(&(Engine::Ekv, Phase::Mixed)) {
        let counters: BTreeMap<&str, f64> = o.internals.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        n.push(format!(
            "mixed run: ekv flushed {} memtables and ran {} compactions while it ran; write_amp of the phase shows \
             each engine's compaction work",
            counters.get("flushes").copied().unwrap_or(0.0),
            counters.get("compactions").copied().unwrap_or(0.0)
        ));
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(ops_per_s: f64, p99: f64) -> Outcome {
        Outcome {
            ops: 100,
            ops_per_s,
            lat: workload::Dist { count: 100, p50: 1.0, p99, p999: 2.0 * p99, max: 3.0 * p99 },
            found: Some((86, 100)),
            user_bytes_written: 1160,
            disk_bytes_written: 2320,
            stall_ms: Some(0.0),
            internals: vec![("max_stall_ms".into(), 12.0)],
            ..Outcome::default()
        }
    }

    #[test]
    fn rows_compare_against_peers_with_the_issue_targets() {
        let mut r = Runner { plan: Plan::quick(), ..Runner::default() };
        r.outcomes.insert((Engine::Ekv, Phase::FillRandom), outcome(200.0, 10.0));
        r.outcomes.insert((Engine::RocksDb, Phase::FillRandom), outcome(100.0, 20.0));
        let mut mixed = outcome(50.0, 30.0);
        mixed.write_lat = Some(workload::Dist { count: 50, p50: 1.0, p99: 2.0, p999: 3.0, max: 40_000.0 });
        r.outcomes.insert((Engine::Ekv, Phase::Mixed), mixed.clone());
        r.outcomes.insert((Engine::RocksDb, Phase::Mixed), mixed);
        let rows = rows(&r, &[Phase::FillRandom, Phase::Mixed]);
        let find = |case: &str, metric: &str| {
            rows.iter()
                .find(|x| x.case.starts_with(case) && x.metric == metric)
                .unwrap_or_else(|| panic!("{case} {metric}"))
        };
        let tput = find("fillrandom/num=200000/vs=rocksdb", "ops_per_s");
        assert_eq!(
            (tput.ratio, tput.target.as_deref(), tput.target_met()),
            (Some(2.0), Some(">= 1.0"), Some(true))
        );
        assert_eq!(find("fillrandom/num=200000/vs=rocksdb", "write_amp").ratio, Some(1.0));
        let p99 = find("readrandomwriterandom/ops=200000/readpct=50/vs=rocksdb", "read_p99_us");
        assert_eq!(p99.target.as_deref(), Some("<= 1.0"));
        assert!(rows.iter().any(|x| x.metric == "write_max_us"));
        let stall = find("readrandomwriterandom/ops=200000/readpct=50/ekv", "max_stall_ms");
        assert_eq!(stall.target_met(), Some(true));
        let fill_stall = find("fillrandom/num=200000/ekv", "max_stall_ms");
        assert_eq!(fill_stall.target, None);
    }

    #[test]
    fn rows_without_a_peer_are_plain() {
        let mut r = Runner { plan: Plan::quick(), ..Runner::default() };
        r.outcomes.insert((Engine::Ekv, Phase::ReadRandom), outcome(100.0, 5.0));
        let rows = rows(&r, &[Phase::ReadRandom]);
        let tput = rows.iter().find(|x| x.metric == "ops_per_s").unwrap();
        assert_eq!(tput.case, "readrandom/reads=50000");
        assert_eq!((tput.baseline, tput.target.as_deref()), (None, None));
        assert!(rows.iter().any(|x| x.metric == "found_pct" && (x.value - 86.0).abs() < 1e-9));
    }

    #[test]
    fn prerequisites_run_for_a_filtered_phase() {
        let plan = Plan::quick();
        assert!(case_base(Phase::SeekRandom, &plan).starts_with("seekrandom/"));
        assert_eq!(Phase::ReadSeq.prerequisites(), &[Phase::FillRandom, Phase::Overwrite]);
        assert!(Phase::FillSeq.prerequisites().is_empty());
    }
}
