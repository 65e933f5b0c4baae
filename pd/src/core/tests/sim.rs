//! A deterministic simulation of the stores around the core: regions as
//! the raftstore holds them, heartbeats built from that truth, and every
//! operator step applied the way the raftstore would (conf changes bump
//! `conf_ver` by their number of changes, plus one to leave a joint
//! change; splits go through `AskBatchSplit`/`ReportBatchSplit`).
//!
//! Logical time only: each round advances the clock by `interval_ms`.

use std::collections::{BTreeMap, BTreeSet};

use ekv_proto::msg::{ChangeKind, DownPeer, Operator, RegionHeartbeatRequest, StoreHeartbeatRequest};
use ekv_proto::{PeerId, PeerMeta, Region, RegionEpoch, RegionId, StoreId};

use super::store;
use crate::core::{Cluster, Settings};

/// Keys of the simulated key space are `k` + 8 digits, from 0 to `SPACE`.
const SPACE: u64 = 100_000_000;

fn key(n: u64) -> Vec<u8> {
    if n == 0 || n >= SPACE {
        Vec::new()
    } else {
        format!("k{n:08}").into_bytes()
    }
}

/// One region as its replicas hold it.
#[derive(Clone, Debug)]
pub(super) struct SimRegion {
    pub region: Region,
    pub leader: PeerId,
    /// Replicas that are learners.
    pub learners: BTreeSet<PeerId>,
    /// Replicas added since the last heartbeat: reported pending once.
    pub fresh: BTreeSet<PeerId>,
    /// Key range as numbers, `[lo, hi)`.
    pub lo: u64,
    pub hi: u64,
    pub size: u64,
    /// Traffic per second the region sees.
    pub write_bytes_per_sec: u64,
}

impl SimRegion {
    pub fn voters(&self) -> usize {
        self.region.peers.iter().filter(|p| !self.learners.contains(&p.id)).count()
    }

    pub fn leader_store(&self) -> StoreId {
        self.region.peer(self.leader).map(|p| p.store_id).unwrap_or_default()
    }
}

/// Stores, regions and the meta-service core under test.
#[derive(Debug)]
pub(super) struct Sim {
    pub pd: Cluster,
    pub now: u64,
    pub interval_ms: u64,
    pub regions: BTreeMap<RegionId, SimRegion>,
    /// Stores that answer (heartbeat, serve raft).
    pub up: BTreeSet<StoreId>,
    /// Stores that stopped, and since when.
    pub down_since: BTreeMap<StoreId, u64>,
    /// Operator steps applied so far.
    pub steps: usize,
    /// Every step applied, as `(region, step)`.
    pub log: Vec<(RegionId, Operator)>,
    /// Checked after every step: no region has fewer voters than this.
    pub min_voters: usize,
}

impl Sim {
    /// A cluster of `stores` (store ids 1..=n) with `placement.len()`
    /// regions splitting the key space evenly; region `i` has replicas on
    /// the stores `placement[i]`, its leader on the first of them.
    pub fn new(settings: Settings, stores: u64, placement: &[Vec<u64>]) -> Sim {
        let mut pd = Cluster::new(settings);
        let boot = Region {
            id: RegionId(1),
            epoch: RegionEpoch { conf_ver: 1, version: 1 },
            peers: vec![PeerMeta { id: PeerId(2), store_id: StoreId(1) }],
            ..Default::default()
        };
        pd.bootstrap(store(1), boot, 0).unwrap();
        for s in 2..=stores {
            pd.put_store(store(s), 0).unwrap();
        }
        let mut regions = BTreeMap::new();
        let n = placement.len() as u64;
        for (i, stores) in placement.iter().enumerate() {
            let i = i as u64;
            let first = pd.alloc_ids(1 + stores.len() as u64).unwrap();
            let peers: Vec<PeerMeta> = stores
                .iter()
                .enumerate()
                .map(|(j, &s)| PeerMeta { id: PeerId(first + 1 + j as u64), store_id: StoreId(s) })
                .collect();
            let (lo, hi) = (SPACE / n * i, if i + 1 == n { SPACE } else { SPACE / n * (i + 1) });
            let region = Region {
                id: RegionId(first),
                start_key: key(lo),
                end_key: key(hi),
                epoch: RegionEpoch { conf_ver: 5, version: 5 },
                peers: peers.clone(),
            };
            let sim = SimRegion {
                region,
                leader: peers[0].id,
                learners: BTreeSet::new(),
                fresh: BTreeSet::new(),
                lo,
                hi,
                size: 64 << 20,
                write_bytes_per_sec: 0,
            };
            regions.insert(RegionId(first), sim);
        }
        // As after a restart, the core knows every region before any
        // heartbeat arrives.
        let all: Vec<Region> = regions.values().map(|r: &SimRegion| r.region.clone()).collect();
        pd.report_batch_split(&all).unwrap();
        pd.take_changes();
        Sim {
            pd,
            now: 0,
            interval_ms: 10_000,
            regions,
            up: (1..=stores).map(StoreId).collect(),
            down_since: BTreeMap::new(),
            steps: 0,
            log: Vec::new(),
            min_voters: 0,
        }
    }

