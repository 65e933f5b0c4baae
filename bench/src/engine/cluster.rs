//! Three stores in this process, and the clients that write to them.
//!
//! The stores are real: each runs its shards on glommio executors with
//! their WAL and LSM files in the suite's data directory, and they talk
//! through [`LocalNetwork`] (raft messages handed straight to the other
//! store's shard input channel) and [`LocalPd`]. Every call into them is
//! bounded by [`CALL_TIMEOUT`]; a call that is not answered in time is a
//! finding, reported with the peers' status, never a hang.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ekv_engine::{
    Command, Config, Error, LocalNetwork, LocalPd, PeerStatus, Request, Response, ShardStats, Store,
    StoreHandle, StoreSpec, WriteOp,
};
use ekv_proto::{PeerId, PeerMeta, Region, RegionEpoch, RegionId, StoreId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::timer::TimerHandle;
use super::BoxError;
use crate::harness::Latency;

/// Longest a client command or a control call may go unanswered.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Stores in a cluster; every region has a replica on each.
pub const STORES: u64 = 3;
/// Column family the suite writes to.
pub const CF: &str = "default";
/// Bytes of a key: `r` + 5-digit region index + `k` + 9-digit counter.
pub const KEY_LEN: usize = 16;
/// Bytes of a value.
pub const VALUE_LEN: usize = 128;
/// Ids at and above this are left to the meta service (splits).
const FIRST_PD_ID: u64 = 10_000_000;
/// Region `i` (0-based) has id `i + 1` and peers `PEER_BASE + 3i ..`.
const PEER_BASE: u64 = 1_000_000;

/// The key range start of region index `i`: `r` and five digits.
fn region_prefix(i: usize) -> String {
    format!("r{i:05}")
}

/// `n` regions with disjoint ranges covering the whole key space, each
/// replicated on stores 1..=3.
pub fn regions(n: usize) -> Vec<Region> {
    (0..n)
        .map(|i| Region {
            id: RegionId(i as u64 + 1),
            start_key: if i == 0 { Vec::new() } else { region_prefix(i).into_bytes() },
            end_key: if i + 1 == n { Vec::new() } else { region_prefix(i + 1).into_bytes() },
            epoch: RegionEpoch { conf_ver: 1, version: 1 },
            peers: (0..STORES)
                .map(|s| PeerMeta { id: PeerId(PEER_BASE + 3 * i as u64 + s), store_id: StoreId(s + 1) })
                .collect(),
        })
        .collect()
}

/// The `n`-th key of region index `i` (keys wrap at a billion).
pub fn key(i: usize, n: u64) -> Bytes {
    let k = format!("{}k{:09}", region_prefix(i), n % 1_000_000_000);
    debug_assert_eq!(k.len(), KEY_LEN);
    Bytes::from(k)
}

/// The value every Put writes.
pub fn value() -> Bytes {
    Bytes::from((0..VALUE_LEN).map(|i| b'a' + (i % 26) as u8).collect::<Vec<u8>>())
}

/// The command of one write: a batch of one Put.
pub fn put(key: Bytes, value: Bytes) -> Command {
    Command::Write(vec![WriteOp::Put { cf: CF.into(), key, value }])
}

/// Where a region's writes go: its leader's store (index into the
/// cluster's handles) and the epoch to send.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub region: RegionId,
    pub store: usize,
    pub epoch: RegionEpoch,
}

/// Three running stores.
pub struct Cluster {
    dir: PathBuf,
    net: LocalNetwork,
    stores: Vec<Store>,
    handles: Vec<StoreHandle>,
    timer: TimerHandle,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("dir", &self.dir).field("stores", &self.stores.len()).finish()
    }
}

impl Cluster {
    /// Starts stores 1..=3 with `cfg`, each in `dir/store-{id}`.
    ///
    /// # Errors
    /// A store does not start (those started are stopped again).
    pub fn start(dir: &Path, cfg: &Config, timer: TimerHandle) -> Result<Self, BoxError> {
        let net = LocalNetwork::new();
        let pd = LocalPd::new(net.clone(), FIRST_PD_ID);
        let mut c = Cluster { dir: dir.to_path_buf(), net, stores: Vec::new(), handles: Vec::new(), timer };
        for s in 1..=STORES {
            let id = StoreId(s);
            let spec = StoreSpec::new(
                cfg.clone(),
                dir.join(format!("store-{s}")),
                id,
                c.net.transport_for(id),
                pd.client_for(id),
            );
            let store = Store::start(spec).map_err(|e| format!("store {s} does not start: {e}"))?;
            c.net.register(&store);
            c.handles.push(store.handle());
            c.stores.push(store);
        }
        Ok(c)
    }

