//! Shared by the tree's integration tests: the model (a `BTreeMap` per
//! column family), random operations and their runner, checks of a tree
//! against the model, the directory check (no leaked file), and a file
//! system wrapper that records a crash image at every step.

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;

use bytes::Bytes;
use ekv_io::{CrashMode, File, FileSystem, GlommioFs, MemFile, MemFs};
use ekv_lsm::{Cf, Error, IterOptions, KeyRange, Lsm, Options, Snapshot, Stats, WriteBatch};
use rand::Rng;

// ---------------------------------------------------------------------------
// Options, keys, values, markers.

/// Options small enough that flushes and compactions happen all the time.
pub fn tiny_options() -> Options {
    Options {
        memtable_size: 8 << 10,
        max_immutable_memtables: 2,
        block_size: 512,
        restart_interval: 4,
        bloom_bits_per_key: 10,
        block_cache_size: 8 << 10,
        target_file_size: 12 << 10,
        base_level_size: 40 << 10,
        level_size_ratio: 4,
        num_levels: 4,
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 3,
        l0_stop_trigger: 5,
        pending_compaction_slowdown_bytes: 192 << 10,
        pending_compaction_stop_bytes: 512 << 10,
        write_chunk: 4096,
        ..Options::default()
    }
}

/// Distinct ordinary keys per family (plus two odd ones, see [`key`]).
pub const KEYS: u16 = 240;

/// Key number `n`: `k0042`, sometimes with a suffix (so lengths vary and
/// `k0042` and `k0042-` are neighbours), the empty key, or `ff ff 00`.
pub fn key(n: u16) -> Vec<u8> {
    let n = n % (KEYS + 2);
    if n == KEYS {
        return Vec::new();
    }
    if n == KEYS + 1 {
        return vec![0xff, 0xff, 0x00];
    }
    let mut k = format!("k{n:04}").into_bytes();
    match n % 5 {
        3 => k.push(b'-'),
        4 => k.extend_from_slice(&[b'x'; 24]),
        _ => {}
    }
    k
}

/// A value that names where it came from; `len_sel` picks its size (some
/// larger than a block).
pub fn value(salt: u64, len_sel: u16) -> Vec<u8> {
    let len = [0usize, 6, 30, 90, 160, 700][len_sel as usize % 6];
    let mut v = format!("v{salt}:").into_bytes();
    while v.len() < len {
        v.push(b'a' + (v.len() % 26) as u8);
    }
    v.truncate(len);
    v
}

pub fn marker(n: u64) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

/// The marker counter in a recovered marker (0: none).
pub fn marker_of(m: Option<&[u8]>) -> u64 {
    m.map_or(0, |m| u64::from_be_bytes(m.try_into().expect("an 8-byte marker")))
}

// ---------------------------------------------------------------------------
// The model.

/// One family's contents.
pub type CfMap = BTreeMap<Bytes, Bytes>;

/// The whole tree: families by index (0: `default`, 1: `a`, 2: `b`). Each
/// family is shared until changed, so copies are cheap.
pub type State = Vec<Rc<CfMap>>;

pub const CF_NAMES: [&str; 3] = ["default", "a", "b"];

pub fn empty_state() -> State {
    (0..CF_NAMES.len()).map(|_| Rc::new(CfMap::new())).collect()
}

/// `[lo, hi)` as range bounds.
type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

fn bounds<'a>(lo: &'a [u8], hi: Option<&'a [u8]>) -> Option<KeyBounds<'a>> {
    if hi.is_some_and(|h| h <= lo) {
        return None;
    }
    Some((Bound::Included(lo), hi.map_or(Bound::Unbounded, Bound::Excluded)))
}

/// Removes `[lo, hi)` (to the end if `hi` is `None`).
pub fn remove_range(m: &mut CfMap, lo: &[u8], hi: Option<&[u8]>) {
    let Some(b) = bounds(lo, hi) else { return };
    let doomed: Vec<Bytes> = m.range::<[u8], _>(b).map(|(k, _)| k.clone()).collect();
    for k in doomed {
        m.remove(&k);
    }
}

/// Entries of `m` in `[lo, hi)`.
pub fn range_of(m: &CfMap, lo: &[u8], hi: Option<&[u8]>) -> Vec<(Bytes, Bytes)> {
    match bounds(lo, hi) {
        Some(b) => m.range::<[u8], _>(b).map(|(k, v)| (k.clone(), v.clone())).collect(),
        None => Vec::new(),
    }
}

/// Where a model cursor over `[lo, hi)` lands.
pub struct Cursor<'a> {
    m: &'a CfMap,
    lo: Vec<u8>,
    hi: Option<Vec<u8>>,
    pub at: Option<Bytes>,
}

impl<'a> Cursor<'a> {
    pub fn new(m: &'a CfMap, lo: Vec<u8>, hi: Option<Vec<u8>>) -> Self {
        Cursor { m, lo, hi, at: None }
    }

    fn first_from(&self, from: &[u8], inclusive: bool) -> Option<Bytes> {
        let start = if inclusive { Bound::Included(from) } else { Bound::Excluded(from) };
        let k = self.m.range::<[u8], _>((start, Bound::Unbounded)).map(|(k, _)| k).next()?;
        let in_bounds = k.as_ref() >= self.lo.as_slice() && self.hi.as_deref().is_none_or(|h| k.as_ref() < h);
        in_bounds.then(|| k.clone())
    }

    fn last_to(&self, to: Option<&[u8]>, inclusive: bool) -> Option<Bytes> {
        let end = match to {
            None => Bound::Unbounded,
            Some(t) if inclusive => Bound::Included(t),
            Some(t) => Bound::Excluded(t),
        };
        let k = self
            .m
            .range::<[u8], _>((Bound::Unbounded, end))
            .map(|(k, _)| k)
            .rev()
            .find(|k| self.hi.as_deref().is_none_or(|h| k.as_ref() < h))?;
        (k.as_ref() >= self.lo.as_slice()).then(|| k.clone())
    }

