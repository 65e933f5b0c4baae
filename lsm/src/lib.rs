//! ekv's per-shard LSM tree.
//!
//! Each shard (core) of a store keeps the applied state of all of its
//! regions in one tree: a skip-list memtable, frozen memtables waiting for
//! flush, and tables (SSTs) in levels, merged by leveled compaction that
//! runs as a low-priority task on the shard's own executor.
//!
//! - **No log of its own.** Writes go to the memtable only. The raft log is
//!   the log: a flush stores, in the same manifest edit that adds its table,
//!   the caller's marker of the newest batch it holds
//!   ([`WriteBatch::set_marker`]), and [`Lsm::recovered_marker`] hands it
//!   back after a restart so the caller replays from there.
//! - **Column families** are key prefixes of the one tree, so a batch across
//!   them is atomic and dropping one is a range deletion.
//! - **Snapshots** are sequence numbers; reads and iterators at a snapshot
//!   see exactly the writes before it.
//! - **Range deletions** drop a region's data in one write.
//! - **Export/ingest** move key ranges as tables (raft snapshots, region moves).
//! - **Write stalls** are smooth: past `l0_slowdown_trigger` writers go at a
//!   share of compaction's pace, shrinking towards `l0_stop_trigger`; every
//!   wait is counted in [`Stats`].
//!
//! Files: `CURRENT`, `MANIFEST-<n>` (layout in the README and in
//! `manifest.rs`) and `<n>.sst` tables (see [`table`]). All I/O goes through
//! [`ekv_io::FileSystem`]: glommio DMA files on io_uring in production,
//! [`ekv_io::MemFs`] in crash tests.
//!
//! Rule: this crate depends on `ekv-proto` and `ekv-io` only; it knows
//! nothing of raft or regions.
//!
//! ```
//! use ekv_io::MemFs;
//! use ekv_lsm::{IterOptions, Lsm, Options, WriteBatch};
//!
//! futures::executor::block_on(async {
//!     let lsm = Lsm::open(MemFs::default(), "/db".into(), Options::default()).await.unwrap();
//!     let cf = lsm.default_cf();
//!     let mut batch = WriteBatch::new();
//!     batch.put(cf, b"a", b"1").put(cf, b"b", b"2").set_marker(b"applied=7".to_vec());
//!     lsm.write(batch).await.unwrap();
//!     let snap = lsm.snapshot();
//!     lsm.delete_range(cf, b"a", b"b").await.unwrap();
//!     assert_eq!(lsm.get(cf, b"a").await.unwrap(), None);
//!     assert_eq!(lsm.get_at(cf, b"a", &snap).await.unwrap().as_deref(), Some(&b"1"[..]));
//!     let mut it = lsm.iter(cf, IterOptions::default()).unwrap();
//!     it.seek_to_first().await.unwrap();
//!     assert_eq!((it.key(), it.value()), (&b"b"[..], &b"2"[..]));
//!     lsm.flush().await.unwrap();
//!     assert_eq!(lsm.durable_marker().as_deref(), Some(&b"applied=7"[..]));
//!     lsm.close().await.unwrap();
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

mod batch;
mod compaction;
mod db;
mod error;
mod iter;
pub mod key;
mod manifest;
mod memtable;
mod options;
mod range_del;
mod stats;
pub mod table;
mod version;

pub use batch::WriteBatch;
pub use db::{Cf, IterOptions, KeyRange, Lsm, SeqNo, Snapshot};
pub use error::{Error, Result};
pub use iter::Iter;
pub use options::{Options, YieldHook};
pub use stats::{LevelStats, Stats};
pub use table::CacheStats;
