//! `ekv-chaos`: a fault-injecting run against a real ekv cluster, judged by
//! the history checker.
//!
//! It starts three meta-service members and 3–5 stores as `ekv` processes,
//! each in a network namespace of its own joined to a bridge by a veth pair
//! (so it needs root), drives concurrent clients through `ekv-client` while a
//! nemesis injects faults on a schedule drawn from `--seed`, heals
//! everything, reads the set back, and has `ekv-checker` judge the history.
//!
//! Exit status: 0 when the checker found nothing and no acknowledged write
//! was lost; 1 on any violation, lost write, crashed process or a run that
//! could not be checked (the run directory is kept and its path printed);
//! 2 on bad arguments or a cluster that could not be set up; 130 when
//! interrupted.
//!
//! The run directory holds `history.jsonl` (replay with
//! `ekv_checker::load_jsonl`), `report.json`, `nemesis.log`, `logs/<node>.log`
//! (every incarnation of every process) and `data/<node>/`.
//!
//! Rule: like any ekv test tool it drives the cluster only from outside, by
//! processes, signals, the network and `ekv ctl`; it depends on `ekv-client`
//! and `ekv-checker` alone.

mod cluster;
mod nemesis;
mod net;
mod report;
mod schedule;
mod wal;
mod workload;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use ekv_checker::{AnomalyKind, Outcome, ProcessId, Workload};

use crate::cluster::{Cluster, Role, Started};
use crate::nemesis::{Nemesis, RECOVERY_LIMIT};
use crate::net::Network;
use crate::report::{OpCounts, Report};
use crate::schedule::{FaultKind, Timing};

/// Fault-injecting test runner for ekv (needs root: it makes network namespaces).
#[derive(Debug, Parser)]
#[command(name = "ekv-chaos", version)]
struct Args {
    /// Seed of the fault schedule and the clients (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Seconds of workload under faults (healing and checking come after).
    #[arg(long, default_value_t = 120)]
    time: u64,
    /// Stores (3 to 5).
    #[arg(long, default_value_t = 3)]
    stores: usize,
    /// Client threads.
    #[arg(long, default_value_t = 6)]
    clients: usize,
    /// Faults to inject: all, or a list of kill, kill-pd, pause,
    /// partition (= partition-halves, partition-leader, partition-one-way,
    /// partition-ring), link-down, transfer, split, member, corrupt
    /// (= wal-cut, bit-flip).
    #[arg(long, default_value = "all")]
    faults: String,
    /// Shortest and longest hold of a fault, in milliseconds.
    #[arg(long, default_value = "3000..8000", value_parser = parse_range)]
    hold_ms: (u64, u64),
    /// Shortest and longest quiet window between faults, in milliseconds.
    #[arg(long, default_value = "2000..5000", value_parser = parse_range)]
    quiet_ms: (u64, u64),
    /// The meta service's down_after_ms (a store silent this long is down
    /// and its replicas are rebuilt elsewhere).
    #[arg(long, default_value_t = 4000)]
    down_after_ms: u64,
    /// The `ekv` binary (default: next to this one, else on PATH).
    #[arg(long)]
    ekv: Option<PathBuf>,
    /// Run directory (default: /tmp/ekv-chaos-<seed>-<pid>).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the run directory even when the run passes.
    #[arg(long)]
    keep: bool,
    /// Print the report as JSON on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once("..").ok_or_else(|| format!("{s:?}: expected MIN..MAX"))?;
    let a: u64 = a.trim().parse().map_err(|e| format!("{s:?}: {e}"))?;
    let b: u64 = b.trim().parse().map_err(|e| format!("{s:?}: {e}"))?;
    if a == 0 || a > b {
        return Err(format!("{s:?}: need 0 < MIN <= MAX"));
    }
    Ok((a, b))
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ekv-chaos: {e}");
            ExitCode::from(2)
        }
    }
}

fn find_ekv(args: &Args) -> Result<PathBuf, String> {
    if let Some(p) = &args.ekv {
        return Ok(p.clone());
    }
    let here = std::env::current_exe().map_err(|e| format!("locating ekv-chaos: {e}"))?;
    let beside = here.with_file_name("ekv");
    if beside.is_file() {
        return Ok(beside);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("ekv")).find(|p| p.is_file()))
        .ok_or_else(|| "no `ekv` binary beside ekv-chaos or on PATH; give --ekv".into())
}

