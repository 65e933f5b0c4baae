//! The schedulers and operators, mostly through the simulation: each test
//! sets up stores and regions, lets heartbeats run, and checks the steps
//! and the end state.

use ekv_proto::msg::{ChangeKind, DownPeer, Operator, PeerChange, StoreHeartbeatRequest};
use ekv_proto::{RegionId, StoreId};

use super::sim::{spread, Sim};
use super::{heartbeat, must_bootstrapped, peer, region, store};
use crate::core::{OperatorKind, OperatorReason, Settings, StoreHealth};

fn is_change(op: &Operator, kinds: &[(ChangeKind, u64)]) -> bool {
    match op {
        Operator::ChangePeer { changes } => {
            changes.len() == kinds.len()
                && changes
                    .iter()
                    .zip(kinds)
                    .all(|(c, (k, store))| c.kind == *k && c.peer.store_id.get() == *store)
        }
        _ => false,
    }
}

fn live_heartbeat(pd: &mut crate::core::Cluster, stores: &[u64], now: u64) {
    for &s in stores {
        let hb = StoreHeartbeatRequest { store_id: StoreId(s), ..Default::default() };
        pd.store_heartbeat(&hb, now).unwrap();
    }
}

#[test]
fn a_down_store_is_repaired_by_learner_then_joint_promote_and_remove() {
    let mut sim = Sim::new(Settings::default(), 4, &[vec![1, 2, 3]]);
    sim.min_voters = 3;
    sim.stop_store(3);
    // Nothing happens before the store counts as Down (30 s, 3 rounds).
    assert_eq!(sim.rounds(2), 0);
    sim.run_until_quiet(20);
    let steps: Vec<&Operator> = sim.log.iter().map(|(_, op)| op).collect();
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert!(is_change(steps[0], &[(ChangeKind::AddLearner, 4)]), "{steps:?}");
    assert!(is_change(steps[1], &[(ChangeKind::AddVoter, 4), (ChangeKind::Remove, 3)]), "{steps:?}");
    let r = sim.regions.values().next().unwrap();
    let stores: Vec<u64> = r.region.peers.iter().map(|p| p.store_id.get()).collect();
    assert_eq!((stores, r.voters()), (vec![1, 2, 4], 3));
    assert_eq!(sim.pd.store_health(StoreId(3), sim.now), Some(StoreHealth::Down));
}

#[test]
fn a_region_short_of_replicas_gets_one_added_and_promoted() {
    let mut sim = Sim::new(Settings::default(), 3, &[vec![1, 2]]);
    sim.min_voters = 2;
    sim.run_until_quiet(10);
    let steps: Vec<&Operator> = sim.log.iter().map(|(_, op)| op).collect();
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert!(is_change(steps[0], &[(ChangeKind::AddLearner, 3)]));
    assert!(is_change(steps[1], &[(ChangeKind::AddVoter, 3)]));
    assert_eq!(sim.regions.values().next().unwrap().voters(), 3);
}

#[test]
fn decommission_drains_the_store_keeping_three_voters_at_every_step() {
    // 5 stores, 10 regions on rotating triples; store 1 holds 6, leads 2.
    let placement: Vec<Vec<u64>> = (0..10u64).map(|i| (0..3).map(|j| (i + j) % 5 + 1).collect()).collect();
    let mut sim = Sim::new(Settings::default(), 5, &placement);
    sim.min_voters = 3;
    sim.run_until_quiet(20);
    sim.steps = 0;
    sim.pd.delete_store(StoreId(1)).unwrap();
    assert_eq!(sim.pd.store_health(StoreId(1), sim.now), Some(StoreHealth::Offline));
    let rounds = sim.run_until_quiet(60);
    assert_eq!(sim.pd.store_health(StoreId(1), sim.now), Some(StoreHealth::Tombstone));
    assert_eq!(sim.region_counts(5)[0], 0);
    assert_eq!(sim.leader_counts(5)[0], 0);
    for r in sim.regions.values() {
        assert_eq!((r.region.peers.len(), r.voters()), (3, 3), "{:?}", r.region);
    }
    assert_eq!(sim.pd.regions().store_load(StoreId(1)).regions, 0);
    // 6 replicas move (learner + joint each) after up to 4 leader transfers.
    assert!(sim.steps <= 6 * 2 + 4 + 6, "{} steps", sim.steps);
    assert!(rounds <= 15, "{rounds} rounds");
}

