use super::*;

fn row<'a>(report: &'a Report, case: &str, metric: &str) -> &'a crate::harness::CaseResult {
    report
        .results
        .iter()
        .find(|r| r.case == case && r.metric == metric)
        .unwrap_or_else(|| panic!("no {case} {metric} in {:?}", report.results))
}

#[test]
fn regions_tile_the_key_space() {
    let n = 5;
    let regions: Vec<Region> = (0..n).map(|i| region(i, n, 0)).collect();
    assert!(regions[0].start_key.is_empty() && regions[n - 1].end_key.is_empty());
    for w in regions.windows(2) {
        assert_eq!(w[0].end_key, w[1].start_key);
        assert!(w[0].start_key < w[1].start_key);
    }
    for (i, r) in regions.iter().enumerate() {
        assert!(r.contains(&key_in(i, 0)) && r.contains(&key_in(i, u32::MAX)));
        assert_eq!(r.peers.len(), STORES as usize);
    }
    let hb = heartbeat(4, n, 2, 9);
    assert_eq!(hb.region.epoch.conf_ver, 4);
    assert_eq!(hb.leader, Some(hb.region.peers[1]));
    assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
}

/// The whole suite at a small size: a real member on loopback, every case
/// reported, every answer checked on the way.
#[test]
fn smoke_run_at_a_small_size() {
    let dir = tempfile::tempdir().unwrap();
    let opts = crate::Opts { quick: true, json: true, dir: Some(dir.path().join("data")), filter: None };
    let plan = Plan {
        sizes: vec![2_000],
        warmup: Duration::from_millis(200),
        rounds: 2,
        round: Duration::from_millis(300),
        get: Duration::from_millis(300),
        core_rounds: 2,
        core_ops: 2_000,
        leader_wait: Duration::from_secs(30),
    };
    let report = run_plan(&opts, &plan).unwrap();
    assert_eq!(report.suite, "pd");
    for (case, metric) in [
        ("core/load/regions=2000", "regions_per_s"),
        ("core/heartbeat/regions=2000", "hb_per_s"),
        ("core/get_region/regions=2000", "ns_per_op"),
        ("member/load/regions=2000", "regions_per_s"),
        ("member/heartbeat/regions=2000", "hb_per_s"),
        ("member/get_region/regions=2000", "count"),
        ("member/get_region_under_load/regions=2000", "count"),
        ("member/echo/regions=2000", "p50_us"),
    ] {
        assert!(row(&report, case, metric).value > 0.0, "{case} {metric}");
    }
    // Memory growth over 2,000 regions can hide in pages the process
    // already had (it is measured from RSS): present, not negative.
    let rss = row(&report, "member/rss/regions=2000", "bytes_per_region").value;
    assert!(rss.is_finite() && rss >= 0.0, "rss {rss}");
    let get = |m: &str| row(&report, "member/get_region/regions=2000", m).value;
    assert!(get("p99_us") >= get("p50_us"));
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(json["suite"], "pd");
}
