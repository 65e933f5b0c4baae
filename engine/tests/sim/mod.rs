//! A deterministic cluster: several stores in one thread, each running the
//! production shard core over its own in-memory file system, joined by a
//! simulated network with seeded faults. No wall clock, no sleeps: time is
//! [`SimCluster::tick`], delivery is [`SimCluster::step`]. A failing seed
//! replays exactly.
#![allow(dead_code)]

pub mod workload;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;
use ekv_engine::{
    Command, Config, Error, PdClient, PeerStatus, RegionHeartbeat, Request, Response, Shard, ShardAddr,
    SplitIds, StoreHeartbeat, StoreMsg, StoreRouter, Transport, WriteOp,
};
use ekv_io::{CrashMode, MemFs};
use ekv_proto::{PeerId, PeerMeta, Region, RegionEpoch, RegionId, ShardId, StoreId};
use futures::executor::block_on;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A message in flight.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub from: StoreId,
    pub to: ShardAddr,
    pub msg: StoreMsg,
    /// Step at which it may be delivered.
    pub deliver_at: u64,
}

/// Drops, delays, duplicates or reorders a batch in place.
pub trait Filter {
    fn before(&self, msgs: &mut Vec<Envelope>, rng: &mut ChaCha8Rng, step: u64);
}

/// Drops messages between two groups (one way: only from `a` to `b`).
#[derive(Debug)]
pub struct Partition {
    pub a: BTreeSet<StoreId>,
    pub b: BTreeSet<StoreId>,
    pub one_way: bool,
}

impl Filter for Partition {
    fn before(&self, msgs: &mut Vec<Envelope>, _: &mut ChaCha8Rng, _: u64) {
        msgs.retain(|m| {
            let ab = self.a.contains(&m.from) && self.b.contains(&m.to.store);
            let ba = self.b.contains(&m.from) && self.a.contains(&m.to.store);
            !(ab || (!self.one_way && ba))
        });
    }
}

/// Random loss, duplication, delay and reordering.
#[derive(Debug, Default)]
pub struct Chaos {
    pub drop: f64,
    pub duplicate: f64,
    pub delay: f64,
    pub max_delay_steps: u64,
    pub reorder: bool,
}

impl Filter for Chaos {
    fn before(&self, msgs: &mut Vec<Envelope>, rng: &mut ChaCha8Rng, step: u64) {
        let mut out = Vec::with_capacity(msgs.len());
        for mut m in msgs.drain(..) {
            if rng.gen_bool(self.drop) {
                continue;
            }
            if rng.gen_bool(self.duplicate) {
                out.push(m.clone());
            }
            if self.max_delay_steps > 0 && rng.gen_bool(self.delay) {
                m.deliver_at = step + rng.gen_range(1..=self.max_delay_steps);
            }
            out.push(m);
        }
        if self.reorder {
            out.shuffle(rng);
        }
        *msgs = out;
    }
}

/// Drops messages of one region, optionally only to one store and only of
/// one raft message type.
#[derive(Debug)]
pub struct RegionFilter {
    pub region: RegionId,
    pub to_store: Option<StoreId>,
    pub msg_type: Option<raft::eraftpb::MessageType>,
}

impl RegionFilter {
    pub fn new(region: RegionId) -> Self {
        Self { region, to_store: None, msg_type: None }
    }
    pub fn only_to(mut self, s: StoreId) -> Self {
        self.to_store = Some(s);
        self
    }
    pub fn msg_type(mut self, t: raft::eraftpb::MessageType) -> Self {
        self.msg_type = Some(t);
        self
    }
}