#[test]
fn a_new_empty_store_is_filled_and_leaders_spread() {
    // 12 regions on stores 1-3, every leader on store 1.
    let placement = vec![vec![1, 2, 3]; 12];
    let mut sim = Sim::new(Settings::default(), 3, &placement);
    sim.min_voters = 3;
    sim.add_store(4);
    let rounds = sim.run_until_quiet(80);
    let (regions, leaders) = (sim.region_counts(4), sim.leader_counts(4));
    assert!(spread(&regions) <= 2, "regions per store {regions:?}");
    assert!(spread(&leaders) <= 2, "leaders per store {leaders:?}");
    assert!(regions[3] >= 8, "{regions:?}");
    // 9 replicas to move (2 steps each, some after a leader transfer) and
    // about 9 leaders to spread.
    assert!(sim.steps <= 45, "{} steps", sim.steps);
    assert!(rounds <= 40, "{rounds} rounds");
    for r in sim.regions.values() {
        assert_eq!((r.region.peers.len(), r.voters()), (3, 3));
    }
}

#[test]
fn leaders_balance_within_the_tolerance() {
    let mut sim = Sim::new(Settings::default(), 3, &vec![vec![1, 2, 3]; 9]);
    sim.run_until_quiet(10);
    assert_eq!(sim.leader_counts(3), vec![3, 3, 3]);
    assert_eq!(sim.steps, 6);
    assert!(sim.log.iter().all(|(_, op)| matches!(op, Operator::TransferLeader { .. })));
    // A difference of one is within the tolerance.
    let placement = [vec![1, 2, 3], vec![1, 2, 3], vec![2, 1, 3], vec![3, 1, 2]];
    let mut sim = Sim::new(Settings::default(), 3, &placement);
    sim.run_until_quiet(5);
    assert_eq!(sim.steps, 0);
}

#[test]
fn add_peer_operators_respect_the_snapshot_limit() {
    for limit in [1, 3] {
        let settings = Settings { max_snapshots_per_store: limit, ..Settings::default() };
        // Leaders already even, so only region balance acts.
        let placement: Vec<Vec<u64>> =
            (0..12u64).map(|i| (0..3).map(|j| (i + j) % 3 + 1).collect()).collect();
        let mut sim = Sim::new(settings, 3, &placement);
        sim.round();
        assert_eq!(sim.steps, 0, "balanced before store 4 joins");
        sim.add_store(4);
        let mut max_in_flight = 0;
        for _ in 0..40 {
            let applied = sim.round();
            let adding = sim
                .pd
                .operators()
                .filter(|op| op.kind.added().is_some_and(|p| p.store_id == StoreId(4)))
                .filter(|op| {
                    let info = sim.pd.region_info(op.region_id).unwrap();
                    let p = op.kind.added().unwrap();
                    info.region.peer(p.id).is_none() || info.is_pending(p.id)
                })
                .count();
            max_in_flight = max_in_flight.max(adding);
            if applied == 0 && sim.pd.operators().next().is_none() {
                break;
            }
        }
        assert_eq!(max_in_flight, limit, "limit {limit}");
        assert!(sim.region_counts(4)[3] >= 8, "{:?}", sim.region_counts(4));
    }
}

#[test]
fn a_hot_region_is_split_until_it_cools() {
    let mut sim = Sim::new(Settings::default(), 3, &[vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]]);
    let hot = *sim.regions.keys().next().unwrap();
    sim.regions.get_mut(&hot).unwrap().write_bytes_per_sec = 20 << 20;
    // Rates need two heartbeats.
    sim.rounds(2);
    sim.run_until_quiet(20);
    let splits = sim.log.iter().filter(|(_, op)| matches!(op, Operator::Split { .. })).count();
    // 20 MiB/s -> 2 x 10 (still over 8 MiB/s) -> 4 x 5.
    assert_eq!(splits, 3, "{:?}", sim.log);
    assert_eq!(sim.regions.len(), 6);
    let pieces: Vec<u64> =
        sim.regions.values().filter(|r| r.write_bytes_per_sec > 0).map(|r| r.write_bytes_per_sec).collect();
    assert_eq!(pieces, vec![5 << 20; 4]);
}

