//! Histories: recording, event form, JSON lines and files, malformed operations, and the check
//! over all workloads.

use std::path::PathBuf;

use ekv_checker::{
    check, load_jsonl, save_jsonl, Anomaly, AnomalyKind, Error, Event, History, Op, Operation, Outcome,
    Problem, ProcessId, Value, MAX_REPORTED,
};

fn p(n: u64) -> ProcessId {
    ProcessId(n)
}

/// A path in the temporary directory unique to this process and `name`.
fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ekv-checker-{}-{name}.jsonl", std::process::id()))
}

/// A history with every kind of operation and outcome.
fn every_kind() -> History {
    let mut h = History::new();
    let put = h.invoke(p(3), Op::put("k", "v"));
    let cas =
        h.invoke(p(4), Op::Cas { key: vec![0xff].into(), expected: None, new: Some(vec![0, 1].into()) });
    let get = h.invoke(p(5), Op::get("k"));
    h.complete(put, Outcome::Written);
    h.complete(cas, Outcome::Cas { swapped: true, previous: Some(None) });
    let _never_completed = h.invoke(p(6), Op::delete("k"));
    h.complete(get, Outcome::Unknown);
    let c = h.invoke(p(7), Op::cas("k", Some("v"), None::<Value>));
    h.complete(c, Outcome::Cas { swapped: false, previous: None });
    let a = h.invoke(p(1), Op::add("s", 1));
    h.complete(a, Outcome::Fail);
    let r = h.invoke(p(1), Op::read_set("s"));
    h.complete(r, Outcome::Elements(vec![]));
    let a = h.invoke(p(2), Op::append("l", 1));
    h.complete(a, Outcome::Written);
    let r = h.invoke(p(2), Op::read_list("l"));
    h.complete(r, Outcome::Elements(vec![Value::from(1)]));
    h
}

#[test]
fn json_lines_hold_one_operation_per_line() {
    let h = every_kind();
    let expected = [
        r#"{"process":3,"invoke":0,"complete":3,"op":{"put":{"key":"k","value":"v"}},"outcome":"written"}"#,
        r#"{"process":4,"invoke":1,"complete":4,"op":{"cas":{"key":{"hex":"ff"},"expected":null,"new":"\u0000\u0001"}},"outcome":{"cas":{"swapped":true,"previous":null}}}"#,
        r#"{"process":5,"invoke":2,"complete":6,"op":{"get":{"key":"k"}},"outcome":"unknown"}"#,
        r#"{"process":6,"invoke":5,"op":{"delete":{"key":"k"}},"outcome":"unknown"}"#,
        r#"{"process":7,"invoke":7,"complete":8,"op":{"cas":{"key":"k","expected":"v","new":null}},"outcome":{"cas":{"swapped":false}}}"#,
        r#"{"process":1,"invoke":9,"complete":10,"op":{"add":{"key":"s","element":"1"}},"outcome":"fail"}"#,
        r#"{"process":1,"invoke":11,"complete":12,"op":{"read_set":{"key":"s"}},"outcome":{"elements":[]}}"#,
        r#"{"process":2,"invoke":13,"complete":14,"op":{"append":{"key":"l","element":"1"}},"outcome":"written"}"#,
        r#"{"process":2,"invoke":15,"complete":16,"op":{"read_list":{"key":"l"}},"outcome":{"elements":["1"]}}"#,
    ];
    assert_eq!(h.to_jsonl(), expected.map(|l| format!("{l}\n")).concat());
    let parsed = History::from_jsonl(&h.to_jsonl()).unwrap();
    assert_eq!(parsed.ops(), h.ops());
    // A CAS's previous value: reported absent, and not reported, stay apart.
    assert_eq!(parsed.ops()[1].outcome, Outcome::Cas { swapped: true, previous: Some(None) });
    assert_eq!(parsed.ops()[4].outcome, Outcome::Cas { swapped: false, previous: None });
}