    pub fn seek_to_first(&mut self) {
        self.at = self.first_from(&self.lo.clone(), true);
    }
    pub fn seek_to_last(&mut self) {
        self.at = self.last_to(None, false);
    }
    pub fn seek(&mut self, k: &[u8]) {
        let from = if k < self.lo.as_slice() { self.lo.clone() } else { k.to_vec() };
        self.at = self.first_from(&from, true);
    }
    pub fn seek_for_prev(&mut self, k: &[u8]) {
        self.at = self.last_to(Some(k), true);
    }
    pub fn next(&mut self) {
        let cur = self.at.take().expect("next on an invalid cursor");
        self.at = self.first_from(&cur, false);
    }
    pub fn prev(&mut self) {
        let cur = self.at.take().expect("prev on an invalid cursor");
        self.at = self.last_to(Some(&cur), false);
    }
    pub fn entry(&self) -> Option<(Bytes, Bytes)> {
        self.at.as_ref().map(|k| (k.clone(), self.m[k].clone()))
    }
}

// ---------------------------------------------------------------------------
// Checks.

/// What an iterator shows now.
pub fn shown<T: File + 'static>(it: &ekv_lsm::Iter<T>) -> Option<(Vec<u8>, Vec<u8>)> {
    it.valid().then(|| (it.key().to_vec(), it.value().to_vec()))
}

fn want(e: Option<(Bytes, Bytes)>) -> Option<(Vec<u8>, Vec<u8>)> {
    e.map(|(k, v)| (k.to_vec(), v.to_vec()))
}

/// Short form of an entry for messages.
pub fn show(e: &Option<(Vec<u8>, Vec<u8>)>) -> String {
    match e {
        None => "<end>".into(),
        Some((k, v)) => {
            format!("{}={}", String::from_utf8_lossy(k), String::from_utf8_lossy(&v[..v.len().min(12)]))
        }
    }
}

/// Compares one family of `lsm` (at `snap`, newest if `None`) with `m`:
/// a forward scan, a backward scan, and point reads of a sample of keys.
pub async fn check_cf<F: FileSystem + 'static>(
    lsm: &Lsm<F>,
    cf: Cf,
    m: &CfMap,
    snap: Option<&Snapshot>,
    what: &str,
) -> Result<(), String> {
    let err = |e: Error| format!("{what}: {e}");
    let mut it = lsm.iter(cf, IterOptions { snapshot: snap, ..IterOptions::default() }).map_err(err)?;
    it.seek_to_first().await.map_err(err)?;
    let mut fwd = Vec::new();
    while it.valid() {
        fwd.push((it.key().to_vec(), it.value().to_vec()));
        it.next().await.map_err(err)?;
    }
    let expect: Vec<(Vec<u8>, Vec<u8>)> = m.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
    if fwd != expect {
        let first_diff =
            fwd.iter().zip(&expect).position(|(a, b)| a != b).unwrap_or(fwd.len().min(expect.len()));
        return Err(format!(
            "{what}: cf {} forward scan: {} entries, model {}; first difference at {first_diff}: {} vs model {}",
            cf.id(),
            fwd.len(),
            expect.len(),
            show(&fwd.get(first_diff).cloned()),
            show(&expect.get(first_diff).cloned()),
        ));
    }
    it.seek_to_last().await.map_err(err)?;
    let mut back = Vec::new();
    while it.valid() {
        back.push((it.key().to_vec(), it.value().to_vec()));
        it.prev().await.map_err(err)?;
    }
    back.reverse();
    if back != expect {
        return Err(format!(
            "{what}: cf {} backward scan: {} entries, model {}",
            cf.id(),
            back.len(),
            expect.len()
        ));
    }
    drop(it);
    for n in (0..KEYS + 2).step_by(7) {
        let k = key(n);
        let got = match snap {
            Some(s) => lsm.get_at(cf, &k, s).await,
            None => lsm.get(cf, &k).await,
        }
        .map_err(err)?;
        let exp = m.get(k.as_slice());
        if got.as_deref() != exp.map(|v| v.as_ref()) {
            return Err(format!(
                "{what}: cf {} get {:?}: {:?} vs model {:?}",
                cf.id(),
                String::from_utf8_lossy(&k),
                got.map(|v| v.len()),
                exp.map(|v| v.len())
            ));
        }
    }
    Ok(())
}

/// Compares every family of `state` that exists in `lsm`.
pub async fn check_state<F: FileSystem + 'static>(
    lsm: &Lsm<F>,
    state: &State,
    snap: Option<&Snapshot>,
    what: &str,
) -> Result<(), String> {
    for (i, name) in CF_NAMES.iter().enumerate() {
        match lsm.cf(name) {
            Ok(cf) => check_cf(lsm, cf, &state[i], snap, &format!("{what} [{name}]")).await?,
            // A dropped family cannot be named, not even at a snapshot.
            Err(_) if state[i].is_empty() || snap.is_some() => {}
            Err(e) => return Err(format!("{what}: family {name}: {e}")),
        }
    }
    Ok(())
}

/// The directory holds `CURRENT`, one manifest and exactly the tables the
/// tree lists: nothing leaked, nothing half-written left behind.
pub async fn check_files<F: FileSystem>(fs: &F, dir: &Path, stats: &Stats, what: &str) -> Result<(), String> {
    let names = fs.list(dir).await.map_err(|e| format!("{what}: list: {e}"))?;
    let tables = names.iter().filter(|n| n.ends_with(".sst")).count();
    let manifests = names.iter().filter(|n| n.starts_with("MANIFEST-")).count();
    let current = names.iter().filter(|n| *n == "CURRENT").count();
    let listed: usize = stats.levels.iter().map(|l| l.files).sum();
    if tables != listed || manifests != 1 || current != 1 || tables + manifests + current != names.len() {
        return Err(format!(
            "{what}: directory {names:?} but the tree lists {listed} tables ({:?})",
            stats.levels
        ));
    }
    Ok(())
}

