//! Crash tests on the in-memory file system: unsynced writes lost or torn,
//! tails torn at hundreds of offsets, bytes flipped in old segments.

mod support;

use std::path::{Path, PathBuf};
use std::pin::pin;
use std::task::Poll;

use ekv_io::{CrashMode, MemFs};
use ekv_wal::format::{segment_name, SegmentHeader, HEADER_BLOCK};
use ekv_wal::{Error, RecoveryMode, Wal, WalOptions};
use futures::executor::block_on;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use support::{differs, must_match, random_round, to_batch, Model};

const REGIONS: u64 = 50;

fn options() -> WalOptions {
    WalOptions {
        segment_size: 64 << 10,
        spare_segments: 2,
        cache_capacity: 16 << 10,
        ..WalOptions::default()
    }
}

fn dir() -> PathBuf {
    PathBuf::from("/wal")
}

/// Writes `rounds` random rounds; returns the model after each round and
/// where each round's record ended (segment, offset).
async fn build(fs: &MemFs, rounds: usize, seed: u64) -> (Vec<Model>, Vec<(u64, u64)>) {
    let wal = Wal::open(fs.clone(), dir(), options()).await.unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut model = Model::default();
    let mut models = vec![model.clone()];
    let mut ends = vec![(0, 0)];
    let mut salt = 0;
    for _ in 0..rounds {
        let steps = random_round(&model, &mut rng, REGIONS, &mut salt);
        wal.write(&mut to_batch(&steps)).await.unwrap();
        assert!(model.apply_batch(&steps));
        models.push(model.clone());
        let st = wal.stats();
        ends.push((st.active_segment, st.active_offset));
    }
    wal.close().await.unwrap();
    (models, ends)
}

#[test]
fn synced_writes_survive_and_an_interrupted_one_is_all_or_nothing() {
    block_on(async {
        for seed in 0..60u64 {
            let fs = MemFs::new(512);
            let (models, _) = build(&fs, 40 + seed as usize, seed).await;
            let acked = models.last().unwrap().clone();
            // One more round, interrupted after its write reached the file but
            // before its fdatasync finished.
            let wal = Wal::open(fs.clone(), dir(), options()).await.unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xdead);
            let steps = random_round(&acked, &mut rng, REGIONS, &mut 10_000);
            let mut with_inflight = acked.clone();
            assert!(with_inflight.apply_batch(&steps));
            let mut batch = to_batch(&steps);
            {
                let mut fut = pin!(wal.write(&mut batch));
                let polls = rng.gen_range(1..=2);
                for _ in 0..polls {
                    let done = futures::poll!(fut.as_mut());
                    assert!(matches!(done, Poll::Pending), "seed {seed}: write finished too early");
                }
            }
            drop(wal);
            let mode = if seed % 2 == 0 { CrashMode::DropUnsynced } else { CrashMode::Tear { seed } };
            fs.crash(mode);
            let wal =
                Wal::open(fs.clone(), dir(), options()).await.unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            // Either exactly the acknowledged state, or that plus the whole
            // interrupted round: never a part of it.
            let target = match (differs(&wal, &acked).await, differs(&wal, &with_inflight).await) {
                (None, _) => &acked,
                (_, None) => &with_inflight,
                (Some(a), Some(b)) => panic!("seed {seed}: neither acked ({a}) nor acked+inflight ({b})"),
            };
            // And the log goes on.
            let more = random_round(target, &mut rng, REGIONS, &mut 20_000);
            wal.write(&mut to_batch(&more)).await.unwrap();
        }
    });
}

#[test]
fn torn_tail_at_random_offsets_keeps_every_whole_record() {
    block_on(async {
        let base = MemFs::new(512);
        let (models, ends) = build(&base, 120, 42).await;
        let (newest, _) = *ends.last().unwrap();
        let path = dir().join(segment_name(newest));
        let start = ends.iter().position(|(s, _)| *s == newest).unwrap();
        let seg_start = HEADER_BLOCK;
        let seg_end = ends.last().unwrap().1;
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for trial in 0..300 {
            let fs = base.snapshot();
            let cut = rng.gen_range(seg_start..seg_end);
            let garbage: Vec<u8> = match trial % 3 {
                0 => vec![0; (seg_end - cut) as usize],
                1 => (0..rng.gen_range(1..600)).map(|_| rng.gen()).collect(),
                _ => vec![rng.gen::<u8>() | 1; rng.gen_range(1..40)],
            };
            assert!(fs.overwrite_durable(&path, cut, &garbage));
            let wal = Wal::open(fs.clone(), dir(), options())
                .await
                .unwrap_or_else(|e| panic!("trial {trial} cut {cut}: torn tail must open: {e}"));
            // Every record that ended before the cut is there; none after.
            let whole = ends.iter().rposition(|&(s, e)| s < newest || (s == newest && e <= cut)).unwrap();
            let expect = whole.max(start - 1);
            must_match(&wal, &models[expect], &format!("trial {trial} cut {cut}")).await;
            let mut salt = 50_000 + trial;
            let more = random_round(&models[expect], &mut rng, REGIONS, &mut salt);
            wal.write(&mut to_batch(&more)).await.unwrap();
            let mut after = models[expect].clone();
            assert!(after.apply_batch(&more));
            wal.close().await.unwrap();
            let wal = Wal::open(fs.clone(), dir(), options()).await.unwrap();
            must_match(&wal, &after, &format!("trial {trial} after rewrite")).await;
        }
    });
}

