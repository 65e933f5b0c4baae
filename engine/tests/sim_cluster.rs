//! Cluster scenarios on the deterministic simulator.

mod sim;

use bytes::Bytes;
use ekv_engine::{Command, Response, WriteOp};
use ekv_proto::{RegionId, StoreId};
use sim::{sim_config, SimCluster};

#[test]
fn three_stores_elect_a_leader_and_replicate_writes() {
    let mut c = SimCluster::new(1, 3, 1, sim_config());
    let region = c.bootstrap(&[1, 2, 3]);
    c.must_leader(region.id, 100);
    for i in 0..50u32 {
        c.must_put(format!("k{i:03}").as_bytes(), format!("v{i}").as_bytes());
    }
    for i in 0..50u32 {
        assert_eq!(c.must_get(format!("k{i:03}").as_bytes()).as_deref(), Some(format!("v{i}").as_bytes()));
    }
    c.run_ticks(20);
    let region = c.region_for(b"k").unwrap();
    let want = c.dump(StoreId(1), &region);
    assert_eq!(want.len(), 50);
    for s in 2..=3 {
        assert_eq!(c.dump(StoreId(s), &region), want, "store {s} differs");
    }
    let st = c.nodes[&StoreId(1)].shards[0].stats();
    assert!(st.wal_writes <= st.rounds, "{st:?}");
}

#[test]
fn a_batch_and_compare_and_swap_apply_atomically() {
    let mut c = SimCluster::new(2, 3, 1, sim_config());
    let region = c.bootstrap(&[1, 2, 3]);
    c.must_leader(region.id, 100);
    let put = |k: &str, v: &str| WriteOp::Put {
        cf: "default".into(),
        key: Bytes::from(k.to_owned()),
        value: Bytes::from(v.to_owned()),
    };
    c.must(
        b"a",
        Command::Write(vec![
            put("a", "1"),
            put("b", "2"),
            WriteOp::Delete { cf: "default".into(), key: "a".into() },
        ]),
        200,
    );
    assert_eq!(c.must_get(b"a"), None);
    assert_eq!(c.must_get(b"b").as_deref(), Some(&b"2"[..]));
    let cas = |exp: Option<&'static str>, new: Option<&'static str>| Command::Cas {
        cf: "default".into(),
        key: "b".into(),
        expected: exp.map(Bytes::from),
        new: new.map(Bytes::from),
    };
    assert_eq!(
        c.must(b"b", cas(Some("1"), Some("3")), 200),
        Response::Cas { succeeded: false, previous: Some("2".into()) }
    );
    assert_eq!(
        c.must(b"b", cas(Some("2"), Some("3")), 200),
        Response::Cas { succeeded: true, previous: Some("2".into()) }
    );
    assert_eq!(
        c.must(b"b", cas(Some("3"), None), 200),
        Response::Cas { succeeded: true, previous: Some("3".into()) }
    );
    assert_eq!(c.must_get(b"b"), None);
    let _ = RegionId(1);
}

use ekv_engine::PeerChange;
use ekv_proto::PeerMeta;
use sim::workload::Workload;

const KEYS: &[&str] = &["a", "f", "k", "p", "u"];

/// Runs `ticks` ticks of the workload.
fn load(c: &mut SimCluster, w: &mut Workload, ticks: u64) {
    for _ in 0..ticks {
        w.drive(c);
        c.tick();
    }
}

fn started(seed: u64) -> (SimCluster, Workload) {
    let mut c = SimCluster::new(seed, 3, 1, sim_config());
    let region = c.bootstrap(&[1, 2, 3]);
    c.must_leader(region.id, 200);
    (c, Workload::new(5, KEYS))
}

/// Reference: Raft paper section 5.2 (a new leader is elected when the old one fails).
#[test]
fn leader_failover_keeps_history_linearizable() {
    let (mut c, mut w) = started(11);
    load(&mut c, &mut w, 60);
    let old = c.leader(RegionId(1)).unwrap().0;
    c.isolate(old.get());
    let before = w.ok_writes;
    load(&mut c, &mut w, 150);
    let new = c.leader(RegionId(1)).map(|l| l.0);
    assert!(new.is_some_and(|n| n != old), "no new leader: {new:?}");
    assert!(w.ok_writes > before, "no write succeeded after the failover");
    c.recover();
    load(&mut c, &mut w, 80);
    w.finish(&mut c);
    w.must_be_linearizable(11, "failover");
}

