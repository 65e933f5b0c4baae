//! A store's side of the meta service: the raftstore's [`PdClient`] over
//! the wire, and the start-up steps of a store (register, bootstrap).
//!
//! The shards call [`PdClient`] on their own threads and must never wait
//! on the network, so each call only queues a job; one worker thread per
//! store sends the jobs (several at once) through a [`MetaClient`] and
//! hands the answers (split ids, operators) back to the shards through
//! the store's handle. A full queue drops heartbeats (the next one
//! repeats them) rather than slowing a shard.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use ekv_client::rt::{block_on, join_all, BoxFuture};
use ekv_client::MetaClient;
use ekv_engine::fsm::PdFactory;
use ekv_engine::router::PeerChange as EnginePeerChange;
use ekv_engine::{
    Operator as EngineOperator, PdClient, RegionHeartbeat, SplitIds, StoreHandle, StoreHeartbeat,
};
use ekv_proto::msg::{
    AllocIdRequest, AnyMessage, AskBatchSplitRequest, BootstrapRequest, ChangeKind, GetRegionByIdRequest,
    GetStoreRequest, IsBootstrappedRequest, Operator, PutStoreRequest, RegionHeartbeatRequest,
    ReportBatchSplitRequest, StoreHeartbeatRequest, StoreMeta, WireError,
};
use ekv_proto::{PeerId, PeerMeta, Region, RegionEpoch, RegionId, ShardId, StoreId};

/// Jobs queued per store before heartbeats are dropped.
const QUEUE: usize = 4096;
/// Jobs sent at once.
const BATCH: usize = 64;

enum Job {
    Resolve(StoreId),
    AskSplit { shard: ShardId, token: u64, region: Region, count: usize },
    ReportSplit(Vec<Region>),
    RegionHeartbeat { shard: ShardId, hb: RegionHeartbeat },
    StoreHeartbeat { shard: ShardId, hb: StoreHeartbeat },
}

/// The meta service as seen from one store: give [`RemotePd::factory`] to
/// the store's spec, then [`RemotePd::attach`] the started store.
#[derive(Clone)]
pub struct RemotePd {
    tx: SyncSender<Job>,
    handle: Arc<OnceLock<StoreHandle>>,
    addrs: Arc<RwLock<HashMap<StoreId, SocketAddr>>>,
}

impl std::fmt::Debug for RemotePd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemotePd").finish_non_exhaustive()
    }
}

impl RemotePd {
    /// Starts the worker thread of store `store` (data under `data_dir`,
    /// whose file system's size the store heartbeats report).
    ///
    /// # Errors
    /// The thread cannot be spawned.
    pub fn start(meta: MetaClient, store: StoreId, data_dir: &Path) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(QUEUE);
        let handle: Arc<OnceLock<StoreHandle>> = Arc::default();
        let addrs: Arc<RwLock<HashMap<StoreId, SocketAddr>>> = Arc::default();
        let worker = Worker {
            meta,
            store,
            dir: data_dir.to_path_buf(),
            handle: handle.clone(),
            shares: Mutex::new(BTreeMap::new()),
            addrs: addrs.clone(),
        };
        std::thread::Builder::new()
            .name(format!("ekv-pd-client-{}", store.get()))
            .spawn(move || worker.run(rx))?;
        Ok(Self { tx, handle, addrs })
    }

    /// Store addresses for the raft transport, from the meta service. A
    /// miss queues a lookup and answers `None` (the message is dropped;
    /// raft sends again), so a shard never waits on the meta service.
    pub fn resolver(&self) -> ekv_net::transport::Resolver {
        let pd = self.clone();
        Arc::new(move |id: StoreId| {
            if let Some(a) = pd.addrs.read().unwrap_or_else(PoisonError::into_inner).get(&id) {
                return Some(*a);
            }
            pd.queue(Job::Resolve(id));
            None
        })
    }

    /// Forgets `store`'s address (it moved, or refused a connection).
    pub fn forget_address(&self, store: StoreId) {
        self.addrs.write().unwrap_or_else(PoisonError::into_inner).remove(&store);
    }

    /// The [`PdFactory`] for the store's spec.
    pub fn factory(&self) -> PdFactory {
        let pd = self.clone();
        Box::new(move |shard| Box::new(ShardPd { pd: pd.clone(), shard }))
    }

    /// Answers go to `handle` from now on (before, split asks fail and
    /// operators are dropped).
    pub fn attach(&self, handle: StoreHandle) {
        let _ = self.handle.set(handle);
    }

    fn queue(&self, job: Job) {
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(Job::AskSplit { shard, token, .. })) => {
                if let Some(h) = self.handle.get() {
                    let _ = h.on_split_ids(
                        shard,
                        token,
                        Err(ekv_engine::Error::ServerBusy("meta-service queue full")),
                    );
                }
            }
            Err(TrySendError::Full(_)) => tracing::debug!("meta-service queue full; a report was dropped"),
            Err(TrySendError::Disconnected(_)) => tracing::warn!("meta-service worker gone"),
        }
    }
}

