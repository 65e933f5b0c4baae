//! Tests of the linearizability checker in `support/linearizability.rs`.

#[path = "support/linearizability.rs"]
mod linearizability;

use std::collections::BTreeMap;

use linearizability::{check, check_with_limit, CheckError, History, Key, KeyedOp, Op, OpId, Outcome, Value};

fn bytes(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn get(key: &str) -> Op {
    Op::Get { key: bytes(key) }
}

fn put(key: &str, value: &str) -> Op {
    Op::Put { key: bytes(key), value: bytes(value) }
}

fn delete(key: &str) -> Op {
    Op::Delete { key: bytes(key) }
}

fn cas(key: &str, expected: Option<&str>, new: Option<&str>) -> Op {
    Op::Cas { key: bytes(key), expected: expected.map(bytes), new: new.map(bytes) }
}

fn got(value: Option<&str>) -> Outcome {
    Outcome::Get(value.map(bytes))
}

fn cas_result(succeeded: bool, previous: Option<&str>) -> Outcome {
    Outcome::Cas { succeeded, previous: previous.map(bytes) }
}

/// Records an operation that runs alone: invoked and completed before anything else happens.
fn run(h: &mut History, client: u64, op: Op, outcome: Outcome) {
    let id = h.invoke(client, op);
    h.complete(id, outcome);
}

fn assert_linearizable(h: &History) {
    if let Err(v) = check(h) {
        panic!("expected linearizable, got a violation:\n{v}\nhistory:\n{}", h.to_json_lines());
    }
}

fn assert_violation(h: &History, key: &str) -> String {
    match check(h) {
        Ok(()) => panic!("expected a violation on {key:?}, history:\n{}", h.to_json_lines()),
        Err(v) => {
            assert_eq!(v.key, bytes(key), "violation on the wrong key:\n{v}");
            assert!(!v.explanation.is_empty());
            v.to_string()
        }
    }
}

#[test]
fn empty_history_is_linearizable() {
    let h = History::new();
    assert!(h.is_empty());
    assert_linearizable(&h);
}

#[test]
fn sequential_valid_history_is_accepted() {
    let mut h = History::new();
    run(&mut h, 1, get("k"), got(None));
    run(&mut h, 1, put("k", "a"), Outcome::Written);
    run(&mut h, 2, get("k"), got(Some("a")));
    run(&mut h, 2, put("k", "b"), Outcome::Written);
    run(&mut h, 1, get("k"), got(Some("b")));
    run(&mut h, 1, delete("k"), Outcome::Written);
    run(&mut h, 2, get("k"), got(None));
    run(&mut h, 2, cas("k", None, Some("c")), cas_result(true, None));
    run(&mut h, 1, cas("k", None, Some("d")), cas_result(false, Some("c")));
    run(&mut h, 1, cas("k", Some("c"), None), cas_result(true, Some("c")));
    run(&mut h, 2, get("k"), got(None));
    assert_eq!(h.len(), 11);
    assert_eq!(h.events_len(), 22);
    assert_linearizable(&h);
}

#[test]
fn long_sequential_history_does_not_overflow_the_stack() {
    let mut h = History::new();
    for i in 0..20_000 {
        let value = format!("v{i}");
        run(&mut h, i % 7, put("k", &value), Outcome::Written);
        run(&mut h, i % 5, get("k"), got(Some(&value)));
    }
    assert_linearizable(&h);
}

#[test]
fn a_get_overlapping_a_put_may_return_the_old_or_the_new_value() {
    for (returned, during) in [("old", false), ("new", false), ("old", true), ("new", true)] {
        let mut h = History::new();
        run(&mut h, 1, put("k", "old"), Outcome::Written);
        let p = h.invoke(1, put("k", "new"));
        let g = h.invoke(2, get("k"));
        if during {
            // The get completes while the put is still in flight.
            h.complete(g, got(Some(returned)));
            h.complete(p, Outcome::Written);
        } else {
            h.complete(p, Outcome::Written);
            h.complete(g, got(Some(returned)));
        }
        assert_linearizable(&h);
    }
}

#[test]
fn concurrent_readers_may_see_the_write_in_either_order_but_not_go_back() {
    // Two gets overlapping a put: the one that returns earlier may see "new", the other "old".
    let mut h = History::new();
    run(&mut h, 1, put("k", "old"), Outcome::Written);
    let p = h.invoke(1, put("k", "new"));
    let g1 = h.invoke(2, get("k"));
    let g2 = h.invoke(3, get("k"));
    h.complete(g1, got(Some("new")));
    h.complete(g2, got(Some("old")));
    h.complete(p, Outcome::Written);
    assert_linearizable(&h);

    // But once a get that returned "new" has completed, a later get must not return "old".
    let mut h = History::new();
    run(&mut h, 1, put("k", "old"), Outcome::Written);
    let p = h.invoke(1, put("k", "new"));
    run(&mut h, 2, get("k"), got(Some("new")));
    run(&mut h, 3, get("k"), got(Some("old")));
    h.complete(p, Outcome::Written);
    assert_violation(&h, "k");
}

#[test]
fn concurrent_puts_take_effect_in_a_single_order() {
    let mut h = History::new();
    let a = h.invoke(1, put("k", "a"));
    let b = h.invoke(2, put("k", "b"));
    h.complete(b, Outcome::Written);
    h.complete(a, Outcome::Written);
    run(&mut h, 3, get("k"), got(Some("a")));
    run(&mut h, 3, get("k"), got(Some("a")));
    assert_linearizable(&h);

    // Reads after both puts completed disagree about which was last.
    let mut h = History::new();
    let a = h.invoke(1, put("k", "a"));
    let b = h.invoke(2, put("k", "b"));
    h.complete(b, Outcome::Written);
    h.complete(a, Outcome::Written);
    run(&mut h, 3, get("k"), got(Some("a")));
    run(&mut h, 4, get("k"), got(Some("b")));
    assert_violation(&h, "k");
}

#[test]
fn a_stale_read_is_rejected() {
    // The key was never written before: absent after an acknowledged put.
    let mut h = History::new();
    run(&mut h, 1, put("k", "v1"), Outcome::Written);
    run(&mut h, 2, get("k"), got(None));
    assert_violation(&h, "k");

    // An older value after a newer one was acknowledged.
    let mut h = History::new();
    run(&mut h, 1, put("k", "v0"), Outcome::Written);
    run(&mut h, 1, put("k", "v1"), Outcome::Written);
    run(&mut h, 2, get("k"), got(Some("v0")));
    let explanation = assert_violation(&h, "k");
    assert!(explanation.contains("get = \"v0\""), "{explanation}");
}

#[test]
fn a_lost_write_is_rejected() {
    let mut h = History::new();
    run(&mut h, 1, put("k", "v0"), Outcome::Written);
    let p = h.invoke(1, put("k", "v1"));
    // Reads during the put may miss it ...
    run(&mut h, 2, get("k"), got(Some("v0")));
    h.complete(p, Outcome::Written);
    assert_linearizable(&h);
    // ... but reads after its acknowledgement may not.
    for client in 2..6 {
        run(&mut h, client, get("k"), got(Some("v0")));
    }
    assert_violation(&h, "k");
}

#[test]
fn a_read_of_a_never_written_value_is_rejected() {
    let mut h = History::new();
    run(&mut h, 1, get("k"), got(Some("ghost")));
    assert_violation(&h, "k");

    // Even while other writes are in flight.
    let mut h = History::new();
    let p = h.invoke(1, put("k", "a"));
    let g = h.invoke(2, get("k"));
    h.complete(g, got(Some("ghost")));
    h.complete(p, Outcome::Written);
    assert_violation(&h, "k");
}

#[test]
fn a_read_cannot_see_a_write_before_it_is_invoked() {
    let mut h = History::new();
    run(&mut h, 1, get("k"), got(Some("a")));
    run(&mut h, 2, put("k", "a"), Outcome::Written);
    assert_violation(&h, "k");
}

#[test]
fn delete_makes_the_key_absent() {
    let mut h = History::new();
    run(&mut h, 1, put("k", "a"), Outcome::Written);
    run(&mut h, 1, delete("k"), Outcome::Written);
    run(&mut h, 2, get("k"), got(None));
    assert_linearizable(&h);
    run(&mut h, 2, get("k"), got(Some("a")));
    assert_violation(&h, "k");
}

#[test]
fn cas_results_must_match_the_state() {
    // Success from absent, failure with the current value, success to delete.
    let mut h = History::new();
    run(&mut h, 1, cas("k", None, Some("a")), cas_result(true, None));
    run(&mut h, 2, cas("k", None, Some("b")), cas_result(false, Some("a")));
    run(&mut h, 2, cas("k", Some("b"), Some("c")), cas_result(false, Some("a")));
    run(&mut h, 1, get("k"), got(Some("a")));
    run(&mut h, 1, cas("k", Some("a"), None), cas_result(true, Some("a")));
    run(&mut h, 2, get("k"), got(None));
    assert_linearizable(&h);

    let cases: [(Op, Outcome); 5] = [
        // Success although the expected value was not current.
        (cas("k", Some("x"), Some("y")), cas_result(true, Some("x"))),
        (cas("k", None, Some("y")), cas_result(true, None)),
        // Failure although the expected value was current.
        (cas("k", Some("a"), Some("y")), cas_result(false, Some("a"))),
        // Right verdict, wrong previous value.
        (cas("k", Some("x"), Some("y")), cas_result(false, Some("x"))),
        (cas("k", Some("x"), Some("y")), cas_result(false, None)),
    ];
    for (op, outcome) in cases {
        let mut h = History::new();
        run(&mut h, 1, put("k", "a"), Outcome::Written);
        run(&mut h, 2, op.clone(), outcome.clone());
        if check(&h).is_ok() {
            panic!("{op:?} = {outcome:?} after put(a) accepted");
        }
    }
}

#[test]
fn a_successful_cas_changes_the_value() {
    let mut h = History::new();
    run(&mut h, 1, put("k", "a"), Outcome::Written);
    run(&mut h, 2, cas("k", Some("a"), Some("b")), cas_result(true, Some("a")));
    run(&mut h, 1, get("k"), got(Some("a")));
    assert_violation(&h, "k");
}

#[test]
fn concurrent_cas_with_the_same_expected_value_cannot_both_succeed() {
    let mut h = History::new();
    run(&mut h, 1, put("k", "a"), Outcome::Written);
    let x = h.invoke(1, cas("k", Some("a"), Some("b")));
    let y = h.invoke(2, cas("k", Some("a"), Some("c")));
    h.complete(y, cas_result(false, Some("b")));
    h.complete(x, cas_result(true, Some("a")));
    assert_linearizable(&h);

    let mut h = History::new();
    run(&mut h, 1, put("k", "a"), Outcome::Written);
    let x = h.invoke(1, cas("k", Some("a"), Some("b")));
    let y = h.invoke(2, cas("k", Some("a"), Some("c")));
    h.complete(y, cas_result(true, Some("a")));
    h.complete(x, cas_result(true, Some("a")));
    assert_violation(&h, "k");
}

#[test]
fn a_cas_may_succeed_on_a_value_put_concurrently() {
    let mut h = History::new();
    let p = h.invoke(1, put("k", "a"));
    let c = h.invoke(2, cas("k", Some("a"), Some("b")));
    h.complete(c, cas_result(true, Some("a")));
    h.complete(p, Outcome::Written);
    run(&mut h, 3, get("k"), got(Some("b")));
    assert_linearizable(&h);
}

#[test]
fn a_read_may_or_may_not_see_an_unknown_write() {
    for (seen, completed) in [(None, true), (Some("new"), true), (None, false), (Some("new"), false)] {
        let mut h = History::new();
        run(&mut h, 1, put("k", "old"), Outcome::Written);
        let p = h.invoke(1, put("k", "new"));
        if completed {
            h.complete(p, Outcome::Unknown);
        }
        run(&mut h, 2, get("k"), got(Some(seen.unwrap_or("old"))));
        run(&mut h, 2, get("k"), got(Some(seen.unwrap_or("old"))));
        assert_linearizable(&h);
    }
}

#[test]
fn an_unknown_write_may_take_effect_long_after_its_timeout() {
    let mut h = History::new();
    let p = h.invoke(1, put("k", "late"));
    h.complete(p, Outcome::Unknown);
    for client in 2..10 {
        run(&mut h, client, get("k"), got(None));
    }
    run(&mut h, 2, get("k"), got(Some("late")));
    assert_linearizable(&h);
}

#[test]
fn an_unknown_write_that_took_effect_stays() {
    for completed in [true, false] {
        let mut h = History::new();
        run(&mut h, 1, put("k", "old"), Outcome::Written);
        let p = h.invoke(1, put("k", "new"));
        if completed {
            h.complete(p, Outcome::Unknown);
        }
        run(&mut h, 2, get("k"), got(Some("new")));
        run(&mut h, 3, get("k"), got(Some("old")));
        assert_violation(&h, "k");
    }
}

#[test]
fn an_unknown_write_takes_effect_at_most_once() {
    let mut h = History::new();
    let p = h.invoke(1, put("k", "a"));
    h.complete(p, Outcome::Unknown);
    run(&mut h, 2, get("k"), got(Some("a")));
    run(&mut h, 2, put("k", "b"), Outcome::Written);
    run(&mut h, 2, get("k"), got(Some("b")));
    run(&mut h, 3, get("k"), got(Some("a")));
    assert_violation(&h, "k");
}

#[test]
fn an_unknown_write_cannot_take_effect_before_its_invocation() {
    let mut h = History::new();
    run(&mut h, 2, get("k"), got(Some("a")));
    let p = h.invoke(1, put("k", "a"));
    h.complete(p, Outcome::Unknown);
    assert_violation(&h, "k");
}

#[test]
fn an_unknown_cas_applies_only_if_its_expected_value_is_current() {
    let mut h = History::new();
    run(&mut h, 1, put("k", "a"), Outcome::Written);
    let c = h.invoke(1, cas("k", Some("a"), Some("b")));
    h.complete(c, Outcome::Unknown);
    run(&mut h, 2, get("k"), got(Some("b")));
    assert_linearizable(&h);

    let mut h = History::new();
    run(&mut h, 1, put("k", "x"), Outcome::Written);
    let c = h.invoke(1, cas("k", Some("a"), Some("b")));
    h.complete(c, Outcome::Unknown);
    run(&mut h, 2, get("k"), got(Some("b")));
    assert_violation(&h, "k");
}

#[test]
fn failed_operations_did_not_happen() {
    let mut h = History::new();
    run(&mut h, 1, put("k", "a"), Outcome::Written);
    run(&mut h, 1, put("k", "b"), Outcome::Failed);
    run(&mut h, 2, get("k"), got(Some("a")));
    run(&mut h, 2, get("k"), Outcome::Failed);
    assert_linearizable(&h);
    run(&mut h, 2, get("k"), got(Some("b")));
    assert_violation(&h, "k");
}

#[test]
fn keys_are_independent_and_the_violating_key_is_reported() {
    let mut h = History::new();
    run(&mut h, 1, put("a", "1"), Outcome::Written);
    run(&mut h, 1, put("b", "2"), Outcome::Written);
    run(&mut h, 2, get("a"), got(Some("1")));
    run(&mut h, 2, get("b"), got(Some("2")));
    run(&mut h, 2, get("c"), got(None));
    assert_linearizable(&h);

    run(&mut h, 3, get("b"), got(Some("1")));
    let shown = assert_violation(&h, "b");
    let Err(v) = check(&h) else { unreachable!() };
    assert_eq!(v.ops.len(), 3, "only the ops of key b:\n{shown}");
    assert!(v.ops.iter().all(|o| o.op.key() == b"b"));
}

#[test]
fn the_explanation_names_the_blocking_operation() {
    let mut h = History::new();
    run(&mut h, 1, put("k", "v1"), Outcome::Written);
    run(&mut h, 7, get("k"), got(Some("v0")));
    let shown = assert_violation(&h, "k");
    assert!(shown.contains("longest linearizable prefix: 1 operations"), "{shown}");
    assert!(shown.contains("#1 client 7 [2, 3] get = \"v0\""), "{shown}");
}

#[test]
fn the_step_limit_makes_the_check_inconclusive() {
    let mut h = History::new();
    for i in 0..10 {
        run(&mut h, 1, put("k", &i.to_string()), Outcome::Written);
    }
    match check_with_limit(&h, 5) {
        Err(CheckError::Inconclusive { key, steps }) => {
            assert_eq!(key, bytes("k"));
            assert_eq!(steps, 5);
        }
        other => panic!("expected inconclusive, got {other:?}"),
    }
    assert!(check_with_limit(&h, 100).is_ok());
}

#[test]
fn json_lines_record_every_event_in_order() {
    let mut h = History::new();
    let p = h.invoke(3, put("k", "v"));
    let c = h.invoke(4, Op::Cas { key: vec![0xff], expected: None, new: Some(vec![0, 1]) });
    let g = h.invoke(5, get("k"));
    h.complete(p, Outcome::Written);
    h.complete(c, Outcome::Cas { succeeded: true, previous: None });
    let _never_completed = h.invoke(6, delete("k"));
    h.complete(g, Outcome::Unknown);
    let expected = [
        r#"{"ts":0,"event":"invoke","id":0,"client":3,"key":"6b","op":"put","value":"76"}"#,
        r#"{"ts":1,"event":"invoke","id":1,"client":4,"key":"ff","op":"cas","expected":null,"new":"0001"}"#,
        r#"{"ts":2,"event":"invoke","id":2,"client":5,"key":"6b","op":"get"}"#,
        r#"{"ts":3,"event":"complete","id":0,"outcome":"written"}"#,
        r#"{"ts":4,"event":"complete","id":1,"outcome":"cas","succeeded":true,"previous":null}"#,
        r#"{"ts":5,"event":"invoke","id":3,"client":6,"key":"6b","op":"delete"}"#,
        r#"{"ts":6,"event":"complete","id":2,"outcome":"unknown"}"#,
    ];
    assert_eq!(h.to_json_lines(), expected.map(|l| format!("{l}\n")).concat());
    assert_eq!(h.len(), 4);
    assert_linearizable(&h);
}

#[test]
#[should_panic(expected = "completed twice")]
fn completing_twice_panics() {
    let mut h = History::new();
    let id = h.invoke(1, get("k"));
    h.complete(id, got(None));
    h.complete(id, got(None));
}

#[test]
#[should_panic(expected = "is not an outcome of")]
fn a_mismatched_outcome_panics() {
    let mut h = History::new();
    let id = h.invoke(1, get("k"));
    h.complete(id, Outcome::Written);
}

/// Marsaglia's xorshift64, for reproducible generated histories.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

/// A generated event: `slot` numbers the operations in invocation order.
#[derive(Clone, Debug)]
enum GenEvent {
    Invoke { slot: usize, client: u64, op: Op },
    Complete { slot: usize, outcome: Outcome },
}

struct GenConfig {
    seed: u64,
    clients: u64,
    keys: &'static [&'static str],
    ops: usize,
    /// Percent of operations that are gets; the rest are puts, deletes and CASes, 3:1:2.
    gets: u64,
    /// Percent of operations that end `Failed` without taking effect.
    failed: u64,
    /// Percent of operations whose outcome is `Unknown` (or that never complete); a third of them
    /// never take effect, a third take effect in their interval, a third at a random later time.
    unknown: u64,
}

