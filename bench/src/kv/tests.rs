use clap::Parser;

use super::*;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: KvArgs,
}

fn args(argv: &[&str]) -> KvArgs {
    Cli::try_parse_from(std::iter::once("kv").chain(argv.iter().copied())).unwrap().args
}

#[test]
fn parses_durations() {
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
    assert!(parse_duration("fast").is_err());
    assert!(parse_duration("3h").is_err());
    assert!(parse_duration("").is_err());
}

#[test]
fn options_and_their_defaults() {
    let a = args(&[]);
    assert_eq!(
        (a.workload, a.targets.as_slice(), a.clients, a.rate),
        (Workload::A, &["memory".to_owned()][..], 16, None)
    );
    let quick = Settings::new(true, &a).unwrap();
    assert_eq!(
        (quick.records, quick.warmup, quick.duration),
        (10_000, Duration::from_secs(1), Duration::from_secs(5))
    );
    let full = Settings::new(false, &a).unwrap();
    assert_eq!(
        (full.records, full.duration, full.distribution),
        (100_000, Duration::from_secs(30), Distribution::Zipfian)
    );
    assert_eq!(full.pace(), Pace::Closed);

    let a = args(&[
        "--workload",
        "d",
        "--target",
        "memory,etcd",
        "--etcd-endpoints",
        "127.0.0.1:1,127.0.0.1:2",
        "--clients",
        "4",
        "--rate",
        "2000",
        "--duration",
        "30s",
        "--warmup",
        "5s",
        "--records",
        "1000",
        "--value-size",
        "64",
        "--svg",
        "out.svg",
    ]);
    assert_eq!(a.targets, ["memory", "etcd"]);
    assert_eq!(a.etcd_endpoints, ["127.0.0.1:1", "127.0.0.1:2"]);
    assert_eq!(a.svg, Some(PathBuf::from("out.svg")));
    let s = Settings::new(true, &a).unwrap();
    assert_eq!(s.distribution, Distribution::Latest, "workload d reads the latest records");
    assert_eq!((s.records, s.duration, s.shape.value_size), (1000, Duration::from_secs(30), 64));
    assert_eq!(s.pace(), Pace::Open(Schedule::new(2000.0, 4)));
    assert_eq!(s.prefix(), "ycsb-d/latest/rate=2000/clients=4");
    let b = Settings::new(
        true,
        &args(&["--workload", "batch", "--batch-size", "8", "--distribution", "uniform"]),
    )
    .unwrap();
    assert_eq!(b.prefix(), "batch=8/uniform/closed/clients=16");

    assert!(Settings::new(true, &args(&["--clients", "0"])).is_err());
    assert!(Settings::new(true, &args(&["--rate=-5"])).is_err());
    let both = ["kv", "--etcd-start", "--etcd-endpoints", "127.0.0.1:1"];
    assert!(Cli::try_parse_from(both).is_err(), "a cluster is either started or given");
    assert!(Cli::try_parse_from(["kv", "--workload", "z"]).is_err());
}

/// A run whose every operation of `kind` took `us` µs, over one second.
fn constant_run(name: &str, kinds: &[(OpKind, u64, u64)]) -> TargetRun {
    let mut stats = RunStats { window: Duration::from_secs(1), ..RunStats::default() };
    for &(kind, us, n) in kinds {
        for _ in 0..n {
            stats.record(kind, Duration::from_micros(us), Ok(true));
        }
    }
    TargetRun { name: name.to_owned(), stats }
}

fn row<'a>(report: &'a Report, case_end: &str, metric: &str) -> &'a CaseResult {
    report
        .results
        .iter()
        .find(|r| r.case.ends_with(case_end) && r.metric == metric)
        .unwrap_or_else(|| panic!("no row {case_end} {metric}"))
}

fn empty_report() -> Report {
    Report::new("kv", Machine { cores: 2, kernel: "k".into(), cpu_model: "c".into(), fs: "ext4".into() })
}

