//! The tree: writes into the memtable, reads across memtables and tables,
//! flushes, the manifest, snapshots, export and ingest.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use ekv_io::{Event, File, FileSystem};
use futures::lock::Mutex;

use crate::batch::{tombstone, Op};
use crate::iter::{children, Iter, MergeIter};
use crate::key::{self, Kind, Tombstone, MAX_SEQ};
use crate::manifest::{self, FileKind, ManifestWriter};
use crate::memtable::{MemIter, MemTable};
use crate::range_del::Fragments;
use crate::stats::{LevelStats, Stats};
use crate::table::{BlockCache, Table, TableBuilder};
use crate::version::{FileMeta, TableHandle, Version, VersionEdit};
use crate::{Error, Options, Result, WriteBatch};

/// A column family: a named key space of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cf(pub(crate) u32);

impl Cf {
    /// The family every tree has.
    pub const DEFAULT: Cf = Cf(0);

    /// The family's id (stable for the life of the tree).
    pub fn id(self) -> u32 {
        self.0
    }
}

/// A sequence number: the position of a write in the tree's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqNo(pub u64);

/// A consistent point-in-time view. Reads and iterators at a snapshot see
/// exactly the writes before it; compaction keeps what live snapshots need.
/// Released when dropped.
#[derive(Debug)]
pub struct Snapshot {
    seq: u64,
    registry: Rc<RefCell<BTreeMap<u64, usize>>>,
}

impl Snapshot {
    /// The last write the snapshot sees.
    pub fn seq(&self) -> SeqNo {
        SeqNo(self.seq)
    }
}

impl Clone for Snapshot {
    fn clone(&self) -> Self {
        *self.registry.borrow_mut().entry(self.seq).or_default() += 1;
        Snapshot { seq: self.seq, registry: self.registry.clone() }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let mut r = self.registry.borrow_mut();
        if let Some(n) = r.get_mut(&self.seq) {
            *n -= 1;
            if *n == 0 {
                r.remove(&self.seq);
            }
        }
    }
}

/// Options of [`Lsm::iter`].
#[derive(Debug, Default)]
pub struct IterOptions<'a> {
    /// First key (inclusive); `None`: the family's first key.
    pub lower: Option<&'a [u8]>,
    /// End key (exclusive); `None`: past the family's last key.
    pub upper: Option<&'a [u8]>,
    /// Read at this snapshot; `None`: at the newest write.
    pub snapshot: Option<&'a Snapshot>,
}

/// A key range of one family, for [`Lsm::export`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    /// The family.
    pub cf: Cf,
    /// First key (inclusive).
    pub start: Vec<u8>,
    /// End (exclusive); `None`: to the family's end.
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    pub(crate) fn tree_bounds(&self) -> (Vec<u8>, Vec<u8>) {
        let start = key::cf_key(self.cf.0, &self.start);
        let end = match &self.end {
            Some(e) => key::cf_key(self.cf.0, e),
            None => key::cf_end(self.cf.0),
        };
        (start, end)
    }
}

/// Where [`Lsm::build_replacement`] takes its records from.
enum TableSource<'a, F: File> {
    Tree(Box<Iter<F>>),
    Pairs(std::slice::Iter<'a, (Vec<u8>, Vec<u8>)>),
}

/// The shard's LSM tree. Cheap to clone (a handle); `!Send`: it lives on
/// one executor.
pub struct Lsm<F: FileSystem> {
    pub(crate) inner: Rc<Inner<F>>,
}

impl<F: FileSystem> Clone for Lsm<F> {
    fn clone(&self) -> Self {
        Lsm { inner: self.inner.clone() }
    }
}

impl<F: FileSystem> std::fmt::Debug for Lsm<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lsm").field("dir", &self.inner.dir).finish_non_exhaustive()
    }
}

pub(crate) type Handle<F> = Rc<TableHandle<<F as FileSystem>::File>>;

pub(crate) struct State<F: FileSystem> {
    pub mem: Rc<MemTable>,
    /// Frozen memtables, oldest first.
    pub imm: VecDeque<Rc<MemTable>>,
    pub version: Rc<Version<F::File>>,
    pub last_seq: u64,
    /// Highest seq in durable tables (what a reopen resumes from).
    pub durable_seq: u64,
    pub durable_marker: Option<Vec<u8>>,
    pub next_file: u64,
    pub next_mem: u64,
    pub cfs: BTreeMap<String, u32>,
    /// Tables no version of the tree lists any more; removed once no reader
    /// holds them.
    pub obsolete: Vec<Handle<F>>,
    pub poisoned: Option<String>,
    pub closing: bool,
    /// Per level, where the next compaction of that level starts.
    pub compact_pointer: Vec<Vec<u8>>,
    /// Bytes writers may still write while slowed down.
    pub credit: i64,
}

pub(crate) struct Inner<F: FileSystem> {
    pub fs: F,
    pub dir: PathBuf,
    pub opts: Options,
    pub cache: Rc<BlockCache>,
    pub state: RefCell<State<F>>,
    pub manifest: Mutex<Option<ManifestWriter<F>>>,
    pub flush_lock: Mutex<()>,
    pub compaction_lock: Mutex<()>,
    pub snapshots: Rc<RefCell<BTreeMap<u64, usize>>>,
    /// Background work may be waiting: a frozen memtable, a compaction, close.
    pub work: Event,
    /// Background work made progress: writers that wait re-check.
    pub progress: Event,
    /// Running flusher and compactor tasks.
    pub flusher: Cell<usize>,
    pub compactor: Cell<usize>,
    pub stats: RefCell<Stats>,
    pub recovered_marker: Option<Vec<u8>>,
}

const MANIFEST_ROTATE_BYTES: u64 = 4 << 20;

