//! The `engine` suite: the raftstore of three stores in one process,
//! against the floors a replicated write stands on, measured in the same run.
//!
//! # Set-up
//!
//! Three [`Store`](ekv_engine::Store)s, one shard each, on unpinned glommio
//! executors, their WAL and LSM files in the suite's data directory (a real
//! disk file system, direct I/O), wired by [`ekv_engine::LocalNetwork`]
//! (a raft message is handed to the other store's shard input channel) and
//! [`ekv_engine::LocalPd`]. Every region has a replica on each store. The
//! settings are the production defaults of [`Config`] (100 ms ticks,
//! elections after 10–20 ticks, heartbeats every 2, hibernation after 20
//! idle ticks), with one shard per store: this machine has 2 cores, and 3
//! stores already put 3 executors on them; two shards a store would double
//! the executors competing for the cores and halve what each WAL write can
//! batch, for no parallelism the cores could give.
//!
//! Clients are plain threads, each running any number of closed-loop
//! client tasks under `futures::executor::block_on` and calling
//! [`StoreHandle::call`](ekv_engine::StoreHandle::call) on the leader's
//! store: the answer wakes the thread with one futex wake (no runtime
//! between the shard and the client), so the client side adds the least a
//! caller on another thread can add, and many tasks share one thread so
//! that 100 clients do not mean 100 threads on 2 cores. Every call has a
//! deadline ([`cluster::CALL_TIMEOUT`]).
//!
//! # Cases
//!
//! - `baseline/...`: see [`baseline`]: one WAL append + fdatasync of the
//!   entry a Put logs, and one round trip over the channels LocalNetwork uses.
//! - `write/regions=1/clients=1`: one region, one client issuing Puts (16 B
//!   key, 128 B value, cf `default`) one after another, each timed from the
//!   call to its answer (proposal, replication to a majority, apply,
//!   callback). Target: p99 ≤ 1.5 × (WAL p99 + round-trip p99).
//! - `write/regions=100/clients=100`: 100 regions, one closed-loop client
//!   per region. Besides latency, the batching factor: commands proposed
//!   per second against WAL writes (each one fdatasync) per second, both
//!   summed over the three stores' shards ([`ekv_engine::ShardStats`]
//!   deltas over the measured window). Target: ≥ 10 proposals per sync.
//! - `write/regions=10000/clients=8`: 10,000 regions (bootstrapped in one
//!   batch per store), 8 clients each writing to a random region per command.
//! - `idle/regions=10000/hibernate=on`: the same cluster with no clients,
//!   after waiting (bounded) for every peer to hibernate; how many did is
//!   reported. The process's CPU time (user + system, every thread) over a
//!   window, as a percentage of one core. Target: < 2. The full run also
//!   measures a second cluster with hibernation off (`hibernate=off`), for
//!   context.
//!
//! Every write case also reports what the shards did per write over its
//! measured window, summed over the three stores: WAL writes
//! (fdatasyncs), rounds and raft messages per proposal.

mod baseline;
mod cluster;
mod timer;

use std::path::Path;
use std::time::{Duration, Instant};

use ekv_engine::raft::cmd::{CmdHeader, EntryCmd};
use ekv_engine::{Config, WriteOp};
use ekv_proto::{Region, RegionId};

use self::cluster::{Cluster, Load, LoadResult, Pick, Target};
use self::timer::Timer;
use crate::harness::{self, CaseResult, Latency, Machine, Report};
use ekv_engine::ShardStats;

type BoxError = Box<dyn std::error::Error>;

const ONE: &str = "write/regions=1/clients=1";
const ONE_SOLO: &str = "write/regions=1/clients=1/replicas=1";
const HUNDRED: &str = "write/regions=100/clients=100";
const MANY: &str = "write/regions=10000/clients=8";
const IDLE_ON: &str = "idle/regions=10000/hibernate=on";
const IDLE_OFF: &str = "idle/regions=10000/hibernate=off";
const BOOT: &str = "bootstrap/regions=10000";
/// Regions of the large cases.
const MANY_REGIONS: usize = 10_000;
/// Clients of the large latency case.
const MANY_CLIENTS: usize = 8;
/// Linux's `USER_HZ`, the unit of `/proc/self/stat` times (100 on every
/// architecture ekv runs on; it is ABI).
const USER_HZ: u64 = 100;

