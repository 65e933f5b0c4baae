//! Crash tests on the in-memory file system: a power cut after every single
//! file-system step of flushes, compactions and ingests (unsynced data
//! dropped, or torn at random points), a failed fdatasync at every sync
//! point, and obsolete tables pinned by iterators. After every reopen the
//! tree holds exactly the state of its recovered flush marker and the
//! directory holds nothing the manifest does not list.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use ekv_io::{CrashMode, MemFs};
use ekv_lsm::{Error, IterOptions, Lsm, Options, WriteBatch};
use futures::executor::block_on;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use support::{
    check_files, check_state, empty_state, key, marker, marker_of, remove_range, run_both_ways, tiny_options,
    value, State, StepFs, TestFs, CF_NAMES,
};

fn dir() -> PathBuf {
    PathBuf::from("/db")
}

fn options() -> Options {
    Options { memtable_size: 4 << 10, target_file_size: 8 << 10, base_level_size: 24 << 10, ..tiny_options() }
}

/// The smallest case: a flushed table must still be there after a power
/// cut (its directory entry has to be durable before the manifest names it).
#[test]
fn flushed_table_survives_a_crash() {
    block_on(async {
        let fs = MemFs::new(512);
        let lsm = Lsm::open(fs.clone(), dir(), options()).await.unwrap();
        let cf = lsm.default_cf();
        let mut b = WriteBatch::new();
        b.put(cf, b"k", b"v").set_marker(marker(1));
        lsm.write(b).await.unwrap();
        lsm.flush().await.unwrap();
        drop(lsm);
        fs.crash(CrashMode::DropUnsynced);
        let lsm = Lsm::open(fs.clone(), dir(), options()).await.unwrap();
        assert_eq!(lsm.recovered_marker(), Some(&marker(1)[..]));
        assert_eq!(lsm.get(cf, b"k").await.unwrap().as_deref(), Some(&b"v"[..]));
    });
}

/// The same for the outputs of a compaction, crashed right after the
/// manifest edit that lists them was synced.
#[test]
fn compacted_tables_survive_a_crash() {
    block_on(async {
        let fs = StepFs::new(MemFs::new(512));
        let lsm = Lsm::open(fs.clone(), dir(), options()).await.unwrap();
        let cf = lsm.default_cf();
        for i in 0..3u8 {
            let mut b = WriteBatch::new();
            b.put(cf, &[b'k', i], &[i; 100]).set_marker(marker(u64::from(i) + 1));
            lsm.write(b).await.unwrap();
            lsm.flush().await.unwrap();
        }
        fs.capture(true);
        lsm.compact_all().await.unwrap();
        fs.capture(false);
        assert!(lsm.stats().compactions >= 1);
        let points = fs.take_points();
        let edit =
            points.iter().rposition(|p| p.step.contains("sync /db/MANIFEST")).expect("a manifest edit");
        let image = points[edit].fs.crashed_copy(CrashMode::DropUnsynced).unwrap();
        let lsm = Lsm::open(image, dir(), options()).await.unwrap();
        assert!(lsm.stats().levels[0].files == 0, "the compaction's edit is durable");
        for i in 0..3u8 {
            assert_eq!(lsm.get(cf, &[b'k', i]).await.unwrap().as_deref(), Some(&[i; 100][..]));
        }
    });
}

/// A dropped family stays dropped through a power cut: its data must not
/// come back (not even under a new family that gets the same id).
#[test]
fn dropped_family_stays_empty_after_a_crash() {
    block_on(async {
        let fs = MemFs::new(512);
        let lsm = Lsm::open(fs.clone(), dir(), options()).await.unwrap();
        let b = lsm.create_cf("b").await.unwrap();
        let mut batch = WriteBatch::new();
        batch.put(b, b"k", b"old").set_marker(marker(1));
        lsm.write(batch).await.unwrap();
        lsm.flush().await.unwrap();
        lsm.drop_cf(b).await.unwrap();
        assert!(lsm.cf("b").is_err());
        drop(lsm);
        fs.crash(CrashMode::DropUnsynced);
        let lsm = Lsm::open(fs.clone(), dir(), options()).await.unwrap();
        assert!(lsm.cf("b").is_err(), "the drop was durable");
        let b2 = lsm.create_cf("b").await.unwrap();
        assert_eq!(
            lsm.get(b2, b"k").await.unwrap(),
            None,
            "family {} (was {}) shows dropped data",
            b2.id(),
            b.id()
        );
        let mut it = lsm.iter(b2, IterOptions::default()).unwrap();
        it.seek_to_first().await.unwrap();
        assert!(!it.valid());
    });
}

