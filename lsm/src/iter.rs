//! Iterators: one over each source (memtable, table, sorted level), a
//! merging iterator over all of them in internal-key order, and [`Iter`],
//! which turns versions into what a reader at one snapshot sees.
//!
//! Direction changes follow the classic scheme: the merging iterator keeps
//! every child positioned on the same side of the current key, and moving
//! the other way first re-seeks the children that are not current.

use std::cmp::Ordering;
use std::rc::Rc;

use ekv_io::File;

use crate::key::{self, Kind, MAX_SEQ};
use crate::memtable::{MemIter, MemTable};
use crate::range_del::Fragments;
use crate::table::TableIter;
use crate::version::{TableHandle, Version};
use crate::Result;

/// One sorted level (or a run of its tables) read as one sequence.
pub(crate) struct LevelIter<F: File> {
    files: Vec<Rc<TableHandle<F>>>,
    idx: usize,
    cur: Option<TableIter<F>>,
    for_compaction: bool,
}

impl<F: File> LevelIter<F> {
    pub(crate) fn new(files: Vec<Rc<TableHandle<F>>>, for_compaction: bool) -> Self {
        LevelIter { files, idx: 0, cur: None, for_compaction }
    }

    fn open(&mut self, idx: usize) -> Option<&mut TableIter<F>> {
        if idx >= self.files.len() {
            self.cur = None;
            return None;
        }
        self.idx = idx;
        let t = &self.files[idx].table;
        self.cur = Some(if self.for_compaction { t.iter_for_compaction() } else { t.iter() });
        self.cur.as_mut()
    }

    fn valid(&self) -> bool {
        self.cur.as_ref().is_some_and(|c| c.valid())
    }

    async fn skip_forward(&mut self) -> Result<()> {
        while self.cur.as_ref().is_some_and(|c| !c.valid()) {
            match self.open(self.idx + 1) {
                Some(c) => c.seek_to_first().await?,
                None => break,
            }
        }
        Ok(())
    }

    async fn skip_backward(&mut self) -> Result<()> {
        while self.cur.as_ref().is_some_and(|c| !c.valid()) {
            if self.idx == 0 {
                self.cur = None;
                break;
            }
            let i = self.idx - 1;
            if let Some(c) = self.open(i) {
                c.seek_to_last().await?;
            }
        }
        Ok(())
    }

    async fn seek_to_first(&mut self) -> Result<()> {
        if let Some(c) = self.open(0) {
            c.seek_to_first().await?;
        }
        self.skip_forward().await
    }

    async fn seek(&mut self, ikey: &[u8]) -> Result<()> {
        let ukey = key::user_key(ikey);
        let i = self.files.partition_point(|t| t.meta.upper.as_slice() <= ukey);
        if let Some(c) = self.open(i) {
            c.seek(ikey).await?;
        }
        self.skip_forward().await
    }

    async fn seek_for_prev(&mut self, ikey: &[u8]) -> Result<()> {
        let ukey = key::user_key(ikey);
        let i = self.files.partition_point(|t| t.meta.smallest.as_slice() <= ukey);
        if i == 0 {
            self.cur = None;
            return Ok(());
        }
        if let Some(c) = self.open(i - 1) {
            c.seek_for_prev(ikey).await?;
        }
        self.skip_backward().await
    }

    async fn next(&mut self) -> Result<()> {
        if let Some(c) = self.cur.as_mut() {
            c.next().await?;
        }
        self.skip_forward().await
    }

    async fn prev(&mut self) -> Result<()> {
        if let Some(c) = self.cur.as_mut() {
            c.prev().await?;
        }
        self.skip_backward().await
    }
}

/// A memtable cursor with its current entry copied out, so `key()` needs
/// no borrow of the list.
pub(crate) struct MemChild {
    it: MemIter,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl MemChild {
    fn load(&mut self) {
        if self.it.valid() {
            let (k, v) = (&mut self.key, &mut self.value);
            self.it.with_entry(|ik, iv| {
                k.clear();
                k.extend_from_slice(ik);
                v.clear();
                v.extend_from_slice(iv);
            });
        }
    }
}

/// One source of the merge.
pub(crate) enum Child<F: File> {
    Mem(Box<MemChild>),
    Table(TableIter<F>),
    Level(LevelIter<F>),
}

impl<F: File> Child<F> {
    pub(crate) fn mem(m: Rc<MemTable>) -> Self {
        Child::Mem(Box::new(MemChild { it: MemIter::new(m), key: Vec::new(), value: Vec::new() }))
    }

