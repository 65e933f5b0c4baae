//! A store process put together (`ekv store`): it joins the cluster through
//! the meta service, starts its shards with a server on each shard's port
//! and the TCP raft transport, and reports to the meta service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ekv_client::{MetaClient, MetaConfig};
use ekv_engine::fsm::TransportFactory;
use ekv_engine::{Config, Store, StoreSpec};
use ekv_net::local::serve_shards;
use ekv_net::server::ServerConfig;
use ekv_net::server_stats::ServerStats;
use ekv_net::transport::TcpTransport;
use ekv_proto::frame::FrameLimits;
use ekv_proto::StoreId;

use crate::remote::{bootstrap_done, join, RemotePd};

/// Settings of one store process.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Meta-service members (`host:port`).
    pub pd_endpoints: Vec<String>,
    /// Where the store keeps its id, WALs and LSM trees.
    pub data_dir: PathBuf,
    /// Address of shard 0; shard `i` listens on its port + `i`.
    pub listen: SocketAddr,
    /// Address registered with the meta service (default: `listen`).
    pub advertise: Option<String>,
    /// Raftstore settings (shards, CPUs, raft timings, limits).
    pub engine: Config,
    /// Frame limits.
    pub limits: FrameLimits,
    /// How long to wait for the meta service at start.
    pub join_wait: Duration,
}

impl NodeConfig {
    /// A store under `dir` listening on `listen`, reporting to `pd`.
    pub fn new(pd: &str, dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            pd_endpoints: vec![pd.to_owned()],
            data_dir: dir.into(),
            listen,
            advertise: None,
            engine: Config::default(),
            limits: FrameLimits::default(),
            join_wait: Duration::from_secs(30),
        }
    }
}

/// A running store process.
#[derive(Debug)]
pub struct StoreNode {
    store: Store,
    id: StoreId,
    addr: SocketAddr,
    server_stats: ServerStats,
}

impl StoreNode {
    /// Joins the cluster and starts serving.
    ///
    /// # Errors
    /// Invalid settings, the meta service unreachable or refusing the
    /// store, ports that cannot be bound, storage failures.
    pub fn start(cfg: NodeConfig) -> Result<Self, String> {
        cfg.engine.validate().map_err(|e| format!("store settings: {e}"))?;
        let shards = cfg.engine.shards.max(1);
        if usize::from(cfg.listen.port()) + shards > usize::from(u16::MAX) + 1 {
            return Err(format!("{} shards do not fit above port {}", shards, cfg.listen.port()));
        }
        let meta = MetaClient::new(MetaConfig {
            endpoints: cfg.pd_endpoints.clone(),
            limits: cfg.limits,
            ..MetaConfig::default()
        })
        .map_err(|e| e.to_string())?;
        let advertise = cfg.advertise.clone().unwrap_or_else(|| cfg.listen.to_string());
        let joined = join(&meta, &cfg.data_dir, &advertise, shards as u32, cfg.join_wait)?;
        let pd = RemotePd::start(meta, joined.store_id, &cfg.data_dir).map_err(|e| e.to_string())?;
        let resolver = pd.resolver();
        let limits = cfg.limits;
        let transport: TransportFactory = Box::new(move |_| {
            Box::new(TcpTransport::new(resolver.clone(), limits)) as Box<dyn ekv_engine::Transport>
        });
        let mut spec = StoreSpec::new(
            cfg.engine.clone(),
            cfg.data_dir.clone(),
            joined.store_id,
            transport,
            pd.factory(),
        );
        let server = ServerConfig {
            host: cfg.listen.ip(),
            base_port: cfg.listen.port(),
            limits,
            ..ServerConfig::default()
        };
        let server_stats = server.stats.clone();
        let failed = serve_shards(&mut spec, server);
        let store = Store::start(spec).map_err(|e| format!("starting the store: {e}"))?;
        let bind_error = failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(e) = bind_error {
            let _ = store.stop();
            return Err(e);
        }
        pd.attach(store.handle());
        if let Some(region) = joined.bootstrap {
            if store.handle().router().owner(region.id).is_none() {
                if let Err(e) = futures::executor::block_on(store.bootstrap_region(region)) {
                    let _ = store.stop();
                    return Err(format!("creating the first region: {e}"));
                }
            }
            bootstrap_done(&cfg.data_dir)?;
        }
        tracing::info!(store = %joined.store_id, addr = %cfg.listen, shards, "store started");
        Ok(Self { store, id: joined.store_id, addr: cfg.listen, server_stats })
    }

    /// The store's id.
    pub fn id(&self) -> StoreId {
        self.id
    }

    /// The address of shard 0.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The running store (status, stats).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The request counters of the store's shard servers.
    pub fn server_stats(&self) -> &ServerStats {
        &self.server_stats
    }

    /// Stops the store; acknowledged writes are durable.
    ///
    /// # Errors
    /// The store did not stop cleanly.
    pub fn stop(self) -> Result<(), String> {
        self.store.stop().map_err(|e| e.to_string())
    }
}
