//! Where routes come from: the [`RouteSource`] trait, and [`MetaClient`],
//! its implementation over the wire to the meta service (which follows
//! the meta service's leader and is also what `ekv ctl` talks through).

use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ekv_proto::frame::FrameLimits;
use ekv_proto::msg::{
    AnyMessage, GetMembersRequest, GetRegionRequest, GetStoreRequest, Message, RegionRoute, StoreMeta,
    WireError,
};
use ekv_proto::{RegionId, StoreId};

use crate::backoff::Backoff;
use crate::conn::{CallError, Connection};
use crate::error::{Error, Result};
use crate::rt::{sleep, with_deadline, BoxFuture};

/// Answers the client's routing questions. [`MetaClient`] asks the meta
/// service; tests and embedders may answer from elsewhere.
pub trait RouteSource: Send + Sync + fmt::Debug {
    /// The region holding `key` (with `before`, the keys just below it;
    /// see [`GetRegionRequest`]) and its leader as last reported.
    fn region<'a>(&'a self, key: &'a [u8], before: bool) -> BoxFuture<'a, Result<Option<RegionRoute>>>;
    /// Store `id`, for its address.
    fn store(&self, id: StoreId) -> BoxFuture<'_, Result<Option<StoreMeta>>>;
}

/// Timeouts for talking to the meta service.
#[derive(Debug, Clone)]
pub struct MetaConfig {
    /// Meta-service members, `host:port`; any one of them will do, the
    /// client finds the leader.
    pub endpoints: Vec<String>,
    /// Dialling one member.
    pub connect_timeout: Duration,
    /// One request, retries included.
    pub timeout: Duration,
    /// Frame limits.
    pub limits: FrameLimits,
}

impl Default for MetaConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["127.0.0.1:2379".into()],
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            limits: FrameLimits::default(),
        }
    }
}

/// A client of the meta service: requests go to its leader, found from
/// any member and followed across elections.
#[derive(Clone)]
pub struct MetaClient {
    inner: Arc<MetaInner>,
}

struct MetaInner {
    cfg: MetaConfig,
    endpoints: Vec<SocketAddr>,
    /// The member believed to lead.
    leader: Mutex<Option<SocketAddr>>,
    conns: Mutex<HashMap<SocketAddr, Connection>>,
    next: AtomicUsize,
    seed: AtomicU64,
}

impl fmt::Debug for MetaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetaClient").field("endpoints", &self.inner.endpoints).finish_non_exhaustive()
    }
}

impl MetaClient {
    /// A client of the members in `cfg` (no I/O until the first request).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when no endpoint resolves.
    pub fn new(cfg: MetaConfig) -> Result<Self> {
        let mut endpoints = Vec::new();
        for e in &cfg.endpoints {
            let addrs = e
                .to_socket_addrs()
                .map_err(|err| Error::InvalidArgument(format!("meta-service endpoint {e:?}: {err}")))?;
            endpoints.extend(addrs);
        }
        if endpoints.is_empty() {
            return Err(Error::InvalidArgument("no meta-service endpoint given".into()));
        }
        Ok(Self {
            inner: Arc::new(MetaInner {
                cfg,
                endpoints,
                leader: Mutex::new(None),
                conns: Mutex::new(HashMap::new()),
                next: AtomicUsize::new(0),
                seed: AtomicU64::new(0x9e37_79b9),
            }),
        })
    }