enum Phase {
    Idle,
    Invoked { slot: usize, op: Op },
    Done { slot: usize, outcome: Option<Outcome> },
}

/// Simulates clients of a linearizable store: each operation takes effect atomically at a random
/// point between its invocation and its completion, interleaved with the other clients' events.
fn generate(config: &GenConfig) -> Vec<GenEvent> {
    const VALUES: [&str; 4] = ["v0", "v1", "v2", "v3"];
    let mut rng = XorShift(config.seed);
    let mut store: BTreeMap<Key, Value> = BTreeMap::new();
    let mut phases: Vec<Phase> = (0..config.clients).map(|_| Phase::Idle).collect();
    // Unknown operations that will take effect at some later time, or never.
    let mut limbo: Vec<Op> = Vec::new();
    let mut events = Vec::new();
    let mut started = 0;
    let value = |rng: &mut XorShift| VALUES[rng.below(VALUES.len() as u64) as usize];
    let maybe_value = |rng: &mut XorShift| (!rng.percent(25)).then(|| bytes(value(rng)));
    while started < config.ops || phases.iter().any(|p| !matches!(p, Phase::Idle)) {
        if !limbo.is_empty() && rng.percent(2) {
            let op = limbo.swap_remove(rng.below(limbo.len() as u64) as usize);
            apply(&mut store, &op);
        }
        let client = rng.below(config.clients);
        let phase = &mut phases[client as usize];
        *phase = match std::mem::replace(phase, Phase::Idle) {
            Phase::Idle if started < config.ops => {
                let key = bytes(config.keys[rng.below(config.keys.len() as u64) as usize]);
                let op = if rng.percent(config.gets) {
                    Op::Get { key }
                } else {
                    match rng.below(6) {
                        0..=2 => Op::Put { key, value: bytes(value(&mut rng)) },
                        3 => Op::Delete { key },
                        _ => Op::Cas { key, expected: maybe_value(&mut rng), new: maybe_value(&mut rng) },
                    }
                };
                events.push(GenEvent::Invoke { slot: started, client, op: op.clone() });
                started += 1;
                Phase::Invoked { slot: started - 1, op }
            }
            Phase::Idle => Phase::Idle,
            Phase::Invoked { slot, op } => {
                let outcome = if rng.percent(config.failed) {
                    Some(Outcome::Failed)
                } else if rng.percent(config.unknown) {
                    match rng.below(3) {
                        0 => {}
                        1 => drop(apply(&mut store, &op)),
                        _ => limbo.push(op),
                    }
                    rng.percent(50).then_some(Outcome::Unknown)
                } else {
                    Some(apply(&mut store, &op))
                };
                Phase::Done { slot, outcome }
            }
            Phase::Done { slot, outcome } => {
                if let Some(outcome) = outcome {
                    events.push(GenEvent::Complete { slot, outcome });
                }
                Phase::Idle
            }
        };
    }
    events
}