    fn valid(&self) -> bool {
        match self {
            Child::Mem(m) => m.it.valid(),
            Child::Table(t) => t.valid(),
            Child::Level(l) => l.valid(),
        }
    }

    fn key(&self) -> &[u8] {
        match self {
            Child::Mem(m) => &m.key,
            Child::Table(t) => t.key(),
            Child::Level(l) => l.cur.as_ref().expect("valid level iterator").key(),
        }
    }

    fn value(&self) -> &[u8] {
        match self {
            Child::Mem(m) => &m.value,
            Child::Table(t) => t.value(),
            Child::Level(l) => l.cur.as_ref().expect("valid level iterator").value(),
        }
    }

    async fn seek_to_first(&mut self) -> Result<()> {
        match self {
            Child::Mem(m) => {
                m.it.seek_to_first();
                m.load();
                Ok(())
            }
            Child::Table(t) => t.seek_to_first().await,
            Child::Level(l) => l.seek_to_first().await,
        }
    }

    async fn seek(&mut self, ikey: &[u8]) -> Result<()> {
        match self {
            Child::Mem(m) => {
                m.it.seek(ikey);
                m.load();
                Ok(())
            }
            Child::Table(t) => t.seek(ikey).await,
            Child::Level(l) => l.seek(ikey).await,
        }
    }

    async fn seek_for_prev(&mut self, ikey: &[u8]) -> Result<()> {
        match self {
            Child::Mem(m) => {
                m.it.seek_for_prev(ikey);
                m.load();
                Ok(())
            }
            Child::Table(t) => t.seek_for_prev(ikey).await,
            Child::Level(l) => l.seek_for_prev(ikey).await,
        }
    }

    async fn next(&mut self) -> Result<()> {
        match self {
            Child::Mem(m) => {
                m.it.next();
                m.load();
                Ok(())
            }
            Child::Table(t) => t.next().await,
            Child::Level(l) => l.next().await,
        }
    }

