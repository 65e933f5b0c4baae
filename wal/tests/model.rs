//! Model-based property test: random appends, overwrites, compactions,
//! removals, concurrent group commits, maintenance and reopens over 60
//! regions, checked against an in-memory model after every step.

mod support;

use std::path::PathBuf;

use ekv_io::MemFs;
use ekv_proto::RegionId;
use ekv_wal::{HardState, Wal, WalOptions};
use futures::executor::block_on;
use proptest::prelude::*;
use support::{entry, must_match, to_batch, Model, Step};

const REGIONS: u64 = 60;

#[derive(Debug, Clone)]
enum Op {
    /// One batch of steps (region, kind, knob) resolved against the model.
    Batch(Vec<(u64, u8, u64, u8)>),
    /// Several batches written concurrently: one group commit.
    Group(Vec<Vec<(u64, u8, u64, u8)>>),
    Maintain,
    Reopen,
}

fn step_strategy() -> impl Strategy<Value = (u64, u8, u64, u8)> {
    (1..=REGIONS, 0u8..10, any::<u64>(), 1u8..6)
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => proptest::collection::vec(step_strategy(), 1..6).prop_map(Op::Batch),
        3 => proptest::collection::vec(proptest::collection::vec(step_strategy(), 1..4), 2..5).prop_map(Op::Group),
        1 => Just(Op::Maintain),
        1 => Just(Op::Reopen),
    ]
}

/// Turns abstract steps into concrete ones, mostly valid, sometimes not.
fn resolve(model: &Model, raw: &[(u64, u8, u64, u8)], salt: &mut u64) -> Vec<Step> {
    let mut view = model.clone();
    let mut steps = Vec::new();
    for &(r, kind, knob, n) in raw {
        let region = RegionId(r);
        let cur = view.regions.get(&region).cloned().unwrap_or_default();
        *salt += 1;
        let step = match kind {
            0..=4 => {
                // Append: usually at the end, sometimes overwriting, rarely a gap.
                let at = match knob % 10 {
                    0..=5 => cur.next().max(1),
                    6..=8 if !cur.entries.is_empty() => cur.first + knob / 10 % cur.entries.len() as u64,
                    9 => cur.next() + 1 + knob % 3,
                    _ => cur.next().max(1),
                };
                let term = 1 + knob % 4;
                let len = [0usize, 7, 100, 900, 3000][(knob / 7 % 5) as usize];
                let entries = (0..u64::from(n)).map(|i| entry(at + i, term, len, *salt)).collect();
                Step::Append { region, entries }
            }
            5 | 6 => Step::HardState {
                region,
                state: HardState { term: knob % 100, vote: knob % 3, commit: knob % 50 },
            },
            7 | 8 => {
                let span = cur.next().saturating_sub(cur.first) + 2;
                Step::Compact { region, to: cur.first + knob % span }
            }
            _ => Step::Remove { region },
        };
        view.apply_batch(std::slice::from_ref(&step));
        steps.push(step);
    }
    steps
}

fn options() -> WalOptions {
    WalOptions { segment_size: 64 << 10, spare_segments: 2, cache_capacity: 8 << 10, ..WalOptions::default() }
}

fn run(ops: Vec<Op>) {
    block_on(async {
        let fs = MemFs::new(512);
        let dir = PathBuf::from("/wal");
        let mut wal = Some(Wal::open(fs.clone(), dir.clone(), options()).await.unwrap());
        let mut model = Model::default();
        let mut salt = 0;
        for (i, op) in ops.into_iter().enumerate() {
            let w = wal.as_ref().unwrap();
            match op {
                Op::Batch(raw) => {
                    let steps = resolve(&model, &raw, &mut salt);
                    let ok = w.write(&mut to_batch(&steps)).await.is_ok();
                    assert_eq!(ok, model.apply_batch(&steps), "step {i}: accepted? {steps:?}");
                }
                Op::Group(raws) => {
                    let mut view = model.clone();
                    let mut all = Vec::new();
                    for raw in &raws {
                        let steps = resolve(&view, raw, &mut salt);
                        view.apply_batch(&steps);
                        all.push(steps);
                    }
                    let mut batches: Vec<_> = all.iter().map(|s| to_batch(s)).collect();
                    let before = w.stats().records;
                    let results = futures::future::join_all(batches.iter_mut().map(|b| w.write(b))).await;
                    for (steps, r) in all.iter().zip(&results) {
                        assert_eq!(r.is_ok(), model.apply_batch(steps), "step {i}: group member accepted?");
                    }
                    // The first writer leads alone; all who arrive while its
                    // write is in flight share the next record.
                    assert!(
                        w.stats().records <= before + 2,
                        "step {i}: group commit used {} records",
                        w.stats().records - before
                    );
                }
                Op::Maintain => {
                    w.maintain().await.unwrap();
                }
                Op::Reopen => {
                    wal.take().unwrap().close().await.unwrap();
                    fs.crash(ekv_io::CrashMode::DropUnsynced);
                    wal = Some(Wal::open(fs.clone(), dir.clone(), options()).await.unwrap());
                }
            }
            must_match(wal.as_ref().unwrap(), &model, &format!("after step {i}")).await;
        }
        // Memory stays bounded by what is live.
        let st = wal.as_ref().unwrap().stats();
        assert!(st.cache_bytes <= options().cache_capacity, "{st:?}");
        let live: usize = model.regions.values().map(|r| r.entries.len()).sum();
        assert_eq!(st.entries, live);
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn wal_matches_model(ops in proptest::collection::vec(op_strategy(), 1..120)) {
        run(ops);
    }
}

/// A long deterministic run that fills and recycles many segments.
#[test]
fn long_run_recycles_segments() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let ops: Vec<Op> = (0..1500)
        .map(|i| {
            if i % 97 == 0 {
                Op::Reopen
            } else if i % 13 == 0 {
                Op::Maintain
            } else {
                let n = rng.gen_range(1..5);
                Op::Batch(
                    (0..n)
                        .map(|_| {
                            (rng.gen_range(1..=REGIONS), rng.gen_range(0..9), rng.gen(), rng.gen_range(1..6))
                        })
                        .collect(),
                )
            }
        })
        .collect();
    run(ops);
}

/// Writers that arrive while a write is in flight share the next record and
/// its one fdatasync: 1 + 1 records for 10 writers, every one durable.
#[test]
fn concurrent_writers_share_one_sync() {
    block_on(async {
        let fs = MemFs::new(512);
        let wal = Wal::open(fs.clone(), PathBuf::from("/wal"), options()).await.unwrap();
        let syncs_before = fs.sync_count();
        let mut batches: Vec<_> = (1..=10u64)
            .map(|r| to_batch(&[Step::Append { region: RegionId(r), entries: vec![entry(1, 1, 64, r)] }]))
            .collect();
        let results = futures::future::join_all(batches.iter_mut().map(|b| wal.write(b))).await;
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        let st = wal.stats();
        assert_eq!((st.records, st.batches), (2, 10), "first writer alone, the other nine together: {st:?}");
        assert_eq!(fs.sync_count() - syncs_before, 2, "one fdatasync per record");
        wal.close().await.unwrap();
        fs.crash(ekv_io::CrashMode::DropUnsynced);
        let wal = Wal::open(fs.clone(), PathBuf::from("/wal"), options()).await.unwrap();
        for r in 1..=10u64 {
            assert_eq!(wal.last_index(RegionId(r)), Some(1), "region {r} survived the crash");
        }
    });
}
