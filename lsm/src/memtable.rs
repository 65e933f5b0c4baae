//! The memtable: a skip list of internal keys in an arena.
//!
//! Keys and values are copied into 1 MiB arena chunks; nodes live in one
//! vector and link by index, so an insert never moves what an iterator
//! points at and an iterator is just `(Rc<MemTable>, node)`. The shard is
//! single-threaded, so the list needs no atomics: inserts and reads take
//! short `RefCell` borrows and never hold one across an await.
//!
//! A memtable also carries the range deletions written into it and the
//! caller's flush marker of the newest batch it holds.

use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::rc::Rc;

use crate::key::{self, Kind, Tombstone};

const MAX_HEIGHT: usize = 12;
/// Arena chunk size; a node is addressed as `chunk << CHUNK_BITS | offset`.
const CHUNK_BITS: u32 = 20;
const CHUNK: usize = 1 << CHUNK_BITS;
/// Chunks an arena may have (4 GiB of memtable at most, far above any
/// sane `memtable_size`); the last id is kept free for `NIL`.
const MAX_CHUNKS: usize = (1 << (32 - CHUNK_BITS)) - 1;
const NIL: u32 = u32::MAX;
const HEAD: u32 = 0;
/// Node header: key length u32, value length u32, height u8, 3 bytes pad.
const NODE_HEADER: usize = 12;
/// Bytes a node costs beyond its key and value (header and average links).
const NODE_OVERHEAD: usize = NODE_HEADER + 6;

/// The skip list. A node lives in the arena as
/// `key_len u32 | value_len u32 | height u8 | pad | next u32 * height | key | value`,
/// so a search step touches one node's links and, right after them, its key.
#[derive(Debug)]
struct List {
    chunks: Vec<Vec<u8>>,
    height: usize,
    rng: u64,
}

#[inline]
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

impl List {
    fn new() -> Self {
        let mut head = Vec::with_capacity(CHUNK);
        head.extend_from_slice(&[0u8; NODE_HEADER]);
        head[8] = MAX_HEIGHT as u8;
        for _ in 0..MAX_HEIGHT {
            head.extend_from_slice(&NIL.to_le_bytes());
        }
        List { chunks: vec![head], height: 1, rng: 0x2545F4914F6CDD1D }
    }

    #[inline]
    fn node(&self, n: u32) -> (&[u8], usize) {
        (&self.chunks[(n >> CHUNK_BITS) as usize], (n & (CHUNK as u32 - 1)) as usize)
    }

    #[inline]
    fn key(&self, n: u32) -> &[u8] {
        let (c, o) = self.node(n);
        let start = o + NODE_HEADER + 4 * c[o + 8] as usize;
        &c[start..start + u32_at(c, o) as usize]
    }

    #[inline]
    fn value(&self, n: u32) -> &[u8] {
        let (c, o) = self.node(n);
        let start = o + NODE_HEADER + 4 * c[o + 8] as usize + u32_at(c, o) as usize;
        &c[start..start + u32_at(c, o + 4) as usize]
    }

    #[inline]
    fn next(&self, n: u32, level: usize) -> u32 {
        let (c, o) = self.node(n);
        u32_at(c, o + NODE_HEADER + 4 * level)
    }

    fn set_next(&mut self, n: u32, level: usize, to: u32) {
        let o = (n & (CHUNK as u32 - 1)) as usize + NODE_HEADER + 4 * level;
        self.chunks[(n >> CHUNK_BITS) as usize][o..o + 4].copy_from_slice(&to.to_le_bytes());
    }

    fn random_height(&mut self) -> usize {
        // xorshift; branching factor 4.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        let mut h = 1;
        let mut bits = x;
        while h < MAX_HEIGHT && bits & 3 == 0 {
            h += 1;
            bits >>= 2;
        }
        h
    }

    /// First node with key >= `target`, and the last node before it on
    /// every level.
    fn find_ge(&self, target: &[u8], mut prev: Option<&mut [u32; MAX_HEIGHT]>) -> u32 {
        let mut x = HEAD;
        let mut level = self.height - 1;
        loop {
            let next = self.next(x, level);
            if next != NIL && key::compare(self.key(next), target) == Ordering::Less {
                x = next;
                continue;
            }
            if let Some(p) = prev.as_deref_mut() {
                p[level] = x;
            }
            if level == 0 {
                return next;
            }
            level -= 1;
        }
    }

    /// Last node with key < `target` (HEAD if none).
    fn find_lt(&self, target: &[u8]) -> u32 {
        let mut prev = [HEAD; MAX_HEIGHT];
        self.find_ge(target, Some(&mut prev));
        prev[0]
    }

