//! A region peer: raft-rs's `RawNode` over [`PeerStorage`], with the
//! proposals and reads waiting on it. Features are added by the `impl Peer`
//! blocks of `operation/`; the shard (`shard.rs`) drives all peers in rounds.

use std::collections::{HashMap, VecDeque};

use ekv_proto::{PeerId, PeerMeta, Region, RegionId, ShardId, StoreId};
use raft::eraftpb::{Entry, HardState};
use raft::{RawNode, StateRole};

use crate::config::Config;
use crate::operation::read::ReadQueue;
use crate::raft::state::PeerState;
use crate::raft::storage::PeerStorage;
use crate::router::{Callback, ShardAddr};
use crate::Result;

/// A command waiting for its entry to apply.
pub(crate) struct Proposal {
    /// Index of its entry.
    pub index: u64,
    /// Term it was proposed in.
    pub term: u64,
    /// Shard clock when proposed (a commit renews the lease from here).
    pub tick: u64,
    /// Who to answer.
    pub cb: Callback,
}

impl std::fmt::Debug for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proposal").field("index", &self.index).field("term", &self.term).finish()
    }
}

/// Load counters reported in region heartbeats.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Flow {
    pub written_bytes: u64,
    pub written_keys: u64,
}

/// Bytes and keys read, counted by read tasks after they leave the shard.
pub(crate) type ReadFlow = std::rc::Rc<std::cell::Cell<(u64, u64)>>;

/// One replica of a region on this shard.
pub(crate) struct Peer {
    /// This peer.
    pub meta: PeerMeta,
    /// The raft node.
    pub raft: RawNode<PeerStorage>,
    /// Commands proposed and not yet applied, in index order.
    pub proposals: VecDeque<Proposal>,
    /// Reads waiting for a read index or for apply.
    pub reads: ReadQueue,
    /// The leader may serve reads locally until this shard tick.
    pub lease_until: u64,
    /// Where the other peers live, learned from their messages (an
    /// uninitialized peer knows no other way).
    pub peer_addrs: HashMap<PeerId, ShardAddr>,
    /// Shard tick at which each other peer was last heard from.
    pub peer_heard: HashMap<PeerId, u64>,
    /// Not ticking: the region was idle and settled.
    pub hibernating: bool,
    /// Shard tick of the last command or message that did something.
    pub last_active: u64,
    /// Removed from the region: destroy once the round's writes are done.
    pub pending_destroy: bool,
    /// Approximate size of the region's data, kept by the leader.
    pub approx_size: u64,
    /// Approximate key count.
    pub approx_keys: u64,
    /// A split was asked of the meta service and not answered yet.
    pub split_asked: bool,
    /// Writes since the last heartbeat.
    pub flow: Flow,
    /// Reads since the last heartbeat.
    pub read_flow: ReadFlow,
    /// Shard tick of the last log GC check, split check and heartbeat.
    pub last_gc: u64,
    pub last_split_check: u64,
    pub last_heartbeat: u64,
    /// The epoch the meta service last heard from this peer as leader
    /// (`None` until it reports as leader): a new leader or a new epoch
    /// reports at the next tick, so that the scheduler's next step is not
    /// a heartbeat interval away.
    pub reported_epoch: Option<ekv_proto::RegionEpoch>,
    /// Pending peers in the last report: one catching up reports at once
    /// (the scheduler waits on it to promote a learner).
    pub reported_pending: usize,
    /// Applied index and term (mirrors the storage's apply state).
    pub applied_term: u64,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("meta", &self.meta)
            .field("region", &self.region().id)
            .field("role", &self.raft.raft.state)
            .finish_non_exhaustive()
    }
}

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

impl Peer {
    /// A peer over recovered (or newly created) state.
    pub fn new(
        cfg: &Config,
        store_id: StoreId,
        state: PeerState,
        mut hard_state: HardState,
        entries: VecDeque<Entry>,
        now: u64,
    ) -> Result<Self> {
        let a = state.apply;
        // The LSM may be ahead of the WAL's hard state after a crash between
        // a snapshot's ingest and the next WAL write.
        hard_state.commit = hard_state.commit.max(a.applied_index);
        hard_state.term = hard_state.term.max(a.truncated_term).max(a.applied_term);
        let meta = PeerMeta { id: state.peer_id, store_id };
        let (min_election_tick, max_election_tick) = if cfg.randomized_election {
            (0, 0)
        } else {
            let spread = (state.peer_id.get() % cfg.election_ticks as u64) as usize;
            (cfg.election_ticks + spread, cfg.election_ticks + spread + 1)
        };
        let raft_cfg = raft::Config {
            id: state.peer_id.get(),
            election_tick: cfg.election_ticks,
            heartbeat_tick: cfg.heartbeat_ticks,
            applied: a.applied_index,
            max_size_per_msg: cfg.max_size_per_msg,
            max_inflight_msgs: cfg.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            min_election_tick,
            max_election_tick,
            read_only_option: raft::ReadOnlyOption::Safe,
            ..Default::default()
        };
        let applied_term = a.applied_term;
        let storage = PeerStorage::new(state, hard_state, entries);
        let raft = RawNode::new(&raft_cfg, storage, &logger())?;
        Ok(Self {
            meta,
            raft,
            proposals: VecDeque::new(),
            reads: ReadQueue::default(),
            lease_until: 0,
            peer_addrs: HashMap::new(),
            peer_heard: HashMap::new(),
            hibernating: false,
            last_active: now,
            pending_destroy: false,
            approx_size: 0,
            approx_keys: 0,
            split_asked: false,
            flow: Flow::default(),
            read_flow: ReadFlow::default(),
            last_gc: now,
            last_split_check: now,
            last_heartbeat: now,
            reported_epoch: None,
            reported_pending: 0,
            applied_term,
        })
    }

    /// The region as of the applied index.
    pub fn region(&self) -> &Region {
        &self.raft.store().state.region
    }

    /// The region id.
    pub fn region_id(&self) -> RegionId {
        self.raft.store().state.region.id
    }

    /// True once the peer has data (from bootstrap, split or snapshot).
    pub fn is_initialized(&self) -> bool {
        !self.raft.store().state.conf_state.voters.is_empty()
    }

    /// True when this peer leads the region.
    pub fn is_leader(&self) -> bool {
        self.raft.raft.state == StateRole::Leader
    }

    /// The leader this peer knows of.
    pub fn leader(&self) -> Option<PeerMeta> {
        let id = self.raft.raft.leader_id;
        if id == raft::INVALID_ID {
            return None;
        }
        self.region().peer(PeerId(id))
    }

    /// Applied index.
    pub fn applied_index(&self) -> u64 {
        self.raft.store().state.apply.applied_index
    }

    /// The persisted state as it stands.
    pub fn state(&self) -> &PeerState {
        &self.raft.store().state
    }

    /// Where peer `id` lives: as last heard from it, else its store from
    /// the region and shard 0 (the receiving store forwards).
    pub fn addr_of(&self, id: PeerId) -> Option<ShardAddr> {
        if let Some(a) = self.peer_addrs.get(&id) {
            return Some(*a);
        }
        let meta = self.region().peer(id)?;
        Some(ShardAddr { store: meta.store_id, shard: ShardId(0) })
    }

    /// Fails every waiting command and read with `err()`.
    pub fn fail_all(&mut self, err: impl Fn() -> crate::Error) {
        for p in self.proposals.drain(..) {
            (p.cb)(Err(err()));
        }
        self.reads.fail_all(&err);
    }
}
