//! The set check.

use std::collections::HashSet;

use ekv_checker::set::check;
use ekv_checker::{Anomaly, AnomalyKind, History, Op, OpId, Outcome, ProcessId, SetSummary, Value, Verdict};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::sim::{
    completions, final_reads, outcome_mut, record, record_coarse, simulate, GenEvent, Sets, SimConfig,
};

fn p(n: u64) -> ProcessId {
    ProcessId(n)
}

fn elements(xs: &[u64]) -> Outcome {
    Outcome::Elements(xs.iter().map(|&x| Value::from(x)).collect())
}

fn run(h: &mut History, process: u64, op: Op, outcome: Outcome) -> OpId {
    let id = h.invoke(p(process), op);
    h.complete(id, outcome);
    id
}

fn summary(v: &Verdict) -> &SetSummary {
    assert_eq!(v.sets.len(), 1, "{v}");
    &v.sets[0]
}

fn must_pass(h: &History) -> Verdict {
    let v = check(h);
    assert!(v.is_ok(), "expected ok, got:\n{v}\nhistory:\n{}", h.to_jsonl());
    v
}

/// Checks that `h` has anomalies of `kind` alone, and returns the verdict.
fn must_find(h: &History, kind: AnomalyKind) -> Verdict {
    let v = check(h);
    assert!(v.count(kind) > 0, "expected {kind}, got:\n{v}\nhistory:\n{}", h.to_jsonl());
    assert_eq!(v.counts.len(), 1, "only {kind} expected:\n{v}");
    v
}

#[test]
fn concurrent_adds_with_every_outcome_are_accepted() {
    let mut h = History::new();
    let a1 = h.invoke(p(1), Op::add("s", 1));
    let a2 = h.invoke(p(2), Op::add("s", 2));
    // A read while both adds are in flight may see either.
    run(&mut h, 3, Op::read_set("s"), elements(&[2]));
    h.complete(a2, Outcome::Written);
    h.complete(a1, Outcome::Written);
    let a3 = h.invoke(p(1), Op::add("s", 3));
    h.complete(a3, Outcome::Unknown);
    let a4 = h.invoke(p(2), Op::add("s", 4));
    h.complete(a4, Outcome::Unknown);
    let _never_completed = h.invoke(p(4), Op::add("s", 5));
    run(&mut h, 1, Op::add("s", 6), Outcome::Fail);
    // An add concurrent with the final read may be missing from it.
    let a7 = h.invoke(p(2), Op::add("s", 7));
    // Unknown adds may appear (3, 5) or not (4), in any order.
    let last = run(&mut h, 3, Op::read_set("s"), elements(&[5, 1, 3, 2]));
    h.complete(a7, Outcome::Written);
    let v = must_pass(&h);
    let s = summary(&v);
    assert_eq!(
        (s.attempted, s.acknowledged, s.unknown, s.reads, s.final_read),
        (7, 3, 3, 2, Some(last)),
        "{s}"
    );
    assert_eq!((s.lost, s.unexpected, s.recovered), (0, 0, 2), "{s}");
}

#[test]
fn a_lost_write_is_rejected() {
    let mut h = History::new();
    let add = run(&mut h, 1, Op::add("s", 1), Outcome::Written);
    run(&mut h, 1, Op::add("s", 2), Outcome::Written);
    let last = run(&mut h, 2, Op::read_set("s"), elements(&[2]));
    let v = must_find(&h, AnomalyKind::LostWrite);
    assert_eq!(summary(&v).lost, 1);
    match &v.anomalies[..] {
        [Anomaly::LostWrite { key, element, cause, read }] => {
            assert_eq!(key.as_bytes(), b"s");
            assert_eq!(*element, Value::from(1));
            assert_eq!((cause.id, read.id), (add, last));
        }
        other => panic!("{other:?}"),
    }
    assert!(v.to_string().contains("lost write"), "{v}");
}

#[test]
fn an_unknown_add_once_read_must_stay() {
    let mut h = History::new();
    let add = h.invoke(p(1), Op::add("s", 1));
    h.complete(add, Outcome::Unknown);
    run(&mut h, 2, Op::read_set("s"), elements(&[1]));
    run(&mut h, 2, Op::read_set("s"), elements(&[]));
    must_find(&h, AnomalyKind::LostWrite);
}