impl Filter for RegionFilter {
    fn before(&self, msgs: &mut Vec<Envelope>, _: &mut ChaCha8Rng, _: u64) {
        msgs.retain(|m| {
            let type_matches = match (&m.msg, self.msg_type) {
                (_, None) => true,
                (StoreMsg::Peer(e), Some(t)) => {
                    matches!(&e.msg, ekv_engine::PeerMsg::Raft(r) if r.get_msg_type() == t)
                }
                (StoreMsg::Snapshot(_), Some(t)) => t == raft::eraftpb::MessageType::MsgSnapshot,
                _ => false,
            };
            !(m.msg.region_id() == Some(self.region)
                && self.to_store.is_none_or(|s| s == m.to.store)
                && type_matches)
        });
    }
}

/// A client's view of a command's fate.
pub type Slot = Rc<RefCell<Option<Result<Response, Error>>>>;

struct Collect<'a> {
    from: StoreId,
    out: &'a mut Vec<Envelope>,
    step: u64,
}

impl Transport for Collect<'_> {
    fn send(&mut self, to: ShardAddr, msgs: Vec<StoreMsg>) {
        for msg in msgs {
            self.out.push(Envelope { from: self.from, to, msg, deliver_at: self.step + 1 });
        }
    }
}

/// A split's request for ids: (store, shard, token, count, region).
pub type SplitAsk = (StoreId, ShardId, u64, usize, Region);

/// The meta service, reduced to what the raftstore asks of it.
#[derive(Debug, Default)]
pub struct SimPd {
    pub next_id: u64,
    /// Split asks not answered yet. The simulator answers them from
    /// `next_id` after each step, unless `external` is set.
    pub asks: Vec<SplitAsk>,
    pub reported_splits: Vec<Vec<Region>>,
    pub heartbeats: BTreeMap<RegionId, RegionHeartbeat>,
    pub store_heartbeats: u64,
    /// Keys read, summed over all region heartbeats.
    pub read_keys: u64,
    /// A real meta service drives the cluster: split asks wait in `asks`,
    /// and heartbeats queue in `fresh` and `fresh_stores` for it to take.
    pub external: bool,
    /// Region heartbeats in the order sent, with the sender's shard.
    pub fresh: Vec<(StoreId, ShardId, RegionHeartbeat)>,
    /// Store heartbeats (each shard's share) in the order sent.
    pub fresh_stores: Vec<(StoreId, ShardId, StoreHeartbeat)>,
}

struct PdCollect<'a> {
    pd: &'a mut SimPd,
    store: StoreId,
    shard: ShardId,
}

impl PdClient for PdCollect<'_> {
    fn ask_batch_split(&mut self, region: &Region, count: usize, token: u64) {
        self.pd.asks.push((self.store, self.shard, token, count, region.clone()));
    }
    fn report_batch_split(&mut self, regions: &[Region]) {
        self.pd.reported_splits.push(regions.to_vec());
    }
    fn region_heartbeat(&mut self, hb: RegionHeartbeat) {
        self.pd.read_keys += hb.read_keys;
        if self.pd.external {
            self.pd.fresh.push((self.store, self.shard, hb.clone()));
        }
        self.pd.heartbeats.insert(hb.region.id, hb);
    }
    fn store_heartbeat(&mut self, hb: StoreHeartbeat) {
        self.pd.store_heartbeats += 1;
        if self.pd.external {
            self.pd.fresh_stores.push((self.store, self.shard, hb));
        }
    }
}

/// One store.
pub struct SimNode {
    pub fs: MemFs,
    pub shards: Vec<Shard<MemFs>>,
    pub router: StoreRouter,
    pub up: bool,
    /// Frozen (a stop-the-world pause): no ticks, no rounds, messages wait.
    pub paused_at: Option<u64>,
    /// This store's clock skips one tick in `drift` (clocks drift apart as
    /// real ones do, which also keeps elections from colliding forever).
    pub drift: u64,
    /// The storage error that stopped this store (see [`SimCluster::fail_stop`]).
    pub failed: Option<String>,
}

