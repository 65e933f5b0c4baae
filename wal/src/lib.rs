//! ekv's per-shard write-ahead log.
//!
//! Every shard (core) of a store keeps the raft state of all of its region
//! peers in one log: entries, hard states, and markers (log compacted to an
//! index; region removed). A round of the shard loop stages the writes of
//! every peer that has a `Ready` into one [`LogBatch`] and calls
//! [`Wal::write`] once: one record, one contiguous write, one `fdatasync`,
//! however many regions it touched. Tasks that write concurrently share the
//! sync in flight (group commit).
//!
//! Reads — [`Wal::entries`], [`Wal::term`], first and last index, hard
//! state — are answered from an in-memory index; the newest entries come
//! from a bounded cache, older ones are read back with io_uring.
//!
//! Layout: see [`format`](mod@format). Durability: a write has returned `Ok` only after
//! its bytes and the file size are synced, so it survives a power cut. A
//! crash may leave a torn record at the tail of the newest segment; [`Wal::open`]
//! drops it. A bad record anywhere else is reported as
//! [`Error::Corruption`] with file and offset, unless the log is opened with
//! [`RecoveryMode::TruncateCorrupt`].
//!
//! Rule: this crate depends on `ekv-proto` and `ekv-io` only; it knows
//! nothing of raft-rs types (the engine converts), LSM or network.
//!
//! ```
//! use ekv_io::MemFs;
//! use ekv_proto::RegionId;
//! use ekv_wal::{Entry, HardState, LogBatch, Wal, WalOptions};
//!
//! futures::executor::block_on(async {
//!     let opts = WalOptions { segment_size: 1 << 20, ..WalOptions::default() };
//!     let wal = Wal::open(MemFs::default(), "/wal".into(), opts).await.unwrap();
//!     let mut batch = LogBatch::new();
//!     let e = Entry { index: 1, term: 1, data: "put a=1".into(), ..Entry::default() };
//!     batch.add_entries(RegionId(7), vec![e.clone()]);
//!     batch.put_hard_state(RegionId(7), HardState { term: 1, vote: 2, commit: 1 });
//!     wal.write(&mut batch).await.unwrap();
//!     assert_eq!(wal.entries(RegionId(7), 1, 2, u64::MAX).await.unwrap(), vec![e]);
//!     assert_eq!(wal.last_index(RegionId(7)), Some(1));
//! });
//! ```
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

/// A failpoint that stops the caller with an error naming it, as a crash
/// there would (`fail::cfg(name, "return")`); nothing without the
/// `failpoints` feature.
macro_rules! crash_point {
    ($name:literal) => {
        fail::fail_point!($name, |_| Err($crate::Error::failpoint($name)))
    };
}

mod batch;
mod error;
pub mod format;
mod hash;
mod index;
mod recovery;
mod wal;

pub use batch::{Entry, EntryType, HardState, LogBatch};
pub use error::{CorruptionKind, Error, Result};
pub use index::PinningRegion;
pub use wal::{MaintainReport, RecoveryMode, Stats, Wal, WalOptions};
