//! `ekv`: a running cluster found through its meta service (`--pd`), or
//! one started in this process for the run (`--ekv-start`: a meta-service
//! member and three stores on loopback, data under the run's directory).
//! Every session shares one client (its region cache and pipelined
//! connections), as an application's threads would.

use std::path::Path;
use std::time::Duration;

use ekv_client::{Client, Config, KvPair};
use ekv_pd::local::{LocalCluster, LocalClusterConfig};

use super::{KvSession, KvTarget, Result};

pub const NAME: &str = "ekv";

#[derive(Debug)]
pub struct EkvTarget {
    client: Client,
    pd: Vec<String>,
    cluster: Option<LocalCluster>,
}

impl EkvTarget {
    /// A target for the cluster whose meta service is at `pd`.
    pub fn connect(pd: Vec<String>) -> Result<Self> {
        if pd.is_empty() {
            return Err("the ekv target needs --pd endpoints or --ekv-start".into());
        }
        let client = Client::new(Config { pd_endpoints: pd.clone(), ..Config::default() })?;
        Ok(Self { client, pd, cluster: None })
    }

    /// Starts a cluster in this process under `dir` and targets it.
    pub fn start(dir: &Path) -> Result<Self> {
        let cluster = LocalCluster::start(LocalClusterConfig::new(dir.join("ekv")), Duration::from_secs(60))?;
        let mut t = Self::connect(vec![cluster.pd().to_owned()])?;
        t.cluster = Some(cluster);
        Ok(t)
    }
}

impl Drop for EkvTarget {
    fn drop(&mut self) {
        if let Some(c) = self.cluster.take() {
            if let Err(e) = c.stop() {
                eprintln!("stopping the ekv cluster: {e}");
            }
        }
    }
}

impl KvTarget for EkvTarget {
    fn name(&self) -> &str {
        NAME
    }

    fn describe(&self) -> String {
        match &self.cluster {
            Some(c) => format!(
                "ekv: meta service and {} stores of one shard in this process, loopback TCP, fsync on",
                c.stores().len()
            ),
            None => format!("ekv: cluster at {}", self.pd.join(",")),
        }
    }

    fn session(&self) -> Result<Box<dyn KvSession>> {
        Ok(Box::new(EkvSession { client: self.client.clone() }))
    }
}

struct EkvSession {
    client: Client,
}

impl KvSession for EkvSession {
    fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.client.get(key)?)
    }

    fn update(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.client.put(key, value)?)
    }

    fn scan(&mut self, start: &[u8], end: &[u8], limit: usize) -> Result<usize> {
        Ok(self.client.scan(start, end, limit)?.len())
    }

    fn batch_put(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let pairs = pairs.iter().map(|(k, v)| KvPair { key: k.clone(), value: v.clone() }).collect();
        Ok(self.client.batch_put(pairs)?)
    }
}
