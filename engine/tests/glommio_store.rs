//! Three stores in one process on real glommio executors and files, wired
//! by `LocalNetwork` and `LocalPd`: elections, replicated writes, reads,
//! a split, a clean stop and a restart from the same directories.
//!
//! Time is wall-clock here (10 ms ticks), so the only waiting is for
//! elections and leader hand-offs: `must_call` retries a command on
//! routing errors until a deadline, `wait_until` polls a condition.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ekv_engine::{
    Command, Config, Error, LocalNetwork, LocalPd, Request, Response, Scan, Store, StoreSpec, WriteOp,
};
use ekv_proto::{PeerId, PeerMeta, Region, RegionEpoch, RegionId, StoreId};
use futures::executor::block_on;

/// How long an election or leader hand-off may take before a test fails.
const DEADLINE: Duration = Duration::from_secs(20);
/// Pause between two polls of a condition that needs an election.
const POLL: Duration = Duration::from_millis(5);

fn config(shards: usize) -> Config {
    Config {
        shards,
        tick_interval: Duration::from_millis(10),
        election_ticks: 10,
        heartbeat_ticks: 2,
        lease_ticks: 8,
        pd_heartbeat_ticks: 10,
        wal_segment_bytes: 1 << 20,
        wal_cache_bytes: 1 << 20,
        lsm_memtable_bytes: 1 << 20,
        lsm_block_cache_bytes: 4 << 20,
        ..Config::default()
    }
}

struct Cluster {
    dir: tempfile::TempDir,
    cfg: Config,
    net: LocalNetwork,
    pd: LocalPd,
    stores: BTreeMap<u64, Store>,
}

impl Cluster {
    fn new(shards: usize) -> Self {
        let net = LocalNetwork::new();
        let pd = LocalPd::new(net.clone(), 1000);
        let dir = tempfile::tempdir().expect("temp dir");
        let mut c = Cluster { dir, cfg: config(shards), net, pd, stores: BTreeMap::new() };
        c.start_all();
        c
    }

    fn start_all(&mut self) {
        for s in 1..=3u64 {
            let id = StoreId(s);
            let spec = StoreSpec::new(
                self.cfg.clone(),
                self.dir.path().join(format!("store-{s}")),
                id,
                self.net.transport_for(id),
                self.pd.client_for(id),
            );
            let store = Store::start(spec).unwrap_or_else(|e| panic!("store {s} does not start: {e}"));
            assert_eq!(store.handle().shard_count(), self.cfg.shard_count());
            self.net.register(&store);
            self.stores.insert(s, store);
        }
    }

    fn stop_all(&mut self) {
        for (s, store) in std::mem::take(&mut self.stores) {
            self.net.unregister(StoreId(s));
            store.stop().unwrap_or_else(|e| panic!("store {s} does not stop cleanly: {e}"));
        }
    }

    fn bootstrap(&self, region: &Region) {
        for (s, store) in &self.stores {
            block_on(store.bootstrap_region(region.clone()))
                .unwrap_or_else(|e| panic!("bootstrap of {} on store {s}: {e}", region.id));
        }
    }

    /// The store whose peer leads `region`, and the region as it knows it.
    fn leader(&self, region: RegionId) -> Option<(u64, Region)> {
        for (s, store) in &self.stores {
            for st in block_on(store.status()) {
                if st.region.id == region && st.is_leader {
                    return Some((*s, st.region));
                }
            }
        }
        None
    }

