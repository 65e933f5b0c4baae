//! `etcd`: an etcd cluster through its v3 gRPC API, as a production client
//! uses it. Reads are linearizable (etcd's default; never
//! `serializable`), scans are ranges with a limit, batches are one txn of
//! puts. Sessions are spread round-robin over the endpoints, as etcd's
//! clients balance, and each has its own connection and a single-threaded
//! runtime that it blocks on, so a client thread does its own I/O.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::runtime::Runtime;

use super::etcd_rpc::{KvClient, PutRequest, RangeRequest, Request, RequestOp, TxnRequest};
use super::{KvSession, KvTarget, Result};

/// The target's name.
pub const NAME: &str = "etcd";
/// etcd's default `--max-txn-ops`: a txn with more operations is refused.
pub const MAX_TXN_OPS: usize = 128;
/// Deadline of every request and of connecting.
const TIMEOUT: Duration = Duration::from_secs(10);

/// An etcd cluster.
#[derive(Debug)]
pub struct EtcdTarget {
    endpoints: Vec<String>,
    next: AtomicUsize,
}

impl EtcdTarget {
    /// The cluster serving `endpoints` (`host:port` client URLs).
    ///
    /// # Errors
    /// No endpoint given.
    pub fn new(endpoints: Vec<String>) -> Result<Self> {
        if endpoints.is_empty() {
            return Err("target etcd needs --etcd-endpoints or --etcd-start".into());
        }
        Ok(Self { endpoints, next: AtomicUsize::new(0) })
    }
}

impl KvTarget for EtcdTarget {
    fn name(&self) -> &str {
        NAME
    }

    fn describe(&self) -> String {
        format!(
            "etcd: gRPC to {}, one connection per client, linearizable reads, batches as one txn",
            self.endpoints.join(",")
        )
    }

    fn session(&self) -> Result<Box<dyn KvSession>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        let endpoint = &self.endpoints[i];
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let client = rt
            .block_on(KvClient::connect(endpoint, TIMEOUT))
            .map_err(|e| format!("connecting to etcd at {endpoint}: {e}"))?;
        Ok(Box::new(EtcdSession { rt, client }))
    }

    fn max_batch(&self) -> Option<usize> {
        Some(MAX_TXN_OPS)
    }
}

#[derive(Debug)]
struct EtcdSession {
    rt: Runtime,
    client: KvClient,
}

fn put(key: &[u8], value: &[u8]) -> PutRequest {
    PutRequest { key: key.to_vec(), value: value.to_vec() }
}

impl KvSession for EtcdSession {
    fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let req = RangeRequest { key: key.to_vec(), ..RangeRequest::default() };
        let resp = self.rt.block_on(self.client.range(req))?;
        Ok(resp.kvs.into_iter().next().map(|kv| kv.value))
    }

    fn update(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.rt.block_on(self.client.put(put(key, value)))?;
        Ok(())
    }

    fn scan(&mut self, start: &[u8], end: &[u8], limit: usize) -> Result<usize> {
        let req = RangeRequest {
            key: start.to_vec(),
            range_end: end.to_vec(),
            limit: i64::try_from(limit)?,
            ..RangeRequest::default()
        };
        let resp = self.rt.block_on(self.client.range(req))?;
        Ok(resp.kvs.len())
    }

    fn batch_put(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let success =
            pairs.iter().map(|(k, v)| RequestOp { request: Some(Request::Put(put(k, v))) }).collect();
        let resp = self.rt.block_on(self.client.txn(TxnRequest { success }))?;
        if !resp.succeeded {
            // A txn without compares always takes its success branch.
            return Err("etcd txn without compares did not succeed".into());
        }
        Ok(())
    }
}
