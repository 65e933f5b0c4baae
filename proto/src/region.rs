//! Regions and their epochs.

use crate::{PeerId, RegionId, StoreId};

/// The version of a region's shape.
///
/// `conf_ver` grows with every membership change, `version` with every split
/// or merge. A request carries the epoch it was routed with; a peer refuses
/// it when either number is behind its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RegionEpoch {
    /// Bumped by every conf change.
    pub conf_ver: u64,
    /// Bumped by every split or merge.
    pub version: u64,
}

impl RegionEpoch {
    /// True when `self` is older than `current` in either dimension.
    pub fn is_stale(&self, current: &RegionEpoch) -> bool {
        self.conf_ver < current.conf_ver || self.version < current.version
    }
}

/// Where one replica of a region lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerMeta {
    /// The peer (raft node) id.
    pub id: PeerId,
    /// The store holding it.
    pub store_id: StoreId,
}

/// A key range `[start_key, end_key)` and its replicas. An empty `start_key`
/// is minus infinity, an empty `end_key` plus infinity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Region {
    /// The region id.
    pub id: RegionId,
    /// Inclusive start; empty means unbounded.
    pub start_key: Vec<u8>,
    /// Exclusive end; empty means unbounded.
    pub end_key: Vec<u8>,
    /// Shape version.
    pub epoch: RegionEpoch,
    /// Replicas.
    pub peers: Vec<PeerMeta>,
}

impl Region {
    /// True when `key` lies in `[start_key, end_key)`.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start_key.as_slice() && (self.end_key.is_empty() || key < self.end_key.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_respects_unbounded_ends() {
        let mut r = Region { id: RegionId(1), ..Default::default() };
        assert!(r.contains(b""));
        assert!(r.contains(b"zzz"));
        r.start_key = b"b".to_vec();
        r.end_key = b"d".to_vec();
        assert!(!r.contains(b"a"));
        assert!(r.contains(b"b"));
        assert!(r.contains(b"c\xff"));
        assert!(!r.contains(b"d"));
    }

    #[test]
    fn stale_epoch_in_either_dimension() {
        let cur = RegionEpoch { conf_ver: 3, version: 5 };
        assert!(RegionEpoch { conf_ver: 2, version: 5 }.is_stale(&cur));
        assert!(RegionEpoch { conf_ver: 3, version: 4 }.is_stale(&cur));
        assert!(!cur.is_stale(&cur));
        assert!(!RegionEpoch { conf_ver: 4, version: 6 }.is_stale(&cur));
    }
}