/// Shape invariants that hold at any time.
pub fn check_stats(stats: &Stats, opts: &Options, what: &str) -> Result<(), String> {
    if stats.levels.len() != opts.num_levels {
        return Err(format!("{what}: {} levels", stats.levels.len()));
    }
    for (l, s) in stats.levels.iter().enumerate() {
        if (s.files == 0) != (s.bytes == 0) {
            return Err(format!("{what}: level {l} has {} files of {} bytes", s.files, s.bytes));
        }
    }
    Ok(())
}

/// After compactions caught up: L0 below its trigger, every middle level
/// within its target.
pub fn check_compacted(stats: &Stats, opts: &Options, what: &str) -> Result<(), String> {
    if stats.levels[0].files >= opts.l0_compaction_trigger {
        return Err(format!(
            "{what}: L0 has {} tables after compactions: {:?}",
            stats.levels[0].files, stats.levels
        ));
    }
    for l in 1..opts.num_levels - 1 {
        if stats.levels[l].bytes >= stats.levels[l].target_bytes {
            return Err(format!("{what}: level {l} over target after compactions: {:?}", stats.levels));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// File systems under test.

/// A file system the runner can crash (or not).
pub trait TestFs: FileSystem + Clone + 'static {
    /// A copy of the file system after a power cut, if it can simulate one.
    fn crashed_copy(&self, mode: CrashMode) -> Option<Self>;
}

impl TestFs for MemFs {
    fn crashed_copy(&self, mode: CrashMode) -> Option<Self> {
        let c = self.snapshot();
        c.crash(mode);
        Some(c)
    }
}

impl TestFs for GlommioFs {
    fn crashed_copy(&self, _mode: CrashMode) -> Option<Self> {
        None
    }
}

/// A crash image taken right after one file-system step.
#[derive(Debug)]
pub struct CrashPoint {
    pub fs: MemFs,
    pub step: String,
}

#[derive(Debug, Default)]
struct Recorder {
    capture: bool,
    points: Vec<CrashPoint>,
    steps: u64,
    /// fdatasync calls so far (failed ones included).
    syncs: u64,
    fail_sync: Option<u64>,
    failed: Option<PathBuf>,
    /// Hand out write buffers holding the bytes of the last buffer written
    /// (as a DMA buffer pool may), not zeros.
    dirty: bool,
    last_buf: Vec<u8>,
}

/// [`MemFs`] that can record a crash image after every mutating step
/// (create, write, sync, rename, remove, directory sync), and fail the
/// n-th fdatasync.
#[derive(Debug, Clone)]
pub struct StepFs {
    pub mem: MemFs,
    rec: Rc<RefCell<Recorder>>,
}

impl StepFs {
    pub fn new(mem: MemFs) -> Self {
        StepFs { mem, rec: Rc::default() }
    }

    /// Write buffers come filled with stale bytes from now on.
    pub fn dirty_buffers(&self) {
        self.rec.borrow_mut().dirty = true;
    }

    /// Starts or stops recording crash images.
    pub fn capture(&self, on: bool) {
        self.rec.borrow_mut().capture = on;
    }

    /// The crash images recorded since the last call.
    pub fn take_points(&self) -> Vec<CrashPoint> {
        std::mem::take(&mut self.rec.borrow_mut().points)
    }

    /// Makes fdatasync number `n` (counting from 0, failed ones included) fail.
    pub fn fail_sync(&self, n: u64) {
        self.rec.borrow_mut().fail_sync = Some(n);
    }

    /// The file whose sync was made to fail, once it happened.
    pub fn failed(&self) -> Option<PathBuf> {
        self.rec.borrow().failed.clone()
    }

    pub fn syncs(&self) -> u64 {
        self.rec.borrow().syncs
    }

    pub fn steps(&self) -> u64 {
        self.rec.borrow().steps
    }

    fn after(&self, what: &str, path: &Path) {
        let mut r = self.rec.borrow_mut();
        r.steps += 1;
        if r.capture {
            let step = format!("#{} {what} {}", r.steps, path.display());
            r.points.push(CrashPoint { fs: self.mem.snapshot(), step });
        }
    }
}

impl TestFs for StepFs {
    fn crashed_copy(&self, mode: CrashMode) -> Option<Self> {
        self.mem.crashed_copy(mode).map(StepFs::new)
    }
}

#[derive(Debug)]
pub struct StepFile {
    inner: MemFile,
    fs: StepFs,
}

impl File for StepFile {
    type Buf = Vec<u8>;
    type ReadBuf = Vec<u8>;

    fn path(&self) -> &Path {
        self.inner.path()
    }
    fn alignment(&self) -> u64 {
        self.inner.alignment()
    }
    fn alloc_buf(&self, len: usize) -> Vec<u8> {
        let r = self.fs.rec.borrow();
        if !r.dirty || r.last_buf.is_empty() {
            return self.inner.alloc_buf(len);
        }
        r.last_buf.iter().copied().cycle().take(len).collect()
    }
    async fn write_at(&self, buf: Vec<u8>, pos: u64) -> ekv_io::Result<()> {
        if self.fs.rec.borrow().dirty {
            self.fs.rec.borrow_mut().last_buf = buf.clone();
        }
        self.inner.write_at(buf, pos).await?;
        self.fs.after("write", self.inner.path());
        Ok(())
    }
    async fn read_at(&self, pos: u64, len: usize) -> ekv_io::Result<Vec<u8>> {
        self.inner.read_at(pos, len).await
    }
    async fn fdatasync(&self) -> ekv_io::Result<()> {
        {
            let mut r = self.fs.rec.borrow_mut();
            if r.fail_sync == Some(r.syncs) {
                self.fs.mem.fail_next_syncs(1);
                r.failed = Some(self.inner.path().to_path_buf());
            }
            r.syncs += 1;
        }
        self.inner.fdatasync().await?;
        self.fs.after("sync", self.inner.path());
        Ok(())
    }
    async fn size(&self) -> ekv_io::Result<u64> {
        self.inner.size().await
    }
    async fn close(self) -> ekv_io::Result<()> {
        self.inner.close().await
    }
}

impl FileSystem for StepFs {
    type File = StepFile;

    async fn open(&self, path: &Path) -> ekv_io::Result<StepFile> {
        Ok(StepFile { inner: self.mem.open(path).await?, fs: self.clone() })
    }
    async fn create(&self, path: &Path) -> ekv_io::Result<StepFile> {
        let inner = self.mem.create(path).await?;
        self.after("create", path);
        Ok(StepFile { inner, fs: self.clone() })
    }
    async fn rename(&self, from: &Path, to: &Path) -> ekv_io::Result<()> {
        self.mem.rename(from, to).await?;
        self.after("rename to", to);
        Ok(())
    }
    async fn remove(&self, path: &Path) -> ekv_io::Result<()> {
        self.mem.remove(path).await?;
        self.after("remove", path);
        Ok(())
    }
    async fn sync_dir(&self, dir: &Path) -> ekv_io::Result<()> {
        self.mem.sync_dir(dir).await?;
        self.after("sync_dir", dir);
        Ok(())
    }
    async fn create_dir_all(&self, dir: &Path) -> ekv_io::Result<()> {
        self.mem.create_dir_all(dir).await
    }
    async fn list(&self, dir: &Path) -> ekv_io::Result<Vec<String>> {
        self.mem.list(dir).await
    }
}

// ---------------------------------------------------------------------------
// Background task.

/// The running background tasks of a tree (`run_flusher` and
/// `run_compactor`), resolving once both ended; dropping it cancels them.
pub type BgTask = Pin<Box<dyn Future<Output = ekv_lsm::Result<()>>>>;
/// Starts the background tasks of a tree on the test's executor.
pub type Spawn<F> = Rc<dyn Fn(Lsm<F>) -> BgTask>;

/// Runs `body` either with all work inline (`futures::executor::block_on`,
/// no background task) or on a `LocalPool` with the flusher and the
/// compactor spawned as tasks of their own.
pub fn run_both_ways<F, Fut>(background: bool, body: impl FnOnce(Option<Spawn<F>>) -> Fut) -> Fut::Output
where
    F: FileSystem + 'static,
    Fut: Future,
{
    if !background {
        return futures::executor::block_on(body(None));
    }
    use futures::task::LocalSpawnExt;
    let mut pool = futures::executor::LocalPool::new();
    let spawner = pool.spawner();
    let spawn: Spawn<F> = Rc::new(move |lsm: Lsm<F>| {
        let l = lsm.clone();
        let flusher =
            spawner.spawn_local_with_handle(async move { l.run_flusher().await }).expect("pool runs");
        let compactor =
            spawner.spawn_local_with_handle(async move { lsm.run_compactor().await }).expect("pool runs");
        Box::pin(async move {
            let (a, b) = futures::join!(flusher, compactor);
            a.and(b)
        }) as BgTask
    });
    pool.run_until(body(Some(spawn)))
}

// ---------------------------------------------------------------------------
// Operations and the runner.

/// One write of a batch: family, kind (0-5 put, 6-7 delete, 8 delete_range,
/// 9 delete_from), key, and a second key or value size.
#[derive(Debug, Clone, Copy)]
pub struct WOp {
    pub cf: u8,
    pub kind: u8,
    pub key: u16,
    pub arg: u16,
}

/// An iterator movement.
#[derive(Debug, Clone, Copy)]
pub enum Move {
    First,
    Last,
    Seek(u16),
    SeekForPrev(u16),
    Next,
    Prev,
}

#[derive(Debug, Clone)]
pub enum Op {
    /// One atomic batch (always with a new marker).
    Write(Vec<WOp>),
    Get {
        cf: u8,
        key: u16,
        snap: Option<u8>,
    },
    TakeSnapshot,
    ReleaseSnapshot(u8),
    /// An iterator in bounds, newest or at a snapshot, moved around.
    Iter {
        cf: u8,
        snap: Option<u8>,
        lower: Option<u16>,
        upper: Option<u16>,
        moves: Vec<Move>,
    },
    Flush,
    WaitForCompactions,
    CompactAll,
    /// Exports `[start, end)` of `cf` (and all of `whole_cf`) at a snapshot
    /// and ingests the tables into this tree or the other one.
    ExportIngest {
        cf: u8,
        start: u16,
        end: Option<u16>,
        whole_cf: Option<u8>,
        snap: Option<u8>,
        into_other: bool,
    },
    /// Drops family `b` (it is created again on its next use, with the
    /// same id).
    DropCf,
    /// Close and open.
    Reopen,
    /// Drop without close, crash the file system, open.
    Crash {
        tear: Option<u64>,
    },
    /// An iterator that lives on across the following steps (writes,
    /// flushes, compactions, ingests) and keeps showing what it started on.
    OpenIter {
        cf: u8,
        snap: Option<u8>,
        lower: Option<u16>,
        upper: Option<u16>,
        first: Move,
    },
    /// Moves one of the living iterators.
    StepIter {
        which: u8,
        moves: Vec<Move>,
    },
}

fn random_moves(rng: &mut dyn rand::RngCore, n: usize, position_first: bool) -> Vec<Move> {
    (0..n)
        .map(|i| {
            let r = if i == 0 && position_first { rng.gen_range(0..4) } else { rng.gen_range(0..20) };
            let k = rng.gen_range(0..KEYS + 2);
            match r {
                0 => Move::First,
                1 => Move::Last,
                2 => Move::Seek(k),
                3 => Move::SeekForPrev(k),
                4..=11 => Move::Next,
                _ => Move::Prev,
            }
        })
        .collect()
}

/// A random operation (for seeded runs; the proptest strategy is in
/// `model.rs`).
pub fn random_op(rng: &mut impl Rng) -> Op {
    let snap = |rng: &mut dyn rand::RngCore| if rng.gen_bool(0.4) { Some(rng.gen::<u8>()) } else { None };
    let k = |rng: &mut dyn rand::RngCore| rng.gen_range(0..KEYS + 2);
    match rng.gen_range(0..1000) {
        0..=599 => Op::Write(
            (0..rng.gen_range(1..6))
                .map(|_| WOp {
                    cf: rng.gen_range(0..3),
                    kind: if rng.gen_bool(0.03) { 9 } else { rng.gen_range(0..9) },
                    key: k(rng),
                    arg: rng.gen_range(0..KEYS + 2),
                })
                .collect(),
        ),
        600..=699 => Op::Get { cf: rng.gen_range(0..3), key: k(rng), snap: snap(rng) },
        700..=739 => Op::TakeSnapshot,
        740..=769 => Op::ReleaseSnapshot(rng.gen()),
        770..=889 => Op::Iter {
            cf: rng.gen_range(0..3),
            snap: snap(rng),
            lower: rng.gen_bool(0.4).then(|| k(rng)),
            upper: rng.gen_bool(0.4).then(|| k(rng)),
            moves: {
                let n = rng.gen_range(1..24);
                random_moves(rng, n, true)
            },
        },
        890..=914 => Op::Flush,
        915..=934 => Op::WaitForCompactions,
        935..=941 => Op::CompactAll,
        942..=971 => Op::ExportIngest {
            cf: rng.gen_range(0..3),
            start: k(rng),
            end: rng.gen_bool(0.8).then(|| k(rng)),
            whole_cf: rng.gen_bool(0.2).then(|| rng.gen_range(0..3)),
            snap: snap(rng),
            into_other: rng.gen_bool(0.5),
        },
        972..=979 => Op::Reopen,
        980..=985 => Op::DropCf,
        986..=992 => Op::Crash { tear: rng.gen_bool(0.5).then(|| rng.gen()) },
        993..=995 => Op::OpenIter {
            cf: rng.gen_range(0..3),
            snap: snap(rng),
            lower: rng.gen_bool(0.3).then(|| k(rng)),
            upper: rng.gen_bool(0.3).then(|| k(rng)),
            first: random_moves(rng, 1, true)[0],
        },
        _ => Op::StepIter { which: rng.gen(), moves: random_moves(rng, 12, false) },
    }
}

/// Where the runner keeps its trees.
#[derive(Clone)]
pub struct Setup<F: TestFs> {
    pub fs: F,
    pub dir: PathBuf,
    pub other_dir: PathBuf,
    pub export_dir: PathBuf,
    pub opts: Options,
    pub spawn: Option<Spawn<F>>,
}

/// A tree, its background task, its families.
struct Tree<F: TestFs> {
    lsm: Lsm<F>,
    bg: Option<BgTask>,
    cfs: Vec<Option<Cf>>,
}

/// Makes the same move with the iterator and the model cursor and
/// compares where they land (`next`/`prev` of an invalid iterator are
/// skipped).
async fn move_both<T: File + 'static>(it: &mut ekv_lsm::Iter<T>, cur: &mut Cursor<'_>, mv: Move, what: &str) {
    match mv {
        Move::First => {
            it.seek_to_first().await.unwrap();
            cur.seek_to_first();
        }
        Move::Last => {
            it.seek_to_last().await.unwrap();
            cur.seek_to_last();
        }
        Move::Seek(k) => {
            it.seek(&key(k)).await.unwrap();
            cur.seek(&key(k));
        }
        Move::SeekForPrev(k) => {
            it.seek_for_prev(&key(k)).await.unwrap();
            cur.seek_for_prev(&key(k));
        }
        Move::Next | Move::Prev if !it.valid() => return,
        Move::Next => {
            it.next().await.unwrap();
            cur.next();
        }
        Move::Prev => {
            it.prev().await.unwrap();
            cur.prev();
        }
    }
    let (got, exp) = (shown(it), want(cur.entry()));
    assert!(got == exp, "{what}: iterator at {}, model at {}", show(&got), show(&exp));
}

/// An iterator kept across steps, and the model of what it reads.
struct LiveIter<F: TestFs> {
    it: ekv_lsm::Iter<<F as FileSystem>::File>,
    m: Rc<CfMap>,
    lo: Vec<u8>,
    hi: Option<Vec<u8>>,
    at: Option<Bytes>,
}

/// Runs operations on a tree (and a second tree that only receives
/// ingested tables) and checks every answer against the model.
pub struct Runner<F: TestFs> {
    s: Setup<F>,
    main: Option<Tree<F>>,
    other: Option<Tree<F>>,
    model: State,
    other_model: State,
    snaps: Vec<(Snapshot, State)>,
    live: Vec<LiveIter<F>>,
    /// States a crash may roll back to, by marker: only markers not older
    /// than the durable one are kept.
    markers: BTreeMap<u64, State>,
    last_marker: u64,
    bytes_since_open: u64,
    exports: u64,
    step: usize,
    /// Work done by the main tree over all its openings.
    pub totals: Totals,
}

/// Counters summed over every opening of the main tree.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub flushes: u64,
    pub compactions: u64,
    pub trivial_moves: u64,
    pub ingested: u64,
    pub reopens: u64,
    pub crashes: u64,
    pub iter_moves: u64,
}