struct ShardPd {
    pd: RemotePd,
    shard: ShardId,
}

impl PdClient for ShardPd {
    fn ask_batch_split(&mut self, region: &Region, count: usize, token: u64) {
        self.pd.queue(Job::AskSplit { shard: self.shard, token, region: region.clone(), count });
    }

    fn report_batch_split(&mut self, regions: &[Region]) {
        self.pd.queue(Job::ReportSplit(regions.to_vec()));
    }

    fn region_heartbeat(&mut self, hb: RegionHeartbeat) {
        self.pd.queue(Job::RegionHeartbeat { shard: self.shard, hb });
    }

    fn store_heartbeat(&mut self, hb: StoreHeartbeat) {
        self.pd.queue(Job::StoreHeartbeat { shard: self.shard, hb });
    }
}

struct Worker {
    meta: MetaClient,
    store: StoreId,
    dir: PathBuf,
    handle: Arc<OnceLock<StoreHandle>>,
    /// Each shard's latest share of the store heartbeat.
    shares: Mutex<BTreeMap<ShardId, StoreHeartbeat>>,
    addrs: Arc<RwLock<HashMap<StoreId, SocketAddr>>>,
}

/// The raftstore's form of an operator from the wire.
pub fn to_engine_operator(op: Operator) -> EngineOperator {
    match op {
        Operator::ChangePeer { changes } => EngineOperator::ChangePeers(
            changes
                .into_iter()
                .map(|c| match c.kind {
                    ChangeKind::AddVoter => EnginePeerChange::AddVoter(c.peer),
                    ChangeKind::AddLearner => EnginePeerChange::AddLearner(c.peer),
                    ChangeKind::Remove => EnginePeerChange::Remove(c.peer),
                })
                .collect(),
        ),
        Operator::TransferLeader { to } => EngineOperator::TransferLeader(to.id),
        Operator::Split { keys } => EngineOperator::Split(keys),
    }
}

/// The wire form of a leader's report, sent from shard `shard`.
pub fn region_heartbeat_request(hb: RegionHeartbeat, shard: ShardId) -> RegionHeartbeatRequest {
    RegionHeartbeatRequest {
        region: hb.region,
        leader: Some(hb.leader),
        leader_shard: shard.get() as u32,
        pending_peers: hb.pending_peers,
        down_peers: hb.down_peers,
        learners: hb.learners,
        approximate_size: hb.approximate_size,
        approximate_keys: hb.approximate_keys,
        bytes_written: hb.written_bytes,
        keys_written: hb.written_keys,
        bytes_read: hb.read_bytes,
        keys_read: hb.read_keys,
    }
}

