//! The log itself: group commit, segment rotation and recycling, reads.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;

use ekv_io::{File, FileSystem, IoBuf};
use ekv_proto::RegionId;

use crate::batch::{decode_entry, Decodeds, Entry, Guard, HardState, Item, LogBatch};
use crate::error::{CorruptionKind, Error, Result};
use crate::format::{self, SegmentHeader, HEADER_BLOCK, RECORD_HEADER};
use crate::hash::IdHash;
use crate::index::{Bounds, MemIndex, PinningRegion, Planned, Replay};
use crate::recovery;
use ekv_io::Event;

/// What [`Wal::open`] does with a damaged record before the tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Refuse to open, naming file and offset.
    #[default]
    ReportCorruption,
    /// Drop the damaged record and everything after it, and open. Raft will
    /// fetch what is lost from the other replicas.
    TruncateCorrupt,
}

/// Settings of a log.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Size of every segment file; a multiple of 4096, at least 64 KiB.
    /// A single write batch must fit in one segment.
    pub segment_size: u64,
    /// Pre-written segments kept ready, so rotation never waits for one.
    /// New ones are zero-filled only when there are fewer than this.
    pub spare_segments: usize,
    /// Freed segments are kept as spares (renamed, not rewritten) up to this
    /// many; beyond it they are deleted. Recycling costs a rename, creating
    /// costs a segment of writes, so this is larger than `spare_segments`.
    pub max_spare_segments: usize,
    /// Segments in use beyond which maintenance re-writes small regions
    /// that alone hold the oldest ones.
    pub rewrite_after_segments: usize,
    /// Bytes of entry payload kept in memory for the newest entries.
    pub cache_capacity: usize,
    /// What to do with corruption found at open.
    pub recovery: RecoveryMode,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_size: 64 << 20,
            spare_segments: 2,
            max_spare_segments: 8,
            rewrite_after_segments: 8,
            cache_capacity: 64 << 20,
            recovery: RecoveryMode::ReportCorruption,
        }
    }
}

impl WalOptions {
    fn validate(&self) -> Result<()> {
        if self.segment_size % HEADER_BLOCK != 0 {
            return Err(Error::InvalidOption("segment_size must be a multiple of 4096"));
        }
        if self.segment_size < 64 << 10 || self.segment_size > u64::from(u32::MAX) {
            return Err(Error::InvalidOption("segment_size must lie between 64 KiB and 4 GiB"));
        }
        if self.spare_segments == 0 {
            return Err(Error::InvalidOption("spare_segments must be at least 1"));
        }
        if self.max_spare_segments < self.spare_segments {
            return Err(Error::InvalidOption("max_spare_segments must be at least spare_segments"));
        }
        Ok(())
    }

    /// The largest payload one record (one write round) can carry.
    pub fn max_payload(&self) -> u64 {
        self.segment_size - HEADER_BLOCK - 2 * RECORD_HEADER
    }
}

/// Counters and memory use of a log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Regions with state in the log.
    pub regions: usize,
    /// Live entries indexed.
    pub entries: usize,
    /// Bytes of memory the index takes (approximate).
    pub index_bytes: usize,
    /// Bytes of entry payload in the cache.
    pub cache_bytes: usize,
    /// Entries in the cache.
    pub cached_entries: usize,
    /// Segments in use (including the active one).
    pub segments: usize,
    /// Pre-written segments ready for use.
    pub spare_segments: usize,
    /// Seq of the segment being written.
    pub active_segment: u64,
    /// Offset in it where the next record goes.
    pub active_offset: u64,
    /// Records (rounds) written since open.
    pub records: u64,
    /// Batches written since open.
    pub batches: u64,
    /// fdatasync calls of writes since open.
    pub syncs: u64,
    /// Bytes handed to the disk by writes since open (alignment included).
    pub bytes_written: u64,
    /// Payload bytes written since open.
    pub payload_bytes: u64,
    /// Whether an I/O failure poisoned the log.
    pub poisoned: bool,
    /// Time spent building records (encoding, checksums), in nanoseconds.
    pub encode_nanos: u64,
    /// Time spent in write + fdatasync, in nanoseconds.
    pub io_nanos: u64,
    /// Time of each write + fdatasync.
    pub io_latency: ekv_io::Histogram,
    /// Time spent updating the index after a sync, in nanoseconds.
    pub apply_nanos: u64,
}