#[test]
fn minority_and_majority_partitions_stay_linearizable() {
    let (mut c, mut w) = started(12);
    load(&mut c, &mut w, 40);
    let leader = c.leader(RegionId(1)).unwrap().0.get();
    let others: Vec<u64> = (1..=3).filter(|s| *s != leader).collect();
    // The leader with one follower keeps a majority.
    c.partition(&[leader, others[0]], &[others[1]]);
    load(&mut c, &mut w, 100);
    c.recover();
    // The leader alone is a minority: it must stop serving.
    c.partition(&[leader], &others);
    load(&mut c, &mut w, 150);
    c.recover();
    load(&mut c, &mut w, 80);
    w.finish(&mut c);
    w.must_be_linearizable(12, "partitions");
}

#[test]
fn lost_duplicated_delayed_and_reordered_messages_stay_linearizable() {
    let (mut c, mut w) = started(13);
    c.add_filter(sim::Chaos { drop: 0.1, duplicate: 0.05, delay: 0.2, max_delay_steps: 10, reorder: true });
    load(&mut c, &mut w, 300);
    c.recover();
    load(&mut c, &mut w, 60);
    w.finish(&mut c);
    w.must_be_linearizable(13, "chaos");
}

#[test]
fn conf_change_and_leader_transfer_under_load() {
    let (mut c, mut w) = started(14);
    c.add_store(StoreId(4));
    load(&mut c, &mut w, 30);
    let region = c.region_for(b"a").unwrap();
    let p4 = PeerMeta { id: ekv_proto::PeerId(4), store_id: StoreId(4) };
    c.must(b"a", Command::ChangePeers(vec![PeerChange::AddLearner(p4)]), 300);
    load(&mut c, &mut w, 60);
    c.must(b"a", Command::ChangePeers(vec![PeerChange::AddVoter(p4)]), 300);
    load(&mut c, &mut w, 40);
    // Move leadership to store 4, then remove store 1's replica.
    c.must(b"a", Command::TransferLeader { to: ekv_proto::PeerId(4) }, 300);
    for _ in 0..200 {
        if c.leader(region.id).is_some_and(|l| l.0 == StoreId(4)) {
            break;
        }
        w.drive(&mut c);
        c.tick();
    }
    assert_eq!(c.leader(region.id).map(|l| l.0), Some(StoreId(4)), "transfer did not happen");
    let p1 = c.region_for(b"a").unwrap().peer_on(StoreId(1)).unwrap();
    c.must(b"a", Command::ChangePeers(vec![PeerChange::Remove(p1)]), 300);
    load(&mut c, &mut w, 100);
    w.finish(&mut c);
    w.must_be_linearizable(14, "conf change");
    let region = c.region_for(b"a").unwrap();
    let stores: Vec<u64> = region.peers.iter().map(|p| p.store_id.get()).collect();
    assert_eq!(stores, vec![2, 3, 4]);
    assert!(c.nodes[&StoreId(1)].shards[0].tombstones().contains(&region.id), "store 1 kept its peer");
    assert_eq!(c.dump(StoreId(4), &region), c.dump(StoreId(2), &region));
}

#[test]
fn joint_consensus_replaces_two_voters_at_once() {
    let (mut c, mut w) = started(15);
    c.add_store(StoreId(4));
    c.add_store(StoreId(5));
    load(&mut c, &mut w, 20);
    let leader = c.leader(RegionId(1)).unwrap().0.get();
    let region = c.region_for(b"a").unwrap();
    let victims: Vec<PeerMeta> =
        region.peers.iter().copied().filter(|p| p.store_id.get() != leader).collect();
    let add = |s: u64| PeerChange::AddVoter(PeerMeta { id: ekv_proto::PeerId(s), store_id: StoreId(s) });
    c.must(
        b"a",
        Command::ChangePeers(vec![
            add(4),
            add(5),
            PeerChange::Remove(victims[0]),
            PeerChange::Remove(victims[1]),
        ]),
        300,
    );
    load(&mut c, &mut w, 200);
    w.finish(&mut c);
    w.must_be_linearizable(15, "joint");
    let region = c.region_for(b"a").unwrap();
    let mut stores: Vec<u64> = region.peers.iter().map(|p| p.store_id.get()).collect();
    stores.sort();
    let mut want = vec![leader, 4, 5];
    want.sort();
    assert_eq!(stores, want);
}

