//! The state of a peer kept in the LSM, written in the same batch as the
//! data it describes, so that a flush makes both durable at once.
//!
//! ```text
//! key   = "p" | region id u64 BE                      (in the META_CF family)
//! value = version u8 (1) | crc32c u32 LE of the rest | tombstone u8 | peer uvarint
//!         | region (ekv_proto::Region::encode_into)
//!         | applied_index | applied_term | truncated_index | truncated_term    (uvarints)
//!         | voters | learners | voters_outgoing | learners_next   (n uvarint | id uvarint * n)
//!         | auto_leave u8
//! ```

use bytes::BufMut;
use ekv_proto::codec::{framed, put_uvarint, unframe, DecodeError, DecodeResult, Reader};
use ekv_proto::{PeerId, Region, RegionId, MAX_PEERS};
use raft::eraftpb::ConfState;

const VERSION: u8 = 1;

/// Index of the first entry of a region created by a split; its log starts
/// empty with this index and term as the truncated state, so that a peer
/// created by a split and one created by a leader's message agree.
pub const INIT_INDEX: u64 = 5;
/// Term of [`INIT_INDEX`].
pub const INIT_TERM: u64 = 5;

/// Where a region's log and apply stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyState {
    /// Last entry applied.
    pub applied_index: u64,
    /// Its term.
    pub applied_term: u64,
    /// Last entry dropped from the log (entries start after it).
    /// Invariant: truncated_index <= applied_index.
    pub truncated_index: u64,
    /// Its term.
    pub truncated_term: u64,
}

impl ApplyState {
    /// The state of a region created by bootstrap or a split: an empty log
    /// truncated at [`INIT_INDEX`].
    pub fn initial() -> Self {
        Self {
            applied_index: INIT_INDEX,
            applied_term: INIT_TERM,
            truncated_index: INIT_INDEX,
            truncated_term: INIT_TERM,
        }
    }
}

/// Everything a peer keeps in the LSM.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeerState {
    /// This peer.
    pub peer_id: PeerId,
    /// The region as of `apply.applied_index`.
    pub region: Region,
    /// The peer was removed; its data is gone and messages to it are dropped.
    pub tombstone: bool,
    /// Apply and log position.
    pub apply: ApplyState,
    /// Raft membership as of `apply.applied_index`.
    pub conf_state: ConfState,
}

/// The LSM key of `region`'s state.
pub fn state_key(region: RegionId) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'p';
    k[1..].copy_from_slice(&region.get().to_be_bytes());
    k
}

/// Parses a key made by [`state_key`].
pub fn parse_state_key(key: &[u8]) -> Option<RegionId> {
    if key.len() != 9 || key[0] != b'p' {
        return None;
    }
    Some(RegionId(u64::from_be_bytes(key[1..].try_into().ok()?)))
}

fn put_ids(buf: &mut Vec<u8>, ids: &[u64]) {
    put_uvarint(buf, ids.len() as u64);
    for id in ids {
        put_uvarint(buf, *id);
    }
}

fn ids(r: &mut Reader<'_>) -> DecodeResult<Vec<u64>> {
    let n = r.uvarint("conf state ids")?;
    if n > MAX_PEERS as u64 {
        return Err(DecodeError::TooLarge { what: "conf state ids", len: n, limit: MAX_PEERS as u64 });
    }
    (0..n).map(|_| r.uvarint("conf state id")).collect()
}

impl PeerState {
    /// Encodes the state with its version and checksum.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(128);
        body.put_u8(u8::from(self.tombstone));
        put_uvarint(&mut body, self.peer_id.get());
        self.region.encode_into(&mut body);
        let a = &self.apply;
        for v in [a.applied_index, a.applied_term, a.truncated_index, a.truncated_term] {
            put_uvarint(&mut body, v);
        }
        let cs = &self.conf_state;
        put_ids(&mut body, &cs.voters);
        put_ids(&mut body, &cs.learners);
        put_ids(&mut body, &cs.voters_outgoing);
        put_ids(&mut body, &cs.learners_next);
        body.put_u8(u8::from(cs.auto_leave));
        framed(VERSION, &body)
    }

    /// Decodes what [`PeerState::encode`] wrote.
    ///
    /// # Errors
    /// [`DecodeError`] on a wrong version, checksum or layout.
    pub fn decode(data: &[u8]) -> DecodeResult<Self> {
        let mut r = Reader::new(unframe(data, VERSION, "peer state")?);
        let tombstone = match r.u8("tombstone")? {
            0 => false,
            1 => true,
            v => return Err(DecodeError::Invalid { what: "tombstone", value: u64::from(v) }),
        };
        let peer_id = PeerId(r.uvarint("peer id")?);
        let region = Region::decode_from(&mut r)?;
        let apply = ApplyState {
            applied_index: r.uvarint("applied index")?,
            applied_term: r.uvarint("applied term")?,
            truncated_index: r.uvarint("truncated index")?,
            truncated_term: r.uvarint("truncated term")?,
        };
        let conf_state = ConfState {
            voters: ids(&mut r)?,
            learners: ids(&mut r)?,
            voters_outgoing: ids(&mut r)?,
            learners_next: ids(&mut r)?,
            auto_leave: r.u8("auto leave")? != 0,
            ..Default::default()
        };
        if !r.is_empty() || apply.truncated_index > apply.applied_index {
            return Err(DecodeError::Invalid { what: "peer state", value: apply.truncated_index });
        }
        Ok(Self { peer_id, region, tombstone, apply, conf_state })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekv_proto::{PeerMeta, RegionEpoch, StoreId};

    #[test]
    fn peer_state_round_trips_and_damage_is_detected() {
        let s = PeerState {
            peer_id: PeerId(4),
            region: Region {
                id: RegionId(2),
                start_key: b"a".to_vec(),
                end_key: b"z".to_vec(),
                epoch: RegionEpoch { conf_ver: 1, version: 2 },
                peers: vec![PeerMeta { id: PeerId(4), store_id: StoreId(1) }],
            },
            tombstone: false,
            apply: ApplyState { applied_index: 9, applied_term: 2, truncated_index: 5, truncated_term: 1 },
            conf_state: ConfState { voters: vec![4], learners: vec![7], ..Default::default() },
        };
        let data = s.encode();
        assert_eq!(PeerState::decode(&data).unwrap(), s);
        for i in 0..data.len() {
            let mut bad = data.clone();
            bad[i] ^= 0x10;
            assert!(PeerState::decode(&bad).is_err(), "flip at {i}");
        }
        assert_eq!(parse_state_key(&state_key(RegionId(77))), Some(RegionId(77)));
    }
}
