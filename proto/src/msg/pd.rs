//! Meta-service messages: routing (regions and their leaders), stores, id
//! allocation, heartbeats with the operators the scheduler answers, split
//! id allocation and bootstrap. The meta-service issue gives them behaviour;
//! here they are plain data. Region lists are bounded by
//! [`FrameLimits::max_scan_limit`], other lists by [`FrameLimits::max_batch`].

use bytes::BufMut;

use super::admin::PeerChange;
use super::fields::{
    get_bool, get_epoch, get_key, get_list, get_opt_peer, get_peer, get_region, get_str, get_u32, get_u64,
    get_value, put_bool, put_bytes, put_epoch, put_list, put_opt_peer, put_peer, put_region, put_str,
    put_u64,
};
use super::{empty_message, Message, MsgType, MAX_TEXT_LEN};
use crate::codec::{DecodeError, DecodeResult, Reader};
use crate::frame::FrameLimits;
use crate::{PeerId, PeerMeta, Region, RegionEpoch, RegionId, StoreId, MAX_PEERS};

/// A region and its leader as the meta service last heard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionRoute {
    /// The region.
    pub region: Region,
    /// Its leader, if known.
    pub leader: Option<PeerMeta>,
    /// The shard of the leader's store that holds the leader, so that a
    /// client reaches the owning core directly (0 when unknown: the store
    /// forwards).
    pub leader_shard: u32,
}

impl RegionRoute {
    fn put(buf: &mut impl BufMut, v: &RegionRoute) {
        put_region(buf, &v.region);
        put_opt_peer(buf, v.leader.as_ref());
        put_u64(buf, u64::from(v.leader_shard));
    }

    fn get(r: &mut Reader<'_>) -> DecodeResult<RegionRoute> {
        Ok(RegionRoute {
            region: get_region(r)?,
            leader: get_opt_peer(r, "leader")?,
            leader_shard: get_u32(r, "leader shard")?,
        })
    }
}

/// Finds the region holding `key`, or with `before` the region holding
/// the keys just below `key` (the one whose range ends at or past it and
/// starts before it; with an empty `key`, the last region), which a
/// reverse scan walks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GetRegionRequest {
    /// The key.
    pub key: Vec<u8>,
    /// Look below `key` instead of at it.
    pub before: bool,
}

impl Message for GetRegionRequest {
    const TYPE: MsgType = MsgType::GetRegionRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_bytes(buf, &self.key);
        put_bool(buf, self.before);
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { key: get_key(r, l, "key")?, before: get_bool(r, "before")? })
    }
}

/// Answers [`GetRegionRequest`] and [`GetRegionByIdRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GetRegionResponse {
    /// The region and leader; `None` when no region matches.
    pub route: Option<RegionRoute>,
}

impl Message for GetRegionResponse {
    const TYPE: MsgType = MsgType::GetRegionResponse;

    fn encode_into(&self, buf: &mut impl BufMut) {
        match &self.route {
            None => buf.put_u8(0),
            Some(route) => {
                buf.put_u8(1);
                RegionRoute::put(buf, route);
            }
        }
    }

    fn decode_from(r: &mut Reader<'_>, _l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { route: if get_bool(r, "route")? { Some(RegionRoute::get(r)?) } else { None } })
    }
}

/// Finds a region by id; answered by [`GetRegionResponse`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GetRegionByIdRequest {
    /// The region id.
    pub region_id: RegionId,
}

impl Message for GetRegionByIdRequest {
    const TYPE: MsgType = MsgType::GetRegionByIdRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_u64(buf, self.region_id.get());
    }

    fn decode_from(r: &mut Reader<'_>, _l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { region_id: RegionId(get_u64(r, "region id")?) })
    }
}

/// Lists up to `limit` regions overlapping `[start, end)`, in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanRegionsRequest {
    /// Inclusive start.
    pub start: Vec<u8>,
    /// Exclusive end; empty means unbounded.
    pub end: Vec<u8>,
    /// Most regions, at most `max_scan_limit`.
    pub limit: u32,
}

