//! Persistence: the changes a cluster queues rebuild the same cluster.

use std::collections::BTreeMap;

use ekv_proto::msg::StoreHeartbeatRequest;
use ekv_proto::{Region, StoreId};

use super::{heartbeat, must_bootstrapped, peer, region};
use crate::core::{Change, Cluster, Error, Record, Settings};

/// Runs a little history: stores join, the region splits twice, replicas
/// move, a store is decommissioned. Returns the cluster and every record
/// it asked to persist, in order.
fn history() -> (Cluster, Vec<Record>) {
    let mut pd = must_bootstrapped(Settings::default(), &[2, 3, 4]);
    let mut log: Vec<Record> = Vec::new();
    let mut persist = |pd: &mut Cluster| log.extend(pd.take_changes().iter().map(Change::to_record));
    persist(&mut pd);
    let steps: Vec<Vec<Region>> = vec![
        vec![region(1, "", "", (3, 1), &[(1, 1), (5, 2), (6, 3)])],
        vec![
            region(1, "", "m", (3, 2), &[(1, 1), (5, 2), (6, 3)]),
            region(7, "m", "", (3, 2), &[(8, 1), (9, 2), (10, 3)]),
        ],
        vec![
            region(11, "", "f", (3, 3), &[(12, 1), (13, 2), (14, 3)]),
            region(1, "f", "m", (3, 3), &[(1, 1), (5, 2), (6, 3)]),
        ],
        vec![region(7, "m", "", (5, 2), &[(8, 1), (9, 2), (15, 4)])],
    ];
    for (i, regions) in steps.iter().enumerate() {
        if i == 2 {
            pd.report_batch_split(regions).unwrap();
        } else {
            for r in regions {
                pd.region_heartbeat(&heartbeat(r, r.peers[0]), i as u64).unwrap();
            }
        }
        persist(&mut pd);
    }
    pd.delete_store(StoreId(4)).unwrap();
    pd.alloc_ids(17).unwrap();
    persist(&mut pd);
    let hb = StoreHeartbeatRequest { store_id: StoreId(2), capacity: 10, ..Default::default() };
    pd.store_heartbeat(&hb, 9).unwrap();
    persist(&mut pd);
    (pd, log)
}

fn assert_same(a: &Cluster, b: &Cluster) {
    let regions = |c: &Cluster| c.scan_regions(b"", b"", 0).into_iter().map(|r| r.region).collect::<Vec<_>>();
    assert_eq!(regions(a), regions(b));
    assert_eq!(a.stores(false), b.stores(false));
    assert_eq!(a.is_bootstrapped(), b.is_bootstrapped());
    assert_eq!(a.id_end(), b.id_end());
    assert_eq!(a.regions().len(), b.regions().len());
}

#[test]
fn replaying_every_change_rebuilds_the_cluster() {
    let (pd, log) = history();
    assert_eq!(
        pd.scan_regions(b"", b"", 0).iter().map(|r| r.region.id.get()).collect::<Vec<_>>(),
        vec![11, 1, 7]
    );
    let loaded = Cluster::load(Settings::default(), log, 100).unwrap();
    assert_same(&pd, &loaded);
}

#[test]
fn loading_the_live_keys_in_key_order_rebuilds_the_cluster() {
    let (pd, log) = history();
    // What a key-value store holds after applying the log.
    let mut kv: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    for rec in log {
        match rec.value {
            Some(v) => kv.insert(rec.key, v),
            None => kv.remove(&rec.key),
        };
    }
    let records = kv.into_iter().map(|(key, value)| Record { key, value: Some(value) });
    let mut loaded = Cluster::load(Settings::default(), records, 100).unwrap();
    assert_same(&pd, &loaded);
    // The reloaded cluster keeps working: ids continue past the end.
    let end = pd.id_end();
    assert!(loaded.alloc_ids(1).unwrap() >= end);
}

#[test]
fn heartbeats_without_an_epoch_change_persist_nothing() {
    let mut pd = must_bootstrapped(Settings::default(), &[2, 3]);
    let r = region(1, "", "", (3, 1), &[(1, 1), (2, 2), (3, 3)]);
    pd.region_heartbeat(&heartbeat(&r, peer(1, 1)), 1).unwrap();
    assert!(pd.take_changes().contains(&Change::PutRegion(r.clone())));
    for (i, leader) in [peer(2, 2), peer(3, 3), peer(1, 1)].into_iter().enumerate() {
        let mut hb = heartbeat(&r, leader);
        hb.approximate_size = 1000 * i as u64;
        hb.bytes_written = 77;
        hb.pending_peers = vec![peer(3, 3)];
        pd.region_heartbeat(&hb, 2 + i as u64).unwrap();
        assert_eq!(pd.take_changes(), vec![], "heartbeat {i}");
    }
}

#[test]
fn a_corrupt_record_fails_the_load() {
    let (_, mut log) = history();
    let last = log.iter().rposition(|r| r.value.is_some()).unwrap();
    if let Some(v) = log[last].value.as_mut() {
        let n = v.len();
        v[n - 1] ^= 1;
    }
    assert!(matches!(Cluster::load(Settings::default(), log, 0), Err(Error::BadRecord { .. })));
}
