//! Which shard of the store owns which region, and the ranges of the
//! store's initialized regions. Consulted only off the hot path: when a
//! frame reaches a shard that does not own its region, when peers are
//! created, split or destroyed. A correctly addressed frame never touches
//! it.
//!
//! It is also the one place that decides whether a raft message may create
//! a peer ([`StoreRouter::place_new`]): every shard asks it under the same
//! lock, so that two shards never both create a region, and a message for a
//! region whose range a local region still covers (on any shard) creates
//! nothing: that region's split will.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use ekv_proto::{PeerId, Region, RegionEpoch, RegionId, ShardId};

#[derive(Debug, Default)]
struct Table {
    owner: HashMap<RegionId, ShardId>,
    load: Vec<usize>,
    /// Initialized regions by (start key, id): their end keys. The
    /// initialized regions of one store do not overlap (a split shrinks
    /// the parent before its new regions join).
    ranges: BTreeMap<(Vec<u8>, RegionId), Vec<u8>>,
    /// The start key each region of `ranges` is listed under.
    starts: HashMap<RegionId, Vec<u8>>,
    /// Regions whose peer was destroyed here: that peer's id and the
    /// region's `conf_ver` then.
    tombstones: HashMap<RegionId, (PeerId, u64)>,
}

impl Table {
    fn remove_range(&mut self, region: RegionId) {
        if let Some(start) = self.starts.remove(&region) {
            self.ranges.remove(&(start, region));
        }
    }

    /// An initialized region other than `except` sharing a key with `[start, end)`.
    fn overlapping(&self, except: RegionId, start: &[u8], end: &[u8]) -> Option<RegionId> {
        let below_end = if end.is_empty() {
            self.ranges.range::<(Vec<u8>, RegionId), _>(..)
        } else {
            self.ranges.range(..(end.to_vec(), RegionId(0)))
        };
        // Walking down from the end: the first region ending at or before
        // `start` is the last candidate (regions do not overlap each other).
        for ((_, id), e) in below_end.rev() {
            if !e.is_empty() && e.as_slice() <= start {
                break;
            }
            if *id != except {
                return Some(*id);
            }
        }
        None
    }

    fn place(&mut self, region: RegionId) -> ShardId {
        let (i, _) = self.load.iter().enumerate().min_by_key(|(i, l)| (**l, *i)).expect("at least one shard");
        let s = ShardId(i as u64);
        self.owner.insert(region, s);
        self.load[i] += 1;
        s
    }
}

/// Why [`StoreRouter::place_new`] refused to create a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A local initialized region covers part of the message's range: the
    /// message is ahead of a split this store has yet to apply (that split
    /// creates the peer), or the local region is stale and is removed first.
    Overlaps(RegionId),
    /// The message is for a peer destroyed here, or older than it.
    Tombstone,
}

/// The store's region → shard table, shared by its shards.
#[derive(Debug, Clone)]
pub struct StoreRouter {
    inner: Arc<Mutex<Table>>,
}

