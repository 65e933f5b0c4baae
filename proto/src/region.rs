//! Regions and their epochs.

use bytes::BufMut;

use crate::codec::{put_len_prefixed, put_uvarint, DecodeError, DecodeResult, Reader};
use crate::{PeerId, RegionId, StoreId};

/// Longest key a region boundary may have.
pub const MAX_KEY_LEN: usize = 64 << 10;
/// Most replicas a region may list.
pub const MAX_PEERS: usize = 64;

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

    /// The replica on `store`, if any.
    pub fn peer_on(&self, store: StoreId) -> Option<PeerMeta> {
        self.peers.iter().copied().find(|p| p.store_id == store)
    }

    /// The replica with id `id`, if any.
    pub fn peer(&self, id: PeerId) -> Option<PeerMeta> {
        self.peers.iter().copied().find(|p| p.id == id)
    }

    /// Appends the region:
    /// `id | start len-prefixed | end len-prefixed | conf_ver | version | n | (peer id | store id)*`,
    /// every integer a uvarint.
    pub fn encode_into(&self, buf: &mut impl BufMut) {
        put_uvarint(buf, self.id.get());
        put_len_prefixed(buf, &self.start_key);
        put_len_prefixed(buf, &self.end_key);
        put_uvarint(buf, self.epoch.conf_ver);
        put_uvarint(buf, self.epoch.version);
        put_uvarint(buf, self.peers.len() as u64);
        for p in &self.peers {
            put_uvarint(buf, p.id.get());
            put_uvarint(buf, p.store_id.get());
        }
    }

    /// Decodes what [`Region::encode_into`] wrote, bounding keys by
    /// [`MAX_KEY_LEN`] and replicas by [`MAX_PEERS`].
    ///
    /// # Errors
    /// [`DecodeError`] for truncated or out-of-bounds input.
    pub fn decode_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        let id = RegionId(r.uvarint("region id")?);
        let start_key = r.len_prefixed("region start", MAX_KEY_LEN)?.to_vec();
        let end_key = r.len_prefixed("region end", MAX_KEY_LEN)?.to_vec();
        let epoch = RegionEpoch { conf_ver: r.uvarint("conf_ver")?, version: r.uvarint("version")? };
        let n = r.uvarint("peer count")?;
        if n > MAX_PEERS as u64 {
            return Err(DecodeError::TooLarge { what: "peer count", len: n, limit: MAX_PEERS as u64 });
        }
        let mut peers = Vec::with_capacity(n as usize);
        for _ in 0..n {
            peers.push(PeerMeta {
                id: PeerId(r.uvarint("peer id")?),
                store_id: StoreId(r.uvarint("store id")?),
            });
        }
        Ok(Self { id, start_key, end_key, epoch, peers })
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
    fn region_round_trips_and_rejects_truncation() {
        let r = Region {
            id: RegionId(9),
            start_key: b"a".to_vec(),
            end_key: vec![],
            epoch: RegionEpoch { conf_ver: 3, version: 300 },
            peers: vec![
                PeerMeta { id: PeerId(1), store_id: StoreId(1) },
                PeerMeta { id: PeerId(2), store_id: StoreId(7) },
            ],
        };
        let mut buf = Vec::new();
        r.encode_into(&mut buf);
        assert_eq!(Region::decode_from(&mut Reader::new(&buf)).unwrap(), r);
        for cut in 0..buf.len() {
            assert!(Region::decode_from(&mut Reader::new(&buf[..cut])).is_err(), "cut at {cut}");
        }
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