fn apply(store: &mut BTreeMap<Key, Value>, op: &Op) -> Outcome {
    match op {
        Op::Get { key } => Outcome::Get(store.get(key).cloned()),
        Op::Put { key, value } => {
            store.insert(key.clone(), value.clone());
            Outcome::Written
        }
        Op::Delete { key } => {
            store.remove(key);
            Outcome::Written
        }
        Op::Cas { key, expected, new } => {
            let previous = store.get(key).cloned();
            let succeeded = previous == *expected;
            if succeeded {
                match new {
                    Some(new) => store.insert(key.clone(), new.clone()),
                    None => store.remove(key),
                };
            }
            Outcome::Cas { succeeded, previous }
        }
    }
}

/// The largest number of operations pending at once.
fn max_concurrency(h: &History) -> usize {
    let mut changes: Vec<(u64, isize)> = Vec::new();
    for o in h.ops() {
        changes.push((o.invoked_at, 1));
        changes.extend(o.completed_at.map(|t| (t, -1)));
    }
    changes.sort_unstable();
    let mut pending = 0;
    changes
        .iter()
        .map(|&(_, change)| {
            pending += change;
            pending as usize
        })
        .max()
        .unwrap_or(0)
}

fn record(events: &[GenEvent]) -> History {
    let mut h = History::new();
    let mut ids: Vec<OpId> = Vec::new();
    for event in events {
        match event {
            GenEvent::Invoke { slot, client, op } => {
                assert_eq!(*slot, ids.len());
                ids.push(h.invoke(*client, op.clone()));
            }
            GenEvent::Complete { slot, outcome } => h.complete(ids[*slot], outcome.clone()),
        }
    }
    h
}

