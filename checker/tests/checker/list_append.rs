//! The list-append check.

use std::time::Instant;

use ekv_checker::list_append::check;
use ekv_checker::{Anomaly, AnomalyKind, History, Op, OpId, Operation, Outcome, ProcessId, Value, Verdict};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::sim::{
    completions, final_reads, outcome_mut, record, record_coarse, simulate, GenEvent, Lists, SimConfig,
};

fn p(n: u64) -> ProcessId {
    ProcessId(n)
}

fn list(xs: &[u64]) -> Outcome {
    Outcome::Elements(xs.iter().map(|&x| Value::from(x)).collect())
}

fn run(h: &mut History, process: u64, op: Op, outcome: Outcome) -> OpId {
    let id = h.invoke(p(process), op);
    h.complete(id, outcome);
    id
}

fn must_pass(h: &History) -> Verdict {
    let v = check(h);
    assert!(v.is_ok(), "expected ok, got:\n{v}\nhistory:\n{}", h.to_jsonl());
    v
}

/// Checks that `h` has anomalies of `kind` alone, and returns them.
fn must_find(h: &History, kind: AnomalyKind) -> Vec<Anomaly> {
    let v = check(h);
    assert!(v.count(kind) > 0, "expected {kind}, got:\n{v}\nhistory:\n{}", h.to_jsonl());
    assert_eq!(v.counts.len(), 1, "only {kind} expected:\n{v}");
    v.anomalies
}

#[test]
fn concurrent_appends_with_every_outcome_are_accepted() {
    let mut h = History::new();
    let a1 = h.invoke(p(1), Op::append("l", 1));
    let a2 = h.invoke(p(2), Op::append("l", 2));
    // Concurrent appends land in either order; reads in flight see a prefix.
    run(&mut h, 3, Op::read_list("l"), list(&[]));
    run(&mut h, 3, Op::read_list("l"), list(&[2]));
    h.complete(a1, Outcome::Written);
    h.complete(a2, Outcome::Written);
    run(&mut h, 3, Op::read_list("l"), list(&[2, 1]));
    // Unknown appends that did (3) and did not (4) take effect, one never completed (5) that did,
    // a failed one (6), and one concurrent with the final read (7) that it does not see.
    let a3 = h.invoke(p(1), Op::append("l", 3));
    h.complete(a3, Outcome::Unknown);
    let a4 = h.invoke(p(2), Op::append("l", 4));
    h.complete(a4, Outcome::Unknown);
    let _a5 = h.invoke(p(4), Op::append("l", 5));
    run(&mut h, 1, Op::append("l", 6), Outcome::Fail);
    let a7 = h.invoke(p(2), Op::append("l", 7));
    run(&mut h, 3, Op::read_list("l"), list(&[2, 1, 5, 3]));
    h.complete(a7, Outcome::Written);
    let v = must_pass(&h);
    assert_eq!((v.keys, v.ops), (1, 11));
}