    /// The stores' handles, store `i + 1` at index `i`.
    pub fn handles(&self) -> &[StoreHandle] {
        &self.handles
    }

    /// Creates `regions` on every store that holds one of their replicas, in
    /// one bulk bootstrap per store.
    ///
    /// # Errors
    /// A store refuses or does not answer.
    pub fn bootstrap(&self, regions: &[Region]) -> Result<(), BoxError> {
        for (i, h) in self.handles.iter().enumerate() {
            let store = StoreId(i as u64 + 1);
            let mine: Vec<Region> = regions.iter().filter(|r| r.peer_on(store).is_some()).cloned().collect();
            if mine.is_empty() {
                continue;
            }
            let limit = CALL_TIMEOUT + Duration::from_millis(mine.len() as u64);
            match self.timer.block_on(limit, h.bootstrap_regions(mine)) {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(format!("bootstrap on store {}: {e}", i + 1).into()),
                None => {
                    return Err(format!("bootstrap on store {}: no answer within {limit:?}", i + 1).into())
                }
            }
        }
        Ok(())
    }

    /// The status of every peer of every store, store by store.
    ///
    /// # Errors
    /// A store does not answer within [`CALL_TIMEOUT`].
    pub fn status(&self) -> Result<Vec<Vec<PeerStatus>>, BoxError> {
        let mut out = Vec::with_capacity(self.handles.len());
        for (i, h) in self.handles.iter().enumerate() {
            match self.timer.block_on(CALL_TIMEOUT, h.status()) {
                Some(st) => out.push(st),
                None => {
                    return Err(format!("store {}: status not answered within {CALL_TIMEOUT:?}", i + 1).into())
                }
            }
        }
        Ok(out)
    }

    /// Every shard's counters, summed over the cluster.
    ///
    /// # Errors
    /// A store does not answer within [`CALL_TIMEOUT`].
    pub fn stats(&self) -> Result<ShardStats, BoxError> {
        let mut sum = ShardStats::default();
        for (i, h) in self.handles.iter().enumerate() {
            let Some(all) = self.timer.block_on(CALL_TIMEOUT, h.stats()) else {
                return Err(format!("store {}: stats not answered within {CALL_TIMEOUT:?}", i + 1).into());
            };
            for s in all {
                sum.rounds += s.rounds;
                sum.wal_writes += s.wal_writes;
                sum.proposals += s.proposals;
                sum.applied_entries += s.applied_entries;
                sum.apply_batches += s.apply_batches;
                sum.messages_sent += s.messages_sent;
                sum.peer_ticks += s.peer_ticks;
            }
        }
        Ok(sum)
    }

    /// The leader of every region that has one, as a write target.
    ///
    /// # Errors
    /// As [`Cluster::status`].
    pub fn leaders(&self) -> Result<HashMap<RegionId, Target>, BoxError> {
        let mut out = HashMap::new();
        for (store, peers) in self.status()?.into_iter().enumerate() {
            for p in peers.into_iter().filter(|p| p.is_leader) {
                out.insert(p.region.id, Target { region: p.region.id, store, epoch: p.region.epoch });
            }
        }
        Ok(out)
    }

    /// Waits until each of `regions` has a leader; returns their targets
    /// in the order of `regions`.
    ///
    /// # Errors
    /// Not all have one within `limit` (the error says how many do).
    pub fn wait_leaders(&self, regions: &[Region], limit: Duration) -> Result<Vec<Target>, BoxError> {
        let deadline = Instant::now() + limit;
        loop {
            let leaders = self.leaders()?;
            if regions.iter().all(|r| leaders.contains_key(&r.id)) {
                return Ok(regions.iter().map(|r| leaders[&r.id]).collect());
            }
            if Instant::now() >= deadline {
                let have = regions.iter().filter(|r| leaders.contains_key(&r.id)).count();
                return Err(format!(
                    "only {have} of {} regions have a leader after {limit:?}",
                    regions.len()
                )
                .into());
            }
            std::thread::sleep(poll_interval(regions.len()));
        }
    }

