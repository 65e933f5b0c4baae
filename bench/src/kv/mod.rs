//! The `kv` suite: end-to-end key-value workloads (YCSB A-F, raw and
//! batched writes) against one or more stores in one run, closed or open
//! loop, with per-operation latency histograms, ratios against a peer and
//! a latency spectrum plot.
//!
//! ```text
//! ekv-bench kv --workload a --target etcd --etcd-start --quick
//! ekv-bench kv --workload a --target memory,etcd --etcd-endpoints 127.0.0.1:2379 \
//!     --clients 16 --rate 2000 --duration 30s --warmup 5s --records 100000 \
//!     --value-size 100 --distribution zipfian --json --svg spectrum.svg
//! ```
//!
//! # What runs
//!
//! For each target in `--target`, one after another in this process (so
//! that they share the machine's state):
//!
//! 1. Load: records `0..records` (YCSB's hashed `user…` keys, random
//!    values of `--value-size` bytes) in batches from up to 8 clients. Not
//!    measured.
//! 2. Run: `--clients` threads, each with its own session, issue the
//!    workload's operations. Closed loop without `--rate`; with it, an open
//!    loop at that total rate whose latencies run from each operation's
//!    intended send time (see [`driver`] on coordinated omission).
//!    Operations of the warm-up are not recorded.
//!
//! # Cases
//!
//! `<workload>/<distribution>/<closed|rate=R>/clients=N/target=T/op=O`
//! with `ops_per_s`, `p50_us` .. `p999_us`, `max_us`, `count` and `errors`
//! per operation kind and for `op=all`; open loops add
//! `.../target=T/schedule` with how late operations were sent and how many
//! never were. When the `--baseline` target (etcd by default) runs too, the
//! other targets' rows carry its numbers as baseline, and ekv's rows carry
//! the targets set for ekv against etcd: on YCSB-A at the same offered rate
//! update p99 `<= 0.5`; closed-loop YCSB-A throughput `>= 3`; YCSB-C read
//! p99 `<= 0.333` (against etcd's linearizable reads).

mod distribution;
mod driver;
mod etcd_cluster;
mod progress;
mod stats;
mod svg;
pub mod target;
mod workload;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use crate::harness::{self, CaseResult, Machine, Report};
use distribution::{Distribution, KeyChooser};
use driver::{Pace, RunPlan, Schedule, Window};
use progress::Progress;
use stats::{OpStats, RunStats};
use target::{KvTarget, Result, TargetEnv};
use workload::{KeySpace, OpKind, OpShape, Workload};

/// The target whose rows carry the issue's targets against etcd.
const SUBJECT: &str = "ekv";
/// The peer those targets are set against.
const PEER: &str = "etcd";