/// What [`Wal::maintain`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintainReport {
    /// Segments turned into spares.
    pub recycled: Vec<u64>,
    /// Segments deleted (enough spares already).
    pub removed: Vec<u64>,
    /// Spares newly created (zero-filled).
    pub created: usize,
    /// Regions whose state was re-written at the head of the log because
    /// they alone held an old segment.
    pub rewritten: Vec<RegionId>,
    /// Regions that still hold old segments with many live entries: the
    /// engine should compact their raft log.
    pub pinning: Vec<PinningRegion>,
}

struct Staged {
    ticket: u64,
    batch: LogBatch,
}

/// The segment being appended to.
struct Writer<Fl> {
    seq: u64,
    file: Rc<Fl>,
    /// End of the last record; the next one starts here.
    pos: u64,
    /// Number of the next record.
    next_record: u64,
    /// The bytes of `[align_down(pos), pos)`: a partial block is rewritten
    /// whole with the next record.
    tail: Vec<u8>,
    /// Header to write with the first record, for a segment not yet used.
    header: Option<SegmentHeader>,
}

struct Inner<Fl> {
    index: MemIndex,
    /// Segments in use, by seq, for reads. Includes the active one.
    segments: BTreeMap<u64, Rc<Fl>>,
    writer: Writer<Fl>,
    /// Pre-written segments named with the seqs that follow the active one.
    spares: VecDeque<(u64, Rc<Fl>)>,
    next_spare_seq: u64,
    staged: Vec<Staged>,
    results: HashMap<u64, Result<()>>,
    next_ticket: u64,
    writing: bool,
    maintaining: bool,
    /// Why the log refuses writes, once an I/O failure poisoned it.
    poisoned: Option<String>,
    stats: Stats,
    /// Scratch for validating a group: each touched region's state as the
    /// batches before leave it.
    overlay: HashMap<RegionId, View, IdHash>,
}

/// A per-shard write-ahead log. Share it on its shard as `Rc<Wal<_>>`; all
/// methods take `&self`.
pub struct Wal<F: FileSystem> {
    fs: F,
    dir: PathBuf,
    opts: WalOptions,
    inner: RefCell<Inner<F::File>>,
    event: Event,
}

impl<F: FileSystem> std::fmt::Debug for Wal<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("dir", &self.dir).field("opts", &self.opts).finish_non_exhaustive()
    }
}

