//! ekv's network layer.
//!
//! Built so far: [`raft_codec`], the encoding of the raft traffic between
//! stores (the `StoreMsg`s of one round to one destination shard, as one
//! frame body), and [`errors`], where raftstore errors become wire errors. Shard servers, the store-to-store transport implementing
//! `ekv_engine::Transport`, and the frame I/O over TCP come next (see the
//! README's "What works today").
//!
//! Rule: this crate depends on `ekv-proto`, `ekv-io` and `ekv-engine`; the
//! raftstore never depends on it (it owns the `Transport` trait that this
//! crate implements).
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod dispatch;
pub mod errors;
pub mod raft_codec;
pub mod server;