impl<F: TestFs> Runner<F> {
    pub async fn new(s: Setup<F>) -> Self {
        let mut r = Runner {
            s,
            main: None,
            other: None,
            model: empty_state(),
            other_model: empty_state(),
            snaps: Vec::new(),
            live: Vec::new(),
            markers: BTreeMap::from([(0, empty_state())]),
            last_marker: 0,
            bytes_since_open: 0,
            exports: 0,
            step: 0,
            totals: Totals::default(),
        };
        r.open_both().await;
        let main = r.main.as_mut().expect("just opened");
        main.cfs[1] = Some(main.lsm.create_cf("a").await.unwrap());
        let other = r.other.as_mut().expect("just opened");
        other.cfs[1] = Some(other.lsm.create_cf("a").await.unwrap());
        r
    }

    fn lsm(&self) -> &Lsm<F> {
        &self.main.as_ref().expect("open").lsm
    }

    async fn open_tree(&self, dir: &Path) -> Tree<F> {
        let lsm = Lsm::open(self.s.fs.clone(), dir.to_path_buf(), self.s.opts.clone())
            .await
            .unwrap_or_else(|e| panic!("step {}: open {}: {e}", self.step, dir.display()));
        // Open removed every leftover (checked before background work starts).
        let what = format!("step {}: open {}", self.step, dir.display());
        check_files(&self.s.fs, dir, &lsm.stats(), &what).await.unwrap();
        let bg = self.s.spawn.as_ref().map(|sp| sp(lsm.clone()));
        let cfs = CF_NAMES.iter().map(|n| lsm.cf(n).ok()).collect();
        Tree { lsm, bg, cfs }
    }

