//! Leveled compaction.
//!
//! Picking: L0 scores its table count over `l0_compaction_trigger`; every
//! other level but the last its bytes over its target (`base_level_size`
//! times `level_size_ratio` per level down). The highest score of at least 1
//! is compacted: all of L0 (its tables overlap), or one table of a deeper
//! level, taken round-robin through the key space, together with the
//! tables of the next level it overlaps. A lone table with nothing below it
//! is moved down by a manifest edit alone.
//!
//! Merging drops what no reader can see: a version hidden by a newer one,
//! or by a range deletion, with no live snapshot in between; deletion
//! markers and range deletions older than every snapshot once nothing below
//! the output level overlaps. Output is cut into tables of
//! `target_file_size` at user-key boundaries; range deletions are clipped
//! to each output table's share of the key space so tables of a level never
//! overlap.
//!
//! Compaction runs as one low-priority task on the shard's executor and
//! yields every `work_slice` of CPU; its input reads and output writes are
//! io_uring requests that also let foreground work run.

use std::rc::Rc;
use std::time::Instant;

use ekv_io::FileSystem;

use crate::db::{bounds, stripe, Handle, Inner, WorkClock};
use crate::iter::{Child, LevelIter, MergeIter};
use crate::key::{self, Kind, Tombstone};
use crate::manifest;
use crate::range_del::Fragments;
use crate::table::{TableBuilder, TableInfo};
use crate::version::{FileMeta, TableHandle, VersionEdit};
use crate::Result;

pub(crate) struct Compaction<F: FileSystem> {
    level: usize,
    inputs: Vec<Handle<F>>,
    next: Vec<Handle<F>>,
    bottommost: bool,
    /// Move without rewriting (one input, nothing to merge with).
    trivial: bool,
}

struct Output {
    number: u64,
    info: TableInfo,
    first: Vec<u8>,
    last: Vec<u8>,
    tombs: Vec<Tombstone>,
}

struct Building<F: FileSystem> {
    number: u64,
    builder: TableBuilder<F::File>,
    first: Vec<u8>,
    last: Vec<u8>,
    reported: u64,
}

