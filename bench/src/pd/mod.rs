//! The `pd` suite: how many region heartbeats one meta-service member
//! handles per second, and how fast it answers `GetRegion`, with a large
//! routing table.
//!
//! # Cases (for each table size N: 100,000 and 1,000,000; quick: 10,000
//! and 100,000)
//!
//! - `member/load/regions=N`: a real single meta-service member
//!   ([`ekv_pd::member::Member`]) started in this process on loopback,
//!   its executor pinned to CPU 0. Three fake stores register, then the
//!   table is filled the way the meta service learns regions in a real
//!   cluster: one region heartbeat per region, from the region's (fake)
//!   leader. Region i covers `[b(i), b(i+1))` (16-byte boundaries; the
//!   first and last are open), version 2, so the first report replaces the
//!   bootstrap region and none overlaps another. Each new region is a
//!   `PutRegion` record the member writes through its raft group before it
//!   answers; the heartbeats are pipelined ([`CONNS`] connections,
//!   [`WINDOW`] in flight each), so the raftstore's group commit puts many
//!   of them in one WAL write. Metric: regions learned per second.
//! - `member/heartbeat/regions=N`: steady state: heartbeats of random
//!   regions with their current epoch, 1 in [`CHANGED_EVERY`] with a
//!   `conf_ver` bump (a membership change, written through raft like any
//!   epoch move), from the same pipelined connections, saturating the
//!   member. Metric: answers per second, median of the rounds. Target
//!   at 1,000,000 regions: `>= 50000`.
//! - `member/get_region/regions=N`: one closed-loop client, blocking
//!   round trips of `GetRegion` for random keys (the answer is checked:
//!   the region holding the key), with no other load: p50/p99/p999. Target
//!   at 1,000,000 regions: p99 `< 50` µs.
//! - `member/get_region_under_load/regions=N`: the same while the
//!   heartbeat connections send at half the measured saturation rate.
//! - `member/echo/regions=N`: the loopback floor of that round trip,
//!   measured in the same run: a plain TCP echo (a std thread) reading a
//!   `GetRegion` request frame's bytes and writing back as many bytes as
//!   the member's answer, driven by the same blocking loop.
//! - `member/rss/regions=N`: resident memory of the whole process
//!   (member, its store, the load generator) after the load, minus before
//!   the member started, per region.
//! - `core/...`: the sans-I/O [`ekv_pd::core::Cluster`] alone, in this
//!   thread, with the same regions: `core/load` (regions/s),
//!   `core/heartbeat` (heartbeats/s and ns each, same mix), `core/get_region`
//!   (ns per lookup of a random key) and `core/rss` (bytes per region).
//!   Where the member's time goes that is not here is the network, the
//!   frame codec and the raft writes.
//!
//! The stores' heartbeats (every second, from another connection) keep the
//! fake stores live, so the scheduler sees a healthy, balanced cluster:
//! three stores, each region with a replica on each and leaders spread
//! evenly, nothing hot. Answers carrying an operator are counted in the
//! notes (none are expected).

mod core;
mod member;
#[cfg(test)]
mod tests;

use std::time::Duration;

use ekv_proto::msg::RegionHeartbeatRequest;
use ekv_proto::{PeerId, PeerMeta, Region, RegionEpoch, RegionId, StoreId};

use crate::harness::{self, Machine, Report};

type BoxError = Box<dyn std::error::Error>;

/// Fake stores: every region has one replica on each.
const STORES: u64 = 3;
/// First id of the generated regions and peers (below: the bootstrap
/// region and its peer).
const FIRST_ID: u64 = 1_000;
/// One heartbeat in this many carries an epoch change.
const CHANGED_EVERY: u64 = 200;
/// Pipelined connections sending region heartbeats.
const CONNS: usize = 4;
/// Heartbeats each connection has in flight (two batches of half).
const WINDOW: usize = 128;
/// The targets at 1,000,000 regions.
const TARGET_REGIONS: usize = 1_000_000;
const TARGET_HB: &str = ">= 50000";
const TARGET_GET_P99: &str = "< 50";