/// Big markers make the manifest reach its rotation size after a dozen
/// flushes: a crash at every step of the flush that starts a new manifest
/// comes back with the marker before or after it, and one manifest.
#[test]
fn manifest_rotation_is_crash_safe() {
    block_on(async {
        let fs = StepFs::new(MemFs::new(512));
        let lsm = Lsm::open(fs.clone(), dir(), options()).await.unwrap();
        let cf = lsm.default_cf();
        let big = |n: u64| {
            let mut m = marker(n);
            m.resize(320 << 10, n as u8);
            m
        };
        let expect = |fs: MemFs, upto: u64, what: String| async move {
            let lsm = Lsm::open(fs.clone(), dir(), options()).await.unwrap_or_else(|e| panic!("{what}: {e}"));
            check_files(&fs, &dir(), &lsm.stats(), &what).await.unwrap();
            let rec = lsm.recovered_marker().map_or(0, |m| u64::from_be_bytes(m[..8].try_into().unwrap()));
            assert_eq!(lsm.recovered_marker().map(<[u8]>::len).unwrap_or(320 << 10), 320 << 10, "{what}");
            assert!(rec + 1 >= upto && rec <= upto, "{what}: recovered {rec}");
            for i in 1..=upto + 1 {
                let want = (i <= rec).then(|| value(i, 3));
                assert_eq!(
                    lsm.get(cf, &key(i as u16)).await.unwrap().map(|v| v.to_vec()),
                    want,
                    "{what}: key {i}"
                );
            }
        };
        let mut rotations = 0;
        for n in 1..=24u64 {
            let mut b = WriteBatch::new();
            b.put(cf, &key(n as u16), &value(n, 3)).set_marker(big(n));
            lsm.write(b).await.unwrap();
            fs.capture(true);
            lsm.flush().await.unwrap();
            fs.capture(false);
            let points = fs.take_points();
            if !points.iter().any(|p| p.step.contains("create /db/MANIFEST-")) {
                continue;
            }
            rotations += 1;
            for p in points {
                for mode in [CrashMode::DropUnsynced, CrashMode::Tear { seed: n }] {
                    let image = p.fs.crashed_copy(mode).unwrap();
                    let what = format!("flush {n}, crash after {} ({mode:?})", p.step);
                    expect(image, n, what).await;
                }
            }
        }
        assert_eq!(rotations, 1, "the manifest was rotated once");
        lsm.close().await.unwrap();
        expect(fs.mem.clone(), 24, "reopened".into()).await;
    });
}

/// An iterator keeps the tables it started on; compaction leaves them in
/// place until it is dropped, and a crash meanwhile leaves nothing behind.
#[test]
fn tables_pinned_by_an_iterator_are_removed_once_it_is_dropped() {
    block_on(async {
        let fs = MemFs::new(512);
        let lsm = Lsm::open(fs.clone(), dir(), options()).await.unwrap();
        let cf = lsm.default_cf();
        for n in 0..200u16 {
            lsm.put(cf, &key(n), &value(u64::from(n), 4)).await.unwrap();
        }
        lsm.flush().await.unwrap();
        let mut it = lsm.iter(cf, IterOptions::default()).unwrap();
        it.seek_to_first().await.unwrap();
        lsm.delete_range(cf, &key(0), &key(100)).await.unwrap();
        lsm.compact_all().await.unwrap();
        let st = lsm.stats();
        assert!(
            check_files(&fs, &dir(), &st, "pinned").await.is_err(),
            "compacted-away tables are still pinned"
        );
        // The iterator still sees everything it started with.
        let mut seen = 0;
        while it.valid() {
            seen += 1;
            it.next().await.unwrap();
        }
        assert_eq!(seen, 200);
        let image = fs.crashed_copy(CrashMode::DropUnsynced).unwrap();
        let recovered = Lsm::open(image.clone(), dir(), options()).await.unwrap();
        check_files(&image, &dir(), &recovered.stats(), "crashed while pinned").await.unwrap();
        drop(it);
        lsm.wait_for_compactions().await.unwrap();
        check_files(&fs, &dir(), &lsm.stats(), "unpinned").await.unwrap();
        assert_eq!(lsm.get(cf, &key(5)).await.unwrap(), None);
        assert_eq!(lsm.get(cf, &key(150)).await.unwrap().map(|v| v.to_vec()), Some(value(150, 4)));
    });
}