    fn insert(&mut self, ikey: &[u8], value: &[u8]) {
        let mut prev = [HEAD; MAX_HEIGHT];
        self.find_ge(ikey, Some(&mut prev));
        let height = self.random_height();
        // Levels above the old height start at the head (already in `prev`).
        self.height = self.height.max(height);
        let need = NODE_HEADER + 4 * height + ikey.len() + value.len();
        // A node must start below CHUNK to be addressable; an entry larger than
        // a chunk gets a chunk of its own, starting at 0.
        let fits = self.chunks.last().is_some_and(|c| c.len() < CHUNK && c.capacity() - c.len() >= need);
        if !fits {
            assert!(self.chunks.len() < MAX_CHUNKS, "memtable arena exhausted");
            self.chunks.push(Vec::with_capacity(need.max(CHUNK)));
        }
        let chunk = self.chunks.len() - 1;
        let mut nexts = [NIL; MAX_HEIGHT];
        for (l, n) in nexts.iter_mut().enumerate().take(height) {
            *n = self.next(prev[l], l);
        }
        let c = self.chunks.last_mut().expect("a chunk was just ensured");
        let offset = c.len();
        c.extend_from_slice(&(ikey.len() as u32).to_le_bytes());
        c.extend_from_slice(&(value.len() as u32).to_le_bytes());
        c.extend_from_slice(&[height as u8, 0, 0, 0]);
        for n in &nexts[..height] {
            c.extend_from_slice(&n.to_le_bytes());
        }
        c.extend_from_slice(ikey);
        c.extend_from_slice(value);
        let n = (chunk as u32) << CHUNK_BITS | offset as u32;
        for (level, &p) in prev.iter().enumerate().take(height) {
            self.set_next(p, level, n);
        }
    }
}

/// One memtable. Shared as `Rc<MemTable>` by the tree, its iterators and the
/// flush that writes it out.
#[derive(Debug)]
pub(crate) struct MemTable {
    id: u64,
    list: RefCell<List>,
    tombstones: RefCell<Vec<Tombstone>>,
    bytes: Cell<usize>,
    entries: Cell<u64>,
    min_seq: Cell<u64>,
    max_seq: Cell<u64>,
    marker: RefCell<Option<Vec<u8>>>,
}

impl MemTable {
    pub(crate) fn new(id: u64) -> Self {
        MemTable {
            id,
            list: RefCell::new(List::new()),
            tombstones: RefCell::new(Vec::new()),
            bytes: Cell::new(0),
            entries: Cell::new(0),
            min_seq: Cell::new(u64::MAX),
            max_seq: Cell::new(0),
            marker: RefCell::new(None),
        }
    }

    /// Ordinal of this memtable (flushes go in this order).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    fn note_seq(&self, seq: u64) {
        self.min_seq.set(self.min_seq.get().min(seq));
        self.max_seq.set(self.max_seq.get().max(seq));
    }

    pub(crate) fn add(&self, user_key: &[u8], seq: u64, kind: Kind, value: &[u8]) {
        let mut ikey = Vec::with_capacity(user_key.len() + key::TRAILER_LEN);
        key::encode_into(&mut ikey, user_key, seq, kind as u8);
        self.list.borrow_mut().insert(&ikey, value);
        self.bytes.set(self.bytes.get() + ikey.len() + value.len() + NODE_OVERHEAD);
        self.entries.set(self.entries.get() + 1);
        self.note_seq(seq);
    }

    pub(crate) fn add_tombstone(&self, t: Tombstone) {
        self.bytes.set(self.bytes.get() + t.start.len() + t.end.len() + 64);
        self.note_seq(t.seq);
        self.tombstones.borrow_mut().push(t);
    }

    pub(crate) fn set_marker(&self, marker: Vec<u8>) {
        *self.marker.borrow_mut() = Some(marker);
    }

    pub(crate) fn marker(&self) -> Option<Vec<u8>> {
        self.marker.borrow().clone()
    }

    /// Approximate memory use.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.get()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.get() == 0 && self.tombstones.borrow().is_empty()
    }

    /// `(min, max)` seq of what it holds; `None` if empty.
    pub(crate) fn seq_range(&self) -> Option<(u64, u64)> {
        (!self.is_empty()).then(|| (self.min_seq.get(), self.max_seq.get()))
    }

    pub(crate) fn tombstones(&self) -> std::cell::Ref<'_, Vec<Tombstone>> {
        self.tombstones.borrow()
    }

    /// Newest version of `user_key` with seq <= `seq`.
    pub(crate) fn get(&self, user_key: &[u8], seq: u64) -> Option<(u64, Kind, bytes::Bytes)> {
        let list = self.list.borrow();
        let target = key::seek_key(user_key, seq);
        let n = list.find_ge(&target, None);
        if n == NIL {
            return None;
        }
        let k = list.key(n);
        if key::user_key(k) != user_key {
            return None;
        }
        let kind = Kind::from_u8(key::kind_of(k)).expect("memtable holds only kinds it wrote");
        let value = match kind {
            Kind::Put => bytes::Bytes::copy_from_slice(list.value(n)),
            Kind::Delete => bytes::Bytes::new(),
        };
        Some((key::seq_of(k), kind, value))
    }

    /// Highest seq <= `snapshot` of a range deletion covering `user_key`.
    pub(crate) fn max_covering_tombstone(&self, user_key: &[u8], snapshot: u64) -> u64 {
        self.tombstones
            .borrow()
            .iter()
            .filter(|t| t.seq <= snapshot && t.start.as_slice() <= user_key && user_key < t.end.as_slice())
            .map(|t| t.seq)
            .max()
            .unwrap_or(0)
    }
}