const LARGE: GenConfig = GenConfig {
    seed: 0x5eed_1234_abcd_0001,
    clients: 10,
    keys: &["k"],
    ops: 2000,
    gets: 40,
    failed: 0,
    unknown: 0,
};

#[test]
fn a_large_generated_history_is_accepted() {
    let events = generate(&LARGE);
    let h = record(&events);
    assert_eq!(h.len(), 2000);
    assert!(max_concurrency(&h) >= 8, "{}", max_concurrency(&h));
    if let Err(e) = check_with_limit(&h, 1_000_000) {
        panic!("{e}");
    }
}

#[test]
fn a_large_generated_history_with_one_impossible_read_is_rejected() {
    let events = generate(&LARGE);
    let reads: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, GenEvent::Complete { outcome: Outcome::Get(_), .. }))
        .map(|(i, _)| i)
        .collect();
    assert!(reads.len() > 500);
    for &i in [reads[reads.len() / 2], reads[reads.len() - 1], reads[0]].iter() {
        let mut mutated = events.clone();
        let GenEvent::Complete { outcome, .. } = &mut mutated[i] else { unreachable!() };
        *outcome = got(Some("impossible"));
        match check_with_limit(&record(&mutated), 1_000_000) {
            Err(CheckError::Violation(v)) => assert!(v.to_string().contains("\"impossible\""), "{v}"),
            other => panic!("read {i} mutated: expected a violation, got {other:?}"),
        }
    }
    // The unmutated history is fine: the mutation is to blame.
    assert!(check_with_limit(&record(&events), 1_000_000).is_ok());
}

