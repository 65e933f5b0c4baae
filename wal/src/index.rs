//! The in-memory index of the log: for every region, where each live entry
//! lies on disk, its hard state, and a bounded cache of its newest entries.
//!
//! Writes and recovery update it through the same [`MemIndex::apply`], so
//! the state after a restart is the state before it by construction.

use std::collections::{HashMap, VecDeque};

use crate::hash::IdHash;

use ekv_proto::RegionId;

use crate::batch::{Decoded, Entry, EntryMeta, HardState};
use crate::error::{Error, Result};

/// Where a block of entries lies: segment, file offset of its checksum
/// (the block follows it), block length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockLoc {
    pub seq: u64,
    pub offset: u64,
    pub len: u32,
}

/// One live entry: its term and where to read it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryLoc {
    pub term: u64,
    pub block: BlockLoc,
    pub meta: EntryMeta,
}

#[derive(Debug)]
struct Cached {
    entry: Entry,
}

/// One region's log.
#[derive(Debug)]
pub(crate) struct RegionLog {
    /// Index of `entries[0]`; when `entries` is empty, the next index expected.
    first: u64,
    /// Live entries. Invariant: `entries[i]` has index `first + i`.
    entries: VecDeque<EntryLoc>,
    /// Latest hard state and the segment that holds it.
    hard_state: Option<(HardState, u64)>,
    /// Segment holding the latest compaction that moved `first`.
    compact_seq: Option<u64>,
    /// Newest entries in memory. Invariant: a suffix of the live entries.
    cache: VecDeque<Cached>,
    /// Whether the region is in the eviction ring.
    in_ring: bool,
}

impl Default for RegionLog {
    /// A region known only by its hard state: raft logs start at index 1.
    fn default() -> Self {
        Self {
            first: 1,
            entries: VecDeque::new(),
            hard_state: None,
            compact_seq: None,
            cache: VecDeque::new(),
            in_ring: false,
        }
    }
}

impl RegionLog {
    /// Index one past the last live entry.
    fn next(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// Oldest segment this region still needs: the one holding its first
    /// live entry (or, with no entries, the compaction that set `first`)
    /// and the one holding its hard state.
    fn pin(&self) -> Option<u64> {
        let log = match self.entries.front() {
            Some(e) => Some(e.block.seq),
            None => self.compact_seq,
        };
        match (log, self.hard_state.map(|(_, s)| s)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn cache_first(&self) -> u64 {
        self.next() - self.cache.len() as u64
    }
}

/// A region whose state pins an old segment, and how big its log is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinningRegion {
    /// Region.
    pub region: RegionId,
    /// Oldest segment it needs.
    pub segment: u64,
    /// Live entries.
    pub entries: u64,
}

/// A checked view of a region's bounds, used to validate a write before it
/// goes to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    pub first: u64,
    pub next: u64,
}

/// The index of all regions of one log.
#[derive(Debug)]
pub(crate) struct MemIndex {
    regions: HashMap<RegionId, RegionLog, IdHash>,
    cache_bytes: usize,
    cache_capacity: usize,
    /// Regions with cached entries, in the order eviction visits them: each
    /// visit drops the region's oldest cached entry. No global order of
    /// entries to keep; O(1) per eviction.
    evict_ring: VecDeque<RegionId>,
    cached_entries: usize,
    live_entries: usize,
}

impl MemIndex {
    pub fn new(cache_capacity: usize) -> Self {
        Self {
            regions: HashMap::default(),
            cache_bytes: 0,
            cache_capacity,
            evict_ring: VecDeque::new(),
            cached_entries: 0,
            live_entries: 0,
        }
    }

    /// Bounds and hard state of a region, in one lookup.
    pub fn view(&self, region: RegionId) -> (Option<Bounds>, Option<HardState>) {
        match self.regions.get(&region) {
            Some(r) => (Some(Bounds { first: r.first, next: r.next() }), r.hard_state.map(|(h, _)| h)),
            None => (None, None),
        }
    }

    /// Checks an append at `index` against `bounds` (None: no log yet).
    pub fn check_append(region: RegionId, bounds: Option<Bounds>, index: u64) -> Result<()> {
        let Some(b) = bounds else { return Ok(()) };
        if b.first == b.next {
            return Ok(());
        }
        if index < b.first {
            return Err(Error::Compacted { region, index, first_index: b.first });
        }
        if index > b.next {
            return Err(Error::Gap { region, index, first_index: b.first, last_index: b.next - 1 });
        }
        Ok(())
    }

