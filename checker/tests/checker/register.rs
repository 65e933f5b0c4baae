//! The register linearizability check.

use std::collections::HashSet;
use std::time::Instant;

use ekv_checker::register::{check, check_with_limit};
use ekv_checker::{
    Anomaly, AnomalyKind, History, Op, OpId, Outcome, ProcessId, RegisterViolation, Value, Verdict,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::sim::{
    completions, max_concurrency, outcome_mut, record, record_coarse, simulate, Registers, SimConfig,
};

fn p(n: u64) -> ProcessId {
    ProcessId(n)
}

fn read(v: Option<&str>) -> Outcome {
    Outcome::Read(v.map(Value::from))
}

fn cas(key: &str, expected: Option<&str>, new: Option<&str>) -> Op {
    Op::cas(key, expected, new)
}

/// A CAS result whose previous value is reported.
fn cas_ok(swapped: bool, previous: Option<&str>) -> Outcome {
    Outcome::Cas { swapped, previous: Some(previous.map(Value::from)) }
}

/// A CAS result without the previous value.
fn cas_bare(swapped: bool) -> Outcome {
    Outcome::Cas { swapped, previous: None }
}

/// Records an operation that runs alone: invoked and completed before anything else happens.
fn run(h: &mut History, process: u64, op: Op, outcome: Outcome) -> OpId {
    let id = h.invoke(p(process), op);
    h.complete(id, outcome);
    id
}

fn must_pass(h: &History) {
    let v = check(h);
    assert!(v.is_ok(), "expected linearizable, got:\n{v}\nhistory:\n{}", h.to_jsonl());
}

/// Checks that `h` is not linearizable on `key` (alone) and returns the violation.
fn must_violate(h: &History, key: &str) -> RegisterViolation {
    let v = check(h);
    assert!(v.has_violation(), "expected a violation on {key:?}, history:\n{}", h.to_jsonl());
    assert_eq!(v.count(AnomalyKind::NotLinearizable), 1, "{v}");
    match &v.anomalies[..] {
        [Anomaly::NotLinearizable(violation)] => {
            assert_eq!(violation.key.as_bytes(), key.as_bytes(), "violation on the wrong key:\n{v}");
            (**violation).clone()
        }
        other => panic!("expected one violation, got {other:?}"),
    }
}

#[test]
fn empty_history_is_linearizable() {
    let v = check(&History::new());
    assert!(v.is_ok());
    assert_eq!((v.keys, v.ops), (0, 0));
}

#[test]
fn sequential_valid_history_is_accepted() {
    let mut h = History::new();
    run(&mut h, 1, Op::get("k"), read(None));
    run(&mut h, 1, Op::put("k", "a"), Outcome::Written);
    run(&mut h, 2, Op::get("k"), read(Some("a")));
    run(&mut h, 2, Op::put("k", "b"), Outcome::Written);
    run(&mut h, 1, Op::get("k"), read(Some("b")));
    run(&mut h, 1, Op::delete("k"), Outcome::Written);
    run(&mut h, 2, Op::get("k"), read(None));
    run(&mut h, 2, cas("k", None, Some("c")), cas_ok(true, None));
    run(&mut h, 1, cas("k", None, Some("d")), cas_ok(false, Some("c")));
    run(&mut h, 1, cas("k", Some("c"), None), cas_ok(true, Some("c")));
    run(&mut h, 2, Op::get("k"), read(None));
    let v = check(&h);
    assert!(v.is_ok(), "{v}");
    assert_eq!((v.keys, v.ops), (1, 11));
}

#[test]
fn integer_values_work_like_bytes() {
    let mut h = History::new();
    run(&mut h, 1, Op::put("k", 7), Outcome::Written);
    run(&mut h, 2, Op::get("k"), Outcome::Read(Some(Value::from(7))));
    run(&mut h, 2, Op::cas("k", Some(7), Some(8)), cas_bare(true));
    must_pass(&h);
    run(&mut h, 1, Op::get("k"), Outcome::Read(Some(Value::from(7))));
    must_violate(&h, "k");
}

#[test]
fn long_sequential_history_does_not_overflow_the_stack() {
    let mut h = History::new();
    for i in 0..20_000u64 {
        run(&mut h, i % 7, Op::put("k", i), Outcome::Written);
        run(&mut h, i % 5, Op::get("k"), Outcome::Read(Some(Value::from(i))));
    }
    must_pass(&h);
}

#[test]
fn a_get_overlapping_a_put_may_return_the_old_or_the_new_value() {
    for (returned, during) in [("old", false), ("new", false), ("old", true), ("new", true)] {
        let mut h = History::new();
        run(&mut h, 1, Op::put("k", "old"), Outcome::Written);
        let put = h.invoke(p(1), Op::put("k", "new"));
        let get = h.invoke(p(2), Op::get("k"));
        if during {
            h.complete(get, read(Some(returned)));
            h.complete(put, Outcome::Written);
        } else {
            h.complete(put, Outcome::Written);
            h.complete(get, read(Some(returned)));
        }
        must_pass(&h);
    }
}

#[test]
fn concurrent_readers_may_see_the_write_in_either_order_but_not_go_back() {
    // Two gets overlapping a put: the one that completes first may see "new", the other "old".
    let mut h = History::new();
    run(&mut h, 1, Op::put("k", "old"), Outcome::Written);
    let put = h.invoke(p(1), Op::put("k", "new"));
    let g1 = h.invoke(p(2), Op::get("k"));
    let g2 = h.invoke(p(3), Op::get("k"));
    h.complete(g1, read(Some("new")));
    h.complete(g2, read(Some("old")));
    h.complete(put, Outcome::Written);
    must_pass(&h);

    // But once a get that returned "new" has completed, a later get must not return "old".
    let mut h = History::new();
    run(&mut h, 1, Op::put("k", "old"), Outcome::Written);
    let put = h.invoke(p(1), Op::put("k", "new"));
    run(&mut h, 2, Op::get("k"), read(Some("new")));
    run(&mut h, 3, Op::get("k"), read(Some("old")));
    h.complete(put, Outcome::Written);
    must_violate(&h, "k");
}

#[test]
fn concurrent_puts_take_effect_in_a_single_order() {
    let mut h = History::new();
    let a = h.invoke(p(1), Op::put("k", "a"));
    let b = h.invoke(p(2), Op::put("k", "b"));
    h.complete(b, Outcome::Written);
    h.complete(a, Outcome::Written);
    run(&mut h, 3, Op::get("k"), read(Some("a")));
    run(&mut h, 3, Op::get("k"), read(Some("a")));
    must_pass(&h);

    let mut h = History::new();
    let a = h.invoke(p(1), Op::put("k", "a"));
    let b = h.invoke(p(2), Op::put("k", "b"));
    h.complete(b, Outcome::Written);
    h.complete(a, Outcome::Written);
    run(&mut h, 3, Op::get("k"), read(Some("a")));
    run(&mut h, 4, Op::get("k"), read(Some("b")));
    must_violate(&h, "k");
}

#[test]
fn a_stale_read_is_rejected() {
    let mut h = History::new();
    run(&mut h, 1, Op::put("k", "v1"), Outcome::Written);
    run(&mut h, 2, Op::get("k"), read(None));
    must_violate(&h, "k");

    let mut h = History::new();
    run(&mut h, 1, Op::put("k", "v0"), Outcome::Written);
    run(&mut h, 1, Op::put("k", "v1"), Outcome::Written);
    let stale = run(&mut h, 2, Op::get("k"), read(Some("v0")));
    let v = must_violate(&h, "k");
    assert_eq!(v.blocker.as_ref().map(|b| b.id), Some(stale), "{v}");
    assert_eq!(v.value_after, Some(Value::from("v1")), "{v}");
    assert!(v.to_string().contains("get(\"k\") = \"v0\""), "{v}");
}

#[test]
fn a_lost_write_is_rejected() {
    let mut h = History::new();
    run(&mut h, 1, Op::put("k", "v0"), Outcome::Written);
    let put = h.invoke(p(1), Op::put("k", "v1"));
    // Reads during the put may miss it ...
    run(&mut h, 2, Op::get("k"), read(Some("v0")));
    h.complete(put, Outcome::Written);
    must_pass(&h);
    // ... but reads after its acknowledgement may not.
    for process in 2..6 {
        run(&mut h, process, Op::get("k"), read(Some("v0")));
    }
    must_violate(&h, "k");
}

#[test]
fn a_read_of_a_never_written_value_is_rejected() {
    let mut h = History::new();
    let ghost = run(&mut h, 1, Op::get("k"), read(Some("ghost")));
    let v = must_violate(&h, "k");
    assert_eq!(v.prefix_len, 0);
    assert_eq!(v.candidates.len(), 1);
    assert_eq!(v.candidates[0].op.id, ghost);
    assert!(!v.candidates[0].consistent);

    // Even while other writes are in flight.
    let mut h = History::new();
    let put = h.invoke(p(1), Op::put("k", "a"));
    let get = h.invoke(p(2), Op::get("k"));
    h.complete(get, read(Some("ghost")));
    h.complete(put, Outcome::Written);
    must_violate(&h, "k");
}

#[test]
fn a_read_cannot_see_a_write_before_it_is_invoked() {
    let mut h = History::new();
    run(&mut h, 1, Op::get("k"), read(Some("a")));
    run(&mut h, 2, Op::put("k", "a"), Outcome::Written);
    must_violate(&h, "k");
}

#[test]
fn delete_makes_the_key_absent() {
    let mut h = History::new();
    run(&mut h, 1, Op::put("k", "a"), Outcome::Written);
    run(&mut h, 1, Op::delete("k"), Outcome::Written);
    run(&mut h, 2, Op::get("k"), read(None));
    must_pass(&h);
    run(&mut h, 2, Op::get("k"), read(Some("a")));
    must_violate(&h, "k");
}

#[test]
fn cas_results_must_match_the_value() {
    let mut h = History::new();
    run(&mut h, 1, cas("k", None, Some("a")), cas_ok(true, None));
    run(&mut h, 2, cas("k", None, Some("b")), cas_ok(false, Some("a")));
    run(&mut h, 2, cas("k", Some("b"), Some("c")), cas_ok(false, Some("a")));
    run(&mut h, 1, Op::get("k"), read(Some("a")));
    run(&mut h, 1, cas("k", Some("a"), None), cas_ok(true, Some("a")));
    run(&mut h, 2, Op::get("k"), read(None));
    must_pass(&h);

    let cases: [(Op, Outcome); 7] = [
        // Swapped although the expected value was not current.
        (cas("k", Some("x"), Some("y")), cas_ok(true, Some("x"))),
        (cas("k", None, Some("y")), cas_ok(true, None)),
        (cas("k", Some("x"), Some("y")), cas_bare(true)),
        // Not swapped although the expected value was current.
        (cas("k", Some("a"), Some("y")), cas_ok(false, Some("a"))),
        (cas("k", Some("a"), Some("y")), cas_bare(false)),
        // Right verdict, wrong previous value.
        (cas("k", Some("x"), Some("y")), cas_ok(false, Some("x"))),
        (cas("k", Some("x"), Some("y")), cas_ok(false, None)),
    ];
    for (op, outcome) in cases {
        let mut h = History::new();
        run(&mut h, 1, Op::put("k", "a"), Outcome::Written);
        run(&mut h, 2, op.clone(), outcome.clone());
        assert!(check(&h).has_violation(), "{op:?} = {outcome:?} after put(a) accepted");
    }
}

#[test]
fn a_cas_that_did_not_swap_observed_another_value() {
    // It did not change the value ...
    let mut h = History::new();
    run(&mut h, 1, Op::put("k", "a"), Outcome::Written);
    run(&mut h, 2, cas("k", Some("z"), Some("b")), cas_bare(false));
    run(&mut h, 1, Op::get("k"), read(Some("a")));
    must_pass(&h);

    // ... and it saw something other than `expected`: here only a concurrent put of "b" explains it.
    let mut h = History::new();
    run(&mut h, 1, Op::put("k", "a"), Outcome::Written);
    let put = h.invoke(p(1), Op::put("k", "b"));
    run(&mut h, 2, cas("k", Some("a"), Some("c")), cas_bare(false));
    h.complete(put, Outcome::Written);
    must_pass(&h);
    let mut h = History::new();
    run(&mut h, 1, Op::put("k", "a"), Outcome::Written);
    let put = h.invoke(p(1), Op::put("k", "b"));
    run(&mut h, 2, cas("k", Some("a"), Some("c")), cas_bare(false));
    // The put failed, so the value was "a" all along.
    h.complete(put, Outcome::Fail);
    must_violate(&h, "k");
}

#[test]
fn a_successful_cas_changes_the_value() {
    let mut h = History::new();
    run(&mut h, 1, Op::put("k", "a"), Outcome::Written);
    run(&mut h, 2, cas("k", Some("a"), Some("b")), cas_ok(true, Some("a")));
    run(&mut h, 1, Op::get("k"), read(Some("a")));
    must_violate(&h, "k");
}

#[test]
fn concurrent_cas_with_the_same_expected_value_cannot_both_swap() {
    let mut h = History::new();
    run(&mut h, 1, Op::put("k", "a"), Outcome::Written);
    let x = h.invoke(p(1), cas("k", Some("a"), Some("b")));
    let y = h.invoke(p(2), cas("k", Some("a"), Some("c")));
    h.complete(y, cas_bare(false));
    h.complete(x, cas_bare(true));
    must_pass(&h);

    let mut h = History::new();
    run(&mut h, 1, Op::put("k", "a"), Outcome::Written);
    let x = h.invoke(p(1), cas("k", Some("a"), Some("b")));
    let y = h.invoke(p(2), cas("k", Some("a"), Some("c")));
    h.complete(y, cas_bare(true));
    h.complete(x, cas_bare(true));
    must_violate(&h, "k");
}

#[test]
fn a_cas_may_swap_a_value_put_concurrently() {
    let mut h = History::new();
    let put = h.invoke(p(1), Op::put("k", "a"));
    let c = h.invoke(p(2), cas("k", Some("a"), Some("b")));
    h.complete(c, cas_ok(true, Some("a")));
    h.complete(put, Outcome::Written);
    run(&mut h, 3, Op::get("k"), read(Some("b")));
    must_pass(&h);
}

#[test]
fn a_read_may_or_may_not_see_an_unknown_write() {
    for (seen, completed) in [(None, true), (Some("new"), true), (None, false), (Some("new"), false)] {
        let mut h = History::new();
        run(&mut h, 1, Op::put("k", "old"), Outcome::Written);
        let put = h.invoke(p(1), Op::put("k", "new"));
        if completed {
            h.complete(put, Outcome::Unknown);
        }
        run(&mut h, 2, Op::get("k"), read(Some(seen.unwrap_or("old"))));
        run(&mut h, 2, Op::get("k"), read(Some(seen.unwrap_or("old"))));
        must_pass(&h);
    }
}

#[test]
fn an_unknown_write_may_take_effect_long_after_its_timeout() {
    let mut h = History::new();
    let put = h.invoke(p(1), Op::put("k", "late"));
    h.complete(put, Outcome::Unknown);
    for process in 2..10 {
        run(&mut h, process, Op::get("k"), read(None));
    }
    run(&mut h, 2, Op::get("k"), read(Some("late")));
    must_pass(&h);
}

#[test]
fn an_unknown_write_that_took_effect_stays() {
    for completed in [true, false] {
        let mut h = History::new();
        run(&mut h, 1, Op::put("k", "old"), Outcome::Written);
        let put = h.invoke(p(1), Op::put("k", "new"));
        if completed {
            h.complete(put, Outcome::Unknown);
        }
        run(&mut h, 2, Op::get("k"), read(Some("new")));
        run(&mut h, 3, Op::get("k"), read(Some("old")));
        must_violate(&h, "k");
    }
}

#[test]
fn an_unknown_write_takes_effect_at_most_once() {
    let mut h = History::new();
    let put = h.invoke(p(1), Op::put("k", "a"));
    h.complete(put, Outcome::Unknown);
    run(&mut h, 2, Op::get("k"), read(Some("a")));
    run(&mut h, 2, Op::put("k", "b"), Outcome::Written);
    run(&mut h, 2, Op::get("k"), read(Some("b")));
    run(&mut h, 3, Op::get("k"), read(Some("a")));
    let v = must_violate(&h, "k");
    assert!(!v.relaxed, "only the at-most-once search refutes this:\n{v}");
}

#[test]
fn an_unknown_write_cannot_take_effect_before_its_invocation() {
    let mut h = History::new();
    run(&mut h, 2, Op::get("k"), read(Some("a")));
    let put = h.invoke(p(1), Op::put("k", "a"));
    h.complete(put, Outcome::Unknown);
    must_violate(&h, "k");
}

#[test]
fn an_unknown_cas_applies_only_if_its_expected_value_is_current() {
    let mut h = History::new();
    run(&mut h, 1, Op::put("k", "a"), Outcome::Written);
    let c = h.invoke(p(1), cas("k", Some("a"), Some("b")));
    h.complete(c, Outcome::Unknown);
    run(&mut h, 2, Op::get("k"), read(Some("b")));
    must_pass(&h);

    let mut h = History::new();
    run(&mut h, 1, Op::put("k", "x"), Outcome::Written);
    let c = h.invoke(p(1), cas("k", Some("a"), Some("b")));
    h.complete(c, Outcome::Unknown);
    run(&mut h, 2, Op::get("k"), read(Some("b")));
    must_violate(&h, "k");
}

#[test]
fn failed_operations_did_not_happen() {
    let mut h = History::new();
    run(&mut h, 1, Op::put("k", "a"), Outcome::Written);
    run(&mut h, 1, Op::put("k", "b"), Outcome::Fail);
    run(&mut h, 1, cas("k", Some("a"), Some("c")), Outcome::Fail);
    run(&mut h, 2, Op::get("k"), read(Some("a")));
    run(&mut h, 2, Op::get("k"), Outcome::Fail);
    must_pass(&h);
    run(&mut h, 2, Op::get("k"), read(Some("b")));
    let v = must_violate(&h, "k");
    assert_eq!((v.known, v.unknown, v.failed), (3, 0, 3), "{v}");
}

#[test]
fn operations_ending_and_starting_at_the_same_time_are_concurrent() {
    // Times in nanoseconds: the put completes at 200, when the get is invoked.
    let mut h = History::new();
    let put = h.invoke_at(p(1), Op::put("k", "a"), 100);
    h.complete_at(put, Outcome::Written, 200);
    let get = h.invoke_at(p(2), Op::get("k"), 200);
    h.complete_at(get, read(None), 300);
    must_pass(&h);
    // One nanosecond later, it must see the put.
    let get = h.invoke_at(p(2), Op::get("k"), 201);
    h.complete_at(get, read(None), 300);
    must_violate(&h, "k");
}

#[test]
fn keys_are_independent_and_the_violating_key_is_reported() {
    let mut h = History::new();
    run(&mut h, 1, Op::put("a", "1"), Outcome::Written);
    run(&mut h, 1, Op::put("b", "2"), Outcome::Written);
    run(&mut h, 2, Op::get("a"), read(Some("1")));
    run(&mut h, 2, Op::get("b"), read(Some("2")));
    run(&mut h, 2, Op::get("c"), read(None));
    must_pass(&h);

    run(&mut h, 3, Op::get("b"), read(Some("1")));
    let v = must_violate(&h, "b");
    assert_eq!(v.known, 3);
    for w in v.prefix_tail.iter().chain(&v.blocker) {
        assert_eq!(w.op.op.key().as_bytes(), b"b", "{v}");
    }
    assert_eq!(check(&h).keys, 3);
}

#[test]
fn the_explanation_names_the_blocking_operation() {
    let mut h = History::new();
    run(&mut h, 1, Op::put("k", "v1"), Outcome::Written);
    run(&mut h, 7, Op::get("k"), read(Some("v0")));
    let v = must_violate(&h, "k");
    let shown = v.to_string();
    assert!(shown.contains("longest linearizable prefix: 1 operations"), "{shown}");
    assert!(shown.contains("#1 p7 [2, 3] get(\"k\") = \"v0\""), "{shown}");
    assert!(shown.contains("contradicts the value"), "{shown}");
}

#[test]
fn the_step_limit_makes_the_check_inconclusive() {
    let mut h = History::new();
    for i in 0..10u64 {
        run(&mut h, 1, Op::put("k", i), Outcome::Written);
    }
    let v = check_with_limit(&h, 5);
    assert!(!v.is_ok() && !v.has_violation(), "{v}");
    match &v.anomalies[..] {
        [Anomaly::Inconclusive { key, steps: 5 }] => assert_eq!(key.as_bytes(), b"k"),
        other => panic!("expected inconclusive, got {other:?}"),
    }
    assert!(check_with_limit(&h, 100).is_ok());
}

const VALUES: [&str; 4] = ["v0", "v1", "v2", "v3"];

struct Mix {
    keys: &'static [&'static str],
    /// Percent of gets; the rest are puts, deletes and CASes, 3:1:2.
    gets: u32,
}

