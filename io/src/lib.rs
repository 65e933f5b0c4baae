//! File I/O for ekv's logs and tables.
//!
//! The WAL and the LSM never touch a file directly: they go through
//! [`FileSystem`] and [`File`], which have two implementations.
//!
//! - [`GlommioFs`]: `O_DIRECT` files driven by glommio over io_uring. It is
//!   the only place that knows about glommio's polled-I/O probe (see
//!   [`GlommioFs::new`]).
//! - [`MemFs`]: files in memory that keep what was synced apart from what was
//!   merely written, so a test can [`MemFs::crash`] and see exactly what a
//!   power cut would have left, tear unsynced writes at any byte, flip bytes,
//!   and make writes or syncs fail with a chosen errno.
//!
//! [`histogram`] holds the fixed-bucket latency histogram every layer's
//! status counters use.
//!
//! Rule: this crate knows nothing of raft, regions or formats; it moves bytes.
//! Its futures are `!Send` by design: a file belongs to one shard's executor.
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
// Thread-per-core: futures stay on the executor that made them, so the
// missing `Send` bound on these trait futures is the point, not an oversight.
#![allow(async_fn_in_trait)]

mod error;
mod event;
mod glommio_fs;
pub mod histogram;
mod mem_fs;

pub use error::{IoError, Result};
pub use event::Event;
pub use glommio_fs::{GlommioFile, GlommioFs};
pub use histogram::Histogram;
pub use mem_fs::{CrashMode, Fault, FaultOp, MemFile, MemFs, EIO, ENOSPC};

use std::ops::Deref;

/// Whether the effective uid is 0, read from `/proc/self/status` (no
/// `unsafe` `geteuid`); unknown counts as not root, the cautious answer.
/// glommio executors of non-root processes must ask for less locked memory
/// (RLIMIT_MEMLOCK applies to them; see linux-only.md).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?;
            // Real, effective, saved, file-system uid.
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}
use std::path::Path;

/// A buffer that can be handed to [`File::write_at`]. For direct I/O it is
/// aligned memory owned by the I/O engine until the write completes.
pub trait IoBuf {
    /// The bytes, for filling.
    fn as_mut_slice(&mut self) -> &mut [u8];
    /// The bytes.
    fn as_slice(&self) -> &[u8];
}

/// One open file. Positions and lengths of writes must be multiples of
/// [`File::alignment`].
pub trait File {
    /// Buffer type for writes.
    type Buf: IoBuf;
    /// Buffer type returned by reads.
    type ReadBuf: Deref<Target = [u8]>;

    /// The path this file was opened at, for error messages.
    fn path(&self) -> &Path;
    /// Required alignment of write offsets and lengths (the device's logical
    /// block size for direct I/O, at least 512).
    fn alignment(&self) -> u64;
    /// A zeroed buffer of `len` bytes suitable for [`File::write_at`].
    fn alloc_buf(&self, len: usize) -> Self::Buf;
    /// Writes all of `buf` at `pos`.
    async fn write_at(&self, buf: Self::Buf, pos: u64) -> Result<()>;
    /// Reads `len` bytes at `pos` (any alignment). Returns fewer bytes only
    /// at the end of the file.
    async fn read_at(&self, pos: u64, len: usize) -> Result<Self::ReadBuf>;
    /// Makes every completed write durable (data and the size, not mtime).
    async fn fdatasync(&self) -> Result<()>;
    /// Current size in bytes.
    async fn size(&self) -> Result<u64>;
    /// Closes the file.
    async fn close(self) -> Result<()>;
}

/// A directory tree of files.
pub trait FileSystem {
    /// The open-file type.
    type File: File;

    /// Opens an existing file for reading and writing.
    async fn open(&self, path: &Path) -> Result<Self::File>;
    /// Creates a file (truncating one that exists) for reading and writing.
    async fn create(&self, path: &Path) -> Result<Self::File>;
    /// Renames a file; durable after [`FileSystem::sync_dir`] of both parents.
    async fn rename(&self, from: &Path, to: &Path) -> Result<()>;
    /// Removes a file; durable after [`FileSystem::sync_dir`].
    async fn remove(&self, path: &Path) -> Result<()>;
    /// Makes creations, renames and removals in `dir` durable.
    async fn sync_dir(&self, dir: &Path) -> Result<()>;
    /// Creates `dir` and its parents.
    async fn create_dir_all(&self, dir: &Path) -> Result<()>;
    /// Names of the regular files directly in `dir`, sorted.
    async fn list(&self, dir: &Path) -> Result<Vec<String>>;
}
