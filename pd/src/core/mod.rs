//! The sans-I/O core of the meta service.
//!
//! [`Cluster`] holds the state (stores, the routing table, the bootstrap
//! flag, the id allocator, operators in flight) and answers every
//! meta-service request as a plain method call with the time passed in.
//! It does no I/O and reads no clock; the service around it replicates the
//! [`Change`]s each call queues (as [`Record`]s) before answering, and
//! rebuilds a `Cluster` from those records with [`Cluster::load`].
//!
//! # Layout
//!
//! - `routing`: the range map of regions ([`RegionTable`], [`RegionInfo`]),
//!   newer epochs replacing older overlapping regions.
//! - `stores`: registration, liveness (Down is derived from heartbeat age)
//!   and decommission ([`StoreInfo`], [`StoreHealth`]).
//! - `ids`: [`IdAllocator`], handing out ids from persisted reservations.
//! - `format`: [`Change`] and its key-value [`Record`].
//! - `operator` and `schedule`: multi-step [`RunningOperator`]s and the
//!   schedulers that create them (repair, decommission, extra replicas,
//!   hot regions, leader and region balance).
//! - `status`: the serializable [`ClusterStatus`] view.

mod cluster;
mod error;
mod format;
mod ids;
mod operator;
mod routing;
mod schedule;
mod settings;
mod status;
mod stores;

#[cfg(test)]
mod tests;

pub use cluster::Cluster;
pub use error::{Error, Result};
pub use format::{region_key, store_key, Change, Record, KEY_PREFIX, RECORD_VERSION};
pub use ids::{IdAllocator, NeedReserve};
pub use operator::{describe_step, OperatorKind, OperatorReason, OperatorState, RunningOperator};
pub use routing::{Load, RegionInfo, RegionTable, StoreLoad, Update};
pub use settings::Settings;
pub use status::{ClusterStatus, OperatorStatus, PeerStatus, RegionStatus, StoreStatus};
pub use stores::{StoreHealth, StoreInfo, Stores};