#[test]
fn a_read_of_a_never_added_element_is_a_phantom() {
    let mut h = History::new();
    run(&mut h, 1, Op::add("s", 1), Outcome::Written);
    let fail = run(&mut h, 1, Op::add("s", 2), Outcome::Fail);
    run(&mut h, 2, Op::read_set("s"), elements(&[1, 2, 99]));
    let v = must_find(&h, AnomalyKind::Phantom);
    assert_eq!(summary(&v).unexpected, 2);
    let attempts: Vec<Option<OpId>> = v
        .anomalies
        .iter()
        .map(|a| match a {
            Anomaly::Phantom { attempt, .. } => attempt.as_ref().map(|w| w.id),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(attempts, [Some(fail), None]);
}

#[test]
fn an_intermediate_read_missing_an_acknowledged_add_is_stale() {
    let mut h = History::new();
    run(&mut h, 1, Op::add("s", 1), Outcome::Written);
    run(&mut h, 2, Op::read_set("s"), elements(&[]));
    run(&mut h, 2, Op::read_set("s"), elements(&[1]));
    let v = must_find(&h, AnomalyKind::StaleRead);
    assert_eq!(summary(&v).lost, 0);
}

#[test]
fn a_read_missing_what_an_earlier_read_saw_is_non_monotonic() {
    let mut h = History::new();
    let add = h.invoke(p(1), Op::add("s", 1));
    run(&mut h, 2, Op::read_set("s"), elements(&[1]));
    run(&mut h, 3, Op::read_set("s"), elements(&[]));
    run(&mut h, 3, Op::read_set("s"), elements(&[1]));
    h.complete(add, Outcome::Written);
    must_find(&h, AnomalyKind::NonMonotonicRead);
}

#[test]
fn a_read_cannot_see_an_add_invoked_after_it() {
    let mut h = History::new();
    run(&mut h, 2, Op::read_set("s"), elements(&[1]));
    run(&mut h, 1, Op::add("s", 1), Outcome::Written);
    run(&mut h, 2, Op::read_set("s"), elements(&[1]));
    must_find(&h, AnomalyKind::FutureRead);
}

#[test]
fn duplicates_in_a_read_and_in_adds_are_reported() {
    let mut h = History::new();
    run(&mut h, 1, Op::add("s", 1), Outcome::Written);
    run(&mut h, 2, Op::read_set("s"), elements(&[1, 1]));
    must_find(&h, AnomalyKind::Duplicate);

    let mut h = History::new();
    run(&mut h, 1, Op::add("s", 1), Outcome::Written);
    run(&mut h, 1, Op::add("s", 1), Outcome::Written);
    run(&mut h, 2, Op::read_set("s"), elements(&[1]));
    must_find(&h, AnomalyKind::Malformed);
}

#[test]
fn without_a_read_nothing_is_checked() {
    let mut h = History::new();
    run(&mut h, 1, Op::add("s", 1), Outcome::Written);
    run(&mut h, 2, Op::read_set("s"), Outcome::Fail);
    let v = must_pass(&h);
    assert_eq!(summary(&v).final_read, None);
    assert!(v.to_string().contains("nothing could be checked"), "{v}");
}

fn generate(config: SimConfig, keys: &[&str]) -> Vec<GenEvent> {
    let mut sets = Sets { elements: Default::default(), rng: ChaCha8Rng::seed_from_u64(config.seed) };
    let mut next = 0u64;
    let mut events = simulate(config, &mut sets, |rng| {
        let key = keys[rng.gen_range(0..keys.len())];
        if rng.gen_ratio(1, 4) {
            Op::read_set(key)
        } else {
            next += 1;
            Op::add(key, next)
        }
    });
    final_reads(&mut events, &mut sets, keys.iter().map(|k| Op::read_set(*k)));
    events
}

/// The property for sets: simulated histories pass; dropping an acknowledged element from the
/// final read, or adding a never-added one to a read, fails.
#[test]
fn generated_histories_pass_and_fail_once_mutated() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5e7);
    for round in 0..20 {
        let config = SimConfig {
            seed: rng.gen(),
            processes: rng.gen_range(2..=8),
            ops: rng.gen_range(50..800),
            failed: rng.gen_range(0..=5),
            unknown: rng.gen_range(0..=6),
        };
        let events = generate(config, &["a", "b"]);
        let v = check(&record(&events));
        assert!(v.is_ok(), "round {round} {config:?}: {v}");
        assert_eq!(v.sets.len(), 2);
        assert!(check(&record_coarse(&events, config.seed)).is_ok(), "round {round}, coarse clock");

        // The last completion is the final read of "b": drop an acknowledged element from it.
        let mut mutated = events.clone();
        let h = record(&events);
        let Outcome::Elements(last) = outcome_mut(&mut mutated, events.len() - 1) else { panic!() };
        let acked: HashSet<&Value> = h
            .ops()
            .iter()
            .filter(|o| o.outcome.is_ok())
            .filter_map(|o| match &o.op {
                Op::Add { element, .. } => Some(element),
                _ => None,
            })
            .collect();
        let acked = last.iter().position(|e| acked.contains(e));
        if let Some(i) = acked {
            last.remove(i);
            let v = check(&record(&mutated));
            assert_eq!(v.count(AnomalyKind::LostWrite), 1, "round {round}: {v}");
        }

        let reads = completions(&events, |o| matches!(o, Outcome::Elements(_)));
        let mut mutated = events.clone();
        let Outcome::Elements(read) = outcome_mut(&mut mutated, reads[rng.gen_range(0..reads.len())]) else {
            panic!()
        };
        read.push(Value::from("never-added"));
        let v = check(&record(&mutated));
        assert_eq!(v.count(AnomalyKind::Phantom), 1, "round {round}: {v}");
    }
}
