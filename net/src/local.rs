//! Stores with shard servers in one process: the wiring tests, benchmarks
//! and the playground share.

use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ekv_engine::{Config, LocalNetwork, LocalPd, Store, StoreSpec};
use ekv_proto::{PeerId, PeerMeta, Region, RegionEpoch, RegionId, ShardId, StoreId};

use crate::server::{spawn_shard_server, ServerConfig};

/// A base port such that `count` consecutive ports from it are free on
/// `host` right now, below the kernel's ephemeral range so that outgoing
/// connections do not take them meanwhile. Tests, benchmarks and the
/// playground use it so that parallel runs do not collide; a port can
/// still be taken between this probe and the bind, which then fails loudly.
///
/// # Errors
/// When no run of `count` free ports is found.
pub fn free_base_port(host: std::net::IpAddr, count: u16) -> std::io::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const HIGH: u32 = 32_000;
    static CALLS: AtomicU32 = AtomicU32::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let seed = std::process::id()
        .wrapping_mul(7919)
        .wrapping_add(nanos)
        .wrapping_add(CALLS.fetch_add(1, Ordering::Relaxed).wrapping_mul(104_729));
    let count = u32::from(count.max(1));
    let span = HIGH - LOW - count;
    for attempt in 0..512u32 {
        let base = LOW + (seed.wrapping_add(attempt.wrapping_mul(4_099)) % span);
        let all_free = (base..base + count)
            .all(|p| std::net::TcpListener::bind(SocketAddr::new(host, p as u16)).is_ok());
        if all_free {
            return Ok(base as u16);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no {count} consecutive free ports on {host}"),
    ))
}

/// The first port a shard server failed to bind, if any.
pub type BindError = Arc<Mutex<Option<String>>>;

/// Makes `spec` start a shard server (see [`ServerConfig`]) on each of its
/// shards' executors. A port that cannot be bound is recorded in the
/// returned slot (the shard itself runs on).
pub fn serve_shards(spec: &mut StoreSpec, cfg: ServerConfig) -> BindError {
    let failed = BindError::default();
    let seen = failed.clone();
    let cfg = Arc::new(cfg);
    spec.on_shard_start = Some(Arc::new(move |shard, handle, stop| {
        let addr = cfg.addr(shard);
        if let Err(e) = spawn_shard_server(Rc::new((*cfg).clone()), shard, handle, stop) {
            let mut slot = seen.lock().unwrap_or_else(PoisonError::into_inner);
            slot.get_or_insert(format!("binding the shard server on {addr}: {e}"));
        }
    }));
    failed
}

/// The region [`single_replica_server`] serves: region 1 over all keys,
/// its one replica (peer 1) on store 1.
pub fn single_replica_region() -> Region {
    Region {
        id: RegionId(1),
        epoch: RegionEpoch { conf_ver: 1, version: 1 },
        peers: vec![PeerMeta { id: PeerId(1), store_id: StoreId(1) }],
        ..Region::default()
    }
}

