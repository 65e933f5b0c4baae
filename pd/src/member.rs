//! One member of the meta service (`ekv pd`): a one-shard store pinned to
//! its own core that holds the meta service's raft group, and on the same
//! executor the service that answers stores and clients.
//!
//! The state lives in the raft group as records (`core::format`); the
//! member that leads the group loads them into a [`Cluster`] and serves
//! from memory. Every change the core makes is written through raft before
//! the request that caused it is answered, so a new leader loads exactly
//! what was acknowledged. Followers answer `NotLeader` (with the leader
//! when known); `GetMembers` is answered by anyone.
//!
//! One port per member carries both the service's frames (region id 0) and
//! the raft traffic between members.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ekv_engine::fsm::{ShardStop, TransportFactory};
use ekv_engine::{
    Command, Config, PdClient, RegionHeartbeat, Request, Response, Scan, Store, StoreHandle, StoreHeartbeat,
    StoreSpec, WriteOp,
};
use ekv_net::server::{spawn_server, MetaService, ServerConfig};
use ekv_net::server_stats::ServerStats;
use ekv_net::transport::{Resolver, TcpTransport};
use ekv_proto::frame::FrameLimits;
use ekv_proto::msg::{
    AllocIdResponse, AnyMessage, AskBatchSplitResponse, DeleteStoreResponse, ErrorResponse,
    GetAllStoresResponse, GetMembersResponse, GetRegionResponse, GetStatusResponse, GetStoreResponse,
    IsBootstrappedResponse, MetaMember, PutStoreResponse, RegionRoute, ReportBatchSplitResponse,
    ScanRegionsResponse, StoreHeartbeatResponse, WireError,
};
use ekv_proto::{PeerId, PeerMeta, Region, RegionEpoch, RegionId, ShardId, StoreId};
use futures::future::{self, Either, LocalBoxFuture};

use crate::core::{Change, Record, KEY_PREFIX};
use crate::core::{Cluster, Settings};

/// The meta service's raft group.
pub const META_REGION: RegionId = RegionId(1);
/// Column family of the meta service's records.
const CF: &str = "default";
/// Records read per page when a new leader loads the state.
const LOAD_PAGE: usize = 10_000;

/// Settings of one member.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// This member's id (1, 2, 3, ...).
    pub id: u64,
    /// Every member, this one included: id and `host:port`.
    pub members: Vec<(u64, String)>,
    /// Where the member keeps its WAL and LSM.
    pub data_dir: PathBuf,
    /// The core to pin the member's executor to (none: unpinned).
    pub cpu: Option<usize>,
    /// Raft and storage settings (one shard is forced; regions never split).
    pub engine: Config,
    /// Scheduling and lifecycle settings.
    pub settings: Settings,
    /// Frame limits.
    pub limits: FrameLimits,
    /// How often the member checks whether it leads, and runs the
    /// scheduler's periodic work.
    pub check_interval: Duration,
}

impl MemberConfig {
    /// A single-member meta service listening on `address`, data in `dir`.
    pub fn single(address: &str, dir: impl Into<PathBuf>) -> Self {
        Self {
            id: 1,
            members: vec![(1, address.to_owned())],
            data_dir: dir.into(),
            cpu: None,
            engine: Config::default(),
            settings: Settings::default(),
            limits: FrameLimits::default(),
            check_interval: Duration::from_millis(20),
        }
    }

    fn resolve(&self) -> Result<BTreeMap<u64, SocketAddr>, String> {
        let mut out = BTreeMap::new();
        for (id, addr) in &self.members {
            if *id == 0 {
                return Err("member ids start at 1".into());
            }
            let sock = addr
                .to_socket_addrs()
                .map_err(|e| format!("member {id}: address {addr:?}: {e}"))?
                .next()
                .ok_or_else(|| format!("member {id}: address {addr:?} resolves to nothing"))?;
            if out.insert(*id, sock).is_some() {
                return Err(format!("member {id} is listed twice"));
            }
        }
        if !out.contains_key(&self.id) {
            return Err(format!("member {} is not in the member list", self.id));
        }
        Ok(out)
    }
}

/// The raftstore's meta-service client for the meta service's own store:
/// its one region never splits and nobody schedules it.
struct NoPd;

