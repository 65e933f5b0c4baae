//! Features of the raftstore on the simulator: reads of every kind, range
//! deletes, multi-key splits, automatic splits, log GC and WAL recycling,
//! meta-service operators, per-message filters, and replay of a seed.

mod sim;

use bytes::Bytes;
use ekv_engine::{Command, Error, Operator, Response, Scan, WriteOp};
use ekv_proto::{PeerId, PeerMeta, RegionId, StoreId};
use raft::eraftpb::MessageType;
use sim::workload::Workload;
use sim::{sim_config, RegionFilter, SimCluster};

fn put(k: &str, v: &str) -> WriteOp {
    WriteOp::Put { cf: "default".into(), key: Bytes::from(k.to_owned()), value: Bytes::from(v.to_owned()) }
}

fn started(seed: u64) -> SimCluster {
    let mut c = SimCluster::new(seed, 3, 1, sim_config());
    let region = c.bootstrap(&[1, 2, 3]);
    c.must_leader(region.id, 200);
    c
}

fn scan(
    c: &mut SimCluster,
    start: &str,
    end: &str,
    limit: usize,
    reverse: bool,
    key_only: bool,
) -> Vec<(String, String)> {
    let cmd = Command::Scan(Scan {
        cf: "default".into(),
        start: Bytes::from(start.to_owned()),
        end: Bytes::from(end.to_owned()),
        limit,
        reverse,
        key_only,
    });
    match c.must(start.as_bytes(), cmd, 200) {
        Response::Pairs(p) => p
            .into_iter()
            .map(|(k, v)| (String::from_utf8(k.to_vec()).unwrap(), String::from_utf8(v.to_vec()).unwrap()))
            .collect(),
        r => panic!("{r:?}"),
    }
}

#[test]
fn scans_batch_gets_and_range_deletes() {
    let mut c = started(21);
    let ops: Vec<WriteOp> = (0..20).map(|i| put(&format!("k{i:02}"), &format!("v{i}"))).collect();
    c.must(b"k00", Command::Write(ops), 200);
    let all = scan(&mut c, "k00", "", 100, false, false);
    assert_eq!(all.len(), 20);
    assert_eq!(all[0], ("k00".into(), "v0".into()));
    let rev = scan(&mut c, "k05", "k10", 3, true, true);
    assert_eq!(rev, vec![("k09".into(), "".into()), ("k08".into(), "".into()), ("k07".into(), "".into())]);
    c.must(
        b"k05",
        Command::Write(vec![WriteOp::DeleteRange {
            cf: "default".into(),
            start: "k05".into(),
            end: "k15".into(),
        }]),
        200,
    );
    let left = scan(&mut c, "k00", "", 100, false, true);
    assert_eq!(left.len(), 10);
    let r = c.must(
        b"k00",
        Command::BatchGet { cf: "default".into(), keys: vec!["k04".into(), "k05".into(), "k15".into()] },
        200,
    );
    assert_eq!(r, Response::Values(vec![Some("v4".into()), None, Some("v15".into())]));
    // Bad input gets typed errors.
    match c.request(b"k", Command::Get { cf: "nope".into(), key: "k".into() }, 50) {
        Some(Err(Error::BadRequest(_))) => {}
        r => panic!("unknown family: {r:?}"),
    }
    match c.request(b"k", Command::Write(vec![]), 50) {
        Some(Err(Error::BadRequest(_))) => {}
        r => panic!("empty batch: {r:?}"),
    }
}

