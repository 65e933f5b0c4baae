//! A whole cluster in one process: one meta-service member and a few
//! stores on loopback, each on its own ports and data directory, as the
//! playground and the benchmarks run it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ekv_client::rt::block_on;
use ekv_client::{MetaClient, MetaConfig};
use ekv_engine::Config;
use ekv_net::local::free_base_port;
use ekv_proto::msg::{AnyMessage, GetStatusRequest};

use crate::core::Settings;
use crate::member::{Member, MemberConfig};
use crate::node::{NodeConfig, StoreNode};

/// Settings of a [`LocalCluster`].
#[derive(Debug, Clone)]
pub struct LocalClusterConfig {
    /// Where the data directories go.
    pub dir: PathBuf,
    /// Stores to start.
    pub stores: usize,
    /// Raftstore settings of each store (its `shards` included).
    pub engine: Config,
    /// The meta service's settings.
    pub settings: Settings,
    /// Loopback address to listen on.
    pub host: IpAddr,
    /// First port to use (none: a free range is found).
    pub base_port: Option<u16>,
}

impl LocalClusterConfig {
    /// Three stores of one shard each under `dir`, with settings fit for
    /// a shared machine: the meta service tolerates nearly full disks.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            stores: 3,
            engine: Config { shards: 1, ..Config::default() },
            settings: Settings { max_used_ratio: 0.99, ..Settings::default() },
            host: IpAddr::from([127, 0, 0, 1]),
            base_port: None,
        }
    }
}

/// A running one-process cluster.
#[derive(Debug)]
pub struct LocalCluster {
    member: Option<Member>,
    stores: Vec<StoreNode>,
    pd: String,
}

impl LocalCluster {
    /// Starts the meta service and the stores, and waits (up to `wait`)
    /// until the first region has its three replicas and nothing is in
    /// flight.
    ///
    /// # Errors
    /// A part does not start, or the cluster is not ready in time.
    pub fn start(cfg: LocalClusterConfig, wait: Duration) -> Result<Self, String> {
        let shards = cfg.engine.shards.max(1) as u16;
        let count = 1 + cfg.stores as u16 * shards;
        let base = match cfg.base_port {
            Some(p) => p,
            None => free_base_port(cfg.host, count).map_err(|e| format!("finding free ports: {e}"))?,
        };
        let pd = SocketAddr::new(cfg.host, base).to_string();
        let member = Member::start(MemberConfig {
            settings: cfg.settings.clone(),
            engine: Config { tick_interval: cfg.engine.tick_interval, ..Config::default() },
            ..MemberConfig::single(&pd, cfg.dir.join("pd"))
        })?;
        let mut cluster = Self { member: Some(member), stores: Vec::new(), pd: pd.clone() };
        for i in 0..cfg.stores {
            let listen = SocketAddr::new(cfg.host, base + 1 + i as u16 * shards);
            let node = NodeConfig {
                engine: cfg.engine.clone(),
                ..NodeConfig::new(&pd, cfg.dir.join(format!("store{}", i + 1)), listen)
            };
            match StoreNode::start(node) {
                Ok(s) => cluster.stores.push(s),
                Err(e) => {
                    let _ = cluster.stop();
                    return Err(e);
                }
            }
        }
        if let Err(e) = cluster.wait_ready(wait) {
            let _ = cluster.stop();
            return Err(e);
        }
        Ok(cluster)
    }

    /// The meta service's address, for clients.
    pub fn pd(&self) -> &str {
        &self.pd
    }

    /// The stores.
    pub fn stores(&self) -> &[StoreNode] {
        &self.stores
    }

    /// The meta service's status view (JSON).
    ///
    /// # Errors
    /// The meta service does not answer.
    pub fn status(&self) -> Result<serde_json::Value, String> {
        let meta = MetaClient::new(MetaConfig { endpoints: vec![self.pd.clone()], ..MetaConfig::default() })
            .map_err(|e| e.to_string())?;
        match block_on(meta.call(&GetStatusRequest)) {
            Ok(AnyMessage::GetStatusResponse(s)) => {
                serde_json::from_slice(&s.json).map_err(|e| e.to_string())
            }
            Ok(m) => Err(format!("unexpected answer {:?}", m.msg_type())),
            Err(e) => Err(e.to_string()),
        }
    }

    fn wait_ready(&self, wait: Duration) -> Result<(), String> {
        let want = self.stores.len().min(3);
        let deadline = Instant::now() + wait;
        loop {
            let last = match self.status() {
                Ok(st) if is_ready(&st, want) => return Ok(()),
                Ok(st) => st.to_string(),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(format!("the cluster was not ready after {wait:?}; last status: {last}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the stores, then the meta service.
    ///
    /// # Errors
    /// The first part that did not stop cleanly.
    pub fn stop(mut self) -> Result<(), String> {
        let mut first = Ok(());
        for s in self.stores.drain(..) {
            if let Err(e) = s.stop() {
                first = first.and(Err(e));
            }
        }
        if let Some(m) = self.member.take() {
            if let Err(e) = m.stop() {
                first = first.and(Err(e));
            }
        }
        first
    }
}

/// Every region has `replicas` voters, a leader, and no operator runs.
pub fn is_ready(status: &serde_json::Value, replicas: usize) -> bool {
    let no_ops = status["operators"].as_array().is_some_and(Vec::is_empty);
    let regions = status["regions"].as_array().is_some_and(|rs| {
        !rs.is_empty()
            && rs.iter().all(|r| {
                let peers = r["peers"].as_array();
                r["leader"].is_u64()
                    && peers
                        .is_some_and(|ps| ps.len() >= replicas && ps.iter().all(|p| p["role"] != "learner"))
            })
    });
    no_ops && regions
}