#[test]
fn a_hot_region_too_small_to_split_moves_its_leader_to_a_cooler_store() {
    let settings = Settings { hot_split_min_bytes: 1 << 40, ..Settings::default() };
    let placement = [vec![1, 2, 3], vec![2, 3, 1], vec![1, 2, 3], vec![3, 1, 2]];
    let mut sim = Sim::new(settings, 3, &placement);
    let ids: Vec<RegionId> = sim.regions.keys().copied().collect();
    // Store 1 leads 20 + 10 MiB/s, store 2 leads 1 MiB/s, store 3 nothing.
    for (id, rate) in ids.iter().zip([20u64 << 20, 1 << 20, 10 << 20, 0]) {
        sim.regions.get_mut(id).unwrap().write_bytes_per_sec = rate;
    }
    sim.rounds(2);
    sim.run_until_quiet(20);
    let first = &sim.log[0];
    assert_eq!(first.0, ids[0]);
    assert!(matches!(first.1, Operator::TransferLeader { to } if to.store_id == StoreId(3)), "{:?}", sim.log);
    // Store 3 now leads the hot region; moving it on would only make
    // another store as hot, so it stays.
    assert_eq!(sim.leader_counts(3), vec![1, 1, 2]);
    assert_eq!(sim.steps, 1, "{:?}", sim.log);
    assert!(sim.log.iter().all(|(_, op)| !matches!(op, Operator::Split { .. })));
}

#[test]
fn with_even_counts_replicas_move_for_size() {
    let settings = Settings { region_tolerance: 10, ..Settings::default() };
    let placement = vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]];
    let mut sim = Sim::new(settings, 3, &placement);
    for r in sim.regions.values_mut() {
        r.size = 1 << 30;
    }
    sim.add_store(4);
    sim.min_voters = 3;
    sim.round();
    let reasons: Vec<OperatorReason> = sim.pd.operators().map(|op| op.reason).collect();
    assert!(!reasons.is_empty() && reasons.iter().all(|r| *r == OperatorReason::SizeBalance), "{reasons:?}");
    sim.run_until_quiet(30);
    let moved = sim.region_counts(4)[3];
    assert!(moved >= 2, "{:?}", sim.region_counts(4));
    let sizes: Vec<u64> =
        (1..=4).map(|s| sim.pd.regions().store_load(StoreId(s)).region_size >> 30).collect();
    assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
}

#[test]
fn extra_replicas_are_removed_from_the_worst_store_never_the_leader() {
    // (leader store, stopped store, expected store of the removed replica)
    let cases = [(1, None, 4), (4, None, 3), (1, Some(2), 2), (3, Some(4), 4)];
    for (leader, stopped, want) in cases {
        // Region A has 4 replicas; region B makes stores 2-4 fuller. A
        // stopped store is Down by the first round.
        let settings = Settings { down_after_ms: 5_000, ..Settings::default() };
        let mut sim = Sim::new(settings, 4, &[vec![1, 2, 3, 4], vec![2, 3, 4]]);
        let a = *sim.regions.keys().next().unwrap();
        let ra = sim.regions.get_mut(&a).unwrap();
        ra.leader = ra.region.peer_on(StoreId(leader)).unwrap().id;
        if let Some(s) = stopped {
            sim.stop_store(s);
        }
        let mut removed = None;
        for _ in 0..10 {
            sim.round();
            removed = sim.log.iter().find_map(|(id, op)| match op {
                Operator::ChangePeer { changes } if *id == a && changes[0].kind == ChangeKind::Remove => {
                    Some(changes[0].peer.store_id.get())
                }
                _ => None,
            });
            if removed.is_some() {
                break;
            }
        }
        assert_eq!(removed, Some(want), "leader {leader}, stopped {stopped:?}: {:?}", sim.log);
        assert_eq!(sim.regions[&a].voters(), 3);
    }
}

