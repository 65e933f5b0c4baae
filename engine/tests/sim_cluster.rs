//! Cluster scenarios on the deterministic simulator.

mod sim;

use bytes::Bytes;
use ekv_engine::{Command, Response, WriteOp};
use ekv_proto::{RegionId, StoreId};
use sim::{sim_config, SimCluster};

#[test]
fn three_stores_elect_a_leader_and_replicate_writes() {
    let mut c = SimCluster::new(1, 3, 1, sim_config());
    let region = c.bootstrap(&[1, 2, 3]);
    c.must_leader(region.id, 100);
    for i in 0..50u32 {
        c.must_put(format!("k{i:03}").as_bytes(), format!("v{i}").as_bytes());
    }
    for i in 0..50u32 {
        assert_eq!(c.must_get(format!("k{i:03}").as_bytes()).as_deref(), Some(format!("v{i}").as_bytes()));
    }
    c.run_ticks(20);
    let region = c.region_for(b"k").unwrap();
    let want = c.dump(StoreId(1), &region);
    assert_eq!(want.len(), 50);
    for s in 2..=3 {
        assert_eq!(c.dump(StoreId(s), &region), want, "store {s} differs");
    }
    let st = c.nodes[&StoreId(1)].shards[0].stats();
    assert!(st.wal_writes <= st.rounds, "{st:?}");
}

#[test]
fn a_batch_and_compare_and_swap_apply_atomically() {
    let mut c = SimCluster::new(2, 3, 1, sim_config());
    let region = c.bootstrap(&[1, 2, 3]);
    c.must_leader(region.id, 100);
    let put = |k: &str, v: &str| WriteOp::Put { cf: "default".into(), key: Bytes::from(k.to_owned()), value: Bytes::from(v.to_owned()) };
    c.must(b"a", Command::Write(vec![put("a", "1"), put("b", "2"), WriteOp::Delete { cf: "default".into(), key: "a".into() }]), 200);
    assert_eq!(c.must_get(b"a"), None);
    assert_eq!(c.must_get(b"b").as_deref(), Some(&b"2"[..]));
    let cas = |exp: Option<&'static str>, new: Option<&'static str>| Command::Cas {
        cf: "default".into(),
        key: "b".into(),
        expected: exp.map(Bytes::from),
        new: new.map(Bytes::from),
    };
    assert_eq!(c.must(b"b", cas(Some("1"), Some("3")), 200), Response::Cas { succeeded: false, previous: Some("2".into()) });
    assert_eq!(c.must(b"b", cas(Some("2"), Some("3")), 200), Response::Cas { succeeded: true, previous: Some("2".into()) });
    assert_eq!(c.must(b"b", cas(Some("3"), None), 200), Response::Cas { succeeded: true, previous: Some("3".into()) });
    assert_eq!(c.must_get(b"b"), None);
    let _ = RegionId(1);
}