    /// Applies one decoded item written at segment `seq`, with its block at
    /// `block_file_offset` (file offset of the payload plus the block's offset
    /// in it, less 4 for the checksum). `fresh` are the entries themselves,
    /// when the writer still has them, for the cache.
    pub fn apply(
        &mut self,
        item: Decoded,
        all_metas: &[EntryMeta],
        seq: u64,
        payload_offset: u64,
        fresh: Option<Vec<Entry>>,
        replay: Replay,
    ) -> Result<()> {
        match item {
            Decoded::Entries { region, first_index, block_offset, block_len, metas } => {
                let metas = &all_metas[metas];
                let block =
                    BlockLoc { seq, offset: payload_offset + block_offset as u64 - 4, len: block_len as u32 };
                // Live writes were validated against this very state before
                // they were written; re-checking costs a lookup per region.
                if cfg!(debug_assertions) && replay == Replay::Strict {
                    Self::check_append(region, self.view(region).0, first_index)?;
                }
                let log = self.regions.entry(region).or_default();
                // Keep cached entries below the new first index only: the
                // cache stays a suffix of what remains.
                let cache_first = log.cache_first();
                let keep = first_index.saturating_sub(cache_first).min(log.cache.len() as u64) as usize;
                for c in log.cache.drain(keep..) {
                    self.cache_bytes -= c.entry.data.len() + c.entry.context.len();
                    self.cached_entries -= 1;
                }
                // On a partial replay the region's older records may be gone
                // (recycled: nothing live needed them), so an append that does
                // not fit what was replayed starts the region afresh.
                if log.first == log.next() || first_index <= log.first || first_index > log.next() {
                    self.live_entries -= log.entries.len();
                    log.entries.clear();
                    log.first = first_index;
                } else {
                    let keep = (first_index - log.first) as usize;
                    self.live_entries -= log.entries.len() - keep;
                    log.entries.truncate(keep);
                }
                self.live_entries += metas.len();
                log.entries.extend(metas.iter().map(|m| EntryLoc { term: m.term, block, meta: *m }));
                match fresh {
                    Some(fresh) => {
                        for e in fresh {
                            self.cache_bytes += e.data.len() + e.context.len();
                            self.cached_entries += 1;
                            log.cache.push_back(Cached { entry: e });
                        }
                        if !log.in_ring && !log.cache.is_empty() {
                            log.in_ring = true;
                            self.evict_ring.push_back(region);
                        }
                    }
                    None => {
                        for c in log.cache.drain(..) {
                            self.cache_bytes -= c.entry.data.len() + c.entry.context.len();
                            self.cached_entries -= 1;
                        }
                    }
                }
                debug_assert!(log.cache.len() <= log.entries.len());
                self.evict();
            }
            Decoded::HardState { region, state } => {
                self.regions.entry(region).or_default().hard_state = Some((state, seq));
            }
            Decoded::Compact { region, to } => {
                let created = !self.regions.contains_key(&region);
                let log = self
                    .regions
                    .entry(region)
                    .or_insert_with(|| RegionLog { first: to, ..Default::default() });
                // Only a compaction that moves `first` matters on replay; a
                // no-op one must not release the segment of the one that did.
                if created || to > log.first {
                    log.compact_seq = Some(seq);
                }
                if to > log.first {
                    let cache_first = log.cache_first();
                    let drop = ((to - log.first) as usize).min(log.entries.len());
                    log.entries.drain(..drop);
                    self.live_entries -= drop;
                    if log.entries.is_empty() {
                        log.first = to;
                    } else {
                        log.first += drop as u64;
                    }
                    if cache_first < to {
                        let n = ((to - cache_first) as usize).min(log.cache.len());
                        for c in log.cache.drain(..n) {
                            self.cache_bytes -= c.entry.data.len() + c.entry.context.len();
                            self.cached_entries -= 1;
                        }
                    }
                }
            }
            Decoded::Remove { region } => {
                if let Some(log) = self.regions.remove(&region) {
                    self.live_entries -= log.entries.len();
                    for c in log.cache {
                        self.cache_bytes -= c.entry.data.len() + c.entry.context.len();
                        self.cached_entries -= 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// Drops cached entries, the oldest of each region in turn, until the
    /// cache fits its capacity.
    fn evict(&mut self) {
        while self.cache_bytes > self.cache_capacity {
            let Some(id) = self.evict_ring.pop_front() else { break };
            // Ids of removed regions may linger in the ring; skip them.
            let Some(log) = self.regions.get_mut(&id) else { continue };
            log.in_ring = false;
            if let Some(c) = log.cache.pop_front() {
                self.cache_bytes -= c.entry.data.len() + c.entry.context.len();
                self.cached_entries -= 1;
            }
            if !log.cache.is_empty() {
                log.in_ring = true;
                self.evict_ring.push_back(id);
            }
        }
    }

    pub fn first_index(&self, region: RegionId) -> Option<u64> {
        self.regions.get(&region).map(|r| r.first)
    }

    pub fn last_index(&self, region: RegionId) -> Option<u64> {
        self.regions.get(&region).map(|r| r.next().saturating_sub(1))
    }

    pub fn hard_state(&self, region: RegionId) -> Option<HardState> {
        self.regions.get(&region).and_then(|r| r.hard_state.map(|(h, _)| h))
    }

    /// Region ids, sorted.
    pub fn regions(&self) -> Vec<RegionId> {
        let mut ids: Vec<RegionId> = self.regions.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    fn check_range(&self, region: RegionId, index: u64) -> Result<&RegionLog> {
        let log = self.regions.get(&region).ok_or(Error::RegionNotFound(region))?;
        if index < log.first {
            return Err(Error::Compacted { region, index, first_index: log.first });
        }
        if index >= log.next() {
            return Err(Error::Unavailable { region, index, last_index: log.next().saturating_sub(1) });
        }
        Ok(log)
    }

    pub fn term(&self, region: RegionId, index: u64) -> Result<u64> {
        let log = self.check_range(region, index)?;
        Ok(log.entries[(index - log.first) as usize].term)
    }

    /// Plans a read of `[lo, hi)` within `max_bytes` (at least one entry):
    /// each entry either from the cache or as a location to read.
    pub fn plan(&self, region: RegionId, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Planned>> {
        if lo >= hi {
            return Ok(Vec::new());
        }
        let log = self.check_range(region, lo)?;
        if hi > log.next() {
            return Err(Error::Unavailable { region, index: hi - 1, last_index: log.next() - 1 });
        }
        let cache_first = log.cache_first();
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for index in lo..hi {
            let loc = log.entries[(index - log.first) as usize];
            bytes += u64::from(loc.meta.len);
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            if index >= cache_first {
                out.push(Planned::Cached(log.cache[(index - cache_first) as usize].entry.clone()));
            } else {
                out.push(Planned::Disk(index, loc));
            }
        }
        Ok(out)
    }

    /// Whether `index` of `region` still lives at `loc` (a read may race
    /// with compaction and segment recycling).
    pub fn still_at(&self, region: RegionId, index: u64, loc: &EntryLoc) -> bool {
        self.regions.get(&region).is_some_and(|log| {
            index >= log.first
                && index < log.next()
                && log.entries[(index - log.first) as usize].block == loc.block
        })
    }

    /// The oldest segment any region needs.
    pub fn min_pin(&self) -> Option<u64> {
        self.regions.values().filter_map(RegionLog::pin).min()
    }

    /// Regions that need segments older than `below`, oldest first.
    pub fn pinning(&self, below: u64) -> Vec<PinningRegion> {
        let mut v: Vec<PinningRegion> = self
            .regions
            .iter()
            .filter_map(|(id, log)| {
                log.pin().filter(|&p| p < below).map(|p| PinningRegion {
                    region: *id,
                    segment: p,
                    entries: log.entries.len() as u64,
                })
            })
            .collect();
        v.sort_by_key(|p| (p.segment, p.region));
        v
    }

    /// Everything needed to re-write a region's state at the log head:
    /// hard state, first index, live range.
    pub fn snapshot_of(&self, region: RegionId) -> Option<(Option<HardState>, u64, u64)> {
        self.regions.get(&region).map(|r| (r.hard_state.map(|(h, _)| h), r.first, r.next()))
    }

    pub fn stats(&self) -> (usize, usize, usize, usize, usize) {
        let index_bytes = self.live_entries * std::mem::size_of::<EntryLoc>()
            + self.regions.len() * (std::mem::size_of::<RegionLog>() + std::mem::size_of::<RegionId>() + 16)
            + self.cached_entries * std::mem::size_of::<Cached>();
        (self.regions.len(), self.live_entries, index_bytes, self.cache_bytes, self.cached_entries)
    }
}

/// How [`MemIndex::apply`] treats an append that does not fit the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// A live write: refuse it (it was validated, so this is a bug).
    Strict,
    /// Recovery replays only the segments still kept, which begin at the
    /// oldest record anything live needs; a region's earlier history may be
    /// missing, so a misfit append resets the region instead. Every record
    /// that shaped the final state is replayed, so the result is the same.
    Recovery,
}

/// One entry of a planned read.
#[derive(Debug)]
pub(crate) enum Planned {
    Cached(Entry),
    Disk(u64, EntryLoc),
}