    /// Runs `cmd` on `region`'s leader, retrying while leadership moves.
    fn must_call(&self, region: RegionId, cmd: Command) -> Response {
        self.try_call(region, cmd).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `cmd` on `region`'s leader, retrying only on routing errors.
    fn try_call(&self, region: RegionId, cmd: Command) -> Result<Response, Error> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let r = match self.leader(region) {
                Some((s, r)) => {
                    let req = Request { region_id: region, epoch: r.epoch, cmd: cmd.clone() };
                    match self.call_within(s, req.clone(), DEADLINE) {
                        Some(r) => r,
                        None if Instant::now() < deadline => continue,
                        None => self.fail_unanswered(s, &req),
                    }
                }
                None => Err(Error::NotLeader { region, leader: None }),
            };
            match r {
                Err(
                    Error::NotLeader { .. }
                    | Error::StaleCommand { .. }
                    | Error::ServerBusy(_)
                    | Error::RegionNotFound(_)
                    | Error::EpochNotMatch { .. },
                ) if Instant::now() < deadline => std::thread::sleep(POLL),
                r => return r,
            }
        }
    }

    /// Runs `req` on `store`; `None` when it got no answer within `limit`.
    /// The thread waiting for the answer is left behind (stopping the store
    /// answers it).
    fn call_within(&self, store: u64, req: Request, limit: Duration) -> Option<Result<Response, Error>> {
        let h = self.stores[&store].handle();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(h.call_blocking(req));
        });
        rx.recv_timeout(limit).ok()
    }

    fn fail_unanswered(&self, store: u64, req: &Request) -> ! {
        let status: Vec<_> = self.stores.values().flat_map(|s| block_on(s.status())).collect();
        panic!("{req:?} on store {store}: no answer within {DEADLINE:?}; peers: {status:#?}")
    }

    fn must_put(&self, region: RegionId, key: &str, value: &str) {
        let op = WriteOp::Put { cf: "default".into(), key: key_of(key), value: key_of(value) };
        assert_eq!(self.must_call(region, Command::Write(vec![op])), Response::Written);
    }

    fn must_get(&self, region: RegionId, key: &str) -> Option<Bytes> {
        match self.must_call(region, Command::Get { cf: "default".into(), key: key_of(key) }) {
            Response::Value(v) => v,
            other => panic!("get {key}: {other:?}"),
        }
    }

    fn must_scan(&self, region: RegionId) -> Vec<(Bytes, Bytes)> {
        let scan = Scan {
            cf: "default".into(),
            start: Bytes::new(),
            end: Bytes::new(),
            limit: 10_000,
            reverse: false,
            key_only: false,
        };
        match self.must_call(region, Command::Scan(scan)) {
            Response::Pairs(p) => p,
            other => panic!("scan: {other:?}"),
        }
    }

    /// Checks that `region` holds exactly `want`, through Get and Scan.
    fn must_hold(&self, region: RegionId, want: &BTreeMap<String, String>) {
        for (k, v) in want {
            assert_eq!(self.must_get(region, k).as_deref(), Some(v.as_bytes()), "{region}: key {k}");
        }
        let got: Vec<(String, String)> = self
            .must_scan(region)
            .into_iter()
            .map(|(k, v)| {
                (String::from_utf8_lossy(&k).into_owned(), String::from_utf8_lossy(&v).into_owned())
            })
            .collect();
        let want: Vec<(String, String)> = want.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(got, want, "{region}: scan");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Stop the stores before the temp dir goes (on a failed assertion too).
        for (_, store) in std::mem::take(&mut self.stores) {
            let _ = store.stop();
        }
    }
}

fn key_of(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A region replicated on stores 1, 2, 3 with peer ids `first_peer..first_peer + 3`.
fn region(id: u64, start: &str, end: &str, first_peer: u64) -> Region {
    Region {
        id: RegionId(id),
        start_key: start.as_bytes().to_vec(),
        end_key: end.as_bytes().to_vec(),
        epoch: RegionEpoch { conf_ver: 1, version: 1 },
        peers: (0..3).map(|i| PeerMeta { id: PeerId(first_peer + i), store_id: StoreId(1 + i) }).collect(),
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(POLL);
    }
}

fn put_keys(c: &Cluster, region: RegionId, prefix: &str, n: usize) -> BTreeMap<String, String> {
    let mut want = BTreeMap::new();
    for i in 0..n {
        let (k, v) = (format!("{prefix}{i:03}"), format!("value-{prefix}-{i}"));
        c.must_put(region, &k, &v);
        want.insert(k, v);
    }
    want
}

#[test]
fn one_shard_per_store_replicates_and_survives_a_restart() {
    let mut c = Cluster::new(1);
    let r1 = region(1, "", "", 1);
    c.bootstrap(&r1);
    let want = put_keys(&c, r1.id, "k", 100);
    c.must_hold(r1.id, &want);
    assert_eq!(c.must_get(r1.id, "missing"), None);

    // Every replica applies every write.
    wait_until("all replicas to apply", || {
        let applied: Vec<u64> = c
            .stores
            .values()
            .flat_map(|s| block_on(s.status()))
            .filter(|st| st.region.id == r1.id)
            .map(|st| st.applied_index)
            .collect();
        applied.len() == 3 && applied.iter().all(|a| *a == applied[0])
    });

    c.stop_all();
    c.start_all();
    c.must_hold(r1.id, &want);
    c.must_put(r1.id, "k100", "after restart");
    assert_eq!(c.must_get(r1.id, "k100").as_deref(), Some(&b"after restart"[..]));
    c.stop_all();
}

#[test]
fn two_shards_per_store_split_and_survive_a_restart() {
    let mut c = Cluster::new(2);
    let (r1, r2) = (region(1, "", "m", 1), region(2, "m", "", 4));
    c.bootstrap(&r1);
    c.bootstrap(&r2);
    for store in c.stores.values() {
        let router = store.handle().router().clone();
        assert_ne!(router.owner(r1.id), router.owner(r2.id), "the two regions share a shard");
    }
    let mut left = put_keys(&c, r1.id, "k", 100);
    let far = put_keys(&c, r2.id, "x", 20);
    c.must_hold(r1.id, &left);
    c.must_hold(r2.id, &far);

    let regions = match c.must_call(r1.id, Command::Split { keys: vec![key_of("k050")] }) {
        Response::Split(regions) => regions,
        other => panic!("split: {other:?}"),
    };
    assert_eq!(regions.len(), 2, "{regions:?}");
    let (l, r) = (&regions[0], &regions[1]);
    assert_eq!((l.start_key.as_slice(), l.end_key.as_slice()), (&b""[..], &b"k050"[..]));
    assert_eq!((r.start_key.as_slice(), r.end_key.as_slice()), (&b"k050"[..], &b"m"[..]));
    let new_id = if l.id == r1.id { r.id } else { l.id };
    let (left_id, right_id) = (l.id, r.id);
    let mut right = left.split_off("k050");
    c.must_hold(left_id, &left);
    c.must_hold(right_id, &right);
    // The left half refuses keys it no longer holds.
    let wrong = Request {
        region_id: left_id,
        epoch: c.leader(left_id).map(|(_, r)| r.epoch).unwrap_or_default(),
        cmd: Command::Get { cf: "default".into(), key: key_of("k070") },
    };
    let leader = c.leader(left_id).map(|(s, _)| s).unwrap_or(1);
    assert!(
        matches!(
            c.call_within(leader, wrong, DEADLINE),
            Some(Err(Error::KeyNotInRegion { .. } | Error::NotLeader { .. }))
        ),
        "a key of the right half was served by the left"
    );
    // Both halves take writes.
    c.must_put(left_id, "k010", "left again");
    c.must_put(right_id, "k070", "right again");
    left.insert("k010".into(), "left again".into());
    right.insert("k070".into(), "right again".into());
    wait_until("the meta service to learn of the split", || c.pd.region(new_id).is_some());

    c.stop_all();
    c.start_all();
    c.must_hold(left_id, &left);
    c.must_hold(right_id, &right);
    c.must_hold(r2.id, &far);
    c.stop_all();
}

#[test]
fn a_shard_that_cannot_open_fails_the_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Shard 1's directory is taken by a file: shard 0 opens, shard 1 cannot.
    std::fs::create_dir_all(dir.path().join("store")).expect("store dir");
    std::fs::write(dir.path().join("store/shard-1"), b"not a directory").expect("blocking file");
    let net = LocalNetwork::new();
    let pd = LocalPd::new(net.clone(), 1000);
    let id = StoreId(1);
    let spec =
        StoreSpec::new(config(2), dir.path().join("store"), id, net.transport_for(id), pd.client_for(id));
    match Store::start(spec) {
        Err(e) => assert!(e.is_fatal(), "{e}"),
        Ok(store) => panic!("started over a blocked shard directory: {store:?}"),
    }
    // Shard 0 was closed again: its files can be opened by a new store.
    std::fs::remove_file(dir.path().join("store/shard-1")).expect("remove blocking file");
    let spec =
        StoreSpec::new(config(2), dir.path().join("store"), id, net.transport_for(id), pd.client_for(id));
    Store::start(spec).expect("start after the blockage is gone").stop().expect("stop");
}

