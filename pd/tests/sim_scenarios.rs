//! Meta-service scenarios on the engine's deterministic simulator: the
//! sans-I/O core schedules a simulated cluster, fed through the same
//! mapping of heartbeats and operators that a store's meta-service client
//! uses in production (`ekv_pd::remote`). Every run is a seed (raft
//! traffic is lossy and reordered by it, victims are drawn from it): a
//! failure replays exactly.

#[path = "../../engine/tests/sim/mod.rs"]
mod sim;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use ekv_engine::{Command, PeerStatus, Request, SplitIds, StoreHeartbeat, WriteOp};
use ekv_pd::core::{describe_step, Change, Cluster, Error, Record, Settings, StoreHealth};
use ekv_pd::remote::{region_heartbeat_request, store_heartbeat_request, to_engine_operator};
use ekv_proto::msg::{ChangeKind, Operator, StoreMeta, StoreState};
use ekv_proto::{PeerId, PeerMeta, Region, RegionEpoch, RegionId, ShardId, StoreId};
use rand::Rng;
use sim::{sim_config, Chaos, SimCluster, Slot};

/// Simulated milliseconds per tick: the core's clock is the simulator's.
const TICK_MS: u64 = 100;
/// Every store reports this capacity, so that no store is ever full.
const CAPACITY: u64 = 1 << 40;
/// Shards per store.
const SHARDS: usize = 2;
/// The first region and its only replica, before the meta service repairs it.
const FIRST_REGION: RegionId = RegionId(10);
const FIRST_PEER: PeerId = PeerId(11);

/// Seeds per scenario: `EKV_PD_SIM_SEEDS` of them (default 5) from `first`,
/// or the one `EKV_SIM_SEED` names (to replay a failure). Its own variable,
/// not the engine sweep's `EKV_SIM_SEEDS`: CI runs the default seeds; a
/// sweep (`EKV_PD_SIM_SEEDS=300`, release build) runs the first 300 of each
/// scenario.
fn seeds(first: u64) -> Range<u64> {
    let var = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    match var("EKV_SIM_SEED") {
        Some(seed) => seed..seed + 1,
        None => first..first + var("EKV_PD_SIM_SEEDS").unwrap_or(5),
    }
}

/// Raftstore settings: frequent reports so that an operator step (one per
/// region heartbeat) takes a few ticks, not hundreds.
fn config() -> ekv_engine::Config {
    ekv_engine::Config {
        tick_interval: Duration::from_millis(TICK_MS),
        pd_heartbeat_ticks: 5,
        pd_store_heartbeat_ticks: 10,
        ..sim_config()
    }
}

/// Core settings on the simulator's time scale: a store silent for 30
/// ticks (three store heartbeats) is Down.
fn settings() -> Settings {
    Settings {
        down_after_ms: 30 * TICK_MS,
        peer_operator_timeout_ms: 300 * TICK_MS,
        leader_operator_timeout_ms: 50 * TICK_MS,
        split_operator_timeout_ms: 50 * TICK_MS,
        ..Settings::default()
    }
}

fn store_meta(id: StoreId) -> StoreMeta {
    StoreMeta {
        id,
        address: format!("store-{}:20160", id.get()),
        shard_count: SHARDS as u32,
        ..StoreMeta::default()
    }
}

/// The meta service over a [`SimCluster`]: the core, its persisted records,
/// and the glue a store's meta-service client would be.
struct Pd {
    core: Cluster,
    /// Every record the core asked to persist, in order (the meta
    /// service's replicated log).
    records: Vec<Record>,
    /// Each store's latest heartbeat share per shard.
    shares: BTreeMap<StoreId, BTreeMap<ShardId, StoreHeartbeat>>,
    /// Split reports already taken from the simulator.
    splits_seen: usize,
    /// Every id the core handed out and what it named: an id must never
    /// name two things (a re-sent operator step repeats the same peer).
    handed: BTreeMap<u64, String>,
    /// Operator steps delivered to leaders.
    steps: u64,
    /// The steps, for failure messages.
    log: Vec<String>,
    /// False while the meta service is down: reports are lost and split
    /// asks fail, as they would against an unreachable service.
    serving: bool,
    /// Regions whose heartbeat the core answered with nothing since the
    /// last operator ended: the schedulers saw them with the final counts
    /// and left them alone.
    left_alone: BTreeSet<RegionId>,
}