    /// Registers and starts store `id`.
    pub fn add_store(&mut self, id: u64) {
        self.pd.put_store(store(id), self.now).unwrap();
        self.up.insert(StoreId(id));
    }

    /// Stops store `id`: no heartbeats, its peers stop answering.
    pub fn stop_store(&mut self, id: u64) {
        self.up.remove(&StoreId(id));
        self.down_since.insert(StoreId(id), self.now);
    }

    /// The heartbeat the leader of `id` sends now.
    pub fn heartbeat(&mut self, id: RegionId) -> RegionHeartbeatRequest {
        let interval = self.interval_ms;
        let (up, down_since, now) = (&self.up, &self.down_since, self.now);
        let r = self.regions.get_mut(&id).expect("simulated region");
        // A leader on a stopped store loses leadership to a live voter.
        if !up.contains(&r.leader_store()) {
            if let Some(p) =
                r.region.peers.iter().find(|p| up.contains(&p.store_id) && !r.learners.contains(&p.id))
            {
                r.leader = p.id;
            }
        }
        let pending: Vec<PeerMeta> =
            r.region.peers.iter().filter(|p| r.fresh.contains(&p.id)).copied().collect();
        r.fresh.clear();
        let down_peers = r
            .region
            .peers
            .iter()
            .filter_map(|p| {
                down_since
                    .get(&p.store_id)
                    .map(|since| DownPeer { peer: *p, down_seconds: now.saturating_sub(*since) / 1000 })
            })
            .collect();
        RegionHeartbeatRequest {
            region: r.region.clone(),
            leader: r.region.peer(r.leader),
            leader_shard: 0,
            pending_peers: pending,
            down_peers,
            learners: r.region.peers.iter().filter(|p| r.learners.contains(&p.id)).copied().collect(),
            approximate_size: r.size,
            approximate_keys: r.size / 100,
            bytes_written: r.write_bytes_per_sec * interval / 1000,
            keys_written: r.write_bytes_per_sec / 4096 * interval / 1000,
            ..Default::default()
        }
    }

    /// One round: the clock advances, live stores heartbeat, then every
    /// region's leader (in id order) heartbeats and any operator step in
    /// the answer is applied. Returns the steps applied.
    pub fn round(&mut self) -> usize {
        self.now += self.interval_ms;
        for s in self.up.clone() {
            let hb = StoreHeartbeatRequest {
                store_id: s,
                capacity: 1 << 40,
                available: 1 << 39,
                ..Default::default()
            };
            match self.pd.store_heartbeat(&hb, self.now) {
                Ok(()) => {}
                // A decommissioned store is told so, and stops.
                Err(crate::core::Error::StoreTombstoned { .. }) => {
                    self.up.remove(&s);
                }
                Err(e) => panic!("store heartbeat of {s}: {e}"),
            }
        }
        let mut applied = 0;
        for id in self.regions.keys().copied().collect::<Vec<_>>() {
            if !self.regions.contains_key(&id) {
                continue;
            }
            let hb = self.heartbeat(id);
            if !self.up.contains(&hb.leader.map(|l| l.store_id).unwrap_or_default()) {
                continue; // no live leader, no heartbeat
            }
            let answer = self.pd.region_heartbeat(&hb, self.now).unwrap();
            self.pd.take_changes();
            if let Some(op) = answer.operator {
                assert_eq!(answer.epoch, hb.region.epoch, "steps are computed against the reported epoch");
                self.apply(id, &op);
                applied += 1;
            }
        }
        applied
    }

    /// Runs `n` rounds; returns the steps applied.
    pub fn rounds(&mut self, n: usize) -> usize {
        (0..n).map(|_| self.round()).sum()
    }

    /// Rounds until two in a row apply no step with no operator in flight
    /// (one quiet round is not enough: rates need two heartbeats, and
    /// balancing waits for new split regions to report); returns the
    /// rounds run.
    ///
    /// # Panics
    /// After `max_rounds` rounds.
    pub fn run_until_quiet(&mut self, max_rounds: usize) -> usize {
        let mut quiet = 0;
        for n in 1..=max_rounds {
            if self.round() == 0 && self.pd.operators().next().is_none() {
                quiet += 1;
                if quiet == 2 {
                    return n;
                }
            } else {
                quiet = 0;
            }
        }
        panic!("not quiet after {max_rounds} rounds: {:?}", self.pd.status(self.now).operators);
    }