/// Idle regions stop ticking on the real shell too (answers to the last
/// heartbeats, still in flight when a leader falls asleep, must not wake it),
/// and a write wakes its region.
#[test]
fn idle_regions_hibernate_and_a_write_wakes_them() {
    let mut c = Cluster::new(1);
    let regions: Vec<Region> = (0..20)
        .map(|i| {
            let start = if i == 0 { String::new() } else { format!("r{i:02}") };
            let end = if i == 19 { String::new() } else { format!("r{:02}", i + 1) };
            region(i + 1, &start, &end, 100 + 3 * i)
        })
        .collect();
    for r in &regions {
        c.bootstrap(r);
    }
    let asleep = |c: &Cluster| -> usize {
        c.stores.values().flat_map(|s| block_on(s.status())).filter(|st| st.hibernating).count()
    };
    wait_until("every peer to hibernate", || asleep(&c) == 60);
    c.must_put(RegionId(5), "r04x", "v");
    assert!(asleep(&c) < 60, "a write did not wake its region");
    wait_until("the written region to hibernate again", || asleep(&c) == 60);
    assert_eq!(c.must_get(RegionId(5), "r04x").as_deref(), Some(&b"v"[..]));
    c.stop_all();
}

/// A service registered in the spec starts on every shard's own executor,
/// before the shard serves: where a network listener goes.
#[test]
fn shard_services_start_on_each_shards_executor() {
    let dir = tempfile::tempdir().expect("temp dir");
    let net = LocalNetwork::new();
    let pd = LocalPd::new(net.clone(), 1000);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let mut spec = StoreSpec::new(
        config(2),
        dir.path().join("store-1"),
        StoreId(1),
        net.transport_for(StoreId(1)),
        pd.client_for(StoreId(1)),
    );
    spec.on_shard_start = Some(std::sync::Arc::new(move |shard, handle: ekv_engine::StoreHandle, _stop| {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        seen2.lock().unwrap().push((shard.get(), name, handle.store_id()));
    }));
    let store = Store::start(spec).expect("start");
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen.iter().map(|s| (s.0, s.2)).collect::<Vec<_>>(), vec![(0, StoreId(1)), (1, StoreId(1))]);
    for (shard, thread, _) in &seen {
        // glommio names an executor's thread after the executor, plus an id.
        assert!(thread.starts_with(&format!("ekv-1-{shard}-")), "shard {shard} ran on {thread}");
    }
    store.stop().expect("stop");
}
