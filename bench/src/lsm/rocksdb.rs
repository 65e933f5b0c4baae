//! The RocksDB peer: Debian's `db_bench` (package `rocksdb-tools`, RocksDB
//! 7.8.3) as a child process, one invocation per phase, its output parsed.
//!
//! Every invocation gets the same flags ekv gets as options: 16-byte keys,
//! 100-byte values, no WAL (`--disable_wal`, since ekv's LSM keeps no log),
//! no compression, the same block cache, memtable, table size, level
//! shape, L0 triggers, block size and bloom bits, direct I/O for reads,
//! flushes and compactions (ekv does all its I/O with `O_DIRECT`, so
//! neither reads from the page cache), one foreground thread and
//! `--max_background_jobs=2`. Write phases end with `flush` and
//! `waitforcompaction` in the same process, and the ones that can stall
//! print `stats` for the stall counter.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::sysio;
use super::workload::{
    Dist, Outcome, Phase, Plan, ENTRY_BYTES, KEY_SIZE, READ_PERCENT, SEEK_NEXTS, VALUE_SIZE,
};
use super::BoxError;

/// Environment variable naming a `db_bench` binary to use instead of the one
/// on `PATH`.
pub const DB_BENCH_ENV: &str = "EKV_BENCH_DB_BENCH";

/// The version the suite is written against.
pub const EXPECTED_VERSION: &str = "7.8.3";

/// A `db_bench` binary.
#[derive(Debug, Clone)]
pub struct DbBench {
    path: PathBuf,
}

/// What an invocation said about itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta {
    /// `RocksDB:    version X`.
    pub version: Option<String>,
    /// It printed "Assertions are enabled" (a build without `NDEBUG`).
    pub assertions: bool,
}

impl DbBench {
    /// `$EKV_BENCH_DB_BENCH` if set (nothing if it names no file, which is
    /// also how to run without the peer), else `db_bench` on `PATH`, else
    /// `/usr/bin/db_bench`.
    pub fn find() -> Option<Self> {
        let path = match std::env::var_os(DB_BENCH_ENV) {
            Some(p) => Some(PathBuf::from(p)).filter(|p| p.is_file())?,
            None => sysio::which("db_bench")
                .or_else(|| Some(PathBuf::from("/usr/bin/db_bench")).filter(|p| p.is_file()))?,
        };
        Some(Self { path })
    }

    /// The binary.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `phase` on the database in `dir`, pinned to `cpu` if given.
    ///
    /// # Errors
    /// `db_bench` cannot be started, fails, or prints no result line for the
    /// phase.
    pub fn run(
        &self,
        phase: Phase,
        plan: &Plan,
        dir: &Path,
        cpu: Option<usize>,
    ) -> Result<(Outcome, Meta), BoxError> {
        let args = args(phase, plan, dir);
        let mut cmd = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(&self.path);
                c
            }
            None => Command::new(&self.path),
        };
        cmd.args(&args);
        let before = sysio::write_bytes()?;
        let out = cmd.output().map_err(|e| format!("starting {}: {e}", self.path.display()))?;
        let after = sysio::write_bytes()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(format!(
                "db_bench {} failed ({}): {}",
                phase.db_bench_name(),
                out.status,
                tail(&format!("{stdout}\n{stderr}"), 1500)
            )
            .into());
        }
        let parsed = parse(&format!("{stdout}\n{stderr}"));
        let bench = parsed.benches.iter().find(|b| b.name == phase.db_bench_name()).ok_or_else(|| {
            format!("no `{}` result in db_bench output: {}", phase.db_bench_name(), tail(&stdout, 1500))
        })?;
        let hist = |kind: &str| bench.hists.iter().find(|(k, _)| k == kind).map(|(_, d)| *d);
        let (lat, write_lat) = match phase {
            Phase::Mixed => (hist("read").unwrap_or_default(), hist("write")),
            Phase::SeekRandom => (hist("seek").unwrap_or_default(), None),
            p if p.writes() => (hist("write").unwrap_or_default(), None),
            _ => (hist("read").unwrap_or_default(), None),
        };
        let writes = match phase {
            Phase::Mixed => bench.mixed_writes.unwrap_or(0),
            p if p.writes() => bench.ops,
            _ => 0,
        };
        let outcome = Outcome {
            ops: bench.ops,
            ops_per_s: bench.ops_per_s,
            lat,
            write_lat,
            found: bench.found,
            disk_bytes_written: after.saturating_sub(before),
            user_bytes_written: writes * ENTRY_BYTES,
            stall_ms: parsed.stall_ms,
            internals: Vec::new(),
        };
        Ok((outcome, Meta { version: parsed.version, assertions: parsed.assertions }))
    }
}