/// The cluster.
pub struct SimCluster {
    pub seed: u64,
    pub cfg: Rc<Config>,
    pub nodes: BTreeMap<StoreId, SimNode>,
    filters: Vec<Box<dyn Filter>>,
    pub rng: ChaCha8Rng,
    net: Vec<Envelope>,
    pub step_no: u64,
    pub tick_no: u64,
    pub pd: SimPd,
    shards_per_store: usize,
    /// A round that fails with a storage error stops its store (it is down,
    /// with the error in [`SimNode::failed`], until restarted) as the
    /// production shard loop stops its shard, instead of failing the test.
    pub fail_stop: bool,
}

/// Settings small enough for the simulator to hit every path quickly.
pub fn sim_config() -> Config {
    Config {
        election_ticks: 10,
        heartbeat_ticks: 2,
        randomized_election: false,
        lease_ticks: 8,
        cfs: vec!["default".into(), "lock".into()],
        raft_log_gc_ticks: 5,
        raft_log_gc_threshold: 10,
        raft_log_gc_count_limit: 200,
        split_check_ticks: 10,
        pd_heartbeat_ticks: 20,
        pd_store_heartbeat_ticks: 50,
        snap_chunk_bytes: 4096,
        snap_bytes_per_tick: 64 << 10,
        hibernate_after_ticks: 0,
        store_probe_ticks: 5,
        wal_segment_bytes: 1 << 20,
        wal_cache_bytes: 1 << 20,
        lsm_memtable_bytes: 256 << 10,
        lsm_block_cache_bytes: 4 << 20,
        ..Config::default()
    }
}

fn dir(shard: usize) -> PathBuf {
    PathBuf::from(format!("/store/shard-{shard}"))
}

impl SimCluster {
    /// `stores` stores with `shards` shards each.
    pub fn new(seed: u64, stores: u64, shards: usize, cfg: Config) -> Self {
        let cfg = Rc::new(cfg);
        let mut nodes = BTreeMap::new();
        for s in 1..=stores {
            let fs = MemFs::default();
            nodes.insert(StoreId(s), Self::open_node(&cfg, StoreId(s), fs, shards));
        }
        Self {
            seed,
            cfg,
            nodes,
            filters: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            net: Vec::new(),
            step_no: 0,
            tick_no: 0,
            pd: SimPd { next_id: 1000, ..Default::default() },
            shards_per_store: shards,
            fail_stop: false,
        }
    }

    fn open_node(cfg: &Rc<Config>, store: StoreId, fs: MemFs, shards: usize) -> SimNode {
        let router = StoreRouter::new(shards);
        let shards = (0..shards)
            .map(|i| {
                block_on(Shard::open(
                    fs.clone(),
                    dir(i),
                    cfg.clone(),
                    store,
                    ShardId(i as u64),
                    router.clone(),
                ))
                .unwrap_or_else(|e| panic!("open {store} shard {i}: {e}"))
            })
            .collect();
        SimNode { fs, shards, router, up: true, paused_at: None, drift: 8 + store.get() % 5, failed: None }
    }

    /// Adds a store (empty).
    pub fn add_store(&mut self, id: StoreId) {
        let node = Self::open_node(&self.cfg, id, MemFs::default(), self.shards_per_store);
        self.nodes.insert(id, node);
    }

    /// Region 1 over all keys with one voter on each of `stores`.
    pub fn bootstrap(&mut self, stores: &[u64]) -> Region {
        let region = Region {
            id: RegionId(1),
            start_key: vec![],
            end_key: vec![],
            epoch: RegionEpoch { conf_ver: 1, version: 1 },
            peers: stores.iter().map(|s| PeerMeta { id: PeerId(*s), store_id: StoreId(*s) }).collect(),
        };
        self.bootstrap_regions(vec![region.clone()]);
        region
    }

    /// Creates `regions` on every store they list, on each store's shard 0.
    pub fn bootstrap_regions(&mut self, regions: Vec<Region>) {
        let mut per_store: BTreeMap<StoreId, Vec<Region>> = BTreeMap::new();
        for r in regions {
            for p in &r.peers {
                per_store.entry(p.store_id).or_default().push(r.clone());
            }
        }
        for (store, regions) in per_store {
            let node = self.nodes.get_mut(&store).expect("store exists");
            block_on(node.shards[0].bootstrap_regions(regions)).expect("bootstrap");
        }
    }