fn used_segments(fs: &MemFs) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    for p in fs.paths() {
        let name = p.file_name().unwrap().to_str().unwrap();
        if let Some(seq) = ekv_wal::format::parse_segment_name(name) {
            let bytes = fs.read_file(&p).unwrap();
            if SegmentHeader::decode_from(&bytes).is_some_and(|h| h.seq == seq) {
                out.push((seq, bytes));
            }
        }
    }
    out.sort_by_key(|s| s.0);
    out
}

#[test]
fn flipped_bytes_in_old_segments_are_reported_with_file_and_offset() {
    block_on(async {
        let base = MemFs::new(512);
        let (models, _) = build(&base, 200, 5).await;
        let segs = used_segments(&base);
        assert!(segs.len() >= 4, "the workload spans several segments: {}", segs.len());
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for trial in 0..200 {
            // An old segment and a byte inside its records or header.
            let k = rng.gen_range(0..segs.len() - 1);
            let (seq, ref bytes) = segs[k];
            let end = SegmentHeader::decode_from(&segs[k + 1].1).unwrap().prev_len;
            let at = if trial % 10 == 0 { rng.gen_range(0..60) } else { rng.gen_range(HEADER_BLOCK..end) };
            let fs = base.snapshot();
            let path = dir().join(segment_name(seq));
            assert!(fs.overwrite_durable(&path, at, &[bytes[at as usize] ^ (1 << rng.gen_range(0..8))]));
            match Wal::open(fs.clone(), dir(), options()).await {
                Err(Error::Corruption { path: p, offset, .. }) => {
                    assert_eq!(p, path, "trial {trial}: names the damaged file");
                    assert!(offset <= at, "trial {trial}: offset {offset} at or before the flip at {at}");
                }
                Err(e) => panic!("trial {trial}: wrong error {e}"),
                Ok(_) => panic!("trial {trial}: flip at {at} of {} went unnoticed", path.display()),
            }
            // The explicit option truncates there and goes on with a prefix.
            let opts = WalOptions { recovery: RecoveryMode::TruncateCorrupt, ..options() };
            let wal = Wal::open(fs.clone(), dir(), opts.clone()).await.unwrap();
            let regions = wal.regions();
            let prefix = models.iter().rposition(|m| {
                m.regions.keys().copied().collect::<Vec<_>>() == regions
                    && m.regions.iter().all(|(id, r)| {
                        wal.last_index(*id) == Some(r.next().saturating_sub(1))
                            && wal.hard_state(*id) == r.hard_state
                    })
            });
            let prefix =
                prefix.unwrap_or_else(|| panic!("trial {trial}: truncated log is no prefix of history"));
            must_match(&wal, &models[prefix], &format!("trial {trial} truncated")).await;
            assert!(prefix < models.len() - 1, "trial {trial}: something was dropped");
            wal.close().await.unwrap();
            // Reopened normally, the truncated log is clean.
            let wal = Wal::open(fs.clone(), dir(), options()).await.unwrap();
            must_match(&wal, &models[prefix], &format!("trial {trial} reopened")).await;
        }
    });
}

#[test]
fn failed_sync_poisons_the_log() {
    block_on(async {
        let fs = MemFs::new(512);
        let (models, _) = build(&fs, 10, 1).await;
        let wal = Wal::open(fs.clone(), dir(), options()).await.unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let steps = random_round(models.last().unwrap(), &mut rng, REGIONS, &mut 900);
        fs.fail_next_syncs(1);
        assert!(wal.write(&mut to_batch(&steps)).await.is_err());
        assert!(wal.stats().poisoned);
        assert!(matches!(wal.write(&mut to_batch(&steps)).await, Err(Error::Poisoned(_))));
        drop(wal);
        fs.crash(CrashMode::DropUnsynced);
        let wal = Wal::open(fs.clone(), dir(), options()).await.unwrap();
        must_match(&wal, models.last().unwrap(), "after poisoned write").await;
    });
}

#[test]
fn stray_files_are_ignored() {
    block_on(async {
        let fs = MemFs::new(512);
        let (models, _) = build(&fs, 5, 2).await;
        use ekv_io::{File, FileSystem};
        let f = fs.create(Path::new("/wal/notes.txt")).await.unwrap();
        f.write_at(vec![7; 512], 0).await.unwrap();
        f.fdatasync().await.unwrap();
        fs.sync_dir(Path::new("/wal")).await.unwrap();
        let wal = Wal::open(fs.clone(), dir(), options()).await.unwrap();
        must_match(&wal, models.last().unwrap(), "with a stray file").await;
    });
}

#[test]
fn a_leader_dropped_mid_write_poisons_instead_of_hanging() {
    block_on(async {
        let fs = MemFs::new(512);
        let (models, _) = build(&fs, 5, 4).await;
        let wal = Wal::open(fs.clone(), dir(), options()).await.unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let model = models.last().unwrap();
        let mut a = to_batch(&random_round(model, &mut rng, REGIONS, &mut 700));
        let mut b = to_batch(&random_round(model, &mut rng, REGIONS, &mut 800));
        let mut second = Box::pin(wal.write(&mut b));
        {
            let mut first = pin!(wal.write(&mut a));
            assert!(futures::poll!(first.as_mut()).is_pending(), "the first writer leads and waits on I/O");
            assert!(futures::poll!(second.as_mut()).is_pending(), "the second waits for the leader");
        }
        // The leader is gone mid-write: the waiter is told, not left hanging.
        assert!(matches!(second.await, Err(Error::Poisoned(_))));
        assert!(matches!(
            wal.write(&mut to_batch(&random_round(model, &mut rng, REGIONS, &mut 900))).await,
            Err(Error::Poisoned(_))
        ));
        drop(wal);
        fs.crash(CrashMode::DropUnsynced);
        let wal = Wal::open(fs.clone(), dir(), options()).await.unwrap();
        must_match(&wal, model, "after the abandoned write").await;
    });
}
