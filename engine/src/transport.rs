//! What the raftstore needs from the outside, as traits it owns: a
//! [`Transport`] to other stores (implemented by `net`, and by the
//! simulator in tests) and a [`PdClient`] to the meta service.
//!
//! Both are fire-and-forget: answers come back into the shard as inputs
//! ([`Shard::on_split_ids`](crate::Shard::on_split_ids),
//! [`Shard::on_operator`](crate::Shard::on_operator)), so the shard core
//! never waits on the network.

use ekv_proto::msg::DownPeer;
use ekv_proto::{PeerId, PeerMeta, Region, RegionId, StoreId};

use crate::router::{ShardAddr, StoreMsg};

/// Sends raft traffic to other stores.
pub trait Transport {
    /// Queues `msgs` for `to`. Called once per destination per round. A
    /// transport may drop messages when a queue is full (raft resends);
    /// snapshot chunks should travel apart from heartbeats.
    fn send(&mut self, to: ShardAddr, msgs: Vec<StoreMsg>);
}

/// Ids for one new region of a split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitIds {
    /// The new region.
    pub region_id: RegionId,
    /// Its peers, one per peer of the parent, in the parent's order.
    pub peer_ids: Vec<PeerId>,
}

/// A leader's report on its region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionHeartbeat {
    /// The region as the leader knows it.
    pub region: Region,
    /// The leader.
    pub leader: PeerMeta,
    /// Peers that lag behind the leader's log.
    pub pending_peers: Vec<PeerMeta>,
    /// Peers not heard from for two election timeouts, with how long
    /// (the meta service replaces one silent for long enough).
    pub down_peers: Vec<DownPeer>,
    /// Peers that are learners: the region's peer list carries no role,
    /// and a split copies learners into the new regions.
    pub learners: Vec<PeerMeta>,
    /// Approximate size of the region's data in bytes.
    pub approximate_size: u64,
    /// Approximate number of keys.
    pub approximate_keys: u64,
    /// Bytes written since the last heartbeat.
    pub written_bytes: u64,
    /// Keys written since the last heartbeat.
    pub written_keys: u64,
    /// Bytes read since the last heartbeat.
    pub read_bytes: u64,
    /// Keys read since the last heartbeat.
    pub read_keys: u64,
}

/// A store's report on itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreHeartbeat {
    /// The store.
    pub store_id: StoreId,
    /// Bytes of disk the store may use.
    pub capacity: u64,
    /// Bytes it uses.
    pub used: u64,
    /// Region peers.
    pub region_count: u64,
    /// Leaders among them.
    pub leader_count: u64,
    /// Commands handled since the last heartbeat.
    pub commands: u64,
}

/// What the meta service asks a leader to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    /// Add a replica (as a learner first, then promoted, when `as_learner` is false).
    AddPeer {
        /// The new replica.
        peer: PeerMeta,
        /// Keep it a learner.
        as_learner: bool,
    },
    /// Remove a replica.
    RemovePeer(PeerMeta),
    /// Several membership changes at once, through joint consensus (a
    /// learner promoted while a failed replica leaves, for instance).
    ChangePeers(Vec<crate::router::PeerChange>),
    /// Hand leadership over.
    TransferLeader(PeerId),
    /// Split at these keys (empty: at the middle the leader finds).
    Split(Vec<Vec<u8>>),
}

/// Talks to the meta service.
pub trait PdClient {
    /// Asks for ids of `count` new regions split off `region`; the answer
    /// goes to `Shard::on_split_ids(region, token, ...)`.
    fn ask_batch_split(&mut self, region: &Region, count: usize, token: u64);
    /// Reports the regions a split produced.
    fn report_batch_split(&mut self, regions: &[Region]);
    /// A leader's heartbeat; an operator in the answer goes to `Shard::on_operator`.
    fn region_heartbeat(&mut self, hb: RegionHeartbeat);
    /// A store's heartbeat. Each shard reports its own share (its regions,
    /// leaders, bytes used); the client sums the shares of one store and
    /// fills in the capacity of its file system.
    fn store_heartbeat(&mut self, hb: StoreHeartbeat);
}