impl<F: FileSystem + 'static> Lsm<F> {
    /// Opens (or creates) the tree in `dir`: reads `CURRENT` and replays the
    /// manifest, opens every table, starts a fresh manifest and removes
    /// every file the manifest does not reference (leftovers of a crash).
    ///
    /// The tree keeps no log: what was written after the last flush is gone.
    /// [`Lsm::recovered_marker`] tells the caller from where to replay.
    pub async fn open(fs: F, dir: PathBuf, opts: Options) -> Result<Self> {
        opts.validate().map_err(Error::InvalidArgument)?;
        fs.create_dir_all(&dir).await?;
        let cache = Rc::new(BlockCache::new(opts.block_cache_size));
        let names = fs.list(&dir).await?;

        let mut version = Version::new(opts.num_levels);
        let mut cfs: BTreeMap<String, u32> = BTreeMap::new();
        let mut marker = None;
        let mut last_seq = 0;
        let mut next_file = 1;
        let mut old_manifest = None;
        match manifest::read_current(&fs, &dir).await? {
            None => {
                if let Some(n) =
                    names.iter().find(|n| matches!(manifest::parse_file_name(n), FileKind::Table(_)))
                {
                    return Err(Error::corruption(
                        dir.join(n),
                        0,
                        "tables exist but CURRENT is missing; refusing to start an empty tree over them",
                    ));
                }
                cfs.insert("default".to_string(), 0);
            }
            Some(number) => {
                old_manifest = Some(number);
                let (path, edits) = manifest::replay(&fs, &dir, number, opts.num_levels).await?;
                let mut files: BTreeMap<u64, (usize, FileMeta)> = BTreeMap::new();
                for e in edits {
                    if e.snapshot {
                        files.clear();
                        cfs.clear();
                    }
                    if e.marker.is_some() {
                        marker = e.marker;
                    }
                    last_seq = e.last_seq.unwrap_or(last_seq).max(last_seq);
                    next_file = e.next_file.unwrap_or(next_file).max(next_file);
                    for (level, n) in e.deleted {
                        if files.get(&n).is_some_and(|(l, _)| *l == level) {
                            files.remove(&n);
                        }
                    }
                    for (level, f) in e.added {
                        files.insert(f.number, (level, f));
                    }
                    for (id, name) in e.cf_added {
                        cfs.insert(name, id);
                    }
                    for id in e.cf_dropped {
                        cfs.retain(|_, v| *v != id);
                    }
                }
                next_file = next_file.max(number + 1);
                let mut added = Vec::new();
                for (number, (level, meta)) in files {
                    next_file = next_file.max(number + 1);
                    let path = dir.join(manifest::table_name(number));
                    let file = fs.open(&path).await?;
                    let table = Table::open(file, number, meta.size, meta.global_seq, cache.clone()).await?;
                    added.push((level, Rc::new(TableHandle { meta, table: Rc::new(table) })));
                }
                version = version.apply(&[], added);
                version.check_invariants().map_err(|e| Error::corruption(path, 0, e))?;
            }
        }

        let state = State {
            mem: Rc::new(MemTable::new(0)),
            imm: VecDeque::new(),
            version: Rc::new(version),
            last_seq,
            durable_seq: last_seq,
            durable_marker: marker.clone(),
            next_file: next_file + 1,
            next_mem: 1,
            cfs,
            obsolete: Vec::new(),
            poisoned: None,
            closing: false,
            compact_pointer: vec![Vec::new(); opts.num_levels],
            credit: 0,
        };
        let manifest_number = next_file;
        let inner = Rc::new(Inner {
            fs,
            dir,
            opts,
            cache,
            state: RefCell::new(state),
            manifest: Mutex::new(None),
            flush_lock: Mutex::new(()),
            compaction_lock: Mutex::new(()),
            snapshots: Rc::new(RefCell::new(BTreeMap::new())),
            work: Event::default(),
            progress: Event::default(),
            flusher: Cell::new(0),
            compactor: Cell::new(0),
            stats: RefCell::new(Stats::default()),
            recovered_marker: marker,
        });
        let lsm = Lsm { inner };
        let snapshot = lsm.inner.snapshot_edit();
        let writer =
            ManifestWriter::create(&lsm.inner.fs, &lsm.inner.dir, manifest_number, &snapshot).await?;
        *lsm.inner.manifest.lock().await = Some(writer);
        lsm.inner.remove_unreferenced(old_manifest).await?;
        Ok(lsm)
    }

    /// The marker of the last flush that was durable when the tree was
    /// opened (see [`WriteBatch::set_marker`]); `None` for a new tree.
    pub fn recovered_marker(&self) -> Option<&[u8]> {
        self.inner.recovered_marker.as_deref()
    }

    /// The marker of the newest durable flush.
    pub fn durable_marker(&self) -> Option<Vec<u8>> {
        self.inner.state.borrow().durable_marker.clone()
    }

    /// The directory of the tree.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The `default` family.
    pub fn default_cf(&self) -> Cf {
        Cf::DEFAULT
    }

    /// The family called `name`.
    pub fn cf(&self, name: &str) -> Result<Cf> {
        self.inner
            .state
            .borrow()
            .cfs
            .get(name)
            .map(|&id| Cf(id))
            .ok_or_else(|| Error::NoSuchColumnFamily(name.into()))
    }

    /// Names of all families.
    pub fn cf_names(&self) -> Vec<String> {
        self.inner.state.borrow().cfs.keys().cloned().collect()
    }

    /// Creates the family `name` (durable on return); returns the existing
    /// one if it exists.
    pub async fn create_cf(&self, name: &str) -> Result<Cf> {
        if name.is_empty() || name.len() > 255 {
            return Err(Error::InvalidArgument(format!("column family name {name:?} must be 1..=255 bytes")));
        }
        let mut guard = self.inner.manifest.lock().await;
        let id = {
            let st = self.inner.state.borrow();
            if let Some(&id) = st.cfs.get(name) {
                return Ok(Cf(id));
            }
            let id = st.cfs.values().max().map_or(0, |m| m + 1);
            if id > key::MAX_CF_ID {
                return Err(Error::InvalidArgument("column family ids exhausted".into()));
            }
            id
        };
        let edit = VersionEdit { cf_added: vec![(id, name.to_string())], ..Default::default() };
        self.inner.log_edit(&mut guard, edit).await?;
        self.inner.state.borrow_mut().cfs.insert(name.to_string(), id);
        Ok(Cf(id))
    }

    /// Drops a family: its keys are deleted with one range deletion, which
    /// is flushed, then its name is forgotten (durably). `default` cannot
    /// be dropped.
    pub async fn drop_cf(&self, cf: Cf) -> Result<()> {
        if cf == Cf::DEFAULT {
            return Err(Error::InvalidArgument("the default column family cannot be dropped".into()));
        }
        let mut batch = WriteBatch::new();
        batch.delete_from(cf, b"");
        self.write(batch).await?;
        // The deletion must be durable before the name is forgotten: a new
        // family may get the same id, and must not see the old keys.
        self.flush().await?;
        let mut guard = self.inner.manifest.lock().await;
        let edit = VersionEdit { cf_dropped: vec![cf.0], ..Default::default() };
        self.inner.log_edit(&mut guard, edit).await?;
        self.inner.state.borrow_mut().cfs.retain(|_, v| *v != cf.0);
        Ok(())
    }

    /// Applies a batch atomically; returns the seq of its last operation.
    /// May wait when flush or compaction is behind (the wait is counted in
    /// [`Stats::stall_micros`]).
    pub async fn write(&self, batch: WriteBatch) -> Result<SeqNo> {
        batch.validate().map_err(Error::InvalidArgument)?;
        self.inner.make_room(batch.size()).await?;
        let inner = &self.inner;
        let mut st = inner.state.borrow_mut();
        let mem = st.mem.clone();
        let mut seq = st.last_seq;
        for op in &batch.ops {
            seq += 1;
            match op {
                Op::Put { key, value } => mem.add(key, seq, Kind::Put, value),
                Op::Delete { key } => mem.add(key, seq, Kind::Delete, &[]),
                Op::DeleteRange { start, end } => mem.add_tombstone(tombstone(start, end, seq)),
            }
        }
        if seq > MAX_SEQ {
            return Err(Error::InvalidArgument("sequence numbers exhausted".into()));
        }
        st.last_seq = seq;
        if let Some(m) = batch.marker {
            mem.set_marker(m);
        }
        inner.stats.borrow_mut().user_bytes_written += batch.bytes as u64;
        if mem.bytes() >= inner.opts.memtable_size {
            inner.freeze(&mut st);
        }
        Ok(SeqNo(seq))
    }

    /// Sets `key` in `cf`.
    pub async fn put(&self, cf: Cf, key: &[u8], value: &[u8]) -> Result<SeqNo> {
        let mut b = WriteBatch::new();
        b.put(cf, key, value);
        self.write(b).await
    }

    /// Deletes `key` from `cf`.
    pub async fn delete(&self, cf: Cf, key: &[u8]) -> Result<SeqNo> {
        let mut b = WriteBatch::new();
        b.delete(cf, key);
        self.write(b).await
    }

    /// Deletes every key of `cf` in `[start, end)`.
    pub async fn delete_range(&self, cf: Cf, start: &[u8], end: &[u8]) -> Result<SeqNo> {
        let mut b = WriteBatch::new();
        b.delete_range(cf, start, end);
        self.write(b).await
    }

    /// A snapshot of everything written so far.
    pub fn snapshot(&self) -> Snapshot {
        let seq = self.inner.state.borrow().last_seq;
        *self.inner.snapshots.borrow_mut().entry(seq).or_default() += 1;
        Snapshot { seq, registry: self.inner.snapshots.clone() }
    }

    /// The value of `key` in `cf`, newest.
    pub async fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Bytes>> {
        self.get_at_seq(cf, key, None).await
    }

    /// The value of `key` in `cf` as of `snapshot`.
    pub async fn get_at(&self, cf: Cf, key: &[u8], snapshot: &Snapshot) -> Result<Option<Bytes>> {
        self.get_at_seq(cf, key, Some(snapshot.seq)).await
    }

    async fn get_at_seq(&self, cf: Cf, user_key: &[u8], seq: Option<u64>) -> Result<Option<Bytes>> {
        let tk = key::cf_key(cf.0, user_key);
        let (mems, version, seq) = {
            let st = self.inner.state.borrow();
            (st.mems_newest_first(), st.version.clone(), seq.unwrap_or(st.last_seq))
        };
        let mut max_tomb = 0;
        let resolve = |found: (u64, Kind, Bytes), max_tomb: u64| match found {
            (s, Kind::Put, v) if s >= max_tomb => Some(v),
            _ => None,
        };
        for m in &mems {
            max_tomb = max_tomb.max(m.max_covering_tombstone(&tk, seq));
            if let Some(found) = m.get(&tk, seq) {
                return Ok(resolve(found, max_tomb));
            }
        }
        let mut stats_probe = 0u64;
        for (level, files) in version.levels.iter().enumerate() {
            let candidates: Vec<&Handle<F>> = if level == 0 {
                files.iter().filter(|t| t.meta.contains_key(&tk)).collect()
            } else {
                version.find_in_level(level, &tk).into_iter().collect()
            };
            for t in candidates {
                stats_probe += 1;
                for ts in t.table.tombstones() {
                    if ts.seq <= seq
                        && ts.start.as_slice() <= tk.as_slice()
                        && tk.as_slice() < ts.end.as_slice()
                    {
                        max_tomb = max_tomb.max(ts.seq);
                    }
                }
                if let Some(found) = t.table.get(&tk, seq).await? {
                    self.inner.stats.borrow_mut().table_probes += stats_probe;
                    return Ok(resolve(found, max_tomb));
                }
            }
        }
        self.inner.stats.borrow_mut().table_probes += stats_probe;
        Ok(None)
    }

    /// An iterator over `cf` (see [`IterOptions`]). Position it with a seek
    /// before reading.
    pub fn iter(&self, cf: Cf, opts: IterOptions<'_>) -> Result<Iter<F::File>> {
        let lower = key::cf_key(cf.0, opts.lower.unwrap_or(b""));
        let upper = match opts.upper {
            Some(u) => key::cf_key(cf.0, u),
            None => key::cf_end(cf.0),
        };
        let snapshot = opts.snapshot.cloned();
        let (mems, version, seq) = {
            let st = self.inner.state.borrow();
            (st.mems_newest_first(), st.version.clone(), snapshot.as_ref().map_or(st.last_seq, |s| s.seq))
        };
        let upper = upper.max(lower.clone());
        Ok(self.inner.make_iter(mems, version, seq, lower, upper, Box::new(snapshot)))
    }

    /// Freezes the memtable and waits until every frozen memtable is in a
    /// durable table.
    pub async fn flush(&self) -> Result<()> {
        let target = {
            let mut st = self.inner.state.borrow_mut();
            if !st.mem.is_empty() || st.mem.marker().is_some() {
                self.inner.freeze(&mut st);
            }
            st.next_mem - 1
        };
        self.inner.wait_flushed(target).await
    }

    /// Runs compactions until no level is over its target (inline when no
    /// background task runs, else waits for it).
    pub async fn wait_for_compactions(&self) -> Result<()> {
        loop {
            self.inner.check_poisoned()?;
            if self.inner.compactor.get() > 0 {
                let g = self.inner.progress.generation();
                let busy = self.inner.compaction_lock.try_lock().is_none();
                if !busy && self.inner.pick_compaction().is_none() {
                    return Ok(());
                }
                self.inner.work.notify();
                self.inner.progress.changed_since(g).await;
            } else if !self.inner.compact_once().await? {
                self.inner.remove_obsolete().await?;
                return Ok(());
            }
        }
    }

    /// Compacts the whole tree into its last level (flushing first), so
    /// every table is rewritten once and deleted data is dropped.
    pub async fn compact_all(&self) -> Result<()> {
        self.flush().await?;
        let _g = self.inner.compaction_lock.lock().await;
        for level in 0..self.inner.opts.num_levels - 1 {
            self.inner.compact_level_fully(level).await?;
        }
        drop(_g);
        self.inner.remove_obsolete().await
    }

    /// Background flushing: writes frozen memtables out as tables until
    /// [`Lsm::close`]. Spawn it, and [`Lsm::run_compactor`], each as its own
    /// task on the shard's executor (ideally in a task queue of lower
    /// priority than the foreground). Without them, flushes and compactions
    /// run inline in the writer that needs them.
    ///
    /// They are two tasks, not one joined future, because glommio registers
    /// a waker again every time a pending I/O future is polled: a second
    /// loop in the same task would poll the first one's I/O spuriously.
    pub async fn run_flusher(&self) -> Result<()> {
        self.run_job(Job::Flush).await
    }

    /// Background compaction (see [`Lsm::run_flusher`]): runs compactions
    /// while a level is over its target and removes tables no reader holds.
    /// It yields through [`Options::yield_hook`] every
    /// [`Options::work_slice`] of CPU.
    pub async fn run_compactor(&self) -> Result<()> {
        self.run_job(Job::Compact).await
    }

    async fn run_job(&self, job: Job) -> Result<()> {
        let inner = &self.inner;
        let running = match job {
            Job::Flush => &inner.flusher,
            Job::Compact => &inner.compactor,
        };
        running.set(running.get() + 1);
        let _running = scopeguard(|| {
            running.set(running.get() - 1);
            inner.progress.notify();
        });
        let result = async {
            loop {
                let g = inner.work.generation();
                let closing = inner.state.borrow().closing;
                let did = match job {
                    // Frozen memtables are written out even while closing.
                    Job::Flush => inner.flush_one().await?,
                    Job::Compact => !closing && inner.compact_once().await?,
                };
                if did {
                    inner.progress.notify();
                    continue;
                }
                if closing {
                    return Ok::<(), Error>(());
                }
                if job == Job::Compact {
                    inner.remove_obsolete().await?;
                }
                // Nothing to do: wait for work without announcing progress
                // (waiters would wake this task again and spin).
                inner.work.changed_since(g).await;
            }
        }
        .await;
        if let Err(e) = &result {
            inner.poison(&e.to_string());
        }
        result
    }

    /// Exports `ranges` as of `snapshot` (newest if `None`) into tables in
    /// `dest` (a directory on the same file system), one per range. Each
    /// table holds the live values of its range and a range deletion over
    /// all of it, so [`Lsm::ingest`] of the tables replaces the ranges'
    /// contents atomically.
    pub async fn export(
        &self,
        ranges: &[KeyRange],
        snapshot: Option<&Snapshot>,
        dest: &Path,
        name_prefix: &str,
    ) -> Result<Vec<PathBuf>> {
        let snap = match snapshot {
            Some(s) => s.clone(),
            None => self.snapshot(),
        };
        self.inner.fs.create_dir_all(dest).await?;
        let mut out = Vec::new();
        for (i, r) in ranges.iter().enumerate() {
            let (start, end) = r.tree_bounds();
            if start > end {
                self.remove_files(&out).await;
                return Err(Error::InvalidArgument(format!("export range {i} starts after it ends")));
            }
            let path = dest.join(format!("{name_prefix}-{i:04}.sst"));
            out.push(path.clone());
            if let Err(e) = self.export_one(r, &snap, &path, (start, end)).await {
                // Nothing half-written is left behind for a caller to ship.
                self.remove_files(&out).await;
                return Err(e);
            }
        }
        self.inner.fs.sync_dir(dest).await?;
        Ok(out)
    }

    async fn remove_files(&self, paths: &[PathBuf]) {
        for p in paths {
            let _ = self.inner.fs.remove(p).await;
        }
    }

    async fn export_one(
        &self,
        r: &KeyRange,
        snap: &Snapshot,
        path: &Path,
        bounds: (Vec<u8>, Vec<u8>),
    ) -> Result<()> {
        let it = self.iter(
            r.cf,
            IterOptions { lower: Some(&r.start), upper: r.end.as_deref(), snapshot: Some(snap) },
        )?;
        self.build_replacement(r, path, bounds, TableSource::Tree(Box::new(it))).await
    }

    /// Writes a table holding exactly `pairs` (sorted, unique, inside
    /// `range`) and a range deletion over all of `range`, so that
    /// [`Lsm::ingest`] of it replaces the range's contents with `pairs`: the
    /// way a caller adds its own records to an atomic ingest.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `pairs` are unsorted or outside the
    /// range; I/O failures.
    pub async fn write_table(
        &self,
        path: &Path,
        range: &KeyRange,
        pairs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<()> {
        let bounds = range.tree_bounds();
        let inside = |k: &[u8]| k >= range.start.as_slice() && range.end.as_deref().is_none_or(|e| k < e);
        if pairs.windows(2).any(|w| w[0].0 >= w[1].0) || pairs.iter().any(|(k, _)| !inside(k)) {
            return Err(Error::InvalidArgument(
                "write_table: pairs must be sorted, unique and in range".into(),
            ));
        }
        self.build_replacement(range, path, bounds, TableSource::Pairs(pairs.iter())).await
    }

    async fn build_replacement(
        &self,
        r: &KeyRange,
        path: &Path,
        bounds: (Vec<u8>, Vec<u8>),
        mut source: TableSource<'_, F::File>,
    ) -> Result<()> {
        let file = self.inner.fs.create(path).await?;
        let mut builder = TableBuilder::new(file, self.inner.opts.table_options());
        let mut ikey = Vec::new();
        let mut clock = WorkClock::new(&self.inner.opts);
        let filled: Result<()> = async {
            if let TableSource::Tree(it) = &mut source {
                it.seek_to_first().await?;
            }
            loop {
                ikey.clear();
                match &mut source {
                    TableSource::Tree(it) => {
                        if !it.valid() {
                            break;
                        }
                        key::encode_into(&mut ikey, &key::cf_key(r.cf.0, it.key()), 0, Kind::Put as u8);
                        builder.add(&ikey, it.value()).await?;
                        it.next().await?;
                    }
                    TableSource::Pairs(pairs) => {
                        let Some((k, v)) = pairs.next() else { break };
                        key::encode_into(&mut ikey, &key::cf_key(r.cf.0, k), 0, Kind::Put as u8);
                        builder.add(&ikey, v).await?;
                    }
                }
                clock.tick(&self.inner.opts).await;
            }
            Ok(())
        }
        .await;
        if let Err(e) = filled {
            builder.abandon().await;
            return Err(e);
        }
        builder.add_tombstone(Tombstone { start: bounds.0, end: bounds.1, seq: 0 });
        builder.finish().await?;
        Ok(())
    }

    /// Ingests tables made by [`Lsm::export`] (moved into the tree by
    /// rename, so they must be on the same file system). All of them take
    /// effect in one manifest edit, newer than every write before the call:
    /// each replaces the contents of its range.
    pub async fn ingest(&self, paths: &[PathBuf]) -> Result<()> {
        self.inner.ingest(paths).await
    }

    /// Counters and shape of the tree.
    pub fn stats(&self) -> Stats {
        let inner = &self.inner;
        let st = inner.state.borrow();
        let levels = st
            .version
            .levels
            .iter()
            .enumerate()
            .map(|(l, files)| LevelStats {
                files: files.len(),
                bytes: files.iter().map(|t| t.meta.size).sum(),
                target_bytes: if l == 0 { 0 } else { inner.opts.level_target(l) },
            })
            .collect();
        let mut mem_bytes = st.mem.bytes();
        for m in &st.imm {
            mem_bytes += m.bytes();
        }
        Stats {
            levels,
            cache: inner.cache.stats(),
            memtable_bytes: mem_bytes,
            immutable_memtables: st.imm.len(),
            last_seq: st.last_seq,
            pending_compaction_bytes: inner.pending_compaction_bytes(&st),
            table_raw_bytes: st.version.all_tables().map(|(_, t)| t.meta.raw_bytes).sum(),
            ..inner.stats.borrow().clone()
        }
    }

    /// Flushes the memtable, stops the background task and closes every
    /// file. Writes after close fail with [`Error::Closed`].
    pub async fn close(self) -> Result<()> {
        let flushed = self.flush().await;
        self.inner.state.borrow_mut().closing = true;
        self.inner.work.notify();
        self.inner.progress.notify();
        while self.inner.flusher.get() + self.inner.compactor.get() > 0 {
            let g = self.inner.progress.generation();
            self.inner.work.notify();
            self.inner.progress.changed_since(g).await;
        }
        flushed?;
        self.inner.remove_obsolete().await?;
        if let Some(w) = self.inner.manifest.lock().await.take() {
            w.close().await?;
        }
        Ok(())
    }
}

