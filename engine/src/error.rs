//! Errors of the raftstore. Client-facing variants map one-to-one to the
//! wire's typed errors; storage variants wrap the layer below.

use ekv_proto::{PeerMeta, Region, RegionEpoch, RegionId};

/// Errors returned by the raftstore.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// This peer is not the leader; `leader` is the one it knows of, if any.
    #[error("{region} is not led here (leader: {leader:?})")]
    NotLeader {
        /// The region.
        region: RegionId,
        /// The leader this peer knows of.
        leader: Option<PeerMeta>,
    },
    /// The request's epoch is stale; `current` holds the region (and, after
    /// a split, its siblings) as this peer knows them.
    #[error("{region}: epoch {request:?} is stale")]
    EpochNotMatch {
        /// The region the request named.
        region: RegionId,
        /// The epoch it carried.
        request: RegionEpoch,
        /// The regions as they are now.
        current: Vec<Region>,
    },
    /// No peer of this region lives on this shard.
    #[error("{0} not found")]
    RegionNotFound(RegionId),
    /// A key lies outside the region.
    #[error("key {key:?} is not in {region}")]
    KeyNotInRegion {
        /// The key.
        key: Vec<u8>,
        /// The region.
        region: RegionId,
    },
    /// The shard's queues are full; retry later.
    #[error("server is busy: {0}")]
    ServerBusy(&'static str),
    /// The request is malformed (unknown family, empty batch, ...).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The proposal was overtaken by a new leader's log: it was not applied.
    #[error("{region}: command was dropped by a leader change (term {term})")]
    StaleCommand {
        /// The region.
        region: RegionId,
        /// Term the command was proposed in.
        term: u64,
    },
    /// The command's outcome cannot be known (the peer was removed or the
    /// shard stopped after proposing it).
    #[error("{region}: outcome unknown: {why}")]
    Unknown {
        /// The region.
        region: RegionId,
        /// What happened.
        why: &'static str,
    },
    /// The peer is being removed or was removed.
    #[error("{0} was removed from this store")]
    RegionRemoved(RegionId),
    /// A setting is out of range.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// Persisted raftstore state does not decode.
    #[error("corrupt raftstore state: {0}")]
    Corruption(String),
    /// The shard stopped.
    #[error("shard stopped")]
    Stopped,
    /// The write-ahead log failed.
    #[error("wal: {0}")]
    Wal(#[from] ekv_wal::Error),
    /// The LSM tree failed.
    #[error("lsm: {0}")]
    Lsm(#[from] ekv_lsm::Error),
    /// A file operation outside WAL and LSM failed.
    #[error(transparent)]
    Io(#[from] ekv_io::IoError),
    /// raft-rs refused an operation.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// True for storage failures after which the shard must stop (the state
    /// on disk is unknown: fail-stop rather than serve from memory).
    pub fn is_fatal(&self) -> bool {
        matches!(self, Error::Wal(_) | Error::Lsm(_) | Error::Io(_) | Error::Corruption(_))
    }

    /// What a failpoint returns to stop the shard right there, as a crash
    /// would: a fatal error naming the point.
    // Built whenever the `fail` crate's failpoints are (features unify).
    #[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
    pub(crate) fn failpoint(name: &'static str) -> Self {
        Error::Io(ekv_io::IoError::new("failpoint", name, std::io::Error::other("injected crash")))
    }
}