#[test]
fn a_split_at_several_keys_and_stale_epochs_are_refused() {
    let mut c = started(22);
    for k in ["b", "e", "h", "m", "t"] {
        c.must_put(k.as_bytes(), k.as_bytes());
    }
    let old = c.region_for(b"b").unwrap();
    let r = c.must(b"b", Command::Split { keys: vec!["d".into(), "g".into(), "p".into()] }, 300);
    let Response::Split(regions) = r else { panic!("{r:?}") };
    let bounds: Vec<(Vec<u8>, Vec<u8>)> =
        regions.iter().map(|r| (r.start_key.clone(), r.end_key.clone())).collect();
    assert_eq!(
        bounds,
        vec![
            (b"".to_vec(), b"d".to_vec()),
            (b"d".to_vec(), b"g".to_vec()),
            (b"g".to_vec(), b"p".to_vec()),
            (b"p".to_vec(), b"".to_vec())
        ]
    );
    assert!(regions.iter().all(|r| r.epoch.version == old.epoch.version + 3));
    for k in ["b", "e", "h", "m", "t"] {
        assert_eq!(c.must_get(k.as_bytes()).as_deref(), Some(k.as_bytes()));
    }
    // A request with the epoch from before the split is refused, with the
    // current region in the error.
    let (leader, _) = c.leader(old.id).unwrap();
    let slot = c.call(
        leader,
        ekv_engine::Request {
            region_id: old.id,
            epoch: old.epoch,
            cmd: Command::Get { cf: "default".into(), key: "b".into() },
        },
    );
    match c.wait(&slot, 50) {
        Some(Err(Error::EpochNotMatch { current, .. })) => assert_eq!(current[0].end_key, b"d"),
        r => panic!("{r:?}"),
    }
    // A key outside the (new) region is refused.
    let now = c.region_for(b"b").unwrap();
    let slot = c.call(
        leader,
        ekv_engine::Request {
            region_id: now.id,
            epoch: now.epoch,
            cmd: Command::Get { cf: "default".into(), key: "x".into() },
        },
    );
    assert!(matches!(c.wait(&slot, 50), Some(Err(Error::KeyNotInRegion { .. }))));
}

#[test]
fn a_region_past_the_split_size_splits_by_itself() {
    let mut cfg = sim_config();
    cfg.region_split_size = 16 << 10;
    cfg.region_split_keys = 1_000_000;
    let mut c = SimCluster::new(23, 3, 1, cfg);
    let region = c.bootstrap(&[1, 2, 3]);
    c.must_leader(region.id, 200);
    for i in 0..200u32 {
        let v = "x".repeat(200);
        c.must(format!("k{i:04}").as_bytes(), Command::Write(vec![put(&format!("k{i:04}"), &v)]), 200);
    }
    c.run_ticks(100);
    let regions: std::collections::BTreeSet<RegionId> =
        c.status().into_iter().filter(|(_, _, p)| p.initialized).map(|(_, _, p)| p.region.id).collect();
    assert!(regions.len() >= 2, "no split happened: {regions:?}");
    assert!(!c.pd.reported_splits.is_empty());
    for i in (0..200u32).step_by(17) {
        assert_eq!(c.must_get(format!("k{i:04}").as_bytes()).map(|v| v.len()), Some(200));
    }
}

#[test]
fn log_gc_lets_the_wal_drop_old_entries_after_a_flush() {
    let mut c = started(24);
    for i in 0..300u32 {
        c.must_put(format!("k{i:04}").as_bytes(), b"v");
    }
    c.run_ticks(30);
    for node in c.nodes.values_mut() {
        futures::executor::block_on(node.shards[0].flush()).unwrap();
    }
    c.run_ticks(10);
    c.must_put(b"after", b"flush");
    c.run_ticks(10);
    for (id, node) in &c.nodes {
        let first = node.shards[0].wal().first_index(RegionId(1)).unwrap();
        assert!(first > 100, "{id}: WAL still starts at {first}");
    }
    // Nothing is lost across a crash of everything after the WAL dropped entries.
    for s in 1..=3 {
        c.crash(s);
        c.restart(s);
    }
    assert_eq!(c.must_get(b"k0000").as_deref(), Some(&b"v"[..]));
    assert_eq!(c.must_get(b"after").as_deref(), Some(&b"flush"[..]));
}

#[test]
fn meta_service_operators_are_carried_out() {
    let mut c = started(25);
    c.add_store(StoreId(4));
    c.must_put(b"a", b"1");
    c.run_ticks(30);
    assert!(c.pd.heartbeats.contains_key(&RegionId(1)), "no region heartbeat");
    for _ in 0..3 {
        assert_eq!(c.must_get(b"a").as_deref(), Some(&b"1"[..]));
    }
    c.run_ticks(25);
    assert_eq!(c.pd.read_keys, 3);
    let hb = &c.pd.heartbeats[&RegionId(1)];
    assert!(hb.down_peers.is_empty(), "{hb:?}");
    assert!(c.pd.store_heartbeats > 0);
    let (leader, _) = c.leader(RegionId(1)).unwrap();
    let shard = c.nodes[&leader].router.owner(RegionId(1)).unwrap();
    let p4 = PeerMeta { id: PeerId(40), store_id: StoreId(4) };
    c.nodes.get_mut(&leader).unwrap().shards[shard.get() as usize]
        .on_operator(RegionId(1), Operator::AddPeer { peer: p4, as_learner: false });
    c.run_ticks(80);
    let region = c.region_for(b"a").unwrap();
    assert!(region.peer(PeerId(40)).is_some(), "peer not added: {region:?}");
    let (leader, _) = c.leader(RegionId(1)).unwrap();
    let shard = c.nodes[&leader].router.owner(RegionId(1)).unwrap();
    c.nodes.get_mut(&leader).unwrap().shards[shard.get() as usize]
        .on_operator(RegionId(1), Operator::TransferLeader(PeerId(40)));
    c.run_ticks(60);
    assert_eq!(c.leader(RegionId(1)).map(|l| l.0), Some(StoreId(4)));
    assert_eq!(c.dump(StoreId(4), &region), c.dump(StoreId(1), &region));
}