#[test]
fn one_operator_per_region_and_steps_repeat_until_they_show() {
    let mut pd = must_bootstrapped(Settings::default(), &[2, 3, 4]);
    let r = region(1, "", "", (3, 1), &[(1, 1), (2, 2), (3, 3)]);
    live_heartbeat(&mut pd, &[1, 2, 4], 40_000);
    let first = pd.region_heartbeat(&heartbeat(&r, peer(1, 1)), 40_000).unwrap().operator.unwrap();
    assert!(is_change(&first, &[(ChangeKind::AddLearner, 4)]));
    for now in [41_000, 42_000, 43_000] {
        live_heartbeat(&mut pd, &[1, 2, 4], now);
        let again = pd.region_heartbeat(&heartbeat(&r, peer(1, 1)), now).unwrap().operator.unwrap();
        assert_eq!(again, first, "the same step, not a new operator");
        assert_eq!(pd.operators().count(), 1);
    }
    let op = pd.operator(RegionId(1)).unwrap();
    assert_eq!((op.steps_sent, op.reason), (4, OperatorReason::Repair));
    let status = pd.status(44_000);
    assert_eq!(status.operators.len(), 1);
    assert_eq!(status.operators[0].age_ms, 4_000);
    assert!(status.operators[0].kind.starts_with("move-peer 3@3 -> "), "{:?}", status.operators[0]);
    assert!(status.to_json().unwrap().contains("\"Down\""));
}

#[test]
fn operators_time_out_and_are_replaced() {
    let settings = Settings { peer_operator_timeout_ms: 50_000, ..Settings::default() };
    let mut pd = must_bootstrapped(settings, &[2, 3, 4]);
    let r = region(1, "", "", (3, 1), &[(1, 1), (2, 2), (3, 3)]);
    let added = |op: &Operator| match op {
        Operator::ChangePeer { changes } => changes[0].peer,
        _ => panic!("{op:?}"),
    };
    let step = |pd: &mut crate::core::Cluster, now| {
        live_heartbeat(pd, &[1, 2, 4], now);
        added(&pd.region_heartbeat(&heartbeat(&r, peer(1, 1)), now).unwrap().operator.unwrap())
    };
    let p1 = step(&mut pd, 40_000);
    assert_eq!(step(&mut pd, 89_999), p1);
    // Past the deadline the operator is cancelled and a new one made.
    let p2 = step(&mut pd, 90_000);
    assert_ne!(p2.id, p1.id);
    assert_eq!(p2.store_id, StoreId(4));
    // tick() cancels without a heartbeat (the leader went silent).
    assert_eq!(pd.tick(139_999), vec![]);
    assert_eq!(pd.tick(140_000), vec![RegionId(1)]);
    assert!(pd.operator(RegionId(1)).is_none());
}

#[test]
fn operators_are_cancelled_when_the_region_moves_under_them() {
    let mut pd = must_bootstrapped(Settings::default(), &[2, 3, 4, 5]);
    let r = region(1, "", "", (3, 1), &[(1, 1), (2, 2), (3, 3)]);
    live_heartbeat(&mut pd, &[1, 2, 4, 5], 40_000);
    let op = pd.region_heartbeat(&heartbeat(&r, peer(1, 1)), 40_000).unwrap().operator.unwrap();
    assert!(is_change(&op, &[(ChangeKind::AddLearner, 4)]), "{op:?}");
    assert!(matches!(pd.operator(RegionId(1)).unwrap().kind, OperatorKind::MovePeer { .. }));
    // Someone else removed the replica on store 3: the move no longer
    // applies; the repair becomes an add.
    let shrunk = region(1, "", "", (4, 1), &[(1, 1), (2, 2)]);
    live_heartbeat(&mut pd, &[1, 2, 4, 5], 41_000);
    let next = pd.region_heartbeat(&heartbeat(&shrunk, peer(1, 1)), 41_000).unwrap().operator.unwrap();
    assert!(matches!(pd.operator(RegionId(1)).unwrap().kind, OperatorKind::AddPeer { .. }));
    assert!(matches!(&next, Operator::ChangePeer { changes } if changes[0].kind == ChangeKind::AddLearner));
    // The target store goes silent before the learner shows: cancelled,
    // and the replica goes to the other store.
    let planned = match &next {
        Operator::ChangePeer { changes } => changes[0].peer.store_id,
        _ => unreachable!(),
    };
    let other = if planned == StoreId(4) { 5 } else { 4 };
    live_heartbeat(&mut pd, &[1, 2, other], 80_000);
    let last = pd.region_heartbeat(&heartbeat(&shrunk, peer(1, 1)), 80_000).unwrap().operator.unwrap();
    assert!(is_change(&last, &[(ChangeKind::AddLearner, other)]), "{last:?}");
}