#[test]
fn rows_compare_with_the_baseline_and_carry_the_issues_targets() {
    let settings = Settings::new(true, &args(&["--rate", "2000"])).unwrap();
    let runs = [
        constant_run("ekv", &[(OpKind::Read, 100, 1000), (OpKind::Update, 200, 1000)]),
        constant_run("etcd", &[(OpKind::Read, 400, 500), (OpKind::Update, 1000, 500)]),
    ];
    let mut report = empty_report();
    push_results(&mut report, &crate::Opts::default(), &settings, &runs, "etcd");

    let update = row(&report, "target=ekv/op=update", "p99_us");
    assert!((update.baseline.unwrap() - 1000.0).abs() < 1.0, "{update:?}");
    assert!((update.ratio.unwrap() - 0.2).abs() < 0.001, "{update:?}");
    assert_eq!(update.target.as_deref(), Some("<= 0.5"));
    assert_eq!(update.target_met(), Some(true));
    assert!(update.case.starts_with("ycsb-a/zipfian/rate=2000/clients=16/"), "{}", update.case);

    let tput = row(&report, "target=ekv/op=all", "ops_per_s");
    assert!((tput.ratio.unwrap() - 2.0).abs() < 1e-9, "2000 ops/s against 1000");
    assert_eq!(tput.target, None, "the throughput target is for the closed loop");
    // Counts are not compared, and the baseline's own rows stand alone.
    assert_eq!(row(&report, "target=ekv/op=read", "count").baseline, None);
    assert_eq!(row(&report, "target=etcd/op=read", "p99_us").baseline, None);
    assert_eq!(row(&report, "target=ekv/schedule", "offered_ops_per_s").value, 2000.0);
    assert_eq!(row(&report, "target=etcd/schedule", "unsent").value, 0.0);

    // Closed loop: the saturation-throughput target, not the update one.
    let closed = Settings::new(true, &args(&[])).unwrap();
    let mut report = empty_report();
    push_results(&mut report, &crate::Opts::default(), &closed, &runs, "etcd");
    assert_eq!(row(&report, "target=ekv/op=all", "ops_per_s").target.as_deref(), Some(">= 3"));
    assert_eq!(row(&report, "target=ekv/op=all", "ops_per_s").target_met(), Some(false));
    assert_eq!(row(&report, "target=ekv/op=update", "p99_us").target, None);
    assert!(!report.results.iter().any(|r| r.case.ends_with("/schedule")));

    // Without the baseline in the run, nothing is compared or targeted.
    let mut report = empty_report();
    push_results(&mut report, &crate::Opts::default(), &settings, &runs[..1], "etcd");
    assert!(report.results.iter().all(|r| r.baseline.is_none() && r.target.is_none()));

    // Another pair is compared but carries no targets.
    let others =
        [constant_run("memory", &[(OpKind::Read, 10, 10)]), constant_run("etcd", &[(OpKind::Read, 20, 10)])];
    let c = Settings::new(true, &args(&["--workload", "c"])).unwrap();
    let mut report = empty_report();
    push_results(&mut report, &crate::Opts::default(), &c, &others, "etcd");
    let read = row(&report, "target=memory/op=read", "p99_us");
    assert!(read.ratio.is_some() && read.target.is_none());
    let ekv_c =
        [constant_run("ekv", &[(OpKind::Read, 10, 10)]), constant_run("etcd", &[(OpKind::Read, 40, 10)])];
    let mut report = empty_report();
    push_results(&mut report, &crate::Opts::default(), &c, &ekv_c, "etcd");
    assert_eq!(row(&report, "target=ekv/op=read", "p99_us").target_met(), Some(true));
}

#[test]
fn whole_suite_against_the_memory_target() {
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("spectrum.svg");
    let a = args(&[
        "--workload",
        "b",
        "--target",
        "memory",
        "--clients",
        "2",
        "--records",
        "300",
        "--warmup",
        "50ms",
        "--duration",
        "250ms",
        "--rate",
        "1000",
        "--svg",
        svg_path.to_str().unwrap(),
    ]);
    let opts = crate::Opts { quick: true, json: true, dir: Some(dir.path().join("data")), filter: None };
    let report = run_suite(&opts, &a).unwrap();
    assert_eq!(report.suite, "kv");
    let count = |op: &str| row(&report, &format!("target=memory/op={op}"), "count").value;
    assert!(count("read") > 0.0 && count("update") > 0.0);
    assert_eq!(count("all"), count("read") + count("update"));
    assert_eq!(row(&report, "target=memory/op=all", "errors").value, 0.0);
    assert!(report.notes.iter().any(|n| n.contains("loaded 300 records")), "{:?}", report.notes);
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.contains(">memory read<") && svg.contains(">memory update<"));
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["suite"], "kv");

    let dup = args(&["--target", "memory,memory"]);
    assert!(run_suite(&opts, &dup).unwrap_err().to_string().contains("twice"));
    let unknown = args(&["--target", "nosuch", "--records", "10"]);
    assert!(run_suite(&opts, &unknown).unwrap_err().to_string().contains("unknown target"));
}

/// The smoke run the README's main job makes: a few seconds of YCSB-E
/// (scans and inserts) and YCSB-A against an ekv cluster started in this
/// process, through the real client, network and disk.
#[test]
fn smoke_run_against_an_ekv_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let opts = crate::Opts { quick: true, json: true, dir: Some(dir.path().join("data")), filter: None };
    for workload in ["a", "e"] {
        let a = args(&[
            "--workload",
            workload,
            "--target",
            "ekv",
            "--ekv-start",
            "--clients",
            "4",
            "--records",
            "500",
            "--warmup",
            "100ms",
            "--duration",
            "1s",
        ]);
        let report = run_suite(&opts, &a).unwrap();
        let all = |metric: &str| row(&report, "target=ekv/op=all", metric).value;
        assert!(all("count") > 0.0, "{workload}: no operations");
        assert_eq!(all("errors"), 0.0, "{workload}: errors");
        assert!(all("p99_us") >= all("p50_us"));
    }
}