impl PdClient for NoPd {
    fn ask_batch_split(&mut self, _: &Region, _: usize, _: u64) {}
    fn report_batch_split(&mut self, _: &[Region]) {}
    fn region_heartbeat(&mut self, _: RegionHeartbeat) {}
    fn store_heartbeat(&mut self, _: StoreHeartbeat) {}
}

/// A running member.
#[derive(Debug)]
pub struct Member {
    store: Store,
    addr: SocketAddr,
    server_stats: ServerStats,
}

impl Member {
    /// Starts the member: its store (bootstrapping the meta region on first
    /// start), its listener, and its service.
    ///
    /// # Errors
    /// Invalid settings, a port that cannot be bound, storage failures.
    pub fn start(cfg: MemberConfig) -> Result<Self, String> {
        let addrs = cfg.resolve()?;
        let addr = addrs[&cfg.id];
        let region = Region {
            id: META_REGION,
            epoch: RegionEpoch { conf_ver: 1, version: 1 },
            peers: addrs.keys().map(|id| PeerMeta { id: PeerId(*id), store_id: StoreId(*id) }).collect(),
            ..Region::default()
        };
        let engine = Config {
            shards: 1,
            cpus: cfg.cpu.into_iter().collect(),
            region_split_size: u64::MAX / 4,
            region_split_keys: u64::MAX / 4,
            ..cfg.engine.clone()
        };
        engine.validate().map_err(|e| format!("meta-service settings: {e}"))?;
        let resolver: Resolver = {
            let addrs = addrs.clone();
            Arc::new(move |s: StoreId| addrs.get(&s.get()).copied())
        };
        let limits = cfg.limits;
        let transport: TransportFactory = Box::new(move |_| {
            Box::new(TcpTransport::new(resolver.clone(), limits)) as Box<dyn ekv_engine::Transport>
        });
        let mut spec = StoreSpec::new(
            engine,
            cfg.data_dir.clone(),
            StoreId(cfg.id),
            transport,
            Box::new(|_| Box::new(NoPd) as Box<dyn PdClient>),
        );
        let bind_failed: Arc<Mutex<Option<String>>> = Arc::default();
        let server_stats = ServerStats::default();
        let shared = Arc::new(Shared {
            id: cfg.id,
            members: addrs
                .iter()
                .map(|(id, a)| MetaMember { store_id: StoreId(*id), address: a.to_string() })
                .collect(),
            settings: cfg.settings.clone(),
            started: Instant::now(),
            interval: cfg.check_interval,
        });
        {
            let bind_failed = bind_failed.clone();
            let server = ServerConfig {
                host: addr.ip(),
                base_port: addr.port(),
                limits,
                stats: server_stats.clone(),
                ..ServerConfig::default()
            };
            spec.on_shard_start =
                Some(Arc::new(move |shard: ShardId, handle: StoreHandle, stop: ShardStop| {
                    let svc = Rc::new(Service {
                        shared: shared.clone(),
                        store: handle.clone(),
                        state: RefCell::new(State::default()),
                    });
                    let meta: Rc<dyn MetaService> = Rc::new(ServiceRef(svc.clone()));
                    if let Err(e) =
                        spawn_server(Rc::new(server.clone()), shard, handle, stop.clone(), Some(meta))
                    {
                        bind_failed
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get_or_insert(format!("binding the meta service on {addr}: {e}"));
                        return;
                    }
                    glommio::spawn_local(watch(svc, stop)).detach();
                }));
        }
        let store = Store::start(spec).map_err(|e| format!("starting the meta service's store: {e}"))?;
        let failed = bind_failed.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(e) = failed {
            let _ = store.stop();
            return Err(e);
        }
        if store.handle().router().owner(META_REGION).is_none() {
            if let Err(e) = futures::executor::block_on(store.bootstrap_region(region)) {
                let _ = store.stop();
                return Err(format!("creating the meta region: {e}"));
            }
        }
        tracing::info!(member = cfg.id, %addr, "meta-service member started");
        Ok(Self { store, addr, server_stats })
    }

    /// The address stores and clients reach this member at.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The member's store: status and stats of the meta service's raft
    /// group, for status pages.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The request counters of the member's server (meta-service requests
    /// and the raft traffic of its group).
    pub fn server_stats(&self) -> &ServerStats {
        &self.server_stats
    }

    /// Whether this member leads the meta service's raft group.
    pub fn is_leader(&self) -> bool {
        futures::executor::block_on(self.store.status())
            .iter()
            .any(|p| p.region.id == META_REGION && p.is_leader)
    }