#[test]
fn a_stray_learner_is_promoted_instead_of_copying_again() {
    let mut pd = must_bootstrapped(Settings::default(), &[2, 3, 4]);
    let r = region(1, "", "", (3, 1), &[(1, 1), (2, 2), (3, 3)]);
    live_heartbeat(&mut pd, &[1, 2, 4], 40_000);
    let op = pd.region_heartbeat(&heartbeat(&r, peer(1, 1)), 40_000).unwrap().operator.unwrap();
    let learner = match &op {
        Operator::ChangePeer { changes } => changes[0].peer,
        _ => panic!("{op:?}"),
    };
    // The learner shows up, then the operator times out (the default
    // timeout is 10 minutes) before promoting it.
    let mut with_learner = r.clone();
    with_learner.peers.push(learner);
    with_learner.epoch.conf_ver += 1;
    let mut hb = heartbeat(&with_learner, peer(1, 1));
    hb.pending_peers = vec![learner];
    hb.learners = vec![learner];
    live_heartbeat(&mut pd, &[1, 2, 4], 41_000);
    assert_eq!(pd.region_heartbeat(&hb, 41_000).unwrap().operator, None, "waits for the learner");
    live_heartbeat(&mut pd, &[1, 2, 4], 700_000);
    let mut hb = heartbeat(&with_learner, peer(1, 1));
    hb.learners = vec![learner];
    let next = pd.region_heartbeat(&hb, 700_000).unwrap().operator.unwrap();
    assert_eq!(
        next,
        Operator::ChangePeer {
            changes: vec![
                PeerChange { kind: ChangeKind::AddVoter, peer: learner },
                PeerChange { kind: ChangeKind::Remove, peer: peer(3, 3) },
            ]
        }
    );
}

/// A learner this meta service did not add (a split copies learners into
/// the new regions; a new meta-service leader knows none) is not a voter:
/// the region gets its third voter by promoting it, and leadership never
/// goes to it.
#[test]
fn a_reported_learner_is_not_counted_as_a_voter() {
    let mut pd = must_bootstrapped(Settings::default(), &[2, 3]);
    let r = region(1, "", "", (3, 1), &[(1, 1), (2, 2), (3, 3)]);
    live_heartbeat(&mut pd, &[1, 2, 3], 1_000);
    let mut hb = heartbeat(&r, peer(1, 1));
    hb.learners = vec![peer(3, 3)];
    let op = pd.region_heartbeat(&hb, 1_000).unwrap().operator;
    assert_eq!(
        op,
        Some(Operator::ChangePeer {
            changes: vec![PeerChange { kind: ChangeKind::AddVoter, peer: peer(3, 3) }]
        })
    );
    let status = pd.status(1_000);
    let roles: Vec<&str> = status.regions[0].peers.iter().map(|p| p.role).collect();
    assert_eq!(roles, ["leader", "voter", "learner"]);
}