    fn tally(&mut self) {
        let st = self.lsm().stats();
        self.totals.flushes += st.flushes;
        self.totals.compactions += st.compactions;
        self.totals.trivial_moves += st.trivial_moves;
        self.totals.ingested += st.ingested_tables;
    }

    async fn open_both(&mut self) {
        self.main = Some(self.open_tree(&self.s.dir.clone()).await);
        self.other = Some(self.open_tree(&self.s.other_dir.clone()).await);
        self.bytes_since_open = 0;
    }

    async fn close_tree(t: Tree<F>) {
        t.lsm.close().await.unwrap();
        if let Some(bg) = t.bg {
            bg.await.unwrap();
        }
    }

    /// The family with index `i`, creating `b` on first use.
    async fn cf(&mut self, i: u8) -> (usize, Cf) {
        let i = i as usize % CF_NAMES.len();
        let main = self.main.as_mut().expect("open");
        if let Some(cf) = main.cfs[i] {
            return (i, cf);
        }
        let cf = main.lsm.create_cf(CF_NAMES[i]).await.unwrap();
        main.cfs[i] = Some(cf);
        let other = self.other.as_mut().expect("open");
        let ocf = other.lsm.create_cf(CF_NAMES[i]).await.unwrap();
        other.cfs[i] = Some(ocf);
        assert_eq!(cf, ocf, "both trees number families alike");
        (i, cf)
    }