/// A random register operation; values from a small pool, to make the search work.
fn register_op(mix: &Mix, rng: &mut ChaCha8Rng) -> Op {
    let key = mix.keys[rng.gen_range(0..mix.keys.len())];
    let value = |rng: &mut ChaCha8Rng| VALUES[rng.gen_range(0..VALUES.len())];
    let maybe = |rng: &mut ChaCha8Rng| rng.gen_ratio(3, 4).then(|| value(rng));
    if rng.gen_ratio(mix.gets, 100) {
        return Op::get(key);
    }
    match rng.gen_range(0..6) {
        0..=2 => Op::put(key, value(rng)),
        3 => Op::delete(key),
        _ => {
            let expected = maybe(rng);
            Op::cas(key, expected, maybe(rng))
        }
    }
}

fn generate(config: SimConfig, mix: &Mix) -> Vec<crate::sim::GenEvent> {
    simulate(config, &mut Registers::default(), |rng| register_op(mix, rng))
}

const LARGE: SimConfig = SimConfig { seed: 0x5eed_0001, processes: 10, ops: 2000, failed: 0, unknown: 0 };

#[test]
fn a_large_generated_history_is_accepted_and_one_impossible_read_rejected() {
    let mix = Mix { keys: &["k"], gets: 40 };
    let events = generate(LARGE, &mix);
    let h = record(&events);
    assert_eq!(h.len(), 2000);
    assert!(max_concurrency(&h) >= 8, "{}", max_concurrency(&h));
    let v = check_with_limit(&h, 1_000_000);
    assert!(v.is_ok(), "{v}");

    let reads = completions(&events, |o| matches!(o, Outcome::Read(_)));
    assert!(reads.len() > 500);
    for i in [reads[reads.len() / 2], reads[reads.len() - 1], reads[0]] {
        let mut mutated = events.clone();
        *outcome_mut(&mut mutated, i) = read(Some("impossible"));
        let v = check_with_limit(&record(&mutated), 1_000_000);
        assert!(v.has_violation(), "read {i} mutated: {v}");
        assert!(v.to_string().contains("\"impossible\""), "{v}");
    }
}

