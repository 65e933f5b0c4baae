//! Several shards per store: repeated splits under load while a store lags
//! behind (so that the new regions' leaders reach it before it applies the
//! split), leader transfers and a crash. No store may ever hold two peers
//! of one region, and the history must stay linearizable.

mod sim;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use ekv_engine::{Command, PeerChange, Request, Response, StoreMsg};
use ekv_proto::{PeerId, PeerMeta, Region, RegionEpoch, RegionId, ShardId, StoreId};
use rand::seq::SliceRandom;
use rand::Rng;
use sim::workload::Workload;
use sim::{sim_config, Envelope, Filter, SimCluster};

/// Seeds per run: `EKV_SIM_SEEDS` (default 20).
fn seeds() -> u64 {
    std::env::var("EKV_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20)
}

/// Panics when an up store holds two peers of one region (on two shards),
/// or when its router names another shard than the one holding a peer.
fn one_peer_per_region_per_store(c: &SimCluster, when: &str) {
    for (store, node) in &c.nodes {
        if !node.up {
            continue;
        }
        let mut seen: BTreeMap<RegionId, ShardId> = BTreeMap::new();
        for shard in &node.shards {
            for p in shard.peer_status() {
                if let Some(other) = seen.insert(p.region.id, shard.id()) {
                    panic!(
                        "seed {}: {when}: {store} holds {} on {other} and on {} (initialized: {})",
                        c.seed,
                        p.region.id,
                        shard.id(),
                        p.initialized
                    );
                }
            }
        }
        for (region, shard) in seen {
            assert_eq!(
                node.router.owner(region),
                Some(shard),
                "seed {}: {when}: {store}'s router misplaces {region}",
                c.seed
            );
        }
    }
}

fn run(c: &mut SimCluster, w: &mut Workload, ticks: u64, when: &str) {
    for _ in 0..ticks {
        w.drive(c);
        c.tick();
        one_peer_per_region_per_store(c, when);
    }
}

/// Asks the leader of the region holding `key` to split there; the slot
/// of its answer.
fn split_at(c: &mut SimCluster, key: &[u8]) -> Option<sim::Slot> {
    let region = c.region_for(key)?;
    if region.start_key.as_slice() == key {
        return None;
    }
    let (leader, _) = c.leader(region.id)?;
    let cmd = Command::Split { keys: vec![Bytes::copy_from_slice(key)] };
    Some(c.call(leader, Request { region_id: region.id, epoch: region.epoch, cmd }))
}

/// Hands the leadership of a random region to a random replica.
fn transfer_some_leader(c: &mut SimCluster) {
    let leaders: Vec<(StoreId, ekv_engine::PeerStatus)> = c
        .status()
        .into_iter()
        .filter(|(_, _, p)| p.is_leader && p.initialized)
        .map(|(s, _, p)| (s, p))
        .collect();
    let Some((store, p)) = leaders.choose(&mut c.rng).cloned() else { return };
    let to = p.region.peers[c.rng.gen_range(0..p.region.peers.len())].id;
    let cmd = Command::TransferLeader { to };
    let _ = c.call(store, Request { region_id: p.region.id, epoch: p.region.epoch, cmd });
}

#[test]
fn splits_on_two_shards_per_store_never_make_two_peers_of_a_region() {
    let first = std::env::var("EKV_SIM_FIRST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(5000);
    for seed in first..first + seeds() {
        let mut c = SimCluster::new(seed, 3, 2, sim_config());
        let region = c.bootstrap(&[1, 2, 3]);
        c.must_leader(region.id, 300);
        let mut w = Workload::new(4, &["b", "e", "h", "k", "n", "q", "t", "w", "z"]);
        let mut keys: Vec<&[u8]> = vec![b"c", b"f", b"i", b"l", b"o", b"r", b"u", b"x"];
        keys.shuffle(&mut c.rng);
        let crash_round = c.rng.gen_range(2..keys.len());
        let mut splits = Vec::new();
        for (round, key) in keys.iter().enumerate() {
            // A store cut off while the split commits applies it only after
            // the new region's leader has reached it.
            let lagger = c.rng.gen_range(1..=3u64);
            if c.rng.gen_bool(0.7) {
                c.isolate(lagger);
            }
            splits.extend(split_at(&mut c, key));
            run(&mut c, &mut w, 25, "split with a store cut off");
            if c.rng.gen_bool(0.5) {
                transfer_some_leader(&mut c);
            }
            run(&mut c, &mut w, 10, "leader transfer");
            c.recover();
            if round == crash_round {
                let victim = c.rng.gen_range(1..=3u64);
                c.crash(victim);
                run(&mut c, &mut w, 20, "a store down");
                c.restart(victim);
            }
            run(&mut c, &mut w, 30, "healed");
        }
        run(&mut c, &mut w, 100, "settling");
        w.finish(&mut c);
        one_peer_per_region_per_store(&c, "end");
        w.must_be_linearizable(seed, "multishard-splits");
        // The splits took place (some are refused or time out under the
        // faults; an unanswered one may still have applied), and every
        // replica of every region has its data.
        let done = splits.iter().filter(|s| matches!(*s.borrow(), Some(Ok(Response::Split(_))))).count();
        let status = c.status();
        let regions: BTreeMap<RegionId, Region> = status
            .iter()
            .filter(|(_, _, p)| p.initialized && p.is_leader)
            .map(|(_, _, p)| (p.region.id, p.region.clone()))
            .collect();
        assert!(done >= 1 && regions.len() > done, "seed {seed}: {done} splits, {} regions", regions.len());
        for region in regions.values() {
            for replica in &region.peers {
                let caught_up = status
                    .iter()
                    .any(|(s, _, p)| *s == replica.store_id && p.region.id == region.id && p.initialized);
                assert!(
                    caught_up,
                    "seed {seed}: {} has no data of {} on {}",
                    replica.id, region.id, replica.store_id
                );
            }
        }
    }
}

/// Holds back the snapshot chunks of one region to one store.
struct HoldSnapshots {
    region: RegionId,
    to: StoreId,
    held: Rc<RefCell<Vec<Envelope>>>,
}

impl Filter for HoldSnapshots {
    fn before(&self, msgs: &mut Vec<Envelope>, _: &mut rand_chacha::ChaCha8Rng, _: u64) {
        msgs.retain(|m| {
            let hold = matches!(&m.msg, StoreMsg::Snapshot(c) if c.region_id == self.region)
                && m.to.store == self.to;
            if hold {
                self.held.borrow_mut().push(m.clone());
            }
            !hold
        });
    }
}

fn ticks_until(c: &mut SimCluster, max: u64, what: &str, mut done: impl FnMut(&SimCluster) -> bool) {
    for _ in 0..max {
        if done(c) {
            return;
        }
        c.tick();
        one_peer_per_region_per_store(c, what);
    }
    panic!("seed {}: {what}: not within {max} ticks", c.seed);
}

/// The case the message path cannot prevent: store 3's replica of the
/// parent has no data yet when the new region's leader reaches it, so the
/// new region is placed on store 3's other shard; then a snapshot taken
/// before the split arrives, and the parent applies the split from its
/// log. The split must leave the region to the peer already there.
#[test]
fn a_split_replayed_after_a_late_snapshot_leaves_the_new_region_where_it_is() {
    let mut cfg = sim_config();
    // Keep the parent's log, so that store 3 applies the split from it.
    cfg.raft_log_gc_threshold = 100_000;
    cfg.raft_log_gc_count_limit = 100_000;
    let mut c = SimCluster::new(77, 3, 2, cfg);
    let parent = Region {
        id: RegionId(1),
        epoch: RegionEpoch { conf_ver: 1, version: 1 },
        peers: (1..=2).map(|s| PeerMeta { id: PeerId(s), store_id: StoreId(s) }).collect(),
        ..Region::default()
    };
    c.bootstrap_regions(vec![parent]);
    c.must_leader(RegionId(1), 300);
    for k in ["a", "b", "x", "y"] {
        c.must_put(k.as_bytes(), format!("{k}0").as_bytes());
    }
    let held = Rc::new(RefCell::new(Vec::new()));
    c.add_filter(HoldSnapshots { region: RegionId(1), to: StoreId(3), held: held.clone() });
    let region = c.region_for(b"a").unwrap();
    let add = PeerChange::AddVoter(PeerMeta { id: PeerId(3), store_id: StoreId(3) });
    let cmd = Command::ChangePeers(vec![add]);
    let leader = c.leader(RegionId(1)).unwrap().0;
    let slot = c.call(leader, Request { region_id: RegionId(1), epoch: region.epoch, cmd });
    assert!(matches!(c.wait(&slot, 200), Some(Ok(Response::Changed(_)))), "seed 77: adding store 3");
    let complete =
        |held: &[Envelope]| held.iter().any(|m| matches!(&m.msg, StoreMsg::Snapshot(ch) if ch.msg.is_some()));
    ticks_until(&mut c, 200, "pre-split snapshot held", |_| complete(&held.borrow()));
    // The parent on store 3 has no data: the new region's messages place
    // it on store 3's other shard.
    let region = c.region_for(b"a").unwrap();
    let split = Command::Split { keys: vec![Bytes::from_static(b"m")] };
    let leader = c.leader(RegionId(1)).unwrap().0;
    let slot = c.call(leader, Request { region_id: RegionId(1), epoch: region.epoch, cmd: split });
    let child = match c.wait(&slot, 200) {
        Some(Ok(Response::Split(regions))) => regions[1].clone(),
        r => panic!("seed 77: split answered {r:?}"),
    };
    let on_shard = |c: &SimCluster, shard: usize, id: RegionId| {
        c.nodes[&StoreId(3)].shards[shard].peer_status().into_iter().find(|p| p.region.id == id)
    };
    ticks_until(&mut c, 300, "new region placed on store 3", |c| on_shard(c, 1, child.id).is_some());
    assert!(on_shard(&c, 0, RegionId(1)).is_some_and(|p| !p.initialized));
    // The first snapshot, taken before the split, now arrives; later ones
    // stay held, so that store 3 takes the split from the parent's log.
    let first: Vec<Envelope> = {
        let held = held.borrow();
        let index = held
            .iter()
            .filter_map(|m| match &m.msg {
                StoreMsg::Snapshot(ch) if ch.msg.is_some() => Some(ch.index),
                _ => None,
            })
            .min()
            .unwrap();
        held.iter()
            .filter(|m| matches!(&m.msg, StoreMsg::Snapshot(ch) if ch.index == index))
            .cloned()
            .collect()
    };
    for m in first {
        let node = c.nodes.get_mut(&StoreId(3)).unwrap();
        let shard = (m.to.shard.get() as usize).min(node.shards.len() - 1);
        node.shards[shard].on_store_msg(m.msg);
    }
    ticks_until(&mut c, 400, "store 3 catches up", |c| {
        on_shard(c, 0, RegionId(1)).is_some_and(|p| p.initialized && p.region.end_key == b"m")
            && on_shard(c, 1, child.id).is_some_and(|p| p.initialized)
    });
    // The parent applied the split from its log, over the early snapshot.
    assert_eq!(c.nodes[&StoreId(3)].shards[0].stats().snapshots_applied, 1, "seed 77");
    // Store 3 serves the new region from shard 1, with the data of store 1,
    // and shard 0 keeps nothing of the new region's range.
    let child_now = c.region_for(b"x").unwrap();
    assert_eq!(child_now.id, child.id);
    assert_eq!(c.dump(StoreId(3), &child_now), c.dump(StoreId(1), &child_now));
    assert_eq!(c.dump(StoreId(3), &child_now).len(), 2);
    let lsm = c.nodes[&StoreId(3)].shards[0].lsm();
    let cf = lsm.cf("default").unwrap();
    let mut it =
        lsm.iter(cf, ekv_lsm::IterOptions { lower: Some(b"m"), upper: None, snapshot: None }).unwrap();
    futures::executor::block_on(it.seek_to_first()).unwrap();
    assert!(!it.valid(), "seed 77: shard 0 of store 3 still holds keys of the new region");
    assert_eq!(c.must_get(b"y").as_deref(), Some(&b"y0"[..]));
}