/// A region with three voters and a learner (one a meta-service leader
/// left mid-repair): the learner is dropped as extra only while no voter
/// is in doubt; while one is, it stays, and once the voter is lost it is
/// promoted in its place.
#[test]
fn a_learner_stays_while_a_voter_is_in_doubt() {
    const NOW: u64 = 20_000;
    let remove_learner =
        Operator::ChangePeer { changes: vec![PeerChange { kind: ChangeKind::Remove, peer: peer(4, 4) }] };
    let promote = Operator::ChangePeer {
        changes: vec![
            PeerChange { kind: ChangeKind::AddVoter, peer: peer(4, 4) },
            PeerChange { kind: ChangeKind::Remove, peer: peer(3, 3) },
        ],
    };
    /// Stores that reported, seconds the leader has not heard from peer 3,
    /// time of the heartbeat, expected answer.
    type Case<'a> = (&'a [u64], Option<u64>, u64, Option<Operator>);
    let cases: [Case<'_>; 5] = [
        (&[1, 2, 3, 4], None, NOW, Some(remove_learner.clone())),
        // Silent for a moment: maybe gone, maybe not.
        (&[1, 2, 3, 4], Some(2), NOW, None),
        // Store 3 has not reported since this leader started (registered
        // at 0, not yet Down).
        (&[1, 2, 4], None, NOW, None),
        (&[1, 2, 4], Some(2), NOW, None),
        // Store 3 is Down by now: the learner takes its place.
        (&[1, 2, 4], Some(40), 40_000, Some(promote)),
    ];
    for (i, (reported, silent, now, want)) in cases.into_iter().enumerate() {
        let mut pd = must_bootstrapped(Settings::default(), &[2, 3, 4]);
        // This meta-service leader took over from the one that registered
        // the stores: it has heard from none of them yet.
        pd.reset_soft_state(0);
        let r = region(1, "", "", (4, 1), &[(1, 1), (2, 2), (3, 3), (4, 4)]);
        live_heartbeat(&mut pd, reported, now);
        let mut hb = heartbeat(&r, peer(1, 1));
        hb.learners = vec![peer(4, 4)];
        hb.down_peers = silent.map(|s| DownPeer { peer: peer(3, 3), down_seconds: s }).into_iter().collect();
        let op = pd.region_heartbeat(&hb, now).unwrap().operator;
        assert_eq!(op, want, "case {i}");
        let reason = pd.operator(RegionId(1)).map(|op| op.reason);
        let want_reason = match i {
            0 => Some(OperatorReason::ExtraReplica),
            4 => Some(OperatorReason::Repair),
            _ => None,
        };
        assert_eq!(reason, want_reason, "case {i}");
    }
}

/// A new meta-service leader counts every store live until it has been
/// silent for `down_after_ms`, a dead one too: a replica goes only to a
/// store heard from since the leader started.
#[test]
fn a_new_leader_places_replicas_only_on_stores_it_heard_from() {
    // (stores that reported since the new leader started, store the
    // replica goes to)
    let cases: [(&[u64], Option<u64>); 4] =
        [(&[1, 2, 4, 5], Some(4)), (&[1, 2, 5], Some(5)), (&[1, 2], None), (&[1, 2, 4], Some(4))];
    for (i, (reported, want)) in cases.into_iter().enumerate() {
        let mut pd = must_bootstrapped(Settings::default(), &[2, 3, 4, 5]);
        let records: Vec<_> = pd.take_changes().iter().map(crate::core::Change::to_record).collect();
        let mut pd = crate::core::Cluster::load(Settings::default(), records, 500_000).unwrap();
        live_heartbeat(&mut pd, reported, 500_000);
        // Two voters: short of one, nothing in doubt.
        let r = region(1, "", "", (2, 1), &[(1, 1), (2, 2)]);
        let op = pd.region_heartbeat(&heartbeat(&r, peer(1, 1)), 500_000).unwrap().operator;
        let target = match &op {
            Some(Operator::ChangePeer { changes }) if changes[0].kind == ChangeKind::AddLearner => {
                Some(changes[0].peer.store_id.get())
            }
            None => None,
            other => panic!("case {i}: {other:?}"),
        };
        assert_eq!(target, want, "case {i}");
    }
    // A store that registers with the new leader (as a starting store
    // does) is heard from before its first heartbeat is due.
    let mut pd = must_bootstrapped(Settings::default(), &[2, 3]);
    let records: Vec<_> = pd.take_changes().iter().map(crate::core::Change::to_record).collect();
    let mut pd = crate::core::Cluster::load(Settings::default(), records, 500_000).unwrap();
    live_heartbeat(&mut pd, &[1, 2], 500_000);
    pd.put_store(store(3), 500_000).unwrap();
    let r = region(1, "", "", (2, 1), &[(1, 1), (2, 2)]);
    let op = pd.region_heartbeat(&heartbeat(&r, peer(1, 1)), 500_000).unwrap().operator;
    assert!(
        matches!(&op, Some(Operator::ChangePeer { changes }) if changes[0].kind == ChangeKind::AddLearner && changes[0].peer.store_id.get() == 3),
        "{op:?}"
    );
}