#[test]
fn reads_that_are_not_prefixes_of_one_another_are_rejected() {
    let mut h = History::new();
    run(&mut h, 1, Op::append("l", 1), Outcome::Written);
    run(&mut h, 1, Op::append("l", 2), Outcome::Written);
    let longest = run(&mut h, 2, Op::read_list("l"), list(&[1, 2]));
    let other = run(&mut h, 3, Op::read_list("l"), list(&[2, 1]));
    match &must_find(&h, AnomalyKind::IncompatibleOrder)[..] {
        [Anomaly::IncompatibleOrder { read, longest: l, index: 0, .. }] => {
            assert_eq!((read.id, l.id), (other, longest));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn duplicates_are_rejected() {
    let mut h = History::new();
    run(&mut h, 1, Op::append("l", 1), Outcome::Written);
    run(&mut h, 2, Op::read_list("l"), list(&[1, 1]));
    must_find(&h, AnomalyKind::Duplicate);

    let mut h = History::new();
    run(&mut h, 1, Op::append("l", 1), Outcome::Written);
    run(&mut h, 1, Op::append("l", 1), Outcome::Written);
    run(&mut h, 2, Op::read_list("l"), list(&[1]));
    must_find(&h, AnomalyKind::Malformed);
}

#[test]
fn a_read_of_a_never_appended_element_is_a_phantom() {
    let mut h = History::new();
    run(&mut h, 1, Op::append("l", 1), Outcome::Written);
    let failed = run(&mut h, 1, Op::append("l", 2), Outcome::Fail);
    run(&mut h, 2, Op::read_list("l"), list(&[1, 2, 99]));
    let found = must_find(&h, AnomalyKind::Phantom);
    let attempts: Vec<Option<OpId>> = found
        .iter()
        .map(|a| match a {
            Anomaly::Phantom { attempt, .. } => attempt.as_ref().map(|w| w.id),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(attempts, [Some(failed), None]);
}

#[test]
fn a_lost_write_is_rejected() {
    // Missing from the final read, though an earlier read had it.
    let mut h = History::new();
    let append = run(&mut h, 1, Op::append("l", 1), Outcome::Written);
    run(&mut h, 1, Op::append("l", 2), Outcome::Written);
    run(&mut h, 2, Op::read_list("l"), list(&[1, 2]));
    let last = run(&mut h, 2, Op::read_list("l"), list(&[1]));
    match &must_find(&h, AnomalyKind::LostWrite)[..] {
        [Anomaly::LostWrite { element, read, .. }] => {
            assert_eq!((element, read.id), (&Value::from(2), last));
        }
        other => panic!("{other:?}"),
    }

    // Never read at all.
    let mut h = History::new();
    run(&mut h, 1, Op::append("l", 1), Outcome::Written);
    run(&mut h, 1, Op::append("l", 2), Outcome::Written);
    run(&mut h, 2, Op::read_list("l"), list(&[2]));
    match &must_find(&h, AnomalyKind::LostWrite)[..] {
        [Anomaly::LostWrite { element, cause, .. }] => {
            assert_eq!((element, cause.id), (&Value::from(1), append));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_read_missing_an_acknowledged_append_is_stale() {
    let mut h = History::new();
    let append = run(&mut h, 1, Op::append("l", 1), Outcome::Written);
    let stale = run(&mut h, 2, Op::read_list("l"), list(&[]));
    run(&mut h, 2, Op::read_list("l"), list(&[1]));
    match &must_find(&h, AnomalyKind::StaleRead)[..] {
        [Anomaly::StaleRead { cause, read, .. }] => assert_eq!((cause.id, read.id), (append, stale)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_read_shorter_than_one_before_it_is_non_monotonic() {
    let mut h = History::new();
    let append = h.invoke(p(1), Op::append("l", 1));
    let first = run(&mut h, 2, Op::read_list("l"), list(&[1]));
    let second = run(&mut h, 3, Op::read_list("l"), list(&[]));
    h.complete(append, Outcome::Unknown);
    run(&mut h, 3, Op::read_list("l"), list(&[1]));
    match &must_find(&h, AnomalyKind::NonMonotonicRead)[..] {
        [Anomaly::NonMonotonicRead { cause, read, .. }] => assert_eq!((cause.id, read.id), (first, second)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn appends_must_land_in_real_time_order() {
    let mut h = History::new();
    let first = run(&mut h, 1, Op::append("l", 1), Outcome::Written);
    let second = run(&mut h, 1, Op::append("l", 2), Outcome::Written);
    run(&mut h, 2, Op::read_list("l"), list(&[2, 1]));
    match &must_find(&h, AnomalyKind::WrongOrder)[..] {
        [Anomaly::WrongOrder { earlier, later, .. }] => assert_eq!((earlier.id, later.id), (first, second)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_read_cannot_see_an_append_invoked_after_it() {
    let mut h = History::new();
    run(&mut h, 2, Op::read_list("l"), list(&[1]));
    run(&mut h, 1, Op::append("l", 1), Outcome::Written);
    run(&mut h, 2, Op::read_list("l"), list(&[1]));
    must_find(&h, AnomalyKind::FutureRead);
}

#[test]
fn keys_are_checked_independently() {
    let mut h = History::new();
    run(&mut h, 1, Op::append("a", 1), Outcome::Written);
    run(&mut h, 1, Op::append("b", 1), Outcome::Written);
    run(&mut h, 2, Op::read_list("a"), list(&[1]));
    run(&mut h, 2, Op::read_list("b"), list(&[]));
    let found = must_find(&h, AnomalyKind::LostWrite);
    assert_eq!(found[0].key().as_bytes(), b"b");
}

fn generate(config: SimConfig, keys: &[&str]) -> Vec<GenEvent> {
    let mut lists = Lists::default();
    let mut next = 0u64;
    let mut events = simulate(config, &mut lists, |rng| {
        let key = keys[rng.gen_range(0..keys.len())];
        if rng.gen_ratio(1, 3) {
            Op::read_list(key)
        } else {
            next += 1;
            Op::append(key, next)
        }
    });
    final_reads(&mut events, &mut lists, keys.iter().map(|k| Op::read_list(*k)));
    events
}

/// The property for lists: simulated histories pass; mutated ones (a read of a never-appended
/// element, a read missing an element, two elements of a read swapped) fail.
#[test]
fn generated_histories_pass_and_fail_once_mutated() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x1157);
    for round in 0..30 {
        let config = SimConfig {
            seed: rng.gen(),
            processes: rng.gen_range(2..=8),
            ops: rng.gen_range(50..800),
            failed: rng.gen_range(0..=5),
            unknown: rng.gen_range(0..=6),
        };
        let events = generate(config, &["a", "b", "c"]);
        let v = check(&record(&events));
        assert!(v.is_ok(), "round {round} {config:?}: {v}");
        assert!(check(&record_coarse(&events, config.seed)).is_ok(), "round {round}, coarse clock");

        let reads = completions(&events, |o| matches!(o, Outcome::Elements(e) if e.len() >= 2));
        let i = reads[rng.gen_range(0..reads.len())];

        let mut mutated = events.clone();
        let Outcome::Elements(read) = outcome_mut(&mut mutated, i) else { panic!() };
        read.push(Value::from("never-appended"));
        let v = check(&record(&mutated));
        assert!(v.count(AnomalyKind::Phantom) == 1, "round {round}: {v}");

        // Dropping the first element makes the read incompatible with the others (or, if it is
        // the longest, them with it).
        let mut mutated = events.clone();
        let Outcome::Elements(read) = outcome_mut(&mut mutated, i) else { panic!() };
        read.remove(0);
        assert!(!check(&record(&mutated)).is_ok(), "round {round}: dropped the first element of {i}");

        let mut mutated = events.clone();
        let Outcome::Elements(read) = outcome_mut(&mut mutated, i) else { panic!() };
        let j = rng.gen_range(0..read.len() - 1);
        read.swap(j, j + 1);
        assert!(!check(&record(&mutated)).is_ok(), "round {round}: swapped {j} of {i}");
    }
}

/// A million operations on 10,000 keys, one in twenty a read returning the whole list so far;
/// about a second in a release build.
#[test]
fn a_million_operations_are_checked_in_n_log_n() {
    let n: u64 = if cfg!(debug_assertions) { 100_000 } else { 1_000_000 };
    let keys = n / 100;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut lists: Vec<Vec<Value>> = vec![Vec::new(); keys as usize];
    let mut ops = Vec::with_capacity(n as usize);
    // Each operation overlaps the next few: invoked at 10 i, completed 1 to 40 ticks later,
    // taking effect at its invocation (reads) or its completion (appends, in completion order).
    let mut pending: std::collections::BTreeMap<(u64, u64), (usize, Value)> = Default::default();
    for i in 0..n {
        let invoke = 10 * i;
        while let Some((&(t, _), _)) = pending.first_key_value() {
            if t > invoke {
                break;
            }
            let (_, (k, e)) = pending.pop_first().expect("not empty");
            lists[k].push(e);
        }
        let k = rng.gen_range(0..keys) as usize;
        let key = Value::from(k as u64);
        let complete = invoke + rng.gen_range(1..40);
        let (op, outcome) = if i % 20 == 19 {
            (Op::ReadList { key: key.0.into() }, Outcome::Elements(lists[k].clone()))
        } else {
            pending.insert((complete, i), (k, Value::from(i)));
            (Op::Append { key: key.0.into(), element: Value::from(i) }, Outcome::Written)
        };
        ops.push(Operation { process: ProcessId(i % 50), invoke, complete: Some(complete), op, outcome });
    }
    let h = History::from_ops(ops);
    let start = Instant::now();
    let v = check(&h);
    let took = start.elapsed();
    assert!(v.is_ok(), "{v}");
    assert_eq!(v.ops as u64, n);
    eprintln!("{n} list-append operations on {keys} keys: {took:?}");
    if !cfg!(debug_assertions) {
        assert!(took.as_secs() < 5, "took {took:?}");
    }
}
