//! ekv's network layer.
//!
//! - [`server`]: a shard's server, on the shard's own executor and port;
//!   [`server_stats`]: its request counters and latency histograms;
//! - [`transport`]: the store-to-store raft transport over TCP
//!   (`ekv_engine::Transport`);
//! - [`raft_codec`]: the raft traffic of one round to one destination shard
//!   as one frame body;
//! - [`local`]: stores with shard servers in one process (tests, benchmarks);
//! - [`dispatch`] and [`errors`]: wire requests into raftstore commands, and
//!   raftstore answers and errors back onto the wire.
//!
//! Rule: this crate depends on `ekv-proto`, `ekv-io` and `ekv-engine`; the
//! raftstore never depends on it (it owns the `Transport` trait that this
//! crate implements).
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod dispatch;
pub mod errors;
pub mod local;
pub mod raft_codec;
pub mod server;
pub mod server_stats;
pub mod transport;