    fn snap(&self, i: Option<u8>) -> Option<usize> {
        i.filter(|_| !self.snaps.is_empty()).map(|i| i as usize % self.snaps.len())
    }

    pub async fn run(&mut self, ops: Vec<Op>) {
        for op in ops {
            self.step += 1;
            let what = format!("step {} ({op:?})", self.step);
            self.apply(op, &what).await;
            self.after_op(&what).await;
        }
        let what = format!("end after {} steps", self.step);
        self.full_check(&what).await;
        self.reopen(&what).await;
        self.full_check(&what).await;
    }

    /// Closes both trees.
    pub async fn finish(mut self) -> Totals {
        self.snaps.clear();
        self.live.clear();
        self.tally();
        Self::close_tree(self.main.take().expect("open")).await;
        Self::close_tree(self.other.take().expect("open")).await;
        self.totals
    }

    async fn apply(&mut self, op: Op, what: &str) {
        match op {
            Op::Write(wops) => self.write(&wops, what).await,
            Op::Get { cf, key: k, snap } => {
                let (i, cf) = self.cf(cf).await;
                let k = key(k);
                let (got, exp) = match self.snap(snap) {
                    Some(s) => (
                        self.lsm().get_at(cf, &k, &self.snaps[s].0).await,
                        self.snaps[s].1[i].get(&k[..]).cloned(),
                    ),
                    None => (self.lsm().get(cf, &k).await, self.model[i].get(&k[..]).cloned()),
                };
                assert_eq!(got.unwrap(), exp, "{what}");
            }
            Op::TakeSnapshot => {
                if self.snaps.len() >= 4 {
                    self.snaps.remove(0);
                }
                let snap = self.lsm().snapshot();
                self.snaps.push((snap, self.model.clone()));
            }
            Op::ReleaseSnapshot(i) => {
                if let Some(i) = self.snap(Some(i)) {
                    self.snaps.remove(i);
                }
            }
            Op::Iter { cf, snap, lower, upper, moves } => {
                self.iterate(cf, snap, lower, upper, &moves, what).await
            }
            Op::Flush => {
                self.lsm().flush().await.unwrap();
                let st = self.lsm().stats();
                assert_eq!((st.immutable_memtables, st.memtable_bytes), (0, 0), "{what}: flushed: {st:?}");
                assert_eq!(marker_of(self.lsm().durable_marker().as_deref()), self.last_marker, "{what}");
            }
            Op::WaitForCompactions => {
                self.lsm().wait_for_compactions().await.unwrap();
                let st = self.lsm().stats();
                check_compacted(&st, &self.s.opts, what).unwrap();
                if self.s.spawn.is_none() && self.live.is_empty() {
                    // Inline, every obsolete table no iterator pins was
                    // removed on the way out.
                    check_files(&self.s.fs, &self.s.dir, &st, what).await.unwrap();
                }
            }
            Op::CompactAll => {
                self.lsm().compact_all().await.unwrap();
                let st = self.lsm().stats();
                let upper: usize = st.levels[..st.levels.len() - 1].iter().map(|l| l.files).sum();
                assert_eq!(upper, 0, "{what}: everything in the last level: {:?}", st.levels);
                if self.s.spawn.is_none() && self.live.is_empty() {
                    check_files(&self.s.fs, &self.s.dir, &st, what).await.unwrap();
                }
                self.full_check(what).await;
            }
            Op::ExportIngest { cf, start, end, whole_cf, snap, into_other } => {
                self.export_ingest(cf, start, end, whole_cf, snap, into_other, what).await
            }
            Op::DropCf => {
                let main = self.main.as_mut().expect("open");
                if let Some(cf) = main.cfs[2].take() {
                    main.lsm.drop_cf(cf).await.unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert!(main.lsm.cf(CF_NAMES[2]).is_err(), "{what}");
                    // The family is gone from every state a crash may
                    // bring back (its name is durably forgotten).
                    self.model[2] = Rc::new(CfMap::new());
                    for st in self.markers.values_mut() {
                        st[2] = Rc::new(CfMap::new());
                    }
                }
            }
            Op::Reopen => {
                self.reopen(what).await;
                self.full_check(what).await;
            }
            Op::OpenIter { cf, snap, lower, upper, first } => {
                let (i, cf) = self.cf(cf).await;
                let s = self.snap(snap);
                let (lo, hi) = (lower.map(key).unwrap_or_default(), upper.map(key));
                let m = s.map_or(&self.model, |s| &self.snaps[s].1)[i].clone();
                let opts = IterOptions {
                    lower: Some(&lo),
                    upper: hi.as_deref(),
                    snapshot: s.map(|s| &self.snaps[s].0),
                };
                let it = self.lsm().iter(cf, opts).unwrap();
                if self.live.len() >= 3 {
                    self.live.remove(0);
                }
                self.live.push(LiveIter { it, m, lo, hi, at: None });
                let n = self.live.len() - 1;
                self.step_live(n, &[first], what).await;
            }
            Op::StepIter { which, moves } => {
                if !self.live.is_empty() {
                    let n = which as usize % self.live.len();
                    self.step_live(n, &moves, what).await;
                }
            }
            Op::Crash { tear } => {
                let mode = match tear {
                    Some(seed) => CrashMode::Tear { seed },
                    None => CrashMode::DropUnsynced,
                };
                self.crash(mode, what).await;
                self.full_check(what).await;
            }
        }
    }

