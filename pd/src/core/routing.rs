//! The routing table: regions by key range and by id, what their leaders
//! last reported, and per-store totals kept in step with every change.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{Excluded, Unbounded};

use ekv_proto::msg::{DownPeer, RegionRoute};
use ekv_proto::{PeerId, PeerMeta, Region, RegionId, StoreId};
use serde::Serialize;

/// A region's end as an ordered key: an empty end key is plus infinity,
/// which the derived order puts after every bounded end.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum EndKey {
    Key(Vec<u8>),
    Unbounded,
}

impl EndKey {
    fn of(end: &[u8]) -> Self {
        if end.is_empty() {
            EndKey::Unbounded
        } else {
            EndKey::Key(end.to_vec())
        }
    }
}

/// Read and write rates of a region (per second), derived from the
/// counts a leader reports since its previous heartbeat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Load {
    /// Bytes written per second.
    pub write_bytes: u64,
    /// Keys written per second.
    pub write_keys: u64,
    /// Bytes read per second.
    pub read_bytes: u64,
    /// Keys read per second.
    pub read_keys: u64,
}

impl Load {
    /// The rates as `[write bytes, write keys, read bytes, read keys]`.
    pub fn dims(&self) -> [u64; 4] {
        [self.write_bytes, self.write_keys, self.read_bytes, self.read_keys]
    }

    fn combine(&mut self, other: &Load, add: bool) {
        let f = |a: &mut u64, b: u64| *a = if add { a.saturating_add(b) } else { a.saturating_sub(b) };
        f(&mut self.write_bytes, other.write_bytes);
        f(&mut self.write_keys, other.write_keys);
        f(&mut self.read_bytes, other.read_bytes);
        f(&mut self.read_keys, other.read_keys);
    }
}

/// A region and what its leader last reported. Everything but `region` is
/// soft state: rebuilt from heartbeats after a restart, never persisted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionInfo {
    /// The region (persisted).
    pub region: Region,
    /// Its leader, if known; always one of `region.peers`.
    pub leader: Option<PeerMeta>,
    /// The shard of the leader's store holding the leader.
    pub leader_shard: u32,
    /// Peers far behind in the log.
    pub pending_peers: Vec<PeerMeta>,
    /// Peers the leader has not heard from.
    pub down_peers: Vec<DownPeer>,
    /// Peers that are learners, as the leader last reported them (the
    /// region's peer list carries no role).
    pub learners: BTreeSet<PeerId>,
    /// Approximate bytes.
    pub approximate_size: u64,
    /// Approximate keys.
    pub approximate_keys: u64,
    /// Rates from the last two heartbeats.
    pub load: Load,
    /// When the last heartbeat arrived.
    pub last_heartbeat_ms: Option<u64>,
}

impl RegionInfo {
    /// A region nobody has reported on yet.
    pub fn new(region: Region) -> Self {
        Self { region, ..Default::default() }
    }

    /// The route a client needs.
    pub fn route(&self) -> RegionRoute {
        RegionRoute { region: self.region.clone(), leader: self.leader, leader_shard: self.leader_shard }
    }

    /// True when `peer` is reported pending.
    pub fn is_pending(&self, peer: PeerId) -> bool {
        self.pending_peers.iter().any(|p| p.id == peer)
    }

    /// True when the leader has not heard from `peer` for `down_after_ms`.
    pub fn is_down(&self, peer: PeerId, down_after_ms: u64) -> bool {
        self.down_peers
            .iter()
            .any(|d| d.peer.id == peer && d.down_seconds.saturating_mul(1000) >= down_after_ms)
    }

    /// Drops soft state about peers that left the region.
    fn retain_members(&mut self) {
        let peers = &self.region.peers;
        if self.leader.is_some_and(|l| !peers.contains(&l)) {
            self.leader = None;
            self.leader_shard = 0;
        }
        self.pending_peers.retain(|p| peers.contains(p));
        self.down_peers.retain(|d| peers.contains(&d.peer));
        self.learners.retain(|id| peers.iter().any(|p| p.id == *id));
    }
}

/// Totals over the regions with a replica (or the leader) on one store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StoreLoad {
    /// Regions with a replica on the store.
    pub regions: u64,
    /// Regions whose leader is on the store.
    pub leaders: u64,
    /// Sum of the approximate sizes of `regions`.
    pub region_size: u64,
    /// Sum of the rates of the regions it leads.
    pub leader_load: Load,
}