impl Message for ScanRegionsRequest {
    const TYPE: MsgType = MsgType::ScanRegionsRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_bytes(buf, &self.start);
        put_bytes(buf, &self.end);
        put_u64(buf, u64::from(self.limit));
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        let start = get_key(r, l, "scan start")?;
        let end = get_key(r, l, "scan end")?;
        let limit = get_u32(r, "scan limit")?;
        if limit > l.max_scan_limit {
            return Err(DecodeError::TooLarge {
                what: "scan limit",
                len: u64::from(limit),
                limit: u64::from(l.max_scan_limit),
            });
        }
        Ok(Self { start, end, limit })
    }
}

/// Answers [`ScanRegionsRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanRegionsResponse {
    /// Regions in key order.
    pub routes: Vec<RegionRoute>,
}

impl Message for ScanRegionsResponse {
    const TYPE: MsgType = MsgType::ScanRegionsResponse;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_list(buf, &self.routes, RegionRoute::put);
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { routes: get_list(r, "regions", l.max_scan_limit as usize, RegionRoute::get)? })
    }
}

empty_message!(
    /// Asks for the meta service's members and leader.
    GetMembersRequest
);

/// One replica of the meta service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetaMember {
    /// The store hosting it.
    pub store_id: StoreId,
    /// Where clients reach it (`host:port`).
    pub address: String,
}

impl MetaMember {
    fn put(buf: &mut impl BufMut, m: &MetaMember) {
        put_u64(buf, m.store_id.get());
        put_str(buf, &m.address);
    }

    fn get(r: &mut Reader<'_>) -> DecodeResult<MetaMember> {
        Ok(MetaMember {
            store_id: StoreId(get_u64(r, "store id")?),
            address: get_str(r, "address", MAX_TEXT_LEN)?,
        })
    }
}

/// Answers [`GetMembersRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GetMembersResponse {
    /// Members, at most [`MAX_PEERS`].
    pub members: Vec<MetaMember>,
    /// The leader's store, if known.
    pub leader: Option<StoreId>,
}

impl Message for GetMembersResponse {
    const TYPE: MsgType = MsgType::GetMembersResponse;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_list(buf, &self.members, MetaMember::put);
        put_opt_u64(buf, self.leader.map(StoreId::get));
    }

    fn decode_from(r: &mut Reader<'_>, _l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self {
            members: get_list(r, "members", MAX_PEERS, MetaMember::get)?,
            leader: get_opt_u64(r, "leader")?.map(StoreId),
        })
    }
}

fn put_opt_u64(buf: &mut impl BufMut, v: Option<u64>) {
    match v {
        None => buf.put_u8(0),
        Some(v) => {
            buf.put_u8(1);
            put_u64(buf, v);
        }
    }
}

fn get_opt_u64(r: &mut Reader<'_>, what: &'static str) -> DecodeResult<Option<u64>> {
    Ok(if get_bool(r, what)? { Some(get_u64(r, what)?) } else { None })
}

/// Allocates `count` consecutive ids (regions, peers, stores share one space).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocIdRequest {
    /// How many; the meta service bounds it and refuses 0.
    pub count: u32,
}

impl Message for AllocIdRequest {
    const TYPE: MsgType = MsgType::AllocIdRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_u64(buf, u64::from(self.count));
    }

    fn decode_from(r: &mut Reader<'_>, _l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { count: get_u32(r, "id count")? })
    }
}

/// Answers [`AllocIdRequest`]: ids `first..first + count`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocIdResponse {
    /// The first id.
    pub first: u64,
    /// How many.
    pub count: u32,
}

impl Message for AllocIdResponse {
    const TYPE: MsgType = MsgType::AllocIdResponse;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_u64(buf, self.first);
        put_u64(buf, u64::from(self.count));
    }

    fn decode_from(r: &mut Reader<'_>, _l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { first: get_u64(r, "first id")?, count: get_u32(r, "id count")? })
    }
}

/// A store's lifecycle state. Wire values: 0, 1, 2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StoreState {
    /// Serving.
    #[default]
    Up = 0,
    /// Being drained of regions.
    Offline = 1,
    /// Gone for good; its id is never reused.
    Tombstone = 2,
}