// ---------------------------------------------------------------------------
// A workload with markers, run over `StepFs`.

/// One step of a crash-test workload.
#[derive(Debug, Clone)]
enum Step {
    /// (family 0/1, kind 0-5 put / 6-7 delete / 8 delete_range, key, arg)
    Write(Vec<(u8, u8, u16, u16)>),
    Snapshot,
    Release,
    Flush,
    WaitForCompactions,
    CompactAll,
    /// Export `[lo, hi)` of the default family (at the oldest snapshot if
    /// any, else now) and ingest it back.
    Ingest(u16, u16),
    Reopen,
}

fn workload(seed: u64, n: usize) -> Vec<Step> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| match rng.gen_range(0..100) {
            0..=77 => Step::Write(
                (0..rng.gen_range(1..5))
                    .map(|_| {
                        let kind = if rng.gen_bool(0.05) { 8 } else { rng.gen_range(0..8) };
                        (rng.gen_range(0..2), kind, rng.gen_range(0..120), rng.gen_range(0..120))
                    })
                    .collect(),
            ),
            78..=81 => Step::Snapshot,
            82..=84 => Step::Release,
            85..=89 => Step::Flush,
            90..=92 => Step::WaitForCompactions,
            93 => Step::CompactAll,
            94..=96 => Step::Ingest(rng.gen_range(0..120), rng.gen_range(0..120)),
            _ => Step::Reopen,
        })
        .collect()
}

type BgTask = support::BgTask;

struct Driver {
    fs: StepFs,
    opts: Options,
    spawn: Option<support::Spawn<StepFs>>,
    lsm: Option<Lsm<StepFs>>,
    bg: Option<BgTask>,
    cfs: [ekv_lsm::Cf; 2],
    model: State,
    /// The states a recovery may come back with, by marker. Two during an
    /// ingest into the newest marker's state: before and after it.
    markers: BTreeMap<u64, Vec<State>>,
    last: u64,
    snaps: Vec<(ekv_lsm::Snapshot, State)>,
    exports: u64,
    /// Crash images checked.
    pub points: usize,
    /// Family `a` is durable (it was created once the tree was open).
    have_a: bool,
}

impl Driver {
    async fn open(fs: StepFs, opts: Options, spawn: Option<support::Spawn<StepFs>>) -> ekv_lsm::Result<Self> {
        let lsm = Lsm::open(fs.clone(), dir(), opts.clone()).await?;
        let a = lsm.create_cf("a").await?;
        let bg = spawn.as_ref().map(|s| s(lsm.clone()));
        Ok(Driver {
            fs,
            opts,
            spawn,
            cfs: [lsm.default_cf(), a],
            lsm: Some(lsm),
            bg,
            model: empty_state(),
            markers: BTreeMap::from([(0, vec![empty_state()])]),
            last: 0,
            snaps: Vec::new(),
            exports: 0,
            points: 0,
            have_a: false,
        })
    }

    fn lsm(&self) -> &Lsm<StepFs> {
        self.lsm.as_ref().expect("open")
    }

    fn durable(&self) -> u64 {
        marker_of(self.lsm().durable_marker().as_deref())
    }

