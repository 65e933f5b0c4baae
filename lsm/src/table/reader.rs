//! Reading a table: [`Table`] (open, point lookups) and [`TableIter`].

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use ekv_io::File;

use crate::error::{Error, Result};
use crate::key::{self, Kind, Tombstone, KIND_SEEK, MAX_SEQ};
use crate::table::block::{Block, Cursor, Target};
use crate::table::bloom::Filter;
use crate::table::cache::BlockCache;
use crate::table::format::{self, BlockHandle, Corrupt, Footer, BLOCK_TRAILER_LEN, FOOTER_LEN};
use crate::table::TableInfo;

/// Bytes a compaction iterator reads at a time, and the most a scanning
/// iterator reads ahead.
const READAHEAD: u64 = 256 << 10;
/// A scanning iterator's first read-ahead; doubles per sequential block.
const READAHEAD_START: u64 = 16 << 10;
/// Sequential block loads before an iterator starts reading ahead.
const READAHEAD_AFTER: u32 = 2;

/// One data block in the index.
struct IndexEntry {
    /// Invariant: `>=` every key of the block and `<` every key of the next.
    key: Box<[u8]>,
    handle: BlockHandle,
}

/// An open, immutable table. The index, filter, tombstones and properties
/// are read and checked at [`open`](Self::open) and kept in memory; data
/// blocks are read on demand, through the [`BlockCache`] except for
/// [compaction reads](Self::iter_for_compaction).
pub struct Table<F: File> {
    file: F,
    number: u64,
    info: TableInfo,
    footer: Footer,
    /// End of the data blocks = start of the first meta block.
    data_end: u64,
    index: Vec<IndexEntry>,
    filter: Option<Filter>,
    tombstones: Vec<Tombstone>,
    global_seq: Option<u64>,
    cache: Rc<BlockCache>,
    /// Key buffer for [`get`](Self::get), borrowed only between awaits.
    get_cursor: RefCell<Cursor>,
}

impl<F: File> std::fmt::Debug for Table<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("number", &self.number)
            .field("path", &self.file.path())
            .field("global_seq", &self.global_seq)
            .field("data_blocks", &self.index.len())
            .field("info", &self.info)
            .finish()
    }
}

impl<F: File> Table<F> {
    /// Opens the table in `file`, of `size` bytes (as recorded when it was
    /// written). With `global_seq`, every entry and tombstone reads as
    /// having that seq (ingested tables are written with seq 0).
    ///
    /// # Errors
    ///
    /// [`Error::Corruption`] naming the file and the offset of the first
    /// damaged block (the footer's offset for a damaged footer or a size
    /// that does not match); [`Error::Io`] if reading fails.
    pub async fn open(
        file: F,
        number: u64,
        size: u64,
        global_seq: Option<u64>,
        cache: Rc<BlockCache>,
    ) -> Result<Table<F>> {
        if global_seq.is_some_and(|s| s > MAX_SEQ) {
            return Err(Error::InvalidArgument(format!("global seq {global_seq:?} out of range")));
        }
        let path = file.path().to_path_buf();
        let Some(footer_at) = size.checked_sub(FOOTER_LEN as u64) else {
            return Err(Corrupt("file shorter than a footer").at(&path, 0));
        };
        let raw = file.read_at(footer_at, FOOTER_LEN).await?;
        let footer = Footer::decode_from(&raw).map_err(|c| c.at(&path, footer_at))?;
        if footer.file_size != size {
            return Err(Corrupt("file size differs from the footer's").at(&path, footer_at));
        }
        let metas = [footer.filter, footer.tombstones, footer.properties, footer.index];
        if metas.iter().any(|h| h.end().is_none_or(|end| end > footer_at)) {
            return Err(Corrupt("meta block handle out of bounds").at(&path, footer_at));
        }
        // The meta blocks sit together before the footer: one read.
        let data_end = metas.iter().map(|h| h.offset).min().unwrap_or(0);
        let raw = file.read_at(data_end, (footer_at - data_end) as usize).await?;
        let meta = |h| meta_block(&raw, data_end, h, &path);
        let filter = Filter::decode(meta(footer.filter)?).map_err(|c| c.at(&path, footer.filter.offset))?;
        let mut tombstones = format::decode_tombstones(meta(footer.tombstones)?)
            .map_err(|c| c.at(&path, footer.tombstones.offset))?;
        let mut info = format::decode_properties(meta(footer.properties)?)
            .map_err(|c| c.at(&path, footer.properties.offset))?;
        if info.num_tombstones != tombstones.len() as u64 {
            return Err(
                Corrupt("tombstone count differs from the properties'").at(&path, footer.properties.offset)
            );
        }
        let index =
            decode_index(meta(footer.index)?, data_end).map_err(|c| c.at(&path, footer.index.offset))?;
        if index.is_empty() != (info.num_entries == 0) {
            return Err(Corrupt("index and properties disagree on emptiness").at(&path, footer.index.offset));
        }
        info.size = size;
        if let Some(seq) = global_seq {
            for t in &mut tombstones {
                t.seq = seq;
            }
            for k in [&mut info.smallest, &mut info.largest].into_iter().flatten() {
                key::set_seq(k, seq);
            }
            if info.num_entries > 0 || info.num_tombstones > 0 {
                (info.min_seq, info.max_seq) = (seq, seq);
            }
        }
        Ok(Table {
            file,
            number,
            info,
            footer,
            data_end,
            index,
            filter,
            tombstones,
            global_seq,
            cache,
            get_cursor: RefCell::default(),
        })
    }