    async fn write(&mut self, wops: &[WOp], what: &str) {
        let mut batch = WriteBatch::new();
        for w in wops {
            let (i, cf) = self.cf(w.cf).await;
            let k = key(w.key);
            let m = Rc::make_mut(&mut self.model[i]);
            match w.kind {
                0..=5 => {
                    let v = value(self.last_marker * 8 + batch.len() as u64, w.arg);
                    batch.put(cf, &k, &v);
                    m.insert(Bytes::from(k), Bytes::from(v));
                }
                6 | 7 => {
                    batch.delete(cf, &k);
                    m.remove(&k[..]);
                }
                8 => {
                    let k2 = key(w.arg);
                    let (lo, hi) = if k <= k2 { (k, k2) } else { (k2, k) };
                    batch.delete_range(cf, &lo, &hi);
                    remove_range(m, &lo, Some(&hi));
                }
                _ => {
                    batch.delete_from(cf, &k);
                    remove_range(m, &k, None);
                }
            }
        }
        self.last_marker += 1;
        batch.set_marker(marker(self.last_marker));
        self.bytes_since_open += batch.size() as u64;
        let seq = self.lsm().write(batch).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(seq.0, self.lsm().stats().last_seq, "{what}: seq of the batch is the newest");
        self.markers.insert(self.last_marker, self.model.clone());
    }

    async fn iterate(
        &mut self,
        cf: u8,
        snap: Option<u8>,
        lower: Option<u16>,
        upper: Option<u16>,
        moves: &[Move],
        what: &str,
    ) {
        let (i, cf) = self.cf(cf).await;
        let s = self.snap(snap);
        let (lo, hi) = (lower.map(key), upper.map(key));
        let state = s.map_or(&self.model, |s| &self.snaps[s].1);
        let mut cur = Cursor::new(&state[i], lo.clone().unwrap_or_default(), hi.clone());
        let opts =
            IterOptions { lower: lo.as_deref(), upper: hi.as_deref(), snapshot: s.map(|s| &self.snaps[s].0) };
        let mut it = self.lsm().iter(cf, opts).unwrap();
        for (n, mv) in moves.iter().enumerate() {
            move_both(&mut it, &mut cur, *mv, &format!("{what}: move {n} ({mv:?}) of {moves:?}")).await;
        }
        drop(it);
        self.totals.iter_moves += moves.len() as u64;
    }

    async fn step_live(&mut self, n: usize, moves: &[Move], what: &str) {
        let li = &mut self.live[n];
        let mut cur = Cursor::new(&li.m, li.lo.clone(), li.hi.clone());
        cur.at = li.at.take();
        for (j, mv) in moves.iter().enumerate() {
            move_both(&mut li.it, &mut cur, *mv, &format!("{what}: living iterator {n}, move {j} ({mv:?})"))
                .await;
        }
        li.at = cur.at.take();
        self.totals.iter_moves += moves.len() as u64;
    }