#[test]
fn split_under_load_routes_both_halves() {
    let (mut c, mut w) = started(16);
    load(&mut c, &mut w, 40);
    let r = c.must(b"a", Command::Split { keys: vec![Bytes::from_static(b"k")] }, 300);
    let Response::Split(regions) = r else { panic!("{r:?}") };
    assert_eq!(regions.len(), 2);
    assert_eq!(regions[0].end_key, b"k");
    assert_eq!(regions[1].start_key, b"k");
    load(&mut c, &mut w, 200);
    w.finish(&mut c);
    w.must_be_linearizable(16, "split");
    let right = c.region_for(b"p").unwrap();
    assert_ne!(right.id, RegionId(1));
    c.must_leader(right.id, 100);
    c.must_put(b"z", b"1");
    assert_eq!(c.must_get(b"z").as_deref(), Some(&b"1"[..]));
    assert!(!c.pd.reported_splits.is_empty());
}

#[test]
fn a_follower_behind_log_gc_catches_up_by_snapshot() {
    let (mut c, _) = started(17);
    let leader = c.leader(RegionId(1)).unwrap().0.get();
    let lagger = (1..=3).find(|s| *s != leader).unwrap();
    c.isolate(lagger);
    for i in 0..400u32 {
        c.must_put(format!("k{i:04}").as_bytes(), format!("v{i}").as_bytes());
    }
    c.run_ticks(30);
    let first = c.leader(RegionId(1)).unwrap().1.first_index;
    assert!(first > 100, "log was not collected: first index {first}");
    c.recover();
    c.run_ticks(150);
    let st = c.nodes[&StoreId(lagger)].shards[0].stats();
    assert!(st.snapshots_applied >= 1, "{st:?}");
    let region = c.region_for(b"k").unwrap();
    let want = c.dump(StoreId(leader), &region);
    assert_eq!(want.len(), 400);
    assert_eq!(c.dump(StoreId(lagger), &region), want);
}

#[test]
fn crash_of_one_store_and_of_all_stores_loses_nothing_acknowledged() {
    let (mut c, mut w) = started(18);
    load(&mut c, &mut w, 50);
    let leader = c.leader(RegionId(1)).unwrap().0.get();
    c.crash(leader);
    load(&mut c, &mut w, 100);
    c.restart(leader);
    load(&mut c, &mut w, 60);
    for s in 1..=3 {
        c.crash(s);
    }
    for s in 1..=3 {
        c.restart(s);
    }
    load(&mut c, &mut w, 150);
    w.finish(&mut c);
    w.must_be_linearizable(18, "crash");
}

/// A leader frozen past its lease must not serve a read from its stale
/// state when it thaws, even before it hears of the new leader.
#[test]
fn a_paused_leader_serves_no_stale_read_after_it_thaws() {
    let (mut c, mut w) = started(19);
    load(&mut c, &mut w, 30);
    w.finish(&mut c);
    c.must_put(b"a", b"old");
    let (old, st) = c.leader(RegionId(1)).unwrap();
    // Renew the lease right before the pause.
    assert_eq!(c.must_get(b"a").as_deref(), Some(&b"old"[..]));
    c.pause(old.get());
    for _ in 0..60 {
        c.tick();
    }
    let (new, _) = c.leader(RegionId(1)).expect("a new leader");
    assert_ne!(new, old);
    c.must_put(b"a", b"new");
    c.resume(old.get());
    // The first thing the thawed leader sees is a read.
    let slot = c.call(
        old,
        ekv_engine::Request {
            region_id: RegionId(1),
            epoch: st.region.epoch,
            cmd: Command::Get { cf: "default".into(), key: Bytes::from_static(b"a") },
        },
    );
    match c.wait(&slot, 100) {
        Some(Ok(Response::Value(v))) => assert_eq!(v.as_deref(), Some(&b"new"[..]), "stale read"),
        Some(Ok(r)) => panic!("{r:?}"),
        Some(Err(_)) | None => {}
    }
}