    async fn prev(&mut self) -> Result<()> {
        match self {
            Child::Mem(m) => {
                m.it.prev();
                m.load();
                Ok(())
            }
            Child::Table(t) => t.prev().await,
            Child::Level(l) => l.prev().await,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Reverse,
}

/// All sources merged in internal-key order. There are few children (the
/// memtables, the L0 tables, one per deeper level), so the current one is
/// found by a linear scan rather than a heap.
pub(crate) struct MergeIter<F: File> {
    children: Vec<Child<F>>,
    current: Option<usize>,
    dir: Direction,
}

impl<F: File> MergeIter<F> {
    pub(crate) fn new(children: Vec<Child<F>>) -> Self {
        MergeIter { children, current: None, dir: Direction::Forward }
    }

    pub(crate) fn valid(&self) -> bool {
        self.current.is_some()
    }

    pub(crate) fn key(&self) -> &[u8] {
        self.children[self.current.expect("valid merge iterator")].key()
    }

    pub(crate) fn value(&self) -> &[u8] {
        self.children[self.current.expect("valid merge iterator")].value()
    }

    fn find_smallest(&mut self) {
        let mut best: Option<usize> = None;
        for (i, c) in self.children.iter().enumerate() {
            if c.valid()
                && best.is_none_or(|b| key::compare(c.key(), self.children[b].key()) == Ordering::Less)
            {
                best = Some(i);
            }
        }
        self.current = best;
    }

    fn find_largest(&mut self) {
        let mut best: Option<usize> = None;
        for (i, c) in self.children.iter().enumerate() {
            if c.valid()
                && best.is_none_or(|b| key::compare(c.key(), self.children[b].key()) == Ordering::Greater)
            {
                best = Some(i);
            }
        }
        self.current = best;
    }

    pub(crate) async fn seek_to_first(&mut self) -> Result<()> {
        for c in &mut self.children {
            c.seek_to_first().await?;
        }
        self.dir = Direction::Forward;
        self.find_smallest();
        Ok(())
    }

    pub(crate) async fn seek(&mut self, ikey: &[u8]) -> Result<()> {
        for c in &mut self.children {
            c.seek(ikey).await?;
        }
        self.dir = Direction::Forward;
        self.find_smallest();
        Ok(())
    }

    pub(crate) async fn seek_for_prev(&mut self, ikey: &[u8]) -> Result<()> {
        for c in &mut self.children {
            c.seek_for_prev(ikey).await?;
        }
        self.dir = Direction::Reverse;
        self.find_largest();
        Ok(())
    }

    pub(crate) async fn next(&mut self) -> Result<()> {
        let cur = self.current.expect("next on an invalid merge iterator");
        if self.dir != Direction::Forward {
            // Every other child is before the current key: move each to the
            // first entry after it (keys are unique across children).
            let k = self.key().to_vec();
            for (i, c) in self.children.iter_mut().enumerate() {
                if i != cur {
                    c.seek(&k).await?;
                    if c.valid() && key::compare(c.key(), &k) == Ordering::Equal {
                        c.next().await?;
                    }
                }
            }
            self.dir = Direction::Forward;
        }
        self.children[cur].next().await?;
        self.find_smallest();
        Ok(())
    }

    pub(crate) async fn prev(&mut self) -> Result<()> {
        let cur = self.current.expect("prev on an invalid merge iterator");
        if self.dir != Direction::Reverse {
            let k = self.key().to_vec();
            for (i, c) in self.children.iter_mut().enumerate() {
                if i != cur {
                    c.seek_for_prev(&k).await?;
                    if c.valid() && key::compare(c.key(), &k) == Ordering::Equal {
                        c.prev().await?;
                    }
                }
            }
            self.dir = Direction::Reverse;
        }
        self.children[cur].prev().await?;
        self.find_largest();
        Ok(())
    }
}

/// Builds the children for reading `[lower, upper)` (tree keys) from the
/// given memtables (newest first) and version.
pub(crate) fn children<F: File>(
    mems: &[Rc<MemTable>],
    version: &Version<F>,
    lower: &[u8],
    upper: &[u8],
    for_compaction: bool,
) -> Vec<Child<F>> {
    let mut out: Vec<Child<F>> = mems.iter().map(|m| Child::mem(m.clone())).collect();
    for (level, files) in version.levels.iter().enumerate() {
        let files: Vec<_> = files.iter().filter(|t| t.meta.overlaps(lower, upper)).cloned().collect();
        if files.is_empty() {
            continue;
        }
        if level == 0 {
            out.extend(files.iter().map(|t| {
                Child::Table(if for_compaction { t.table.iter_for_compaction() } else { t.table.iter() })
            }));
        } else {
            out.push(Child::Level(LevelIter::new(files, for_compaction)));
        }
    }
    out
}

/// An iterator over one column family at one snapshot, within bounds,
/// forward and in reverse, with seek. Created by [`crate::Lsm::iter`].
///
/// It pins the memtables and tables it started on: compactions that finish
/// while it lives do not remove its files.
pub struct Iter<F: File> {
    merge: MergeIter<F>,
    snapshot: u64,
    tombstones: Fragments,
    /// Tree-key bounds `[lower, upper)`, family prefix included.
    lower: Vec<u8>,
    upper: Vec<u8>,
    dir: Direction,
    valid: bool,
    key: Vec<u8>,
    value: Vec<u8>,
    _pins: Box<dyn std::any::Any>,
}

impl<F: File> std::fmt::Debug for Iter<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iter").field("snapshot", &self.snapshot).field("valid", &self.valid).finish()
    }
}

impl<F: File + 'static> Iter<F> {
    pub(crate) fn new(
        merge: MergeIter<F>,
        snapshot: u64,
        tombstones: Fragments,
        lower: Vec<u8>,
        upper: Vec<u8>,
        pins: Box<dyn std::any::Any>,
    ) -> Self {
        Iter {
            merge,
            snapshot,
            tombstones,
            lower,
            upper,
            dir: Direction::Forward,
            valid: false,
            key: Vec::new(),
            value: Vec::new(),
            _pins: pins,
        }
    }

    /// Whether the iterator is on an entry.
    pub fn valid(&self) -> bool {
        self.valid
    }

    /// The current key (without the family prefix). Only when [`Iter::valid`].
    pub fn key(&self) -> &[u8] {
        debug_assert!(self.valid);
        &self.key[key::CF_PREFIX_LEN..]
    }

    /// The current value. Only when [`Iter::valid`].
    pub fn value(&self) -> &[u8] {
        debug_assert!(self.valid);
        &self.value
    }

    /// Moves to the first key in bounds.
    pub async fn seek_to_first(&mut self) -> Result<()> {
        let target = key::seek_key(&self.lower, MAX_SEQ);
        self.merge.seek(&target).await?;
        self.dir = Direction::Forward;
        self.find_next(None).await
    }