/// The property: histories of a simulated linearizable register pass, with any mix of
/// overlapping intervals, failures and unknown outcomes, on a logical clock or a coarse one;
/// the same histories with one read changed to a value never written fail.
#[test]
fn generated_histories_pass_and_fail_once_a_read_is_mutated() {
    let mut rng = ChaCha8Rng::seed_from_u64(0xc0ffee);
    for round in 0..40 {
        let config = SimConfig {
            seed: rng.gen(),
            processes: rng.gen_range(2..=8),
            ops: rng.gen_range(50..600),
            failed: rng.gen_range(0..=5),
            unknown: rng.gen_range(0..=6),
        };
        let mix = Mix { keys: &["a", "b", "c"], gets: rng.gen_range(20..=60) };
        let events = generate(config, &mix);
        let v = check_with_limit(&record(&events), 2_000_000);
        assert!(v.is_ok(), "round {round} {config:?}: {v}");
        let v = check_with_limit(&record_coarse(&events, config.seed), 2_000_000);
        assert!(v.is_ok(), "round {round} {config:?}, coarse clock: {v}");

        let reads = completions(&events, |o| matches!(o, Outcome::Read(_)));
        for _ in 0..3 {
            let i = reads[rng.gen_range(0..reads.len())];
            let mut mutated = events.clone();
            *outcome_mut(&mut mutated, i) = read(Some("never-written"));
            let v = check_with_limit(&record(&mutated), 5_000_000);
            assert!(v.has_violation(), "round {round} {config:?}, read {i} mutated: {v}");
        }
    }
}