#[test]
fn generated_histories_with_failures_and_unknown_outcomes_are_accepted() {
    for seed in 1..=20 {
        let config = GenConfig {
            seed: 0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(seed),
            clients: 8,
            keys: &["a", "b", "c"],
            ops: 1500,
            gets: 40,
            failed: 5,
            unknown: 4,
        };
        let h = record(&generate(&config));
        if let Err(e) = check_with_limit(&h, 1_000_000) {
            panic!("seed {seed}: {e}");
        }
    }
}

#[test]
fn generated_histories_with_a_stale_read_are_rejected() {
    // Make a read that returned the current value return the one before it instead, where the
    // put that overwrote it completed before the read was invoked: a stale read.
    let mut rejected = 0;
    for seed in 1..=20 {
        let config = GenConfig { seed, clients: 4, keys: &["k"], ops: 300, gets: 80, failed: 0, unknown: 0 };
        let events = generate(&config);
        let Some(mutated) = make_stale_read(&events) else { continue };
        match check_with_limit(&record(&mutated), 1_000_000) {
            Err(CheckError::Violation(_)) => rejected += 1,
            other => panic!("seed {seed}: expected a violation, got {other:?}"),
        }
    }
    assert!(rejected >= 10, "only {rejected} seeds produced a stale read");
}