    async fn exec(&mut self, step: &Step) -> ekv_lsm::Result<()> {
        match step {
            Step::Write(ops) => {
                let mut next = self.model.clone();
                let mut b = WriteBatch::new();
                for (n, &(cf, kind, k, arg)) in ops.iter().enumerate() {
                    let (i, cf) = (cf as usize, self.cfs[cf as usize]);
                    let m = std::rc::Rc::make_mut(&mut next[i]);
                    let k = key(k);
                    match kind {
                        0..=5 => {
                            let v = value(self.last * 8 + n as u64, arg % 5 + 1);
                            b.put(cf, &k, &v);
                            m.insert(Bytes::from(k), Bytes::from(v));
                        }
                        6 | 7 => {
                            b.delete(cf, &k);
                            m.remove(&k[..]);
                        }
                        _ => {
                            let k2 = key(arg);
                            let (lo, hi) = if k <= k2 { (k, k2) } else { (k2, k) };
                            b.delete_range(cf, &lo, &hi);
                            remove_range(m, &lo, Some(&hi));
                        }
                    }
                }
                b.set_marker(marker(self.last + 1));
                self.lsm().write(b).await?;
                self.last += 1;
                self.model = next;
                self.markers.insert(self.last, vec![self.model.clone()]);
            }
            Step::Snapshot => {
                if self.snaps.len() < 3 {
                    let s = self.lsm().snapshot();
                    self.snaps.push((s, self.model.clone()));
                }
            }
            Step::Release => {
                if !self.snaps.is_empty() {
                    self.snaps.remove(0);
                }
            }
            Step::Flush => self.lsm().flush().await?,
            Step::WaitForCompactions => self.lsm().wait_for_compactions().await?,
            Step::CompactAll => self.lsm().compact_all().await?,
            Step::Ingest(a, b) => {
                let (a, b) = (key(*a), key(*b));
                let (lo, hi) = if a < b { (a, Some(b)) } else { (a, None) };
                let range = ekv_lsm::KeyRange { cf: self.cfs[0], start: lo.clone(), end: hi.clone() };
                let (snap, source) = match self.snaps.first() {
                    Some((s, st)) => (Some(s), st.clone()),
                    None => (None, self.model.clone()),
                };
                self.exports += 1;
                let paths = self
                    .lsm()
                    .export(&[range], snap, Path::new("/export"), &format!("e{}", self.exports))
                    .await?;
                let mut post = self.model.clone();
                let m = std::rc::Rc::make_mut(&mut post[0]);
                remove_range(m, &lo, hi.as_deref());
                for (k, v) in support::range_of(&source[0], &lo, hi.as_deref()) {
                    m.insert(k, v);
                }
                // Until the ingest returns, a crash may leave it out or in.
                let pre = self.model.clone();
                self.markers.insert(self.last, vec![pre, post.clone()]);
                self.lsm().ingest(&paths).await?;
                self.model = post;
            }
            Step::Reopen => {
                self.snaps.clear();
                let lsm = self.lsm.take().expect("open");
                let closed = lsm.close().await;
                if let Some(bg) = self.bg.take() {
                    let r = bg.await;
                    if closed.is_ok() {
                        r?;
                    }
                }
                closed?;
                let lsm = Lsm::open(self.fs.clone(), dir(), self.opts.clone()).await?;
                assert_eq!(marker_of(lsm.recovered_marker()), self.last, "close flushes everything");
                self.bg = self.spawn.as_ref().map(|s| s(lsm.clone()));
                self.lsm = Some(lsm);
            }
        }
        Ok(())
    }

    /// After a step succeeded: an ingest is now certainly in.
    fn settle(&mut self) {
        self.markers.insert(self.last, vec![self.model.clone()]);
    }

    /// Opens the crashed image, checks that the tree is one of the states of
    /// its recovered marker (which lies in `lo..=hi`) and that nothing
    /// leaked; with `deep`, also that it keeps working (write, flush,
    /// close, reopen).
    async fn verify(&self, fs: &MemFs, lo: u64, hi: u64, deep: bool, what: &str) -> Result<(), String> {
        let lsm = Lsm::open(fs.clone(), dir(), self.opts.clone())
            .await
            .map_err(|e| format!("{what}: open: {e}"))?;
        check_files(fs, &dir(), &lsm.stats(), what).await?;
        let rec = marker_of(lsm.recovered_marker());
        if rec < lo || rec > hi {
            return Err(format!("{what}: recovered marker {rec} outside {lo}..={hi}"));
        }
        let states = self.markers.get(&rec).ok_or_else(|| format!("{what}: no state for marker {rec}"))?;
        let mut matched = None;
        let mut errors = Vec::new();
        for (i, st) in states.iter().enumerate() {
            match check_state(&lsm, st, None, &format!("{what} (marker {rec}, candidate {i})")).await {
                Ok(()) => {
                    matched = Some(st.clone());
                    break;
                }
                Err(e) => errors.push(e),
            }
        }
        let Some(mut state) = matched else { return Err(errors.join("; ")) };
        if self.have_a && CF_NAMES.iter().take(2).any(|n| lsm.cf(n).is_err()) {
            return Err(format!("{what}: families {:?}", lsm.cf_names()));
        }
        if deep {
            let cf = lsm.default_cf();
            let mut b = WriteBatch::new();
            b.put(cf, b"after-crash", b"yes")
                .delete_range(cf, &key(10), &key(20))
                .set_marker(marker(u64::MAX));
            lsm.write(b).await.map_err(|e| format!("{what}: write after recovery: {e}"))?;
            let m = std::rc::Rc::make_mut(&mut state[0]);
            m.insert(Bytes::from_static(b"after-crash"), Bytes::from_static(b"yes"));
            remove_range(m, &key(10), Some(&key(20)));
            lsm.flush().await.map_err(|e| format!("{what}: flush after recovery: {e}"))?;
            lsm.close().await.map_err(|e| format!("{what}: close after recovery: {e}"))?;
            let lsm = Lsm::open(fs.clone(), dir(), self.opts.clone())
                .await
                .map_err(|e| format!("{what}: reopen: {e}"))?;
            assert_eq!(lsm.recovered_marker(), Some(&marker(u64::MAX)[..]));
            check_files(fs, &dir(), &lsm.stats(), &format!("{what}: reopened"))
                .await
                .and(check_state(&lsm, &state, None, &format!("{what}: reopened")).await)?;
        }
        Ok(())
    }