/// Options of the `kv` suite only.
#[derive(Debug, Clone, Args)]
pub struct KvArgs {
    /// The workload: YCSB a-f, write (puts to existing records) or batch
    /// (--batch-size records per put).
    #[arg(long, value_enum, default_value = "a")]
    pub workload: Workload,
    /// The stores to run against, comma separated, one after another.
    #[arg(long = "target", value_delimiter = ',', default_value = "memory", value_name = "NAME,...")]
    pub targets: Vec<String>,
    /// The target every other one is compared with (baseline and ratio), if
    /// it runs.
    #[arg(long, default_value = PEER, value_name = "NAME")]
    pub baseline: String,
    /// Client endpoints of a running etcd cluster.
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT,...")]
    pub etcd_endpoints: Vec<String>,
    /// Start a three-member etcd cluster for the run (bench/etcd-cluster.sh,
    /// data under --dir) and stop it at the end.
    #[arg(long, conflicts_with = "etcd_endpoints")]
    pub etcd_start: bool,
    /// Meta-service endpoints of a running ekv cluster.
    #[arg(long = "pd", value_delimiter = ',', value_name = "HOST:PORT,...")]
    pub pd_endpoints: Vec<String>,
    /// Start an ekv cluster in this process for the run (a meta-service
    /// member and three stores on loopback, data under --dir) and stop it
    /// when its run ends.
    #[arg(long, conflicts_with = "pd_endpoints")]
    pub ekv_start: bool,
    /// Client threads, each with its own session.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Open loop at this many operations per second in all; closed loop
    /// without it.
    #[arg(long, value_name = "OPS_PER_S")]
    pub rate: Option<f64>,
    /// Measured time, after the warm-up [default: 30s, 5s with --quick].
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Warm-up, not measured [default: 5s, 1s with --quick].
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Records loaded before the run [default: 100000, 10000 with --quick].
    #[arg(long)]
    pub records: Option<u64>,
    /// Bytes of every value.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// How records are chosen [default: latest for d, zipfian otherwise].
    #[arg(long, value_enum)]
    pub distribution: Option<Distribution>,
    /// Records per operation of the batch workload.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Do not load: the targets hold the records from an earlier run with
    /// the same --records.
    #[arg(long)]
    pub skip_load: bool,
    /// Latency the memory target adds to every operation.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub memory_latency: Duration,
    /// Seed of the clients' generators (client c uses seed + c).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the latency percentile spectrum of every target and operation
    /// to this SVG file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

/// Parses `30s`, `500ms`, `250us`, `2m`, `1.5s` or a bare number of seconds.
fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number.parse().map_err(|_| format!("{s:?} is not a duration such as 30s or 500ms"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "ns" => n / 1e9,
        "m" | "min" => n * 60.0,
        other => return Err(format!("unknown unit {other:?} in {s:?} (ns, us, ms, s, m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// The run's settings, defaults resolved and checked.
#[derive(Debug, Clone)]
struct Settings {
    workload: Workload,
    distribution: Distribution,
    records: u64,
    shape: OpShape,
    clients: usize,
    rate: Option<f64>,
    warmup: Duration,
    duration: Duration,
    seed: u64,
}

impl Settings {
    fn new(quick: bool, args: &KvArgs) -> Result<Self> {
        let s = Settings {
            workload: args.workload,
            distribution: args.distribution.unwrap_or_else(|| args.workload.default_distribution()),
            records: args.records.unwrap_or(if quick { 10_000 } else { 100_000 }),
            shape: OpShape { value_size: args.value_size, batch_size: args.batch_size },
            clients: args.clients,
            rate: args.rate,
            warmup: args.warmup.unwrap_or(Duration::from_secs(if quick { 1 } else { 5 })),
            duration: args.duration.unwrap_or(Duration::from_secs(if quick { 5 } else { 30 })),
            seed: args.seed,
        };
        if s.clients == 0 || s.records == 0 || s.shape.batch_size == 0 || s.duration.is_zero() {
            return Err("--clients, --records, --batch-size and --duration must be positive".into());
        }
        if let Some(rate) = s.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(
                    format!("--rate {rate} must be a positive number of operations per second").into()
                );
            }
        }
        Ok(s)
    }

    fn pace(&self) -> Pace {
        self.rate.map_or(Pace::Closed, |rate| Pace::Open(Schedule::new(rate, self.clients)))
    }

    fn plan(&self) -> RunPlan {
        RunPlan {
            workload: self.workload,
            chooser: KeyChooser::new(self.distribution, self.records, self.workload.inserts()),
            shape: self.shape,
            pace: self.pace(),
            clients: self.clients,
            window: Window { warmup: self.warmup, end: self.warmup + self.duration },
            seed: self.seed,
        }
    }

    /// The case name's common part.
    fn prefix(&self) -> String {
        let workload = match self.workload {
            Workload::Batch => format!("batch={}", self.shape.batch_size),
            w => w.name().to_owned(),
        };
        let pace = self.rate.map_or_else(|| "closed".to_owned(), |r| format!("rate={r}"));
        format!("{workload}/{}/{pace}/clients={}", self.distribution.name(), self.clients)
    }
}

/// One target's run.
#[derive(Debug)]
struct TargetRun {
    name: String,
    stats: RunStats,
}

impl TargetRun {
    /// The stats of `op` (`None`: every kind together).
    fn op(&self, op: Option<OpKind>) -> Option<OpStats> {
        match op {
            Some(kind) => self.stats.ops.get(&kind).cloned(),
            None => Some(self.stats.total()),
        }
    }
}

/// Runs the kv suite.
///
/// # Errors
/// Bad options, a target that cannot be built or reached, a failed load or
/// an SVG that cannot be written. Failed operations are counted instead.
pub fn run(opts: &crate::Opts, args: KvArgs) -> std::result::Result<Report, Box<dyn std::error::Error>> {
    run_suite(opts, &args).map_err(|e| e as Box<dyn std::error::Error>)
}

fn run_suite(opts: &crate::Opts, args: &KvArgs) -> Result<Report> {
    let settings = Settings::new(opts.quick, args)?;
    let mut seen = BTreeSet::new();
    if let Some(dup) = args.targets.iter().find(|t| !seen.insert(t.as_str())) {
        return Err(format!("target {dup} named twice").into());
    }
    let data = harness::data_dir(opts.dir.clone())?;
    let mut report = Report::new("kv", Machine::detect(Some(data.path())));
    let progress = Progress::for_stderr(opts.json);

    let mut env = TargetEnv {
        memory_latency: args.memory_latency,
        etcd_endpoints: args.etcd_endpoints.clone(),
        pd_endpoints: args.pd_endpoints.clone(),
        ekv_start: args.ekv_start.then(|| data.path().to_path_buf()),
    };
    let _cluster = if args.etcd_start && args.targets.iter().any(|t| t == target::etcd::NAME) {
        let cluster =
            etcd_cluster::EtcdCluster::start(Path::new(etcd_cluster::SCRIPT), &data.path().join("etcd"))?;
        env.etcd_endpoints = cluster.endpoints().to_vec();
        Some(cluster)
    } else {
        None
    };
    let plan = settings.plan();
    let mut runs = Vec::new();
    // One target at a time: one started for the run (an in-process
    // cluster) stops before the next is measured.
    for name in &args.targets {
        let t = target::build(name, &env)?;
        if settings.workload == Workload::Batch {
            if let Some(max) = t.max_batch().filter(|&max| settings.shape.batch_size > max) {
                return Err(format!(
                    "--batch-size {} is over {}'s limit of {max}",
                    settings.shape.batch_size,
                    t.name()
                )
                .into());
            }
        }
        report.note(t.describe());
        runs.push(run_target(t.as_ref(), &settings, &plan, args.skip_load, progress, &mut report)?);
    }
    push_results(&mut report, opts, &settings, &runs, &args.baseline);
    notes(&mut report, opts.quick, &settings, args, &runs);
    if let Some(path) = &args.svg {
        let title = format!("{}: latency by percentile", settings.prefix());
        std::fs::write(path, svg::render(&title, &spectrum_series(&runs)))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        report.note(format!("latency spectrum written to {}", path.display()));
    }
    Ok(report)
}

fn run_target(
    target: &dyn KvTarget,
    settings: &Settings,
    plan: &RunPlan,
    skip_load: bool,
    progress: Progress,
    report: &mut Report,
) -> Result<TargetRun> {
    if !skip_load {
        let took = driver::load(
            target,
            settings.records,
            settings.shape.value_size,
            settings.clients,
            settings.seed,
            progress,
        )?;
        report.note(format!(
            "{}: loaded {} records in {:.1} s ({:.0} records/s, not measured)",
            target.name(),
            settings.records,
            took.as_secs_f64(),
            settings.records as f64 / took.as_secs_f64().max(1e-9)
        ));
    }
    let keys = KeySpace::new(settings.records);
    let stats = driver::run(target, plan, &keys, progress)?;
    Ok(TargetRun { name: target.name().to_owned(), stats })
}

/// Metrics a ratio means something for.
fn comparable(metric: &str) -> bool {
    metric == "ops_per_s" || metric.ends_with("_us")
}

/// The goal the issue sets for `subject` against `peer` on this row.
fn issue_target(
    settings: &Settings,
    subject: &str,
    peer: &str,
    op: Option<OpKind>,
    metric: &str,
) -> Option<&'static str> {
    if subject != SUBJECT || peer != PEER {
        return None;
    }
    match (settings.workload, settings.rate.is_some(), op, metric) {
        (Workload::A, true, Some(OpKind::Update), "p99_us") => Some("<= 0.5"),
        (Workload::A, false, None, "ops_per_s") => Some(">= 3"),
        (Workload::C, _, Some(OpKind::Read), "p99_us") => Some("<= 0.333"),
        _ => None,
    }
}

fn push_results(
    report: &mut Report,
    opts: &crate::Opts,
    settings: &Settings,
    runs: &[TargetRun],
    baseline: &str,
) {
    let prefix = settings.prefix();
    let peer = runs.iter().find(|r| r.name == baseline);
    let ops: Vec<Option<OpKind>> = OpKind::ALL
        .into_iter()
        .filter(|k| runs.iter().any(|r| r.stats.ops.contains_key(k)))
        .map(Some)
        .collect();
    for run in runs {
        let peer = peer.filter(|p| p.name != run.name);
        for &op in ops.iter().chain(&[None]) {
            let Some(stats) = run.op(op) else { continue };
            let case = format!("{prefix}/target={}/op={}", run.name, op.map_or("all", OpKind::name));
            if !opts.wants(&case) {
                continue;
            }
            let summary = run.stats.summary(&stats);
            let peer_summary = peer.and_then(|p| Some(p.stats.summary(&p.op(op)?)));
            for (i, (metric, value)) in summary.metrics().into_iter().enumerate() {
                let row = match peer_summary.filter(|_| comparable(metric)) {
                    Some(ps) => {
                        let goal = issue_target(settings, &run.name, baseline, op, metric);
                        CaseResult::against(case.clone(), metric, value, ps.metrics()[i].1, goal)
                    }
                    None => CaseResult::plain(case.clone(), metric, value),
                };
                report.push(row);
            }
        }
        if let Some(rate) = settings.rate {
            let case = format!("{prefix}/target={}/schedule", run.name);
            if opts.wants(&case) {
                let s = &run.stats;
                report.push(CaseResult::plain(case.clone(), "offered_ops_per_s", rate));
                report.push(CaseResult::plain(case.clone(), "send_lag_p99_us", s.send_lag.p99()));
                report.push(CaseResult::plain(case.clone(), "send_lag_max_us", s.send_lag.max()));
                report.push(CaseResult::plain(case, "unsent", s.unsent() as f64));
            }
        }
    }
}

fn notes(report: &mut Report, quick: bool, settings: &Settings, args: &KvArgs, runs: &[TargetRun]) {
    let mix: Vec<String> = settings
        .workload
        .mix()
        .kinds()
        .map(|k| format!("{} {:.0}%", k.name(), settings.workload.mix().proportion(k) * 100.0))
        .collect();
    let pace = match settings.rate {
        Some(rate) => format!(
            "open loop at {rate} ops/s in all (latency from each operation's intended send time: coordinated \
             omission corrected)"
        ),
        None => "closed loop".to_owned(),
    };
    report.note(format!(
        "{} run: {} ({}), {} keys; {} records of {} B values{}; {} clients, {pace}; warm-up {:?} excluded, \
         {:?} measured; targets run one after another in this process: {}",
        if quick { "quick" } else { "full" },
        settings.workload.name(),
        mix.join(", "),
        settings.distribution.name(),
        settings.records,
        settings.shape.value_size,
        if settings.workload == Workload::Batch {
            format!(", {} per batch", settings.shape.batch_size)
        } else {
            String::new()
        },
        settings.clients,
        settings.warmup,
        settings.duration,
        args.targets.join(", "),
    ));
    for run in runs {
        let s = &run.stats;
        let total = s.total();
        if total.errors > 0 {
            report.note(format!(
                "{}: {} of {} operations failed; first error: {}",
                run.name,
                total.errors,
                s.sent,
                s.first_error.as_deref().unwrap_or("?")
            ));
        }
        if total.missing > 0 {
            report.note(format!("{}: {} reads or scans found nothing", run.name, total.missing));
        }
        if let Some(rate) = settings.rate {
            let achieved = s.sent as f64 / s.window.as_secs_f64().max(1e-9);
            if s.unsent() > 0 || achieved < 0.95 * rate {
                report.note(format!(
                    "{}: fell behind the schedule: sent {achieved:.0} of {rate} ops/s, {} scheduled operations \
                     never sent, sends up to {:.1} ms late",
                    run.name,
                    s.unsent(),
                    s.send_lag.max() / 1000.0
                ));
            }
        }
    }
}

fn spectrum_series(runs: &[TargetRun]) -> Vec<svg::Series> {
    runs.iter()
        .flat_map(|run| {
            run.stats.ops.iter().map(move |(kind, s)| svg::Series {
                label: format!("{} {}", run.name, kind.name()),
                points: svg::spectrum(&s.latency),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
