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
const CHUNK: usize = 1 << 20;
const NIL: u32 = u32::MAX;
const HEAD: u32 = 0;
/// Bytes a node costs beyond its key and value: the node and its links.
const NODE_OVERHEAD: usize = std::mem::size_of::<Node>() + 8;

#[derive(Debug, Clone, Copy)]
struct Node {
    chunk: u32,
    offset: u32,
    key_len: u32,
    value_len: u32,
    /// Index of this node's level-0 link in `links`.
    links: u32,
}

#[derive(Debug)]
struct List {
    chunks: Vec<Vec<u8>>,
    nodes: Vec<Node>,
    links: Vec<u32>,
    height: usize,
    rng: u64,
}

impl List {
    fn new() -> Self {
        let head = Node { chunk: 0, offset: 0, key_len: 0, value_len: 0, links: 0 };
        List {
            chunks: Vec::new(),
            nodes: vec![head],
            links: vec![NIL; MAX_HEIGHT],
            height: 1,
            rng: 0x2545F4914F6CDD1D,
        }
    }

    #[inline]
    fn key(&self, n: u32) -> &[u8] {
        let node = &self.nodes[n as usize];
        let c = &self.chunks[node.chunk as usize];
        &c[node.offset as usize..node.offset as usize + node.key_len as usize]
    }

    #[inline]
    fn value(&self, n: u32) -> &[u8] {
        let node = &self.nodes[n as usize];
        let c = &self.chunks[node.chunk as usize];
        let start = node.offset as usize + node.key_len as usize;
        &c[start..start + node.value_len as usize]
    }

    #[inline]
    fn next(&self, n: u32, level: usize) -> u32 {
        self.links[self.nodes[n as usize].links as usize + level]
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
        let mut x = HEAD;
        let mut level = self.height - 1;
        loop {
            let next = self.next(x, level);
            if next != NIL && key::compare(self.key(next), target) == Ordering::Less {
                x = next;
                continue;
            }
            if level == 0 {
                return x;
            }
            level -= 1;
        }
    }

    fn alloc(&mut self, ikey: &[u8], value: &[u8]) -> (u32, u32) {
        let need = ikey.len() + value.len();
        let fits = self.chunks.last().is_some_and(|c| c.capacity() - c.len() >= need);
        if !fits {
            self.chunks.push(Vec::with_capacity(need.max(CHUNK)));
        }
        let idx = self.chunks.len() - 1;
        let c = self.chunks.last_mut().expect("a chunk was just ensured");
        let offset = c.len();
        c.extend_from_slice(ikey);
        c.extend_from_slice(value);
        (idx as u32, offset as u32)
    }

    fn insert(&mut self, ikey: &[u8], value: &[u8]) {
        let mut prev = [HEAD; MAX_HEIGHT];
        self.find_ge(ikey, Some(&mut prev));
        let height = self.random_height();
        if height > self.height {
            // Levels above the old height start at the head (already in `prev`).
            self.height = height;
        }
        let (chunk, offset) = self.alloc(ikey, value);
        let links = self.links.len() as u32;
        let n = self.nodes.len() as u32;
        self.nodes.push(Node {
            chunk,
            offset,
            key_len: ikey.len() as u32,
            value_len: value.len() as u32,
            links,
        });
        for (level, &p) in prev.iter().enumerate().take(height) {
            let after = self.next(p, level);
            self.links.push(after);
            let slot = self.nodes[p as usize].links as usize + level;
            self.links[slot] = n;
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