    /// Peers in the cluster, and how many of them hibernate.
    ///
    /// # Errors
    /// As [`Cluster::status`].
    pub fn hibernation(&self) -> Result<(usize, usize), BoxError> {
        let st = self.status()?;
        let peers = st.iter().map(Vec::len).sum();
        let sleeping = st.iter().flatten().filter(|p| p.hibernating).count();
        Ok((peers, sleeping))
    }

    /// Awake peers per store, by role: `store N: L of M leaders awake, F of
    /// K followers awake (max term T)`, for a report on peers that did not
    /// hibernate.
    ///
    /// # Errors
    /// As [`Cluster::status`].
    pub fn awake_summary(&self) -> Result<String, BoxError> {
        let mut parts = Vec::new();
        for (i, peers) in self.status()?.iter().enumerate() {
            let leaders = peers.iter().filter(|p| p.is_leader).count();
            let awake_leaders = peers.iter().filter(|p| p.is_leader && !p.hibernating).count();
            let followers = peers.len() - leaders;
            let awake_followers = peers.iter().filter(|p| !p.is_leader && !p.hibernating).count();
            let no_leader = peers.iter().filter(|p| p.leader.is_none()).count();
            let max_term = peers.iter().map(|p| p.term).max().unwrap_or(0);
            parts.push(format!(
                "store {}: {awake_leaders} of {leaders} leaders awake, {awake_followers} of {followers} \
                 followers awake, {no_leader} peers know no leader, max term {max_term}",
                i + 1
            ));
        }
        Ok(parts.join("; "))
    }