#[test]
fn a_history_saved_on_failure_loads_back_and_fails_again() {
    let mut h = History::new();
    let put = h.invoke(p(1), Op::put("k", "a"));
    h.complete(put, Outcome::Written);
    let get = h.invoke(p(2), Op::get("k"));
    h.complete(get, Outcome::Read(None));
    let verdict = check(&h);
    assert!(!verdict.is_ok());

    let path = temp_path("saved");
    save_jsonl(&path, &h).unwrap();
    let loaded = load_jsonl(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(loaded.ops(), h.ops());
    assert_eq!(check(&loaded), verdict);
    // Recording can go on after loading, later than everything loaded.
    let mut loaded = loaded;
    let id = loaded.invoke(p(1), Op::get("k"));
    assert!(loaded.ops()[id.0].invoke > h.ops()[1].complete.unwrap());
}

#[test]
fn loading_reports_the_file_and_the_bad_line() {
    let missing = temp_path("missing");
    match load_jsonl(&missing) {
        Err(e @ Error::Io { op: "open", .. }) => {
            assert!(e.to_string().contains(&*missing.to_string_lossy()), "{e}");
            assert!(std::error::Error::source(&e).is_some());
        }
        other => panic!("{other:?}"),
    }
    let good = r#"{"process":1,"invoke":0,"complete":1,"op":{"get":{"key":"k"}},"outcome":{"read":null}}"#;
    let text = format!("{good}\n\n{good}\n{{\"process\":1}}\n");
    match History::from_jsonl(&text) {
        Err(e @ Error::Json { line: 4, .. }) => assert!(e.to_string().starts_with("history line 4"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(History::from_jsonl(&format!("{good}\n\n{good}\n")).unwrap().len(), 2);
}

#[test]
fn events_pair_by_process() {
    let events = vec![
        Event::Invoke { process: p(1), time: 10, op: Op::put("k", "a") },
        Event::Invoke { process: p(2), time: 11, op: Op::get("k") },
        Event::Complete { process: p(2), time: 12, outcome: Outcome::Read(Some(Value::from("a"))) },
        Event::Complete { process: p(1), time: 13, outcome: Outcome::Written },
        Event::Invoke { process: p(2), time: 14, op: Op::get("k") },
    ];
    let h = History::from_events(events.clone()).unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(
        h.ops()[0],
        Operation {
            process: p(1),
            invoke: 10,
            complete: Some(13),
            op: Op::put("k", "a"),
            outcome: Outcome::Written
        }
    );
    assert_eq!((h.ops()[2].complete, &h.ops()[2].outcome), (None, &Outcome::Unknown));
    assert!(check(&h).is_ok());

    let mut busy = events.clone();
    busy.insert(1, Event::Invoke { process: p(1), time: 10, op: Op::get("k") });
    assert!(matches!(
        History::from_events(busy),
        Err(Error::ProcessBusy { event: 1, process: ProcessId(1) })
    ));
    let mut idle = events;
    idle.push(Event::Complete { process: p(3), time: 20, outcome: Outcome::Unknown });
    assert!(matches!(
        History::from_events(idle),
        Err(Error::NothingPending { event: 5, process: ProcessId(3) })
    ));
}

#[test]
fn malformed_operations_are_reported_and_skipped() {
    let op = |op: Op, invoke, complete, outcome| Operation { process: p(1), invoke, complete, op, outcome };
    let h = History::from_ops(vec![
        op(Op::get("k"), 0, Some(1), Outcome::Written),
        op(Op::put("k", "a"), 5, Some(4), Outcome::Written),
        op(Op::append("l", 1), 0, None, Outcome::Written),
        op(Op::read_set("s"), 0, Some(1), Outcome::Read(None)),
        // Valid: a failed operation need not have completed.
        op(Op::get("k"), 0, None, Outcome::Fail),
    ]);
    let v = check(&h);
    let problems: Vec<Problem> = v
        .anomalies
        .iter()
        .map(|a| match a {
            Anomaly::Malformed { problem, .. } => *problem,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        problems,
        [
            Problem::OutcomeMismatch,
            Problem::CompletedBeforeInvoked,
            Problem::OutcomeMismatch,
            Problem::OkWithoutCompletion
        ]
    );
    assert_eq!(v.ops, 1);
}

#[test]
fn a_key_used_by_two_workloads_is_malformed() {
    let mut h = History::new();
    let put = h.invoke(p(1), Op::put("k", "a"));
    h.complete(put, Outcome::Written);
    let append = h.invoke(p(1), Op::append("k", "b"));
    h.complete(append, Outcome::Written);
    let v = check(&h);
    assert_eq!(v.count(AnomalyKind::Malformed), 1, "{v}");
    assert!(
        matches!(&v.anomalies[..], [Anomaly::Malformed { problem: Problem::MixedWorkloads, op }] if op.id == append)
    );
}

#[test]
fn the_check_covers_every_workload_and_says_what_is_wrong() {
    let mut h = every_kind();
    assert!(check(&h).is_ok(), "{}", check(&h));
    let v = check(&h);
    assert_eq!((v.keys, v.ops), (4, 9));
    assert!(v.to_string().starts_with("ok: 4 keys, 9 operations"), "{v}");

    // A lost append, and a register read of a value never written.
    let r = h.invoke(p(2), Op::read_list("l"));
    h.complete(r, Outcome::Elements(vec![]));
    let g = h.invoke(p(2), Op::get("k"));
    h.complete(g, Outcome::Read(Some(Value::from("ghost"))));
    let v = check(&h);
    assert!(v.has_violation());
    assert_eq!(v.count(AnomalyKind::LostWrite), 1);
    assert_eq!(v.count(AnomalyKind::NotLinearizable), 1);
    let shown = v.to_string();
    assert!(shown.starts_with("NOT OK: 4 keys, 11 operations: 1 not linearizable, 1 lost write"), "{shown}");
    assert!(shown.contains("register \"k\" is not linearizable"), "{shown}");
    assert!(shown.contains("get(\"k\") = \"ghost\""), "{shown}");
    assert!(shown.contains("lost write: \"l\": the final read lacks \"1\""), "{shown}");
}

#[test]
fn a_verdict_keeps_a_few_anomalies_of_each_kind_and_counts_all() {
    let mut h = History::new();
    for i in 0..100u64 {
        let a = h.invoke(p(1), Op::add("s", i));
        h.complete(a, Outcome::Written);
    }
    let r = h.invoke(p(2), Op::read_set("s"));
    h.complete(r, Outcome::Elements(vec![]));
    let v = check(&h);
    assert_eq!(v.count(AnomalyKind::LostWrite), 100);
    assert_eq!(v.anomalies.len(), MAX_REPORTED);
    assert_eq!(v.sets[0].lost, 100);
    assert!(v.to_string().contains(&format!("({} more not shown)", 100 - MAX_REPORTED)), "{v}");
}

#[test]
#[should_panic(expected = "completed twice")]
fn completing_twice_panics() {
    let mut h = History::new();
    let id = h.invoke(p(1), Op::get("k"));
    h.complete(id, Outcome::Read(None));
    h.complete(id, Outcome::Read(None));
}

#[test]
#[should_panic(expected = "is not an outcome of")]
fn a_mismatched_outcome_panics() {
    let mut h = History::new();
    let id = h.invoke(p(1), Op::get("k"));
    h.complete(id, Outcome::Written);
}
