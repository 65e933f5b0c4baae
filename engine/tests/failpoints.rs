//! Crashes at the dangerous points of the write path, and storage errors,
//! on the deterministic simulator.
//!
//! Each scenario runs a workload on three replicas, stops one store at a
//! failpoint (the point returns an error the round treats as fatal, so the
//! store stops right there: [`SimCluster::fail_stop`]), crashes it (its
//! unsynced data is lost, or on odd seeds torn), restarts it and lets the
//! cluster settle. Then every replica of every region must hold the same
//! data, every acknowledged write must be in all of them, and the history
//! must be linearizable.
//!
//! The failpoint configuration is global to the process: every test holds a
//! [`FailScenario`], which serialises them. Seeds per scenario:
//! `EKV_FAILPOINT_SEEDS` (default 3). Run with
//! `cargo test -p ekv-engine --features failpoints --test failpoints`.
#![cfg(feature = "failpoints")]

mod sim;

use bytes::Bytes;
use ekv_engine::{Command, PeerChange, Request, Response, WriteOp};
use ekv_io::{CrashMode, Fault, FaultOp, EIO, ENOSPC};
use ekv_proto::{PeerId, PeerMeta, Region, RegionId, StoreId};
use fail::FailScenario;
use sim::workload::Workload;
use sim::{sim_config, SimCluster, Slot};