    /// Checks crash images of `points` dropped clean and torn with `tears` seeds.
    async fn verify_points(
        &mut self,
        points: Vec<support::CrashPoint>,
        lo: u64,
        hi: u64,
        tears: u64,
        what: &str,
    ) {
        for (n, p) in points.into_iter().enumerate() {
            let modes = std::iter::once(CrashMode::DropUnsynced)
                .chain((0..tears).map(|t| CrashMode::Tear { seed: (self.points as u64) << 8 | t }));
            for mode in modes {
                let copy = p.fs.crashed_copy(mode).expect("MemFs crashes");
                let deep = matches!(mode, CrashMode::DropUnsynced) && n % 3 == 0;
                let what = format!("{what}, crash after {} ({mode:?})", p.step);
                if let Err(e) = self.verify(&copy, lo, hi, deep, &what).await {
                    panic!("{e}");
                }
            }
            self.points += 1;
        }
    }
}

/// Runs `steps`, crashing (a copy of) the file system after every single
/// file-system step, `tears` times torn and once clean. With
/// `dirty_buffers`, write buffers start out holding stale bytes, as DMA
/// buffers do: only what the tree puts in them may matter.
async fn crash_everywhere(
    steps: &[Step],
    opts: Options,
    spawn: Option<support::Spawn<StepFs>>,
    tears: u64,
    dirty_buffers: bool,
) -> usize {
    let fs = StepFs::new(MemFs::new(512));
    if dirty_buffers {
        fs.dirty_buffers();
    }
    fs.capture(true);
    let mut d = Driver::open(fs.clone(), opts, spawn.clone()).await.unwrap();
    let first = fs.take_points();
    // Crashes during the very first open: an empty tree (or none at all).
    d.verify_points(first, 0, 0, tears, "open").await;
    d.have_a = true;
    let mut lo = 0;
    for (i, step) in steps.iter().enumerate() {
        let what = format!("step {i} ({step:?})");
        d.exec(step).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        // Inline, whatever was written during the step was synced by its
        // end; a background flush may be between its write and its sync.
        let hi = if spawn.is_none() { d.durable() } else { d.last };
        let points = fs.take_points();
        d.verify_points(points, lo, hi, tears, &what).await;
        d.settle();
        lo = d.durable();
        d.markers.retain(|&m, _| m >= lo);
    }
    d.lsm().flush().await.unwrap();
    check_state(d.lsm(), &d.model, None, "end").await.unwrap();
    let st = d.lsm().stats();
    assert!(st.levels.iter().map(|l| l.files).sum::<usize>() > 0, "{st:?}");
    d.points
}

#[test]
fn crash_at_every_step_of_flush_compaction_and_ingest() {
    let steps = workload(1, 500);
    let points = block_on(crash_everywhere(&steps, options(), None, 2, false));
    assert!(points > 300, "only {points} crash points");
}

#[test]
fn crash_at_every_step_with_background_tasks_and_dirty_buffers() {
    let steps = workload(2, 300);
    let points =
        run_both_ways::<StepFs, _>(true, |spawn| crash_everywhere(&steps, options(), spawn, 1, true));
    assert!(points > 150, "only {points} crash points");
}

/// What happened when sync number `k` of a run failed.
#[derive(Debug, Default)]
struct FailOutcome {
    poisoned: bool,
    survived: bool,
}