#[test]
fn dropping_only_heartbeats_to_a_follower_does_not_stop_writes() {
    let mut c = started(26);
    let (leader, _) = c.leader(RegionId(1)).unwrap();
    let follower = (1..=3).map(StoreId).find(|s| *s != leader).unwrap();
    c.add_filter(RegionFilter::new(RegionId(1)).only_to(follower).msg_type(MessageType::MsgHeartbeat));
    for i in 0..30u32 {
        c.must_put(format!("k{i}").as_bytes(), b"v");
    }
    c.run_ticks(20);
    let region = c.region_for(b"k").unwrap();
    assert_eq!(c.dump(follower, &region).len(), 30);
}

/// A seed replays exactly: the same seed gives the same history.
#[test]
fn a_seed_replays_exactly() {
    let run = |seed: u64| {
        let mut c = started(seed);
        let mut w = Workload::new(3, &["a", "m"]);
        c.add_filter(sim::Chaos {
            drop: 0.1,
            duplicate: 0.05,
            delay: 0.2,
            max_delay_steps: 5,
            reorder: true,
        });
        for _ in 0..80 {
            w.drive(&mut c);
            c.tick();
        }
        w.finish(&mut c);
        w.history.to_jsonl()
    };
    assert_eq!(run(27), run(27));
    assert_ne!(run(27), run(28));
}

#[test]
fn heartbeats_name_down_and_pending_peers() {
    let mut c = started(29);
    let (leader, _) = c.leader(RegionId(1)).unwrap();
    let victim = (1..=3).map(StoreId).find(|s| *s != leader).unwrap();
    c.isolate(victim.get());
    for i in 0..20u32 {
        c.must_put(format!("k{i}").as_bytes(), b"v");
    }
    c.run_ticks(60);
    let hb = &c.pd.heartbeats[&RegionId(1)];
    assert_eq!(hb.down_peers.iter().map(|d| d.peer.store_id).collect::<Vec<_>>(), vec![victim], "{hb:?}");
    assert_eq!(hb.pending_peers.iter().map(|p| p.store_id).collect::<Vec<_>>(), vec![victim], "{hb:?}");
    assert!(hb.written_keys > 0 || hb.approximate_keys >= 20, "{hb:?}");
}

#[test]
fn a_round_larger_than_a_wal_record_is_written_in_parts() {
    // A follower that catches up receives more in one round than one WAL
    // record holds (segments of 256 KiB, twelve 60 KiB values in one append).
    let cfg = ekv_engine::Config {
        wal_segment_bytes: ekv_engine::MIN_WAL_SEGMENT,
        raft_log_gc_ticks: 1_000_000,
        ..sim_config()
    };
    let mut c = SimCluster::new(11, 3, 1, cfg);
    let region = c.bootstrap(&[1, 2, 3]);
    let leader = c.must_leader(region.id, 200);
    let lagging = [1, 2, 3].into_iter().find(|&s| s != leader.get()).expect("a follower");
    c.isolate(lagging);
    let value = "v".repeat(60 << 10);
    for i in 0..12 {
        c.must_put(format!("k{i:02}").as_bytes(), value.as_bytes());
    }
    let want = c.dump(leader, &region);
    assert_eq!(want.len(), 12);
    c.recover();
    let mut ticks = 0;
    while c.dump(StoreId(lagging), &region) != want {
        assert!(ticks < 500, "store {lagging} did not catch up");
        c.tick();
        ticks += 1;
    }
}