    /// Stops the member; acknowledged state is durable.
    ///
    /// # Errors
    /// The store did not stop cleanly.
    pub fn stop(self) -> Result<(), String> {
        self.store.stop().map_err(|e| e.to_string())
    }
}

struct Shared {
    id: u64,
    members: Vec<MetaMember>,
    settings: Settings,
    started: Instant,
    interval: Duration,
}

#[derive(Default)]
struct State {
    /// The loaded state, while this member leads (and the term it loaded in).
    cluster: Option<Cluster>,
    term: u64,
    /// The leader as last seen, for redirections.
    leader: Option<PeerMeta>,
    epoch: RegionEpoch,
    loading: bool,
}

struct Service {
    shared: Arc<Shared>,
    store: StoreHandle,
    state: RefCell<State>,
}

struct ServiceRef(Rc<Service>);

impl MetaService for ServiceRef {
    fn call(&self, msg: AnyMessage) -> LocalBoxFuture<'static, AnyMessage> {
        let svc = self.0.clone();
        Box::pin(async move { svc.handle(msg).await })
    }
}

fn refused(e: &crate::core::Error) -> AnyMessage {
    AnyMessage::ErrorResponse(ErrorResponse::bad_request(e.to_string()))
}

fn wire(e: WireError) -> AnyMessage {
    AnyMessage::ErrorResponse(ErrorResponse::from(e))
}

/// Checks leadership and loads or drops the state; runs the scheduler's
/// periodic work while leading.
async fn watch(svc: Rc<Service>, stop: ShardStop) {
    loop {
        {
            let (tick, stopped) = (glommio::timer::sleep(svc.shared.interval), stop.wait());
            futures::pin_mut!(tick, stopped);
            if let Either::Right(_) = future::select(tick, stopped).await {
                return;
            }
        }
        let status = svc.store.status().await;
        let Some(me) = status.into_iter().find(|p| p.region.id == META_REGION) else { continue };
        let reload = {
            let mut st = svc.state.borrow_mut();
            st.epoch = me.region.epoch;
            st.leader = if me.is_leader { Some(me.peer) } else { me.leader };
            if !me.is_leader {
                if st.cluster.take().is_some() {
                    tracing::info!(member = svc.shared.id, "no longer leads the meta service");
                }
                false
            } else {
                (st.cluster.is_none() || st.term != me.term) && !st.loading
            }
        };
        if reload {
            svc.load(me.term).await;
        } else if me.is_leader {
            let now = svc.now_ms();
            let changes = match svc.state.borrow_mut().cluster.as_mut() {
                Some(c) => {
                    c.tick(now);
                    c.take_changes()
                }
                None => Vec::new(),
            };
            let _ = svc.persist(changes).await;
        }
    }
}

impl Service {
    fn now_ms(&self) -> u64 {
        self.shared.started.elapsed().as_millis() as u64
    }

    /// Reads every record through raft (a linearizable read on the new
    /// leader) and starts serving from them.
    async fn load(&self, term: u64) {
        self.state.borrow_mut().loading = true;
        let epoch = self.state.borrow().epoch;
        let mut records = Vec::new();
        let mut start = Bytes::from_static(KEY_PREFIX);
        let end = {
            let mut e = KEY_PREFIX.to_vec();
            *e.last_mut().expect("prefix") += 1;
            Bytes::from(e)
        };
        let loaded = loop {
            let scan = Scan {
                cf: CF.into(),
                start: start.clone(),
                end: end.clone(),
                limit: LOAD_PAGE,
                reverse: false,
                key_only: false,
            };
            match self.store.call(Request { region_id: META_REGION, epoch, cmd: Command::Scan(scan) }).await {
                Ok(Response::Pairs(pairs)) => {
                    let full = pairs.len() >= LOAD_PAGE;
                    if let Some((k, _)) = pairs.last() {
                        let mut next = k.to_vec();
                        next.push(0);
                        start = Bytes::from(next);
                    }
                    records.extend(
                        pairs.into_iter().map(|(k, v)| Record { key: k.to_vec(), value: Some(v.to_vec()) }),
                    );
                    if !full {
                        break Cluster::load(self.shared.settings.clone(), records, self.now_ms())
                            .map_err(|e| e.to_string());
                    }
                }
                Ok(other) => break Err(format!("unexpected answer to a scan: {other:?}")),
                Err(e) => break Err(e.to_string()),
            }
        };
        let mut st = self.state.borrow_mut();
        st.loading = false;
        match loaded {
            Ok(cluster) => {
                tracing::info!(
                    member = self.shared.id,
                    term,
                    regions = cluster.regions().len(),
                    "leads the meta service"
                );
                st.cluster = Some(cluster);
                st.term = term;
            }
            Err(e) => {
                // Retried on the next check; a corrupt record keeps this
                // member from serving rather than serving wrong routes.
                tracing::error!(member = self.shared.id, error = %e, "loading the meta-service state failed");
                st.cluster = None;
            }
        }
    }