impl Pd {
    /// A cluster of `stores` stores whose first region has one replica on
    /// store 1, bootstrapped and registered as `ekv_pd::remote::join` does.
    fn start(seed: u64, stores: u64, cfg: ekv_engine::Config) -> (SimCluster, Pd) {
        let mut c = SimCluster::new(seed, stores, SHARDS, cfg);
        c.pd.external = true;
        c.add_filter(Chaos { drop: 0.02, duplicate: 0.01, delay: 0.1, max_delay_steps: 3, reorder: true });
        let region = Region {
            id: FIRST_REGION,
            epoch: RegionEpoch { conf_ver: 1, version: 1 },
            peers: vec![PeerMeta { id: FIRST_PEER, store_id: StoreId(1) }],
            ..Region::default()
        };
        c.bootstrap_regions(vec![region.clone()]);
        let mut pd = Pd {
            core: Cluster::new(settings()),
            records: Vec::new(),
            shares: BTreeMap::new(),
            splits_seen: 0,
            handed: BTreeMap::new(),
            steps: 0,
            log: Vec::new(),
            serving: true,
            left_alone: BTreeSet::new(),
        };
        pd.core.bootstrap(store_meta(StoreId(1)), region, 0).expect("bootstrap");
        pd.persist();
        for s in 2..=stores {
            pd.add_store(&mut c, StoreId(s));
        }
        (c, pd)
    }

    fn now(c: &SimCluster) -> u64 {
        c.tick_no * TICK_MS
    }

    /// Registers store `id` (adding it to the simulator if new).
    fn add_store(&mut self, c: &mut SimCluster, id: StoreId) {
        if !c.nodes.contains_key(&id) {
            c.add_store(id);
        }
        self.core.put_store(store_meta(id), Self::now(c)).expect("put store");
        self.persist();
    }

    /// Replicates the queued changes (before any answer leaves).
    fn persist(&mut self) {
        self.records.extend(self.core.take_changes().iter().map(Change::to_record));
    }

    fn hand_out(&mut self, id: u64, what: String) {
        let prev = self.handed.entry(id).or_insert_with(|| what.clone());
        assert_eq!(*prev, what, "id {id} handed out twice");
    }

    /// One tick of the cluster, then every report it produced is answered.
    fn tick(&mut self, c: &mut SimCluster) {
        c.tick();
        self.serve(c);
    }