/// A store as the meta service knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreMeta {
    /// The store id.
    pub id: StoreId,
    /// Host and base port (`host:port`); shard `i` listens on port + i.
    pub address: String,
    /// Shards (cores) of the store.
    pub shard_count: u32,
    /// Lifecycle state.
    pub state: StoreState,
}

impl StoreMeta {
    fn put(buf: &mut impl BufMut, s: &StoreMeta) {
        put_u64(buf, s.id.get());
        put_str(buf, &s.address);
        put_u64(buf, u64::from(s.shard_count));
        buf.put_u8(s.state as u8);
    }

    fn get(r: &mut Reader<'_>) -> DecodeResult<StoreMeta> {
        Ok(StoreMeta {
            id: StoreId(get_u64(r, "store id")?),
            address: get_str(r, "address", MAX_TEXT_LEN)?,
            shard_count: get_u32(r, "shard count")?,
            state: match r.u8("store state")? {
                0 => StoreState::Up,
                1 => StoreState::Offline,
                2 => StoreState::Tombstone,
                v => return Err(DecodeError::Invalid { what: "store state", value: u64::from(v) }),
            },
        })
    }
}

/// Registers or updates a store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutStoreRequest {
    /// The store.
    pub store: StoreMeta,
}

impl Message for PutStoreRequest {
    const TYPE: MsgType = MsgType::PutStoreRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        StoreMeta::put(buf, &self.store);
    }

    fn decode_from(r: &mut Reader<'_>, _l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { store: StoreMeta::get(r)? })
    }
}

empty_message!(
    /// Answers [`PutStoreRequest`].
    PutStoreResponse
);

/// Looks a store up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GetStoreRequest {
    /// The store id.
    pub store_id: StoreId,
}

impl Message for GetStoreRequest {
    const TYPE: MsgType = MsgType::GetStoreRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_u64(buf, self.store_id.get());
    }

    fn decode_from(r: &mut Reader<'_>, _l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { store_id: StoreId(get_u64(r, "store id")?) })
    }
}

/// Answers [`GetStoreRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GetStoreResponse {
    /// The store, `None` if unknown.
    pub store: Option<StoreMeta>,
}

impl Message for GetStoreResponse {
    const TYPE: MsgType = MsgType::GetStoreResponse;

    fn encode_into(&self, buf: &mut impl BufMut) {
        match &self.store {
            None => buf.put_u8(0),
            Some(s) => {
                buf.put_u8(1);
                StoreMeta::put(buf, s);
            }
        }
    }

    fn decode_from(r: &mut Reader<'_>, _l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { store: if get_bool(r, "store")? { Some(StoreMeta::get(r)?) } else { None } })
    }
}

/// Lists every store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GetAllStoresRequest {
    /// Leave tombstoned stores out.
    pub exclude_tombstones: bool,
}

impl Message for GetAllStoresRequest {
    const TYPE: MsgType = MsgType::GetAllStoresRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_bool(buf, self.exclude_tombstones);
    }

    fn decode_from(r: &mut Reader<'_>, _l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { exclude_tombstones: get_bool(r, "exclude_tombstones")? })
    }
}

/// Answers [`GetAllStoresRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GetAllStoresResponse {
    /// Stores, at most `max_batch`.
    pub stores: Vec<StoreMeta>,
}

impl Message for GetAllStoresResponse {
    const TYPE: MsgType = MsgType::GetAllStoresResponse;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_list(buf, &self.stores, StoreMeta::put);
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { stores: get_list(r, "stores", l.max_batch, StoreMeta::get)? })
    }
}

