//! Store lifecycle: registration, liveness, decommission; and bootstrap.

use ekv_proto::msg::{StoreHeartbeatRequest, StoreMeta, StoreState};
use ekv_proto::StoreId;

use super::{heartbeat, must_bootstrapped, peer, region, store};
use crate::core::{Change, Cluster, Error, Settings, StoreHealth};

#[test]
fn registration_rules() {
    let mut pd = must_bootstrapped(Settings::default(), &[2, 3]);
    pd.delete_store(StoreId(3)).unwrap();
    assert_eq!(pd.store(StoreId(3)).unwrap().state, StoreState::Tombstone, "no replicas: tombstoned at once");
    pd.take_changes();
    let moved = StoreMeta { address: "10.0.0.99:20160".into(), shard_count: 4, ..store(2) };
    // (request, expected result, expected persisted meta)
    let cases: Vec<(StoreMeta, Result<(), Error>, Option<StoreMeta>)> = vec![
        (store(4), Ok(()), Some(store(4))),
        (store(2), Ok(()), None),
        (moved.clone(), Ok(()), Some(moved.clone())),
        (
            StoreMeta { state: StoreState::Tombstone, ..moved.clone() },
            Ok(()),
            None, // the state in a registration is ignored
        ),
        (store(3), Err(Error::StoreTombstoned { store: StoreId(3) }), None),
        (
            StoreMeta { id: StoreId(5), ..store(1) },
            Err(Error::DuplicateAddress { address: store(1).address, store: StoreId(1) }),
            None,
        ),
        // A tombstone's address may be used again.
        (StoreMeta { id: StoreId(6), ..store(3) }, Ok(()), Some(StoreMeta { id: StoreId(6), ..store(3) })),
        (StoreMeta { id: StoreId(0), ..store(7) }, Err(Error::ZeroId { what: "store" }), None),
    ];
    for (req, want, persisted) in cases {
        assert_eq!(pd.put_store(req.clone(), 1), want, "{req:?}");
        let changes = pd.take_changes();
        let puts: Vec<&Change> = changes.iter().filter(|c| matches!(c, Change::PutStore(_))).collect();
        assert_eq!(puts, persisted.map(Change::PutStore).iter().collect::<Vec<_>>(), "{req:?}");
    }
    assert_eq!(pd.store(StoreId(2)), Some(&moved));
    let live: Vec<u64> = pd.stores(true).iter().map(|s| s.id.get()).collect();
    assert_eq!(live, vec![1, 2, 4, 6]);
    assert_eq!(pd.stores(false).len(), 5);
    assert_eq!(
        Cluster::new(Settings::default()).put_store(store(1), 0),
        Err(Error::NotBootstrapped),
        "stores join a bootstrapped cluster"
    );
}

#[test]
fn a_store_is_down_after_the_timeout_without_heartbeats() {
    let settings = Settings { down_after_ms: 30_000, ..Settings::default() };
    let mut pd = must_bootstrapped(settings, &[2]);
    let hb = |id| StoreHeartbeatRequest {
        store_id: StoreId(id),
        capacity: 100,
        available: 50,
        ..Default::default()
    };
    pd.store_heartbeat(&hb(2), 10_000).unwrap();
    // (now, expected state of store 2; store 1 last seen at 0)
    let cases = [
        (10_000, StoreHealth::Up),
        (39_999, StoreHealth::Up),
        (40_000, StoreHealth::Down),
        (1_000_000, StoreHealth::Down),
    ];
    for (now, want) in cases {
        assert_eq!(pd.store_health(StoreId(2), now), Some(want), "at {now}");
    }
    assert_eq!(pd.store_health(StoreId(1), 29_999), Some(StoreHealth::Up));
    assert_eq!(pd.store_health(StoreId(1), 30_000), Some(StoreHealth::Down));
    // A heartbeat brings it back; Down was never persisted.
    pd.take_changes();
    pd.store_heartbeat(&hb(2), 1_000_000).unwrap();
    assert_eq!(pd.store_health(StoreId(2), 1_000_001), Some(StoreHealth::Up));
    assert!(pd.take_changes().is_empty());
    assert_eq!(pd.store_heartbeat(&hb(9), 1), Err(Error::StoreNotFound { store: StoreId(9) }));
    assert_eq!(pd.store_health(StoreId(9), 1), None);
}

