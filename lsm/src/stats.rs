//! What the tree reports about itself.

use crate::table::CacheStats;

/// One level's shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LevelStats {
    /// Tables in the level.
    pub files: usize,
    /// Bytes of those tables.
    pub bytes: u64,
    /// The level's target size (0 for L0, which is counted in tables).
    pub target_bytes: u64,
}

/// A snapshot of the tree's counters and shape ([`crate::Lsm::stats`]).
/// The tree keeps the counters in one of these and fills in the shape
/// (levels, cache, memtables) when asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Key and value bytes written by callers.
    pub user_bytes_written: u64,
    /// Table bytes written by flushes.
    pub flush_bytes_written: u64,
    /// Memtables flushed.
    pub flushes: u64,
    /// Time spent flushing.
    pub flush_micros: u64,
    /// Table bytes read by compactions.
    pub compaction_bytes_read: u64,
    /// Table bytes written by compactions.
    pub compaction_bytes_written: u64,
    /// Compactions that rewrote tables.
    pub compactions: u64,
    /// Compactions that only moved a table down a level.
    pub trivial_moves: u64,
    /// Time spent compacting (wall time of compactions, yields included).
    pub compaction_micros: u64,
    /// Time writers waited in total (slowdowns and stops).
    pub stall_micros: u64,
    /// The part of `stall_micros` spent fully stopped.
    pub stop_micros: u64,
    /// Writes that waited at all.
    pub stall_count: u64,
    /// The longest single wait of one write.
    pub max_stall_micros: u64,
    /// Tables consulted by point reads (bloom filter included).
    pub table_probes: u64,
    /// Tables ingested.
    pub ingested_tables: u64,
    /// Per level, L0 first.
    pub levels: Vec<LevelStats>,
    /// The block cache.
    pub cache: CacheStats,
    /// Bytes in memtables (mutable and frozen).
    pub memtable_bytes: usize,
    /// Frozen memtables waiting for flush.
    pub immutable_memtables: usize,
    /// The newest sequence number.
    pub last_seq: u64,
    /// Estimated bytes compaction still has to rewrite.
    pub pending_compaction_bytes: u64,
    /// Key and value bytes stored in tables (all versions kept).
    pub table_raw_bytes: u64,
}

impl Stats {
    /// Bytes written to tables (flush and compaction) per user byte written.
    pub fn write_amplification(&self) -> f64 {
        if self.user_bytes_written == 0 {
            return 0.0;
        }
        (self.flush_bytes_written + self.compaction_bytes_written) as f64 / self.user_bytes_written as f64
    }

    /// Bytes of all tables per byte of the last non-empty level: how much
    /// the upper levels (overwritten and deleted data not yet compacted
    /// away) add to the live data.
    pub fn space_amplification(&self) -> f64 {
        let total: u64 = self.levels.iter().map(|l| l.bytes).sum();
        match self.levels.iter().rev().find(|l| l.bytes > 0) {
            Some(last) => total as f64 / last.bytes as f64,
            None => 0.0,
        }
    }

    /// Block cache hit ratio in `[0, 1]`.
    pub fn cache_hit_ratio(&self) -> f64 {
        let total = self.cache.hits + self.cache.misses;
        if total == 0 {
            0.0
        } else {
            self.cache.hits as f64 / total as f64
        }
    }
}