    /// Answers what the stores sent since the last call: store heartbeats,
    /// split asks and reports, then region heartbeats (whose operators go
    /// to the leader's shard), and runs the core's housekeeping.
    fn serve(&mut self, c: &mut SimCluster) {
        let now = Self::now(c);
        let hbs = std::mem::take(&mut c.pd.fresh_stores);
        let region_hbs = std::mem::take(&mut c.pd.fresh);
        let asks = std::mem::take(&mut c.pd.asks);
        let reports: Vec<Vec<Region>> = c.pd.reported_splits[self.splits_seen..].to_vec();
        self.splits_seen = c.pd.reported_splits.len();
        if !self.serving {
            for (store, shard, token, _, _) in asks {
                if let Some(node) = c.nodes.get_mut(&store).filter(|n| n.up) {
                    let down = Err(ekv_engine::Error::ServerBusy("meta service unavailable"));
                    node.shards[shard.get() as usize].on_split_ids(token, down);
                }
            }
            return;
        }
        for (store, shard, hb) in hbs {
            let shares = self.shares.entry(store).or_default();
            shares.insert(shard, hb);
            // Shard 0 speaks for the store, as in production.
            if shard != ShardId(0) {
                continue;
            }
            let used: u64 = shares.values().map(|s| s.used).sum();
            let req = store_heartbeat_request(store, shares.values(), CAPACITY, CAPACITY - used);
            match self.core.store_heartbeat(&req, now) {
                Ok(()) | Err(Error::StoreTombstoned { .. }) => {}
                Err(e) => panic!("seed {}: store heartbeat of {store}: {e}", c.seed),
            }
            self.persist();
        }
        for (store, shard, token, count, region) in asks {
            let ids = self.core.ask_batch_split(&region, count as u32);
            self.persist();
            let ids = match ids {
                Ok(ids) => {
                    for s in &ids {
                        self.hand_out(s.new_region_id.get(), format!("region {}", s.new_region_id));
                        for p in &s.new_peer_ids {
                            self.hand_out(p.get(), format!("split peer {p}"));
                        }
                    }
                    Ok(ids
                        .into_iter()
                        .map(|s| SplitIds { region_id: s.new_region_id, peer_ids: s.new_peer_ids })
                        .collect())
                }
                Err(_) => Err(ekv_engine::Error::ServerBusy("meta service gave no split ids")),
            };
            if let Some(node) = c.nodes.get_mut(&store).filter(|n| n.up) {
                node.shards[shard.get() as usize].on_split_ids(token, ids);
            }
        }
        for regions in reports {
            self.core.report_batch_split(&regions).expect("report split");
            self.persist();
        }
        for (store, shard, hb) in region_hbs {
            let id = hb.region.id;
            let answer = self.core.region_heartbeat(&region_heartbeat_request(hb, shard), now);
            self.persist();
            let op = answer.expect("region heartbeat").operator;
            if self.core.operators().next().is_some() {
                self.left_alone.clear();
            } else if op.is_none() {
                self.left_alone.insert(id);
            }
            let Some(op) = op else { continue };
            self.log.push(format!("tick {}: {id} on {store}: {}", c.tick_no, describe_step(&op)));
            if let Operator::ChangePeer { changes } = &op {
                for ch in changes.iter().filter(|ch| ch.kind == ChangeKind::AddLearner) {
                    self.hand_out(ch.peer.id.get(), format!("peer of {id} on {}", ch.peer.store_id));
                }
            }
            let Some(node) = c.nodes.get_mut(&store).filter(|n| n.up) else { continue };
            let shard = node.router.owner(id).unwrap_or(shard);
            node.shards[shard.get() as usize].on_operator(id, to_engine_operator(op));
            self.steps += 1;
        }
        if c.tick_no % 10 == 0 {
            self.core.tick(now);
            self.persist();
        }
    }

    /// Ticks until `done` holds; returns the ticks it took. Panics after
    /// `max` ticks.
    fn run_until(
        &mut self,
        c: &mut SimCluster,
        max: u64,
        what: &str,
        mut done: impl FnMut(&mut SimCluster, &Pd) -> bool,
    ) -> u64 {
        for n in 0..max {
            if done(c, self) {
                return n;
            }
            self.tick(c);
        }
        panic!("seed {}: {what}: not done after {max} ticks\n{}", c.seed, self.describe(c));
    }

    /// Ticks until `slot` is answered, or `max` ticks pass.
    fn wait(
        &mut self,
        c: &mut SimCluster,
        slot: &Slot,
        max: u64,
    ) -> Option<Result<ekv_engine::Response, ekv_engine::Error>> {
        for _ in 0..max {
            if let Some(r) = slot.borrow_mut().take() {
                return Some(r);
            }
            self.tick(c);
        }
        slot.borrow_mut().take()
    }

    /// Sends `cmd` for `key` to its region's leader until it succeeds.
    fn must(&mut self, c: &mut SimCluster, key: &[u8], cmd: Command) {
        for _ in 0..50 {
            if let Some(slot) = send(c, key, cmd.clone()) {
                if let Some(Ok(_)) = self.wait(c, &slot, 50) {
                    return;
                }
            }
            self.tick(c);
        }
        panic!("seed {}: {cmd:?} did not succeed", c.seed);
    }

    fn must_put(&mut self, c: &mut SimCluster, key: &[u8], value: &[u8]) {
        self.must(c, key, put(key, value));
    }

    /// Splits the first region at `keys` (the shard asks the core for ids).
    fn must_split(&mut self, c: &mut SimCluster, keys: &[&str]) {
        let keys = keys.iter().map(|k| Bytes::copy_from_slice(k.as_bytes())).collect();
        self.must(c, b"", Command::Split { keys });
    }