/// One store's heartbeat: the sum of its shards' latest shares, with the
/// capacity and available bytes of its file system.
pub fn store_heartbeat_request<'a>(
    store: StoreId,
    shares: impl IntoIterator<Item = &'a StoreHeartbeat>,
    capacity: u64,
    available: u64,
) -> StoreHeartbeatRequest {
    let mut req =
        StoreHeartbeatRequest { store_id: store, capacity, available, ..StoreHeartbeatRequest::default() };
    for s in shares {
        req.used_size += s.used;
        req.region_count += s.region_count;
        req.leader_count += s.leader_count;
        req.keys_written += s.commands;
    }
    req
}

/// Bytes of the file system holding `dir`: (capacity, available); zeros
/// when it cannot be read.
fn disk_space(dir: &Path) -> (u64, u64) {
    let total = fs4::total_space(dir).unwrap_or(0);
    let avail = fs4::available_space(dir).unwrap_or(0);
    (total, avail)
}

impl Worker {
    fn run(self, rx: Receiver<Job>) {
        while let Ok(first) = rx.recv() {
            let mut jobs = vec![first];
            while jobs.len() < BATCH {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            let futs: Vec<BoxFuture<'_, ()>> = jobs.into_iter().map(|j| self.send(j)).collect();
            block_on(join_all(futs));
        }
    }

    fn send(&self, job: Job) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            match job {
                Job::Resolve(id) => {
                    if self.addrs.read().unwrap_or_else(PoisonError::into_inner).contains_key(&id) {
                        return;
                    }
                    match self.meta.call(&GetStoreRequest { store_id: id }).await {
                        Ok(AnyMessage::GetStoreResponse(r)) => {
                            let addr = r.store.and_then(|s| s.address.to_socket_addrs().ok()?.next());
                            if let Some(a) = addr {
                                self.addrs.write().unwrap_or_else(PoisonError::into_inner).insert(id, a);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::debug!(store = %id, error = %e, "resolving a store failed"),
                    }
                }
                Job::AskSplit { shard, token, region, count } => {
                    let req = AskBatchSplitRequest { region: region.clone(), split_count: count as u32 };
                    let ids = match self.meta.call(&req).await {
                        Ok(AnyMessage::AskBatchSplitResponse(r)) if r.ids.len() == count => Ok(r
                            .ids
                            .into_iter()
                            .map(|s| SplitIds { region_id: s.new_region_id, peer_ids: s.new_peer_ids })
                            .collect()),
                        Ok(other) => {
                            tracing::warn!(region = %region.id, answer = ?other.msg_type(), "bad split-id answer");
                            Err(ekv_engine::Error::ServerBusy("meta service gave no split ids"))
                        }
                        Err(e) => {
                            tracing::warn!(region = %region.id, error = %e, "asking for split ids failed");
                            Err(ekv_engine::Error::ServerBusy("meta service unavailable"))
                        }
                    };
                    if let Some(h) = self.handle.get() {
                        let _ = h.on_split_ids(shard, token, ids);
                    }
                }
                Job::ReportSplit(regions) => {
                    if let Err(e) = self.meta.call(&ReportBatchSplitRequest { regions }).await {
                        // The leaders' heartbeats carry the same news.
                        tracing::info!(error = %e, "reporting a split failed");
                    }
                }
                Job::RegionHeartbeat { shard, hb } => {
                    let id = hb.region.id;
                    let req = region_heartbeat_request(hb, shard);
                    match self.meta.call(&req).await {
                        Ok(AnyMessage::RegionHeartbeatResponse(r)) => {
                            if let (Some(op), Some(h)) = (r.operator, self.handle.get()) {
                                tracing::info!(region = %id, op = ?op, "operator from the meta service");
                                let _ = h.on_operator(r.region_id, to_engine_operator(op));
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::debug!(region = %id, error = %e, "region heartbeat failed"),
                    }
                }
                Job::StoreHeartbeat { shard, hb } => {
                    let req = {
                        let mut shares = self.shares.lock().unwrap_or_else(PoisonError::into_inner);
                        shares.insert(shard, hb);
                        // Shard 0 speaks for the store; the others' shares ride along.
                        if shard != ShardId(0) {
                            return;
                        }
                        let (capacity, available) = disk_space(&self.dir);
                        store_heartbeat_request(self.store, shares.values(), capacity, available)
                    };
                    if let Err(e) = self.meta.call(&req).await {
                        tracing::debug!(error = %e, "store heartbeat failed");
                    }
                }
            }
        })
    }
}

/// What a store learns when it joins the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// Its id (allocated on first start, then read from its data directory).
    pub store_id: StoreId,
    /// The first region, when this store bootstrapped the cluster: the
    /// caller creates its peer before serving.
    pub bootstrap: Option<Region>,
}

const STORE_ID_FILE: &str = "store.id";
/// Written before the store asks to bootstrap the cluster and removed once
/// its replica of the first region exists, so that a crash in between
/// ends with the replica created on restart rather than a region nobody holds.
const BOOTSTRAP_FILE: &str = "bootstrap.pending";

/// The store id kept in `dir`, if it was given one.
///
/// # Errors
/// The file exists but cannot be read or is malformed.
pub fn read_store_id(dir: &Path) -> Result<Option<StoreId>, String> {
    let path = dir.join(STORE_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let (version, id) =
                s.trim().split_once(' ').ok_or_else(|| format!("{}: malformed", path.display()))?;
            if version != "ekv-store-id-v1" {
                return Err(format!("{}: unknown format {version:?}", path.display()));
            }
            let id: u64 = id.parse().map_err(|_| format!("{}: malformed id {id:?}", path.display()))?;
            Ok(Some(StoreId(id)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

/// Writes `text` to `dir/name` durably (temporary file, sync, rename, sync
/// of the directory).
fn write_durably(dir: &Path, name: &str, text: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let tmp = dir.join(format!("{name}.tmp"));
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| format!("writing {name} into {}: {e}", dir.display()))
}

fn write_store_id(dir: &Path, id: StoreId) -> Result<(), String> {
    write_durably(dir, STORE_ID_FILE, &format!("ekv-store-id-v1 {}\n", id.get()))
}

/// The first region a store asked to bootstrap with, if it had not yet
/// created its replica.
fn pending_bootstrap(dir: &Path, store: StoreId) -> Result<Option<Region>, String> {
    let path = dir.join(BOOTSTRAP_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let fields: Vec<&str> = text.split_whitespace().collect();
    match fields.as_slice() {
        ["ekv-bootstrap-v1", region, peer] => {
            let parse =
                |v: &str| v.parse::<u64>().map_err(|_| format!("{}: malformed id {v:?}", path.display()));
            Ok(Some(first_region(RegionId(parse(region)?), PeerId(parse(peer)?), store)))
        }
        _ => Err(format!("{}: malformed", path.display())),
    }
}

/// Called once the replica of the bootstrapped region exists.
///
/// # Errors
/// The marker cannot be removed.
pub fn bootstrap_done(dir: &Path) -> Result<(), String> {
    match std::fs::remove_file(dir.join(BOOTSTRAP_FILE)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing {}: {e}", dir.join(BOOTSTRAP_FILE).display())),
    }
}

fn first_region(id: RegionId, peer: PeerId, store_id: StoreId) -> Region {
    Region {
        id,
        epoch: RegionEpoch { conf_ver: 1, version: 1 },
        peers: vec![PeerMeta { id: peer, store_id }],
        ..Region::default()
    }
}

async fn alloc_ids(meta: &MetaClient, count: u32) -> Result<u64, String> {
    match meta.call(&AllocIdRequest { count }).await {
        Ok(AnyMessage::AllocIdResponse(r)) if r.count >= count => Ok(r.first),
        Ok(m) => Err(format!("unexpected answer to AllocId: {:?}", m.msg_type())),
        Err(e) => Err(e.to_string()),
    }
}

/// Joins the cluster: takes the store id from `dir` or allocates one,
/// registers the store at `address` with `shards` shards, and when the
/// cluster is empty bootstraps it with one region over all keys whose only
/// replica is here. Waits for the meta service up to `wait`.
///
/// # Errors
/// The meta service is unreachable, refuses the store (a tombstone, an
/// address taken), or the data directory cannot be written.
pub fn join(
    meta: &MetaClient,
    dir: &Path,
    address: &str,
    shards: u32,
    wait: Duration,
) -> Result<Joined, String> {
    let deadline = std::time::Instant::now() + wait;
    let retry = |e: String| -> Result<(), String> {
        if std::time::Instant::now() >= deadline {
            return Err(format!("meta service: {e}"));
        }
        std::thread::sleep(Duration::from_millis(200));
        Ok(())
    };
    let store_id = loop {
        if let Some(id) = read_store_id(dir)? {
            break id;
        }
        match block_on(alloc_ids(meta, 1)) {
            Ok(id) => {
                write_store_id(dir, StoreId(id))?;
                break StoreId(id);
            }
            Err(e) => retry(e)?,
        }
    };
    let me =
        StoreMeta { id: store_id, address: address.to_owned(), shard_count: shards, ..StoreMeta::default() };
    // Registration: PutStore once the cluster exists (the store that
    // bootstraps it is registered by the bootstrap itself).
    let register = || -> Result<(), String> {
        loop {
            match block_on(meta.call(&PutStoreRequest { store: me.clone() })) {
                Ok(AnyMessage::PutStoreResponse(_)) => return Ok(()),
                Ok(m) => return Err(format!("unexpected answer to PutStore: {:?}", m.msg_type())),
                Err(ekv_client::Error::Refused(w)) => {
                    return Err(format!("the meta service refused {store_id}: {w}"))
                }
                Err(e) => retry(e.to_string())?,
            }
        }
    };
    if let Some(region) = pending_bootstrap(dir, store_id)? {
        // A crash came between asking to bootstrap and creating the
        // replica: if the meta service took the region, create it now.
        let known = loop {
            match block_on(meta.call(&GetRegionByIdRequest { region_id: region.id })) {
                Ok(AnyMessage::GetRegionResponse(r)) => break r.route.is_some(),
                Ok(m) => return Err(format!("unexpected answer to GetRegionById: {:?}", m.msg_type())),
                Err(e) => retry(e.to_string())?,
            }
        };
        if known {
            register()?;
            return Ok(Joined { store_id, bootstrap: Some(region) });
        }
        bootstrap_done(dir)?;
    }
    let bootstrapped = loop {
        match block_on(meta.call(&IsBootstrappedRequest)) {
            Ok(AnyMessage::IsBootstrappedResponse(r)) => break r.bootstrapped,
            Ok(m) => return Err(format!("unexpected answer to IsBootstrapped: {:?}", m.msg_type())),
            Err(e) => retry(e.to_string())?,
        }
    };
    if bootstrapped {
        register()?;
        return Ok(Joined { store_id, bootstrap: None });
    }
    let first = loop {
        match block_on(alloc_ids(meta, 2)) {
            Ok(first) => break first,
            Err(e) => retry(e)?,
        }
    };
    let region = first_region(RegionId(first), PeerId(first + 1), store_id);
    write_durably(dir, BOOTSTRAP_FILE, &format!("ekv-bootstrap-v1 {} {}\n", first, first + 1))?;
    loop {
        match block_on(meta.call(&BootstrapRequest { store: me.clone(), region: region.clone() })) {
            Ok(AnyMessage::BootstrapResponse(_)) => return Ok(Joined { store_id, bootstrap: Some(region) }),
            Ok(m) => return Err(format!("unexpected answer to Bootstrap: {:?}", m.msg_type())),
            // Another store bootstrapped first.
            Err(ekv_client::Error::Refused(WireError::BadRequest { .. })) => {
                bootstrap_done(dir)?;
                register()?;
                return Ok(Joined { store_id, bootstrap: None });
            }
            Err(e) => retry(e.to_string())?,
        }
    }
}