#[test]
fn generated_histories_with_a_stale_read_are_rejected() {
    // A read that returned the current value is made to return the one before it, where the put
    // that overwrote that one completed before the read was invoked: a stale read.
    let mut rejected = 0;
    for seed in 1..=20 {
        let config = SimConfig { seed, processes: 4, ops: 300, failed: 0, unknown: 0 };
        let events = generate(config, &Mix { keys: &["k"], gets: 80 });
        let Some(mutated) = make_stale_read(&events) else { continue };
        let v = check_with_limit(&record(&mutated), 1_000_000);
        assert!(v.has_violation(), "seed {seed}: {v}");
        rejected += 1;
    }
    assert!(rejected >= 10, "only {rejected} seeds produced a stale read");
}

/// Finds a put `p1` of `x` followed, strictly after in real time, by a put `p2` of `y != x`
/// followed by a get invoked after `p2` completed, with no other write of any kind invoked
/// between `p1`'s invocation and the get's completion, and makes that get return `x`.
fn make_stale_read(events: &[crate::sim::GenEvent]) -> Option<Vec<crate::sim::GenEvent>> {
    let h = record(events);
    let ops = h.ops();
    let done = |i: usize| ops[i].complete.filter(|_| ops[i].outcome.is_ok());
    let puts: Vec<usize> = (0..ops.len()).filter(|&i| matches!(ops[i].op, Op::Put { .. })).collect();
    for pair in puts.windows(2) {
        let (p1, p2) = (pair[0], pair[1]);
        let (Op::Put { value: x, .. }, Op::Put { value: y, .. }) = (&ops[p1].op, &ops[p2].op) else {
            unreachable!()
        };
        let (Some(c1), Some(c2)) = (done(p1), done(p2)) else { continue };
        if x == y || c1 > ops[p2].invoke {
            continue;
        }
        let Some(get) = (0..ops.len())
            .find(|&g| matches!(ops[g].op, Op::Get { .. }) && ops[g].invoke > c2 && done(g).is_some())
        else {
            continue;
        };
        let window = ops[p1].invoke..=ops[get].complete.expect("done");
        let overlaps =
            |i: usize| ops[i].invoke <= *window.end() && ops[i].complete.is_none_or(|t| t >= *window.start());
        if (0..ops.len()).any(|i| i != p1 && i != p2 && !matches!(ops[i].op, Op::Get { .. }) && overlaps(i)) {
            continue;
        }
        // Operation `get` completes at event index `ops[get].complete` (one event per tick).
        let mut mutated = events.to_vec();
        *outcome_mut(&mut mutated, ops[get].complete.expect("done") as usize) =
            Outcome::Read(Some(x.clone()));
        return Some(mutated);
    }
    None
}