/// Store 1 with one shard in `dir`, serving [`single_replica_region`] on
/// `server`'s port for shard 0, once its peer leads (within `leader_wait`).
/// Returns the store and the address to connect to.
///
/// # Errors
/// The store does not start, the port cannot be bound, or no leader in time.
pub fn single_replica_server(
    dir: &Path,
    cfg: Config,
    server: ServerConfig,
    leader_wait: Duration,
) -> Result<(Store, SocketAddr), String> {
    let net = LocalNetwork::new();
    let pd = LocalPd::new(net.clone(), 1000);
    let addr = server.addr(ShardId(0));
    let cfg = Config { shards: 1, ..cfg };
    let mut spec = StoreSpec::new(
        cfg,
        dir.join("s1"),
        StoreId(1),
        net.transport_for(StoreId(1)),
        pd.client_for(StoreId(1)),
    );
    let failed = serve_shards(&mut spec, server);
    let store = Store::start(spec).map_err(|e| format!("starting the store: {e}"))?;
    net.register(&store);
    let bind_failure = || failed.lock().unwrap_or_else(PoisonError::into_inner).take();
    let ready = (|| {
        futures::executor::block_on(store.bootstrap_region(single_replica_region()))
            .map_err(|e| format!("bootstrap: {e}"))?;
        let deadline = Instant::now() + leader_wait;
        while !futures::executor::block_on(store.status()).iter().any(|p| p.is_leader) {
            if Instant::now() >= deadline {
                return Err(format!("no leader after {leader_wait:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        bind_failure().map_or(Ok(()), Err)
    })();
    match ready {
        Ok(()) => Ok((store, addr)),
        Err(e) => {
            let _ = store.stop();
            Err(e)
        }
    }
}

/// Stores of one process that talk raft to each other over loopback TCP
/// and serve clients on their shard ports, with [`LocalPd`] as the meta
/// service. For client tests and benchmarks that want the real network
/// path without separate processes; stores can be stopped and restarted
/// on the same data and ports.
#[derive(Debug)]
pub struct LoopbackCluster {
    dir: std::path::PathBuf,
    cfg: Config,
    server: ServerConfig,
    net: LocalNetwork,
    pd: LocalPd,
    ports: std::collections::BTreeMap<StoreId, u16>,
    stores: std::collections::BTreeMap<StoreId, Store>,
}

impl LoopbackCluster {
    /// Starts stores 1..=`stores` (each with `cfg.shards` shards) under
    /// `dir` and bootstraps region 1 over all keys with a replica on each
    /// of the first three stores (peer ids equal to store ids).
    ///
    /// # Errors
    /// A store does not start or a port cannot be bound.
    pub fn start(dir: &Path, stores: u64, cfg: Config, server: ServerConfig) -> Result<Self, String> {
        let shards = cfg.shards.max(1) as u16;
        let base = free_base_port(server.host, shards * stores as u16).map_err(|e| e.to_string())?;
        let ports = (1..=stores).map(|s| (StoreId(s), base + (s as u16 - 1) * shards)).collect();
        let net = LocalNetwork::new();
        let pd = LocalPd::new(net.clone(), 1000);
        let mut c = Self {
            dir: dir.to_path_buf(),
            cfg,
            server,
            net,
            pd,
            ports,
            stores: std::collections::BTreeMap::new(),
        };
        let ids: Vec<StoreId> = c.ports.keys().copied().collect();
        for id in &ids {
            c.start_store(*id)?;
        }
        let region = Region {
            id: RegionId(1),
            epoch: RegionEpoch { conf_ver: 1, version: 1 },
            peers: ids.iter().take(3).map(|s| PeerMeta { id: PeerId(s.get()), store_id: *s }).collect(),
            ..Region::default()
        };
        for id in ids.iter().take(3) {
            futures::executor::block_on(c.stores[id].bootstrap_region(region.clone()))
                .map_err(|e| format!("bootstrapping {id}: {e}"))?;
        }
        Ok(c)
    }

    /// The address of `store`'s shard 0 (shard `i` listens on its port + `i`).
    pub fn store_addr(&self, store: StoreId) -> Option<SocketAddr> {
        self.ports.get(&store).map(|p| SocketAddr::new(self.server.host, *p))
    }

    /// The meta service.
    pub fn pd(&self) -> &LocalPd {
        &self.pd
    }

    /// A running store.
    pub fn store(&self, id: StoreId) -> Option<&Store> {
        self.stores.get(&id)
    }

    /// Ids of the running stores.
    pub fn running(&self) -> Vec<StoreId> {
        self.stores.keys().copied().collect()
    }

    /// Starts (or restarts, on its data) store `id`.
    ///
    /// # Errors
    /// It is running, unknown, or does not start.
    pub fn start_store(&mut self, id: StoreId) -> Result<(), String> {
        if self.stores.contains_key(&id) {
            return Err(format!("{id} is running"));
        }
        let port = *self.ports.get(&id).ok_or_else(|| format!("{id} is not part of the cluster"))?;
        let host = self.server.host;
        let ports = self.ports.clone();
        let resolver: crate::transport::Resolver =
            Arc::new(move |s: StoreId| ports.get(&s).map(|p| SocketAddr::new(host, *p)));
        let limits = self.server.limits;
        let transport: ekv_engine::fsm::TransportFactory = Box::new(move |_shard| {
            Box::new(crate::transport::TcpTransport::new(resolver.clone(), limits))
                as Box<dyn ekv_engine::Transport>
        });
        let mut spec = StoreSpec::new(
            self.cfg.clone(),
            self.dir.join(format!("s{}", id.get())),
            id,
            transport,
            self.pd.client_for(id),
        );
        let failed = serve_shards(&mut spec, ServerConfig { base_port: port, ..self.server.clone() });
        let store = Store::start(spec).map_err(|e| format!("starting {id}: {e}"))?;
        self.net.register(&store);
        if let Some(e) = failed.lock().unwrap_or_else(PoisonError::into_inner).take() {
            self.net.unregister(id);
            let _ = store.stop();
            return Err(e);
        }
        self.stores.insert(id, store);
        Ok(())
    }

    /// Stops store `id` (its data stays).
    ///
    /// # Errors
    /// It is not running, or stopping it failed.
    pub fn stop_store(&mut self, id: StoreId) -> Result<(), String> {
        let store = self.stores.remove(&id).ok_or_else(|| format!("{id} is not running"))?;
        self.net.unregister(id);
        store.stop().map_err(|e| format!("stopping {id}: {e}"))
    }

    /// The store whose peer of `region` leads, once one does (within `wait`).
    pub fn wait_leader(&self, region: RegionId, wait: Duration) -> Option<StoreId> {
        let deadline = Instant::now() + wait;
        loop {
            for (id, s) in &self.stores {
                if futures::executor::block_on(s.status())
                    .iter()
                    .any(|p| p.region.id == region && p.is_leader)
                {
                    return Some(*id);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops every store.
    ///
    /// # Errors
    /// The first store that failed to stop.
    pub fn stop(mut self) -> Result<(), String> {
        let ids = self.running();
        let mut first = Ok(());
        for id in ids {
            if let Err(e) = self.stop_store(id) {
                first = first.and(Err(e));
            }
        }
        first
    }
}