    /// Sends `msg` to the leader and returns its answer; follows
    /// redirections and retries unreachable members until the timeout.
    /// Meta-service requests are idempotent or safe to repeat (a repeated
    /// id allocation only wastes ids), so a lost answer is retried.
    ///
    /// # Errors
    /// [`Error::Meta`] when no leader answers in time; [`Error::Refused`]
    /// for a request the meta service rejects.
    pub async fn call<M: Message + Sync>(&self, msg: &M) -> Result<AnyMessage> {
        let inner = &*self.inner;
        let deadline = Instant::now() + inner.cfg.timeout;
        let seed = inner.seed.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        let mut backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(300), deadline, seed);
        let mut last = String::from("no attempt");
        loop {
            let addr = self.target();
            let outcome = match self.conn(addr) {
                Ok(conn) => with_deadline(conn.call(msg, RegionId::META), deadline).await,
                Err(e) => Some(Err(CallError::Send(e))),
            };
            match outcome {
                Some(Ok(resp)) => return Ok(resp),
                Some(Err(CallError::Wire(WireError::NotLeader { leader }))) => {
                    last = format!("{addr} is not the leader");
                    self.forget(addr);
                    if leader.is_some() && self.find_leader(addr, deadline).await {
                        continue;
                    }
                }
                Some(Err(CallError::Wire(WireError::ServerBusy))) => last = format!("{addr} is busy"),
                Some(Err(CallError::Wire(w))) if !w.definitely_not_applied() => {
                    last = format!("{addr}: {w}");
                }
                Some(Err(CallError::Wire(w))) => return Err(Error::Refused(w)),
                Some(Err(e)) => {
                    last = format!("{addr}: {e}");
                    self.forget(addr);
                    self.drop_conn(addr);
                }
                None => {
                    self.forget(addr);
                    self.drop_conn(addr);
                    return Err(Error::Meta(format!(
                        "no answer within {:?}; last: {last}",
                        inner.cfg.timeout
                    )));
                }
            }
            match backoff.next_delay(Instant::now()) {
                Some(d) => sleep(d).await,
                None => return Err(Error::Meta(format!("no leader answered; last: {last}"))),
            }
        }
    }

    /// Asks `via` who leads, and remembers the answer. True when a leader
    /// with a known address was learned.
    async fn find_leader(&self, via: SocketAddr, deadline: Instant) -> bool {
        let Ok(conn) = self.conn(via) else { return false };
        let Some(Ok(AnyMessage::GetMembersResponse(m))) =
            with_deadline(conn.call(&GetMembersRequest, RegionId::META), deadline).await
        else {
            return false;
        };
        let Some(leader) = m.leader else { return false };
        let Some(member) = m.members.iter().find(|x| x.store_id == leader) else { return false };
        match member.address.to_socket_addrs().ok().and_then(|mut a| a.next()) {
            Some(addr) => {
                *self.inner.leader.lock().unwrap_or_else(PoisonError::into_inner) = Some(addr);
                true
            }
            None => false,
        }
    }

    fn target(&self) -> SocketAddr {
        if let Some(l) = *self.inner.leader.lock().unwrap_or_else(PoisonError::into_inner) {
            return l;
        }
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed);
        self.inner.endpoints[i % self.inner.endpoints.len()]
    }

    fn forget(&self, addr: SocketAddr) {
        let mut l = self.inner.leader.lock().unwrap_or_else(PoisonError::into_inner);
        if *l == Some(addr) {
            *l = None;
        }
    }

    fn drop_conn(&self, addr: SocketAddr) {
        self.inner.conns.lock().unwrap_or_else(PoisonError::into_inner).remove(&addr);
    }

    fn conn(&self, addr: SocketAddr) -> std::result::Result<Connection, String> {
        let mut conns = self.inner.conns.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = conns.get(&addr).filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let c = Connection::connect(addr, self.inner.cfg.connect_timeout, self.inner.cfg.limits)
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        conns.insert(addr, c.clone());
        Ok(c)
    }
}

fn unexpected(what: &str, m: &AnyMessage) -> Error {
    Error::Meta(format!("unexpected answer to {what}: {:?}", m.msg_type()))
}

impl RouteSource for MetaClient {
    fn region<'a>(&'a self, key: &'a [u8], before: bool) -> BoxFuture<'a, Result<Option<RegionRoute>>> {
        Box::pin(async move {
            match self.call(&GetRegionRequest { key: key.to_vec(), before }).await? {
                AnyMessage::GetRegionResponse(r) => Ok(r.route),
                m => Err(unexpected("GetRegion", &m)),
            }
        })
    }

    fn store(&self, id: StoreId) -> BoxFuture<'_, Result<Option<StoreMeta>>> {
        Box::pin(async move {
            match self.call(&GetStoreRequest { store_id: id }).await? {
                AnyMessage::GetStoreResponse(r) => Ok(r.store),
                m => Err(unexpected("GetStore", &m)),
            }
        })
    }
}
