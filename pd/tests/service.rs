//! The meta service for real: members and stores in one process talking
//! over loopback TCP, a client that finds everything through the meta
//! service, replica repair after a store is lost, and a meta-service
//! leader change that loses no metadata.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ekv_client::rt::block_on;
use ekv_client::{Client, Config as ClientConfig, MetaClient, MetaConfig};
use ekv_engine::Config;
use ekv_net::local::free_base_port;
use ekv_pd::core::Settings;
use ekv_pd::member::{Member, MemberConfig};
use ekv_pd::node::{NodeConfig, StoreNode};
use ekv_proto::msg::{AnyMessage, GetAllStoresRequest, GetRegionRequest, RegionRoute};
use ekv_proto::StoreId;

fn engine() -> Config {
    Config {
        shards: 2,
        tick_interval: Duration::from_millis(10),
        pd_heartbeat_ticks: 10,
        pd_store_heartbeat_ticks: 10,
        ..Config::default()
    }
}

fn settings() -> Settings {
    // This machine's disk is past the default 80% full mark.
    Settings { down_after_ms: 1_000, max_used_ratio: 1.0, ..Settings::default() }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

struct Cluster {
    _dir: tempfile::TempDir,
    members: Vec<Option<Member>>,
    member_cfgs: Vec<MemberConfig>,
    stores: Vec<Option<StoreNode>>,
    endpoints: Vec<String>,
    next_port: u16,
    root: std::path::PathBuf,
}

impl Cluster {
    fn start(members: u64, stores: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        let base = free_base_port([127, 0, 0, 1].into(), 40).expect("ports");
        let list: Vec<(u64, String)> =
            (1..=members).map(|m| (m, addr(base + m as u16 - 1).to_string())).collect();
        let member_cfgs: Vec<MemberConfig> = (1..=members)
            .map(|m| MemberConfig {
                id: m,
                members: list.clone(),
                data_dir: root.join(format!("pd{m}")),
                engine: Config { tick_interval: Duration::from_millis(10), ..Config::default() },
                settings: settings(),
                ..MemberConfig::single("unused:0", "unused")
            })
            .collect();
        let started: Vec<Option<Member>> =
            member_cfgs.iter().map(|c| Some(Member::start(c.clone()).expect("member starts"))).collect();
        let endpoints = list.iter().map(|(_, a)| a.clone()).collect();
        let mut c = Self {
            _dir: dir,
            members: started,
            member_cfgs,
            stores: Vec::new(),
            endpoints,
            next_port: base + 10,
            root,
        };
        for _ in 0..stores {
            c.add_store();
        }
        c
    }

    fn add_store(&mut self) -> usize {
        let i = self.stores.len();
        let port = self.next_port;
        self.next_port += 2;
        let cfg = NodeConfig {
            pd_endpoints: self.endpoints.clone(),
            engine: engine(),
            ..NodeConfig::new("", self.root.join(format!("store{i}")), addr(port))
        };
        self.stores.push(Some(StoreNode::start(cfg).expect("store starts")));
        i
    }

    fn meta(&self) -> MetaClient {
        MetaClient::new(MetaConfig { endpoints: self.endpoints.clone(), ..MetaConfig::default() })
            .expect("meta")
    }

    fn client(&self) -> Client {
        Client::new(ClientConfig {
            pd_endpoints: self.endpoints.clone(),
            timeout: Duration::from_secs(20),
            ..ClientConfig::default()
        })
        .expect("client")
    }

    fn route(&self, key: &[u8]) -> Option<RegionRoute> {
        match block_on(self.meta().call(&GetRegionRequest { key: key.to_vec(), before: false })) {
            Ok(AnyMessage::GetRegionResponse(r)) => r.route,
            _ => None,
        }
    }

    /// The meta service's status view.
    fn status(&self) -> serde_json::Value {
        match block_on(self.meta().call(&ekv_proto::msg::GetStatusRequest)) {
            Ok(AnyMessage::GetStatusResponse(s)) => serde_json::from_slice(&s.json).expect("status is JSON"),
            other => panic!("status: {other:?}"),
        }
    }

    /// True when the meta service has nothing in flight and every replica
    /// it knows is a voter.
    fn settled(&self) -> bool {
        let st = self.status();
        let no_ops = st["operators"].as_array().is_some_and(Vec::is_empty);
        let voters = st["regions"].as_array().is_some_and(|rs| {
            rs.iter()
                .all(|r| r["peers"].as_array().is_some_and(|ps| ps.iter().all(|p| p["role"] != "learner")))
        });
        no_ops && voters
    }

    /// Waits until `cond` holds for the route of the first region.
    fn wait_route(&self, what: &str, cond: impl Fn(&RegionRoute) -> bool) -> RegionRoute {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(r) = self.route(b"") {
                if cond(&r) {
                    return r;
                }
            }
            if Instant::now() >= deadline {
                let status = match block_on(self.meta().call(&ekv_proto::msg::GetStatusRequest)) {
                    Ok(AnyMessage::GetStatusResponse(s)) => String::from_utf8_lossy(&s.json).into_owned(),
                    other => format!("{other:?}"),
                };
                let peers: Vec<String> = self
                    .stores
                    .iter()
                    .flatten()
                    .map(|s| {
                        let st = futures::executor::block_on(s.store().status());
                        let ps: Vec<String> = st
                            .iter()
                            .map(|p| {
                                format!(
                                    "{} {} applied {} leader {}",
                                    p.region.id, p.peer.id, p.applied_index, p.is_leader
                                )
                            })
                            .collect();
                        let stats = futures::executor::block_on(s.store().handle().stats());
                        let snaps: Vec<(u64, u64, u64)> = stats
                            .iter()
                            .map(|x| (x.snapshots_generated, x.snapshots_applied, x.messages_sent))
                            .collect();
                        format!("{}: {ps:?} snaps {snaps:?}", s.id())
                    })
                    .collect();
                panic!(
                    "timed out waiting for {what}: {:?}\nstatus: {status}\nstores: {peers:#?}",
                    self.route(b"")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(mut self) {
        for s in self.stores.iter_mut().filter_map(Option::take) {
            s.stop().expect("store stops");
        }
        for m in self.members.iter_mut().filter_map(Option::take) {
            m.stop().expect("member stops");
        }
    }
}

fn stores_of(route: &RegionRoute) -> BTreeSet<StoreId> {
    route.region.peers.iter().map(|p| p.store_id).collect()
}

#[test]
fn stores_join_a_client_finds_them_and_a_lost_replica_is_replaced() {
    let mut c = Cluster::start(1, 3);
    let client = c.client();
    client.put(b"hello", b"world").expect("put through the meta service's routes");
    assert_eq!(client.get(b"hello").expect("get"), Some(b"world".to_vec()));

    // The first region starts with one replica; repair brings it to three.
    let full =
        c.wait_route("three voters", |r| r.region.peers.len() == 3 && r.leader.is_some() && c.settled());
    assert_eq!(stores_of(&full).len(), 3);
    for i in 0..100u32 {
        client.put(format!("k{i:03}").as_bytes(), b"v").expect("put");
    }

    // A store that is not the leader goes away; a fourth store joins and
    // the lost replica is rebuilt on it.
    let leader_store = full.leader.expect("leader").store_id;
    let victim = c
        .stores
        .iter()
        .position(|s| s.as_ref().is_some_and(|s| s.id() != leader_store))
        .expect("a follower store");
    let victim_id = c.stores[victim].as_ref().expect("running").id();
    c.stores[victim].take().expect("running").stop().expect("stop");
    let fourth = c.add_store();
    let fourth_id = c.stores[fourth].as_ref().expect("running").id();
    let repaired = c.wait_route("the lost replica replaced", |r| {
        let s = stores_of(r);
        r.region.peers.len() == 3 && !s.contains(&victim_id) && s.contains(&fourth_id) && c.settled()
    });
    assert_eq!(stores_of(&repaired).len(), 3);
    for i in 0..100u32 {
        assert_eq!(client.get(format!("k{i:03}").as_bytes()).expect("get"), Some(b"v".to_vec()));
    }
    let stores = match block_on(c.meta().call(&GetAllStoresRequest { exclude_tombstones: false })) {
        Ok(AnyMessage::GetAllStoresResponse(r)) => r.stores,
        other => panic!("GetAllStores: {other:?}"),
    };
    assert_eq!(stores.len(), 4, "every store registered once");
    c.stop();
}

#[test]
fn a_new_meta_service_leader_serves_everything_acknowledged() {
    let mut c = Cluster::start(3, 3);
    let client = c.client();
    client.put(b"a", b"1").expect("put");
    let before = c.wait_route("three voters", |r| r.region.peers.len() == 3 && c.settled());
    // Stop the meta-service leader.
    let leader = c.members.iter().position(|m| m.as_ref().is_some_and(Member::is_leader)).expect("a leader");
    c.members[leader].take().expect("running").stop().expect("stop");
    // A new leader answers with the same region and stores.
    let after = c.wait_route("a new meta-service leader", |r| r.region.id == before.region.id);
    assert_eq!(after.region.peers, before.region.peers);
    assert_eq!(client.get(b"a").expect("get"), Some(b"1".to_vec()));
    client.put(b"b", b"2").expect("put after the change");
    // The stopped member rejoins on its data.
    c.members[leader] = Some(Member::start(c.member_cfgs[leader].clone()).expect("restart"));
    c.stop();
}