    /// Writes `changes` through raft. On failure the in-memory state may
    /// hold what was not written: it is dropped and loaded again.
    async fn persist(&self, changes: Vec<Change>) -> Result<(), WireError> {
        if changes.is_empty() {
            return Ok(());
        }
        let ops = changes
            .iter()
            .map(|c| {
                let rec = c.to_record();
                match rec.value {
                    Some(v) => {
                        WriteOp::Put { cf: CF.into(), key: Bytes::from(rec.key), value: Bytes::from(v) }
                    }
                    None => WriteOp::Delete { cf: CF.into(), key: Bytes::from(rec.key) },
                }
            })
            .collect();
        let epoch = self.state.borrow().epoch;
        match self.store.call(Request { region_id: META_REGION, epoch, cmd: Command::Write(ops) }).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(member = self.shared.id, error = %e, "persisting meta-service state failed");
                self.state.borrow_mut().cluster = None;
                Err(WireError::OutcomeUnknown)
            }
        }
    }

    fn members(&self) -> AnyMessage {
        let st = self.state.borrow();
        GetMembersResponse { members: self.shared.members.clone(), leader: st.leader.map(|p| p.store_id) }
            .into()
    }

    /// Runs `f` on the loaded state and persists what it changed before
    /// answering; a member that does not lead redirects.
    async fn with_cluster(&self, f: impl FnOnce(&mut Cluster, u64) -> AnyMessage) -> AnyMessage {
        let now = self.now_ms();
        let (answer, changes) = {
            let mut st = self.state.borrow_mut();
            let loading = st.loading;
            let leader = st.leader;
            match st.cluster.as_mut() {
                Some(c) => {
                    let a = f(c, now);
                    (a, c.take_changes())
                }
                None if loading => return wire(WireError::ServerBusy),
                None => {
                    let leader = leader.filter(|l| l.store_id != StoreId(self.shared.id));
                    return wire(WireError::NotLeader { leader });
                }
            }
        };
        match self.persist(changes).await {
            Ok(()) => answer,
            Err(e) => wire(e),
        }
    }

    async fn handle(&self, msg: AnyMessage) -> AnyMessage {
        use AnyMessage as M;
        match msg {
            M::GetMembersRequest(_) => self.members(),
            M::GetRegionRequest(r) => {
                self.with_cluster(|c, _| GetRegionResponse { route: region_at(c, &r.key, r.before) }.into())
                    .await
            }
            M::GetRegionByIdRequest(r) => {
                self.with_cluster(|c, _| GetRegionResponse { route: c.get_region_by_id(r.region_id) }.into())
                    .await
            }
            M::ScanRegionsRequest(r) => {
                self.with_cluster(|c, _| {
                    ScanRegionsResponse { routes: c.scan_regions(&r.start, &r.end, r.limit as usize) }.into()
                })
                .await
            }
            M::AllocIdRequest(r) => {
                self.with_cluster(|c, _| match c.alloc_ids(u64::from(r.count)) {
                    Ok(first) => AllocIdResponse { first, count: r.count }.into(),
                    Err(e) => refused(&e),
                })
                .await
            }
            M::PutStoreRequest(r) => {
                self.with_cluster(|c, now| match c.put_store(r.store, now) {
                    Ok(()) => PutStoreResponse.into(),
                    Err(e) => refused(&e),
                })
                .await
            }
            M::GetStoreRequest(r) => {
                self.with_cluster(|c, _| GetStoreResponse { store: c.store(r.store_id).cloned() }.into())
                    .await
            }
            M::GetAllStoresRequest(r) => {
                self.with_cluster(|c, _| {
                    GetAllStoresResponse { stores: c.stores(r.exclude_tombstones) }.into()
                })
                .await
            }
            M::StoreHeartbeatRequest(r) => {
                self.with_cluster(|c, now| match c.store_heartbeat(&r, now) {
                    Ok(()) => StoreHeartbeatResponse.into(),
                    Err(e) => refused(&e),
                })
                .await
            }
            M::RegionHeartbeatRequest(r) => {
                self.with_cluster(|c, now| match c.region_heartbeat(&r, now) {
                    Ok(resp) => resp.into(),
                    Err(e) => refused(&e),
                })
                .await
            }
            M::AskBatchSplitRequest(r) => {
                self.with_cluster(|c, _| match c.ask_batch_split(&r.region, r.split_count) {
                    Ok(ids) => AskBatchSplitResponse { ids }.into(),
                    Err(e) => refused(&e),
                })
                .await
            }
            M::ReportBatchSplitRequest(r) => {
                self.with_cluster(|c, _| match c.report_batch_split(&r.regions) {
                    Ok(()) => ReportBatchSplitResponse.into(),
                    Err(e) => refused(&e),
                })
                .await
            }
            M::IsBootstrappedRequest(_) => {
                self.with_cluster(|c, _| IsBootstrappedResponse { bootstrapped: c.is_bootstrapped() }.into())
                    .await
            }
            M::BootstrapRequest(r) => {
                self.with_cluster(|c, now| match c.bootstrap(r.store, r.region, now) {
                    Ok(()) => ekv_proto::msg::BootstrapResponse.into(),
                    Err(e) => refused(&e),
                })
                .await
            }
            M::DeleteStoreRequest(r) => {
                self.with_cluster(|c, _| match c.delete_store(r.store_id) {
                    Ok(()) => DeleteStoreResponse.into(),
                    Err(e) => refused(&e),
                })
                .await
            }
            M::GetStatusRequest(_) => {
                self.with_cluster(|c, now| match c.status(now).to_json() {
                    Ok(json) => GetStatusResponse { json: json.into_bytes() }.into(),
                    Err(e) => AnyMessage::ErrorResponse(ErrorResponse::bad_request(format!("status: {e}"))),
                })
                .await
            }
            other => AnyMessage::ErrorResponse(ErrorResponse::bad_request(format!(
                "{:?} is not a meta-service request",
                other.msg_type()
            ))),
        }
    }
}

