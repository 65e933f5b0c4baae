//! A removed replica that never heard of its removal (a learner asks
//! nothing of its leader, so nobody tells it) must not stand in the way of
//! a new replica of the same region on its store.

mod sim;

use ekv_engine::{Command, PeerChange};
use ekv_proto::{PeerId, PeerMeta, RegionId, StoreId};
use sim::{sim_config, SimCluster};

/// The peer of `region` on `store`, if any: (peer id, initialized, applied index).
fn local_peer(c: &SimCluster, store: u64, region: RegionId) -> Option<(PeerId, bool, u64)> {
    c.status()
        .into_iter()
        .find(|(s, _, p)| *s == StoreId(store) && p.region.id == region)
        .map(|(_, _, p)| (p.peer.id, p.initialized, p.applied_index))
}

fn put(c: &mut SimCluster, i: u32) {
    c.must_put(format!("k{i:03}").as_bytes(), format!("v{i}").as_bytes());
}

#[test]
fn a_new_replica_replaces_a_stale_one_on_the_same_store() {
    for seed in 0..5 {
        let mut c = SimCluster::new(seed, 4, 1, sim_config());
        let region = c.bootstrap(&[1, 2, 3]);
        c.must_leader(region.id, 200);
        for i in 0..20 {
            put(&mut c, i);
        }
        let old = PeerMeta { id: PeerId(4), store_id: StoreId(4) };
        c.must(b"k", Command::ChangePeers(vec![PeerChange::AddLearner(old)]), 300);
        for _ in 0..200 {
            if local_peer(&c, 4, region.id).is_some_and(|(_, init, _)| init) {
                break;
            }
            c.tick();
        }
        assert_eq!(local_peer(&c, 4, region.id).map(|(id, init, _)| (id, init)), Some((old.id, true)));
        // The removal never reaches store 4: its learner stays behind.
        c.isolate(4);
        c.must(b"k", Command::ChangePeers(vec![PeerChange::Remove(old)]), 300);
        for i in 20..40 {
            put(&mut c, i);
        }
        c.recover();
        c.run_ticks(50);
        assert_eq!(
            local_peer(&c, 4, region.id).map(|(id, _, _)| id),
            Some(old.id),
            "seed {seed}: nothing told the removed learner"
        );
        // A new replica of the region on the same store.
        let new = PeerMeta { id: PeerId(5), store_id: StoreId(4) };
        c.must(b"k", Command::ChangePeers(vec![PeerChange::AddLearner(new)]), 300);
        let leader_applied = |c: &SimCluster| c.leader(region.id).map_or(0, |(_, p)| p.applied_index);
        let mut caught_up = false;
        for _ in 0..300 {
            let target = leader_applied(&c);
            if local_peer(&c, 4, region.id)
                .is_some_and(|(id, init, applied)| id == new.id && init && applied >= target)
            {
                caught_up = true;
                break;
            }
            c.tick();
        }
        assert!(
            caught_up,
            "seed {seed}: the new learner never caught up: {:?}",
            local_peer(&c, 4, region.id)
        );
        c.must(b"k", Command::ChangePeers(vec![PeerChange::AddVoter(new)]), 300);
        put(&mut c, 40);
        c.run_ticks(20);
        let region = c.region_for(b"k").expect("region");
        assert_eq!(c.dump(StoreId(4), &region), c.dump(StoreId(1), &region), "seed {seed}");
        assert_eq!(c.dump(StoreId(4), &region).len(), 41, "seed {seed}");
    }
}