fn run(args: &Args) -> Result<ExitCode, String> {
    if !(3..=5).contains(&args.stores) {
        return Err("--stores must be 3 to 5".into());
    }
    if args.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    let kinds = FaultKind::parse_list(&args.faults)?;
    let uid = std::fs::metadata("/proc/self").map_err(|e| format!("reading /proc/self: {e}"))?.uid();
    if uid != 0 {
        return Err("ekv-chaos makes network namespaces and must run as root".into());
    }
    let ekv = find_ekv(args)?;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let pid = std::process::id();
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(format!("/tmp/ekv-chaos-{seed}-{pid}")));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let dir = std::fs::canonicalize(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("installing signal handlers: {e}"))?;
    }

    let timing = Timing {
        duration_ms: args.time * 1000,
        quiet_min_ms: args.quiet_ms.0,
        quiet_max_ms: args.quiet_ms.1,
        hold_min_ms: args.hold_ms.0,
        hold_max_ms: args.hold_ms.1,
    };
    let steps = schedule::generate(seed, &kinds, timing);
    eprintln!(
        "ekv-chaos: seed {seed}, {} s, {} stores, {} clients, {} faults scheduled; run directory {}",
        args.time,
        args.stores,
        args.clients,
        steps.len(),
        dir.display()
    );

    for r in net::cleanup_stale() {
        eprintln!("ekv-chaos: removed {r}, left by a run that died");
    }
    // Subnets 10.77.20.0/24 .. 10.77.219.0/24, by pid, so that parallel runs
    // on one host do not collide.
    let subnet = 20 + (pid % 200) as u8;
    let net = Network::create(pid, subnet)?;
    let mut cluster = Cluster::new(ekv, dir.clone(), net, args.down_after_ms);
    let outcome = drive(args, seed, &steps, &mut cluster, &stop);
    // Stop everything whatever happened; the network goes with the cluster.
    cluster.stop_all(Duration::from_secs(10));
    cluster.net.teardown();
    drop(cluster);
    match outcome {
        Err(e) => {
            eprintln!("ekv-chaos: {e}");
            eprintln!("ekv-chaos: run directory kept: {}", dir.display());
            Ok(ExitCode::from(2))
        }
        Ok(None) => {
            eprintln!("ekv-chaos: interrupted; run directory kept: {}", dir.display());
            Ok(ExitCode::from(130))
        }
        Ok(Some(report)) => {
            let text = report.human();
            if args.json {
                eprint!("{text}");
                println!("{}", serde_json::to_string(&report).map_err(|e| e.to_string())?);
            } else {
                print!("{text}");
            }
            if report.ok && !args.keep {
                let _ = std::fs::remove_dir_all(&dir);
                Ok(ExitCode::SUCCESS)
            } else if report.ok {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("ekv-chaos: FAILED; run directory kept: {}", dir.display());
                Ok(ExitCode::from(1))
            }
        }
    }
}