impl StoreRouter {
    /// A table for `shards` shards.
    pub fn new(shards: usize) -> Self {
        Self { inner: Arc::new(Mutex::new(Table { load: vec![0; shards.max(1)], ..Table::default() })) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Table) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The shard owning `region`.
    pub fn owner(&self, region: RegionId) -> Option<ShardId> {
        self.with(|t| t.owner.get(&region).copied())
    }

    /// Records that `shard` owns `region`.
    pub fn register(&self, region: RegionId, shard: ShardId) {
        self.with(|t| {
            if let Some(old) = t.owner.insert(region, shard) {
                t.load[old.get() as usize] -= 1;
            }
            t.load[shard.get() as usize] += 1;
            t.tombstones.remove(&region);
        })
    }

    /// Records the range of an initialized region (again, after a split or
    /// a snapshot changed it).
    pub fn set_range(&self, region: &Region) {
        self.with(|t| {
            t.remove_range(region.id);
            t.ranges.insert((region.start_key.clone(), region.id), region.end_key.clone());
            t.starts.insert(region.id, region.start_key.clone());
        })
    }

    /// Forgets `region` (its owner and its range).
    pub fn unregister(&self, region: RegionId) {
        self.with(|t| {
            if let Some(old) = t.owner.remove(&region) {
                t.load[old.get() as usize] -= 1;
            }
            t.remove_range(region);
        })
    }

    /// Forgets `region`, whose peer `peer` was destroyed at `epoch`: no
    /// message for that peer or an older one creates a peer again.
    pub fn tombstone(&self, region: RegionId, peer: PeerId, epoch: RegionEpoch) {
        self.with(|t| {
            if let Some(old) = t.owner.remove(&region) {
                t.load[old.get() as usize] -= 1;
            }
            t.remove_range(region);
            let (p, c) = t.tombstones.entry(region).or_insert((peer, epoch.conf_ver));
            *p = (*p).max(peer);
            *c = (*c).max(epoch.conf_ver);
        })
    }

    /// An initialized region of the store, other than `except`, sharing a
    /// key with `[start, end)` (empty end: unbounded).
    pub fn overlapping(&self, except: RegionId, start: &[u8], end: &[u8]) -> Option<RegionId> {
        self.with(|t| t.overlapping(except, start, end))
    }

    /// Decides where a raft message for `region`, addressed to peer `to`
    /// and sent by a peer whose region is `epoch` over `[start, end)`, is
    /// handled: by its owner if it has one; else, unless a tombstone or an
    /// overlapping local region forbids it, by the least-loaded shard
    /// (lowest index on ties), which becomes its owner and creates the peer.
    ///
    /// # Errors
    /// The [`Refusal`] when no peer may be created.
    pub fn place_new(
        &self,
        region: RegionId,
        to: PeerId,
        epoch: RegionEpoch,
        start: &[u8],
        end: &[u8],
    ) -> Result<ShardId, Refusal> {
        self.with(|t| {
            if let Some(s) = t.owner.get(&region) {
                return Ok(*s);
            }
            if let Some((peer, conf_ver)) = t.tombstones.get(&region) {
                if to <= *peer || epoch.conf_ver < *conf_ver {
                    return Err(Refusal::Tombstone);
                }
            }
            if let Some(other) = t.overlapping(region, start, end) {
                return Err(Refusal::Overlaps(other));
            }
            Ok(t.place(region))
        })
    }

    /// Claims `region`, split off on `shard`, for that shard; fails with
    /// the owner when another shard already has it (a peer made there by
    /// the new region's messages, which the split then leaves in place).
    ///
    /// # Errors
    /// The other shard owning the region.
    pub fn claim_for_split(&self, region: RegionId, shard: ShardId) -> Result<(), ShardId> {
        self.with(|t| match t.owner.get(&region) {
            Some(s) if *s != shard => Err(*s),
            Some(_) => Ok(()),
            None => {
                t.owner.insert(region, shard);
                t.load[shard.get() as usize] += 1;
                t.tombstones.remove(&region);
                Ok(())
            }
        })
    }

    /// The owner of `region`, placing it on the least-loaded shard (lowest
    /// index on ties) when it has none.
    pub fn owner_or_place(&self, region: RegionId) -> ShardId {
        self.with(|t| match t.owner.get(&region) {
            Some(s) => *s,
            None => t.place(region),
        })
    }

    /// Regions per shard.
    pub fn loads(&self) -> Vec<usize> {
        self.with(|t| t.load.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_regions_go_to_the_least_loaded_shard() {
        let r = StoreRouter::new(2);
        r.register(RegionId(1), ShardId(0));
        assert_eq!(r.owner_or_place(RegionId(2)), ShardId(1));
        assert_eq!(r.owner_or_place(RegionId(3)), ShardId(0));
        assert_eq!(r.owner_or_place(RegionId(2)), ShardId(1));
        r.unregister(RegionId(1));
        assert_eq!(r.loads(), vec![1, 1]);
        assert_eq!(r.owner(RegionId(1)), None);
    }

    fn region(id: u64, start: &str, end: &str) -> Region {
        Region {
            id: RegionId(id),
            start_key: start.as_bytes().to_vec(),
            end_key: end.as_bytes().to_vec(),
            ..Region::default()
        }
    }

    const E: RegionEpoch = RegionEpoch { conf_ver: 1, version: 2 };

    #[test]
    fn a_message_overlapping_a_local_region_on_any_shard_creates_nothing() {
        let r = StoreRouter::new(2);
        r.register(RegionId(1), ShardId(0));
        r.set_range(&region(1, "", "m"));
        r.register(RegionId(2), ShardId(1));
        r.set_range(&region(2, "m", ""));
        // Inside region 2 (shard 1), across the boundary, inside region 1.
        assert_eq!(r.place_new(RegionId(7), PeerId(9), E, b"p", b"q"), Err(Refusal::Overlaps(RegionId(2))));
        assert_eq!(r.place_new(RegionId(7), PeerId(9), E, b"k", b"n"), Err(Refusal::Overlaps(RegionId(2))));
        assert_eq!(r.place_new(RegionId(7), PeerId(9), E, b"a", b"b"), Err(Refusal::Overlaps(RegionId(1))));
        assert_eq!(r.owner(RegionId(7)), None);
        // Region 2 split at "t" on shard 1: the parent shrinks, the new
        // region is claimed and listed.
        r.set_range(&region(2, "m", "t"));
        r.claim_for_split(RegionId(3), ShardId(1)).unwrap();
        r.set_range(&region(3, "t", ""));
        assert_eq!(r.place_new(RegionId(3), PeerId(9), E, b"t", b""), Ok(ShardId(1)));
        assert_eq!(r.overlapping(RegionId(3), b"t", b""), None);
        assert_eq!(r.overlapping(RegionId(0), b"s", b"u"), Some(RegionId(3)));
        // A region no local one covers is placed on the least-loaded shard.
        r.unregister(RegionId(1));
        assert_eq!(r.place_new(RegionId(8), PeerId(9), E, b"a", b"c"), Ok(ShardId(0)));
        assert_eq!(r.place_new(RegionId(8), PeerId(9), E, b"a", b"c"), Ok(ShardId(0)));
        assert_eq!(r.loads(), vec![1, 2]);
    }

    #[test]
    fn a_split_leaves_a_region_another_shard_made_first_to_it() {
        let r = StoreRouter::new(2);
        assert_eq!(r.place_new(RegionId(5), PeerId(9), E, b"m", b""), Ok(ShardId(0)));
        assert_eq!(r.claim_for_split(RegionId(5), ShardId(1)), Err(ShardId(0)));
        assert_eq!(r.claim_for_split(RegionId(5), ShardId(0)), Ok(()));
        assert_eq!(r.loads(), vec![1, 0]);
    }

    #[test]
    fn tombstones_refuse_the_old_peer_and_older_epochs_store_wide() {
        let r = StoreRouter::new(2);
        r.register(RegionId(4), ShardId(1));
        r.set_range(&region(4, "a", "b"));
        r.tombstone(RegionId(4), PeerId(10), RegionEpoch { conf_ver: 3, version: 1 });
        assert_eq!(r.owner(RegionId(4)), None);
        assert_eq!(r.overlapping(RegionId(0), b"", b""), None);
        let old_epoch = RegionEpoch { conf_ver: 2, version: 1 };
        let new_epoch = RegionEpoch { conf_ver: 4, version: 1 };
        assert_eq!(r.place_new(RegionId(4), PeerId(10), new_epoch, b"a", b"b"), Err(Refusal::Tombstone));
        assert_eq!(r.place_new(RegionId(4), PeerId(11), old_epoch, b"a", b"b"), Err(Refusal::Tombstone));
        assert_eq!(r.place_new(RegionId(4), PeerId(11), new_epoch, b"a", b"b"), Ok(ShardId(0)));
    }
}