/// Runs `steps` with fdatasync number `k` failing. The failure must come
/// back as an error; a failed manifest or flush poisons the tree, a failed
/// compaction or export leaves it working. A poisoned tree refuses
/// writes, and reopening (with or without a power cut) brings back the
/// state of a flush marker, with no leftover file.
async fn fail_sync_at(steps: &[Step], k: u64) -> FailOutcome {
    let fs = StepFs::new(MemFs::new(512));
    fs.fail_sync(k);
    let what = format!("sync {k} fails");
    let mut d = match Driver::open(fs.clone(), options(), None).await {
        Ok(d) => d,
        Err(e) => {
            let failed = fs.failed().unwrap_or_else(|| panic!("{what}: open failed by itself: {e}"));
            assert!(
                !matches!(e, Error::Corruption { .. }),
                "{what}: {} failed, open says {e}",
                failed.display()
            );
            let lsm = Lsm::open(fs.mem.clone(), dir(), options()).await.unwrap();
            check_files(&fs.mem, &dir(), &lsm.stats(), &what).await.unwrap();
            assert_eq!(lsm.stats().last_seq, 0);
            return FailOutcome { poisoned: true, survived: false };
        }
    };
    d.have_a = true;
    let mut out = FailOutcome::default();
    for (i, step) in steps.iter().enumerate() {
        let lo = d.durable();
        let err = match d.exec(step).await {
            Ok(()) => {
                d.settle();
                let durable = d.durable();
                d.markers.retain(|&m, _| m >= durable);
                continue;
            }
            Err(e) => e,
        };
        let what = format!("{what}, step {i} ({step:?}): {err}");
        let failed = fs.failed().unwrap_or_else(|| panic!("{what}: an error without an injected failure"));
        let name = failed.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        let poisoned = match d.lsm.as_ref() {
            // Close consumed the tree.
            None => true,
            Some(lsm) => match lsm.write(WriteBatch::new()).await {
                Err(Error::Poisoned(_)) => true,
                Ok(_) => false,
                Err(e) => panic!("{what}: then a write says {e}"),
            },
        };
        if !poisoned {
            // Only a compaction's or an export's table may fail without
            // harm: nothing it wrote is listed anywhere.
            assert!(
                name.ends_with(".sst") && matches!(err, Error::Io(_)),
                "{what}: {name} failed, tree not poisoned"
            );
            out.survived = true;
            continue;
        }
        assert!(
            !matches!(err, Error::Corruption { .. } | Error::InvalidArgument(_)),
            "{what}: {name} failed, the step said {err}"
        );
        out.poisoned = true;
        if let Some(lsm) = d.lsm.as_ref() {
            let cf = lsm.default_cf();
            assert!(matches!(lsm.put(cf, b"x", b"y").await, Err(Error::Poisoned(_))), "{what}");
            assert!(matches!(lsm.flush().await, Err(Error::Poisoned(_))), "{what}");
            assert!(matches!(lsm.compact_all().await, Err(Error::Poisoned(_))), "{what}");
            // Reads still work.
            lsm.get(cf, b"x").await.unwrap();
        }
        let hi = d.last;
        d.lsm = None;
        d.snaps.clear();
        // A power cut now, or the process going on and reopening.
        let cut = fs.mem.crashed_copy(CrashMode::DropUnsynced).unwrap();
        d.verify(&cut, lo, hi, true, &format!("{what}, power cut")).await.unwrap_or_else(|e| panic!("{e}"));
        d.verify(&fs.mem, lo, hi, true, &format!("{what}, reopened")).await.unwrap_or_else(|e| panic!("{e}"));
        return out;
    }
    if let Some(failed) = fs.failed() {
        assert!(out.survived, "{what}: the failed sync of {} was never reported", failed.display());
    }
    check_state(d.lsm(), &d.model, None, &what).await.unwrap();
    d.lsm.take().unwrap().close().await.unwrap();
    out
}

#[test]
fn a_failed_sync_anywhere_poisons_or_is_harmless_and_reopen_recovers() {
    // It ends with a reopen, so the last close's flush is a step too.
    let mut steps = workload(3, 300);
    steps.push(Step::Reopen);
    let total = block_on(async {
        let fs = StepFs::new(MemFs::new(512));
        let mut d = Driver::open(fs.clone(), options(), None).await.unwrap();
        for s in &steps {
            d.exec(s).await.unwrap();
            d.settle();
        }
        d.lsm.take().unwrap().close().await.unwrap();
        fs.syncs()
    });
    assert!(total > 60, "only {total} syncs");
    let (mut poisoned, mut survived) = (0, 0);
    for k in 0..total {
        let out = block_on(fail_sync_at(&steps, k));
        poisoned += out.poisoned as u32;
        survived += out.survived as u32;
    }
    assert!(poisoned > 10 && survived > 3, "poisoned {poisoned}, survived {survived} of {total}");
}