#[test]
fn a_new_leader_grants_every_store_a_fresh_timeout() {
    let mut pd = must_bootstrapped(Settings::default(), &[2]);
    let records: Vec<_> = pd.take_changes().iter().map(Change::to_record).collect();
    let pd = Cluster::load(Settings::default(), records, 500_000).unwrap();
    assert_eq!(pd.store_health(StoreId(2), 500_000 + 29_999), Some(StoreHealth::Up));
    assert_eq!(pd.store_health(StoreId(2), 500_000 + 30_000), Some(StoreHealth::Down));
}

#[test]
fn decommission_ends_in_a_tombstone_once_the_store_is_empty() {
    let mut pd = must_bootstrapped(Settings::default(), &[2, 3, 4]);
    let r = region(1, "", "", (2, 1), &[(1, 1), (2, 2), (4, 4)]);
    pd.region_heartbeat(&heartbeat(&r, peer(1, 1)), 1).unwrap();
    pd.take_changes();
    assert_eq!(pd.delete_store(StoreId(9)), Err(Error::StoreNotFound { store: StoreId(9) }));
    pd.delete_store(StoreId(4)).unwrap();
    let offline = StoreMeta { state: StoreState::Offline, ..store(4) };
    assert_eq!(pd.take_changes(), vec![Change::PutStore(offline.clone())]);
    assert_eq!(pd.store_health(StoreId(4), 2), Some(StoreHealth::Offline));
    // Deleting again changes nothing; an Offline store may still register
    // (it restarted) and stays Offline.
    pd.delete_store(StoreId(4)).unwrap();
    pd.put_store(store(4), 3).unwrap();
    assert!(pd.take_changes().is_empty());
    assert_eq!(pd.store(StoreId(4)), Some(&offline));
    // The replica leaves: the store becomes a tombstone, for good.
    let moved = region(1, "", "", (4, 1), &[(1, 1), (2, 2), (3, 3)]);
    pd.region_heartbeat(&heartbeat(&moved, peer(1, 1)), 4).unwrap();
    let tomb = StoreMeta { state: StoreState::Tombstone, ..store(4) };
    assert!(pd.take_changes().contains(&Change::PutStore(tomb.clone())));
    assert_eq!(pd.store(StoreId(4)), Some(&tomb));
    assert_eq!(pd.put_store(store(4), 5), Err(Error::StoreTombstoned { store: StoreId(4) }));
    let hb = StoreHeartbeatRequest { store_id: StoreId(4), ..Default::default() };
    assert_eq!(pd.store_heartbeat(&hb, 5), Err(Error::StoreTombstoned { store: StoreId(4) }));
    pd.delete_store(StoreId(4)).unwrap();
}

#[test]
fn bootstrap_succeeds_once() {
    let good = region(2, "", "", (1, 1), &[(3, 1)]);
    // (store, region, expected error)
    let cases = [
        (store(1), region(0, "", "", (1, 1), &[(3, 1)]), Error::ZeroId { what: "region" }),
        (
            store(1),
            region(2, "a", "", (1, 1), &[(3, 1)]),
            Error::InvalidBootstrap { what: "the first region must cover every key" },
        ),
        (
            store(1),
            region(2, "", "", (1, 1), &[]),
            Error::InvalidBootstrap { what: "the first region has no peer" },
        ),
        (
            store(1),
            region(2, "", "", (1, 1), &[(3, 2)]),
            Error::InvalidBootstrap { what: "the first region's peers must be on the first store" },
        ),
        (StoreMeta { id: StoreId(0), ..store(1) }, good.clone(), Error::ZeroId { what: "store" }),
    ];
    for (s, r, want) in cases {
        let mut pd = Cluster::new(Settings::default());
        assert_eq!(pd.bootstrap(s, r.clone(), 0), Err(want), "{r:?}");
        assert!(!pd.is_bootstrapped());
        assert!(pd.take_changes().is_empty());
    }
    let mut pd = Cluster::new(Settings::default());
    let hb = heartbeat(&good, peer(3, 1));
    assert_eq!(pd.region_heartbeat(&hb, 0), Err(Error::NotBootstrapped));
    pd.bootstrap(store(1), good.clone(), 0).unwrap();
    assert!(pd.is_bootstrapped());
    let changes = pd.take_changes();
    assert!(changes.contains(&Change::Bootstrapped));
    assert!(changes.contains(&Change::PutRegion(good.clone())));
    assert!(changes.contains(&Change::PutStore(store(1))));
    assert_eq!(pd.bootstrap(store(1), good, 0), Err(Error::AlreadyBootstrapped));
    assert_eq!(pd.get_region(b"x").unwrap().region.id.get(), 2);
}
