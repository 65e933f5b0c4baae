//! Which region holds a key, and who leads it, as the client last learned.
//!
//! Regions are kept in a map ordered by their end key (an empty end key,
//! the unbounded one, sorts last), so the region of a key is the first one
//! whose end lies past the key. What the cache holds may be stale: the
//! servers refuse a stale route with a typed error and the client feeds the
//! answer back ([`RegionCache::insert`] of the regions an `EpochNotMatch`
//! carries, [`RegionCache::set_leader`] from `NotLeader`,
//! [`RegionCache::invalidate`] on `RegionNotFound`).

use std::collections::BTreeMap;
use std::ops::Bound;

use ekv_proto::{PeerMeta, Region, RegionId};

/// The end of a region as a map key: `Inf` (an empty end key) sorts last.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Key(Vec<u8>),
    Inf,
}

impl End {
    fn of(region: &Region) -> Self {
        if region.end_key.is_empty() {
            End::Inf
        } else {
            End::Key(region.end_key.clone())
        }
    }
}

/// A region and its leader as last learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedRegion {
    /// The region (range, epoch, replicas).
    pub region: Region,
    /// Its leader, if known.
    pub leader: Option<PeerMeta>,
    /// The leader's shard on its store (0 when unknown: the store forwards).
    pub leader_shard: u32,
}

/// Keys grouped by the region holding them (regions in key order), and
/// the keys no cached region holds.
pub type KeyGroups<'k> = (Vec<(RegionId, Vec<&'k [u8]>)>, Vec<&'k [u8]>);

/// The client's routing table.
#[derive(Debug, Default, Clone)]
pub struct RegionCache {
    by_end: BTreeMap<End, CachedRegion>,
}

fn overlaps(a: &Region, b: &Region) -> bool {
    (a.end_key.is_empty() || b.start_key < a.end_key) && (b.end_key.is_empty() || a.start_key < b.end_key)
}

fn newer(a: &Region, b: &Region) -> bool {
    (a.epoch.version, a.epoch.conf_ver) > (b.epoch.version, b.epoch.conf_ver)
}