    /// True when the core and the cluster agree on every region, each has
    /// `replicas` voters, no learner and a leader, and no operator is in
    /// flight.
    fn settled(&self, c: &SimCluster) -> bool {
        let replicas = self.core.settings().replicas;
        let sim = sim_regions(c);
        self.core.operators().next().is_none()
            && self.core.regions().len() == sim.len()
            && self.core.regions().iter().all(|info| {
                let Some(p) = sim.get(&info.region.id) else { return false };
                info.leader.is_some()
                    && info.learners.is_empty()
                    && info.region.peers.len() == replicas
                    && p.region == info.region
                    && p.learners.is_empty()
                    && c.leader(info.region.id).is_some()
            })
    }

    /// True when every region reported since the last operator ended and
    /// the schedulers started none: no operator in flight is not enough,
    /// as the counts an operator changed may still move another region
    /// (one that has not reported since) on its next heartbeat.
    fn left_alone(&self) -> bool {
        self.core.operators().next().is_none()
            && self.core.regions().iter().all(|info| self.left_alone.contains(&info.region.id))
    }

    /// The core's view and the last steps, for failure messages.
    fn describe(&self, c: &SimCluster) -> String {
        let status = self.core.status(Self::now(c));
        let mut out = status.to_json().unwrap_or_default();
        for p in sim_regions(c).values() {
            out.push_str(&format!("\nsimulator: {:?}, learners {:?}", p.region, p.learners));
        }
        // Every replica as its store sees it: a stale one (a removed peer
        // that never heard of its removal) shows here and nowhere else.
        for (store, shard, p) in c.status() {
            let peers: Vec<u64> = p.region.peers.iter().map(|q| q.id.get()).collect();
            out.push_str(&format!(
                "\n{store} {shard}: {} peer {}{}, leader {:?}, term {}, applied {}, {:?}, peers {peers:?}, learners {:?}",
                p.region.id,
                p.peer.id,
                if p.initialized { "" } else { " (uninitialized)" },
                p.leader.map(|l| l.id.get()),
                p.term,
                p.applied_index,
                p.region.epoch,
                p.learners,
            ));
        }
        let recent = self.log.len().saturating_sub(40);
        out.push_str(&format!("\nlast steps:\n{}", self.log[recent..].join("\n")));
        out
    }

    /// Replicas per store in the core's table (tombstones left out).
    fn region_counts(&self) -> BTreeMap<StoreId, u64> {
        self.live_stores().into_iter().map(|s| (s, self.core.regions().store_load(s).regions)).collect()
    }

    fn leader_counts(&self) -> BTreeMap<StoreId, u64> {
        self.live_stores().into_iter().map(|s| (s, self.core.regions().store_load(s).leaders)).collect()
    }

    fn live_stores(&self) -> Vec<StoreId> {
        self.core.stores(true).into_iter().map(|s| s.id).collect()
    }
}

fn put(key: &[u8], value: &[u8]) -> Command {
    Command::Write(vec![WriteOp::Put {
        cf: "default".into(),
        key: Bytes::copy_from_slice(key),
        value: Bytes::copy_from_slice(value),
    }])
}

/// Sends `cmd` to the leader of `key`'s region as the cluster knows it.
fn send(c: &mut SimCluster, key: &[u8], cmd: Command) -> Option<Slot> {
    let region = c.region_for(key)?;
    let (store, _) = c.leader(region.id)?;
    Some(c.call(store, Request { region_id: region.id, epoch: region.epoch, cmd }))
}

/// Every region as its newest initialized replica on an up store sees it.
fn sim_regions(c: &SimCluster) -> BTreeMap<RegionId, PeerStatus> {
    let mut out: BTreeMap<RegionId, PeerStatus> = BTreeMap::new();
    for (_, _, p) in c.status().into_iter().filter(|(_, _, p)| p.initialized) {
        let epoch = |p: &PeerStatus| (p.region.epoch.version, p.region.epoch.conf_ver);
        if out.get(&p.region.id).is_none_or(|q| epoch(&p) > epoch(q)) {
            out.insert(p.region.id, p);
        }
    }
    out
}

/// Voters of a region as a replica sees it.
fn voters(p: &PeerStatus) -> usize {
    p.region.peers.iter().filter(|q| !p.learners.contains(&q.id)).count()
}

