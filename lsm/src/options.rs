//! Tuning knobs of the tree.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use crate::table::TableOptions;

/// Called by flush and compaction when they have run on the CPU for
/// [`Options::work_slice`] without waiting: the owner lets foreground work
/// run (on glommio, `yield_if_needed`). The default hook yields to the
/// executor once.
pub type YieldHook = Rc<dyn Fn() -> Pin<Box<dyn Future<Output = ()>>>>;

/// Options of [`crate::Lsm::open`].
#[derive(Clone)]
pub struct Options {
    /// A memtable is frozen and queued for flush when it reaches this size.
    pub memtable_size: usize,
    /// Frozen memtables waiting for flush; a writer waits when the queue is
    /// full (a stop, counted in the stall time).
    pub max_immutable_memtables: usize,
    /// Target size of a data block before it is cut.
    pub block_size: usize,
    /// Keys between restart points in a data block.
    pub restart_interval: usize,
    /// Bloom filter bits per key (0: no filter).
    pub bloom_bits_per_key: usize,
    /// Bytes of data blocks kept in memory.
    pub block_cache_size: usize,
    /// Size at which flush and compaction output is cut into a new table.
    pub target_file_size: u64,
    /// Target size of level 1.
    pub base_level_size: u64,
    /// Each level's target is this many times the one above.
    pub level_size_ratio: u64,
    /// Number of levels, L0 included.
    pub num_levels: usize,
    /// L0 tables that start a compaction into L1.
    pub l0_compaction_trigger: usize,
    /// L0 tables at which writes start to slow down.
    pub l0_slowdown_trigger: usize,
    /// L0 tables at which writes stop until compaction catches up.
    pub l0_stop_trigger: usize,
    /// Estimated bytes compaction owes at which writes slow down.
    pub pending_compaction_slowdown_bytes: u64,
    /// Estimated bytes compaction owes at which writes stop.
    pub pending_compaction_stop_bytes: u64,
    /// Longest stretch background work runs on the CPU before it calls the
    /// yield hook.
    pub work_slice: Duration,
    /// See [`YieldHook`].
    pub yield_hook: Option<YieldHook>,
    /// Size of each write of a table being built.
    pub write_chunk: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            memtable_size: 64 << 20,
            max_immutable_memtables: 2,
            block_size: 4096,
            restart_interval: 16,
            bloom_bits_per_key: 10,
            block_cache_size: 64 << 20,
            target_file_size: 64 << 20,
            base_level_size: 256 << 20,
            level_size_ratio: 10,
            num_levels: 7,
            l0_compaction_trigger: 4,
            l0_slowdown_trigger: 20,
            l0_stop_trigger: 36,
            pending_compaction_slowdown_bytes: 64 << 30,
            pending_compaction_stop_bytes: 256 << 30,
            work_slice: Duration::from_micros(500),
            yield_hook: None,
            write_chunk: 256 << 10,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("memtable_size", &self.memtable_size)
            .field("max_immutable_memtables", &self.max_immutable_memtables)
            .field("block_size", &self.block_size)
            .field("bloom_bits_per_key", &self.bloom_bits_per_key)
            .field("block_cache_size", &self.block_cache_size)
            .field("target_file_size", &self.target_file_size)
            .field("base_level_size", &self.base_level_size)
            .field("level_size_ratio", &self.level_size_ratio)
            .field("num_levels", &self.num_levels)
            .field("l0", &(self.l0_compaction_trigger, self.l0_slowdown_trigger, self.l0_stop_trigger))
            .field("work_slice", &self.work_slice)
            .field("yield_hook", &self.yield_hook.is_some())
            .finish_non_exhaustive()
    }
}

impl Options {
    pub(crate) fn validate(&self) -> Result<(), String> {
        let checks: [(bool, &str); 9] = [
            (self.memtable_size >= 4096, "memtable_size must be at least 4096"),
            (self.max_immutable_memtables >= 1, "max_immutable_memtables must be at least 1"),
            (self.block_size >= 256, "block_size must be at least 256"),
            (self.restart_interval >= 1, "restart_interval must be at least 1"),
            ((2..=16).contains(&self.num_levels), "num_levels must be in 2..=16"),
            (self.level_size_ratio >= 2, "level_size_ratio must be at least 2"),
            (
                self.l0_compaction_trigger >= 1
                    && self.l0_compaction_trigger <= self.l0_slowdown_trigger
                    && self.l0_slowdown_trigger < self.l0_stop_trigger,
                "need 1 <= l0_compaction_trigger <= l0_slowdown_trigger < l0_stop_trigger",
            ),
            (
                self.pending_compaction_slowdown_bytes < self.pending_compaction_stop_bytes,
                "pending_compaction_slowdown_bytes must be below pending_compaction_stop_bytes",
            ),
            (
                self.write_chunk >= 4096 && self.write_chunk % 4096 == 0,
                "write_chunk must be a multiple of 4096",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, msg)) => Err(msg.to_string()),
            None => Ok(()),
        }
    }

    pub(crate) fn table_options(&self) -> TableOptions {
        TableOptions {
            block_size: self.block_size,
            restart_interval: self.restart_interval,
            bloom_bits_per_key: self.bloom_bits_per_key,
            write_chunk: self.write_chunk,
        }
    }

    /// Target bytes of `level` (1-based levels; L0 is counted in files).
    pub(crate) fn level_target(&self, level: usize) -> u64 {
        let mut t = self.base_level_size;
        for _ in 1..level {
            t = t.saturating_mul(self.level_size_ratio);
        }
        t
    }
}