    /// The table's number, its key in the block cache.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// Where the file is, for messages.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// What the table holds (with the global seq applied to seqs and bounds).
    pub fn info(&self) -> &TableInfo {
        &self.info
    }

    /// Where the meta blocks are, for tooling.
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// Where the data blocks are, in key order, for tooling.
    pub fn data_blocks(&self) -> impl ExactSizeIterator<Item = BlockHandle> + '_ {
        self.index.iter().map(|e| e.handle)
    }

    /// The range deletions, sorted by start then seq descending.
    pub fn tombstones(&self) -> &[Tombstone] {
        &self.tombstones
    }

    /// False if the table certainly has no version of `user_key`, which
    /// spares a block read on most lookups of absent keys.
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        self.filter.as_ref().is_none_or(|f| f.may_contain(user_key))
    }

    /// Newest point version of user_key with seq <= `seq`: (its seq, kind,
    /// value). Consults the filter first. Ignores tombstones.
    ///
    /// # Errors
    ///
    /// [`Error::Corruption`] at the offset of a damaged data block;
    /// [`Error::Io`].
    pub async fn get(&self, user_key: &[u8], seq: u64) -> Result<Option<(u64, Kind, Bytes)>> {
        if !self.may_contain(user_key) {
            return Ok(None);
        }
        let target = match self.global_seq {
            Some(g) if g > seq => return Ok(None),
            // Every version reads as `g`: the first stored one wins.
            Some(_) => Target { user: user_key, trailer: u64::MAX },
            None => Target { user: user_key, trailer: key::trailer(seq.min(MAX_SEQ), KIND_SEEK) },
        };
        let mut idx = self.index.partition_point(|e| target.cmp_key(&e.key).is_lt());
        // The first key at or after the target is in block `idx`, or first in
        // the next one when the target falls between a block's last key and
        // its separator.
        while idx < self.index.len() {
            let block = self.cached_block(idx).await?;
            let mut c = self.get_cursor.borrow_mut();
            c.seek(&block, &target).map_err(|e| self.corrupt(idx, e))?;
            if c.valid() {
                if key::user_key(c.key()) != user_key {
                    return Ok(None);
                }
                let kind = Kind::from_u8(key::kind_of(c.key()))
                    .ok_or_else(|| self.corrupt(idx, Corrupt("unknown entry kind")))?;
                let seq = self.global_seq.unwrap_or_else(|| key::seq_of(c.key()));
                return Ok(Some((seq, kind, c.value_bytes(&block))));
            }
            idx += 1;
        }
        Ok(None)
    }

    /// An iterator reading through the block cache.
    pub fn iter(self: &Rc<Self>) -> TableIter<F> {
        TableIter::new(self.clone(), None)
    }

    /// An iterator for compactions: reads the data in large sequential
    /// pieces and leaves the block cache alone, so one compaction neither
    /// issues a read per block nor evicts what foreground reads need. Meant
    /// for forward scans; other moves work but reread.
    pub fn iter_for_compaction(self: &Rc<Self>) -> TableIter<F> {
        TableIter::new(self.clone(), Some(ReadAhead { start: 0, chunk: Bytes::new() }))
    }

    /// Closes the file.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if closing fails.
    pub async fn close(self) -> Result<()> {
        Ok(self.file.close().await?)
    }

    fn corrupt(&self, idx: usize, c: Corrupt) -> Error {
        c.at(self.path(), self.index[idx].handle.offset)
    }

    /// Data block `idx`, from the cache or else from disk into the cache.
    async fn cached_block(&self, idx: usize) -> Result<Block> {
        let h = self.index[idx].handle;
        if let Some(b) = self.cache.get(self.number, h.offset) {
            return Ok(b);
        }
        let raw = self.file.read_at(h.offset, h.size as usize + BLOCK_TRAILER_LEN).await?;
        let block = format::verify_block(&raw, h.size as usize)
            .and_then(|contents| Block::new(Bytes::copy_from_slice(contents)))
            .map_err(|c| self.corrupt(idx, c))?;
        self.cache.insert(self.number, h.offset, block.clone());
        Ok(block)
    }

    /// Data block `idx` if the cache has it.
    fn cache_only(&self, idx: usize) -> Option<Block> {
        self.cache.get(self.number, self.index[idx].handle.offset)
    }

    /// Data block `idx` out of the read-ahead buffer, refilled with `size`
    /// bytes from the block on when it does not hold the block.
    async fn read_ahead_block(&self, idx: usize, ra: &mut ReadAhead, size: u64) -> Result<Block> {
        let h = self.index[idx].handle;
        let len = h.size as usize + BLOCK_TRAILER_LEN;
        let have = ra.start..ra.start + ra.chunk.len() as u64;
        if !(have.contains(&h.offset) && h.offset + len as u64 <= have.end) {
            let end = (h.offset + size).min(self.data_end).max(h.offset + len as u64);
            let raw = self.file.read_at(h.offset, (end - h.offset) as usize).await?;
            ra.chunk = Bytes::copy_from_slice(&raw);
            ra.start = h.offset;
        }
        let start = (h.offset - ra.start) as usize;
        let raw = ra.chunk.get(start..start + len).unwrap_or_default();
        format::verify_block(raw, h.size as usize).map_err(|c| self.corrupt(idx, c))?;
        Block::new(ra.chunk.slice(start..start + h.size as usize)).map_err(|c| self.corrupt(idx, c))
    }
}