/// A cursor over one memtable. Stays valid while the memtable grows.
#[derive(Debug)]
pub(crate) struct MemIter {
    mem: Rc<MemTable>,
    node: u32,
}

impl MemIter {
    pub(crate) fn new(mem: Rc<MemTable>) -> Self {
        MemIter { mem, node: NIL }
    }

    pub(crate) fn valid(&self) -> bool {
        self.node != NIL && self.node != HEAD
    }

    /// Runs `f` on the current key and value (the list is borrowed for the
    /// call only).
    pub(crate) fn with_entry<R>(&self, f: impl FnOnce(&[u8], &[u8]) -> R) -> R {
        let list = self.mem.list.borrow();
        f(list.key(self.node), list.value(self.node))
    }

    pub(crate) fn seek_to_first(&mut self) {
        self.node = self.mem.list.borrow().next(HEAD, 0);
    }

    pub(crate) fn seek(&mut self, ikey: &[u8]) {
        self.node = self.mem.list.borrow().find_ge(ikey, None);
    }

    /// Last entry <= `ikey`.
    pub(crate) fn seek_for_prev(&mut self, ikey: &[u8]) {
        let list = self.mem.list.borrow();
        let n = list.find_ge(ikey, None);
        self.node = if n != NIL && key::compare(list.key(n), ikey) == Ordering::Equal {
            n
        } else {
            let p = list.find_lt(ikey);
            if p == HEAD {
                NIL
            } else {
                p
            }
        };
    }

    pub(crate) fn next(&mut self) {
        debug_assert!(self.valid());
        self.node = self.mem.list.borrow().next(self.node, 0);
    }

    pub(crate) fn prev(&mut self) {
        debug_assert!(self.valid());
        let list = self.mem.list.borrow();
        let p = list.find_lt(list.key(self.node));
        self.node = if p == HEAD { NIL } else { p };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(mem: &Rc<MemTable>) -> Vec<Vec<u8>> {
        let mut it = MemIter::new(mem.clone());
        it.seek_to_first();
        let mut out = Vec::new();
        while it.valid() {
            out.push(it.with_entry(|k, _| k.to_vec()));
            it.next();
        }
        out
    }

    #[test]
    fn sorted_both_ways_and_versions_resolve() {
        let mem = Rc::new(MemTable::new(1));
        let mut rng = 7u64;
        let mut expect = Vec::new();
        for seq in 1..=2000u64 {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let k = format!("k{:03}", (rng >> 33) % 300);
            mem.add(k.as_bytes(), seq, Kind::Put, &seq.to_le_bytes());
            expect.push(key::encode(k.as_bytes(), seq, Kind::Put as u8));
        }
        expect.sort_by(|a, b| key::compare(a, b));
        assert_eq!(collect(&mem), expect);

        let mut it = MemIter::new(mem.clone());
        it.seek_for_prev(&key::seek_key(b"zzz", 0));
        let mut back = Vec::new();
        while it.valid() {
            back.push(it.with_entry(|k, _| k.to_vec()));
            it.prev();
        }
        back.reverse();
        assert_eq!(back, expect);

        // The newest version at or below a seq wins.
        let probe = key::user_key(&expect[10]).to_vec();
        let versions: Vec<u64> =
            expect.iter().filter(|k| key::user_key(k) == probe).map(|k| key::seq_of(k)).collect();
        let newest = versions[0];
        assert_eq!(mem.get(&probe, u64::MAX >> 8).map(|g| g.0), Some(newest));
        let below = versions.get(1).copied();
        assert_eq!(mem.get(&probe, newest - 1).map(|g| g.0), below);
        assert!(mem.get(b"nope", 5000).is_none());
    }

    #[test]
    fn seek_for_prev_lands_on_or_before() {
        let mem = Rc::new(MemTable::new(1));
        for (i, k) in ["b", "d", "f"].iter().enumerate() {
            mem.add(k.as_bytes(), i as u64 + 1, Kind::Put, b"v");
        }
        let mut it = MemIter::new(mem.clone());
        it.seek_for_prev(&key::seek_key(b"e", 100));
        assert_eq!(it.with_entry(|k, _| key::user_key(k).to_vec()), b"d");
        it.seek_for_prev(&key::seek_key(b"a", 100));
        assert!(!it.valid());
        it.seek(&key::seek_key(b"c", 100));
        assert_eq!(it.with_entry(|k, _| key::user_key(k).to_vec()), b"d");
        it.seek(&key::seek_key(b"g", 100));
        assert!(!it.valid());
    }
}