fn align_down(v: u64, a: u64) -> u64 {
    v / a * a
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

impl<F: FileSystem> Wal<F> {
    /// Opens the log in `dir` (creating it), recovering what is there.
    ///
    /// # Errors
    /// I/O failures; [`Error::Corruption`] for damage before the tail (see
    /// [`RecoveryMode`]); [`Error::InvalidOption`].
    pub async fn open(fs: F, dir: PathBuf, opts: WalOptions) -> Result<Self> {
        opts.validate()?;
        fs.create_dir_all(&dir).await?;
        let rec = recovery::recover(&fs, &dir, &opts).await?;
        let index = rec.index;
        let mut spares: VecDeque<(u64, Rc<F::File>)> =
            rec.spares.into_iter().map(|(s, f)| (s, Rc::new(f))).collect();
        let mut segments: BTreeMap<u64, Rc<F::File>> =
            rec.segments.into_iter().map(|(s, f)| (s, Rc::new(f))).collect();
        let next_spare_seq = rec.next_seq + spares.len() as u64;
        let writer = match rec.active {
            Some(active) => {
                let file = segments.get(&active.seq).cloned().expect("recovery lists the active segment");
                Writer {
                    seq: active.seq,
                    file,
                    pos: active.pos,
                    next_record: active.next_record,
                    tail: active.tail,
                    header: None,
                }
            }
            None => {
                // A new log: the first spare becomes segment `next_seq`.
                let (seq, file) = match spares.pop_front() {
                    Some(s) => s,
                    None => (
                        rec.next_seq,
                        Rc::new(create_spare(&fs, &dir, rec.next_seq, opts.segment_size).await?),
                    ),
                };
                segments.insert(seq, file.clone());
                Writer {
                    seq,
                    file,
                    pos: HEADER_BLOCK,
                    next_record: 1,
                    tail: Vec::new(),
                    header: Some(SegmentHeader {
                        seq,
                        segment_size: opts.segment_size,
                        prev_seq: 0,
                        prev_len: 0,
                        first_record: 1,
                    }),
                }
            }
        };
        let next_spare_seq = next_spare_seq.max(writer.seq + 1 + spares.len() as u64);
        let wal = Self {
            fs,
            dir,
            opts,
            inner: RefCell::new(Inner {
                index,
                segments,
                writer,
                spares: std::mem::take(&mut spares),
                next_spare_seq,
                staged: Vec::new(),
                results: HashMap::new(),
                next_ticket: 0,
                writing: false,
                maintaining: false,
                poisoned: None,
                stats: Stats::default(),
                overlay: HashMap::default(),
            }),
            event: Event::default(),
        };
        wal.fill_spares().await?;
        Ok(wal)
    }

    /// The directory of this log.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The options it was opened with.
    pub fn options(&self) -> &WalOptions {
        &self.opts
    }

    /// Makes `batch` durable, together with whatever other tasks on this
    /// shard are writing now (one write and one fdatasync for all). Empties
    /// `batch`. A batch is applied whole or not at all.
    ///
    /// # Errors
    /// [`Error::Gap`], [`Error::Compacted`], [`Error::NotConsecutive`],
    /// [`Error::BatchTooLarge`] for a batch that does not fit the log (nothing
    /// of it is written); I/O failures, after which the log is
    /// [`Error::Poisoned`].
    pub async fn write(&self, batch: &mut LogBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let ticket = {
            let mut inner = self.inner.borrow_mut();
            if let Some(why) = &inner.poisoned {
                return Err(Error::Poisoned(why.clone()));
            }
            let size = batch.encoded_len() as u64;
            if size > self.opts.max_payload() {
                return Err(Error::BatchTooLarge { size, limit: self.opts.max_payload() });
            }
            let ticket = inner.next_ticket;
            inner.next_ticket += 1;
            inner.staged.push(Staged { ticket, batch: std::mem::take(batch) });
            ticket
        };
        loop {
            let (writing, generation) = {
                let mut inner = self.inner.borrow_mut();
                if let Some(r) = inner.results.remove(&ticket) {
                    return r;
                }
                // A leader that carried this batch was dropped mid-write.
                if let Some(why) = &inner.poisoned {
                    return Err(Error::Poisoned(why.clone()));
                }
                (inner.writing, self.event.generation())
            };
            if writing {
                self.event.changed_since(generation).await;
            } else {
                self.lead().await;
            }
        }
    }

    /// Writes everything staged as one record. Runs with `writing` set.
    async fn lead(&self) {
        let prepared = {
            let mut inner = self.inner.borrow_mut();
            inner.writing = true;
            self.prepare_group(&mut inner)
        };
        // If this future is dropped mid-write, the bytes on disk are unknown:
        // poison the log and let waiters go rather than leave them hanging.
        let mut guard = LeadGuard { wal: self, armed: true };
        let (tickets, outcome) = match prepared {
            Some(group) => (group.batches.iter().map(|s| s.ticket).collect(), self.write_group(group).await),
            None => (Vec::new(), Ok(())),
        };
        guard.armed = false;
        let mut inner = self.inner.borrow_mut();
        match outcome {
            Ok(()) => {
                for t in tickets {
                    inner.results.insert(t, Ok(()));
                }
            }
            Err(e) => self.poison(&mut inner, Some(e), tickets),
        }
        inner.writing = false;
        drop(inner);
        self.event.notify();
    }

    /// Marks the log poisoned and fails `tickets` (the first with `cause`)
    /// and every staged write.
    fn poison(&self, inner: &mut Inner<F::File>, cause: Option<Error>, tickets: Vec<u64>) {
        match &cause {
            Some(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "WAL write failed; the log is poisoned")
            }
            None => tracing::error!(dir = %self.dir.display(), "WAL write abandoned; the log is poisoned"),
        }
        let why = inner
            .poisoned
            .get_or_insert_with(|| match &cause {
                Some(e) => e.to_string(),
                None => "a write was abandoned mid-way".to_owned(),
            })
            .clone();
        inner.stats.poisoned = true;
        let mut cause = cause;
        for t in tickets {
            inner.results.insert(t, Err(cause.take().unwrap_or_else(|| Error::Poisoned(why.clone()))));
        }
        for s in std::mem::take(&mut inner.staged) {
            inner.results.insert(s.ticket, Err(Error::Poisoned(why.clone())));
        }
    }

    /// Takes the staged batches that fit one record, rejecting invalid ones.
    fn prepare_group(&self, inner: &mut Inner<F::File>) -> Option<Group> {
        let staged = std::mem::take(&mut inner.staged);
        // Reused across rounds: no allocation per round.
        let mut overlay = std::mem::take(&mut inner.overlay);
        overlay.clear();
        let mut accepted = Vec::new();
        let mut size = 0u64;
        let mut rest = Vec::new();
        for s in staged {
            if !rest.is_empty() {
                rest.push(s);
                continue;
            }
            let len = s.batch.encoded_len() as u64;
            if size + len > self.opts.max_payload() {
                rest.push(s);
                continue;
            }
            let mut undo = Vec::new();
            match validate(&inner.index, &mut overlay, &mut undo, &s.batch) {
                Err(e) => {
                    for (region, before) in undo.into_iter().rev() {
                        match before {
                            Some(v) => overlay.insert(region, v),
                            None => overlay.remove(&region),
                        };
                    }
                    inner.results.insert(s.ticket, Err(e));
                }
                Ok(()) => {
                    size += len;
                    accepted.push(s);
                }
            }
        }
        // What did not fit waits for the next record.
        inner.staged = rest;
        inner.overlay = overlay;
        if accepted.is_empty() {
            return None;
        }
        Some(Group { batches: accepted, payload_len: size as usize })
    }

    async fn write_group(&self, group: Group) -> Result<()> {
        let need = RECORD_HEADER * 2 + group.payload_len as u64;
        if self.inner.borrow().writer.pos + need > self.opts.segment_size {
            self.rotate().await?;
        }
        // Build the one buffer: [rewritten partial block | header block] record end-marker zeros.
        let t0 = std::time::Instant::now();
        let (file, start, buf, decoded, new_tail, rec_end, seq, payload_at) = {
            let inner = self.inner.borrow();
            let w = &inner.writer;
            let file = w.file.clone();
            let align = file.alignment().max(format::WRITE_UNIT);
            let start = if w.header.is_some() { 0 } else { align_down(w.pos, align) };
            let rec_at = w.pos;
            let payload_at = rec_at + RECORD_HEADER;
            let rec_end = payload_at + group.payload_len as u64;
            let end = align_up(rec_end + RECORD_HEADER, align);
            let mut buf = file.alloc_buf((end - start) as usize);
            let bytes = buf.as_mut_slice();
            if let Some(h) = &w.header {
                bytes[..HEADER_BLOCK as usize].fill(0);
                h.encode_into(&mut bytes[..HEADER_BLOCK as usize]);
            } else {
                bytes[..w.tail.len()].copy_from_slice(&w.tail);
            }
            let p0 = (payload_at - start) as usize;
            let p1 = p0 + group.payload_len;
            let mut crc = format::record_crc_prefix(w.seq, w.next_record, group.payload_len);
            let mut decoded = Decodeds::default();
            let mut at = p0;
            for s in &group.batches {
                let n = s.batch.encoded_len();
                s.batch.encode_into(&mut bytes[at..at + n], at - p0, &mut crc, &mut decoded);
                at += n;
            }
            bytes[p1..].fill(0);
            format::encode_record_header(&mut bytes[p0 - RECORD_HEADER as usize..], crc, group.payload_len);
            let tail_from = (align_down(rec_end, align) - start) as usize;
            let new_tail = bytes[tail_from..(rec_end - start) as usize].to_vec();
            (file, start, buf, decoded, new_tail, rec_end, w.seq, payload_at)
        };
        let len = buf.as_slice().len() as u64;
        let t1 = std::time::Instant::now();
        file.write_at(buf, start).await?;
        file.fdatasync().await?;
        crash_point!("wal::write::after_sync");
        let t2 = std::time::Instant::now();

        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        let metas = decoded.metas;
        let mut decoded = decoded.items.into_iter();
        let batches = group.batches.len() as u64;
        for s in group.batches {
            for item in s.batch.items {
                let d = decoded.next().expect("one decoded item per batch item");
                // The batch is spent: its entries move into the cache.
                let fresh = match item {
                    Item::Entries { entries, .. } => Some(entries),
                    _ => None,
                };
                // Validated before the write; a failure here is a bug.
                if let Err(e) = inner.index.apply(d, &metas, seq, payload_at, fresh, Replay::Strict) {
                    tracing::error!(error = %e, "WAL index rejected a validated write");
                }
            }
        }
        let w = &mut inner.writer;
        w.header = None;
        w.pos = rec_end;
        w.next_record += 1;
        w.tail = new_tail;
        let st = &mut inner.stats;
        st.records += 1;
        st.batches += batches;
        st.syncs += 1;
        st.bytes_written += len;
        st.payload_bytes += group.payload_len as u64;
        st.encode_nanos += (t1 - t0).as_nanos() as u64;
        st.io_nanos += (t2 - t1).as_nanos() as u64;
        st.io_latency.record_nanos((t2 - t1).as_nanos() as u64);
        st.apply_nanos += t2.elapsed().as_nanos() as u64;
        Ok(())
    }

    /// Switches to the next segment: a spare, or (if none is ready) a new one.
    async fn rotate(&self) -> Result<()> {
        loop {
            let spare = self.inner.borrow_mut().spares.pop_front();
            let (seq, file) = match spare {
                Some(s) => s,
                None => {
                    tracing::warn!(dir = %self.dir.display(), "no spare WAL segment ready; creating one inline");
                    self.acquire_maintenance().await;
                    let made = self.add_spare().await;
                    self.release_maintenance();
                    made?;
                    continue;
                }
            };
            let mut inner = self.inner.borrow_mut();
            let prev = &inner.writer;
            debug_assert_eq!(seq, prev.seq + 1, "spares follow the active segment");
            let header = SegmentHeader {
                seq,
                segment_size: self.opts.segment_size,
                prev_seq: prev.seq,
                prev_len: prev.pos,
                first_record: prev.next_record,
            };
            let next_record = prev.next_record;
            inner.segments.insert(seq, file.clone());
            inner.writer =
                Writer { seq, file, pos: HEADER_BLOCK, next_record, tail: Vec::new(), header: Some(header) };
            return Ok(());
        }
    }

    async fn acquire_maintenance(&self) {
        loop {
            let generation = {
                let mut inner = self.inner.borrow_mut();
                if !inner.maintaining {
                    inner.maintaining = true;
                    return;
                }
                self.event.generation()
            };
            self.event.changed_since(generation).await;
        }
    }

    fn release_maintenance(&self) {
        self.inner.borrow_mut().maintaining = false;
        self.event.notify();
    }

    /// Creates one zero-filled spare with the next seq. Holds maintenance.
    async fn add_spare(&self) -> Result<()> {
        let seq = self.inner.borrow().next_spare_seq;
        let file = create_spare(&self.fs, &self.dir, seq, self.opts.segment_size).await?;
        let mut inner = self.inner.borrow_mut();
        inner.next_spare_seq = seq + 1;
        inner.spares.push_back((seq, Rc::new(file)));
        Ok(())
    }

    async fn fill_spares(&self) -> Result<usize> {
        let mut created = 0;
        while self.inner.borrow().spares.len() < self.opts.spare_segments {
            self.add_spare().await?;
            created += 1;
        }
        Ok(created)
    }

    /// Background upkeep; call it from a low-priority task after rotations
    /// (see [`Wal::needs_maintenance`]).
    ///
    /// 1. When more than [`WalOptions::rewrite_after_segments`] segments are
    ///    in use, regions with few live entries whose state alone holds the
    ///    oldest segments get that state re-written at the head of the log;
    ///    regions with many are reported, for the engine to compact.
    /// 2. Segments that no region needs any more are renamed into spares
    ///    (up to [`WalOptions::max_spare_segments`], else deleted), oldest
    ///    first, each rename made durable before the next.
    /// 3. Spares are topped up to [`WalOptions::spare_segments`] with new
    ///    zero-filled segments, only if recycling did not provide them.
    ///
    /// # Errors
    /// I/O failures.
    pub async fn maintain(&self) -> Result<MaintainReport> {
        let mut report = MaintainReport::default();
        // Step 1 writes, and a write may rotate and need step 3's lock:
        // it runs outside the lock.
        self.rewrite_pinning(&mut report).await?;
        self.acquire_maintenance().await;
        let r = self.recycle_and_refill(&mut report).await;
        self.release_maintenance();
        r.map(|()| report)
    }

    async fn rewrite_pinning(&self, report: &mut MaintainReport) -> Result<()> {
        // 1. Once the log holds many segments, re-write small regions that
        //    hold segments older than the last two.
        let pinning = {
            let inner = self.inner.borrow();
            if inner.segments.len() <= self.opts.rewrite_after_segments {
                return Ok(());
            }
            inner.index.pinning(inner.writer.seq.saturating_sub(1))
        };
        const REWRITE_MAX_ENTRIES: u64 = 64;
        for p in pinning {
            if p.entries > REWRITE_MAX_ENTRIES {
                report.pinning.push(p);
                continue;
            }
            let Some((hs, first, next)) = self.inner.borrow().index.snapshot_of(p.region) else { continue };
            let entries =
                if next > first { self.entries(p.region, first, next, u64::MAX).await? } else { Vec::new() };
            let mut one = LogBatch::new();
            // Written only if the region is still exactly as read: a write
            // racing with this one must never be undone by it.
            one.guard = Some(Guard { region: p.region, bounds: Bounds { first, next }, hard_state: hs });
            // A full reset, so that replay from this record on needs nothing older.
            one.remove(p.region);
            one.compact(p.region, first);
            one.add_entries(p.region, entries);
            if let Some(hs) = hs {
                one.put_hard_state(p.region, hs);
            }
            match self.write(&mut one).await {
                Ok(()) => report.rewritten.push(p.region),
                Err(Error::RegionChanged(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn recycle_and_refill(&self, report: &mut MaintainReport) -> Result<()> {
        // 2. Recycle what nobody needs.
        loop {
            let victim = {
                let mut inner = self.inner.borrow_mut();
                let active = inner.writer.seq;
                let limit = inner.index.min_pin().map_or(active, |p| p.min(active));
                match inner.segments.first_key_value() {
                    Some((&seq, _)) if seq < limit => {
                        let file = inner.segments.remove(&seq).expect("present");
                        let keep = inner.spares.len() < self.opts.max_spare_segments;
                        let new_seq = inner.next_spare_seq;
                        if keep {
                            inner.next_spare_seq += 1;
                        }
                        Some((seq, file, keep.then_some(new_seq)))
                    }
                    _ => None,
                }
            };
            let Some((seq, file, new_seq)) = victim else { break };
            let from = self.dir.join(format::segment_name(seq));
            match new_seq {
                Some(new_seq) => {
                    self.fs.rename(&from, &self.dir.join(format::segment_name(new_seq))).await?;
                    self.fs.sync_dir(&self.dir).await?;
                    self.inner.borrow_mut().spares.push_back((new_seq, file));
                    report.recycled.push(seq);
                }
                None => {
                    self.fs.remove(&from).await?;
                    self.fs.sync_dir(&self.dir).await?;
                    report.removed.push(seq);
                }
            }
        }
        // 3. Top up spares.
        report.created = self.fill_spares().await?;
        Ok(())
    }

    /// True when [`Wal::maintain`] has something to do: spares are short,
    /// or an old segment might be freed.
    pub fn needs_maintenance(&self) -> bool {
        let inner = self.inner.borrow();
        let oldest = inner.segments.first_key_value().map(|(s, _)| *s);
        let freeable = match (oldest, inner.index.min_pin()) {
            (Some(o), Some(pin)) => o < pin.min(inner.writer.seq),
            (Some(o), None) => o < inner.writer.seq,
            _ => false,
        };
        inner.spares.len() < self.opts.spare_segments
            || freeable
            || inner.segments.len() > self.opts.rewrite_after_segments
    }

    /// Up to `hi - lo` entries of `region` from `lo`, stopping before the
    /// total size passes `max_bytes` (but at least one entry).
    ///
    /// # Errors
    /// [`Error::Compacted`], [`Error::Unavailable`], [`Error::RegionNotFound`],
    /// I/O failures, [`Error::Corruption`] if a block read back fails its checksum.
    pub async fn entries(&self, region: RegionId, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>> {
        let plan = self.inner.borrow().index.plan(region, lo, hi, max_bytes)?;
        let mut out = Vec::with_capacity(plan.len());
        let mut block: Option<(crate::index::BlockLoc, Vec<u8>)> = None;
        for p in plan {
            match p {
                Planned::Cached(e) => out.push(e),
                Planned::Disk(index, loc) => {
                    if block.as_ref().map(|b| b.0) != Some(loc.block) {
                        let bytes = self.read_block(region, index, loc.block).await?;
                        block = Some((loc.block, bytes));
                    }
                    let bytes = &block.as_ref().expect("just read").1;
                    let e =
                        decode_entry(bytes, index, loc.meta).map_err(|e| self.corrupt_at(loc.block, e))?;
                    if !self.inner.borrow().index.still_at(region, index, &loc) {
                        let first_index = self.inner.borrow().index.first_index(region).unwrap_or(index + 1);
                        return Err(Error::Compacted { region, index, first_index });
                    }
                    out.push(e);
                }
            }
        }
        Ok(out)
    }

    fn corrupt_at(&self, loc: crate::index::BlockLoc, e: ekv_proto::codec::DecodeError) -> Error {
        Error::Corruption {
            path: self.dir.join(format::segment_name(loc.seq)),
            offset: loc.offset,
            kind: CorruptionKind::Decode(e),
        }
    }

    async fn read_block(&self, region: RegionId, index: u64, loc: crate::index::BlockLoc) -> Result<Vec<u8>> {
        let file = self.inner.borrow().segments.get(&loc.seq).cloned();
        let Some(file) = file else {
            let first_index = self.inner.borrow().index.first_index(region).unwrap_or(index + 1);
            return Err(Error::Compacted { region, index, first_index });
        };
        let read = file.read_at(loc.offset, 4 + loc.len as usize).await?;
        if read.len() != 4 + loc.len as usize {
            return Err(self.corrupt_at(
                loc,
                ekv_proto::codec::DecodeError::Incomplete {
                    what: "block",
                    need: 4 + u64::from(loc.len),
                    have: read.len() as u64,
                },
            ));
        }
        let stored = u32::from_le_bytes([read[0], read[1], read[2], read[3]]);
        let got = ekv_proto::codec::crc32c(0, &read[4..]);
        if got != stored {
            return Err(self
                .corrupt_at(loc, ekv_proto::codec::DecodeError::ChecksumMismatch { got, expected: stored }));
        }
        Ok(read[4..].to_vec())
    }

    /// Term of entry `index`.
    ///
    /// # Errors
    /// [`Error::Compacted`], [`Error::Unavailable`], [`Error::RegionNotFound`].
    pub fn term(&self, region: RegionId, index: u64) -> Result<u64> {
        self.inner.borrow().index.term(region, index)
    }

    /// First index held (when the log is empty: the next index expected).
    pub fn first_index(&self, region: RegionId) -> Option<u64> {
        self.inner.borrow().index.first_index(region)
    }

    /// Last index held (`first_index - 1` when the log is empty).
    pub fn last_index(&self, region: RegionId) -> Option<u64> {
        self.inner.borrow().index.last_index(region)
    }

    /// Latest hard state written.
    pub fn hard_state(&self, region: RegionId) -> Option<HardState> {
        self.inner.borrow().index.hard_state(region)
    }

    /// Regions with state in the log.
    pub fn regions(&self) -> Vec<RegionId> {
        self.inner.borrow().index.regions()
    }

    /// Drops `region`'s entries below `to` (durably).
    ///
    /// # Errors
    /// As [`Wal::write`].
    pub async fn compact(&self, region: RegionId, to: u64) -> Result<()> {
        let mut b = LogBatch::new();
        b.compact(region, to);
        self.write(&mut b).await
    }

    /// Drops everything of `region` (durably).
    ///
    /// # Errors
    /// As [`Wal::write`].
    pub async fn remove(&self, region: RegionId) -> Result<()> {
        let mut b = LogBatch::new();
        b.remove(region);
        self.write(&mut b).await
    }

    /// Counters and memory use.
    pub fn stats(&self) -> Stats {
        let inner = self.inner.borrow();
        let (regions, entries, index_bytes, cache_bytes, cached_entries) = inner.index.stats();
        Stats {
            regions,
            entries,
            index_bytes,
            cache_bytes,
            cached_entries,
            segments: inner.segments.len(),
            spare_segments: inner.spares.len(),
            active_segment: inner.writer.seq,
            active_offset: inner.writer.pos,
            ..inner.stats.clone()
        }
    }

    /// Closes every file.
    ///
    /// # Errors
    /// I/O failures while closing.
    pub async fn close(self) -> Result<()> {
        let inner = self.inner.into_inner();
        drop(inner.writer);
        let files: Vec<Rc<F::File>> =
            inner.segments.into_values().chain(inner.spares.into_iter().map(|(_, f)| f)).collect();
        for f in files {
            if let Ok(f) = Rc::try_unwrap(f) {
                f.close().await?;
            }
        }
        Ok(())
    }
}

/// Armed while a leader writes; dropped armed only if the leader's future
/// was dropped mid-write.
struct LeadGuard<'a, F: FileSystem> {
    wal: &'a Wal<F>,
    armed: bool,
}

impl<F: FileSystem> Drop for LeadGuard<'_, F> {
    fn drop(&mut self) {
        if self.armed {
            if let Ok(mut inner) = self.wal.inner.try_borrow_mut() {
                self.wal.poison(&mut inner, None, Vec::new());
                inner.writing = false;
            }
            self.wal.event.notify();
        }
    }
}

struct Group {
    batches: Vec<Staged>,
    payload_len: usize,
}

/// A region's bounds and hard state as the batches staged before it leave them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct View {
    bounds: Option<Bounds>,
    hard_state: Option<HardState>,
}

/// Checks a batch against the index as updated by the batches before it in
/// the same record (`overlay`), and records its own effect there.
/// Every change to `overlay` is logged in `undo` (region, previous view) so
/// that a refused batch leaves no trace.
fn validate(
    index: &MemIndex,
    overlay: &mut HashMap<RegionId, View, IdHash>,
    undo: &mut Vec<(RegionId, Option<View>)>,
    batch: &LogBatch,
) -> Result<()> {
    let view = |overlay: &HashMap<RegionId, View, IdHash>, region| match overlay.get(&region) {
        Some(v) => *v,
        None => {
            let (bounds, hard_state) = index.view(region);
            View { bounds, hard_state }
        }
    };
    if let Some(g) = &batch.guard {
        let v = view(overlay, g.region);
        if v.bounds != Some(g.bounds) || v.hard_state != g.hard_state {
            return Err(Error::RegionChanged(g.region));
        }
    }
    for item in &batch.items {
        let region = item.region();
        let mut v = view(overlay, region);
        let current = v.bounds;
        v.bounds = match item {
            Item::Entries { entries, .. } => {
                let first = entries[0].index;
                for (i, e) in entries.iter().enumerate() {
                    if e.index != first + i as u64 {
                        return Err(Error::NotConsecutive { region, index: e.index });
                    }
                }
                MemIndex::check_append(region, current, first)?;
                let end = first + entries.len() as u64;
                Some(match current {
                    Some(b) if b.first != b.next && first > b.first => Bounds { first: b.first, next: end },
                    _ => Bounds { first, next: end },
                })
            }
            Item::HardState { state, .. } => {
                v.hard_state = Some(*state);
                Some(current.unwrap_or(Bounds { first: 1, next: 1 }))
            }
            Item::Compact { to, .. } => Some(match current {
                None => Bounds { first: *to, next: *to },
                Some(b) if *to > b.first => {
                    if *to >= b.next {
                        Bounds { first: *to, next: *to }
                    } else {
                        Bounds { first: *to, next: b.next }
                    }
                }
                Some(b) => b,
            }),
            Item::Remove { .. } => {
                v.hard_state = None;
                None
            }
        };
        undo.push((region, overlay.insert(region, v)));
    }
    Ok(())
}

/// Creates segment file `seq` filled with zeros and synced, its name durable.
pub(crate) async fn create_spare<F: FileSystem>(
    fs: &F,
    dir: &std::path::Path,
    seq: u64,
    size: u64,
) -> Result<F::File> {
    let path = dir.join(format::segment_name(seq));
    let file = fs.create(&path).await?;
    const CHUNK: u64 = 1 << 20;
    let mut at = 0;
    while at < size {
        let n = CHUNK.min(size - at);
        let mut buf = file.alloc_buf(n as usize);
        buf.as_mut_slice().fill(0);
        file.write_at(buf, at).await?;
        at += n;
    }
    file.fdatasync().await?;
    fs.sync_dir(dir).await?;
    Ok(file)
}