/// Lengths of a run.
#[derive(Debug, Clone)]
struct Plan {
    sizes: Vec<usize>,
    warmup: Duration,
    rounds: usize,
    round: Duration,
    get: Duration,
    core_rounds: usize,
    core_ops: usize,
    leader_wait: Duration,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan {
                sizes: vec![10_000, 100_000],
                warmup: Duration::from_millis(500),
                rounds: 3,
                round: Duration::from_secs(1),
                get: Duration::from_secs(1),
                core_rounds: 3,
                core_ops: 50_000,
                leader_wait: Duration::from_secs(30),
            }
        } else {
            Plan {
                sizes: vec![100_000, 1_000_000],
                warmup: Duration::from_secs(2),
                rounds: 5,
                round: Duration::from_secs(3),
                get: Duration::from_secs(5),
                core_rounds: 5,
                core_ops: 500_000,
                leader_wait: Duration::from_secs(60),
            }
        }
    }
}

/// Runs the pd suite.
pub fn run(opts: &crate::Opts) -> Result<Report, BoxError> {
    run_plan(opts, &Plan::new(opts.quick))
}

fn run_plan(opts: &crate::Opts, plan: &Plan) -> Result<Report, BoxError> {
    let dir = harness::data_dir(opts.dir.clone())?;
    let mut report = Report::new("pd", Machine::detect(Some(dir.path())));
    for &n in &plan.sizes {
        if opts.wants(&format!("core/load/regions={n}")) || opts.wants(&format!("core/heartbeat/regions={n}"))
        {
            core::run(opts, plan, n, &mut report);
        }
        let member_cases = ["load", "heartbeat", "get_region", "get_region_under_load", "echo", "rss"];
        if member_cases.iter().any(|c| opts.wants(&format!("member/{c}/regions={n}"))) {
            let sub = dir.path().join(format!("member-{n}"));
            member::run(plan, n, &sub, &mut report)?;
        }
    }
    report.note(format!(
        "{} run; {STORES} fake stores, every region with a replica on each, leaders spread evenly; steady \
         heartbeats carry the current epoch, 1 in {CHANGED_EVERY} a conf_ver bump (written through raft); \
         {CONNS} heartbeat connections with {WINDOW} in flight each; rates are medians of {} rounds of {:?}",
        if opts.quick { "quick" } else { "full" },
        plan.rounds,
        plan.round,
    ));
    Ok(report)
}

// ---------------------------------------------------------------- regions

/// The key where region `i` starts (region 0 starts at the empty key).
fn boundary(i: usize) -> Vec<u8> {
    format!("r{i:015}").into_bytes()
}

/// A key inside region `i`: its start boundary plus `suffix`.
fn key_in(i: usize, suffix: u32) -> Vec<u8> {
    let mut k = boundary(i);
    k.extend_from_slice(&suffix.to_be_bytes());
    k
}

fn region_id(i: usize) -> RegionId {
    RegionId(FIRST_ID + (i as u64) * (STORES + 1))
}

/// Region `i` of `n`, with `conf_bumps` membership changes behind it.
fn region(i: usize, n: usize, conf_bumps: u64) -> Region {
    let id = region_id(i);
    Region {
        id,
        start_key: if i == 0 { Vec::new() } else { boundary(i) },
        end_key: if i + 1 == n { Vec::new() } else { boundary(i + 1) },
        epoch: RegionEpoch { conf_ver: 2 + conf_bumps, version: 2 },
        peers: (1..=STORES).map(|s| PeerMeta { id: PeerId(id.get() + s), store_id: StoreId(s) }).collect(),
    }
}

/// The heartbeat region `i`'s leader sends: the leader rotates over the
/// stores with `i`; sizes move a little with `seq`; no traffic (a hot
/// region would be scheduled).
fn heartbeat(i: usize, n: usize, conf_bumps: u64, seq: u64) -> RegionHeartbeatRequest {
    let region = region(i, n, conf_bumps);
    let leader = Some(region.peers[i % STORES as usize]);
    RegionHeartbeatRequest {
        region,
        leader,
        leader_shard: 0,
        approximate_size: (64 << 20) + (seq % 4096),
        approximate_keys: 500_000 + (seq % 512),
        ..Default::default()
    }
}

/// Resident memory of this process, in bytes (0 when unknown).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                let rest = l.strip_prefix("VmRSS:")?;
                rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
            })
        })
        .map_or(0, |kb| kb * 1024)
}

/// Median of `xs` (0.0 when empty).
fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    if xs.len() % 2 == 1 {
        xs[m]
    } else {
        (xs[m - 1] + xs[m]) / 2.0
    }
}
