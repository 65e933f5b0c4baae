//! The client against three real stores over loopback TCP: operations
//! across region boundaries, and a stream of requests that lives through a
//! leader transfer, splits and a store restart without losing an
//! acknowledged write.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ekv_client::rt::BoxFuture;
use ekv_client::{Client, Config as ClientConfig, Error, KvPair, RouteSource, ScanOptions};
use ekv_engine::{Command, Config, LocalPd, Request, Response};
use ekv_net::local::LoopbackCluster;
use ekv_net::server::ServerConfig;
use ekv_proto::msg::{RegionRoute, StoreMeta};
use ekv_proto::{RegionId, StoreId};

/// Routes from the in-process meta service, as the client would get them
/// from `ekv pd`.
#[derive(Debug)]
struct LocalRoutes {
    pd: LocalPd,
    addrs: HashMap<StoreId, SocketAddr>,
}

impl RouteSource for LocalRoutes {
    fn region<'a>(
        &'a self,
        key: &'a [u8],
        before: bool,
    ) -> BoxFuture<'a, ekv_client::Result<Option<RegionRoute>>> {
        let found = self.pd.regions().into_values().find(|info| {
            let r = &info.region;
            if before {
                (key.is_empty() && r.end_key.is_empty())
                    || (!key.is_empty()
                        && r.start_key.as_slice() < key
                        && (r.end_key.is_empty() || key <= r.end_key.as_slice()))
            } else {
                r.contains(key)
            }
        });
        let route =
            found.map(|info| RegionRoute { region: info.region, leader: info.leader, leader_shard: 0 });
        Box::pin(async move { Ok(route) })
    }

    fn store(&self, id: StoreId) -> BoxFuture<'_, ekv_client::Result<Option<StoreMeta>>> {
        let meta = self.addrs.get(&id).map(|a| StoreMeta {
            id,
            address: a.to_string(),
            shard_count: 2,
            ..StoreMeta::default()
        });
        Box::pin(async move { Ok(meta) })
    }
}

fn start(dir: &std::path::Path) -> (LoopbackCluster, Client) {
    let cfg = Config {
        shards: 2,
        tick_interval: Duration::from_millis(10),
        pd_heartbeat_ticks: 5,
        ..Config::default()
    };
    let cluster = LoopbackCluster::start(dir, 3, cfg, ServerConfig::default()).expect("cluster");
    cluster.wait_leader(RegionId(1), Duration::from_secs(30)).expect("a leader for region 1");
    let addrs = cluster.running().into_iter().map(|s| (s, cluster.store_addr(s).expect("address"))).collect();
    let routes = Arc::new(LocalRoutes { pd: cluster.pd().clone(), addrs });
    let client = Client::with_routes(
        ClientConfig {
            timeout: Duration::from_secs(20),
            request_timeout: Duration::from_secs(2),
            ..ClientConfig::default()
        },
        routes,
    );
    (cluster, client)
}

