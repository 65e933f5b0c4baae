//! The routing table: locate, replace on newer epochs, ignore stale ones,
//! scan.

use ekv_proto::msg::ReportBatchSplitRequest;
use ekv_proto::{Region, RegionId};

use super::super::Change;
use super::{heartbeat, must_bootstrapped, peer, region, routed_ids};
use crate::core::Settings;

/// Store 1 only, the bootstrap region replaced by `regions` (version 2).
fn cluster_with(regions: &[Region]) -> crate::core::Cluster {
    let mut pd = must_bootstrapped(Settings::default(), &[]);
    pd.report_batch_split(regions).unwrap();
    pd
}

fn three_regions() -> Vec<Region> {
    vec![
        region(1, "", "b", (1, 2), &[(1, 1)]),
        region(2, "b", "d", (1, 2), &[(2, 1)]),
        region(3, "d", "", (1, 2), &[(3, 1)]),
    ]
}

#[test]
fn locate_across_bounded_and_unbounded_regions() {
    let pd = cluster_with(&three_regions());
    let cases: &[(&[u8], u64)] = &[
        (b"", 1),
        (b"a", 1),
        (b"a\xff\xff", 1),
        (b"b", 2),
        (b"b\x00", 2),
        (b"c", 2),
        (b"d", 3),
        (b"zzzz", 3),
        (b"\xff\xff\xff", 3),
    ];
    for &(key, want) in cases {
        let got = pd.get_region(key).map(|r| r.region.id.get());
        assert_eq!(got, Some(want), "key {}", key.escape_ascii());
    }
    assert_eq!(pd.get_region_by_id(RegionId(2)).unwrap().region.start_key, b"b");
    assert_eq!(pd.get_region_by_id(RegionId(9)), None);
}

#[test]
fn a_key_in_a_gap_has_no_region() {
    // Region 2 [b, d) is not reported yet after the split of 1.
    let pd = cluster_with(&[region(1, "", "b", (1, 2), &[(1, 1)]), region(3, "d", "", (1, 2), &[(3, 1)])]);
    assert_eq!(pd.get_region(b"c"), None);
    assert_eq!(pd.get_region(b"a").unwrap().region.id.get(), 1);
    assert_eq!(pd.get_region(b"e").unwrap().region.id.get(), 3);
}

#[test]
fn split_children_replace_the_parent_in_either_order() {
    let parent = region(1, "", "", (1, 1), &[(1, 1)]);
    let left = region(1, "", "m", (1, 2), &[(1, 1)]);
    let right = region(5, "m", "", (1, 2), &[(6, 1)]);
    for order in [[&left, &right], [&right, &left]] {
        let mut pd = must_bootstrapped(Settings::default(), &[]);
        assert_eq!(pd.get_region(b"x").unwrap().region, parent);
        pd.take_changes();
        for r in order {
            pd.region_heartbeat(&heartbeat(r, r.peers[0]), 1).unwrap();
        }
        assert_eq!(routed_ids(&pd), vec![1, 5]);
        assert_eq!(pd.get_region(b"x").unwrap().region, right);
        assert_eq!(pd.get_region(b"a").unwrap().region, left);
        // The parent record is overwritten or deleted, the child written.
        let changes = pd.take_changes();
        assert!(changes.contains(&Change::PutRegion(left.clone())));
        assert!(changes.contains(&Change::PutRegion(right.clone())));
    }
}

#[test]
fn stale_reports_are_ignored() {
    let cur = region(2, "b", "d", (3, 5), &[(2, 1), (7, 2)]);
    // (report, why it is stale)
    let cases = [
        (region(2, "b", "d", (2, 5), &[(2, 1)]), "lower conf_ver"),
        (region(2, "b", "f", (3, 4), &[(2, 1), (7, 2)]), "lower version"),
        (region(2, "b", "c", (3, 5), &[(2, 1), (7, 2)]), "same epoch, other range"),
        (region(2, "b", "d", (3, 5), &[(2, 1)]), "same epoch, other peers"),
        (region(9, "a", "c", (1, 5), &[(9, 1)]), "overlaps a region of the same version"),
        (region(9, "c", "e", (1, 4), &[(9, 1)]), "overlaps a newer region"),
    ];
    for (report, why) in cases {
        let mut pd = cluster_with(&three_regions());
        pd.report_batch_split(std::slice::from_ref(&cur)).unwrap();
        pd.take_changes();
        let before = pd.scan_regions(b"", b"", 0);
        let answer = pd.region_heartbeat(&heartbeat(&report, report.peers[0]), 5).unwrap();
        assert_eq!(answer.operator, None, "{why}");
        assert_eq!(pd.scan_regions(b"", b"", 0), before, "{why}");
        assert!(pd.take_changes().is_empty(), "{why}");
    }
}