/// Periodic store statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreHeartbeatRequest {
    /// The store.
    pub store_id: StoreId,
    /// Disk capacity in bytes.
    pub capacity: u64,
    /// Free disk bytes.
    pub available: u64,
    /// Bytes used by ekv.
    pub used_size: u64,
    /// Regions with a peer on the store.
    pub region_count: u64,
    /// Of those, regions the store leads.
    pub leader_count: u64,
    /// Snapshots being sent.
    pub sending_snap_count: u64,
    /// Snapshots being received.
    pub receiving_snap_count: u64,
    /// Bytes written since the last heartbeat.
    pub bytes_written: u64,
    /// Keys written since the last heartbeat.
    pub keys_written: u64,
    /// Bytes read since the last heartbeat.
    pub bytes_read: u64,
    /// Keys read since the last heartbeat.
    pub keys_read: u64,
    /// The store is shedding load (ServerBusy answers were sent).
    pub is_busy: bool,
}

impl Message for StoreHeartbeatRequest {
    const TYPE: MsgType = MsgType::StoreHeartbeatRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        for v in [
            self.store_id.get(),
            self.capacity,
            self.available,
            self.used_size,
            self.region_count,
            self.leader_count,
            self.sending_snap_count,
            self.receiving_snap_count,
            self.bytes_written,
            self.keys_written,
            self.bytes_read,
            self.keys_read,
        ] {
            put_u64(buf, v);
        }
        put_bool(buf, self.is_busy);
    }

    fn decode_from(r: &mut Reader<'_>, _l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self {
            store_id: StoreId(get_u64(r, "store id")?),
            capacity: get_u64(r, "capacity")?,
            available: get_u64(r, "available")?,
            used_size: get_u64(r, "used size")?,
            region_count: get_u64(r, "region count")?,
            leader_count: get_u64(r, "leader count")?,
            sending_snap_count: get_u64(r, "sending snapshots")?,
            receiving_snap_count: get_u64(r, "receiving snapshots")?,
            bytes_written: get_u64(r, "bytes written")?,
            keys_written: get_u64(r, "keys written")?,
            bytes_read: get_u64(r, "bytes read")?,
            keys_read: get_u64(r, "keys read")?,
            is_busy: get_bool(r, "is_busy")?,
        })
    }
}

empty_message!(
    /// Answers [`StoreHeartbeatRequest`].
    StoreHeartbeatResponse
);

/// A peer that has not answered its leader for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DownPeer {
    /// The peer.
    pub peer: PeerMeta,
    /// Seconds since it was last heard from.
    pub down_seconds: u64,
}

/// Periodic report of a region's leader.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionHeartbeatRequest {
    /// The region as the leader knows it.
    pub region: Region,
    /// The reporting leader.
    pub leader: Option<PeerMeta>,
    /// The shard of the leader's store that holds it.
    pub leader_shard: u32,
    /// Peers far behind in the log.
    pub pending_peers: Vec<PeerMeta>,
    /// Peers not heard from.
    pub down_peers: Vec<DownPeer>,
    /// Peers that are learners (the region's peer list carries no role).
    pub learners: Vec<PeerMeta>,
    /// Approximate bytes in the region.
    pub approximate_size: u64,
    /// Approximate keys in the region.
    pub approximate_keys: u64,
    /// Bytes written since the last heartbeat.
    pub bytes_written: u64,
    /// Keys written since the last heartbeat.
    pub keys_written: u64,
    /// Bytes read since the last heartbeat.
    pub bytes_read: u64,
    /// Keys read since the last heartbeat.
    pub keys_read: u64,
}

impl Message for RegionHeartbeatRequest {
    const TYPE: MsgType = MsgType::RegionHeartbeatRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_region(buf, &self.region);
        put_opt_peer(buf, self.leader.as_ref());
        put_u64(buf, u64::from(self.leader_shard));
        put_list(buf, &self.pending_peers, |b, p| put_peer(b, p));
        put_list(buf, &self.down_peers, |b, d| {
            put_peer(b, &d.peer);
            put_u64(b, d.down_seconds);
        });
        put_list(buf, &self.learners, |b, p| put_peer(b, p));
        for v in [
            self.approximate_size,
            self.approximate_keys,
            self.bytes_written,
            self.keys_written,
            self.bytes_read,
            self.keys_read,
        ] {
            put_u64(buf, v);
        }
    }

    fn decode_from(r: &mut Reader<'_>, _l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self {
            region: get_region(r)?,
            leader: get_opt_peer(r, "leader")?,
            leader_shard: get_u32(r, "leader shard")?,
            pending_peers: get_list(r, "pending peers", MAX_PEERS, get_peer)?,
            down_peers: get_list(r, "down peers", MAX_PEERS, |r| {
                Ok(DownPeer { peer: get_peer(r)?, down_seconds: get_u64(r, "down seconds")? })
            })?,
            learners: get_list(r, "learners", MAX_PEERS, get_peer)?,
            approximate_size: get_u64(r, "approximate size")?,
            approximate_keys: get_u64(r, "approximate keys")?,
            bytes_written: get_u64(r, "bytes written")?,
            keys_written: get_u64(r, "keys written")?,
            bytes_read: get_u64(r, "bytes read")?,
            keys_read: get_u64(r, "keys read")?,
        })
    }
}