/// The contents of meta block `h` out of `raw`, the bytes from `raw_start`
/// to the footer.
fn meta_block<'a>(raw: &'a [u8], raw_start: u64, h: BlockHandle, path: &Path) -> Result<&'a [u8]> {
    let start = (h.offset - raw_start) as usize;
    let raw = raw.get(start..start + h.size as usize + BLOCK_TRAILER_LEN).unwrap_or_default();
    format::verify_block(raw, h.size as usize).map_err(|c| c.at(path, h.offset))
}

/// Decodes the index block into memory, checking that keys increase and
/// that handles point at disjoint, increasing ranges of the data area.
fn decode_index(buf: &[u8], data_end: u64) -> std::result::Result<Vec<IndexEntry>, Corrupt> {
    let block = Block::new(Bytes::copy_from_slice(buf))?;
    let mut c = Cursor::default();
    let mut out: Vec<IndexEntry> = Vec::new();
    let mut prev_end = 0;
    c.seek_to_first(&block)?;
    while c.valid() {
        let handle = BlockHandle::decode_from(c.value(&block))?;
        match handle.end() {
            Some(end) if handle.offset >= prev_end && end <= data_end => prev_end = end,
            _ => return Err(Corrupt("data block handle out of bounds")),
        }
        if out.last().is_some_and(|p| key::compare(&p.key, c.key()).is_ge()) {
            return Err(Corrupt("index keys out of order"));
        }
        out.push(IndexEntry { key: c.key().into(), handle });
        c.next(&block)?;
    }
    Ok(out)
}

/// The buffer of a compaction iterator.
struct ReadAhead {
    /// File offset of `chunk[0]`.
    start: u64,
    chunk: Bytes,
}

/// A cursor over a table's point entries in internal-key order. Holds its
/// table and current block, so it stays valid while the cache evicts and
/// borrows nothing across awaits. After an error it is invalid.
pub struct TableIter<F: File> {
    table: Rc<Table<F>>,
    ahead: Option<ReadAhead>,
    /// A scanning iterator's own read-ahead (RocksDB calls it automatic
    /// read-ahead): after a few sequential block loads, blocks missing from
    /// the cache come from growing sequential reads instead of one
    /// io_uring read each. They are not put in the cache, so a scan does
    /// not push out hot blocks.
    auto: Option<ReadAhead>,
    /// Sequential block loads in a row.
    run: u32,
    /// Index entry of `block`.
    idx: usize,
    block: Option<Block>,
    cursor: Cursor,
    /// The current key with the global seq in its trailer, when there is one.
    global_key: Vec<u8>,
}