/// What [`RegionTable::update`] did with a reported region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// The report is older than (or conflicts with) what the table holds;
    /// nothing changed.
    Stale,
    /// Same epoch and shape as the table's.
    Unchanged,
    /// The region is new or its epoch moved; `removed` are the older
    /// regions it overlapped, now gone.
    Changed {
        /// Regions the new one replaced.
        removed: Vec<RegionId>,
    },
}

/// Regions by end key and by id.
///
/// Invariants: `by_end` and `regions` hold the same ids; ranges in the
/// table never overlap (gaps are allowed while a split is half reported);
/// `stores` equals the sum over `regions` of their contributions.
#[derive(Clone, Debug, Default)]
pub struct RegionTable {
    by_end: BTreeMap<EndKey, RegionId>,
    regions: BTreeMap<RegionId, RegionInfo>,
    stores: BTreeMap<StoreId, StoreLoad>,
    /// Regions with a heartbeat since the last [`RegionTable::reset_soft`].
    reported: usize,
}

impl RegionTable {
    /// Number of regions.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// True when the table holds no region.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// Regions whose leader reported since the soft state was last reset.
    pub fn reported(&self) -> usize {
        self.reported
    }

    /// The region holding `key`.
    pub fn locate(&self, key: &[u8]) -> Option<&RegionInfo> {
        let (_, id) = self.by_end.range((Excluded(EndKey::Key(key.to_vec())), Unbounded)).next()?;
        self.regions.get(id).filter(|info| info.region.contains(key))
    }

    /// The region whose range ends at `end` (an empty `end`: the last
    /// region, unbounded above).
    pub fn ending_at(&self, end: &[u8]) -> Option<&RegionInfo> {
        self.by_end.get(&EndKey::of(end)).and_then(|id| self.regions.get(id))
    }

    /// The region with id `id`.
    pub fn get(&self, id: RegionId) -> Option<&RegionInfo> {
        self.regions.get(&id)
    }

    /// Every region, by id.
    pub fn iter(&self) -> impl Iterator<Item = &RegionInfo> {
        self.regions.values()
    }

    /// Up to `limit` regions (0: no limit) overlapping `[start, end)`, in
    /// key order; an empty `end` is unbounded.
    pub fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<&RegionInfo> {
        let limit = if limit == 0 { usize::MAX } else { limit };
        self.overlapping(start, end.to_vec()).take(limit).collect()
    }

    /// Totals of `store`.
    pub fn store_load(&self, store: StoreId) -> StoreLoad {
        self.stores.get(&store).copied().unwrap_or_default()
    }