/// The flags of one invocation.
pub fn args(phase: Phase, plan: &Plan, dir: &Path) -> Vec<String> {
    let mut benches = vec![phase.db_bench_name()];
    if phase.writes() {
        // Stall counter first, then settle as ekv does: flush the memtable
        // and wait for compactions, all counted in the phase's write bytes.
        benches.extend(["stats", "flush", "waitforcompaction"]);
    }
    let mut a = vec![
        format!("--benchmarks={}", benches.join(",")),
        format!("--db={}", dir.display()),
        format!("--num={}", plan.num),
        format!("--key_size={KEY_SIZE}"),
        format!("--value_size={VALUE_SIZE}"),
        "--disable_wal=1".into(),
        "--compression_type=none".into(),
        format!("--cache_size={}", plan.cache_size),
        format!("--bloom_bits={}", plan.bloom_bits),
        format!("--block_size={}", plan.block_size),
        format!("--write_buffer_size={}", plan.memtable_size),
        format!("--max_write_buffer_number={}", plan.max_immutable_memtables + 1),
        format!("--target_file_size_base={}", plan.target_file_size),
        format!("--max_bytes_for_level_base={}", plan.base_level_size),
        format!("--max_bytes_for_level_multiplier={}", plan.level_size_ratio),
        format!("--num_levels={}", plan.num_levels),
        format!("--level0_file_num_compaction_trigger={}", plan.l0_compaction_trigger),
        format!("--level0_slowdown_writes_trigger={}", plan.l0_slowdown_trigger),
        format!("--level0_stop_writes_trigger={}", plan.l0_stop_trigger),
        "--use_direct_reads=1".into(),
        "--use_direct_io_for_flush_and_compaction=1".into(),
        "--max_background_jobs=2".into(),
        "--threads=1".into(),
        "--histogram=1".into(),
        "--progress_reports=0".into(),
        "--statistics=0".into(),
        format!("--seed={}", phase.seed(plan.seed)),
    ];
    if !phase.fresh() {
        a.push("--use_existing_db=1".into());
    }
    match phase {
        Phase::ReadRandom | Phase::ReadMissing => a.push(format!("--reads={}", plan.reads)),
        Phase::SeekRandom => {
            a.push(format!("--reads={}", plan.seeks));
            a.push(format!("--seek_nexts={SEEK_NEXTS}"));
        }
        Phase::Mixed => {
            a.push(format!("--reads={}", plan.mixed_ops));
            a.push(format!("--readwritepercent={READ_PERCENT}"));
        }
        // readseq: `--reads` defaults to `--num`, so it scans to the end.
        _ => {}
    }
    a
}

/// One benchmark's result in db_bench's output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BenchResult {
    /// `fillrandom`, ...
    pub name: String,
    /// Operations done.
    pub ops: u64,
    /// `ops/sec`.
    pub ops_per_s: f64,
    /// `(X of Y found)`, or `found:` and `reads:` of the mixed run.
    pub found: Option<(u64, u64)>,
    /// `writes:` of the mixed run.
    pub mixed_writes: Option<u64>,
    /// `Microseconds per <kind>:` histograms (`read`, `write`, `seek`).
    pub hists: Vec<(String, Dist)>,
}

/// Everything read from one invocation's output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// Benchmarks, in order.
    pub benches: Vec<BenchResult>,
    /// The last `Cumulative stall:` of the `stats` output, in ms.
    pub stall_ms: Option<f64>,
    /// `RocksDB:    version X`.
    pub version: Option<String>,
    /// "Assertions are enabled" was printed.
    pub assertions: bool,
}