/// Sets the cluster up, runs workload and nemesis, checks. `None` when
/// interrupted.
fn drive(
    args: &Args,
    seed: u64,
    steps: &[schedule::Step],
    cluster: &mut Cluster,
    stop: &Arc<AtomicBool>,
) -> Result<Option<Report>, String> {
    cluster.create_nodes(3, args.stores)?;
    // Members first (all of them: each waits for a quorum), then stores.
    for role in [Role::Pd, Role::Store] {
        let idx = cluster.of_role(role);
        let offsets: Vec<u64> = idx.iter().map(|&i| cluster.spawn(i)).collect::<Result<_, _>>()?;
        for (&i, off) in idx.iter().zip(offsets) {
            match cluster.wait_ready(i, off, Duration::from_secs(90))? {
                Started::Ready => {}
                Started::Exited { status, tail } => {
                    return Err(format!("{} exited at start ({status}):\n{tail}", cluster.nodes[i].name))
                }
            }
        }
    }
    let pd = cluster.pd_endpoints();
    let probe = workload::client(&pd, Duration::from_secs(2))?;
    let log_path = cluster.dir.join("nemesis.log");
    let mut nemesis = Nemesis::new(cluster, probe, Instant::now(), log_path, stop.clone());
    nemesis.note(&format!("cluster started: members {}", pd.join(",")));
    if nemesis.probe(Duration::from_secs(90)).is_none() {
        return Err("the cluster never took a write".into());
    }
    let splits = workload::split_keys();
    let mut split_args = vec!["split", "--key", ""];
    split_args.extend(splits.iter().map(String::as_str));
    // The first region holds everything; it may still be settling.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match nemesis.cluster.ctl(&split_args, "5s") {
            Ok(_) => break,
            Err(e) if Instant::now() >= deadline => return Err(format!("pre-splitting: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
    if nemesis.probe(Duration::from_secs(60)).is_none() {
        return Err("the cluster took no write after the pre-split".into());
    }
    nemesis.note(&format!("pre-split at {}; starting {} clients", splits.join(" "), args.clients));

    let rec = workload::Recorder::new();
    let clients_stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for t in 0..args.clients {
        let c = workload::client(&pd, Duration::from_secs(3))?;
        let (rec, cs) = (rec.clone(), clients_stop.clone());
        let clients = args.clients;
        threads.push(
            std::thread::Builder::new()
                .name(format!("client-{t}"))
                .spawn(move || workload::run_client(t, clients, seed, c, rec, cs))
                .map_err(|e| format!("starting a client thread: {e}"))?,
        );
    }
    let start = Instant::now();
    for step in steps {
        nemesis.idle_until(start + Duration::from_millis(step.at_ms));
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let r = nemesis.run_step(step);
        nemesis.records.push(r);
    }
    nemesis.idle_until(start + Duration::from_secs(args.time));
    let interrupted = stop.load(Ordering::Relaxed);
    let healed = if interrupted {
        Ok(())
    } else {
        nemesis.note("healing everything");
        nemesis.heal_everything()
    };
    let final_probe = if interrupted { None } else { nemesis.probe(RECOVERY_LIMIT) };
    if !interrupted {
        nemesis.note(&format!(
            "after the final heal writes succeed in {}",
            final_probe.map_or_else(|| "-- (not within the limit)".into(), |ms| format!("{ms} ms"))
        ));
        // Some quiet time under load, so that the clients see the healed cluster.
        nemesis.idle_until(Instant::now() + Duration::from_secs(3));
    }
    clients_stop.store(true, Ordering::Relaxed);
    nemesis.note("stopping the clients");
    for t in threads {
        if t.join().is_err() {
            return Err("a client thread panicked".into());
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    if interrupted {
        save_history(&nemesis.cluster.dir, &rec);
        return Ok(None);
    }
    // The final read of the set, after healing: retried until it succeeds.
    let reader = workload::client(&pd, Duration::from_secs(10))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut final_read = true;
    let mut read_error = String::new();
    let last_gen = rec.set_generation();
    let mut elements = 0;
    for gen in 0..=last_gen {
        let mut done = false;
        while !done && Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            match workload::recorded_read_set(&rec, ProcessId(u64::MAX), &reader, gen) {
                (Outcome::Elements(e), _) => {
                    elements += e.len();
                    done = true;
                }
                (_, e) => {
                    read_error = format!("set {gen}: {}", e.unwrap_or_default());
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
        final_read &= done;
    }
    nemesis.note(&format!("final reads of {} sets: {elements} elements", last_gen + 1));
    let history = rec.snapshot();
    save_history(&nemesis.cluster.dir, &rec);
    nemesis.note(&format!("checking {} operations", history.len()));
    let verdict = ekv_checker::check(&history);

    let mut ops: BTreeMap<String, OpCounts> = BTreeMap::new();
    for o in history.ops() {
        let w = match o.op.workload() {
            Workload::Register => "register",
            Workload::Set => "set",
            _ => "other",
        };
        for key in [w, "all"] {
            let c = ops.entry(key.to_owned()).or_default();
            match o.outcome {
                Outcome::Fail => c.fail += 1,
                Outcome::Unknown => c.unknown += 1,
                _ => c.ok += 1,
            }
        }
    }
    let lost: u64 = verdict.sets.iter().map(|s| s.lost as u64).sum();
    let unexpected: u64 = verdict.sets.iter().map(|s| s.unexpected as u64).sum();
    let mut text = verdict.to_string();
    let crashes = nemesis.crashes.clone();
    for c in &crashes {
        text.push_str(&format!(
            "process {} crashed at {} ms ({}); its log ends:\n{}\n",
            c.node, c.at_ms, c.status, c.tail
        ));
    }
    let late = nemesis.late_refusals.clone();
    for c in &late {
        text.push_str(&format!(
            "store {} started on a damaged WAL and failed {} ms into the run ({}); its log ends:\n{}\n",
            c.node, c.at_ms, c.status, c.tail
        ));
    }
    if !final_read {
        text.push_str(&format!(
            "a final read of a set never succeeded (last error: {read_error}): lost writes could not be checked\n"
        ));
    }
    if let Err(e) = &healed {
        text.push_str(&format!("healing failed: {e}\n"));
    }
    let ok = verdict.is_ok()
        && lost == 0
        && unexpected == 0
        && crashes.is_empty()
        && final_read
        && healed.is_ok()
        && verdict.count(AnomalyKind::Inconclusive) == 0;
    let mut report = Report {
        seed,
        seconds,
        stores: args.stores,
        clients: args.clients,
        ops,
        faults: BTreeMap::new(),
        fault_log: std::mem::take(&mut nemesis.records),
        recovery_during: Default::default(),
        recovery_after: Default::default(),
        not_recovered: 0,
        refused: 0,
        damaged_failed_later: late.len(),
        crashes: crashes.len(),
        anomalies: verdict.counts.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
        lost_writes: lost,
        unexpected,
        verdict: text,
        ok,
        dir: nemesis.cluster.dir.display().to_string(),
    };
    report.fill_recovery();
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    let _ = std::fs::write(nemesis.cluster.dir.join("report.json"), json);
    Ok(Some(report))
}

fn save_history(dir: &std::path::Path, rec: &workload::Recorder) {
    let path = dir.join("history.jsonl");
    if let Err(e) = ekv_checker::save_jsonl(&path, &rec.snapshot()) {
        eprintln!("ekv-chaos: saving the history: {e}");
    }
}