/// The two background loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    Flush,
    Compact,
}

/// Calls `f` when dropped.
fn scopeguard<G: FnOnce()>(f: G) -> impl Drop {
    struct Guard<G: FnOnce()>(Option<G>);
    impl<G: FnOnce()> Drop for Guard<G> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// Measures CPU stretches of background work and yields when one exceeds
/// the work slice.
pub(crate) struct WorkClock {
    since: Instant,
    ticks: u32,
}

impl WorkClock {
    pub(crate) fn new(_opts: &Options) -> Self {
        WorkClock { since: Instant::now(), ticks: 0 }
    }

    pub(crate) async fn tick(&mut self, opts: &Options) {
        self.ticks += 1;
        if self.ticks % 64 != 0 {
            return;
        }
        if self.since.elapsed() >= opts.work_slice {
            match &opts.yield_hook {
                Some(hook) => hook().await,
                None => YieldNow(false).await,
            }
            self.since = Instant::now();
        }
    }
}

/// Returns `Pending` once after waking itself: the executor runs whatever
/// else is ready first.
pub(crate) struct YieldNow(pub bool);

impl std::future::Future for YieldNow {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

impl<F: FileSystem> State<F> {
    pub(crate) fn mems_newest_first(&self) -> Vec<Rc<MemTable>> {
        let mut v = Vec::with_capacity(1 + self.imm.len());
        v.push(self.mem.clone());
        v.extend(self.imm.iter().rev().cloned());
        v
    }
}

impl<F: FileSystem + 'static> Inner<F> {
    pub(crate) fn check_poisoned(&self) -> Result<()> {
        let st = self.state.borrow();
        if let Some(p) = &st.poisoned {
            return Err(Error::Poisoned(p.clone()));
        }
        if st.closing {
            return Err(Error::Closed);
        }
        Ok(())
    }

    pub(crate) fn poison(&self, why: &str) {
        let mut st = self.state.borrow_mut();
        if st.poisoned.is_none() {
            tracing::error!(dir = %self.dir.display(), "lsm poisoned: {why}");
            st.poisoned = Some(why.to_string());
        }
        drop(st);
        self.progress.notify();
        self.work.notify();
    }

    fn freeze(&self, st: &mut State<F>) {
        let id = st.next_mem;
        st.next_mem += 1;
        let old = std::mem::replace(&mut st.mem, Rc::new(MemTable::new(id)));
        st.imm.push_back(old);
        self.work.notify();
    }

    pub(crate) fn make_iter(
        &self,
        mems: Vec<Rc<MemTable>>,
        version: Rc<Version<F::File>>,
        seq: u64,
        lower: Vec<u8>,
        upper: Vec<u8>,
        extra_pin: Box<dyn std::any::Any>,
    ) -> Iter<F::File> {
        let mut tombs: Vec<Tombstone> = Vec::new();
        for m in &mems {
            tombs.extend(
                m.tombstones().iter().filter(|t| t.seq <= seq && t.start < upper && lower < t.end).cloned(),
            );
        }
        for (_, t) in version.all_tables() {
            if t.meta.num_tombstones > 0 && t.meta.overlaps(&lower, &upper) {
                tombs.extend(
                    t.table
                        .tombstones()
                        .iter()
                        .filter(|t| t.seq <= seq && t.start < upper && lower < t.end)
                        .cloned(),
                );
            }
        }
        let frags = Fragments::new(&tombs);
        let kids = children(&mems, &version, &lower, &upper, false);
        Iter::new(MergeIter::new(kids), seq, frags, lower, upper, Box::new((mems, version, extra_pin)))
    }

    /// Waits (or works) until a write of `bytes` may go in: the stall logic.
    async fn make_room(&self, bytes: usize) -> Result<()> {
        let mut waited: Option<(Instant, bool)> = None;
        let result = loop {
            self.check_poisoned()?;
            enum Step {
                Go,
                Stop,
                Slow,
            }
            let g = self.progress.generation();
            let step = {
                let mut st = self.state.borrow_mut();
                let o = &self.opts;
                let l0 = st.version.levels[0].len();
                let pending = self.pending_compaction_bytes(&st);
                if st.imm.len() > o.max_immutable_memtables {
                    // `write` freezes a full memtable without waiting: the
                    // queue is over its bound until a flush catches up.
                    Step::Stop
                } else if st.mem.bytes() >= o.memtable_size {
                    if st.imm.len() >= o.max_immutable_memtables {
                        Step::Stop
                    } else {
                        self.freeze(&mut st);
                        Step::Go
                    }
                } else if l0 >= o.l0_stop_trigger || pending >= o.pending_compaction_stop_bytes {
                    Step::Stop
                } else if l0 >= o.l0_slowdown_trigger || pending >= o.pending_compaction_slowdown_bytes {
                    if st.credit >= 0 {
                        st.credit -= bytes as i64;
                        Step::Go
                    } else {
                        Step::Slow
                    }
                } else {
                    st.credit = 1 << 20;
                    Step::Go
                }
            };
            match step {
                Step::Go => break Ok(()),
                Step::Stop | Step::Slow => {
                    let stop = matches!(step, Step::Stop);
                    let start = waited.get_or_insert((Instant::now(), stop));
                    start.1 |= stop;
                    let inline_flush = self.flusher.get() == 0;
                    let inline_compact = self.compactor.get() == 0;
                    if inline_flush || inline_compact {
                        // Nobody else will do (some of) the work: do it here.
                        let flushed = inline_flush && self.flush_one().await?;
                        let compacted = !flushed && inline_compact && self.compact_once().await?;
                        if !flushed && !compacted && inline_flush && inline_compact {
                            // Nothing left to do: the debt is paid.
                            self.state.borrow_mut().credit = 1 << 20;
                        } else if !flushed && !compacted {
                            self.work.notify();
                            self.progress.changed_since(g).await;
                        }
                    } else {
                        self.work.notify();
                        self.progress.changed_since(g).await;
                    }
                }
            }
        };
        if let Some((start, stop)) = waited {
            let micros = start.elapsed().as_micros() as u64;
            let mut s = self.stats.borrow_mut();
            s.stall_micros += micros;
            s.stall_count += 1;
            s.max_stall_micros = s.max_stall_micros.max(micros);
            if stop {
                s.stop_micros += micros;
            }
        }
        result
    }

    /// Bytes compaction is estimated to owe: every level's excess over its
    /// target, times the fan-out it will be merged into, plus L0 once it is
    /// over its trigger.
    pub(crate) fn pending_compaction_bytes(&self, st: &State<F>) -> u64 {
        let o = &self.opts;
        let v = &st.version;
        let mut owed = 0u64;
        if v.levels[0].len() >= o.l0_compaction_trigger {
            owed += v.level_bytes(0);
        }
        for level in 1..o.num_levels - 1 {
            let bytes = v.level_bytes(level);
            let target = o.level_target(level);
            if bytes > target {
                owed = owed.saturating_add((bytes - target).saturating_mul(o.level_size_ratio + 1));
            }
        }
        owed
    }

    /// Waits until memtable `id` and every older one are flushed.
    async fn wait_flushed(&self, id: u64) -> Result<()> {
        loop {
            self.check_poisoned_allow_closing()?;
            let g = self.progress.generation();
            let pending = self.state.borrow().imm.front().is_some_and(|m| m.id() <= id);
            if !pending {
                return Ok(());
            }
            if self.flusher.get() == 0 {
                self.flush_one().await?;
            } else {
                self.progress.changed_since(g).await;
            }
        }
    }

    fn check_poisoned_allow_closing(&self) -> Result<()> {
        match &self.state.borrow().poisoned {
            Some(p) => Err(Error::Poisoned(p.clone())),
            None => Ok(()),
        }
    }

    pub(crate) fn alloc_file_number(&self) -> u64 {
        let mut st = self.state.borrow_mut();
        let n = st.next_file;
        st.next_file += 1;
        n
    }

    /// The whole version as the first edit of a new manifest.
    fn snapshot_edit(&self) -> VersionEdit {
        let st = self.state.borrow();
        VersionEdit {
            snapshot: true,
            marker: st.durable_marker.clone(),
            last_seq: Some(st.durable_seq),
            next_file: Some(st.next_file),
            added: st.version.all_tables().map(|(l, t)| (l, t.meta.clone())).collect(),
            deleted: Vec::new(),
            cf_added: st.cfs.iter().map(|(n, &id)| (id, n.clone())).collect(),
            cf_dropped: Vec::new(),
        }
    }

    /// Makes `edit` durable (rotating the manifest when it has grown). On
    /// failure the tree is poisoned: whether the edit is on disk is unknown.
    pub(crate) async fn log_edit(
        &self,
        guard: &mut futures::lock::MutexGuard<'_, Option<ManifestWriter<F>>>,
        mut edit: VersionEdit,
    ) -> Result<()> {
        self.check_poisoned_allow_closing()?;
        edit.next_file = Some(self.state.borrow().next_file + 1);
        let writer = guard.as_mut().ok_or(Error::Closed)?;
        let result = if writer.size() >= MANIFEST_ROTATE_BYTES {
            // A fresh manifest holding the version with this edit applied
            // is the same as the old one followed by the edit.
            let number = self.alloc_file_number();
            let mut snap = self.snapshot_edit();
            let mut files: BTreeMap<u64, (usize, FileMeta)> =
                snap.added.drain(..).map(|(l, f)| (f.number, (l, f))).collect();
            for (l, n) in &edit.deleted {
                if files.get(n).is_some_and(|(fl, _)| fl == l) {
                    files.remove(n);
                }
            }
            for (l, f) in &edit.added {
                files.insert(f.number, (*l, f.clone()));
            }
            snap.added = files.into_values().collect();
            if edit.marker.is_some() {
                snap.marker = edit.marker.clone();
            }
            snap.last_seq = snap.last_seq.max(edit.last_seq);
            snap.next_file = Some(self.state.borrow().next_file + 1);
            for (id, name) in &edit.cf_added {
                snap.cf_added.push((*id, name.clone()));
            }
            snap.cf_added.retain(|(id, _)| !edit.cf_dropped.contains(id));
            match ManifestWriter::create(&self.fs, &self.dir, number, &snap).await {
                Ok(new) => {
                    let old = std::mem::replace(writer, new);
                    let old_path = self.dir.join(manifest::manifest_name(old.number()));
                    let _ = old.close().await;
                    // The old manifest is no longer named by CURRENT.
                    self.fs.remove(&old_path).await.map_err(Error::from)
                }
                Err(e) => Err(e),
            }
        } else {
            writer.append(&edit).await
        };
        if let Err(e) = &result {
            self.poison(&format!("manifest write failed: {e}"));
        }
        result?;
        let mut st = self.state.borrow_mut();
        if let Some(s) = edit.last_seq {
            st.durable_seq = st.durable_seq.max(s);
        }
        if let Some(m) = edit.marker {
            st.durable_marker = Some(m);
        }
        Ok(())
    }

    /// Installs a durable edit's table changes as the new current version.
    pub(crate) fn install(
        &self,
        deleted: &[(usize, u64)],
        added: Vec<(usize, Handle<F>)>,
        obsolete: Vec<Handle<F>>,
    ) {
        let mut st = self.state.borrow_mut();
        st.version = Rc::new(st.version.apply(deleted, added));
        st.obsolete.extend(obsolete);
    }

    /// Removes files of the directory the manifest does not reference.
    async fn remove_unreferenced(&self, old_manifest: Option<u64>) -> Result<()> {
        let live: HashSet<u64> =
            self.state.borrow().version.all_tables().map(|(_, t)| t.meta.number).collect();
        let current_manifest = self.manifest.lock().await.as_ref().map(|w| w.number());
        let mut removed = false;
        for name in self.fs.list(&self.dir).await? {
            let dead = match manifest::parse_file_name(&name) {
                FileKind::Table(n) => !live.contains(&n),
                FileKind::Manifest(n) => Some(n) != current_manifest,
                FileKind::CurrentTmp => true,
                FileKind::Current | FileKind::Other => false,
            };
            if dead {
                if old_manifest.is_some() || !name.starts_with("MANIFEST") {
                    tracing::info!(dir = %self.dir.display(), file = %name, "removing unreferenced file");
                }
                self.fs.remove(&self.dir.join(&name)).await?;
                removed = true;
            }
        }
        if removed {
            self.fs.sync_dir(&self.dir).await?;
        }
        Ok(())
    }

    /// Closes and removes obsolete tables no reader holds any more.
    pub(crate) async fn remove_obsolete(&self) -> Result<()> {
        let free: Vec<Handle<F>> = {
            let mut st = self.state.borrow_mut();
            let (free, keep): (Vec<_>, Vec<_>) =
                std::mem::take(&mut st.obsolete).into_iter().partition(|t| Rc::strong_count(t) == 1);
            st.obsolete = keep;
            free
        };
        if free.is_empty() {
            return Ok(());
        }
        for t in free {
            let number = t.meta.number;
            if let Ok(handle) = Rc::try_unwrap(t) {
                if let Ok(table) = Rc::try_unwrap(handle.table) {
                    table.close().await?;
                }
            }
            self.fs.remove(&self.dir.join(manifest::table_name(number))).await?;
        }
        self.fs.sync_dir(&self.dir).await?;
        Ok(())
    }

    /// Opens a table this tree has just written and synced.
    pub(crate) async fn open_written(&self, number: u64, size: u64) -> Result<Rc<Table<F::File>>> {
        let path = self.dir.join(manifest::table_name(number));
        let file = self.fs.open(&path).await?;
        Ok(Rc::new(Table::open(file, number, size, None, self.cache.clone()).await?))
    }

    /// Flushes the oldest frozen memtable. Returns whether there was one.
    /// Any failure poisons the tree (fail-stop: a table or manifest write
    /// that failed leaves the files in an unknown state).
    pub(crate) async fn flush_one(&self) -> Result<bool> {
        let r = self.flush_oldest().await;
        if let Err(e) = &r {
            self.poison(&format!("flush failed: {e}"));
        }
        r
    }

    async fn flush_oldest(&self) -> Result<bool> {
        let _g = self.flush_lock.lock().await;
        let Some(mem) = self.state.borrow().imm.front().cloned() else {
            return Ok(false);
        };
        let started = Instant::now();
        let mut added = Vec::new();
        let mut written = 0;
        if !mem.is_empty() {
            let number = self.alloc_file_number();
            let path = self.dir.join(manifest::table_name(number));
            let file = self.fs.create(&path).await?;
            let mut builder = TableBuilder::new(file, self.opts.table_options());
            let snapshots = self.live_snapshots();
            let mut it = MemIter::new(mem.clone());
            it.seek_to_first();
            let mut last_key: Vec<u8> = Vec::new();
            let mut newer_seq: Option<u64> = None;
            let mut clock = WorkClock::new(&self.opts);
            let (mut first, mut last): (Option<Vec<u8>>, Vec<u8>) = (None, Vec::new());
            let mut buf = Vec::new();
            let mut val = Vec::new();
            while it.valid() {
                it.with_entry(|k, v| {
                    buf.clear();
                    buf.extend_from_slice(k);
                    val.clear();
                    val.extend_from_slice(v);
                });
                let ukey = key::user_key(&buf);
                let seq = key::seq_of(&buf);
                if ukey != last_key.as_slice() {
                    last_key.clear();
                    last_key.extend_from_slice(ukey);
                    newer_seq = None;
                }
                // A version hidden by a newer one in the same snapshot stripe
                // is seen by no reader.
                let hidden = newer_seq.is_some_and(|n| stripe(&snapshots, seq) >= n);
                newer_seq = Some(seq);
                if !hidden {
                    if first.is_none() {
                        first = Some(ukey.to_vec());
                    }
                    last.clear();
                    last.extend_from_slice(ukey);
                    builder.add(&buf, &val).await?;
                }
                it.next();
                clock.tick(&self.opts).await;
            }
            let tombs: Vec<Tombstone> = mem.tombstones().clone();
            for t in &tombs {
                builder.add_tombstone(t.clone());
            }
            let info = builder.finish().await?;
            written = info.size;
            let (smallest, upper) = bounds(first.as_deref(), first.is_some().then_some(&last[..]), &tombs);
            let (min_seq, max_seq) = mem.seq_range().unwrap_or((0, 0));
            let meta = FileMeta {
                number,
                size: info.size,
                smallest,
                upper,
                min_seq,
                max_seq,
                global_seq: None,
                num_entries: info.num_entries,
                num_deletions: info.num_deletions,
                num_tombstones: info.num_tombstones,
                raw_bytes: info.raw_key_bytes + info.raw_value_bytes,
            };
            let table = self.open_written(number, info.size).await?;
            added.push((0usize, Rc::new(TableHandle { meta, table })));
            // The table's name must be durable before the manifest lists it.
            self.fs.sync_dir(&self.dir).await?;
        }
        let edit = VersionEdit {
            marker: mem.marker(),
            last_seq: mem.seq_range().map(|r| r.1),
            added: added.iter().map(|(l, t)| (*l, t.meta.clone())).collect(),
            ..Default::default()
        };
        crash_point!("lsm::flush::before_manifest");
        {
            let mut guard = self.manifest.lock().await;
            self.log_edit(&mut guard, edit).await?;
            let mut st = self.state.borrow_mut();
            let front = st.imm.pop_front();
            debug_assert!(front.is_some_and(|f| Rc::ptr_eq(&f, &mem)));
            st.version = Rc::new(st.version.apply(&[], added));
        }
        {
            let mut s = self.stats.borrow_mut();
            s.flush_bytes_written += written;
            s.flushes += 1;
            s.flush_micros += started.elapsed().as_micros() as u64;
        }
        self.progress.notify();
        self.work.notify();
        Ok(true)
    }

    /// Live snapshot seqs, ascending.
    pub(crate) fn live_snapshots(&self) -> Vec<u64> {
        self.snapshots.borrow().keys().copied().collect()
    }

    async fn ingest(&self, paths: &[PathBuf]) -> Result<()> {
        self.check_poisoned()?;
        if paths.is_empty() {
            return Ok(());
        }
        // Move the files in and check them before anything is visible.
        let mut staged: Vec<(u64, Rc<Table<F::File>>)> = Vec::new();
        let mut ranges: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let result = async {
            for p in paths {
                let number = self.alloc_file_number();
                let dest = self.dir.join(manifest::table_name(number));
                self.fs.rename(p, &dest).await?;
                let file = self.fs.open(&dest).await?;
                let size = file.size().await?;
                let table = Table::open(file, number, size, Some(0), self.cache.clone()).await?;
                let info = table.info().clone();
                if info.max_seq != 0 {
                    return Err(Error::InvalidArgument(format!(
                        "{} was not made by export (has seqs)",
                        p.display()
                    )));
                }
                let first = info.smallest.as_deref().map(key::user_key);
                let last = info.largest.as_deref().map(key::user_key);
                let b = bounds(first, last, table.tombstones());
                if b.0 >= b.1 && info.num_entries == 0 && table.tombstones().is_empty() {
                    return Err(Error::InvalidArgument(format!("{} is empty", p.display())));
                }
                staged.push((number, Rc::new(table)));
                ranges.push(b);
            }
            let mut sorted = ranges.clone();
            sorted.sort();
            if sorted.windows(2).any(|w| w[0].1 > w[1].0) {
                return Err(Error::InvalidArgument("ingested tables overlap each other".into()));
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            for (number, _) in &staged {
                let _ = self.fs.remove(&self.dir.join(manifest::table_name(*number))).await;
            }
            return Err(e);
        }
        // The tables are in the tree's directory now: from here on a
        // failure leaves the files in an unknown state (fail-stop).
        let placed = self.place_ingested(paths, staged, ranges).await;
        if let Err(e) = &placed {
            self.poison(&format!("ingest failed: {e}"));
        }
        placed
    }

    /// Second half of `ingest`: makes the staged tables durable
    /// and lists them in the manifest above everything in the tree.
    async fn place_ingested(
        &self,
        paths: &[PathBuf],
        staged: Vec<(u64, Rc<Table<F::File>>)>,
        ranges: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<()> {
        self.fs.sync_dir(&self.dir).await?;
        for p in paths {
            if let Some(parent) = p.parent() {
                self.fs.sync_dir(parent).await?;
            }
        }
        crash_point!("lsm::ingest::before_manifest");

        // No compaction may move L0 data below the ingested tables while
        // they are placed; memtables overlapping them are flushed first so
        // that every older version is in a table below them.
        let _c = self.compaction_lock.lock().await;
        let seq = loop {
            let target = {
                let mut st = self.state.borrow_mut();
                if !st.mem.is_empty() {
                    self.freeze(&mut st);
                }
                st.next_mem - 1
            };
            self.wait_flushed(target).await?;
            let mut st = self.state.borrow_mut();
            if st.mem.is_empty() && st.imm.is_empty() {
                st.last_seq += 1;
                break st.last_seq;
            }
        };
        let mut added = Vec::new();
        for ((number, validated), (smallest, upper)) in staged.into_iter().zip(ranges) {
            let size = validated.info().size;
            let info = validated.info().clone();
            if let Ok(t) = Rc::try_unwrap(validated) {
                t.close().await?;
            }
            let path = self.dir.join(manifest::table_name(number));
            let file = self.fs.open(&path).await?;
            let table = Rc::new(Table::open(file, number, size, Some(seq), self.cache.clone()).await?);
            let meta = FileMeta {
                number,
                size,
                smallest,
                upper,
                min_seq: seq,
                max_seq: seq,
                global_seq: Some(seq),
                num_entries: info.num_entries,
                num_deletions: info.num_deletions,
                num_tombstones: info.num_tombstones,
                raw_bytes: info.raw_key_bytes + info.raw_value_bytes,
            };
            added.push((0usize, Rc::new(TableHandle { meta, table })));
        }
        let edit = VersionEdit {
            last_seq: Some(seq),
            added: added.iter().map(|(l, t)| (*l, t.meta.clone())).collect(),
            ..Default::default()
        };
        let mut guard = self.manifest.lock().await;
        self.log_edit(&mut guard, edit).await?;
        self.install(&[], added, Vec::new());
        drop(guard);
        self.stats.borrow_mut().ingested_tables += paths.len() as u64;
        self.work.notify();
        self.progress.notify();
        Ok(())
    }
}

/// The smallest snapshot >= `seq` (`u64::MAX` if none): versions in the same
/// stripe are told apart by no reader.
pub(crate) fn stripe(snapshots: &[u64], seq: u64) -> u64 {
    let i = snapshots.partition_point(|&s| s < seq);
    snapshots.get(i).copied().unwrap_or(u64::MAX)
}

/// Key bounds `[smallest, upper)` of a table from its first and last point
/// user keys and its range deletions.
pub(crate) fn bounds(first: Option<&[u8]>, last: Option<&[u8]>, tombs: &[Tombstone]) -> (Vec<u8>, Vec<u8>) {
    let mut smallest: Option<Vec<u8>> = first.map(|f| f.to_vec());
    let mut upper: Option<Vec<u8>> = last.map(key::successor);
    for t in tombs {
        if t.start >= t.end {
            continue;
        }
        if smallest.as_ref().is_none_or(|s| t.start < *s) {
            smallest = Some(t.start.clone());
        }
        if upper.as_ref().is_none_or(|u| t.end > *u) {
            upper = Some(t.end.clone());
        }
    }
    (smallest.unwrap_or_default(), upper.unwrap_or_default())
}