    /// Regions overlapping `[start, end)` in key order.
    fn overlapping(&self, start: &[u8], end: Vec<u8>) -> impl Iterator<Item = &RegionInfo> + '_ {
        self.by_end
            .range((Excluded(EndKey::Key(start.to_vec())), Unbounded))
            .map(|(_, id)| &self.regions[id])
            .take_while(move |info| end.is_empty() || info.region.start_key < end)
    }

    /// Takes a region as a leader or a split report describes it.
    ///
    /// 1. A report whose epoch is stale against the same region's is
    ///    ignored; so is one with the same epoch but another shape (two
    ///    histories cannot both be right, and keeping the known one never
    ///    routes a key to a region that does not hold it).
    /// 2. A report overlapping another region of the same or a newer
    ///    `version` is ignored, for the same reason.
    /// 3. Otherwise the overlapped (older) regions are removed and the
    ///    report replaces the region, keeping its soft state.
    pub fn update(&mut self, region: Region) -> Update {
        if let Some(cur) = self.regions.get(&region.id) {
            let epoch = &cur.region.epoch;
            if region.epoch.is_stale(epoch) {
                return Update::Stale;
            }
            if region.epoch == *epoch {
                return if region == cur.region { Update::Unchanged } else { Update::Stale };
            }
        }
        let mut overlapped = Vec::new();
        for other in self.overlapping(&region.start_key, region.end_key.clone()) {
            if other.region.id == region.id {
                continue;
            }
            if other.region.epoch.version >= region.epoch.version {
                tracing::warn!(
                    region = %region.id, version = region.epoch.version, other = %other.region.id,
                    other_version = other.region.epoch.version,
                    "region report overlaps a region at least as new; ignored"
                );
                return Update::Stale;
            }
            overlapped.push(other.region.id);
        }
        for id in &overlapped {
            self.remove(*id);
        }
        let mut info = self.remove(region.id).unwrap_or_default();
        info.region = region;
        info.retain_members();
        self.insert(info);
        Update::Changed { removed: overlapped }
    }

    /// Changes the soft state of region `id` through `f`, keeping the
    /// store totals in step. `f` must not change the region itself.
    pub fn update_soft(&mut self, id: RegionId, f: impl FnOnce(&mut RegionInfo)) {
        if let Some(mut info) = self.regions.remove(&id) {
            self.account(&info, false);
            #[cfg(debug_assertions)]
            let region = info.region.clone();
            f(&mut info);
            #[cfg(debug_assertions)]
            debug_assert_eq!(info.region, region, "update_soft must not change the region");
            info.retain_members();
            self.account(&info, true);
            self.regions.insert(id, info);
        }
    }

    /// Clears every region's soft state (a new meta-service leader learns
    /// it again from heartbeats).
    pub fn reset_soft(&mut self) {
        let ids: Vec<RegionId> = self.regions.keys().copied().collect();
        for id in ids {
            if let Some(info) = self.remove(id) {
                self.insert(RegionInfo::new(info.region));
            }
        }
    }

    fn insert(&mut self, info: RegionInfo) {
        self.account(&info, true);
        self.by_end.insert(EndKey::of(&info.region.end_key), info.region.id);
        self.regions.insert(info.region.id, info);
    }

    /// Removes region `id` and returns it.
    pub fn remove(&mut self, id: RegionId) -> Option<RegionInfo> {
        let info = self.regions.remove(&id)?;
        let end = EndKey::of(&info.region.end_key);
        if self.by_end.get(&end) == Some(&id) {
            self.by_end.remove(&end);
        }
        self.account(&info, false);
        Some(info)
    }

    /// Adds (`add`) or takes back the contribution of `info` to the store
    /// totals.
    fn account(&mut self, info: &RegionInfo, add: bool) {
        let f = |a: &mut u64, b: u64| *a = if add { a.saturating_add(b) } else { a.saturating_sub(b) };
        if info.last_heartbeat_ms.is_some() {
            self.reported = if add { self.reported + 1 } else { self.reported.saturating_sub(1) };
        }
        for p in &info.region.peers {
            let s = self.stores.entry(p.store_id).or_default();
            f(&mut s.regions, 1);
            f(&mut s.region_size, info.approximate_size);
        }
        if let Some(leader) = info.leader {
            let s = self.stores.entry(leader.store_id).or_default();
            f(&mut s.leaders, 1);
            s.leader_load.combine(&info.load, add);
        }
    }
}

#[cfg(test)]
mod tests {
    use ekv_proto::RegionEpoch;

    use super::*;

    fn region(id: u64, start: &str, end: &str, version: u64) -> Region {
        Region {
            id: RegionId(id),
            start_key: start.as_bytes().to_vec(),
            end_key: end.as_bytes().to_vec(),
            epoch: RegionEpoch { conf_ver: 1, version },
            peers: vec![PeerMeta { id: PeerId(id * 10), store_id: StoreId(1) }],
        }
    }

    fn ids(t: &RegionTable) -> Vec<u64> {
        t.scan(b"", b"", 0).iter().map(|i| i.region.id.get()).collect()
    }

    #[test]
    fn store_totals_follow_updates_and_removals() {
        let mut t = RegionTable::default();
        t.update(region(1, "", "m", 1));
        t.update(region(2, "m", "", 1));
        t.update_soft(RegionId(1), |i| {
            i.leader = Some(i.region.peers[0]);
            i.approximate_size = 100;
            i.load.write_bytes = 7;
        });
        let s = t.store_load(StoreId(1));
        assert_eq!((s.regions, s.leaders, s.region_size, s.leader_load.write_bytes), (2, 1, 100, 7));
        // A split of region 1 keeps its soft state on the kept id.
        t.update(region(1, "", "f", 2));
        assert_eq!(t.store_load(StoreId(1)).leaders, 1);
        t.update(region(3, "f", "m", 2));
        assert_eq!(ids(&t), vec![1, 3, 2]);
        assert_eq!(t.ending_at(b"f").map(|i| i.region.id), Some(RegionId(1)));
        assert_eq!(t.ending_at(b"m").map(|i| i.region.id), Some(RegionId(3)));
        assert_eq!(t.ending_at(b"").map(|i| i.region.id), Some(RegionId(2)));
        assert_eq!(t.ending_at(b"g"), None);
        t.remove(RegionId(1));
        let s = t.store_load(StoreId(1));
        assert_eq!((s.regions, s.leaders, s.region_size, s.leader_load.write_bytes), (2, 0, 0, 0));
        t.reset_soft();
        assert_eq!(t.store_load(StoreId(1)).regions, 2);
    }
}