    #[allow(clippy::too_many_arguments)]
    async fn export_ingest(
        &mut self,
        cf: u8,
        start: u16,
        end: Option<u16>,
        whole_cf: Option<u8>,
        snap: Option<u8>,
        into_other: bool,
        what: &str,
    ) {
        let (i, cf) = self.cf(cf).await;
        let (mut lo, mut hi) = (key(start), end.map(key));
        if let Some(h) = hi.clone() {
            if h < lo {
                hi = Some(std::mem::replace(&mut lo, h));
            }
            if hi.as_ref() == Some(&lo) {
                hi = None;
            }
        }
        let mut ranges = vec![(i, KeyRange { cf, start: lo, end: hi })];
        if let Some(w) = whole_cf {
            let (j, wcf) = self.cf(w).await;
            if j != i {
                ranges.push((j, KeyRange { cf: wcf, start: Vec::new(), end: None }));
            }
        }
        let s = self.snap(snap);
        let source = s.map_or(self.model.clone(), |s| self.snaps[s].1.clone());
        self.exports += 1;
        let key_ranges: Vec<KeyRange> = ranges.iter().map(|(_, r)| r.clone()).collect();
        let paths = self
            .lsm()
            .export(
                &key_ranges,
                s.map(|s| &self.snaps[s].0),
                &self.s.export_dir,
                &format!("x{}", self.exports),
            )
            .await
            .unwrap_or_else(|e| panic!("{what}: export: {e}"));
        assert_eq!(paths.len(), ranges.len(), "{what}");
        let target = if into_other { self.other.as_ref() } else { self.main.as_ref() }.expect("open");
        target.lsm.ingest(&paths).await.unwrap_or_else(|e| panic!("{what}: ingest: {e}"));
        let model = if into_other { &mut self.other_model } else { &mut self.model };
        for (j, r) in &ranges {
            let m = Rc::make_mut(&mut model[*j]);
            remove_range(m, &r.start, r.end.as_deref());
            for (k, v) in range_of(&source[*j], &r.start, r.end.as_deref()) {
                m.insert(k, v);
            }
        }
        for p in &paths {
            let gone = self.s.fs.list(&self.s.export_dir).await.unwrap();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap();
            assert!(!gone.iter().any(|n| n == name), "{what}: {} was moved in", p.display());
        }
        if into_other {
            let other = self.other.as_ref().expect("open");
            check_state(&other.lsm, &self.other_model, None, &format!("{what}: other tree")).await.unwrap();
        } else {
            // Ingest flushed everything before it: what is durable now is
            // this state, under the newest marker.
            assert_eq!(marker_of(self.lsm().durable_marker().as_deref()), self.last_marker, "{what}");
            self.markers.insert(self.last_marker, self.model.clone());
            self.full_check(what).await;
        }
    }

    /// Which families each tree has (creating and dropping one is durable
    /// on return).
    fn families(&self) -> [Vec<bool>; 2] {
        [&self.main, &self.other].map(|t| t.as_ref().expect("open").cfs.iter().map(Option::is_some).collect())
    }

    async fn reopen(&mut self, what: &str) {
        self.snaps.clear();
        self.live.clear();
        self.tally();
        self.totals.reopens += 1;
        let families = self.families();
        Self::close_tree(self.main.take().expect("open")).await;
        Self::close_tree(self.other.take().expect("open")).await;
        self.open_both().await;
        let rec = marker_of(self.lsm().recovered_marker());
        assert_eq!(rec, self.last_marker, "{what}: close flushes everything");
        self.after_open(rec, families, what).await;
    }

    async fn crash(&mut self, mode: CrashMode, what: &str) {
        let Some(crashed) = self.s.fs.crashed_copy(mode) else {
            return self.reopen(what).await;
        };
        let durable = marker_of(self.lsm().durable_marker().as_deref());
        let families = self.families();
        self.tally();
        self.totals.crashes += 1;
        // The old trees (and their background tasks) go away without a close.
        self.snaps.clear();
        self.live.clear();
        self.main = None;
        self.other = None;
        self.s.fs = crashed;
        self.open_both().await;
        let rec = marker_of(self.lsm().recovered_marker());
        if self.s.spawn.is_none() {
            assert_eq!(rec, durable, "{what}: nothing ran between the last step and the crash");
        } else {
            // A background flush may have been between its write and its sync.
            assert!(
                rec >= durable && rec <= self.last_marker,
                "{what}: recovered {rec}, durable was {durable}"
            );
        }
        self.after_open(rec, families, what).await;
    }

    async fn after_open(&mut self, rec: u64, families: [Vec<bool>; 2], what: &str) {
        self.model = self
            .markers
            .get(&rec)
            .unwrap_or_else(|| {
                panic!("{what}: recovered marker {rec} was not durable-possible ({:?})", self.markers.keys())
            })
            .clone();
        // Markers of the lost writes are free again: the tree never saw them.
        self.markers.retain(|&m, _| m <= rec);
        self.last_marker = rec;
        assert_eq!(marker_of(self.lsm().durable_marker().as_deref()), rec, "{what}");
        assert_eq!(self.families(), families, "{what}: families after opening");
    }

    async fn full_check(&mut self, what: &str) {
        let main = self.main.as_ref().expect("open");
        check_state(&main.lsm, &self.model, None, what).await.unwrap();
        for (n, (snap, state)) in self.snaps.iter().enumerate() {
            check_state(&main.lsm, state, Some(snap), &format!("{what} at snapshot {n}")).await.unwrap();
        }
        let other = self.other.as_ref().expect("open");
        check_state(&other.lsm, &self.other_model, None, &format!("{what}: other tree")).await.unwrap();
    }

    async fn after_op(&mut self, what: &str) {
        let st = self.lsm().stats();
        check_stats(&st, &self.s.opts, what).unwrap();
        assert_eq!(st.user_bytes_written, self.bytes_since_open, "{what}: {st:?}");
        let durable = marker_of(self.lsm().durable_marker().as_deref());
        assert!(self.markers.contains_key(&durable), "{what}: durable marker {durable} unknown");
        self.markers.retain(|&m, _| m >= durable);
        if self.step % 40 == 0 {
            self.full_check(what).await;
        }
    }
}