impl<F: File> std::fmt::Debug for TableIter<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableIter")
            .field("table", &self.table.number)
            .field("block", &self.idx)
            .field("valid", &self.valid())
            .finish()
    }
}

impl<F: File> TableIter<F> {
    fn new(table: Rc<Table<F>>, ahead: Option<ReadAhead>) -> Self {
        Self {
            table,
            ahead,
            auto: None,
            run: 0,
            idx: 0,
            block: None,
            cursor: Cursor::default(),
            global_key: Vec::new(),
        }
    }

    /// Whether the iterator is at an entry.
    pub fn valid(&self) -> bool {
        self.cursor.valid() && self.block.is_some()
    }

    /// The current internal key (empty when not valid). With a global seq,
    /// its trailer carries that seq.
    pub fn key(&self) -> &[u8] {
        match (self.valid(), self.table.global_seq) {
            (false, _) => &[],
            (true, Some(_)) => &self.global_key,
            (true, None) => self.cursor.key(),
        }
    }

    /// The current value (empty when not valid).
    pub fn value(&self) -> &[u8] {
        match &self.block {
            Some(b) if self.cursor.valid() => self.cursor.value(b),
            _ => &[],
        }
    }

    /// Moves to the first entry.
    ///
    /// # Errors
    ///
    /// [`Error::Corruption`] at a damaged data block's offset; [`Error::Io`].
    pub async fn seek_to_first(&mut self) -> Result<()> {
        let r = self.forward_from(0).await;
        self.settle(r)
    }

    /// Moves to the last entry.
    ///
    /// # Errors
    ///
    /// As [`seek_to_first`](Self::seek_to_first).
    pub async fn seek_to_last(&mut self) -> Result<()> {
        let r = self.backward_from(self.table.index.len()).await;
        self.settle(r)
    }

    /// Moves to the first entry `>= ikey` in [`key::compare`] order.
    ///
    /// # Errors
    ///
    /// As [`seek_to_first`](Self::seek_to_first).
    pub async fn seek(&mut self, ikey: &[u8]) -> Result<()> {
        let target = Target::of(ikey);
        let r = match self.table.global_seq {
            None => self.seek_stored(&target).await,
            Some(_) => self.seek_global(&target).await,
        };
        self.settle(r)
    }

    /// Moves to the last entry `<= ikey` in [`key::compare`] order.
    ///
    /// # Errors
    ///
    /// As [`seek_to_first`](Self::seek_to_first).
    pub async fn seek_for_prev(&mut self, ikey: &[u8]) -> Result<()> {
        let target = Target::of(ikey);
        let r = match self.table.global_seq {
            None => self.seek_for_prev_stored(&target).await,
            Some(_) => self.seek_for_prev_global(&target).await,
        };
        self.settle(r)
    }

    /// Moves to the next entry; invalid after the last. No-op when invalid.
    ///
    /// # Errors
    ///
    /// As [`seek_to_first`](Self::seek_to_first).
    pub async fn next(&mut self) -> Result<()> {
        let r = self.next_stored().await;
        self.settle(r)
    }

    /// Moves to the previous entry; invalid before the first. No-op when
    /// invalid.
    ///
    /// # Errors
    ///
    /// As [`seek_to_first`](Self::seek_to_first).
    pub async fn prev(&mut self) -> Result<()> {
        let r = self.prev_stored().await;
        self.settle(r)
    }

    /// Ends every public move: invalid after an error, else the global key
    /// brought up to date.
    fn settle(&mut self, r: Result<()>) -> Result<()> {
        if r.is_err() {
            self.invalidate();
        }
        self.refresh_global_key();
        r
    }

    fn refresh_global_key(&mut self) {
        if let (Some(seq), true) = (self.table.global_seq, self.valid()) {
            self.global_key.clear();
            self.global_key.extend_from_slice(self.cursor.key());
            key::set_seq(&mut self.global_key, seq);
        }
    }

    fn invalidate(&mut self) {
        self.cursor.invalidate();
        self.block = None;
    }

    fn corrupt(&self, c: Corrupt) -> Error {
        self.table.corrupt(self.idx, c)
    }