/// Finds a put `p1` of `x` followed, strictly after in real time, by a put `p2` of `y != x`
/// followed by a get invoked after `p2` completed, with no other write of any kind invoked
/// between `p1`'s invocation and the get's completion, and makes that get return `x`.
fn make_stale_read(events: &[GenEvent]) -> Option<Vec<GenEvent>> {
    let mut invoked_at = BTreeMap::new();
    let mut completed_at = BTreeMap::new();
    let mut ops = BTreeMap::new();
    for (t, e) in events.iter().enumerate() {
        match e {
            GenEvent::Invoke { slot, op, .. } => {
                invoked_at.insert(*slot, t);
                ops.insert(*slot, op.clone());
            }
            GenEvent::Complete { slot, .. } => {
                completed_at.insert(*slot, t);
            }
        }
    }
    let is_write = |op: &Op| !matches!(op, Op::Get { .. });
    let puts: Vec<usize> =
        ops.iter().filter(|(_, op)| matches!(op, Op::Put { .. })).map(|(s, _)| *s).collect();
    for pair in puts.windows(2) {
        let (p1, p2) = (pair[0], pair[1]);
        let (Op::Put { value: x, .. }, Op::Put { value: y, .. }) = (&ops[&p1], &ops[&p2]) else {
            unreachable!()
        };
        if x == y || completed_at[&p1] > invoked_at[&p2] {
            continue;
        }
        let get = ops.iter().find(|(s, op)| {
            matches!(op, Op::Get { .. }) && invoked_at[s] > completed_at[&p2] && completed_at.contains_key(s)
        });
        let Some((&get, _)) = get else { continue };
        let window = invoked_at[&p1]..=completed_at[&get];
        let overlaps = |s: &usize| {
            invoked_at[s] <= *window.end() && completed_at.get(s).is_none_or(|t| t >= window.start())
        };
        if ops.iter().any(|(s, op)| *s != p1 && *s != p2 && is_write(op) && overlaps(s)) {
            continue;
        }
        let mut mutated = events.to_vec();
        mutated[completed_at[&get]] =
            GenEvent::Complete { slot: get, outcome: Outcome::Get(Some(x.clone())) };
        return Some(mutated);
    }
    None
}