/// What the scheduler asks a region's leader to do. Wire tags 0..=3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operator {
    /// Tag 0: change membership (one change, or several as a joint change).
    ChangePeer {
        /// The changes, at most [`MAX_PEERS`].
        changes: Vec<PeerChange>,
    },
    /// Tag 1: hand leadership to this peer.
    TransferLeader {
        /// The new leader.
        to: PeerMeta,
    },
    /// Tag 2: split; with no keys the leader picks the middle key.
    Split {
        /// Split keys, at most `max_batch`.
        keys: Vec<Vec<u8>>,
    },
}

impl Operator {
    fn put(buf: &mut impl BufMut, op: &Operator) {
        match op {
            Operator::ChangePeer { changes } => {
                buf.put_u8(0);
                put_list(buf, changes, PeerChange::put);
            }
            Operator::TransferLeader { to } => {
                buf.put_u8(1);
                put_peer(buf, to);
            }
            Operator::Split { keys } => {
                buf.put_u8(2);
                put_list(buf, keys, |b, k| put_bytes(b, k));
            }
        }
    }

    fn get(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Operator> {
        match r.u8("operator")? {
            0 => {
                Ok(Operator::ChangePeer { changes: get_list(r, "peer changes", MAX_PEERS, PeerChange::get)? })
            }
            1 => Ok(Operator::TransferLeader { to: get_peer(r)? }),
            2 => Ok(Operator::Split {
                keys: get_list(r, "split keys", l.max_batch, |r| get_key(r, l, "split key"))?,
            }),
            v => Err(DecodeError::Invalid { what: "operator", value: u64::from(v) }),
        }
    }
}

/// Answers [`RegionHeartbeatRequest`], possibly with an operator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionHeartbeatResponse {
    /// The region the operator is for.
    pub region_id: RegionId,
    /// The epoch the operator was computed against; the leader drops it when stale.
    pub epoch: RegionEpoch,
    /// The operator, if any.
    pub operator: Option<Operator>,
}

impl Message for RegionHeartbeatResponse {
    const TYPE: MsgType = MsgType::RegionHeartbeatResponse;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_u64(buf, self.region_id.get());
        put_epoch(buf, &self.epoch);
        match &self.operator {
            None => buf.put_u8(0),
            Some(op) => {
                buf.put_u8(1);
                Operator::put(buf, op);
            }
        }
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self {
            region_id: RegionId(get_u64(r, "region id")?),
            epoch: get_epoch(r)?,
            operator: if get_bool(r, "operator")? { Some(Operator::get(r, l)?) } else { None },
        })
    }
}

/// Asks for ids for `split_count` new regions split off `region`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AskBatchSplitRequest {
    /// The region to split.
    pub region: Region,
    /// New regions wanted, at most `max_batch`.
    pub split_count: u32,
}

impl Message for AskBatchSplitRequest {
    const TYPE: MsgType = MsgType::AskBatchSplitRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_region(buf, &self.region);
        put_u64(buf, u64::from(self.split_count));
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        let region = get_region(r)?;
        let split_count = get_u32(r, "split count")?;
        if split_count as usize > l.max_batch {
            return Err(DecodeError::TooLarge {
                what: "split count",
                len: u64::from(split_count),
                limit: l.max_batch as u64,
            });
        }
        Ok(Self { region, split_count })
    }
}