    pub fn add_filter(&mut self, f: impl Filter + 'static) {
        self.filters.push(Box::new(f));
    }

    /// Clears every filter.
    pub fn recover(&mut self) {
        self.filters.clear();
    }

    pub fn partition(&mut self, a: &[u64], b: &[u64]) {
        self.add_filter(Partition {
            a: a.iter().map(|s| StoreId(*s)).collect(),
            b: b.iter().map(|s| StoreId(*s)).collect(),
            one_way: false,
        });
    }

    pub fn isolate(&mut self, store: u64) {
        let others: Vec<u64> = self.nodes.keys().map(|s| s.get()).filter(|s| *s != store).collect();
        self.partition(&[store], &others);
    }

    /// One delivery step: every shard runs its rounds, then messages due
    /// are delivered (through the filters).
    pub fn step(&mut self) {
        self.step_no += 1;
        let step = self.step_no;
        let mut sent = Vec::new();
        for (id, node) in self.nodes.iter_mut() {
            if !node.up || node.paused_at.is_some() {
                continue;
            }
            for i in 0..node.shards.len() {
                for _ in 0..4 {
                    let shard = &mut node.shards[i];
                    if !shard.has_ready() {
                        break;
                    }
                    let mut early = Collect { from: *id, out: &mut sent, step };
                    match block_on(shard.handle_ready_sending(&mut early)) {
                        Ok(()) => {}
                        Err(e) if self.fail_stop && e.is_fatal() => {
                            node.failed = Some(format!("{id} shard {i}: {e}"));
                            break;
                        }
                        Err(e) => panic!("seed {}: {id} shard {i}: round failed: {e}", self.seed),
                    }
                }
                if node.failed.is_some() {
                    // Stopped where it failed: nothing more runs, nothing
                    // is answered; its files stay as they are.
                    node.shards.clear();
                    node.up = false;
                    break;
                }
                let shard = &mut node.shards[i];
                for t in shard.take_reads() {
                    block_on(t.run(shard.lsm()));
                }
                let mut collect = Collect { from: *id, out: &mut sent, step };
                let mut pd = PdCollect { pd: &mut self.pd, store: *id, shard: ShardId(i as u64) };
                shard.flush_io(&mut collect, &mut pd);
                for (to, m) in shard.take_forwards() {
                    sent.push(Envelope {
                        from: *id,
                        to: ShardAddr { store: *id, shard: to },
                        msg: m,
                        deliver_at: step,
                    });
                }
            }
        }
        for f in &self.filters {
            f.before(&mut sent, &mut self.rng, step);
        }
        self.net.extend(sent);
        let paused: BTreeSet<StoreId> =
            self.nodes.iter().filter(|(_, n)| n.paused_at.is_some()).map(|(id, _)| *id).collect();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.net)
            .into_iter()
            .partition(|m| m.deliver_at <= step + 1 && !paused.contains(&m.to.store));
        self.net = later;
        for m in due {
            let Some(node) = self.nodes.get_mut(&m.to.store) else { continue };
            if !node.up {
                continue;
            }
            let shard = (m.to.shard.get() as usize).min(node.shards.len() - 1);
            node.shards[shard].on_store_msg(m.msg);
        }
        if self.pd.external {
            return;
        }
        for (store, shard, token, count, region) in std::mem::take(&mut self.pd.asks) {
            let ids: Vec<SplitIds> = (0..count)
                .map(|_| {
                    let region_id = RegionId(self.pd.alloc());
                    let peer_ids = region.peers.iter().map(|_| PeerId(self.pd.alloc())).collect();
                    SplitIds { region_id, peer_ids }
                })
                .collect();
            if let Some(node) = self.nodes.get_mut(&store).filter(|n| n.up) {
                node.shards[shard.get() as usize].on_split_ids(token, Ok(ids));
            }
        }
    }

    /// One tick of logical time on every store (a store skips a tick now and
    /// then, so that timeouts drift apart as real clocks do), then steps.
    pub fn tick(&mut self) {
        self.tick_no += 1;
        for node in self.nodes.values_mut() {
            if !node.up || node.paused_at.is_some() {
                continue;
            }
            for (i, shard) in node.shards.iter_mut().enumerate() {
                if (self.tick_no + i as u64) % node.drift == 0 {
                    continue;
                }
                shard.tick();
            }
        }
        for _ in 0..3 {
            self.step();
        }
    }

    pub fn run_ticks(&mut self, n: u64) {
        for _ in 0..n {
            self.tick();
        }
    }

    /// Freezes a store (as a stop-the-world pause would).
    pub fn pause(&mut self, store: u64) {
        let now = self.tick_no;
        self.nodes.get_mut(&StoreId(store)).expect("store").paused_at = Some(now);
    }

    /// Thaws a paused store; its clock catches up with the time it missed.
    pub fn resume(&mut self, store: u64) {
        let now = self.tick_no;
        let node = self.nodes.get_mut(&StoreId(store)).expect("store");
        if let Some(at) = node.paused_at.take() {
            for shard in node.shards.iter_mut() {
                shard.skip_time(now - at);
            }
        }
    }

    /// Kills a store: whatever was not synced is lost.
    pub fn crash(&mut self, store: u64) {
        self.crash_with(store, CrashMode::DropUnsynced);
    }

    /// Kills a store, keeping of its unsynced writes what `mode` says.
    pub fn crash_with(&mut self, store: u64, mode: CrashMode) {
        let node = self.nodes.get_mut(&StoreId(store)).expect("store");
        node.shards.clear();
        node.fs.crash(mode);
        node.up = false;
    }

    /// Starts a crashed store again from its files.
    pub fn restart(&mut self, store: u64) {
        let fs = self.nodes[&StoreId(store)].fs.clone();
        let node = Self::open_node(&self.cfg, StoreId(store), fs, self.shards_per_store);
        self.nodes.insert(StoreId(store), node);
    }

    /// Status of every peer on up stores.
    pub fn status(&self) -> Vec<(StoreId, ShardId, PeerStatus)> {
        let mut out = Vec::new();
        for (id, node) in &self.nodes {
            if !node.up {
                continue;
            }
            for shard in &node.shards {
                for p in shard.peer_status() {
                    out.push((*id, shard.id(), p));
                }
            }
        }
        out
    }

    /// The leader of `region` with the highest term, if any.
    pub fn leader(&self, region: RegionId) -> Option<(StoreId, PeerStatus)> {
        self.status()
            .into_iter()
            .filter(|(_, _, p)| p.region.id == region && p.is_leader)
            .max_by_key(|(_, _, p)| p.term)
            .map(|(s, _, p)| (s, p))
    }

    /// The newest region (by epoch) that holds `key`, as initialized peers see it.
    pub fn region_for(&self, key: &[u8]) -> Option<Region> {
        self.status()
            .into_iter()
            .filter(|(_, _, p)| p.initialized && p.region.contains(key))
            .max_by_key(|(_, _, p)| (p.region.epoch.version, p.region.epoch.conf_ver))
            .map(|(_, _, p)| p.region)
    }

    /// Sends `req` to `store` (to the shard owning the region); returns the slot
    /// its answer lands in.
    pub fn call(&mut self, store: StoreId, req: Request) -> Slot {
        let slot: Slot = Rc::new(RefCell::new(None));
        let s2 = slot.clone();
        let cb = Box::new(move |r| *s2.borrow_mut() = Some(r));
        let Some(node) = self.nodes.get_mut(&store).filter(|n| n.up) else {
            *slot.borrow_mut() = Some(Err(Error::Stopped));
            return slot;
        };
        match node.router.owner(req.region_id) {
            Some(shard) => node.shards[shard.get() as usize].on_command(req, cb),
            None => cb(Err(Error::RegionNotFound(req.region_id))),
        }
        slot
    }

    /// Sends `cmd` for `key`'s region to its leader and runs until answered
    /// (or `max_ticks` pass: `None`).
    pub fn request(&mut self, key: &[u8], cmd: Command, max_ticks: u64) -> Option<Result<Response, Error>> {
        let region = self.region_for(key)?;
        let store = self.leader(region.id).map_or(region.peers[0].store_id, |l| l.0);
        let slot = self.call(store, Request { region_id: region.id, epoch: region.epoch, cmd });
        self.wait(&slot, max_ticks)
    }

    /// Runs until `slot` is filled or `max_ticks` pass.
    pub fn wait(&mut self, slot: &Slot, max_ticks: u64) -> Option<Result<Response, Error>> {
        for _ in 0..max_ticks * 3 {
            if let Some(r) = slot.borrow_mut().take() {
                return Some(r);
            }
            self.step();
            if self.step_no % 3 == 0 {
                self.tick_no += 1;
                for node in self.nodes.values_mut().filter(|n| n.up && n.paused_at.is_none()) {
                    for shard in node.shards.iter_mut() {
                        shard.tick();
                    }
                }
            }
        }
        slot.borrow_mut().take()
    }

    /// Runs until some peer of `region` leads (or panics after `max_ticks`).
    pub fn must_leader(&mut self, region: RegionId, max_ticks: u64) -> StoreId {
        for _ in 0..max_ticks {
            if let Some((s, p)) = self.leader(region) {
                if p.applied_index > 5 || p.term > 5 {
                    return s;
                }
            }
            self.tick();
        }
        panic!("seed {}: no leader for {region} after {max_ticks} ticks", self.seed);
    }

    /// Retries a command until it succeeds (or panics after `max_ticks`).
    pub fn must(&mut self, key: &[u8], cmd: Command, max_ticks: u64) -> Response {
        let start = self.step_no;
        loop {
            if let Some(Ok(r)) = self.request(key, cmd.clone(), 30) {
                return r;
            }
            self.tick();
            assert!(self.step_no - start < max_ticks * 3, "seed {}: {cmd:?} did not succeed", self.seed);
        }
    }

    pub fn must_put(&mut self, key: &[u8], value: &[u8]) {
        let cmd = Command::Write(vec![WriteOp::Put {
            cf: "default".into(),
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
        }]);
        self.must(key, cmd, 500);
    }

    pub fn must_get(&mut self, key: &[u8]) -> Option<Bytes> {
        match self.must(key, Command::Get { cf: "default".into(), key: Bytes::copy_from_slice(key) }, 500) {
            Response::Value(v) => v,
            r => panic!("get answered {r:?}"),
        }
    }

    /// Every up store's data for `cf` in `region`'s range (for comparing replicas).
    pub fn dump(&self, store: StoreId, region: &Region) -> Vec<(Vec<u8>, Vec<u8>)> {
        let node = &self.nodes[&store];
        let shard = node.router.owner(region.id).expect("region on store");
        let lsm = node.shards[shard.get() as usize].lsm();
        let cf = lsm.cf("default").expect("cf");
        let upper = (!region.end_key.is_empty()).then_some(region.end_key.as_slice());
        let mut it = lsm
            .iter(cf, ekv_lsm::IterOptions { lower: Some(&region.start_key), upper, snapshot: None })
            .expect("iter");
        block_on(it.seek_to_first()).expect("seek");
        let mut out = Vec::new();
        while it.valid() {
            out.push((it.key().to_vec(), it.value().to_vec()));
            block_on(it.next()).expect("next");
        }
        out
    }
}

impl SimPd {
    pub fn alloc(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}