#[test]
fn generated_histories_with_unknown_outcomes_and_an_impossible_read_are_rejected() {
    let config = SimConfig { seed: 0xdead_beef, processes: 10, ops: 2000, failed: 2, unknown: 5 };
    let events = generate(config, &Mix { keys: &["k"], gets: 40 });
    let h = record(&events);
    assert!(h.ops().iter().filter(|o| o.outcome == Outcome::Unknown).count() > 20);
    let v = check_with_limit(&h, 1_000_000);
    assert!(v.is_ok(), "{v}");
    let reads = completions(&events, |o| matches!(o, Outcome::Read(_)));
    for &i in reads.iter().step_by(reads.len() / 5).chain(reads.last()) {
        let mut mutated = events.clone();
        *outcome_mut(&mut mutated, i) = read(Some("impossible"));
        let v = check_with_limit(&record(&mutated), 5_000_000);
        assert!(v.has_violation(), "read {i} mutated: {v}");
    }
}

/// The required speed: 5 processes × 2,000 operations on one key, well under a second in a
/// release build (a debug build only prints the time).
#[test]
fn five_processes_of_two_thousand_operations_are_checked_quickly() {
    for (unknown, values) in [(0, true), (3, true), (3, false)] {
        let config =
            SimConfig { seed: 0xfa57 + unknown as u64, processes: 5, ops: 10_000, failed: 2, unknown };
        let mut next = 0u64;
        let mix = Mix { keys: &["k"], gets: 40 };
        // Unique values, as a real workload writes, or the small pool.
        let events = simulate(config, &mut Registers::default(), |rng| match register_op(&mix, rng) {
            Op::Put { key, .. } if values => {
                next += 1;
                Op::Put { key, value: Value::from(next) }
            }
            op => op,
        });
        let h = record(&events);
        let start = Instant::now();
        let v = check(&h);
        let took = start.elapsed();
        assert!(v.is_ok(), "{v}");
        eprintln!("5 x 2000 ops, unknown {unknown}%, unique values {values}: {took:?}");
        if !cfg!(debug_assertions) {
            assert!(took.as_millis() < 500, "took {took:?}");
        }
    }
}