impl RegionCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of regions cached.
    pub fn len(&self) -> usize {
        self.by_end.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.by_end.is_empty()
    }

    /// The cached region holding `key`, if any.
    pub fn locate(&self, key: &[u8]) -> Option<&CachedRegion> {
        let (_, c) = self.by_end.range((Bound::Excluded(End::Key(key.to_vec())), Bound::Unbounded)).next()?;
        c.region.contains(key).then_some(c)
    }

    /// The cached region holding the keys just below `key` (with an empty
    /// `key`, the last region), if any: where a reverse scan ending at
    /// `key` reads first.
    pub fn locate_before(&self, key: &[u8]) -> Option<&CachedRegion> {
        if key.is_empty() {
            return self.by_end.get(&End::Inf);
        }
        let (_, c) = self.by_end.range((Bound::Included(End::Key(key.to_vec())), Bound::Unbounded)).next()?;
        (c.region.start_key.as_slice() < key).then_some(c)
    }

    /// The cached region with this id, if any.
    pub fn get(&self, id: RegionId) -> Option<&CachedRegion> {
        self.by_end.values().find(|c| c.region.id == id)
    }

    /// Records `region` (and its leader): it replaces every cached region it
    /// overlaps that is not newer; if a newer overlapping one is cached,
    /// `region` is stale and ignored. Returns whether it was taken. With no
    /// `leader` given, a leader known for the same region is kept while it
    /// is still one of its replicas.
    pub fn insert(&mut self, region: Region, mut leader: Option<PeerMeta>, mut leader_shard: u32) -> bool {
        let overlapping: Vec<End> = self
            .by_end
            .range((Bound::Excluded(End::Key(region.start_key.clone())), Bound::Unbounded))
            .take_while(|(_, c)| overlaps(&c.region, &region))
            .map(|(k, _)| k.clone())
            .collect();
        if overlapping.iter().any(|k| newer(&self.by_end[k].region, &region)) {
            return false;
        }
        if leader.is_none() {
            if let Some(old) =
                self.get(region.id).filter(|c| c.leader.is_some_and(|l| region.peer(l.id).is_some()))
            {
                leader = old.leader;
                leader_shard = old.leader_shard;
            }
        }
        for k in overlapping {
            self.by_end.remove(&k);
        }
        // The same region may sit under an old end key that no longer
        // overlaps (it shrank by a split): drop it too.
        self.by_end.retain(|_, c| c.region.id != region.id);
        self.by_end.insert(End::of(&region), CachedRegion { region, leader, leader_shard });
        true
    }

    /// Records `leader` for region `id` (a `NotLeader` answer; its shard
    /// is unknown, so the store forwards until the meta service tells); a
    /// leader that is not a replica of the cached region drops the region
    /// instead (the cache is out of date).
    pub fn set_leader(&mut self, id: RegionId, leader: Option<PeerMeta>) {
        let Some(c) = self.by_end.values_mut().find(|c| c.region.id == id) else { return };
        match leader {
            Some(l) if c.region.peer(l.id).is_none() => self.invalidate(id),
            l => {
                if l != c.leader {
                    c.leader_shard = 0;
                }
                c.leader = l;
            }
        }
    }

    /// Forgets region `id` (a `RegionNotFound` answer, or a timeout).
    pub fn invalidate(&mut self, id: RegionId) {
        self.by_end.retain(|_, c| c.region.id != id);
    }

    /// Groups `keys` by the cached region holding them, in key order of the
    /// regions; keys no cached region holds come back apart.
    pub fn group_by_region<'k>(&self, keys: &'k [Vec<u8>]) -> KeyGroups<'k> {
        let mut groups: BTreeMap<End, (RegionId, Vec<&[u8]>)> = BTreeMap::new();
        let mut missing = Vec::new();
        for k in keys {
            match self.locate(k) {
                Some(c) => {
                    groups.entry(End::of(&c.region)).or_insert_with(|| (c.region.id, Vec::new())).1.push(k)
                }
                None => missing.push(k.as_slice()),
            }
        }
        (groups.into_values().collect(), missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekv_proto::{PeerId, RegionEpoch, StoreId};

    fn region(id: u64, start: &str, end: &str, version: u64) -> Region {
        Region {
            id: RegionId(id),
            start_key: start.as_bytes().to_vec(),
            end_key: end.as_bytes().to_vec(),
            epoch: RegionEpoch { conf_ver: 1, version },
            peers: (1..=3).map(|s| PeerMeta { id: PeerId(id * 10 + s), store_id: StoreId(s) }).collect(),
        }
    }

    fn ids(c: &RegionCache) -> Vec<u64> {
        c.by_end.values().map(|c| c.region.id.get()).collect()
    }

    #[test]
    fn locates_keys_across_bounded_and_unbounded_regions() {
        let mut c = RegionCache::new();
        assert!(c.insert(region(1, "", "g", 2), None, 0));
        assert!(c.insert(region(2, "m", "", 2), None, 0));
        assert_eq!(c.locate(b"").map(|r| r.region.id), Some(RegionId(1)));
        assert_eq!(c.locate(b"f\xff").map(|r| r.region.id), Some(RegionId(1)));
        // The gap [g, m) is not cached.
        assert_eq!(c.locate(b"g"), None);
        assert_eq!(c.locate(b"k"), None);
        assert_eq!(c.locate(b"m").map(|r| r.region.id), Some(RegionId(2)));
        assert_eq!(c.locate(b"zzz").map(|r| r.region.id), Some(RegionId(2)));
    }

    #[test]
    fn a_split_replaces_its_parent_and_a_stale_answer_is_ignored() {
        let mut c = RegionCache::new();
        c.insert(region(1, "", "", 1), None, 0);
        // After a split the parent keeps [, k) and region 2 takes [k, ).
        assert!(c.insert(region(1, "", "k", 2), None, 0));
        assert_eq!(ids(&c), vec![1]);
        assert!(c.insert(region(2, "k", "", 2), None, 0));
        assert_eq!(ids(&c), vec![1, 2]);
        // A late answer carrying the pre-split region is refused.
        assert!(!c.insert(region(1, "", "", 1), None, 0));
        assert_eq!(ids(&c), vec![1, 2]);
        assert_eq!(c.locate(b"z").map(|r| r.region.id), Some(RegionId(2)));
    }

    #[test]
    fn leaders_are_learned_and_unknown_leaders_drop_the_region() {
        let mut c = RegionCache::new();
        let r = region(1, "", "", 1);
        c.insert(r.clone(), None, 0);
        c.set_leader(RegionId(1), Some(r.peers[1]));
        assert_eq!(c.get(RegionId(1)).unwrap().leader, Some(r.peers[1]));
        c.set_leader(RegionId(1), Some(PeerMeta { id: PeerId(99), store_id: StoreId(9) }));
        assert!(c.is_empty());
        c.insert(r, None, 0);
        c.invalidate(RegionId(1));
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn the_region_below_a_key_is_found_for_reverse_scans() {
        let mut c = RegionCache::new();
        c.insert(region(1, "", "g", 1), None, 0);
        c.insert(region(2, "g", "p", 1), None, 0);
        let below = |c: &RegionCache, k: &str| c.locate_before(k.as_bytes()).map(|r| r.region.id.get());
        assert_eq!(below(&c, "g"), Some(1), "keys below g are in region 1");
        assert_eq!(below(&c, "h"), Some(2));
        assert_eq!(below(&c, "p"), Some(2));
        assert_eq!(below(&c, "a"), Some(1));
        assert_eq!(below(&c, ""), None, "the last region [p, ) is not cached");
        assert_eq!(below(&c, "q"), None);
        c.insert(region(3, "p", "", 1), None, 0);
        assert_eq!(below(&c, ""), Some(3));
        assert_eq!(below(&c, "q"), Some(3));
    }

    #[test]
    fn a_new_epoch_of_a_region_keeps_its_known_leader() {
        let mut c = RegionCache::new();
        let r = region(1, "", "", 1);
        c.insert(r.clone(), Some(r.peers[2]), 4);
        c.insert(region(1, "", "k", 2), None, 0);
        let cached = c.get(RegionId(1)).unwrap();
        assert_eq!((cached.leader, cached.leader_shard), (Some(r.peers[2]), 4));
    }

    #[test]
    fn keys_are_grouped_by_region_in_region_order() {
        let mut c = RegionCache::new();
        c.insert(region(1, "", "g", 1), None, 0);
        c.insert(region(2, "g", "p", 1), None, 0);
        let keys: Vec<Vec<u8>> = ["q", "a", "h", "b"].iter().map(|k| k.as_bytes().to_vec()).collect();
        let (groups, missing) = c.group_by_region(&keys);
        assert_eq!(groups, vec![(RegionId(1), vec![&b"a"[..], &b"b"[..]]), (RegionId(2), vec![&b"h"[..]])]);
        assert_eq!(missing, vec![&b"q"[..]]);
    }
}