impl<F: FileSystem + 'static> Inner<F> {
    /// The compaction the tree needs most, if any level is over its target.
    pub(crate) fn pick_compaction(&self) -> Option<Compaction<F>> {
        let st = self.state.borrow();
        let v = &st.version;
        let o = &self.opts;
        let mut best: Option<(f64, usize)> = None;
        let l0 = v.levels[0].len() as f64 / o.l0_compaction_trigger as f64;
        if l0 >= 1.0 {
            best = Some((l0, 0));
        }
        for level in 1..o.num_levels - 1 {
            let score = v.level_bytes(level) as f64 / o.level_target(level) as f64;
            if score >= 1.0 && best.is_none_or(|(b, _)| score > b) {
                best = Some((score, level));
            }
        }
        let (_, level) = best?;
        let inputs: Vec<Handle<F>> = if level == 0 {
            v.levels[0].clone()
        } else {
            let files = &v.levels[level];
            let ptr = &st.compact_pointer[level];
            let i = files.iter().position(|t| t.meta.smallest >= *ptr).unwrap_or(0);
            vec![files[i].clone()]
        };
        Some(self.plan(level, inputs))
    }

    fn plan(&self, level: usize, inputs: Vec<Handle<F>>) -> Compaction<F> {
        let st = self.state.borrow();
        let v = &st.version;
        let start = inputs.iter().map(|t| t.meta.smallest.clone()).min().unwrap_or_default();
        let upper = inputs.iter().map(|t| t.meta.upper.clone()).max().unwrap_or_default();
        let next = v.overlapping(level + 1, &start, &upper);
        // Widen to the next level's tables: the output spans them too.
        let lo = next.first().map_or(start.clone(), |t| t.meta.smallest.clone().min(start.clone()));
        let hi = next.last().map_or(upper.clone(), |t| t.meta.upper.clone().max(upper.clone()));
        let bottommost = (level + 2..self.opts.num_levels).all(|l| v.overlapping(l, &lo, &hi).is_empty());
        // Nothing below to merge with and the inputs do not overlap each
        // other (sequential writes flush such L0 tables): move them down.
        let mut sorted: Vec<&Handle<F>> = inputs.iter().collect();
        sorted.sort_by(|a, b| a.meta.smallest.cmp(&b.meta.smallest));
        let disjoint = sorted.windows(2).all(|w| w[0].meta.upper <= w[1].meta.smallest);
        let trivial = next.is_empty() && disjoint;
        Compaction { level, inputs, next, bottommost, trivial }
    }

    /// Runs one compaction if one is needed. Returns whether it did.
    pub(crate) async fn compact_once(&self) -> Result<bool> {
        let Some(_g) = self.compaction_lock.try_lock() else {
            return Ok(false);
        };
        let Some(c) = self.pick_compaction() else {
            return Ok(false);
        };
        self.run_compaction(c).await?;
        Ok(true)
    }

    /// Merges all of `level` into the next one (the caller holds the
    /// compaction lock).
    pub(crate) async fn compact_level_fully(&self, level: usize) -> Result<()> {
        let inputs = self.state.borrow().version.levels[level].clone();
        if inputs.is_empty() {
            return Ok(());
        }
        let mut c = self.plan(level, inputs);
        c.trivial = false;
        self.run_compaction(c).await
    }

    /// Runs `c`. Any failure poisons the tree (fail-stop: after a failed
    /// write or sync the files are in an unknown state, and no further
    /// write may be acknowledged).
    async fn run_compaction(&self, c: Compaction<F>) -> Result<()> {
        let r = self.merge_and_install(c).await;
        if let Err(e) = &r {
            self.poison(&format!("compaction failed: {e}"));
        }
        r
    }

    async fn merge_and_install(&self, c: Compaction<F>) -> Result<()> {
        let started = Instant::now();
        let out_level = c.level + 1;
        let pointer = c.inputs.iter().map(|t| t.meta.upper.clone()).max().unwrap_or_default();
        if c.trivial {
            let deleted: Vec<(usize, u64)> = c.inputs.iter().map(|t| (c.level, t.meta.number)).collect();
            let edit = VersionEdit {
                deleted: deleted.clone(),
                added: c.inputs.iter().map(|t| (out_level, t.meta.clone())).collect(),
                ..Default::default()
            };
            let mut guard = self.manifest.lock().await;
            self.log_edit(&mut guard, edit).await?;
            self.install(&deleted, c.inputs.iter().map(|t| (out_level, t.clone())).collect(), Vec::new());
            drop(guard);
            let mut st = self.state.borrow_mut();
            st.compact_pointer[c.level] = pointer;
            drop(st);
            self.stats.borrow_mut().trivial_moves += c.inputs.len() as u64;
            return Ok(());
        }

        let mut created: Vec<u64> = Vec::new();
        let result = self.merge(&c, &mut created).await;
        let outputs = match result {
            Ok(o) => o,
            Err(e) => {
                for n in created {
                    let _ = self.fs.remove(&self.dir.join(manifest::table_name(n))).await;
                }
                return Err(e);
            }
        };
        let mut added = Vec::new();
        let mut written = 0;
        for o in outputs {
            written += o.info.size;
            let (smallest, upper) = bounds(
                Some(&o.first).filter(|f| !f.is_empty()).map(|v| &v[..]),
                (!o.first.is_empty()).then_some(&o.last[..]),
                &o.tombs,
            );
            let meta = FileMeta {
                number: o.number,
                size: o.info.size,
                smallest,
                upper,
                min_seq: o.info.min_seq,
                max_seq: o.info.max_seq,
                global_seq: None,
                num_entries: o.info.num_entries,
                num_deletions: o.info.num_deletions,
                num_tombstones: o.info.num_tombstones,
                raw_bytes: o.info.raw_key_bytes + o.info.raw_value_bytes,
            };
            let table = self.open_written(o.number, o.info.size).await?;
            added.push((out_level, Rc::new(TableHandle { meta, table })));
        }
        let mut deleted: Vec<(usize, u64)> = c.inputs.iter().map(|t| (c.level, t.meta.number)).collect();
        deleted.extend(c.next.iter().map(|t| (out_level, t.meta.number)));
        let read: u64 = c.inputs.iter().chain(&c.next).map(|t| t.meta.size).sum();
        let edit = VersionEdit {
            deleted: deleted.clone(),
            added: added.iter().map(|(l, t)| (*l, t.meta.clone())).collect(),
            ..Default::default()
        };
        let obsolete: Vec<Handle<F>> = c.inputs.iter().chain(&c.next).cloned().collect();
        drop(c);
        if !added.is_empty() {
            // The outputs' names must be durable before the manifest lists them.
            self.fs.sync_dir(&self.dir).await?;
        }
        crash_point!("lsm::compaction::before_manifest");
        let mut guard = self.manifest.lock().await;
        self.log_edit(&mut guard, edit).await?;
        self.install(&deleted, added, obsolete);
        drop(guard);
        let mut st = self.state.borrow_mut();
        st.compact_pointer[out_level - 1] = pointer;
        drop(st);
        let mut s = self.stats.borrow_mut();
        s.compactions += 1;
        s.compaction_bytes_read += read;
        s.compaction_bytes_written += written;
        s.compaction_micros += started.elapsed().as_micros() as u64;
        Ok(())
    }

    async fn merge(&self, c: &Compaction<F>, created: &mut Vec<u64>) -> Result<Vec<Output>> {
        let snapshots = self.live_snapshots();
        let earliest = snapshots.first().copied().unwrap_or(u64::MAX);
        let mut kids: Vec<Child<F::File>> = Vec::new();
        if c.level == 0 {
            kids.extend(c.inputs.iter().map(|t| Child::Table(t.table.iter_for_compaction())));
        } else {
            kids.push(Child::Level(LevelIter::new(c.inputs.clone(), true)));
        }
        if !c.next.is_empty() {
            kids.push(Child::Level(LevelIter::new(c.next.clone(), true)));
        }
        let mut all_tombs: Vec<Tombstone> = Vec::new();
        for t in c.inputs.iter().chain(&c.next) {
            all_tombs.extend(t.table.tombstones().iter().cloned());
        }
        let frags = Fragments::new(&all_tombs);
        let mut keep_tombs: Vec<Tombstone> = all_tombs
            .into_iter()
            .filter(|t| !(c.bottommost && t.seq <= earliest) && t.start < t.end)
            .collect();
        keep_tombs.sort_by(|a, b| a.start.cmp(&b.start).then(b.seq.cmp(&a.seq)).then(a.end.cmp(&b.end)));
        keep_tombs.dedup();

        let mut merge = MergeIter::new(kids);
        merge.seek_to_first().await?;
        let mut outputs: Vec<Output> = Vec::new();
        let mut cur: Option<Building<F>> = None;
        let mut lo: Option<Vec<u8>> = None;
        let mut cut_pending = false;
        let mut last_ukey: Vec<u8> = Vec::new();
        let mut have_key = false;
        let mut newer: Option<u64> = None;
        let mut clock = WorkClock::new(&self.opts);
        let target = self.opts.target_file_size;
        while merge.valid() {
            let ik = merge.key();
            let ukey = key::user_key(ik);
            let seq = key::seq_of(ik);
            if !have_key || ukey != last_ukey.as_slice() {
                have_key = true;
                last_ukey.clear();
                last_ukey.extend_from_slice(ukey);
                newer = None;
                if cur.as_ref().is_some_and(|b| b.builder.estimated_size() >= target) {
                    cut_pending = true;
                }
            }
            let s = stripe(&snapshots, seq);
            let hidden = newer.is_some_and(|n| s >= n);
            let covered = frags.next_above(ukey, seq).is_some_and(|t| s >= t);
            let dead_delete = key::kind_of(ik) == Kind::Delete as u8 && c.bottommost && seq <= earliest;
            newer = Some(seq);
            if !(hidden || covered || dead_delete) {
                if cut_pending {
                    let b = cur.take().expect("a cut is pending only with an open table");
                    let hi = ukey.to_vec();
                    outputs.push(self.finish_output(b, &keep_tombs, lo.as_deref(), Some(&hi)).await?);
                    lo = Some(hi);
                    cut_pending = false;
                }
                if cur.is_none() {
                    let number = self.alloc_file_number();
                    created.push(number);
                    let file = self.fs.create(&self.dir.join(manifest::table_name(number))).await?;
                    cur = Some(Building {
                        number,
                        builder: TableBuilder::new(file, self.opts.table_options()),
                        first: ukey.to_vec(),
                        last: Vec::new(),
                        reported: 0,
                    });
                }
                let b = cur.as_mut().expect("just ensured");
                b.last.clear();
                b.last.extend_from_slice(ukey);
                let (k, v) = (merge.key().to_vec(), merge.value());
                b.builder.add(&k, v).await?;
                let size = b.builder.estimated_size();
                if size - b.reported >= 1 << 20 {
                    let delta = size - b.reported;
                    b.reported = size;
                    self.grant_credit(delta);
                }
            }
            merge.next().await?;
            clock.tick(&self.opts).await;
        }
        match cur {
            Some(b) => outputs.push(self.finish_output(b, &keep_tombs, lo.as_deref(), None).await?),
            None if outputs.is_empty() && !keep_tombs.is_empty() => {
                // Only range deletions survive: one table holds them.
                let number = self.alloc_file_number();
                created.push(number);
                let file = self.fs.create(&self.dir.join(manifest::table_name(number))).await?;
                let b = Building {
                    number,
                    builder: TableBuilder::new(file, self.opts.table_options()),
                    first: Vec::new(),
                    last: Vec::new(),
                    reported: 0,
                };
                outputs.push(self.finish_output(b, &keep_tombs, None, None).await?);
            }
            None => {}
        }
        Ok(outputs)
    }

    async fn finish_output(
        &self,
        mut b: Building<F>,
        tombs: &[Tombstone],
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
    ) -> Result<Output> {
        let mut mine = Vec::new();
        for t in tombs {
            let start = match lo {
                Some(l) if l > t.start.as_slice() => l.to_vec(),
                _ => t.start.clone(),
            };
            let end = match hi {
                Some(h) if h < t.end.as_slice() => h.to_vec(),
                _ => t.end.clone(),
            };
            if start < end {
                let clipped = Tombstone { start, end, seq: t.seq };
                b.builder.add_tombstone(clipped.clone());
                mine.push(clipped);
            }
        }
        let info = b.builder.finish().await?;
        self.grant_credit(info.size.saturating_sub(b.reported));
        Ok(Output { number: b.number, info, first: b.first, last: b.last, tombs: mine })
    }

    /// Compaction wrote `bytes`: slowed-down writers may write a share of
    /// that, smaller the closer L0 (or the compaction debt) is to a stop.
    fn grant_credit(&self, bytes: u64) {
        let mut st = self.state.borrow_mut();
        let o = &self.opts;
        let l0 = st.version.levels[0].len();
        let by_l0 = if l0 <= o.l0_slowdown_trigger {
            1.0
        } else {
            1.0 - (l0 - o.l0_slowdown_trigger) as f64 / (o.l0_stop_trigger - o.l0_slowdown_trigger) as f64
        };
        let pending = self.pending_compaction_bytes(&st);
        let by_debt = if pending <= o.pending_compaction_slowdown_bytes {
            1.0
        } else {
            1.0 - (pending - o.pending_compaction_slowdown_bytes) as f64
                / (o.pending_compaction_stop_bytes - o.pending_compaction_slowdown_bytes) as f64
        };
        let share = by_l0.min(by_debt).clamp(0.05, 1.0);
        st.credit = st.credit.saturating_add((bytes as f64 * share) as i64);
        drop(st);
        self.progress.notify();
    }
}