/// A naive checker of single-key histories to compare with: tries every order of the operations
/// that respects real time, with each unknown operation taking effect at most once or never.
fn brute_force(h: &History) -> bool {
    let ops: Vec<_> = h.ops().iter().filter(|o| o.outcome != Outcome::Fail).collect();
    assert!(ops.len() <= 64);
    let ret = |o: &ekv_checker::Operation| o.returned();
    let step = |o: &ekv_checker::Operation, value: &Option<Value>| -> Option<Option<Value>> {
        match (&o.op, &o.outcome) {
            (Op::Get { .. }, Outcome::Read(v)) => (v == value).then(|| value.clone()),
            (Op::Get { .. }, _) => Some(value.clone()),
            (Op::Put { value: v, .. }, _) => Some(Some(v.clone())),
            (Op::Delete { .. }, _) => Some(None),
            (Op::Cas { expected, new, .. }, outcome) => {
                let swapped = value == expected;
                let after = if swapped { new.clone() } else { value.clone() };
                match outcome {
                    Outcome::Cas { swapped: s, previous } => {
                        (*s == swapped && previous.as_ref().is_none_or(|p| p == value)).then_some(after)
                    }
                    _ => Some(after),
                }
            }
            other => panic!("{other:?}"),
        }
    };
    let must: u64 = ops.iter().enumerate().filter(|(_, o)| ret(o).is_some()).map(|(i, _)| 1 << i).sum();
    let mut seen = HashSet::new();
    let mut todo = vec![(0u64, None::<Value>)];
    while let Some((done, value)) = todo.pop() {
        if done & must == must {
            return true;
        }
        if !seen.insert((done, value.clone())) {
            continue;
        }
        for (i, o) in ops.iter().enumerate() {
            let blocked = ops
                .iter()
                .enumerate()
                .any(|(j, p)| done & (1 << j) == 0 && ret(p).is_some_and(|r| r < o.invoke));
            if done & (1 << i) == 0 && !blocked {
                if let Some(after) = step(o, &value) {
                    todo.push((done | 1 << i, after));
                }
            }
        }
    }
    false
}

