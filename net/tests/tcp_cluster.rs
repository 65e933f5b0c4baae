//! Three stores in one process whose raft traffic goes over real loopback
//! TCP: the shard servers receive it, the TCP transport sends it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ekv_engine::{Command, Config, Request, Response, WriteOp};
use ekv_net::local::LoopbackCluster;
use ekv_net::server::ServerConfig;
use ekv_proto::{RegionEpoch, RegionId};

#[test]
fn three_stores_replicate_over_tcp() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The meta service stays in process; raft traffic goes over TCP.
    let cfg = Config { shards: 2, tick_interval: Duration::from_millis(10), ..Config::default() };
    let cluster = LoopbackCluster::start(dir.path(), 3, cfg, ServerConfig::default()).expect("cluster");
    let leader = cluster.wait_leader(RegionId(1), Duration::from_secs(30)).expect("a leader over TCP");
    let stores: Vec<&ekv_engine::Store> =
        cluster.running().into_iter().filter_map(|s| cluster.store(s)).collect();
    let leader = stores.iter().position(|s| s.store_id() == leader).expect("leader runs");
    let epoch = RegionEpoch { conf_ver: 1, version: 1 };
    for i in 0..50u32 {
        let op = WriteOp::Put {
            cf: "default".into(),
            key: Bytes::from(format!("k{i:02}")),
            value: Bytes::from("v"),
        };
        let req = Request { region_id: RegionId(1), epoch, cmd: Command::Write(vec![op]) };
        assert_eq!(stores[leader].call_blocking(req).expect("put"), Response::Written);
    }
    // Every replica applies every write.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let applied: Vec<u64> = stores
            .iter()
            .map(|s| {
                futures::executor::block_on(s.status()).iter().map(|p| p.applied_index).max().unwrap_or(0)
            })
            .collect();
        if applied.iter().all(|a| *a == applied[0] && *a >= 50) {
            break;
        }
        assert!(Instant::now() < deadline, "replicas did not converge: {applied:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    cluster.stop().expect("stop");
}
