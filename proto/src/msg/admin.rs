//! Admin requests addressed to a region's leader: transfer leadership,
//! change membership, split. Each carries the epoch the sender saw.

use bytes::BufMut;

use super::fields::{
    get_epoch, get_key, get_list, get_peer, get_region, put_bytes, put_epoch, put_list, put_peer, put_region,
};
use super::{empty_message, Message, MsgType};
use crate::codec::{DecodeError, DecodeResult, Reader};
use crate::frame::FrameLimits;
use crate::{PeerMeta, Region, RegionEpoch, MAX_PEERS};

/// Hands leadership of the region to `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferLeaderRequest {
    /// The epoch the sender saw.
    pub epoch: RegionEpoch,
    /// The new leader.
    pub to: PeerMeta,
}

impl Message for TransferLeaderRequest {
    const TYPE: MsgType = MsgType::TransferLeaderRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_epoch(buf, &self.epoch);
        put_peer(buf, &self.to);
    }

    fn decode_from(r: &mut Reader<'_>, _l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { epoch: get_epoch(r)?, to: get_peer(r)? })
    }
}

empty_message!(
    /// Answers [`TransferLeaderRequest`]: the transfer was started (it may
    /// still fail; the sender watches the leader).
    TransferLeaderResponse
);

/// What a [`PeerChange`] does. Wire values: 0, 1, 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// Add the peer as a voter (or promote a learner).
    AddVoter = 0,
    /// Add the peer as a learner (or demote a voter).
    AddLearner = 1,
    /// Remove the peer.
    Remove = 2,
}

impl ChangeKind {
    fn decode_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        match r.u8("change kind")? {
            0 => Ok(ChangeKind::AddVoter),
            1 => Ok(ChangeKind::AddLearner),
            2 => Ok(ChangeKind::Remove),
            v => Err(DecodeError::Invalid { what: "change kind", value: u64::from(v) }),
        }
    }
}

/// One membership change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerChange {
    /// Add or remove.
    pub kind: ChangeKind,
    /// The peer concerned.
    pub peer: PeerMeta,
}

impl PeerChange {
    pub(crate) fn put(buf: &mut impl BufMut, c: &PeerChange) {
        buf.put_u8(c.kind as u8);
        put_peer(buf, &c.peer);
    }

    pub(crate) fn get(r: &mut Reader<'_>) -> DecodeResult<PeerChange> {
        Ok(PeerChange { kind: ChangeKind::decode_from(r)?, peer: get_peer(r)? })
    }
}

/// Changes membership: one change is a simple conf change, several are
/// applied as one joint change (enter joint, then leave).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangePeerRequest {
    /// The epoch the sender saw.
    pub epoch: RegionEpoch,
    /// The changes, at most [`MAX_PEERS`]; the leader refuses an empty list.
    pub changes: Vec<PeerChange>,
}

impl Message for ChangePeerRequest {
    const TYPE: MsgType = MsgType::ChangePeerRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_epoch(buf, &self.epoch);
        put_list(buf, &self.changes, PeerChange::put);
    }

    fn decode_from(r: &mut Reader<'_>, _l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { epoch: get_epoch(r)?, changes: get_list(r, "peer changes", MAX_PEERS, PeerChange::get)? })
    }
}

/// Answers [`ChangePeerRequest`] with the region after the change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangePeerResponse {
    /// The region with its new peers and conf_ver.
    pub region: Region,
}

impl Message for ChangePeerResponse {
    const TYPE: MsgType = MsgType::ChangePeerResponse;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_region(buf, &self.region);
    }

    fn decode_from(r: &mut Reader<'_>, _l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { region: get_region(r)? })
    }
}

/// Splits the region at each key (ascending, inside the region).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SplitRequest {
    /// The epoch the sender saw.
    pub epoch: RegionEpoch,
    /// Split keys, at most `max_batch`.
    pub split_keys: Vec<Vec<u8>>,
}

impl Message for SplitRequest {
    const TYPE: MsgType = MsgType::SplitRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_epoch(buf, &self.epoch);
        put_list(buf, &self.split_keys, |b, k| put_bytes(b, k));
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self {
            epoch: get_epoch(r)?,
            split_keys: get_list(r, "split keys", l.max_batch, |r| get_key(r, l, "split key"))?,
        })
    }
}

/// Answers [`SplitRequest`] with the regions after the split, in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SplitResponse {
    /// The resulting regions.
    pub regions: Vec<Region>,
}

impl Message for SplitResponse {
    const TYPE: MsgType = MsgType::SplitResponse;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_list(buf, &self.regions, put_region);
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        // A split of n keys yields n + 1 regions.
        Ok(Self { regions: get_list(r, "regions", l.max_batch + 1, get_region)? })
    }
}
