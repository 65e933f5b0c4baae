//! Three stores in one process whose raft traffic goes over real loopback
//! TCP: the shard servers receive it, the TCP transport sends it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ekv_engine::{Command, Config, LocalNetwork, LocalPd, Request, Response, Store, StoreSpec, WriteOp};
use ekv_net::local::{free_base_port, serve_shards};
use ekv_net::server::ServerConfig;
use ekv_net::transport::{Resolver, TcpTransport};
use ekv_proto::frame::FrameLimits;
use ekv_proto::{PeerId, PeerMeta, Region, RegionEpoch, RegionId, StoreId};

#[test]
fn three_stores_replicate_over_tcp() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Each store's two shards listen on two consecutive ports.
    let base = free_base_port(ServerConfig::default().host, 6).expect("free ports");
    let ports: HashMap<u64, u16> = (1..=3u64).map(|s| (s, base + (s as u16 - 1) * 2)).collect();
    let addrs: Arc<HashMap<StoreId, SocketAddr>> =
        Arc::new(ports.iter().map(|(s, p)| (StoreId(*s), SocketAddr::from(([127, 0, 0, 1], *p)))).collect());
    let resolver: Resolver = {
        let addrs = addrs.clone();
        Arc::new(move |s: StoreId| addrs.get(&s).copied())
    };
    // The meta service stays in process; raft traffic goes over TCP.
    let net = LocalNetwork::new();
    let pd = LocalPd::new(net.clone(), 1000);
    let mut stores = Vec::new();
    for s in 1..=3u64 {
        let cfg = Config { shards: 2, tick_interval: Duration::from_millis(10), ..Config::default() };
        let resolver = resolver.clone();
        let transport: ekv_engine::fsm::TransportFactory = Box::new(move |_shard| {
            Box::new(TcpTransport::new(resolver.clone(), FrameLimits::default()))
                as Box<dyn ekv_engine::Transport>
        });
        let mut spec = StoreSpec::new(
            cfg,
            dir.path().join(format!("s{s}")),
            StoreId(s),
            transport,
            pd.client_for(StoreId(s)),
        );
        serve_shards(&mut spec, ServerConfig { base_port: ports[&s], ..ServerConfig::default() });
        let store = Store::start(spec).expect("start");
        net.register(&store);
        stores.push(store);
    }
    let region = Region {
        id: RegionId(1),
        epoch: RegionEpoch { conf_ver: 1, version: 1 },
        peers: (1..=3).map(|s| PeerMeta { id: PeerId(s), store_id: StoreId(s) }).collect(),
        ..Region::default()
    };
    for st in &stores {
        futures::executor::block_on(st.bootstrap_region(region.clone())).expect("bootstrap");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let leader = loop {
        if let Some(i) =
            stores.iter().position(|s| futures::executor::block_on(s.status()).iter().any(|p| p.is_leader))
        {
            break i;
        }
        assert!(Instant::now() < deadline, "no leader over TCP");
        std::thread::sleep(Duration::from_millis(5));
    };
    for i in 0..50u32 {
        let op = WriteOp::Put {
            cf: "default".into(),
            key: Bytes::from(format!("k{i:02}")),
            value: Bytes::from("v"),
        };
        let req = Request { region_id: RegionId(1), epoch: region.epoch, cmd: Command::Write(vec![op]) };
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
    for s in stores {
        s.stop().expect("stop");
    }
}
