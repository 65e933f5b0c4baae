//! The glommio shell: runs a store's shards on pinned executors.
//!
//! A [`Store`] starts one OS thread per shard, each a glommio
//! `LocalExecutor` that opens its [`Shard`](crate::Shard) and runs the
//! shard loop (`shard_loop.rs`): wait for input or the tick timer, take in
//! everything that arrived, tick, run one round
//! ([`Shard::handle_ready`](crate::Shard::handle_ready)), send what the
//! round produced. Clients and transports reach a shard through its input
//! channels ([`StoreHandle`]), from any thread.
//!
//! [`LocalNetwork`] and [`LocalPd`] connect stores of one process, for
//! tests and the engine benchmark.

mod local;
mod shard_loop;
mod store;

pub use local::{LocalNetwork, LocalPd, RegionInfo};
pub use store::{
    PdFactory, ShardService, ShardStop, Store, StoreHandle, StoreSpec, TransportFactory,
    DEFAULT_INPUT_CAPACITY,
};