/// A small random history, not necessarily linearizable: either made up, or simulated (each
/// operation taking effect at its invocation or its completion) with perhaps a few results
/// changed; on a clock whose ticks often hold several events.
fn small_history(rng: &mut ChaCha8Rng) -> History {
    let value = |rng: &mut ChaCha8Rng| ["a", "b"][rng.gen_range(0..2)];
    let maybe = |rng: &mut ChaCha8Rng| rng.gen_ratio(7, 10).then(|| value(rng));
    let random_outcome = |rng: &mut ChaCha8Rng, op: &Op| match op {
        Op::Get { .. } => Outcome::Read(maybe(rng).map(Value::from)),
        Op::Cas { .. } => Outcome::Cas {
            swapped: rng.gen_bool(0.5),
            previous: rng.gen_bool(0.5).then(|| maybe(rng).map(Value::from)),
        },
        _ => Outcome::Written,
    };
    let n = rng.gen_range(1..8);
    let simulate = rng.gen_ratio(7, 10);
    let mut store = Registers::default();
    let mut h = History::new();
    let mut pending: Vec<(OpId, Op, Option<Outcome>)> = Vec::new();
    let mut now = 0;
    for process in 0..n {
        let op = match rng.gen_range(0..4) {
            0 => Op::get("k"),
            1 => Op::put("k", value(rng)),
            2 => Op::delete("k"),
            _ => {
                let expected = maybe(rng);
                cas("k", expected, maybe(rng))
            }
        };
        // A coarse clock: events often share a time, which makes them concurrent.
        now += u64::from(rng.gen_bool(0.7));
        let id = h.invoke_at(p(process), op.clone(), now);
        let early = (simulate && rng.gen_bool(0.5)).then(|| store.apply_op(&op));
        pending.push((id, op, early));
        while !pending.is_empty() && (process + 1 == n || rng.gen_bool(0.5)) {
            let (id, op, early) = pending.swap_remove(rng.gen_range(0..pending.len()));
            let outcome = match rng.gen_range(0..10) {
                0 => continue, // never completed
                1 => Outcome::Unknown,
                2 if early.is_none() || !simulate => Outcome::Fail,
                _ if !simulate || rng.gen_ratio(1, 20) => random_outcome(rng, &op),
                _ => early.unwrap_or_else(|| store.apply_op(&op)),
            };
            now += u64::from(rng.gen_bool(0.7));
            h.complete_at(id, outcome, now);
        }
    }
    h
}

impl Registers {
    fn apply_op(&mut self, op: &Op) -> Outcome {
        crate::sim::Model::apply(self, op)
    }
}

#[test]
fn the_check_agrees_with_a_brute_force_search_on_small_histories() {
    let mut rng = ChaCha8Rng::seed_from_u64(0x0123_4567_89ab_cdef);
    let mut verdicts = [0, 0];
    for i in 0..30_000 {
        let h = small_history(&mut rng);
        let expected = brute_force(&h);
        let actual: Verdict = check_with_limit(&h, 100_000);
        assert!(
            (expected && actual.is_ok()) || (!expected && actual.has_violation()),
            "history {i}: brute force says {expected}, the check says\n{actual}\n{}",
            h.to_jsonl()
        );
        verdicts[usize::from(expected)] += 1;
    }
    assert!(verdicts[0] > 3_000 && verdicts[1] > 3_000, "{verdicts:?}");
}
