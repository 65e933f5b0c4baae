//! ekv's raftstore: thread-per-core multi-raft.
//!
//! A store runs one [`Shard`] per core. A shard owns a disjoint set of
//! region peers (raft-rs `RawNode`s), one WAL and one LSM tree, and drives
//! all of its peers in rounds: in each round the entries and hard states of
//! every peer go into one WAL write and one fdatasync, and the committed
//! entries of every peer are applied in one LSM write batch. See
//! [`Shard`] for the round, [`Shard::handle_ready`] for its steps.
//!
//! Layout (after tikv's raftstore-v2):
//! - `raft/`: state independent of the thread model: the command codec,
//!   the persisted [`PeerState`](raft::state::PeerState), raft-rs storage;
//! - `operation/`: one file per feature (`input`, `propose`, `apply`,
//!   `read`, `split`, `snapshot`, `destroy`, `tick`), each an `impl Peer` or
//!   `impl Shard` block;
//! - `router/`: messages in and out of shards, the store's region table;
//! - `fsm/`: the glommio shell that runs shards on pinned executors.
//!
//! The shard core never waits on the network or a clock: the shell feeds it
//! commands, messages and ticks, and sends what it produces through the
//! [`Transport`] and [`PdClient`] traits this crate owns. The deterministic
//! simulator in `tests/` runs the same core over an in-memory file system.
//!
//! Rule: this crate depends on `ekv-proto`, `ekv-io`, `ekv-wal`, `ekv-lsm`
//! and raft-rs; never on sockets (`net` implements [`Transport`]).
//!
//! A one-replica region on one shard, driven by hand as a shell would:
//!
//! ```
//! use std::{cell::RefCell, rc::Rc};
//! use ekv_engine::{Command, Config, Request, Response, Shard, StoreRouter, WriteOp};
//! use ekv_io::MemFs;
//! use ekv_proto::{PeerId, PeerMeta, Region, RegionEpoch, RegionId, ShardId, StoreId};
//!
//! futures::executor::block_on(async {
//!     let cfg = Rc::new(Config { randomized_election: false, ..Config::default() });
//!     let router = StoreRouter::new(1);
//!     let mut shard = Shard::open(MemFs::default(), "/s0".into(), cfg, StoreId(1), ShardId(0), router)
//!         .await
//!         .unwrap();
//!     let region = Region {
//!         id: RegionId(1),
//!         epoch: RegionEpoch { conf_ver: 1, version: 1 },
//!         peers: vec![PeerMeta { id: PeerId(1), store_id: StoreId(1) }],
//!         ..Region::default()
//!     };
//!     shard.bootstrap_region(region.clone()).await.unwrap();
//!     // Tick until the single peer has elected itself.
//!     while !shard.peer_status()[0].is_leader {
//!         shard.tick();
//!         shard.handle_ready().await.unwrap();
//!     }
//!     let answer = Rc::new(RefCell::new(None));
//!     let slot = answer.clone();
//!     let put = WriteOp::Put { cf: "default".into(), key: "k".into(), value: "v".into() };
//!     let req = Request { region_id: region.id, epoch: region.epoch, cmd: Command::Write(vec![put]) };
//!     shard.on_command(req, Box::new(move |r| *slot.borrow_mut() = Some(r)));
//!     while answer.borrow().is_none() {
//!         shard.handle_ready().await.unwrap();
//!     }
//!     assert_eq!(answer.borrow_mut().take().unwrap().unwrap(), Response::Written);
//!     shard.close().await.unwrap();
//! });
//! ```
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
#![allow(async_fn_in_trait)]

/// A failpoint that stops the caller with an error naming it, as a crash
/// there would (`fail::cfg(name, "return")`); nothing without the
/// `failpoints` feature.
macro_rules! crash_point {
    ($name:literal) => {
        fail::fail_point!($name, |_| Err($crate::Error::failpoint($name)))
    };
}

mod config;
mod error;
pub mod fsm;
mod operation;
mod peer;
pub mod raft;
pub mod router;
mod shard;
mod transport;

pub use config::{Config, META_CF, MIN_WAL_SEGMENT};
pub use error::{Error, Result};
pub use fsm::{LocalNetwork, LocalPd, Store, StoreHandle, StoreSpec};
pub use operation::read::ReadTask;
pub use operation::snapshot::SnapDesc;
pub use router::{
    Callback, Command, PeerChange, PeerMsg, RaftEnvelope, Request, Response, Scan, ShardAddr, SnapshotChunk,
    StoreMsg, StoreRouter, WriteOp,
};
pub use shard::{PeerStatus, Shard, ShardStats};
pub use transport::{Operator, PdClient, RegionHeartbeat, SplitIds, StoreHeartbeat, Transport};

/// The file systems a shard runs on: an [`ekv_io::FileSystem`] that can be
/// cloned into the WAL and the LSM and lives as long as the executor.
pub trait Fs: ekv_io::FileSystem + Clone + 'static {}
impl<T: ekv_io::FileSystem + Clone + 'static> Fs for T {}
