//! The block cache: decoded data blocks of all tables of one shard.
//!
//! CLOCK (second chance) replacement: a hit only sets a bit, so lookups do
//! not reorder anything; eviction sweeps a hand over the slots, clearing
//! set bits and evicting the first entry whose bit is clear.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::table::block::Block;

/// Bytes charged per entry beyond its contents: the slot, the map entry and
/// the shared buffer's header, roughly.
const ENTRY_OVERHEAD: usize = 96;

/// Counters of a [`BlockCache`], for metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that found their block.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Blocks added.
    pub inserts: u64,
    /// Blocks dropped to make room.
    pub evictions: u64,
    /// Bytes charged now; never above `capacity`.
    pub usage: usize,
    /// The bound.
    pub capacity: usize,
}

/// Blocks keyed by (table number, block offset), bounded by bytes. Table
/// numbers are never reused, so a dropped table's blocks are never hit
/// again and simply age out. Single-threaded: one per shard.
pub struct BlockCache {
    inner: RefCell<Inner>,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache").field("stats", &self.stats()).finish()
    }
}

type Key = (u64, u64);

struct Slot {
    key: Key,
    /// `None` for a free slot.
    block: Option<Block>,
    referenced: bool,
}

struct Inner {
    map: HashMap<Key, usize, BuildHasherDefault<KeyHasher>>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    /// Next slot the eviction sweep looks at. Invariant: `< slots.len()`
    /// whenever there are slots.
    hand: usize,
    stats: CacheStats,
}

impl BlockCache {
    /// A cache holding at most `capacity_bytes` of blocks (0 disables it).
    pub fn new(capacity_bytes: usize) -> Self {
        let stats = CacheStats { capacity: capacity_bytes, ..CacheStats::default() };
        let inner = Inner { map: HashMap::default(), slots: Vec::new(), free: Vec::new(), hand: 0, stats };
        Self { inner: RefCell::new(inner) }
    }

    /// Counters so far.
    pub fn stats(&self) -> CacheStats {
        self.inner.borrow().stats.clone()
    }

    pub(crate) fn get(&self, table: u64, offset: u64) -> Option<Block> {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        match inner.map.get(&(table, offset)) {
            Some(&i) => {
                inner.stats.hits += 1;
                let slot = &mut inner.slots[i];
                slot.referenced = true;
                slot.block.clone()
            }
            None => {
                inner.stats.misses += 1;
                None
            }
        }
    }

    pub(crate) fn insert(&self, table: u64, offset: u64, block: Block) {
        let mut inner = self.inner.borrow_mut();
        let charge = block.len() + ENTRY_OVERHEAD;
        if charge > inner.stats.capacity || inner.map.contains_key(&(table, offset)) {
            return;
        }
        while inner.stats.usage + charge > inner.stats.capacity {
            if !inner.evict_one() {
                return;
            }
        }
        // Unreferenced until hit again: a scan of blocks read once evicts
        // its own blocks, not the ones that keep being hit.
        let slot = Slot { key: (table, offset), block: Some(block), referenced: false };
        let i = match inner.free.pop() {
            Some(i) => {
                inner.slots[i] = slot;
                i
            }
            None => {
                inner.slots.push(slot);
                inner.slots.len() - 1
            }
        };
        inner.map.insert((table, offset), i);
        inner.stats.usage += charge;
        inner.stats.inserts += 1;
    }
}

impl Inner {
    /// Evicts one entry; false if the cache is empty.
    fn evict_one(&mut self) -> bool {
        if self.map.is_empty() {
            return false;
        }
        // Two sweeps suffice: the first clears every bit it passes.
        for _ in 0..2 * self.slots.len() {
            let i = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            let slot = &mut self.slots[i];
            let Some(block) = &slot.block else { continue };
            if slot.referenced {
                slot.referenced = false;
                continue;
            }
            self.stats.usage -= block.len() + ENTRY_OVERHEAD;
            self.stats.evictions += 1;
            self.map.remove(&slot.key);
            slot.block = None;
            self.free.push(i);
            return true;
        }
        false
    }
}

/// A multiplicative hasher for the two-integer keys: SipHash's DoS
/// resistance buys nothing here (keys are our own offsets) and costs on
/// every block lookup.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(26) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}