#[test]
fn generated_histories_with_unknown_outcomes_and_an_impossible_read_are_rejected() {
    let config = GenConfig {
        seed: 0xdead_beef_0bad_cafe,
        clients: 10,
        keys: &["k"],
        ops: 2000,
        gets: 40,
        failed: 2,
        unknown: 5,
    };
    let events = generate(&config);
    let h = record(&events);
    assert!(h.ops().iter().filter(|o| o.outcome == Outcome::Unknown).count() > 20);
    if let Err(e) = check_with_limit(&h, 1_000_000) {
        panic!("{e}");
    }
    let reads: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, GenEvent::Complete { outcome: Outcome::Get(_), .. }))
        .map(|(i, _)| i)
        .collect();
    for &i in reads.iter().step_by(reads.len() / 5).chain(reads.last()) {
        let mut mutated = events.clone();
        let GenEvent::Complete { outcome, .. } = &mut mutated[i] else { unreachable!() };
        *outcome = got(Some("impossible"));
        match check_with_limit(&record(&mutated), 5_000_000) {
            Err(CheckError::Violation(_)) => {}
            other => panic!("read {i} mutated: expected a violation, got {other:?}"),
        }
    }
}

/// A naive checker of single-key histories to compare with: tries every order of the operations
/// that respects real time, with each unknown operation taking effect at most once or never.
fn brute_force(h: &History) -> bool {
    let ops: Vec<KeyedOp> = h.ops().into_iter().filter(|o| o.outcome != Outcome::Failed).collect();
    assert!(ops.len() <= 64 && ops.iter().all(|o| o.op.key() == ops[0].op.key()));
    let ret = |o: &KeyedOp| if o.outcome == Outcome::Unknown { None } else { o.completed_at };
    let step = |o: &KeyedOp, value: &Option<Value>| -> Option<Option<Value>> {
        match (&o.op, &o.outcome) {
            (Op::Get { .. }, Outcome::Get(v)) => (v == value).then(|| value.clone()),
            (Op::Get { .. }, _) => Some(value.clone()),
            (Op::Put { value: v, .. }, _) => Some(Some(v.clone())),
            (Op::Delete { .. }, _) => Some(None),
            (Op::Cas { expected, new, .. }, outcome) => {
                let succeeded = value == expected;
                let after = if succeeded { new.clone() } else { value.clone() };
                match outcome {
                    Outcome::Cas { succeeded: s, previous } => {
                        (*s == succeeded && previous == value).then_some(after)
                    }
                    _ => Some(after),
                }
            }
        }
    };
    let must: u64 = ops.iter().enumerate().filter(|(_, o)| ret(o).is_some()).map(|(i, _)| 1 << i).sum();
    let mut seen = std::collections::HashSet::new();
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
                .any(|(j, p)| done & (1 << j) == 0 && ret(p).is_some_and(|r| r < o.invoked_at));
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
/// operation taking effect at its invocation or its completion) with perhaps a few results changed.
fn small_history(rng: &mut XorShift) -> History {
    let value = |rng: &mut XorShift| ["a", "b"][rng.below(2) as usize];
    let maybe = |rng: &mut XorShift| (!rng.percent(30)).then(|| value(rng));
    let random_outcome = |rng: &mut XorShift, op: &Op| match op {
        Op::Get { .. } => Outcome::Get(maybe(rng).map(bytes)),
        Op::Put { .. } | Op::Delete { .. } => Outcome::Written,
        Op::Cas { .. } => Outcome::Cas { succeeded: rng.percent(50), previous: maybe(rng).map(bytes) },
    };
    let n = 1 + rng.below(7);
    let simulate = rng.percent(70);
    let mut store = BTreeMap::new();
    let mut h = History::new();
    let mut pending: Vec<(OpId, Op, Option<Outcome>)> = Vec::new();
    for client in 0..n {
        let op = match rng.below(4) {
            0 => get("k"),
            1 => put("k", value(rng)),
            2 => delete("k"),
            _ => cas("k", maybe(rng), maybe(rng)),
        };
        let id = h.invoke(client, op.clone());
        let early = (simulate && rng.percent(50)).then(|| apply(&mut store, &op));
        pending.push((id, op, early));
        while !pending.is_empty() && (client + 1 == n || rng.percent(50)) {
            let (id, op, early) = pending.swap_remove(rng.below(pending.len() as u64) as usize);
            let outcome = match rng.below(10) {
                0 => continue, // never completed
                1 => Outcome::Unknown,
                2 if early.is_none() || !simulate => Outcome::Failed,
                _ if !simulate || rng.percent(5) => random_outcome(rng, &op),
                _ => early.unwrap_or_else(|| apply(&mut store, &op)),
            };
            h.complete(id, outcome);
        }
    }
    h
}

#[test]
fn the_checker_agrees_with_a_brute_force_search_on_small_histories() {
    let mut rng = XorShift(0x0123_4567_89ab_cdef);
    let mut verdicts = [0, 0];
    for i in 0..30_000 {
        let h = small_history(&mut rng);
        let expected = brute_force(&h);
        let actual = check_with_limit(&h, 100_000);
        assert!(
            matches!((expected, &actual), (true, Ok(())) | (false, Err(CheckError::Violation(_)))),
            "history {i}: brute force says {expected}, checker says {actual:?}\n{}",
            h.to_json_lines()
        );
        verdicts[usize::from(expected)] += 1;
    }
    eprintln!("verdicts {verdicts:?}");
    assert!(verdicts[0] > 3_000 && verdicts[1] > 3_000, "{verdicts:?}");
}
