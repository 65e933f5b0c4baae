//! What flows into and out of a shard: client commands with their
//! callbacks, and raft traffic between stores.

use bytes::Bytes;
use ekv_proto::{PeerId, PeerMeta, Region, RegionEpoch, RegionId, ShardId, StoreId};

use crate::Result;

/// Where a peer lives: a store and one of its shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardAddr {
    /// The store.
    pub store: StoreId,
    /// The shard inside it.
    pub shard: ShardId,
}

/// A client's request to one region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The region the client routed the request to.
    pub region_id: RegionId,
    /// The epoch the client knows; a stale one is refused.
    pub epoch: RegionEpoch,
    /// What to do.
    pub cmd: Command,
}

/// One mutation of a write batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Sets `key` to `value`.
    Put {
        /// Column family.
        cf: String,
        /// Key.
        key: Bytes,
        /// Value.
        value: Bytes,
    },
    /// Removes `key`.
    Delete {
        /// Column family.
        cf: String,
        /// Key.
        key: Bytes,
    },
    /// Removes every key in `[start, end)`; an empty `end` means the region's end.
    DeleteRange {
        /// Column family.
        cf: String,
        /// First key removed.
        start: Bytes,
        /// End (exclusive).
        end: Bytes,
    },
}

/// A range read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Column family.
    pub cf: String,
    /// First key (inclusive); clipped to the region.
    pub start: Bytes,
    /// End (exclusive), empty for the region's end; clipped to the region.
    pub end: Bytes,
    /// Most pairs returned.
    pub limit: usize,
    /// Newest-first when true (from just below `end` down to `start`).
    pub reverse: bool,
    /// Leave values out.
    pub key_only: bool,
}

/// A change of one replica, for [`Command::ChangePeers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerChange {
    /// Adds a voter, or promotes a learner to voter.
    AddVoter(PeerMeta),
    /// Adds a learner, or demotes a voter to learner.
    AddLearner(PeerMeta),
    /// Removes a replica.
    Remove(PeerMeta),
}

/// What a request does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// An atomic batch of mutations.
    Write(Vec<WriteOp>),
    /// Compare-and-swap: when the value of `key` equals `expected` (`None`:
    /// absent), set it to `new` (`None`: delete).
    Cas {
        /// Column family.
        cf: String,
        /// Key.
        key: Bytes,
        /// Required current value.
        expected: Option<Bytes>,
        /// New value.
        new: Option<Bytes>,
    },
    /// Reads one key.
    Get {
        /// Column family.
        cf: String,
        /// Key.
        key: Bytes,
    },
    /// Reads several keys at one point in time.
    BatchGet {
        /// Column family.
        cf: String,
        /// Keys.
        keys: Vec<Bytes>,
    },
    /// Reads a range.
    Scan(Scan),
    /// Hands leadership to `to`.
    TransferLeader {
        /// The new leader.
        to: PeerId,
    },
    /// Changes the replica set: one change directly, several through joint
    /// consensus.
    ChangePeers(Vec<PeerChange>),
    /// Splits the region at each key (strictly increasing, inside the region).
    Split {
        /// Split keys.
        keys: Vec<Bytes>,
    },
}

impl Command {
    /// True for commands served from applied state without a log entry.
    pub fn is_read(&self) -> bool {
        matches!(self, Command::Get { .. } | Command::BatchGet { .. } | Command::Scan(_))
    }
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// A write was applied.
    Written,
    /// A compare-and-swap was applied; `previous` is the value it compared.
    Cas {
        /// Whether the swap took place.
        succeeded: bool,
        /// The value before.
        previous: Option<Bytes>,
    },
    /// The value of a `Get`.
    Value(Option<Bytes>),
    /// The values of a `BatchGet`, in request order.
    Values(Vec<Option<Bytes>>),
    /// The pairs of a `Scan` (values empty for key-only scans).
    Pairs(Vec<(Bytes, Bytes)>),
    /// An admin command was accepted (transfer started, change applied).
    Done,
    /// A split was applied: the resulting regions, left to right.
    Split(Vec<Region>),
    /// A membership change was applied: the region with its new replicas.
    Changed(Region),
}

/// Called once with the outcome of a command.
pub type Callback = Box<dyn FnOnce(Result<Response>)>;

/// A message between two peers of one region.
#[derive(Debug, Clone)]
pub struct RaftEnvelope {
    /// The region.
    pub region_id: RegionId,
    /// Sender.
    pub from: PeerMeta,
    /// Sender's shard, so that answers go straight to it.
    pub from_shard: ShardId,
    /// Receiver.
    pub to: PeerMeta,
    /// Sender's region epoch.
    pub epoch: RegionEpoch,
    /// First key of the sender's region (empty: unbounded; meaningless
    /// from an uninitialized sender). With `end_key`, tells the receiver
    /// whether a region of its own still covers the range: then the
    /// message creates no peer.
    pub start_key: Bytes,
    /// End of the sender's region (exclusive; empty: unbounded).
    pub end_key: Bytes,
    /// The payload.
    pub msg: PeerMsg,
}

/// Payload of a [`RaftEnvelope`].
#[derive(Debug, Clone)]
pub enum PeerMsg {
    /// A raft-rs message.
    Raft(Box<raft::eraftpb::Message>),
    /// The leader of `term` stops ticking with its log at `last_index`;
    /// followers holding the same log may stop too.
    Hibernate {
        /// Leader's term.
        term: u64,
        /// Leader's last index.
        last_index: u64,
    },
    /// The receiver is no longer a member of the region (as of `epoch` of
    /// the envelope); it should destroy itself.
    Tombstone,
}

/// A piece of a snapshot's files; the last one of a snapshot carries the
/// raft message that installs it.
#[derive(Debug, Clone)]
pub struct SnapshotChunk {
    /// Envelope fields of the final raft message.
    pub region_id: RegionId,
    /// Sender.
    pub from: PeerMeta,
    /// Sender's shard.
    pub from_shard: ShardId,
    /// Receiver.
    pub to: PeerMeta,
    /// Snapshot index (with term, names the snapshot).
    pub index: u64,
    /// Snapshot term.
    pub term: u64,
    /// Which file of the snapshot.
    pub file: u32,
    /// Offset of `data` in it.
    pub offset: u64,
    /// Bytes.
    pub data: Bytes,
    /// On the last chunk: the `MsgSnapshot` (its data describes the files).
    pub msg: Option<Box<raft::eraftpb::Message>>,
    /// Sender's region epoch.
    pub epoch: RegionEpoch,
    /// First key of the sender's region, as in [`RaftEnvelope::start_key`].
    pub start_key: Bytes,
    /// End of the sender's region, as in [`RaftEnvelope::end_key`].
    pub end_key: Bytes,
}

/// Everything one store sends another.
#[derive(Debug, Clone)]
pub enum StoreMsg {
    /// Peer traffic.
    Peer(RaftEnvelope),
    /// Snapshot data.
    Snapshot(SnapshotChunk),
    /// "Still here": keeps the receiver's hibernating followers of regions
    /// led from `from` asleep.
    Probe {
        /// The sender.
        from: StoreId,
    },
}

impl StoreMsg {
    /// The region the message is for (`None` for store-level messages).
    pub fn region_id(&self) -> Option<RegionId> {
        match self {
            StoreMsg::Peer(e) => Some(e.region_id),
            StoreMsg::Snapshot(c) => Some(c.region_id),
            StoreMsg::Probe { .. } => None,
        }
    }
}
