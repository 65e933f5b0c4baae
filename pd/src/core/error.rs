//! The core's typed errors.

use ekv_proto::codec::DecodeError;
use ekv_proto::{RegionEpoch, RegionId, StoreId};

/// Why the core refused a request or a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// [`Cluster::bootstrap`](super::Cluster::bootstrap) already succeeded once.
    #[error("the cluster is already bootstrapped")]
    AlreadyBootstrapped,
    /// The request needs a bootstrapped cluster.
    #[error("the cluster is not bootstrapped yet")]
    NotBootstrapped,
    /// The bootstrap request is malformed; `what` names the broken part.
    #[error("invalid bootstrap request: {what}")]
    InvalidBootstrap {
        /// The offending part.
        what: &'static str,
    },
    /// Id 0 means "none" everywhere and is never a valid id.
    #[error("{what} id 0 is reserved")]
    ZeroId {
        /// Which kind of id.
        what: &'static str,
    },
    /// The store was decommissioned; its id never comes back.
    #[error("{store} is a tombstone; register under a new id")]
    StoreTombstoned {
        /// The store.
        store: StoreId,
    },
    /// Another live store already registered this address.
    #[error("address {address} is already used by {store}")]
    DuplicateAddress {
        /// The address.
        address: String,
        /// The store holding it.
        store: StoreId,
    },
    /// No store with this id was registered.
    #[error("{store} is not registered")]
    StoreNotFound {
        /// The store.
        store: StoreId,
    },
    /// The region's epoch is behind the one the meta service knows.
    #[error("{region} has epoch {epoch:?}, behind the current {current:?}")]
    StaleRegion {
        /// The region.
        region: RegionId,
        /// The epoch in the request.
        epoch: RegionEpoch,
        /// The epoch the meta service holds.
        current: RegionEpoch,
    },
    /// An id or split count outside `1..=max`.
    #[error("count {count} is outside 1..={max}")]
    InvalidCount {
        /// The count asked for.
        count: u64,
        /// The largest count accepted.
        max: u64,
    },
    /// The 64-bit id space is used up (never in practice; refused rather
    /// than wrapped so that no id is handed out twice).
    #[error("the id space is exhausted")]
    IdsExhausted,
    /// A persisted record failed to decode.
    #[error("bad meta record {}: {source}", key.escape_ascii())]
    BadRecord {
        /// The record's key.
        key: Vec<u8>,
        /// What the decoder found.
        source: DecodeError,
    },
    /// A persisted record has a key this version does not know.
    #[error("unknown meta record key {}", key.escape_ascii())]
    UnknownRecord {
        /// The key.
        key: Vec<u8>,
    },
}

/// Result of the core's operations.
pub type Result<T> = std::result::Result<T, Error>;