/// Parses db_bench's output. A result line (`name : X micros/op Y ops/sec
/// Z seconds N operations; ... (F of R found)`) opens a benchmark; the
/// `Microseconds per <kind>:` histograms after it belong to it.
pub fn parse(out: &str) -> Parsed {
    let mut p = Parsed::default();
    let mut hist_kind: Option<String> = None;
    for line in out.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("RocksDB:") {
            p.version = v.trim().strip_prefix("version").map(|s| s.trim().to_owned());
        } else if t.contains("Assertions are enabled") {
            p.assertions = true;
        } else if let Some(rest) = t.strip_prefix("Cumulative stall:") {
            p.stall_ms = parse_hms_ms(rest.split_whitespace().next().unwrap_or(""));
        } else if let Some(b) = parse_result_line(t) {
            p.benches.push(b);
            hist_kind = None;
        } else if let Some(kind) = t.strip_prefix("Microseconds per ").and_then(|r| r.strip_suffix(':')) {
            hist_kind = Some(kind.to_owned());
            if let Some(b) = p.benches.last_mut() {
                b.hists.push((kind.to_owned(), Dist::default()));
            }
        } else if hist_kind.is_some() {
            let Some((_, d)) = p.benches.last_mut().and_then(|b| b.hists.last_mut()) else { continue };
            if let Some(r) = t.strip_prefix("Count:") {
                d.count = r.split_whitespace().next().and_then(|c| c.parse().ok()).unwrap_or(0);
            } else if t.starts_with("Min:") {
                d.max = field_after(t, "Max:").unwrap_or(0.0);
            } else if t.starts_with("Percentiles:") {
                d.p50 = field_after(t, "P50:").unwrap_or(0.0);
                d.p99 = field_after(t, "P99:").unwrap_or(0.0);
                d.p999 = field_after(t, "P99.9:").unwrap_or(0.0);
                hist_kind = None;
            }
        }
    }
    p
}

fn field_after(line: &str, label: &str) -> Option<f64> {
    let mut it = line.split_whitespace();
    it.by_ref().find(|w| *w == label)?;
    it.next()?.parse().ok()
}

fn parse_result_line(t: &str) -> Option<BenchResult> {
    let (name, rest) = t.split_once(':')?;
    let name = name.trim();
    if name.is_empty() || name.contains(' ') || !rest.contains("micros/op") {
        return None;
    }
    let words: Vec<&str> = rest.split_whitespace().collect();
    let before = |label: &str| -> Option<&str> {
        let i = words.iter().position(|w| w.trim_end_matches(';') == label)?;
        words.get(i.checked_sub(1)?).copied()
    };
    let ops_per_s = before("ops/sec")?.parse().ok()?;
    let ops = before("operations")?.parse().ok()?;
    let mut b = BenchResult { name: name.to_owned(), ops, ops_per_s, ..BenchResult::default() };
    // `(12688 of 20000 found)`
    if let Some(i) = words.iter().position(|w| *w == "of") {
        let found = words.get(i.wrapping_sub(1)).and_then(|w| w.trim_start_matches('(').parse().ok());
        let of = words.get(i + 1).and_then(|w| w.parse().ok());
        if let (Some(f), Some(o)) = (found, of) {
            b.found = Some((f, o));
        }
    }
    // `( reads:2500 writes:2500 total:5000 found:1234)`
    let tagged = |tag: &str| -> Option<u64> {
        words
            .iter()
            .find_map(|w| w.trim_start_matches('(').strip_prefix(tag))
            .map(|v| v.trim_end_matches(')'))?
            .parse()
            .ok()
    };
    if let (Some(reads), Some(found)) = (tagged("reads:"), tagged("found:")) {
        b.found = Some((found, reads));
    }
    b.mixed_writes = tagged("writes:");
    Some(b)
}