    /// Applies an operator step as the region's leader would.
    pub fn apply(&mut self, id: RegionId, op: &Operator) {
        self.steps += 1;
        self.log.push((id, op.clone()));
        match op {
            Operator::ChangePeer { changes } => {
                let r = self.regions.get_mut(&id).expect("simulated region");
                for c in changes {
                    let p = c.peer;
                    if matches!(c.kind, ChangeKind::Remove | ChangeKind::AddLearner) {
                        assert_ne!(p.id, r.leader, "{id}: {op:?} removes or demotes the leader");
                    }
                    if let Some(q) = r.region.peer_on(p.store_id) {
                        assert!(
                            q.id == p.id || c.kind == ChangeKind::Remove,
                            "{id}: second replica on a store"
                        );
                    }
                    match c.kind {
                        ChangeKind::AddLearner => {
                            assert!(r.region.peer(p.id).is_none(), "{id}: learner {p:?} exists");
                            r.region.peers.push(p);
                            r.learners.insert(p.id);
                            r.fresh.insert(p.id);
                        }
                        ChangeKind::AddVoter => {
                            if r.region.peer(p.id).is_none() {
                                r.region.peers.push(p);
                                r.fresh.insert(p.id);
                            }
                            r.learners.remove(&p.id);
                        }
                        ChangeKind::Remove => {
                            assert!(r.region.peer(p.id).is_some(), "{id}: removes a missing peer {p:?}");
                            r.region.peers.retain(|q| q.id != p.id);
                            r.learners.remove(&p.id);
                        }
                    }
                }
                r.region.peers.sort_by_key(|p| p.id);
                let joint = u64::from(changes.len() > 1);
                r.region.epoch.conf_ver += changes.len() as u64 + joint;
                assert!(
                    r.voters() >= self.min_voters,
                    "{id} has {} voters after {op:?}, fewer than {}",
                    r.voters(),
                    self.min_voters
                );
            }
            Operator::TransferLeader { to } => {
                let r = self.regions.get_mut(&id).expect("simulated region");
                assert!(
                    r.region.peer(to.id).is_some() && !r.learners.contains(&to.id),
                    "{id}: leader to non-voter"
                );
                assert!(self.up.contains(&to.store_id), "{id}: leader to a stopped store");
                r.leader = to.id;
            }
            Operator::Split { keys } => {
                assert!(keys.is_empty(), "the core lets the leader pick the key");
                self.split(id);
            }
        }
    }

    /// Splits region `id` at its middle, asking the core for ids and
    /// reporting the result, as the raftstore does.
    fn split(&mut self, id: RegionId) {
        let r = self.regions[&id].clone();
        if r.hi - r.lo < 2 {
            return;
        }
        let ids = self.pd.ask_batch_split(&r.region, 1).unwrap().remove(0);
        self.pd.take_changes();
        let mid = (r.lo + r.hi) / 2;
        let version = r.region.epoch.version + 1;
        let mut left = r.clone();
        left.region.end_key = key(mid);
        left.region.epoch.version = version;
        left.hi = mid;
        left.size /= 2;
        left.write_bytes_per_sec /= 2;
        let mut right = left.clone();
        right.region.id = ids.new_region_id;
        right.region.start_key = key(mid);
        right.region.end_key = r.region.end_key.clone();
        right.region.peers = r
            .region
            .peers
            .iter()
            .zip(&ids.new_peer_ids)
            .map(|(p, id)| PeerMeta { id: *id, store_id: p.store_id })
            .collect();
        // Learners stay learners in the new region, as the raftstore's split does.
        right.learners = r
            .region
            .peers
            .iter()
            .zip(&ids.new_peer_ids)
            .filter(|(p, _)| r.learners.contains(&p.id))
            .map(|(_, id)| *id)
            .collect();
        right.leader = right.region.peer_on(r.leader_store()).map(|p| p.id).unwrap_or_default();
        right.lo = mid;
        right.hi = r.hi;
        self.pd.report_batch_split(&[left.region.clone(), right.region.clone()]).unwrap();
        self.pd.take_changes();
        self.regions.insert(id, left);
        self.regions.insert(right.region.id, right);
    }

    /// Replicas per store, from the simulated truth (stores 1..=n).
    pub fn region_counts(&self, stores: u64) -> Vec<usize> {
        (1..=stores)
            .map(|s| self.regions.values().filter(|r| r.region.peer_on(StoreId(s)).is_some()).count())
            .collect()
    }

    /// Leaders per store, from the simulated truth (stores 1..=n).
    pub fn leader_counts(&self, stores: u64) -> Vec<usize> {
        (1..=stores)
            .map(|s| self.regions.values().filter(|r| r.leader_store() == StoreId(s)).count())
            .collect()
    }
}

/// `max - min` of `v`.
pub(super) fn spread(v: &[usize]) -> usize {
    v.iter().max().copied().unwrap_or(0) - v.iter().min().copied().unwrap_or(0)
}