    /// Waits until every peer hibernates or `limit` passes; returns the
    /// last count (peers, hibernating).
    ///
    /// # Errors
    /// As [`Cluster::status`].
    pub fn wait_hibernation(&self, limit: Duration) -> Result<(usize, usize), BoxError> {
        let deadline = Instant::now() + limit;
        loop {
            let (peers, sleeping) = self.hibernation()?;
            if sleeping == peers || Instant::now() >= deadline {
                return Ok((peers, sleeping));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// What every store knows of `region`, for a report on a call that went
    /// unanswered.
    pub fn describe(&self, region: RegionId) -> String {
        match self.status() {
            Err(e) => format!("status unavailable: {e}"),
            Ok(st) => st
                .iter()
                .enumerate()
                .map(|(i, peers)| {
                    let p = peers.iter().find(|p| p.region.id == region);
                    format!("store {}: {p:?}", i + 1)
                })
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// Stops every store (each finishes its round and closes its WAL and
    /// LSM) and removes the cluster's directory.
    ///
    /// # Errors
    /// The first store that does not stop cleanly.
    pub fn stop(mut self) -> Result<(), BoxError> {
        let r = self.stop_stores();
        let _ = std::fs::remove_dir_all(&self.dir);
        r
    }

    fn stop_stores(&mut self) -> Result<(), BoxError> {
        let mut first = Ok(());
        for store in std::mem::take(&mut self.stores) {
            let id = store.store_id();
            self.net.unregister(id);
            if let Err(e) = store.stop() {
                if first.is_ok() {
                    first = Err(format!("{id} did not stop cleanly: {e}").into());
                }
            }
        }
        first
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // On an error path: stop the stores before their files go.
        if !self.stores.is_empty() {
            if let Err(e) = self.stop_stores() {
                eprintln!("ekv-bench: {e}");
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn poll_interval(regions: usize) -> Duration {
    // status() of 10,000 peers is a few milliseconds of a shard's time.
    if regions > 1000 {
        Duration::from_millis(250)
    } else {
        Duration::from_millis(20)
    }
}

/// Which region each client task writes to.
#[derive(Debug, Clone, Copy)]
pub enum Pick {
    /// Task `t` always writes to region index `t`.
    OwnRegion,
    /// Each command goes to a region index drawn uniformly at random.
    Random,
}

/// A closed-loop write load: `tasks` clients, each with one command in
/// flight, on one plain thread.
#[derive(Debug, Clone)]
pub struct Load {
    pub tasks: usize,
    pub pick: Pick,
    /// Commands started before this are warm-up, not recorded.
    pub measure_from: Instant,
    /// No command is started from here on.
    pub until: Instant,
    pub seed: u64,
}

/// What a load measured.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// Call-to-answer latency of the writes started in the measured window.
    pub latency: Latency,
    /// Writes answered `Written`, started in the measured window.
    pub ops: u64,
    /// Refused writes (any phase), by error kind; they are retried.
    pub errors: BTreeMap<String, u64>,
    /// Commands not answered within [`CALL_TIMEOUT`]: region and the
    /// store they were sent to. A task stops at its first.
    pub unanswered: Vec<(RegionId, usize)>,
}

/// Starts `load` against `targets` (region index → leader) on a new plain
/// thread; joining it gives the result once every task is done.
///
/// # Errors
/// The client thread cannot be started.
pub fn spawn_load(
    handles: Vec<StoreHandle>,
    targets: Vec<Target>,
    timer: TimerHandle,
    load: Load,
) -> std::io::Result<std::thread::JoinHandle<LoadResult>> {
    std::thread::Builder::new().name("ekv-bench-client".into()).spawn(move || {
        let targets = RefCell::new(targets);
        let result = RefCell::new(LoadResult::default());
        let value = value();
        let tasks =
            (0..load.tasks).map(|t| client(&handles, &targets, &timer, &load, &result, t, value.clone()));
        futures::executor::block_on(futures::future::join_all(tasks));
        result.into_inner()
    })
}

/// One closed-loop client.
async fn client(
    handles: &[StoreHandle],
    targets: &RefCell<Vec<Target>>,
    timer: &TimerHandle,
    load: &Load,
    result: &RefCell<LoadResult>,
    task: usize,
    value: Bytes,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(load.seed.wrapping_add(task as u64));
    let regions = targets.borrow().len();
    let mut n = 0u64;
    loop {
        let start = Instant::now();
        if start >= load.until {
            return;
        }
        let idx = match load.pick {
            Pick::OwnRegion => task % regions,
            Pick::Random => rng.gen_range(0..regions),
        };
        let target = targets.borrow()[idx];
        n += 1;
        let req =
            Request { region_id: target.region, epoch: target.epoch, cmd: put(key(idx, n), value.clone()) };
        let answer = timer.timeout(CALL_TIMEOUT, handles[target.store].call(req)).await;
        let took = start.elapsed();
        let measured = start >= load.measure_from;
        match answer {
            Some(Ok(Response::Written)) => {
                if measured {
                    let mut r = result.borrow_mut();
                    r.latency.record(took);
                    r.ops += 1;
                }
            }
            Some(Ok(other)) => {
                *result.borrow_mut().errors.entry(format!("unexpected answer {other:?}")).or_default() += 1;
            }
            Some(Err(e)) => {
                *result.borrow_mut().errors.entry(error_kind(&e)).or_default() += 1;
                if let Error::NotLeader { leader: Some(l), .. } = &e {
                    if let Some(store) = (1..=handles.len()).find(|s| *s as u64 == l.store_id.get()) {
                        targets.borrow_mut()[idx].store = store - 1;
                    }
                }
                // Let an election or a full queue settle before retrying.
                timer.sleep_until(Instant::now() + Duration::from_millis(10)).await;
            }
            None => {
                result.borrow_mut().unanswered.push((target.region, target.store));
                return;
            }
        }
    }
}

/// The variant name of an engine error (`NotLeader`, `ServerBusy`, ...).
fn error_kind(e: &Error) -> String {
    let s = format!("{e:?}");
    let end = s.find(|c: char| !c.is_alphanumeric() && c != '_').unwrap_or(s.len());
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_16_bytes_and_fall_in_their_region() {
        let rs = regions(100);
        for (i, r) in rs.iter().enumerate() {
            let k = key(i, 123_456);
            assert_eq!(k.len(), KEY_LEN);
            assert!(r.contains(&k), "{:?} not in region {i}", std::str::from_utf8(&k));
            if i > 0 {
                assert!(!rs[i - 1].contains(&k));
            }
        }
        assert_eq!(value().len(), VALUE_LEN);
        assert_eq!(error_kind(&Error::ServerBusy("x")), "ServerBusy");
        assert_eq!(error_kind(&Error::NotLeader { region: RegionId(1), leader: None }), "NotLeader");
    }
}
