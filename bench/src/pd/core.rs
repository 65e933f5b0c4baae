//! The `core/...` cases: the sans-I/O [`Cluster`] alone, on this thread.

use std::hint::black_box;
use std::time::Instant;

use ekv_pd::core::{Cluster, Settings};
use ekv_proto::msg::{RegionHeartbeatRequest, StoreHeartbeatRequest, StoreMeta};
use ekv_proto::{PeerId, PeerMeta, Region, RegionEpoch, RegionId, StoreId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{heartbeat, key_in, median, region_id, rss_bytes, Plan, CHANGED_EVERY, STORES};
use crate::harness::{CaseResult, Report};

/// Simulated heartbeats per millisecond (the core reads no clock).
const PER_MS: u64 = 50;

/// A bootstrapped cluster with the fake stores registered and live at `now_ms`.
pub(super) fn new_cluster(settings: Settings, now_ms: u64) -> Cluster {
    let mut c = Cluster::new(settings);
    let first = Region {
        id: RegionId(2),
        epoch: RegionEpoch { conf_ver: 1, version: 1 },
        peers: vec![PeerMeta { id: PeerId(3), store_id: StoreId(1) }],
        ..Region::default()
    };
    c.bootstrap(store_meta(1), first, now_ms).expect("a fresh cluster bootstraps");
    for s in 2..=STORES {
        c.put_store(store_meta(s), now_ms).expect("a new store registers");
    }
    store_heartbeats(&mut c, now_ms);
    c.take_changes();
    c
}

/// The registration of fake store `id`.
pub(super) fn store_meta(id: u64) -> StoreMeta {
    StoreMeta {
        id: StoreId(id),
        address: format!("127.0.0.{}:20160", 10 + id),
        shard_count: 1,
        ..Default::default()
    }
}

/// Fake store `id`'s heartbeat: a big, mostly empty disk.
pub(super) fn store_heartbeat(id: u64) -> StoreHeartbeatRequest {
    StoreHeartbeatRequest {
        store_id: StoreId(id),
        capacity: 4 << 40,
        available: 3 << 40,
        used_size: 1 << 40,
        ..Default::default()
    }
}

fn store_heartbeats(c: &mut Cluster, now_ms: u64) {
    for s in 1..=STORES {
        c.store_heartbeat(&store_heartbeat(s), now_ms).expect("a registered store heartbeats");
    }
}

/// Runs the core cases for `n` regions.
pub(super) fn run(opts: &crate::Opts, plan: &Plan, n: usize, report: &mut Report) {
    let rss_before = rss_bytes();
    let mut now = 1_000;
    let mut c = new_cluster(Settings { max_used_ratio: 0.99, ..Settings::default() }, now);
    let mut operators = 0u64;
    let start = Instant::now();
    for i in 0..n {
        now = 1_000 + i as u64 / PER_MS;
        let answer = c.region_heartbeat(&heartbeat(i, n, 0, 0), now).expect("a heartbeat is answered");
        operators += u64::from(answer.operator.is_some());
        black_box(c.take_changes());
    }
    let load = start.elapsed();
    let rss = rss_bytes().saturating_sub(rss_before);
    assert_eq!(c.regions().len(), n, "every generated region is in the table");

    let mut rng = ChaCha8Rng::seed_from_u64(n as u64);
    let mut bumps = vec![0u64; n];
    let mut seq = 0u64;
    let mut hb_ns = Vec::new();
    let mut get_ns = Vec::new();
    for _ in 0..plan.core_rounds {
        // Built before the clock starts: the core's cost alone.
        let batch: Vec<RegionHeartbeatRequest> = (0..plan.core_ops)
            .map(|_| {
                let i = rng.gen_range(0..n);
                seq += 1;
                if seq % CHANGED_EVERY == 0 {
                    bumps[i] += 1;
                }
                heartbeat(i, n, bumps[i], seq)
            })
            .collect();
        store_heartbeats(&mut c, now);
        let t = Instant::now();
        for (k, hb) in batch.iter().enumerate() {
            now += u64::from(k as u64 % PER_MS == 0);
            let answer = c.region_heartbeat(hb, now).expect("a heartbeat is answered");
            operators += u64::from(answer.operator.is_some());
            black_box(c.take_changes());
        }
        hb_ns.push(t.elapsed().as_nanos() as f64 / batch.len() as f64);
        drop(batch);

        let keys: Vec<(usize, Vec<u8>)> = (0..plan.core_ops)
            .map(|_| {
                let i = rng.gen_range(0..n);
                (i, key_in(i, rng.gen()))
            })
            .collect();
        let t = Instant::now();
        for (i, k) in &keys {
            let route = c.get_region(k).expect("every key has a region");
            debug_assert_eq!(route.region.id, region_id(*i));
            black_box(route);
        }
        get_ns.push(t.elapsed().as_nanos() as f64 / keys.len() as f64);
    }
    let case = |what: &str| format!("core/{what}/regions={n}");
    if opts.wants(&case("load")) {
        report.push(CaseResult::plain(case("load"), "regions_per_s", n as f64 / load.as_secs_f64()));
        report.push(CaseResult::plain(case("rss"), "bytes_per_region", rss as f64 / n as f64));
    }
    if opts.wants(&case("heartbeat")) || opts.wants(&case("get_region")) {
        let hb = median(hb_ns);
        report.push(CaseResult::plain(case("heartbeat"), "ns_per_op", hb));
        report.push(CaseResult::plain(case("heartbeat"), "hb_per_s", 1e9 / hb));
        report.push(CaseResult::plain(case("get_region"), "ns_per_op", median(get_ns)));
    }
    if operators > 0 {
        report.note(format!("core, {n} regions: {operators} heartbeat answers carried an operator"));
    }
}