/// Lengths of a run.
#[derive(Debug, Clone)]
struct Plan {
    wal_warmup: usize,
    wal_appends: usize,
    rtt_warmup: usize,
    rtt_pings: usize,
    warmup: Duration,
    one_client: Duration,
    hundred_clients: Duration,
    many_clients: Duration,
    idle_window: Duration,
    hibernate_wait: Duration,
    leader_wait: Duration,
    hibernate_off: bool,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan {
                wal_warmup: 100,
                wal_appends: 1_000,
                rtt_warmup: 500,
                rtt_pings: 5_000,
                warmup: Duration::from_secs(1),
                one_client: Duration::from_secs(4),
                hundred_clients: Duration::from_secs(5),
                many_clients: Duration::from_secs(5),
                idle_window: Duration::from_secs(3),
                hibernate_wait: Duration::from_secs(15),
                leader_wait: Duration::from_secs(120),
                hibernate_off: false,
            }
        } else {
            Plan {
                wal_warmup: 500,
                wal_appends: 10_000,
                rtt_warmup: 1_000,
                rtt_pings: 50_000,
                warmup: Duration::from_secs(2),
                one_client: Duration::from_secs(20),
                hundred_clients: Duration::from_secs(30),
                many_clients: Duration::from_secs(20),
                idle_window: Duration::from_secs(10),
                hibernate_wait: Duration::from_secs(30),
                leader_wait: Duration::from_secs(180),
                hibernate_off: true,
            }
        }
    }
}

/// The settings of every cluster of the suite: production defaults, one
/// shard a store; hibernation on or off.
fn bench_config(hibernate: bool) -> Config {
    let mut cfg = Config { shards: 1, ..Config::default() };
    if !hibernate {
        cfg.hibernate_after_ticks = 0;
    }
    cfg
}

