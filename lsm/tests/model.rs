//! Model-based property test: random puts, deletes and range deletions in
//! three column families (atomic batches across them), snapshots, point
//! reads and iterators (both directions, bounds, seeks, direction changes)
//! at the newest state and at snapshots, flushes, compactions, export and
//! ingest (into the same tree and into another), clean reopens and crashes
//! (the tree comes back at its last durable flush marker), checked against
//! a `BTreeMap` per family after every step. Each run goes once with all
//! work inline and once with `run_flusher` and `run_compactor` spawned on a `LocalPool`.

mod support;

use std::path::PathBuf;

use ekv_io::MemFs;
use proptest::prelude::*;
use rand::SeedableRng;
use support::{random_op, run_both_ways, tiny_options, Move, Op, Runner, Setup, Totals, WOp, KEYS};

fn key_strategy() -> impl Strategy<Value = u16> {
    0..KEYS + 2
}

fn snap_strategy() -> impl Strategy<Value = Option<u8>> {
    proptest::option::weighted(0.4, any::<u8>())
}

fn wop_strategy() -> impl Strategy<Value = WOp> {
    let kind = prop_oneof![40 => 0u8..6, 12 => 6u8..8, 5 => Just(8u8), 1 => Just(9u8)];
    (0u8..3, kind, key_strategy(), key_strategy()).prop_map(|(cf, kind, key, arg)| WOp { cf, kind, key, arg })
}

fn position_strategy() -> impl Strategy<Value = Move> {
    prop_oneof![
        Just(Move::First),
        Just(Move::Last),
        key_strategy().prop_map(Move::Seek),
        key_strategy().prop_map(Move::SeekForPrev),
    ]
}

fn move_strategy() -> impl Strategy<Value = Move> {
    prop_oneof![8 => Just(Move::Next), 8 => Just(Move::Prev), 1 => position_strategy()]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let iter = (
        0u8..3,
        snap_strategy(),
        proptest::option::weighted(0.4, key_strategy()),
        proptest::option::weighted(0.4, key_strategy()),
        position_strategy(),
        proptest::collection::vec(move_strategy(), 0..24),
    )
        .prop_map(|(cf, snap, lower, upper, first, mut moves)| {
            moves.insert(0, first);
            Op::Iter { cf, snap, lower, upper, moves }
        });
    let export = (
        0u8..3,
        key_strategy(),
        proptest::option::weighted(0.8, key_strategy()),
        proptest::option::weighted(0.2, 0u8..3),
        snap_strategy(),
        any::<bool>(),
    )
        .prop_map(|(cf, start, end, whole_cf, snap, into_other)| Op::ExportIngest {
            cf,
            start,
            end,
            whole_cf,
            snap,
            into_other,
        });
    prop_oneof![
        600 => proptest::collection::vec(wop_strategy(), 1..6).prop_map(Op::Write),
        100 => (0u8..3, key_strategy(), snap_strategy()).prop_map(|(cf, key, snap)| Op::Get { cf, key, snap }),
        40 => Just(Op::TakeSnapshot),
        30 => any::<u8>().prop_map(Op::ReleaseSnapshot),
        120 => iter,
        25 => Just(Op::Flush),
        20 => Just(Op::WaitForCompactions),
        7 => Just(Op::CompactAll),
        30 => export,
        8 => Just(Op::Reopen),
        6 => Just(Op::DropCf),
        14 => proptest::option::of(any::<u64>()).prop_map(|tear| Op::Crash { tear }),
        8 => (
            0u8..3,
            snap_strategy(),
            proptest::option::weighted(0.3, key_strategy()),
            proptest::option::weighted(0.3, key_strategy()),
            position_strategy(),
        )
            .prop_map(|(cf, snap, lower, upper, first)| Op::OpenIter { cf, snap, lower, upper, first }),
        25 => (any::<u8>(), proptest::collection::vec(move_strategy(), 1..12))
            .prop_map(|(which, moves)| Op::StepIter { which, moves }),
    ]
}

fn run(ops: Vec<Op>, background: bool) -> Totals {
    run_both_ways::<MemFs, _>(background, |spawn| async move {
        let setup = Setup {
            fs: MemFs::new(512),
            dir: PathBuf::from("/db"),
            other_dir: PathBuf::from("/other"),
            export_dir: PathBuf::from("/export"),
            opts: tiny_options(),
            spawn,
        };
        let mut runner = Runner::new(setup).await;
        runner.run(ops).await;
        runner.finish().await
    })
}

/// 64 cases each way; `PROPTEST_CASES` asks for more (or fewer).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn lsm_matches_model_inline(ops in proptest::collection::vec(op_strategy(), 1..400)) {
        run(ops, false);
    }

    #[test]
    fn lsm_matches_model_with_background_task(ops in proptest::collection::vec(op_strategy(), 1..400)) {
        run(ops, true);
    }
}

fn seeded_ops(seed: u64, n: usize) -> Vec<Op> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| random_op(&mut rng)).collect()
}

/// A long deterministic run: many flushes, compactions of every kind,
/// reopens and crashes.
#[test]
fn long_seeded_run_inline() {
    let t = run(seeded_ops(0x15a, 5000), false);
    assert!(t.flushes >= 100 && t.compactions >= 30, "{t:?}");
    assert!(t.reopens >= 20 && t.crashes >= 20 && t.ingested >= 50 && t.iter_moves >= 3000, "{t:?}");
}

#[test]
fn long_seeded_run_with_background_task() {
    let t = run(seeded_ops(0x15b, 5000), true);
    assert!(t.flushes >= 50 && t.compactions >= 15, "{t:?}");
}