/// Ids for one new region: its id and one peer id per existing peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SplitIds {
    /// The new region's id.
    pub new_region_id: RegionId,
    /// Peer ids, in the order of the parent region's peers.
    pub new_peer_ids: Vec<PeerId>,
}

/// Answers [`AskBatchSplitRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AskBatchSplitResponse {
    /// One entry per new region.
    pub ids: Vec<SplitIds>,
}

impl Message for AskBatchSplitResponse {
    const TYPE: MsgType = MsgType::AskBatchSplitResponse;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_list(buf, &self.ids, |b, s| {
            put_u64(b, s.new_region_id.get());
            put_list(b, &s.new_peer_ids, |b, p| put_u64(b, p.get()));
        });
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self {
            ids: get_list(r, "split ids", l.max_batch, |r| {
                Ok(SplitIds {
                    new_region_id: RegionId(get_u64(r, "region id")?),
                    new_peer_ids: get_list(r, "peer ids", MAX_PEERS, |r| Ok(PeerId(get_u64(r, "peer id")?)))?,
                })
            })?,
        })
    }
}

/// Reports the regions a batch split produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReportBatchSplitRequest {
    /// The regions, in key order.
    pub regions: Vec<Region>,
}

impl Message for ReportBatchSplitRequest {
    const TYPE: MsgType = MsgType::ReportBatchSplitRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_list(buf, &self.regions, put_region);
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { regions: get_list(r, "regions", l.max_batch + 1, get_region)? })
    }
}

empty_message!(
    /// Answers [`ReportBatchSplitRequest`].
    ReportBatchSplitResponse
);

empty_message!(
    /// Asks whether the cluster has been bootstrapped.
    IsBootstrappedRequest
);

/// Answers [`IsBootstrappedRequest`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IsBootstrappedResponse {
    /// True once [`BootstrapRequest`] succeeded.
    pub bootstrapped: bool,
}

impl Message for IsBootstrappedResponse {
    const TYPE: MsgType = MsgType::IsBootstrappedResponse;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_bool(buf, self.bootstrapped);
    }

    fn decode_from(r: &mut Reader<'_>, _l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { bootstrapped: get_bool(r, "bootstrapped")? })
    }
}

/// Creates the cluster with its first store and region.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootstrapRequest {
    /// The first store.
    pub store: StoreMeta,
    /// The first region, covering every key.
    pub region: Region,
}

impl Message for BootstrapRequest {
    const TYPE: MsgType = MsgType::BootstrapRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        StoreMeta::put(buf, &self.store);
        put_region(buf, &self.region);
    }

    fn decode_from(r: &mut Reader<'_>, _l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { store: StoreMeta::get(r)?, region: get_region(r)? })
    }
}

empty_message!(
    /// Answers [`BootstrapRequest`].
    BootstrapResponse
);

/// Asks the meta service to decommission a store: it is marked offline,
/// its replicas are moved elsewhere, then it becomes a tombstone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeleteStoreRequest {
    /// The store.
    pub store_id: StoreId,
}

impl Message for DeleteStoreRequest {
    const TYPE: MsgType = MsgType::DeleteStoreRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_u64(buf, self.store_id.get());
    }

    fn decode_from(r: &mut Reader<'_>, _l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { store_id: StoreId(get_u64(r, "store id")?) })
    }
}

empty_message!(
    /// Answers [`DeleteStoreRequest`]: the store is offline (or already gone).
    DeleteStoreResponse
);

empty_message!(
    /// Asks for the meta service's status view: stores, regions, operators.
    GetStatusRequest
);

/// Answers [`GetStatusRequest`] with the status view as JSON (its shape is
/// the meta service's; `ekv ctl` prints it). At most `max_value` bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GetStatusResponse {
    /// The status view, JSON.
    pub json: Vec<u8>,
}

impl Message for GetStatusResponse {
    const TYPE: MsgType = MsgType::GetStatusResponse;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_bytes(buf, &self.json);
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { json: get_value(r, l, "status json")? })
    }
}