/// Runs an admin command on `region`'s leader, retrying while leadership moves.
fn admin(cluster: &LoopbackCluster, region: RegionId, cmd: impl Fn() -> Command) -> Response {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leader = cluster.wait_leader(region, Duration::from_secs(30)).expect("a leader");
        let store = cluster.store(leader).expect("leader store runs");
        let status = futures::executor::block_on(store.status());
        if let Some(p) = status.iter().find(|p| p.region.id == region && p.is_leader) {
            let req = Request { region_id: region, epoch: p.region.epoch, cmd: cmd() };
            match store.call_blocking(req) {
                Ok(r) => return r,
                Err(e) => assert!(Instant::now() < deadline, "admin command on {region} failed: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn key(i: u32) -> Vec<u8> {
    format!("k{i:04}").into_bytes()
}

#[test]
fn operations_span_regions_in_both_directions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cluster, client) = start(dir.path());
    let pairs: Vec<KvPair> =
        (0..300).map(|i| KvPair { key: key(i), value: format!("v{i}").into_bytes() }).collect();
    client.batch_put(pairs.clone()).expect("batch put into one region");
    // Three regions: [, k0100) [k0100, k0200) [k0200, ).
    let Response::Split(regions) = admin(&cluster, RegionId(1), || Command::Split {
        keys: vec![Bytes::from("k0100"), Bytes::from("k0200")],
    }) else {
        panic!("split did not answer with regions")
    };
    assert_eq!(regions.len(), 3);

    // The client's cache still holds the one pre-split region: every
    // operation below starts from a stale route.
    let all = client.scan(b"", b"", 1000).expect("full scan");
    assert_eq!(all, pairs, "a forward scan crosses both boundaries in order");
    let rev = client
        .scan_with(b"k0050", b"k0250", 1000, ScanOptions { reverse: true, key_only: false })
        .expect("rev");
    let want: Vec<KvPair> = pairs[50..250].iter().rev().cloned().collect();
    assert_eq!(rev, want, "a reverse scan crosses both boundaries downwards");
    let limited = client.scan(b"k0095", b"", 10).expect("limited scan");
    assert_eq!(limited, pairs[95..105].to_vec(), "a limit stops the scan in the next region");
    let rev_limited = client
        .scan_with(b"", b"k0203", 5, ScanOptions { reverse: true, key_only: true })
        .expect("reverse limited");
    let want: Vec<Vec<u8>> = (198..203).rev().map(key).collect();
    assert_eq!(rev_limited.iter().map(|p| p.key.clone()).collect::<Vec<_>>(), want);
    assert!(rev_limited.iter().all(|p| p.value.is_empty()), "key-only scans carry no values");

    // Batches split by region.
    let keys: Vec<Vec<u8>> = [5, 150, 299, 1000, 101].into_iter().map(key).collect();
    let got = client.batch_get(&keys).expect("batch get");
    let got: Vec<Vec<u8>> = got.into_iter().map(|p| p.key).collect();
    assert_eq!(
        got,
        vec![key(5), key(101), key(150), key(299)],
        "found keys of three regions, missing one absent"
    );
    client.batch_delete(&[key(5), key(150), key(299)]).expect("batch delete");
    assert_eq!(client.get(&key(150)).expect("get"), None);

    // A range deletion across a boundary.
    client.delete_range(&key(190), &key(210)).expect("delete range");
    let left = client.scan(&key(185), &key(215), 100).expect("scan");
    let left: Vec<Vec<u8>> = left.into_iter().map(|p| p.key).collect();
    let want: Vec<Vec<u8>> = (185..190).chain(210..215).map(key).collect();
    assert_eq!(left, want);

    // Compare-and-swap in the last region.
    let cas = client.compare_and_swap(&key(250), Some(b"wrong"), Some(b"x")).expect("cas");
    assert!(!cas.succeeded);
    assert_eq!(cas.previous, Some(b"v250".to_vec()));
    let cas = client.compare_and_swap(&key(250), Some(b"v250"), Some(b"x")).expect("cas");
    assert!(cas.succeeded);
    assert_eq!(client.get(&key(250)).expect("get"), Some(b"x".to_vec()));
    let cas = client.compare_and_swap(b"new", None, Some(b"1")).expect("cas on absent");
    assert!(cas.succeeded && cas.previous.is_none());
    cluster.stop().expect("stop");
}

#[test]
fn a_request_stream_survives_leader_change_splits_and_a_store_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut cluster, client) = start(dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>> = Arc::default();
    let unknown: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let done = Arc::new(AtomicU64::new(0));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (client, stop, acked, unknown, done, failures) = (
                client.clone(),
                stop.clone(),
                acked.clone(),
                unknown.clone(),
                done.clone(),
                failures.clone(),
            );
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    // Keys spread over the whole range so that every split
                    // cuts through the stream.
                    let k = format!("{}{t}-{i:05}", (b'a' + (i % 26) as u8) as char).into_bytes();
                    let v = format!("v{t}-{i}").into_bytes();
                    match client.put(&k, &v) {
                        Ok(()) => {
                            acked.lock().unwrap().insert(k.clone(), v.clone());
                            match client.get(&k) {
                                Ok(Some(got)) if got == v => {}
                                other => failures.lock().unwrap().push(format!("read back {k:?}: {other:?}")),
                            }
                        }
                        Err(Error::OutcomeUnknown { .. }) => unknown.lock().unwrap().push(k),
                        Err(e) => failures.lock().unwrap().push(format!("put {k:?}: {e}")),
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    // Waits until the stream has made `n` more operations.
    let progress = |n: u64, what: &str| {
        let from = done.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(30);
        while done.load(Ordering::Relaxed) < from + n {
            assert!(Instant::now() < deadline, "no progress after {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    progress(200, "start");

    // A leader transfer.
    let leader = cluster.wait_leader(RegionId(1), Duration::from_secs(10)).expect("leader");
    let to = if leader == StoreId(1) { 2 } else { 1 };
    admin(&cluster, RegionId(1), || Command::TransferLeader { to: ekv_proto::PeerId(to) });
    progress(200, "leader transfer");

    // Splits.
    let Response::Split(regions) =
        admin(&cluster, RegionId(1), || Command::Split { keys: vec![Bytes::from("h"), Bytes::from("q")] })
    else {
        panic!("split did not answer with regions")
    };
    assert_eq!(regions.len(), 3);
    progress(200, "split");

    // The store leading the most regions goes down and comes back.
    let victim = cluster.wait_leader(RegionId(1), Duration::from_secs(10)).expect("leader");
    cluster.stop_store(victim).expect("stop store");
    progress(200, "store stop");
    cluster.start_store(victim).expect("restart store");
    progress(200, "store restart");

    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    let failures = failures.lock().unwrap();
    assert!(failures.is_empty(), "{} failures, first: {:?}", failures.len(), failures.first());
    let acked = acked.lock().unwrap();
    assert!(acked.len() > 800, "only {} acknowledged writes", acked.len());
    // Nothing acknowledged is lost: read everything back in one scan.
    let all: BTreeMap<Vec<u8>, Vec<u8>> =
        client.scan(b"", b"", 1_000_000).expect("final scan").into_iter().map(|p| (p.key, p.value)).collect();
    for (k, v) in acked.iter() {
        assert_eq!(all.get(k), Some(v), "acknowledged write of {k:?} lost");
    }
    let unknown = unknown.lock().unwrap();
    for k in all.keys() {
        assert!(acked.contains_key(k) || unknown.contains(k), "{k:?} was never written");
    }
    eprintln!("acknowledged {}, unknown outcome {}", acked.len(), unknown.len());
    cluster.stop().expect("stop");
}

#[test]
fn the_async_client_runs_many_requests_at_once_on_one_thread() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cluster, client) = start(dir.path());
    let client = client.asynchronous().clone();
    // One thread, one executor, 64 requests in flight together: the
    // answers are woken by the connections, not by a runtime the client owns.
    let puts = (0..64u32).map(|i| {
        let client = client.clone();
        async move { client.put(&key(i), format!("a{i}").as_bytes()).await }
    });
    for r in futures::executor::block_on(futures::future::join_all(puts)) {
        r.expect("async put");
    }
    let gets = (0..64u32).map(|i| {
        let client = client.clone();
        async move { (i, client.get(&key(i)).await) }
    });
    for (i, r) in futures::executor::block_on(futures::future::join_all(gets)) {
        assert_eq!(r.expect("async get"), Some(format!("a{i}").into_bytes()));
    }
    cluster.stop().expect("stop");
}