    /// Moves to the last key in bounds.
    pub async fn seek_to_last(&mut self) -> Result<()> {
        let target = key::seek_key(&self.upper, MAX_SEQ);
        self.merge.seek_for_prev(&target).await?;
        self.dir = Direction::Reverse;
        self.find_prev().await
    }

    /// Moves to the first key `>= key` (clamped to the bounds).
    pub async fn seek(&mut self, user_key: &[u8]) -> Result<()> {
        let mut tk = self.lower[..key::CF_PREFIX_LEN].to_vec();
        tk.extend_from_slice(user_key);
        if tk < self.lower {
            return self.seek_to_first().await;
        }
        self.merge.seek(&key::seek_key(&tk, MAX_SEQ)).await?;
        self.dir = Direction::Forward;
        self.find_next(None).await
    }

    /// Moves to the last key `<= key` (clamped to the bounds).
    pub async fn seek_for_prev(&mut self, user_key: &[u8]) -> Result<()> {
        let mut tk = self.lower[..key::CF_PREFIX_LEN].to_vec();
        tk.extend_from_slice(user_key);
        if tk >= self.upper {
            return self.seek_to_last().await;
        }
        // (k, 0, 0) is the last internal key of `k`: land on its oldest version.
        self.merge.seek_for_prev(&key::encode(&tk, 0, 0)).await?;
        self.dir = Direction::Reverse;
        self.find_prev().await
    }

    /// Moves to the next key.
    pub async fn next(&mut self) -> Result<()> {
        debug_assert!(self.valid);
        let cur = std::mem::take(&mut self.key);
        if self.dir == Direction::Reverse {
            self.merge.seek(&key::encode(&cur, 0, 0)).await?;
            self.dir = Direction::Forward;
        } else if self.merge.valid() {
            self.merge.next().await?;
        }
        self.find_next(Some(cur)).await
    }

    /// Moves to the previous key.
    pub async fn prev(&mut self) -> Result<()> {
        debug_assert!(self.valid);
        if self.dir == Direction::Forward {
            let cur = std::mem::take(&mut self.key);
            self.merge.seek_for_prev(&key::seek_key(&cur, MAX_SEQ)).await?;
            self.dir = Direction::Reverse;
        }
        self.find_prev().await
    }

    /// Forward to the first visible live entry, skipping versions of `skip`
    /// (the key just left) and anything deleted.
    async fn find_next(&mut self, mut skip: Option<Vec<u8>>) -> Result<()> {
        while self.merge.valid() {
            let ik = self.merge.key();
            let ukey = key::user_key(ik);
            if ukey >= self.upper.as_slice() {
                break;
            }
            let seq = key::seq_of(ik);
            if seq <= self.snapshot && skip.as_deref().is_none_or(|s| ukey > s) {
                let deleted = key::kind_of(ik) == Kind::Delete as u8
                    || self.tombstones.covers(ukey, seq, self.snapshot);
                if !deleted {
                    self.key.clear();
                    self.key.extend_from_slice(ukey);
                    self.value.clear();
                    self.value.extend_from_slice(self.merge.value());
                    self.valid = true;
                    return Ok(());
                }
                skip = Some(ukey.to_vec());
            }
            self.merge.next().await?;
        }
        self.valid = false;
        Ok(())
    }

    /// Backward: gathers the versions of one user key (oldest first) and
    /// stops once it has passed the newest visible one.
    async fn find_prev(&mut self) -> Result<()> {
        let mut found = false;
        while self.merge.valid() {
            let ik = self.merge.key();
            let ukey = key::user_key(ik);
            if ukey < self.lower.as_slice() {
                break;
            }
            let seq = key::seq_of(ik);
            if seq <= self.snapshot {
                if found && ukey < self.key.as_slice() {
                    break;
                }
                let deleted = key::kind_of(ik) == Kind::Delete as u8
                    || self.tombstones.covers(ukey, seq, self.snapshot);
                if deleted {
                    found = false;
                    self.key.clear();
                    self.key.extend_from_slice(ukey);
                } else {
                    found = true;
                    self.key.clear();
                    self.key.extend_from_slice(ukey);
                    self.value.clear();
                    self.value.extend_from_slice(self.merge.value());
                }
            }
            self.merge.prev().await?;
        }
        self.valid = found;
        Ok(())
    }
}