/// The route for `key`, or with `before` for the keys just below it.
fn region_at(c: &Cluster, key: &[u8], before: bool) -> Option<RegionRoute> {
    if !before {
        return c.get_region(key);
    }
    if !key.is_empty() {
        if let Some(r) = c.get_region(key) {
            if r.region.start_key.as_slice() < key {
                return Some(r);
            }
        }
    }
    // The region that ends at `key` (the last one for an empty key): one
    // lookup, not a walk over every region.
    c.regions().ending_at(key).map(|i| i.route())
}

#[cfg(test)]
mod tests {
    use ekv_proto::msg::StoreMeta;

    use super::*;

    #[test]
    fn region_at_finds_the_region_below_a_key() {
        let mut c = Cluster::new(Settings::default());
        let store =
            StoreMeta { id: StoreId(1), address: "127.0.0.1:1".into(), shard_count: 1, ..Default::default() };
        let peer = |id: u64| PeerMeta { id: PeerId(id), store_id: StoreId(1) };
        let whole = Region {
            id: RegionId(2),
            epoch: RegionEpoch { conf_ver: 1, version: 1 },
            peers: vec![peer(3)],
            ..Default::default()
        };
        c.bootstrap(store, whole, 0).unwrap();
        let half = |id: u64, start: &str, end: &str| Region {
            id: RegionId(id),
            start_key: start.as_bytes().to_vec(),
            end_key: end.as_bytes().to_vec(),
            epoch: RegionEpoch { conf_ver: 1, version: 2 },
            peers: vec![peer(id + 10)],
        };
        c.report_batch_split(&[half(2, "", "m"), half(4, "m", "")]).unwrap();
        let at = |key: &str, before| region_at(&c, key.as_bytes(), before).map(|r| r.region.id.get());
        assert_eq!(at("a", false), Some(2));
        assert_eq!(at("m", false), Some(4));
        assert_eq!(at("m", true), Some(2));
        assert_eq!(at("n", true), Some(4));
        assert_eq!(at("", true), Some(4), "an empty key: the last region");
    }
}