/// Runs the engine suite.
pub fn run(opts: &crate::Opts) -> Result<Report, BoxError> {
    let data = harness::data_dir(opts.dir.clone())?;
    let mut report = Report::new("engine", Machine::detect(Some(data.path())));
    let plan = Plan::new(opts.quick);
    let cfg = bench_config(true);
    let mut timer = Timer::start()?;

    // The floors, before any cluster runs. Dirty pages left by whatever ran
    // before (a build) would be written back during the baseline's syncs.
    let _ = std::process::Command::new("sync").status();
    let entry = put_entry_bytes();
    let wal = baseline::wal_append_sync(
        data.path().join("wal-baseline"),
        &cfg,
        bytes::Bytes::from(entry),
        plan.wal_warmup,
        plan.wal_appends,
    )?;
    let _ = std::fs::remove_dir_all(data.path().join("wal-baseline"));
    let rtt = baseline::round_trip(plan.rtt_warmup, plan.rtt_pings)?;
    let wal_case = format!("baseline/wal_append_sync/entry={}", put_entry_len());
    let rtt_case = "baseline/round_trip/futures_mpsc";
    for (case, l) in [(wal_case.as_str(), &wal), (rtt_case, &rtt)] {
        report.push(CaseResult::plain(case, "p50_us", l.p50()));
        report.push(CaseResult::plain(case, "p99_us", l.p99()));
        report.push(CaseResult::plain(case, "p999_us", l.p999()));
    }
    let floor = Floor { p50: wal.p50() + rtt.p50(), p99: wal.p99() + rtt.p99() };
    // The three stores share one disk here: a replicated write costs three
    // fdatasyncs on it at about the same time. This floor measures one sync
    // while two other writers sync too (each writer in its own executor).
    let x3: Vec<Latency> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..3)
            .map(|i| {
                let dir = data.path().join(format!("wal-baseline-x3-{i}"));
                let payload = bytes::Bytes::from(put_entry_bytes());
                let cfg = &cfg;
                let plan = &plan;
                scope.spawn(move || {
                    baseline::wal_append_sync(dir, cfg, payload, plan.wal_warmup, plan.wal_appends)
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        runs.into_iter().filter_map(|h| h.join().ok().and_then(Result::ok)).collect()
    });
    for i in 0..3 {
        let _ = std::fs::remove_dir_all(data.path().join(format!("wal-baseline-x3-{i}")));
    }
    let x3_case = format!("baseline/wal_append_sync_x3/entry={}", put_entry_len());
    let shared = (x3.len() == 3).then(|| {
        let mean = |f: &dyn Fn(&Latency) -> f64| x3.iter().map(f).sum::<f64>() / 3.0;
        let (p50, p99) = (mean(&|l| l.p50()), mean(&|l| l.p99()));
        report.push(CaseResult::plain(&x3_case, "p50_us", p50));
        report.push(CaseResult::plain(&x3_case, "p99_us", p99));
        Floor { p50: p50 + rtt.p50(), p99: p99 + rtt.p99() }
    });
    report.note(format!(
        "3 stores x {} shard in one process over LocalNetwork + LocalPd, Config defaults: tick {:?}, \
         election {} ticks, heartbeat {} ticks, hibernate after {} ticks",
        cfg.shard_count(),
        cfg.tick_interval,
        cfg.election_ticks,
        cfg.heartbeat_ticks,
        cfg.hibernate_after_ticks
    ));
    report.note(format!(
        "write latency: from StoreHandle::call to its answer, on a plain client thread (futures block_on); \
         Put of a {}-byte key and {}-byte value; per-call deadline {:?}",
        cluster::KEY_LEN,
        cluster::VALUE_LEN,
        cluster::CALL_TIMEOUT
    ));
    report.note(format!(
        "write p50/p99 are measured against the sum of the two baselines' p50/p99: \
         {wal_case} (one Wal::write of one entry + hard state, fdatasync, one writer) and {rtt_case} \
         (ping-pong between two parked glommio executors over mutex-guarded futures mpsc channels)"
    ));

    let mut failures = Vec::new();
    if opts.wants(ONE_SOLO) {
        // One replica: the engine's own path (client hop, round, one sync,
        // apply, answer) without replication, against the same floor.
        let load = (1, Pick::OwnRegion, plan.one_client);
        let r = solo_case(&data.path().join("solo"), &cfg, &plan, &timer, load).and_then(|m| {
            check_load(ONE_SOLO, &m.load)?;
            push_write(&mut report, ONE_SOLO, &m, &floor, None);
            Ok(())
        });
        if let Err(e) = r {
            failures.push(format!("{ONE_SOLO}: {e}"));
        }
    }
    if opts.wants(ONE) {
        let load = (1, Pick::OwnRegion, plan.one_client);
        let r = write_case(&data.path().join("one"), &cfg, &plan, &timer, 1, load).and_then(|m| {
            check_load(ONE, &m.load)?;
            push_write(&mut report, ONE, &m, &floor, Some("<= 1.5"));
            if let Some(shared) = &shared {
                let l = &m.load.latency;
                report.push(CaseResult::against(ONE, "p50_us_vs_shared_disk", l.p50(), shared.p50, None));
                report.push(CaseResult::against(ONE, "p99_us_vs_shared_disk", l.p99(), shared.p99, None));
            }
            Ok(())
        });
        if let Err(e) = r {
            failures.push(format!("{ONE}: {e}"));
        }
    }
    if opts.wants(HUNDRED) {
        let load = (100, Pick::OwnRegion, plan.hundred_clients);
        let r = write_case(&data.path().join("hundred"), &cfg, &plan, &timer, 100, load).and_then(|m| {
            check_load(HUNDRED, &m.load)?;
            push_write(&mut report, HUNDRED, &m, &floor, None);
            let secs = m.window.as_secs_f64();
            let proposals = m.delta.proposals as f64 / secs;
            let syncs = m.delta.wal_writes as f64 / secs;
            report.push(CaseResult::against(HUNDRED, "proposals_per_s", proposals, syncs, Some(">= 10")));
            report.push(CaseResult::plain(HUNDRED, "wal_syncs_per_s", syncs));
            report.note(format!(
                "{HUNDRED}: proposals_per_s is measured against WAL writes (one fdatasync each) per second, \
                 both summed over the 3 stores' shards over {secs:.1} s; ratio = proposals per sync"
            ));
            Ok(())
        });
        if let Err(e) = r {
            failures.push(format!("{HUNDRED}: {e}"));
        }
    }
    if [MANY, IDLE_ON, BOOT].iter().any(|c| opts.wants(c)) {
        let dir = data.path().join("many");
        if let Err(e) = many_regions(&dir, &plan, &mut timer, &floor, &mut report) {
            failures.push(format!("{MANY}: {e}"));
        }
    }
    if plan.hibernate_off && opts.wants(IDLE_OFF) {
        let dir = data.path().join("many-awake");
        if let Err(e) = idle_awake(&dir, &plan, &mut timer, &mut report) {
            failures.push(format!("{IDLE_OFF}: {e}"));
        }
    }
    drop(timer);

    for f in &failures {
        eprintln!("ekv-bench engine: FAILED {f}");
        report.note(format!("FAILED {f}"));
    }
    drop(data);
    Ok(report)
}

/// The sum of the two baselines.
struct Floor {
    p50: f64,
    p99: f64,
}

/// The bytes a shard logs for the suite's Put: the entry data of the command.
fn put_entry_bytes() -> Vec<u8> {
    let h = CmdHeader { region_id: RegionId(1), epoch: ekv_proto::RegionEpoch { conf_ver: 1, version: 1 } };
    let op = WriteOp::Put { cf: cluster::CF.into(), key: cluster::key(0, 1), value: cluster::value() };
    EntryCmd::Write(vec![op]).encode(&h)
}

fn put_entry_len() -> usize {
    put_entry_bytes().len()
}

/// The rows of a write case: latency against the floor, throughput, and
/// what the shards did per write over the measured window.
fn push_write(report: &mut Report, case: &str, m: &Measured, floor: &Floor, target: Option<&str>) {
    let l = &m.load.latency;
    report.push(CaseResult::against(case, "p50_us", l.p50(), floor.p50, None));
    report.push(CaseResult::against(case, "p99_us", l.p99(), floor.p99, target));
    report.push(CaseResult::plain(case, "p999_us", l.p999()));
    let secs = m.window.as_secs_f64();
    report.push(CaseResult::plain(case, "ops_per_s", m.load.ops as f64 / secs));
    let errors: u64 = m.load.errors.values().sum();
    report.push(CaseResult::plain(case, "refused", errors as f64));
    if errors > 0 {
        report.note(format!("{case}: refused and retried: {:?}", m.load.errors));
    }
    let per_write = |n: u64| n as f64 / m.delta.proposals.max(1) as f64;
    report.push(CaseResult::plain(case, "wal_syncs_per_write", per_write(m.delta.wal_writes)));
    report.push(CaseResult::plain(case, "rounds_per_write", per_write(m.delta.rounds)));
    report.push(CaseResult::plain(case, "raft_msgs_per_write", per_write(m.delta.messages_sent)));
}

/// Fails a case whose load saw a call go unanswered, or measured nothing.
fn check_load(case: &str, res: &LoadResult) -> Result<(), BoxError> {
    if let Some((region, store)) = res.unanswered.first() {
        return Err(format!(
            "{} call(s) unanswered within {:?}, the first to {region} on store {}",
            res.unanswered.len(),
            cluster::CALL_TIMEOUT,
            store + 1
        )
        .into());
    }
    if res.latency.count() == 0 {
        return Err(format!("{case}: no write was answered in the measured window: {:?}", res.errors).into());
    }
    Ok(())
}

/// A load and the cluster's counters over its measured window.
struct Measured {
    load: LoadResult,
    /// Counter deltas summed over every shard of the three stores.
    delta: ShardStats,
    /// Wall time between the two counter snapshots.
    window: Duration,
}

/// Runs `load`, taking the cluster's counters when its measured window
/// opens and when it closes (through the shards' control channels, while
/// the load runs). When a call went unanswered, prints what the stores
/// know of its region to stderr.
fn measured_load(c: &Cluster, targets: Vec<Target>, timer: &Timer, load: Load) -> Result<Measured, BoxError> {
    let (from, until) = (load.measure_from, load.until);
    let client = cluster::spawn_load(c.handles().to_vec(), targets, timer.handle(), load)?;
    sleep_until(from);
    let (before, t0) = (c.stats()?, Instant::now());
    sleep_until(until);
    let (after, t1) = (c.stats()?, Instant::now());
    let load = client.join().map_err(|_| "the client thread panicked")?;
    if let Some((region, store)) = load.unanswered.first() {
        eprintln!(
            "ekv-bench engine: a Put to {region} on store {} was not answered within {:?}; peers:\n{}",
            store + 1,
            cluster::CALL_TIMEOUT,
            c.describe(*region)
        );
    }
    let delta = ShardStats {
        rounds: after.rounds - before.rounds,
        wal_writes: after.wal_writes - before.wal_writes,
        proposals: after.proposals - before.proposals,
        messages_sent: after.messages_sent - before.messages_sent,
        apply_batches: after.apply_batches - before.apply_batches,
        ..ShardStats::default()
    };
    Ok(Measured { load, delta, window: t1 - t0 })
}

fn start_with(
    dir: &Path,
    cfg: &Config,
    timer: &Timer,
    regions: &[Region],
    leader_wait: Duration,
) -> Result<(Cluster, Vec<Target>, Duration), BoxError> {
    let c = Cluster::start(dir, cfg, timer.handle())?;
    let t = Instant::now();
    c.bootstrap(regions)?;
    let targets = c.wait_leaders(regions, leader_wait)?;
    Ok((c, targets, t.elapsed()))
}

/// `n` regions, a load of `tasks` clients; the cluster is stopped after.
fn write_case(
    dir: &Path,
    cfg: &Config,
    plan: &Plan,
    timer: &Timer,
    n: usize,
    (tasks, pick, length): (usize, Pick, Duration),
) -> Result<Measured, BoxError> {
    let regions = cluster::regions(n);
    let (c, targets, _) = start_with(dir, cfg, timer, &regions, plan.leader_wait)?;
    let now = Instant::now();
    let load = Load {
        tasks,
        pick,
        measure_from: now + plan.warmup,
        until: now + plan.warmup + length,
        seed: n as u64,
    };
    let m = measured_load(&c, targets, timer, load)?;
    c.stop()?;
    Ok(m)
}

/// One region with its only replica on store 1, one client.
fn solo_case(
    dir: &Path,
    cfg: &Config,
    plan: &Plan,
    timer: &Timer,
    (tasks, pick, length): (usize, Pick, Duration),
) -> Result<Measured, BoxError> {
    let mut regions = cluster::regions(1);
    regions[0].peers.truncate(1);
    let (c, targets, _) = start_with(dir, cfg, timer, &regions, plan.leader_wait)?;
    let now = Instant::now();
    let load =
        Load { tasks, pick, measure_from: now + plan.warmup, until: now + plan.warmup + length, seed: 7 };
    let m = measured_load(&c, targets, timer, load)?;
    c.stop()?;
    Ok(m)
}

/// `write/regions=10000/clients=8` and `idle/regions=10000/hibernate=on`.
fn many_regions(
    dir: &Path,
    plan: &Plan,
    timer: &mut Timer,
    floor: &Floor,
    report: &mut Report,
) -> Result<(), BoxError> {
    let regions = cluster::regions(MANY_REGIONS);
    let (c, targets, took) = start_with(dir, &bench_config(true), timer, &regions, plan.leader_wait)?;
    report.push(CaseResult::plain(BOOT, "all_leaders_s", took.as_secs_f64()));
    report.note(format!(
        "{BOOT}: seconds from the bulk bootstrap of {MANY_REGIONS} regions on each store until every \
         region has a leader (status polled every 250 ms)"
    ));

    let now = Instant::now();
    let load = Load {
        tasks: MANY_CLIENTS,
        pick: Pick::Random,
        measure_from: now + plan.warmup,
        until: now + plan.warmup + plan.many_clients,
        seed: 3,
    };
    let m = measured_load(&c, targets, timer, load)?;
    check_load(MANY, &m.load)?;
    push_write(report, MANY, &m, floor, None);

    let (peers, sleeping) = c.wait_hibernation(plan.hibernate_wait)?;
    if sleeping < peers {
        report.note(format!(
            "{IDLE_ON}: only {sleeping} of {peers} peers hibernated within {:?}; measured anyway; {}",
            plan.hibernate_wait,
            c.awake_summary()?
        ));
    }
    let idle = idle_cpu(&c, timer, plan.idle_window)?;
    let (_, sleeping_after) = c.hibernation()?;
    c.stop()?;
    report.push(CaseResult::plain(IDLE_ON, "cpu_pct_of_one_core", idle.cpu_pct).with_target("< 2"));
    report.push(CaseResult::plain(IDLE_ON, "peers", peers as f64));
    report.push(CaseResult::plain(IDLE_ON, "hibernating_before", sleeping as f64));
    report.push(CaseResult::plain(IDLE_ON, "hibernating_after", sleeping_after as f64));
    report.push(CaseResult::plain(IDLE_ON, "peer_ticks_per_s", idle.peer_ticks_per_s));
    report.note(format!(
        "idle CPU: process user+system time of every thread (/proc/self/stat utime+stime, the accounting \
         getrusage(RUSAGE_SELF) reports, in 1/{USER_HZ} s) over a {:?} wall-clock window with no clients \
         and the bench's own timer thread paused, as a percentage of one core",
        plan.idle_window
    ));
    Ok(())
}

/// `idle/regions=10000/hibernate=off`: the same cluster without
/// hibernation, no clients, after the elections settled.
fn idle_awake(dir: &Path, plan: &Plan, timer: &mut Timer, report: &mut Report) -> Result<(), BoxError> {
    let regions = cluster::regions(MANY_REGIONS);
    let (c, _, _) = start_with(dir, &bench_config(false), timer, &regions, plan.leader_wait)?;
    std::thread::sleep(Duration::from_secs(3));
    let before = c.leaders()?;
    let idle = idle_cpu(&c, timer, plan.idle_window)?;
    let after = c.leaders()?;
    c.stop()?;
    let moved = regions
        .iter()
        .filter(|r| match (before.get(&r.id), after.get(&r.id)) {
            (Some(a), Some(b)) => a.store != b.store,
            _ => true,
        })
        .count();
    report.push(CaseResult::plain(IDLE_OFF, "cpu_pct_of_one_core", idle.cpu_pct));
    report.push(CaseResult::plain(IDLE_OFF, "peer_ticks_per_s", idle.peer_ticks_per_s));
    report.push(CaseResult::plain(IDLE_OFF, "regions_leaderless_or_moved", moved as f64));
    report.note(format!(
        "{IDLE_OFF}: hibernate_after_ticks = 0, no clients, measured 3 s after every region had a leader; \
         regions_leaderless_or_moved counts regions whose leader's store changed across the window"
    ));
    Ok(())
}

/// What an idle window measured.
struct Idle {
    cpu_pct: f64,
    peer_ticks_per_s: f64,
}

/// Process CPU over `window` of wall time, with the timer thread paused;
/// peer ticks from the shards' counters around it.
fn idle_cpu(c: &Cluster, timer: &mut Timer, window: Duration) -> Result<Idle, BoxError> {
    let ticks_before = c.stats()?.peer_ticks;
    let t_stats = Instant::now();
    timer.pause();
    let (cpu0, t0) = (process_cpu()?, Instant::now());
    std::thread::sleep(window);
    let (cpu1, t1) = (process_cpu()?, Instant::now());
    timer.resume()?;
    let ticks_after = c.stats()?.peer_ticks;
    let cpu = cpu1.saturating_sub(cpu0).as_secs_f64();
    Ok(Idle {
        cpu_pct: 100.0 * cpu / (t1 - t0).as_secs_f64(),
        peer_ticks_per_s: (ticks_after - ticks_before) as f64 / t_stats.elapsed().as_secs_f64(),
    })
}

/// User + system CPU time of this process, every thread, live and exited:
/// fields 14 and 15 of `/proc/self/stat`.
fn process_cpu() -> Result<Duration, BoxError> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    parse_cpu(&stat).ok_or_else(|| format!("cannot read utime/stime from /proc/self/stat: {stat:?}").into())
}

fn parse_cpu(stat: &str) -> Option<Duration> {
    // The command name (field 2) may hold spaces and parentheses: fields
    // are counted after its closing parenthesis, which starts at field 3.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_times() {
        let stat = "1234 (ekv (bench) x) S 1 2 3 4 5 6 7 8 9 10 250 31 0 0 20 0 9 0 100 200 300";
        assert_eq!(parse_cpu(stat), Some(Duration::from_millis(2810)));
        assert_eq!(parse_cpu("garbage"), None);
        assert!(process_cpu().is_ok());
    }

    #[test]
    fn the_put_entry_is_about_200_bytes() {
        let n = put_entry_len();
        assert!((150..=250).contains(&n), "{n}");
    }
}