/// A store holding replicas, drawn from the seed.
fn pick_victim(c: &mut SimCluster, pd: &Pd) -> StoreId {
    let holders: Vec<StoreId> =
        pd.region_counts().into_iter().filter(|(_, n)| *n > 0).map(|(s, _)| s).collect();
    holders[c.rng.gen_range(0..holders.len())]
}

fn key(i: u32) -> Vec<u8> {
    format!("k{i:04}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    format!("value-{i}").into_bytes()
}

/// A started cluster: regions split at `split_at`, every region repaired
/// to three replicas by the meta service, and `keys` keys written.
fn settled_cluster(seed: u64, stores: u64, split_at: &[&str], keys: u32) -> (SimCluster, Pd) {
    let (mut c, mut pd) = Pd::start(seed, stores, config());
    pd.run_until(&mut c, 100, "first leader", |c, _| c.leader(FIRST_REGION).is_some());
    if !split_at.is_empty() {
        pd.must_split(&mut c, split_at);
    }
    let ticks = pd.run_until(&mut c, 200, "three replicas everywhere", |c, pd| pd.settled(c));
    eprintln!("seed {seed}: {} regions settled at three replicas in {ticks} ticks", split_at.len() + 1);
    for i in 0..keys {
        pd.must_put(&mut c, &key(i), &value(i));
    }
    (c, pd)
}

/// A store that crashes for good: every region it held gets its third
/// replica back on the live stores, and the data stays readable.
#[test]
fn a_dead_store_is_replaced_on_the_live_stores() {
    for seed in seeds(100) {
        let (mut c, mut pd) = settled_cluster(seed, 4, &["k0010", "k0020", "k0030"], 40);
        let victim = pick_victim(&mut c, &pd);
        let held = pd.core.regions().store_load(victim).regions;
        let steps = pd.steps;
        c.crash(victim.get());
        let down = pd.run_until(&mut c, 60, "the store counts as down", |c, pd| {
            pd.core.store_health(victim, Pd::now(c)) == Some(StoreHealth::Down)
        });
        let ticks = pd.run_until(&mut c, 150, "regions repaired", |c, pd| {
            pd.settled(c) && pd.core.regions().store_load(victim).regions == 0
        });
        eprintln!(
            "seed {seed}: {victim} down after {down} ticks; {held} replicas replaced in {ticks} more, {} steps",
            pd.steps - steps
        );
        let live: BTreeSet<StoreId> = c.nodes.iter().filter(|(_, n)| n.up).map(|(id, _)| *id).collect();
        for p in sim_regions(&c).values() {
            let stores: BTreeSet<StoreId> = p.region.peers.iter().map(|q| q.store_id).collect();
            assert_eq!((stores.len(), voters(p)), (3, 3), "seed {seed}: {:?}", p.region);
            assert!(stores.is_subset(&live), "seed {seed}: {:?} keeps a replica on a dead store", p.region);
        }
        for i in 0..40 {
            assert_eq!(c.must_get(&key(i)).as_deref(), Some(&value(i)[..]), "seed {seed}: key {i}");
        }
    }
}

/// Clients writing through the cluster: each owns the keys `i` with
/// `i % clients == client`, writes them in turn with ever new values, one
/// write in flight, and retries a write until it is acknowledged.
struct Writers {
    inflight: Vec<Option<(u32, Slot, u64)>>,
    /// Writes started per client.
    next: Vec<u32>,
    keys: u32,
    /// Acknowledged: key index -> the last value number written to it.
    acked: BTreeMap<u32, u32>,
    acks: u64,
}

impl Writers {
    fn new(clients: u32, keys: u32) -> Self {
        Self {
            inflight: (0..clients).map(|_| None).collect(),
            next: vec![0; clients as usize],
            keys,
            acked: BTreeMap::new(),
            acks: 0,
        }
    }

    /// Collects answers and sends the next (or a retried) write.
    fn drive(&mut self, c: &mut SimCluster) {
        let clients = self.inflight.len() as u32;
        for j in 0..clients as usize {
            let answer = self.inflight[j].as_ref().and_then(|(_, slot, _)| slot.borrow_mut().take());
            match answer {
                Some(Ok(_)) => {
                    let (n, _, _) = self.inflight[j].take().expect("in flight");
                    self.acked.insert(n % self.keys, n);
                    self.acks += 1;
                    self.next[j] += 1;
                }
                Some(Err(_)) => self.inflight[j] = None,
                None if self.inflight[j].as_ref().is_some_and(|(_, _, deadline)| c.tick_no > *deadline) => {
                    self.inflight[j] = None;
                }
                None => {}
            }
            if self.inflight[j].is_none() {
                let n = self.next[j] * clients + j as u32;
                let k = key(n % self.keys);
                self.inflight[j] = send(c, &k, put(&k, &value(n))).map(|s| (n, s, c.tick_no + 50));
            }
        }
    }
}

/// Decommissioning a store while clients write: its replicas move off
/// without any region dropping below three voters, the store ends a
/// Tombstone, and every acknowledged write survives.
#[test]
fn a_decommissioned_store_drains_under_load() {
    const KEYS: u32 = 600;
    const TICKS: u64 = 300;
    for seed in seeds(200) {
        let (mut c, mut pd) = settled_cluster(seed, 4, &["k0100", "k0200", "k0300", "k0400", "k0500"], KEYS);
        let victim = pick_victim(&mut c, &pd);
        let held = pd.core.regions().store_load(victim).regions;
        let steps = pd.steps;
        let mut w = Writers::new(4, KEYS);
        pd.core.delete_store(victim).expect("delete store");
        pd.persist();
        let mut drained = None;
        for tick in 1..=TICKS {
            w.drive(&mut c);
            pd.tick(&mut c);
            for p in sim_regions(&c).values() {
                assert!(
                    voters(p) >= 3,
                    "seed {seed}: tick {tick}: {:?}, learners {:?}",
                    p.region,
                    p.learners
                );
            }
            for info in pd.core.regions().iter() {
                let voters = info.region.peers.len() - info.learners.len();
                assert!(voters >= 3, "seed {seed}: tick {tick}: the core sees {:?}", info.region);
            }
            let tombstone = pd.core.store(victim).map(|s| s.state) == Some(StoreState::Tombstone);
            if drained.is_none() && tombstone && pd.settled(&c) {
                drained = Some((tick, w.acks));
            }
        }
        let Some((ticks, acks)) = drained else {
            panic!("seed {seed}: {victim} not drained\n{}", pd.describe(&c))
        };
        eprintln!(
            "seed {seed}: {held} replicas drained off {victim} in {ticks} ticks, {} steps; \
             {acks} writes acknowledged by then, {} in {TICKS} ticks",
            pd.steps - steps,
            w.acks
        );
        assert!(ticks <= TICKS / 2, "seed {seed}: draining took {ticks} ticks");
        assert!(acks >= ticks / 2, "seed {seed}: writes stalled during the drain: {acks} in {ticks} ticks");
        assert!(w.acks - acks >= (TICKS - ticks) / 2, "seed {seed}: writes stalled after the drain");
        assert_eq!(pd.core.regions().store_load(victim).regions, 0);
        assert!(pd.core.stores(true).iter().all(|s| s.id != victim));
        for p in sim_regions(&c).values() {
            assert!(p.region.peer_on(victim).is_none(), "seed {seed}: {:?}", p.region);
        }
        // A key holds its last acknowledged value, or the one in flight.
        let pending: BTreeMap<u32, u32> =
            w.inflight.iter().flatten().map(|(n, _, _)| (n % KEYS, *n)).collect();
        for i in 0..KEYS {
            let acked = value(w.acked.get(&i).copied().unwrap_or(i));
            let got = c.must_get(&key(i)).expect("a written key").to_vec();
            let ok = got == acked || pending.get(&i).is_some_and(|n| got == value(*n));
            assert!(ok, "seed {seed}: key {i}: {}", String::from_utf8_lossy(&got));
        }
    }
}

/// A store joining a cluster of three with twelve regions gets its share
/// of replicas and leaders, and the balance then holds still.
#[test]
fn a_new_store_takes_its_share() {
    let splits: Vec<String> = (1..12).map(|i| format!("k{:04}", i * 10)).collect();
    let splits: Vec<&str> = splits.iter().map(String::as_str).collect();
    // 12 regions x 3 replicas over 4 stores: 9 each; 12 leaders: 3 each.
    let balanced = |pd: &Pd| {
        pd.region_counts().values().all(|n| (8..=10).contains(n))
            && pd.leader_counts().values().all(|n| (2..=4).contains(n))
    };
    for seed in seeds(300) {
        let (mut c, mut pd) = settled_cluster(seed, 3, &splits, 120);
        assert!(pd.region_counts().values().all(|n| *n == 12), "{:?}", pd.region_counts());
        pd.add_store(&mut c, StoreId(4));
        let before = pd.steps;
        let ticks =
            pd.run_until(&mut c, 200, "balanced", |c, pd| pd.settled(c) && balanced(pd) && pd.left_alone());
        eprintln!(
            "seed {seed}: balanced in {ticks} ticks, {} steps: regions {:?}, leaders {:?}",
            pd.steps - before,
            pd.region_counts(),
            pd.leader_counts()
        );
        // No operator moves anything back and forth.
        let steps = pd.steps;
        for _ in 0..100 {
            pd.tick(&mut c);
        }
        assert!(balanced(&pd), "seed {seed}: {:?}, {:?}", pd.region_counts(), pd.leader_counts());
        assert_eq!(pd.steps, steps, "seed {seed}: scheduling went on\n{}", pd.describe(&c));
        for i in (0..120).step_by(7) {
            assert_eq!(c.must_get(&key(i)).as_deref(), Some(&value(i)[..]), "seed {seed}: key {i}");
        }
    }
}

/// A region past the split size splits with ids from the core, and the
/// core routes keys on both sides to the new regions.
#[test]
fn a_full_region_splits_through_the_core() {
    for seed in seeds(400) {
        let mut cfg = config();
        cfg.region_split_size = 16 << 10;
        cfg.region_split_keys = 1_000_000;
        let (mut c, mut pd) = Pd::start(seed, 3, cfg);
        pd.run_until(&mut c, 100, "first leader", |c, _| c.leader(FIRST_REGION).is_some());
        pd.run_until(&mut c, 200, "three replicas", |c, pd| pd.settled(c));
        assert_eq!(pd.core.regions().len(), 1);
        let v = vec![b'x'; 200];
        for i in 0..200 {
            pd.must_put(&mut c, &key(i), &v);
        }
        let ticks = pd.run_until(&mut c, 100, "split and settled", |c, pd| {
            pd.core.regions().len() >= 2 && pd.settled(c)
        });
        eprintln!("seed {seed}: {} regions, settled {ticks} ticks after the writes", pd.core.regions().len());
        assert!(!c.pd.reported_splits.is_empty());
        let regions: Vec<Region> = pd.core.regions().iter().map(|i| i.region.clone()).collect();
        // The table covers every key exactly once, in order.
        assert!(regions[0].start_key.is_empty());
        assert!(regions.last().expect("regions").end_key.is_empty());
        for w in regions.windows(2) {
            assert_eq!(w[0].end_key, w[1].start_key, "seed {seed}: {regions:?}");
        }
        for r in regions.iter().filter(|r| r.id != FIRST_REGION) {
            // The ids of new regions and their peers came from the core.
            assert!(pd.handed.contains_key(&r.id.get()), "seed {seed}: {r:?}");
            assert!(r.peers.iter().all(|p| pd.handed.contains_key(&p.id.get())), "seed {seed}: {r:?}");
        }
        let first = pd.core.get_region(&key(0)).expect("route");
        let last = pd.core.get_region(&key(199)).expect("route");
        assert_ne!(first.region.id, last.region.id);
        for (k, route) in [(key(0), &first), (key(199), &last)] {
            assert!(route.region.contains(&k));
            assert_eq!(Some(&route.region), sim_regions(&c).get(&route.region.id).map(|p| &p.region));
            let leader = route.leader.expect("leader");
            let sim_leader = c.leader(route.region.id).map(|(s, p)| (s, p.peer));
            assert_eq!(sim_leader, Some((leader.store_id, leader)), "seed {seed}");
        }
        for i in (0..200).step_by(13) {
            assert_eq!(c.must_get(&key(i)).map(|v| v.len()), Some(200), "seed {seed}: key {i}");
        }
    }
}

/// The meta-service leader dies in the middle of a repair: a new one
/// rebuilt from the persisted records knows every store, region and the
/// bootstrap, never hands out an id again, adopts the learners the old
/// one left, and finishes the repair.
#[test]
fn a_new_meta_service_leader_takes_over_from_the_records() {
    for seed in seeds(500) {
        let (mut c, mut pd) = settled_cluster(seed, 4, &["k0010", "k0020"], 30);
        let victim = pick_victim(&mut c, &pd);
        c.crash(victim.get());
        let delay = c.rng.gen_range(0..10);
        pd.run_until(&mut c, 100, "a repair under way", |_, pd| {
            pd.core.operators().any(|op| op.steps_sent > 0)
        });
        for _ in 0..delay {
            pd.tick(&mut c);
        }
        let stores = pd.core.stores(false);
        let regions: Vec<Region> = pd.core.regions().iter().map(|i| i.region.clone()).collect();
        let id_end = pd.core.id_end();
        // Nothing of the old leader survives but its records.
        pd.core = Cluster::new(settings());
        pd.serving = false;
        for _ in 0..20 {
            pd.tick(&mut c);
        }
        // Learners the old leader left on live stores (one on the dead
        // store is rightly dropped).
        let learners: Vec<PeerId> = sim_regions(&c)
            .values()
            .flat_map(|p| {
                p.region.peers.iter().filter(|q| p.learners.contains(&q.id) && q.store_id != victim)
            })
            .map(|q| q.id)
            .collect();

        let now = Pd::now(&c);
        pd.core = Cluster::load(settings(), pd.records.clone(), now).expect("load from the log");
        pd.serving = true;
        // A scan of the live keys rebuilds the same state as the whole log.
        let mut live: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for r in &pd.records {
            live.insert(r.key.clone(), r.value.clone());
        }
        let scanned = live.into_iter().filter_map(|(key, value)| Some(Record { key, value: Some(value?) }));
        let from_scan = Cluster::load(settings(), scanned, now).expect("load from a scan");
        for core in [&pd.core, &from_scan] {
            assert!(core.is_bootstrapped());
            assert_eq!(core.stores(false), stores, "seed {seed}");
            let got: Vec<Region> = core.regions().iter().map(|i| i.region.clone()).collect();
            assert_eq!(got, regions, "seed {seed}");
            assert!(core.id_end() >= id_end);
            assert!(core.operators().next().is_none(), "operators are soft state");
            assert!(core.regions().iter().all(|i| i.leader.is_none()), "leaders are soft state");
        }
        let first = pd.core.alloc_ids(1).expect("alloc");
        pd.persist();
        assert!(first >= id_end, "seed {seed}: id {first} may have been handed out before (end {id_end})");
        pd.hand_out(first, "an id allocated by the new leader".into());
        // The new leader's start is not taken for silence of the stores;
        // the dead one is noticed after the usual delay.
        for s in &stores {
            assert_eq!(pd.core.store_health(s.id, now), Some(StoreHealth::Up), "seed {seed}: {}", s.id);
        }
        let steps = pd.steps;
        let down = pd.run_until(&mut c, 60, "the dead store counts as down", |c, pd| {
            pd.core.store_health(victim, Pd::now(c)) == Some(StoreHealth::Down)
        });
        assert!(down * TICK_MS >= settings().down_after_ms, "seed {seed}: down after {down} ticks");
        let ticks = pd.run_until(&mut c, 150, "repair finished by the new leader", |c, pd| {
            pd.settled(c) && pd.core.regions().store_load(victim).regions == 0
        });
        eprintln!(
            "seed {seed}: {victim} down {down} ticks after the takeover, repair done {ticks} later, {} steps; \
             learners adopted: {learners:?}",
            pd.steps - steps
        );
        let peers: BTreeSet<PeerId> =
            sim_regions(&c).values().flat_map(|p| p.region.peers.iter().map(|q| q.id)).collect();
        for l in &learners {
            assert!(peers.contains(l), "seed {seed}: learner {l} was not promoted\n{}", pd.describe(&c));
        }
        for i in 0..30 {
            assert_eq!(c.must_get(&key(i)).as_deref(), Some(&value(i)[..]), "seed {seed}: key {i}");
        }
    }
}
