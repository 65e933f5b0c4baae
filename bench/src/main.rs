//! `ekv-bench`: every benchmark of ekv that reports a latency or a rate.
//!
//! ```text
//! cargo run --release -p ekv-bench -- <SUITE> [--quick] [--json] [--dir PATH]
//! ```
//!
//! Each suite is a subcommand (`wal`, `lsm`, ...). All of them share [`harness`]:
//! one histogram ([`harness::Latency`], nanoseconds in, microseconds out),
//! one result row ([`harness::CaseResult`]), one report and one output
//! format, and the raw-disk baseline of [`raw`]. `--quick` is a short run
//! (under a minute) for checks; the full run is what `bench/RESULTS.md`
//! quotes. Data files go in a fresh directory under `--dir`, or under
//! `target/bench-data` (not `/tmp`, which may be tmpfs, where direct I/O
//! means nothing), removed at the end.
//!
//! # Output
//!
//! Without `--json`, a table with a "met?" column. With `--json`, exactly one
//! JSON object on stdout:
//!
//! ```json
//! {"suite": "wal", "machine": {"cores": 2, "kernel": "...", "cpu_model": "...", "fs": "ext4"},
//!  "results": [
//!    {"case": "append_sync/regions=16/entry=4096", "metric": "p99_us",
//!     "value": 412.0, "baseline": 388.0, "ratio": 1.06, "target": "<= 1.2"}
//!  ],
//!  "notes": ["..."]}
//! ```
//!
//! `case` names what ran with its parameters (`name/key=value/...`), `metric`
//! what was measured with its unit (`p99_us`, `mb_per_s`). `baseline` and
//! `ratio` (`value / baseline`) are there when the case is measured against a
//! baseline or a peer **in the same run**; `target` when an issue sets one
//! (`<= X`, `>= X`, `< X`, `> X`, checked against the ratio if there is a
//! baseline, else the value). These machines are shared and noisy: quote
//! ratios and medians, never a lone absolute time.
//!
//! # Adding a suite
//!
//! 1. Write `src/<suite>.rs` with
//!    `pub fn run(opts: &crate::Opts) -> Result<harness::Report, Box<dyn std::error::Error>>`.
//!    Make the data directory with [`harness::data_dir`], run the async work
//!    with [`harness::run_on_executor`], record with [`harness::Latency`],
//!    and measure the baseline (e.g. [`raw::RawFile::overwrite_sync`]) in
//!    the same run, interleaved with the case where that is fair.
//! 2. Fill a [`harness::Report`] (machine from [`harness::Machine::detect`])
//!    with [`harness::CaseResult::against`] rows, [`harness::CaseResult::plain`]
//!    only where nothing compares; honour `opts.quick`.
//! 3. Add `mod <suite>;` and a variant of [`Suite`] here that calls its `run`.

mod engine;
pub mod harness;
mod kv;
mod lsm;
mod net;
mod pd;
pub mod raw;
mod wal;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Options every suite takes.
#[derive(Debug, Clone, Default, Args)]
pub struct Opts {
    /// Short run (under a minute), for checks rather than quoting.
    #[arg(long, global = true)]
    pub quick: bool,
    /// Print one JSON object instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Directory to make the data directory in (default: target/bench-data).
    #[arg(long, global = true, value_name = "PATH")]
    pub dir: Option<PathBuf>,
    /// Run only the cases whose name contains this string.
    #[arg(long, global = true, value_name = "SUBSTRING")]
    pub filter: Option<String>,
}

impl Opts {
    /// Whether a case of this name is to run.
    pub fn wants(&self, case: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| case.contains(f))
    }
}

/// ekv's benchmarks: one harness, one histogram, one output format.
#[derive(Debug, Parser)]
#[command(name = "ekv-bench", version)]
struct Cli {
    #[command(subcommand)]
    suite: Suite,
    #[command(flatten)]
    opts: Opts,
}

/// The suites.
#[derive(Debug, Clone, Subcommand)]
enum Suite {
    /// Write-ahead log: append+sync latency against the raw disk.
    Wal,
    /// LSM tree: db_bench-style workloads against RocksDB db_bench and
    /// (feature fjall) fjall.
    Lsm(lsm::LsmArgs),
    /// Raftstore: three stores in one process, write latency against WAL
    /// sync + round trip, batching, idle CPU of 10,000 hibernating regions.
    Engine,
    /// Network: codec ns per message; one shard server's gets over loopback
    /// against a plain TCP echo of the same sizes.
    Net,
    /// Meta service: region heartbeats per second and GetRegion latency of
    /// one member with 100,000 and 1,000,000 regions, and of its core alone.
    Pd,
    /// Key-value workloads end to end (YCSB A-F, raw and batched writes),
    /// closed or open loop, against etcd and the other targets in one run.
    Kv(Box<kv::KvArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.suite {
        Suite::Wal => wal::run(&cli.opts),
        Suite::Lsm(args) => lsm::run(&cli.opts, args),
        Suite::Engine => engine::run(&cli.opts),
        Suite::Net => net::run(&cli.opts),
        Suite::Pd => pd::run(&cli.opts),
        Suite::Kv(args) => kv::run(&cli.opts, *args),
    };
    match result {
        Ok(report) => {
            report.print(cli.opts.json);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ekv-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_parses_flags_before_and_after_the_suite() {
        let cli = Cli::try_parse_from(["ekv-bench", "wal", "--quick", "--json", "--dir", "/x"]).unwrap();
        assert!(matches!(cli.suite, Suite::Wal));
        assert!(cli.opts.quick && cli.opts.json);
        assert_eq!(cli.opts.dir, Some(PathBuf::from("/x")));
        let cli = Cli::try_parse_from(["ekv-bench", "--json", "wal"]).unwrap();
        assert!(cli.opts.json && !cli.opts.quick && cli.opts.dir.is_none());
        assert!(Cli::try_parse_from(["ekv-bench"]).is_err());
        let cli = Cli::try_parse_from(["ekv-bench", "lsm", "--quick", "--unpinned"]).unwrap();
        assert!(matches!(cli.suite, Suite::Lsm(a) if a.unpinned) && cli.opts.quick);
        let cli = Cli::try_parse_from(["ekv-bench", "engine", "--quick", "--json"]).unwrap();
        assert!(matches!(cli.suite, Suite::Engine) && cli.opts.quick && cli.opts.json);
        let cli = Cli::try_parse_from(["ekv-bench", "net", "--quick"]).unwrap();
        assert!(matches!(cli.suite, Suite::Net) && cli.opts.quick);
        let cli = Cli::try_parse_from(["ekv-bench", "pd", "--quick", "--filter", "core"]).unwrap();
        assert!(
            matches!(cli.suite, Suite::Pd) && cli.opts.quick && cli.opts.filter.as_deref() == Some("core")
        );
        let cli =
            Cli::try_parse_from(["ekv-bench", "kv", "--quick", "--target", "etcd", "--etcd-start", "--json"])
                .unwrap();
        assert!(matches!(&cli.suite, Suite::Kv(a) if a.etcd_start && a.targets == ["etcd"]));
        assert!(cli.opts.quick && cli.opts.json);
    }
}