    async fn load(&mut self, idx: usize) -> Result<()> {
        self.cursor.invalidate();
        if self.idx == idx && self.block.is_some() {
            // Seeks often land in the block they are in already.
            return Ok(());
        }
        let sequential = self.block.is_some() && idx == self.idx + 1;
        self.run = if sequential { self.run.saturating_add(1) } else { 0 };
        self.block = None;
        let table = Rc::clone(&self.table);
        let block = match &mut self.ahead {
            Some(ra) => table.read_ahead_block(idx, ra, READAHEAD).await?,
            None if self.run >= READAHEAD_AFTER => match table.cache_only(idx) {
                Some(b) => b,
                None => {
                    let size = (READAHEAD_START << (self.run - READAHEAD_AFTER).min(8)).min(READAHEAD);
                    let ra = self.auto.get_or_insert_with(|| ReadAhead { start: 0, chunk: Bytes::new() });
                    table.read_ahead_block(idx, ra, size).await?
                }
            },
            None => table.cached_block(idx).await?,
        };
        self.idx = idx;
        self.block = Some(block);
        Ok(())
    }

    /// Positions at the first entry of the first non-empty block from `idx`.
    async fn forward_from(&mut self, mut idx: usize) -> Result<()> {
        while idx < self.table.index.len() {
            self.load(idx).await?;
            if let Some(b) = &self.block {
                self.cursor.seek_to_first(b).map_err(|c| self.table.corrupt(idx, c))?;
            }
            if self.valid() {
                return Ok(());
            }
            idx += 1;
        }
        self.invalidate();
        Ok(())
    }

    /// Positions at the last entry of the last non-empty block before `end`.
    async fn backward_from(&mut self, mut end: usize) -> Result<()> {
        while end > 0 {
            end -= 1;
            self.load(end).await?;
            if let Some(b) = &self.block {
                self.cursor.seek_to_last(b).map_err(|c| self.table.corrupt(end, c))?;
            }
            if self.valid() {
                return Ok(());
            }
        }
        self.invalidate();
        Ok(())
    }

    async fn next_stored(&mut self) -> Result<()> {
        let Some(b) = self.block.as_ref().filter(|_| self.cursor.valid()) else {
            return Ok(());
        };
        let r = self.cursor.next(b);
        r.map_err(|c| self.corrupt(c))?;
        if !self.cursor.valid() {
            self.forward_from(self.idx + 1).await?;
        }
        Ok(())
    }

    async fn prev_stored(&mut self) -> Result<()> {
        let Some(b) = self.block.as_ref().filter(|_| self.cursor.valid()) else {
            return Ok(());
        };
        let r = self.cursor.prev(b);
        r.map_err(|c| self.corrupt(c))?;
        if !self.cursor.valid() {
            self.backward_from(self.idx).await?;
        }
        Ok(())
    }

    /// First entry whose stored key is `>= target`.
    async fn seek_stored(&mut self, target: &Target<'_>) -> Result<()> {
        let idx = self.table.index.partition_point(|e| target.cmp_key(&e.key).is_lt());
        if idx == self.table.index.len() {
            self.invalidate();
            return Ok(());
        }
        self.load(idx).await?;
        if let Some(b) = &self.block {
            self.cursor.seek(b, target).map_err(|c| self.table.corrupt(idx, c))?;
        }
        if !self.valid() {
            self.forward_from(idx + 1).await?;
        }
        Ok(())
    }

    /// Last entry whose stored key is `<= target`.
    async fn seek_for_prev_stored(&mut self, target: &Target<'_>) -> Result<()> {
        self.seek_stored(target).await?;
        if !self.valid() {
            self.backward_from(self.table.index.len()).await
        } else if target.cmp_key(self.cursor.key()).is_gt() {
            self.prev_stored().await
        } else {
            Ok(())
        }
    }

    // With a global seq, every version of a user key reads with the same seq
    // and keeps its stored order (ingested tables hold seq 0 only, so that
    // order is by kind, as the rewritten keys'). Both seeks land on the
    // stored versions of the target's user key and step over those that
    // sort on the wrong side once rewritten: at most the versions of one key.

    async fn seek_global(&mut self, target: &Target<'_>) -> Result<()> {
        self.seek_stored(&Target { user: target.user, trailer: u64::MAX }).await?;
        self.refresh_global_key();
        while self.valid() && target.cmp_key(&self.global_key).is_lt() {
            self.next_stored().await?;
            self.refresh_global_key();
        }
        Ok(())
    }

    async fn seek_for_prev_global(&mut self, target: &Target<'_>) -> Result<()> {
        self.seek_for_prev_stored(&Target { user: target.user, trailer: 0 }).await?;
        self.refresh_global_key();
        while self.valid() && target.cmp_key(&self.global_key).is_gt() {
            self.prev_stored().await?;
            self.refresh_global_key();
        }
        Ok(())
    }
}