fn seeds() -> std::ops::Range<u64> {
    let n = std::env::var("EKV_FAILPOINT_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    0..n
}

/// Puts of unique keys, remembering which were acknowledged.
#[derive(Default)]
struct Acked {
    pending: Vec<(Vec<u8>, Vec<u8>, Slot)>,
    acked: Vec<(Vec<u8>, Vec<u8>)>,
    next: u64,
    value_len: usize,
}

impl Acked {
    /// Takes in the answers that arrived.
    fn collect(&mut self, seed: u64) {
        let mut still = Vec::new();
        for (k, v, slot) in self.pending.drain(..) {
            let answer = slot.borrow_mut().take();
            match answer {
                Some(Ok(Response::Written)) => self.acked.push((k, v)),
                Some(Ok(other)) => panic!("seed {seed}: a put answered {other:?}"),
                // Refused, or outcome unknown: either way not acknowledged.
                Some(Err(_)) => {}
                None => still.push((k, v, slot)),
            }
        }
        self.pending = still;
    }

    fn drive(&mut self, c: &mut SimCluster) {
        self.collect(c.seed);
        if self.pending.len() >= 2 {
            return;
        }
        self.next += 1;
        let key = format!("k{:06}", self.next).into_bytes();
        let mut value = format!("v{}-", self.next).into_bytes();
        value.resize(self.value_len.max(value.len()), b'.');
        let Some(region) = c.region_for(&key) else { return };
        let store = c.leader(region.id).map_or(region.peers[0].store_id, |l| l.0);
        let cmd = Command::Write(vec![WriteOp::Put {
            cf: "default".into(),
            key: Bytes::from(key.clone()),
            value: Bytes::from(value.clone()),
        }]);
        let slot = c.call(store, Request { region_id: region.id, epoch: region.epoch, cmd });
        self.pending.push((key, value, slot));
    }
}

/// A cluster under load: four stores (two shards each), region 1 on
/// stores 1..=3; memtables small enough that flushes and compactions run.
struct Run {
    seed: u64,
    c: SimCluster,
    w: Workload,
    a: Acked,
}

impl Run {
    fn new(seed: u64) -> Self {
        let mut cfg = sim_config();
        cfg.lsm_memtable_bytes = 16 << 10;
        let mut c = SimCluster::new(seed, 4, 2, cfg);
        c.fail_stop = true;
        let region = c.bootstrap(&[1, 2, 3]);
        c.must_leader(region.id, 300);
        let a = Acked { value_len: 700, ..Acked::default() };
        let mut run = Run { seed, c, w: Workload::new(4, &["a", "h", "q", "x"]), a };
        run.drive(40);
        run
    }

    fn drive(&mut self, ticks: u64) {
        for _ in 0..ticks {
            self.w.drive(&mut self.c);
            self.a.drive(&mut self.c);
            self.c.tick();
        }
    }

    /// Drives until a store stops on an error; returns it and the error.
    fn wait_failed(&mut self, max_ticks: u64, what: &str) -> (u64, String) {
        for _ in 0..max_ticks {
            if let Some((id, n)) = self.c.nodes.iter().find(|(_, n)| n.failed.is_some()) {
                return (id.get(), n.failed.clone().expect("failed"));
            }
            self.drive(1);
        }
        panic!("seed {}: {what}: no store stopped within {max_ticks} ticks", self.seed);
    }

    /// Stops at `point` (armed to fire once), crashes and restarts the store.
    fn crash_at(&mut self, point: &str, max_ticks: u64) -> u64 {
        fail::cfg(point, "1*return").expect("failpoint config");
        let (victim, error) = self.wait_failed(max_ticks, point);
        fail::remove(point);
        assert!(
            error.contains(point),
            "seed {}: store {victim} stopped on {error}, not at {point}",
            self.seed
        );
        self.crash_restart(victim);
        victim
    }

    /// Crashes `victim` (odd seeds keep a torn part of its unsynced
    /// writes, even ones none), runs the rest a while, restarts it.
    fn crash_restart(&mut self, victim: u64) {
        let mode =
            if self.seed % 2 == 1 { CrashMode::Tear { seed: self.seed } } else { CrashMode::DropUnsynced };
        self.c.crash_with(victim, mode);
        self.drive(30);
        self.c.restart(victim);
    }

    /// Lets the cluster settle, then checks replicas, acknowledged writes
    /// and the history.
    fn must_be_consistent(&mut self, name: &str) {
        self.drive(60);
        self.w.finish(&mut self.c);
        // Puts still unanswered after this count as unknown, as a client's
        // timeout would.
        for _ in 0..300 {
            self.a.collect(self.seed);
            if self.a.pending.is_empty() {
                break;
            }
            self.c.tick();
        }
        let regions = self.wait_converged(name);
        for region in &regions {
            let mut dumps = region.peers.iter().map(|p| (p.store_id, self.c.dump(p.store_id, region)));
            let (first_store, first) = dumps.next().expect("a replica");
            for (store, dump) in dumps {
                if dump != first {
                    panic!(
                        "seed {}: {name}: {} differs between {first_store} ({} keys) and {store} ({} keys)",
                        self.seed,
                        region.id,
                        first.len(),
                        dump.len()
                    );
                }
            }
            for (k, v) in &self.a.acked {
                if region.contains(k) && !first.iter().any(|(fk, fv)| fk == k && fv == v) {
                    panic!(
                        "seed {}: {name}: acknowledged {} lost in {}",
                        self.seed,
                        String::from_utf8_lossy(k),
                        region.id
                    );
                }
            }
        }
        assert!(!self.a.acked.is_empty(), "seed {}: {name}: no put was acknowledged", self.seed);
        self.w.must_be_linearizable(self.seed, name);
    }

    /// Ticks until every region's replicas (as its newest epoch lists them)
    /// are up, initialized and applied to the same index; returns the regions.
    fn wait_converged(&mut self, name: &str) -> Vec<Region> {
        for _ in 0..2000 {
            if let Some(regions) = self.converged() {
                return regions;
            }
            self.c.tick();
        }
        let failed: Vec<_> =
            self.c.nodes.iter().filter_map(|(id, n)| n.failed.as_ref().map(|e| (*id, e))).collect();
        panic!(
            "seed {}: {name}: replicas did not converge; stopped: {failed:?}; {:#?}",
            self.seed,
            self.c.status()
        );
    }

    fn converged(&self) -> Option<Vec<Region>> {
        let status = self.c.status();
        let mut ids: Vec<RegionId> = status.iter().map(|(_, _, p)| p.region.id).collect();
        ids.sort();
        ids.dedup();
        let mut out = Vec::new();
        for id in ids {
            let peers: Vec<_> = status.iter().filter(|(_, _, p)| p.region.id == id).collect();
            let newest = peers
                .iter()
                .map(|(_, _, p)| &p.region)
                .max_by_key(|r| (r.epoch.version, r.epoch.conf_ver))
                .expect("a peer");
            let leader = peers.iter().find(|(_, _, p)| p.is_leader)?;
            for member in &newest.peers {
                let p = peers.iter().find(|(s, _, p)| *s == member.store_id && p.peer.id == member.id)?;
                if !p.2.initialized || p.2.applied_index != leader.2.applied_index || p.2.region != *newest {
                    return None;
                }
            }
            // A removed replica still present is fine: it is no member.
            out.push(newest.clone());
        }
        Some(out)
    }
}

fn scenario(name: &str, body: impl Fn(&mut Run)) {
    for seed in seeds() {
        let scenario = FailScenario::setup();
        let mut run = Run::new(seed);
        body(&mut run);
        run.must_be_consistent(name);
        scenario.teardown();
    }
}

/// Entries durable in the WAL, the round stopped before handing them to apply.
#[test]
fn crash_after_wal_sync_before_apply() {
    scenario("after_wal_sync", |run| {
        run.crash_at("engine::round::after_wal_sync", 50);
    });
}

/// The WAL's fdatasync succeeded but the log reported a failure (and is
/// poisoned): the batch is on disk, its writer was never acknowledged.
#[test]
fn crash_when_wal_sync_succeeded_but_reported_failed() {
    scenario("wal_sync_reported_failed", |run| {
        run.crash_at("wal::write::after_sync", 50);
    });
}

/// A flushed table is written and synced, the manifest does not list it yet.
#[test]
fn crash_between_flushed_table_and_manifest() {
    scenario("flush_before_manifest", |run| {
        run.crash_at("lsm::flush::before_manifest", 400);
    });
}

/// Compaction outputs are written and synced, the manifest still lists the inputs.
#[test]
fn crash_between_compaction_outputs_and_manifest() {
    scenario("compaction_before_manifest", |run| {
        run.crash_at("lsm::compaction::before_manifest", 1500);
    });
}

/// Cuts store 3 off until the leader's log is compacted past it, then
/// heals: store 3 can only catch up by a snapshot.
fn lag_behind_log_gc(run: &mut Run) {
    run.c.isolate(3);
    let leader_first = |c: &SimCluster| {
        c.leader(RegionId(1)).map_or(0, |(s, p)| if s == StoreId(3) { 0 } else { p.first_index })
    };
    let mut ticks = 0;
    while leader_first(&run.c) < 260 {
        run.drive(10);
        ticks += 10;
        assert!(ticks < 3000, "seed {}: the leader's log was not compacted", run.seed);
    }
    run.c.recover();
}

/// The snapshot's tables are moved into the LSM, the manifest does not
/// list them yet (nor the peer state they carry).
#[test]
fn crash_during_snapshot_ingest() {
    scenario("snapshot_ingest_before_manifest", |run| {
        lag_behind_log_gc(run);
        let victim = run.crash_at("lsm::ingest::before_manifest", 600);
        assert_eq!(victim, 3, "seed {}: only store 3 applies a snapshot", run.seed);
    });
}

/// The snapshot is ingested (data and peer state), the round's WAL write
/// that drops the region's older log has not happened.
#[test]
fn crash_after_snapshot_ingest_before_log_truncation() {
    scenario("snapshot_after_ingest", |run| {
        lag_behind_log_gc(run);
        let victim = run.crash_at("engine::snapshot::after_ingest", 600);
        assert_eq!(victim, 3, "seed {}: only store 3 applies a snapshot", run.seed);
    });
}

/// A conf change is applied to raft's configuration, the region meta with
/// the new peer list is not persisted.
#[test]
fn crash_after_conf_change_applied_to_raft() {
    scenario("conf_change_after_raft_apply", |run| {
        fail::cfg("engine::conf_change::after_raft_apply", "1*return").expect("failpoint config");
        let region = run.c.region_for(b"a").expect("region");
        let (leader, _) = run.c.leader(region.id).expect("leader");
        let add = PeerChange::AddVoter(PeerMeta { id: PeerId(run.c.pd.alloc()), store_id: StoreId(4) });
        let req = Request { region_id: region.id, epoch: region.epoch, cmd: Command::ChangePeers(vec![add]) };
        let _ = run.c.call(leader, req);
        let (victim, error) = run.wait_failed(200, "conf change");
        fail::remove("engine::conf_change::after_raft_apply");
        assert!(error.contains("engine::conf_change::after_raft_apply"), "seed {}: {error}", run.seed);
        run.crash_restart(victim);
        run.drive(100);
        let region = run.c.region_for(b"a").expect("region");
        assert!(
            region.peer_on(StoreId(4)).is_some(),
            "seed {}: the committed conf change was lost",
            run.seed
        );
    });
}

/// Asserts that `error` names the file and the errno.
fn must_name_file_and_errno(seed: u64, error: &str, file_part: &str, errno: i32) {
    assert!(
        error.contains(file_part) && error.contains(&format!("os error {errno}")),
        "seed {seed}: unclear error: {error}"
    );
}

/// A WAL fdatasync fails with EIO on the leader's store: the store stops
/// with the file and errno in its error, nothing proposed there after the
/// fault is acknowledged, the other replicas go on, and after a restart the
/// replicas agree.
#[test]
fn wal_sync_error_stops_the_store() {
    scenario("wal_sync_eio", |run| {
        let region = run.c.region_for(b"a").expect("region");
        let (leader, _) = run.c.leader(region.id).expect("leader");
        run.c
            .nodes
            .get_mut(&leader)
            .expect("leader")
            .fs
            .inject(Fault::new(FaultOp::Sync, EIO).on_path("/wal/"));
        let mut after_fault = Vec::new();
        for i in 0..4 {
            let cmd = Command::Write(vec![WriteOp::Put {
                cf: "default".into(),
                key: Bytes::from(format!("z{i}")),
                value: Bytes::from_static(b"unacked?"),
            }]);
            after_fault.push(run.c.call(leader, Request { region_id: region.id, epoch: region.epoch, cmd }));
        }
        let (victim, error) = run.wait_failed(50, "WAL EIO");
        assert_eq!(victim, leader.get(), "seed {}", run.seed);
        must_name_file_and_errno(run.seed, &error, "/wal/", EIO);
        run.drive(60);
        for slot in &after_fault {
            let answer = slot.borrow_mut().take();
            assert!(
                !matches!(answer, Some(Ok(_))),
                "seed {}: a write on the failed store was acknowledged",
                run.seed
            );
        }
        // The others elect a leader and serve.
        run.c.must_put(b"after", b"failure");
        assert_eq!(run.c.must_get(b"after").as_deref(), Some(&b"failure"[..]));
        assert!(!run.c.nodes[&leader].up, "seed {}: the failed store kept running", run.seed);
        run.c.nodes[&leader].fs.clear_faults();
        run.crash_restart(leader.get());
    });
}

/// A table write fails with ENOSPC on a follower's store: its LSM is
/// poisoned, the store stops with the file and errno in its error, and
/// once the disk has room again a restart recovers it.
#[test]
fn lsm_enospc_stops_the_store() {
    scenario("lsm_enospc", |run| {
        let region = run.c.region_for(b"a").expect("region");
        let (leader, _) = run.c.leader(region.id).expect("leader");
        let follower = region.peers.iter().map(|p| p.store_id).find(|s| *s != leader).expect("follower");
        let fs = run.c.nodes[&follower].fs.clone();
        fs.inject(Fault::new(FaultOp::Write, ENOSPC).on_path("/lsm/"));
        let (victim, error) = run.wait_failed(600, "LSM ENOSPC");
        assert_eq!(victim, follower.get(), "seed {}", run.seed);
        must_name_file_and_errno(run.seed, &error, "/lsm/", ENOSPC);
        assert!(fs.injected_count() > 0);
        let acked = run.a.acked.len();
        run.drive(60);
        assert!(run.a.acked.len() > acked, "seed {}: the other replicas stopped serving", run.seed);
        fs.clear_faults();
        run.crash_restart(follower.get());
    });
}

/// On real files and executors: a shard that stops on an error reports it
/// through `StoreHandle::on_shard_failure` (what `ekv store` waits on to
/// exit), the command it held is not acknowledged, and `Store::stop`
/// returns the error.
#[test]
fn a_failed_shard_of_a_real_store_is_reported() {
    use ekv_engine::{Config, LocalNetwork, LocalPd, Store, StoreSpec};
    use ekv_proto::RegionEpoch;
    use std::time::{Duration, Instant};

    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().expect("temp dir");
    let net = LocalNetwork::new();
    let pd = LocalPd::new(net.clone(), 1000);
    let cfg = Config {
        shards: 1,
        tick_interval: Duration::from_millis(10),
        election_ticks: 10,
        heartbeat_ticks: 2,
        lease_ticks: 8,
        wal_segment_bytes: 1 << 20,
        wal_cache_bytes: 1 << 20,
        lsm_memtable_bytes: 1 << 20,
        lsm_block_cache_bytes: 4 << 20,
        ..Config::default()
    };
    let id = StoreId(1);
    let spec = StoreSpec::new(cfg, dir.path().join("store-1"), id, net.transport_for(id), pd.client_for(id));
    let store = Store::start(spec).expect("store starts");
    net.register(&store);
    let region = Region {
        id: RegionId(1),
        epoch: RegionEpoch { conf_ver: 1, version: 1 },
        peers: vec![PeerMeta { id: PeerId(1), store_id: id }],
        ..Region::default()
    };
    futures::executor::block_on(store.bootstrap_region(region.clone())).expect("bootstrap");
    let put = |key: &'static str| Request {
        region_id: region.id,
        epoch: region.epoch,
        cmd: Command::Write(vec![WriteOp::Put {
            cf: "default".into(),
            key: Bytes::from_static(key.as_bytes()),
            value: Bytes::from_static(b"v"),
        }]),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.call_blocking(put("before")).is_err() {
        assert!(Instant::now() < deadline, "the region never took a write");
        std::thread::sleep(Duration::from_millis(5));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    store.handle().on_shard_failure(move |e| {
        let _ = tx.send(e.to_owned());
    });
    assert_eq!(store.handle().shard_failure(), None);
    fail::cfg("engine::round::after_wal_sync", "return").expect("failpoint config");
    let answer = store.call_blocking(put("after"));
    assert!(answer.is_err(), "a write whose round failed was acknowledged: {answer:?}");
    let reported = rx.recv_timeout(Duration::from_secs(20)).expect("the failure was reported");
    assert!(
        reported.contains("shard 0") && reported.contains("engine::round::after_wal_sync"),
        "unclear failure: {reported}"
    );
    assert_eq!(store.handle().shard_failure().as_deref(), Some(reported.as_str()));
    // A waiter that comes late is told at once.
    let (tx, rx) = std::sync::mpsc::channel();
    store.handle().on_shard_failure(move |e| {
        let _ = tx.send(e.to_owned());
    });
    assert_eq!(rx.try_recv().as_deref(), Ok(reported.as_str()));
    fail::remove("engine::round::after_wal_sync");
    net.unregister(id);
    let stopped = store.stop();
    assert!(stopped.is_err(), "stop hid the failure");
    scenario.teardown();
}
