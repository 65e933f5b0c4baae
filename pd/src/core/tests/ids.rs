//! Ids: reservations, split ids, and no id handed out twice, even across
//! a reload from the persisted changes.

use std::collections::BTreeSet;

use ekv_proto::msg::SplitIds;
use ekv_proto::{PeerId, RegionEpoch, RegionId};

use super::{must_bootstrapped, region, store};
use crate::core::{Change, Cluster, Error, Record, Settings};

fn settings() -> Settings {
    Settings { id_batch: 10, max_id_count: 100, ..Settings::default() }
}

fn id_ends(changes: &[Change]) -> Vec<u64> {
    changes.iter().filter_map(|c| if let Change::IdEnd(e) = c { Some(*e) } else { None }).collect()
}

#[test]
fn ids_come_from_reservations_persisted_with_the_call() {
    let mut pd = must_bootstrapped(settings(), &[]);
    // Bootstrap ids (region 1, peer 1, store 1) are never handed out.
    let end = pd.id_end();
    assert_eq!(id_ends(&pd.take_changes()), vec![end]);
    let first = pd.alloc_ids(1).unwrap();
    assert!(first >= 2);
    assert!(pd.take_changes().is_empty(), "inside the reservation");
    // (count, expects a new reservation in the same call's changes)
    let mut next = first + 1;
    for count in [3, 5, 10, 1, 40] {
        let need = next + count > pd.id_end();
        assert_eq!(pd.alloc_ids(count).unwrap(), next);
        next += count;
        let ends = id_ends(&pd.take_changes());
        assert_eq!(!ends.is_empty(), need, "count {count}");
        assert!(pd.id_end() >= next);
        if need {
            assert_eq!(ends, vec![pd.id_end()]);
        }
    }
    assert_eq!(pd.alloc_ids(0), Err(Error::InvalidCount { count: 0, max: 100 }));
    assert_eq!(pd.alloc_ids(101), Err(Error::InvalidCount { count: 101, max: 100 }));
}

#[test]
fn no_id_is_handed_out_twice_across_reloads() {
    let mut records: Vec<Record> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut pd = must_bootstrapped(settings(), &[2, 3]);
    let r = region(1, "", "", (3, 1), &[(1, 1), (4, 2), (5, 3)]);
    for round in 0..5u64 {
        for count in [1, 7, 3] {
            let first = pd.alloc_ids(count).unwrap();
            for id in first..first + count {
                assert!(seen.insert(id), "id {id} handed out twice (round {round})");
            }
        }
        let mut split = r.clone();
        split.epoch.version += round;
        for ids in pd.ask_batch_split(&split, 2).unwrap() {
            let all =
                std::iter::once(ids.new_region_id.get()).chain(ids.new_peer_ids.iter().map(|p| p.get()));
            for id in all {
                assert!(seen.insert(id), "split id {id} handed out twice (round {round})");
            }
        }
        records.extend(pd.take_changes().iter().map(Change::to_record));
        // The leader changes: the next one loads what was persisted.
        pd = Cluster::load(settings(), records.clone(), round * 1000).unwrap();
    }
}

#[test]
fn bootstrap_ids_chosen_by_the_store_are_skipped() {
    let mut pd = Cluster::new(settings());
    pd.bootstrap(store(700), region(500, "", "", (1, 1), &[(900, 700)]), 0).unwrap();
    assert!(pd.alloc_ids(1).unwrap() > 900);
    let records: Vec<Record> = pd.take_changes().iter().map(Change::to_record).collect();
    let mut again = Cluster::load(settings(), records, 0).unwrap();
    assert!(again.alloc_ids(1).unwrap() > 901);
}

#[test]
fn batch_split_ids_follow_the_parent_peer_order() {
    let mut pd = must_bootstrapped(settings(), &[2, 3]);
    let parent = region(1, "", "", (3, 4), &[(10, 3), (11, 1), (12, 2)]);
    pd.report_batch_split(std::slice::from_ref(&parent)).unwrap();
    let ids = pd.ask_batch_split(&parent, 2).unwrap();
    assert_eq!(ids.len(), 2);
    let first = ids[0].new_region_id.get();
    let want: Vec<SplitIds> = (0..2)
        .map(|i| SplitIds {
            new_region_id: RegionId(first + 4 * i),
            new_peer_ids: (1..=3).map(|j| PeerId(first + 4 * i + j)).collect(),
        })
        .collect();
    assert_eq!(ids, want);
    // (request, expected error)
    let stale = ekv_proto::Region { epoch: RegionEpoch { conf_ver: 3, version: 3 }, ..parent.clone() };
    let cases = [
        (
            stale,
            1,
            Error::StaleRegion {
                region: RegionId(1),
                epoch: RegionEpoch { conf_ver: 3, version: 3 },
                current: parent.epoch,
            },
        ),
        (parent.clone(), 0, Error::InvalidCount { count: 0, max: 25 }),
        (parent.clone(), 26, Error::InvalidCount { count: 26, max: 25 }),
    ];
    for (r, count, want) in cases {
        assert_eq!(pd.ask_batch_split(&r, count), Err(want));
    }
    // A region the table does not know yet (a fresh split child) may ask.
    let child = region(77, "m", "", (3, 5), &[(78, 1)]);
    assert_eq!(pd.ask_batch_split(&child, 1).unwrap()[0].new_peer_ids.len(), 1);
    assert_eq!(Cluster::new(settings()).ask_batch_split(&child, 1), Err(Error::NotBootstrapped));
}
