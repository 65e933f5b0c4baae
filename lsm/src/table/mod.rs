//! Tables: the immutable sorted files of the tree (also called SSTs,
//! sorted string tables, or runs).
//!
//! A table holds point entries (internal keys with their values) sorted in
//! [`key::compare`](crate::key::compare) order, the range tombstones written
//! with them, a bloom filter over their user keys and a summary
//! ([`TableInfo`]). [`TableBuilder`] writes one front to back; [`Table`]
//! opens it, keeps its index and filter in memory, and reads data blocks
//! through a shared [`BlockCache`]. The byte layout is in [`format`](mod@format).
//!
//! Every block carries a CRC32C that is checked on every read from disk,
//! and every length and offset is bounds-checked before use: damage yields
//! [`Error::Corruption`](crate::Error::Corruption) naming the file and the
//! damaged block's offset, never a panic or a wrong value.

mod block;
mod bloom;
mod builder;
mod cache;
pub mod format;
mod fuzz;
mod reader;
#[cfg(test)]
mod tests;

pub use crate::key::{Kind, Tombstone};
pub use builder::TableBuilder;
pub use cache::{BlockCache, CacheStats};
pub use format::{BlockHandle, Footer};
pub use fuzz::{fuzz_block, fuzz_table};
pub use reader::{Table, TableIter};

/// How tables are written. Readers need none of it: everything they need
/// is in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableOptions {
    /// Target size of a data block's contents: the unit of reading and
    /// caching. Smaller blocks cost index memory, larger ones read
    /// amplification on point lookups.
    pub block_size: usize,
    /// Keys between restart points in a block. Fewer mean faster seeks,
    /// more mean better prefix compression.
    pub restart_interval: usize,
    /// Bloom filter bits per distinct user key (about 1% false positives at
    /// 10); 0 writes no filter.
    pub bloom_bits_per_key: usize,
    /// Bytes per write; rounded up to a multiple of the file's alignment.
    /// Large writes keep a flush or compaction from issuing many small I/Os.
    pub write_chunk: usize,
}

impl Default for TableOptions {
    fn default() -> Self {
        Self { block_size: 4096, restart_interval: 16, bloom_bits_per_key: 10, write_chunk: 256 << 10 }
    }
}

/// A table's summary: what compaction picking, version edits and
/// statistics need without reading the table. Written into the table's
/// properties block and returned by [`TableBuilder::finish`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableInfo {
    /// File size on disk, footer and padding included.
    pub size: u64,
    /// Point entries, deletions included.
    pub num_entries: u64,
    /// Point entries of kind [`Kind::Delete`].
    pub num_deletions: u64,
    /// Range tombstones.
    pub num_tombstones: u64,
    /// Smallest internal key of the point entries (`None` if there are none).
    pub smallest: Option<Vec<u8>>,
    /// Largest internal key of the point entries (`None` if there are none).
    pub largest: Option<Vec<u8>>,
    /// Smallest seq of points and tombstones (0 if there are none).
    pub min_seq: u64,
    /// Largest seq of points and tombstones (0 if there are none).
    pub max_seq: u64,
    /// Sum of the internal key lengths of the point entries.
    pub raw_key_bytes: u64,
    /// Sum of the value lengths of the point entries.
    pub raw_value_bytes: u64,
}