#[test]
fn a_newer_region_removes_every_region_it_overlaps() {
    let mut pd = cluster_with(&three_regions());
    pd.take_changes();
    // Region 4 at version 3 covers [a, e): it overlaps 1 on [a, b), holds
    // 2 whole and overlaps 3 on [d, e); all three are older and go.
    let merged = region(4, "a", "e", (1, 3), &[(4, 1)]);
    pd.region_heartbeat(&heartbeat(&merged, merged.peers[0]), 1).unwrap();
    assert_eq!(routed_ids(&pd), vec![4]);
    assert_eq!(pd.get_region(b"0"), None);
    assert_eq!(pd.get_region(b"f"), None);
    let changes = pd.take_changes();
    for id in [1, 2, 3] {
        assert!(changes.contains(&Change::DeleteRegion(RegionId(id))), "{changes:?}");
    }
    assert!(changes.contains(&Change::PutRegion(merged)));
}

#[test]
fn leader_updates_follow_non_stale_heartbeats_only() {
    let r = region(2, "", "", (2, 2), &[(2, 1), (3, 2), (4, 3)]);
    let mut pd = must_bootstrapped(Settings::default(), &[2, 3]);
    pd.region_heartbeat(&heartbeat(&r, peer(3, 2)), 1).unwrap();
    assert_eq!(pd.get_region(b"k").unwrap().leader, Some(peer(3, 2)));
    // Same epoch, new leader: accepted, nothing persisted.
    pd.take_changes();
    let mut hb = heartbeat(&r, peer(4, 3));
    hb.leader_shard = 1;
    pd.region_heartbeat(&hb, 2).unwrap();
    let route = pd.get_region(b"k").unwrap();
    assert_eq!((route.leader, route.leader_shard), (Some(peer(4, 3)), 1));
    assert!(pd.take_changes().is_empty());
    // A stale heartbeat's leader is ignored.
    let old = region(2, "", "", (1, 2), &[(2, 1), (3, 2)]);
    pd.region_heartbeat(&heartbeat(&old, peer(2, 1)), 3).unwrap();
    assert_eq!(pd.get_region(b"k").unwrap().leader, Some(peer(4, 3)));
    // A leader that is not a peer is not recorded.
    pd.region_heartbeat(&heartbeat(&r, peer(99, 9)), 4).unwrap();
    assert_eq!(pd.get_region(b"k").unwrap().leader, None);
}

#[test]
fn scan_honours_ranges_and_limits() {
    let mut regions = three_regions();
    regions[2] = region(3, "d", "f", (1, 2), &[(3, 1)]);
    regions.push(region(4, "f", "", (1, 2), &[(4, 1)]));
    let pd = cluster_with(&regions);
    // (start, end, limit, expected ids)
    let cases: &[(&str, &str, usize, &[u64])] = &[
        ("", "", 0, &[1, 2, 3, 4]),
        ("", "", 2, &[1, 2]),
        ("c", "", 0, &[2, 3, 4]),
        ("c", "e", 0, &[2, 3]),
        ("b", "d", 0, &[2]),
        ("b", "d\x00", 0, &[2, 3]),
        ("a", "b", 0, &[1]),
        ("f", "", 1, &[4]),
        ("zz", "", 0, &[4]),
        ("d", "d", 0, &[]),
        ("e", "", 10, &[3, 4]),
    ];
    for &(start, end, limit, want) in cases {
        let got: Vec<u64> = pd
            .scan_regions(start.as_bytes(), end.as_bytes(), limit)
            .iter()
            .map(|r| r.region.id.get())
            .collect();
        assert_eq!(got, want, "scan [{start:?}, {end:?}) limit {limit}");
    }
}

#[test]
fn report_batch_split_needs_a_bootstrapped_cluster() {
    let mut pd = crate::core::Cluster::new(Settings::default());
    let req = ReportBatchSplitRequest { regions: three_regions() };
    assert_eq!(pd.report_batch_split(&req.regions), Err(crate::core::Error::NotBootstrapped));
}