/// `00:01:2.500` (H:M:S) in ms.
fn parse_hms_ms(s: &str) -> Option<f64> {
    let mut parts = s.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let sec: f64 = parts.next()?.parse().ok()?;
    Some(((h * 60.0 + m) * 60.0 + sec) * 1000.0)
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "RocksDB:    version 7.8.3
Date:       Mon Nov 23 19:05:19 2026
WARNING: Assertions are enabled; benchmarks unnecessarily slow
------------------------------------------------
DB path: [/x/db]
fillrandom   :       2.187 micros/op 457140 ops/sec 0.219 seconds 100000 operations;   50.6 MB/s
Microseconds per write:
Count: 100000 Average: 2.1870  StdDev: 10.59
Min: 0  Median: 1.5282  Max: 3293
Percentiles: P50: 1.53 P75: 1.96 P99: 4.63 P99.9: 22.80 P99.99: 88.75
------------------------------------------------------
[       0,       1 ]    19087  19.087%  19.087% ####

Cumulative stall: 00:00:0.000 H:M:S, 0.0 percent
Cumulative stall: 00:01:2.500 H:M:S, 3.0 percent
DB path: [/x/db]
readrandom   :       1.756 micros/op 568165 ops/sec 0.035 seconds 20000 operations;   39.9 MB/s (12688 of 20000 found)

Microseconds per read:
Count: 20000 Average: 1.7585  StdDev: 2.26
Min: 0  Median: 1.1438  Max: 162
Percentiles: P50: 1.14 P75: 1.70 P99: 3.58 P99.9: 27.33 P99.99: 101.50
readmissing  :       2.657 micros/op 376204 ops/sec 0.266 seconds 100000 operations; (0 of 100000 found)
readrandomwriterandom :       5.000 micros/op 200000 ops/sec 1.000 seconds 200000 operations; ( reads:100000 writes:100000 total:200000 found:86000)
Microseconds per read:
Count: 100000 Average: 3.0  StdDev: 1.0
Min: 0  Median: 2.0  Max: 900
Percentiles: P50: 2.00 P75: 2.50 P99: 9.00 P99.9: 40.00 P99.99: 100.00
Microseconds per write:
Count: 100000 Average: 3.0  StdDev: 1.0
Min: 0  Median: 2.0  Max: 70000
Percentiles: P50: 3.00 P75: 3.50 P99: 11.00 P99.9: 50.00 P99.99: 100.00
";

    #[test]
    fn parses_results_histograms_and_stalls() {
        let p = parse(SAMPLE);
        assert_eq!(p.version.as_deref(), Some("7.8.3"));
        assert!(p.assertions);
        assert_eq!(p.stall_ms, Some(62_500.0));
        let names: Vec<&str> = p.benches.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["fillrandom", "readrandom", "readmissing", "readrandomwriterandom"]);

        let fill = &p.benches[0];
        assert_eq!((fill.ops, fill.ops_per_s, fill.found), (100_000, 457_140.0, None));
        assert_eq!(fill.hists.len(), 1);
        let (kind, d) = &fill.hists[0];
        assert_eq!(kind, "write");
        assert_eq!(*d, Dist { count: 100_000, p50: 1.53, p99: 4.63, p999: 22.80, max: 3293.0 });

        let read = &p.benches[1];
        assert_eq!(read.found, Some((12_688, 20_000)));
        assert_eq!(read.hists[0].1.p99, 3.58);
        assert_eq!(p.benches[2].found, Some((0, 100_000)));
        assert!(p.benches[2].hists.is_empty());

        let mixed = &p.benches[3];
        assert_eq!(mixed.found, Some((86_000, 100_000)));
        assert_eq!(mixed.mixed_writes, Some(100_000));
        let kinds: Vec<&str> = mixed.hists.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kinds, ["read", "write"]);
        assert_eq!(mixed.hists[1].1.max, 70_000.0);
        assert_eq!(mixed.hists[0].1.p99, 9.0);
    }

    #[test]
    fn flags_follow_the_phase() {
        let plan = Plan::quick();
        let dir = Path::new("/d");
        let fill = args(Phase::FillRandom, &plan, dir);
        assert!(fill.contains(&"--benchmarks=fillrandom,stats,flush,waitforcompaction".to_owned()));
        assert!(!fill.iter().any(|a| a.starts_with("--use_existing_db")));
        assert!(fill.contains(&"--disable_wal=1".to_owned()));
        assert!(fill.contains(&format!("--cache_size={}", plan.cache_size)));
        let seek = args(Phase::SeekRandom, &plan, dir);
        assert!(seek.contains(&"--benchmarks=seekrandom".to_owned()));
        assert!(seek.contains(&"--use_existing_db=1".to_owned()));
        assert!(seek.contains(&format!("--reads={}", plan.seeks)));
        assert!(seek.contains(&"--seek_nexts=10".to_owned()));
        let mixed = args(Phase::Mixed, &plan, dir);
        assert!(mixed.contains(&"--readwritepercent=50".to_owned()));
        assert!(
            mixed.contains(&"--benchmarks=readrandomwriterandom,stats,flush,waitforcompaction".to_owned())
        );
        assert!(!args(Phase::ReadSeq, &plan, dir).iter().any(|a| a.starts_with("--reads")));
        // Distinct seeds, so reads do not replay the fill's keys.
        let seed = |p| args(p, &plan, dir).into_iter().find(|a| a.starts_with("--seed=")).unwrap();
        assert_ne!(seed(Phase::FillRandom), seed(Phase::ReadRandom));
    }

    #[test]
    fn hms_and_tail() {
        assert_eq!(parse_hms_ms("00:00:0.000"), Some(0.0));
        assert_eq!(parse_hms_ms("01:00:1.5"), Some(3_601_500.0));
        assert_eq!(parse_hms_ms("x"), None);
        assert_eq!(tail("héllo", 4), "llo");
    }
}
