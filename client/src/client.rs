//! The client: routes each request to the leader's store and shard,
//! retries what is safe to retry within a deadline, splits batches by
//! region and walks scans across regions.
//!
//! One implementation, async; the blocking [`Client`] drives the same
//! futures on the calling thread.

use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use ekv_proto::frame::FrameLimits;
use ekv_proto::msg::{
    AnyMessage, BatchDeleteRequest, BatchGetRequest, BatchPutRequest, CompareAndSwapRequest,
    DeleteRangeRequest, DeleteRequest, GetRequest, KvPair, Message, PutRequest, RequestContext, ScanRequest,
    StoreMeta, WireError,
};
use ekv_proto::{PeerMeta, Region, RegionId, StoreId};

use crate::backoff::Backoff;
use crate::conn::{CallError, Connection};
use crate::error::{Error, Result};
use crate::meta::{MetaClient, MetaConfig, RouteSource};
use crate::region_cache::{CachedRegion, RegionCache};
use crate::rt::{block_on, join_all, sleep, with_deadline, BoxFuture};

/// Client settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Meta-service members (`host:port`).
    pub pd_endpoints: Vec<String>,
    /// Dialling a store or a meta-service member.
    pub connect_timeout: Duration,
    /// One attempt at one region; a write whose answer does not come
    /// within it has an unknown outcome.
    pub request_timeout: Duration,
    /// A whole operation, retries included.
    pub timeout: Duration,
    /// First retry delay; doubles per attempt up to `backoff_max`.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Connections kept to each store shard (requests are pipelined on
    /// each; more spread the decoding over more reader threads).
    pub connections_per_shard: usize,
    /// Column family of every request.
    pub cf: String,
    /// Frame limits (as the servers').
    pub limits: FrameLimits,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            pd_endpoints: vec!["127.0.0.1:2379".into()],
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
            backoff_base: Duration::from_millis(2),
            backoff_max: Duration::from_millis(250),
            connections_per_shard: 2,
            cf: String::new(),
            limits: FrameLimits::default(),
        }
    }
}

/// Reverse order and key-only for [`AsyncClient::scan_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanOptions {
    /// Walk from the end down: the largest keys first.
    pub reverse: bool,
    /// Return keys with empty values.
    pub key_only: bool,
}

/// The outcome of a compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasOutcome {
    /// The swap happened.
    pub succeeded: bool,
    /// The value before (the one that did not match when it failed).
    pub previous: Option<Vec<u8>>,
}

/// Reads may be repeated freely; a write whose answer was lost may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

/// One region's part of a batch, with its keys.
type PartFuture<'a> = BoxFuture<'a, (Attempt, Vec<&'a [u8]>)>;

/// One attempt's verdict.
enum Attempt {
    Done(AnyMessage),
    /// Nothing was applied: try again, at once when the cache learned
    /// something, after a backoff otherwise.
    Retry {
        now: bool,
        why: String,
    },
    Fail(Error),
}

struct Inner {
    cfg: Config,
    routes: Arc<dyn RouteSource>,
    cache: RwLock<RegionCache>,
    stores: Mutex<HashMap<StoreId, SocketAddr>>,
    pool: Mutex<HashMap<SocketAddr, Vec<Connection>>>,
    next_conn: AtomicUsize,
    seed: AtomicU64,
}

/// The asynchronous client. Cheap to clone; use it from any executor.
#[derive(Clone)]
pub struct AsyncClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for AsyncClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncClient").field("routes", &self.inner.routes).finish_non_exhaustive()
    }
}

/// The blocking client, for plain threads. Cheap to clone. Do not call it
/// from an async runtime's worker threads; use [`AsyncClient`] there.
#[derive(Clone, Debug)]
pub struct Client {
    inner: AsyncClient,
}

fn check_key(cfg: &Config, key: &[u8]) -> Result<()> {
    if key.len() > cfg.limits.max_key {
        return Err(Error::InvalidArgument(format!(
            "key of {} bytes over the limit of {}",
            key.len(),
            cfg.limits.max_key
        )));
    }
    Ok(())
}

fn check_value(cfg: &Config, value: &[u8]) -> Result<()> {
    if value.len() > cfg.limits.max_value {
        return Err(Error::InvalidArgument(format!(
            "value of {} bytes over the limit of {}",
            value.len(),
            cfg.limits.max_value
        )));
    }
    Ok(())
}

fn unexpected(m: &AnyMessage) -> Error {
    Error::Refused(WireError::BadRequest { message: format!("unexpected answer {:?}", m.msg_type()) })
}

/// The part of `[start, end)` inside `region` (empty end: unbounded).
fn clip(region: &Region, start: &[u8], end: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let s = if start < region.start_key.as_slice() { region.start_key.clone() } else { start.to_vec() };
    let e = match (end.is_empty(), region.end_key.is_empty()) {
        (true, _) => region.end_key.clone(),
        (false, true) => end.to_vec(),
        (false, false) => end.min(region.end_key.as_slice()).to_vec(),
    };
    (s, e)
}

impl AsyncClient {
    /// A client of the cluster whose meta service `cfg.pd_endpoints` name.
    /// No I/O happens until the first request.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for endpoints that do not resolve.
    pub fn new(cfg: Config) -> Result<Self> {
        let meta = MetaClient::new(MetaConfig {
            endpoints: cfg.pd_endpoints.clone(),
            connect_timeout: cfg.connect_timeout,
            timeout: cfg.timeout,
            limits: cfg.limits,
        })?;
        Ok(Self::with_routes(cfg, Arc::new(meta)))
    }

    /// A client that asks `routes` where regions and stores are.
    pub fn with_routes(cfg: Config, routes: Arc<dyn RouteSource>) -> Self {
        Self {
            inner: Arc::new(Inner {
                cfg,
                routes,
                cache: RwLock::new(RegionCache::new()),
                stores: Mutex::new(HashMap::new()),
                pool: Mutex::new(HashMap::new()),
                next_conn: AtomicUsize::new(0),
                seed: AtomicU64::new(0x2545_f491_4f6c_dd1d),
            }),
        }
    }

    /// The blocking face of this client.
    pub fn blocking(&self) -> Client {
        Client { inner: self.clone() }
    }

    /// The value of `key`, if any. Linearizable.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        check_key(&self.inner.cfg, key)?;
        let (_, resp) =
            self.inner.single(key, false, Kind::Read, |ctx, _| GetRequest { ctx, key: key.to_vec() }).await?;
        match resp {
            AnyMessage::GetResponse(r) => Ok(r.value),
            m => Err(unexpected(&m)),
        }
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    /// See [`Error`]; [`Error::OutcomeUnknown`] when the answer was lost.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        check_key(&self.inner.cfg, key)?;
        check_value(&self.inner.cfg, value)?;
        self.inner
            .single(key, false, Kind::Write, |ctx, _| PutRequest {
                ctx,
                key: key.to_vec(),
                value: value.to_vec(),
            })
            .await
            .map(drop)
    }

    /// Removes `key` (whether or not it exists).
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn delete(&self, key: &[u8]) -> Result<()> {
        check_key(&self.inner.cfg, key)?;
        self.inner
            .single(key, false, Kind::Write, |ctx, _| DeleteRequest { ctx, key: key.to_vec() })
            .await
            .map(drop)
    }

    /// Sets `key` to `new` (`None`: deletes it) if its value is `expected`
    /// (`None`: absent).
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<CasOutcome> {
        check_key(&self.inner.cfg, key)?;
        if let Some(v) = new {
            check_value(&self.inner.cfg, v)?;
        }
        let (_, resp) = self
            .inner
            .single(key, false, Kind::Write, |ctx, _| CompareAndSwapRequest {
                ctx,
                key: key.to_vec(),
                expected: expected.map(<[u8]>::to_vec),
                new: new.map(<[u8]>::to_vec),
            })
            .await?;
        match resp {
            AnyMessage::CompareAndSwapResponse(r) => {
                Ok(CasOutcome { succeeded: r.succeeded, previous: r.previous })
            }
            m => Err(unexpected(&m)),
        }
    }

    /// The values of those `keys` that exist, in key order. Keys of
    /// different regions are read in parallel.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn batch_get(&self, keys: &[Vec<u8>]) -> Result<Vec<KvPair>> {
        for k in keys {
            check_key(&self.inner.cfg, k)?;
        }
        let mut keys = keys.to_vec();
        keys.sort();
        keys.dedup();
        let parts = self
            .inner
            .batch(&keys, Kind::Read, |ctx, part: &[&[u8]]| BatchGetRequest {
                ctx,
                keys: part.iter().map(|k| k.to_vec()).collect(),
            })
            .await?;
        let mut out = Vec::new();
        for m in parts {
            match m {
                AnyMessage::BatchGetResponse(r) => out.extend(r.pairs),
                m => return Err(unexpected(&m)),
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Writes all `pairs` (a later pair wins over an earlier one with the
    /// same key). Pairs of one region are applied atomically; regions are
    /// written in parallel, so on an error some regions may have applied
    /// their part.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn batch_put(&self, pairs: Vec<KvPair>) -> Result<()> {
        let mut latest: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = std::collections::BTreeMap::new();
        for p in pairs {
            check_key(&self.inner.cfg, &p.key)?;
            check_value(&self.inner.cfg, &p.value)?;
            latest.insert(p.key, p.value);
        }
        let keys: Vec<Vec<u8>> = latest.keys().cloned().collect();
        self.inner
            .batch(&keys, Kind::Write, |ctx, part: &[&[u8]]| BatchPutRequest {
                ctx,
                pairs: part.iter().map(|k| KvPair { key: k.to_vec(), value: latest[*k].clone() }).collect(),
            })
            .await
            .map(drop)
    }

    /// Removes all `keys`; atomic per region, as [`AsyncClient::batch_put`].
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn batch_delete(&self, keys: &[Vec<u8>]) -> Result<()> {
        for k in keys {
            check_key(&self.inner.cfg, k)?;
        }
        let mut keys = keys.to_vec();
        keys.sort();
        keys.dedup();
        self.inner
            .batch(&keys, Kind::Write, |ctx, part: &[&[u8]]| BatchDeleteRequest {
                ctx,
                keys: part.iter().map(|k| k.to_vec()).collect(),
            })
            .await
            .map(drop)
    }

    /// Removes every key in `[start, end)` (empty `end`: to the last key),
    /// region by region.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        check_key(&self.inner.cfg, start)?;
        check_key(&self.inner.cfg, end)?;
        if !end.is_empty() && start >= end {
            return Ok(());
        }
        let mut cur = start.to_vec();
        loop {
            let (region, _) = self
                .inner
                .single(&cur, false, Kind::Write, |ctx, r| {
                    let (s, e) = clip(r, &cur, end);
                    DeleteRangeRequest { ctx, start: s, end: e }
                })
                .await?;
            if region.end_key.is_empty() || (!end.is_empty() && region.end_key.as_slice() >= end) {
                return Ok(());
            }
            cur = region.end_key;
        }
    }

    /// Up to `limit` pairs of `[start, end)` (empty `end`: to the last
    /// key) in key order, across regions.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<KvPair>> {
        self.scan_with(start, end, limit, ScanOptions::default()).await
    }

    /// [`AsyncClient::scan`] with options: in reverse the largest keys
    /// come first.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn scan_with(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        opts: ScanOptions,
    ) -> Result<Vec<KvPair>> {
        check_key(&self.inner.cfg, start)?;
        check_key(&self.inner.cfg, end)?;
        let mut out = Vec::new();
        if limit == 0 || (!end.is_empty() && start >= end) {
            return Ok(out);
        }
        let page = self.inner.cfg.limits.max_scan_limit.max(1) as usize;
        // The part not read yet is [lo, hi).
        let mut lo = start.to_vec();
        let mut hi = end.to_vec();
        loop {
            let want = (limit - out.len()).min(page);
            let at = if opts.reverse { hi.clone() } else { lo.clone() };
            let (region, resp) = self
                .inner
                .single(&at, opts.reverse, Kind::Read, |ctx, r| {
                    let (s, e) = clip(r, &lo, &hi);
                    ScanRequest {
                        ctx,
                        start: s,
                        end: e,
                        limit: want as u32,
                        reverse: opts.reverse,
                        key_only: opts.key_only,
                    }
                })
                .await?;
            let AnyMessage::ScanResponse(r) = resp else { return Err(unexpected(&resp)) };
            let full = r.pairs.len() >= want;
            let last = r.pairs.last().map(|p| p.key.clone());
            out.extend(r.pairs);
            if out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
            match (full, last, opts.reverse) {
                // The region may hold more: continue inside it.
                (true, Some(k), false) => {
                    lo = k;
                    lo.push(0);
                }
                (true, Some(k), true) => hi = k,
                // The region is done: move to the next one.
                (_, _, false) => {
                    if region.end_key.is_empty() || (!hi.is_empty() && region.end_key >= hi) {
                        return Ok(out);
                    }
                    lo = region.end_key;
                }
                (_, _, true) => {
                    if region.start_key.as_slice() <= lo.as_slice() {
                        return Ok(out);
                    }
                    hi = region.start_key;
                }
            }
        }
    }

    /// Forgets every cached route (they are fetched again as needed).
    pub fn clear_cache(&self) {
        *self.inner.cache.write().unwrap_or_else(PoisonError::into_inner) = RegionCache::new();
        self.inner.stores.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

impl Inner {
    fn deadline(&self) -> Instant {
        Instant::now() + self.cfg.timeout
    }

    fn backoff(&self, deadline: Instant) -> Backoff {
        let seed = self.seed.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        Backoff::new(self.cfg.backoff_base, self.cfg.backoff_max, deadline, seed)
    }

    fn ctx(&self, region: &Region) -> RequestContext {
        RequestContext { cf: self.cfg.cf.clone(), epoch: region.epoch }
    }

    /// The cached region holding `key` (or the keys below it), asking the
    /// route source on a miss.
    async fn locate(&self, key: &[u8], before: bool) -> Result<CachedRegion> {
        {
            let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
            let hit = if before { cache.locate_before(key) } else { cache.locate(key) };
            if let Some(c) = hit {
                return Ok(c.clone());
            }
        }
        let route = self.routes.region(key, before).await?.ok_or_else(|| {
            Error::Meta(format!("no region holds key {key:?} (is the cluster bootstrapped?)"))
        })?;
        let cached = CachedRegion {
            region: route.region.clone(),
            leader: route.leader,
            leader_shard: route.leader_shard,
        };
        self.cache.write().unwrap_or_else(PoisonError::into_inner).insert(
            route.region,
            route.leader,
            route.leader_shard,
        );
        Ok(cached)
    }

    async fn store_addr(&self, id: StoreId) -> Result<SocketAddr> {
        if let Some(a) = self.stores.lock().unwrap_or_else(PoisonError::into_inner).get(&id) {
            return Ok(*a);
        }
        let meta: StoreMeta =
            self.routes.store(id).await?.ok_or_else(|| Error::Meta(format!("{id} is not known")))?;
        let addr = meta
            .address
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| Error::Meta(format!("{id} has an unusable address {:?}", meta.address)))?;
        self.stores.lock().unwrap_or_else(PoisonError::into_inner).insert(id, addr);
        Ok(addr)
    }

    /// A pooled connection to `addr`, dialling when the pool is short.
    fn conn(&self, addr: SocketAddr) -> std::result::Result<Connection, String> {
        let want = self.cfg.connections_per_shard.max(1);
        let turn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        {
            let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
            let conns = pool.entry(addr).or_default();
            conns.retain(|c| !c.is_closed());
            if conns.len() >= want {
                return Ok(conns[turn % conns.len()].clone());
            }
        }
        // Dial outside the lock so that other shards' requests go on.
        let c = Connection::connect(addr, self.cfg.connect_timeout, self.cfg.limits)
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        let conns = pool.entry(addr).or_default();
        if conns.len() < want {
            conns.push(c.clone());
        }
        Ok(c)
    }

    /// Who to ask: the leader when known, else the replicas in turn (a
    /// follower answers with the leader). After a round of the cached
    /// replicas comes `None`: the route is asked of the meta service again,
    /// since replicas that neither answer nor name a leader may all have
    /// left the region.
    fn target(c: &CachedRegion, attempt: u32) -> Option<(PeerMeta, u32)> {
        if let Some(l) = c.leader {
            return Some((l, c.leader_shard));
        }
        let n = c.region.peers.len();
        c.region.peers.get(attempt as usize % (n + 1)).map(|p| (*p, 0))
    }

    /// One attempt at `region` with `msg`.
    async fn attempt<M: Message + Sync>(
        &self,
        c: &CachedRegion,
        msg: &M,
        kind: Kind,
        attempt: u32,
        deadline: Instant,
    ) -> Attempt {
        let id = c.region.id;
        let Some((peer, shard)) = Self::target(c, attempt) else {
            self.invalidate(id);
            return Attempt::Retry {
                now: false,
                why: format!("no cached replica of {id} answered; asking its route again"),
            };
        };
        let base = match self.store_addr(peer.store_id).await {
            Ok(a) => a,
            Err(e) => return Attempt::Retry { now: false, why: e.to_string() },
        };
        let Some(port) = base.port().checked_add(shard as u16) else {
            return Attempt::Fail(Error::Meta(format!("{} shard {shard} has no port", peer.store_id)));
        };
        let addr = SocketAddr::new(base.ip(), port);
        let conn = match self.conn(addr) {
            Ok(c) => c,
            Err(why) => {
                // The store may be down: let the next attempt find the leader anew.
                self.set_leader(id, None);
                self.forget_store(peer.store_id);
                return Attempt::Retry { now: false, why };
            }
        };
        let until = deadline.min(Instant::now() + self.cfg.request_timeout);
        let outcome = with_deadline(conn.call(msg, id), until).await.unwrap_or(Err(CallError::Timeout));
        match outcome {
            Ok(m) => Attempt::Done(m),
            Err(e) => self.on_error(c, peer, e, kind),
        }
    }

    fn on_error(&self, c: &CachedRegion, peer: PeerMeta, e: CallError, kind: Kind) -> Attempt {
        let id = c.region.id;
        let unknown = |reason: String| {
            if kind == Kind::Write {
                Attempt::Fail(Error::OutcomeUnknown { region: id, reason })
            } else {
                Attempt::Retry { now: false, why: reason }
            }
        };
        match e {
            CallError::Wire(WireError::NotLeader { leader }) => {
                let known = leader.is_some_and(|l| l != peer);
                self.set_leader(id, leader);
                Attempt::Retry { now: known, why: format!("{} is not the leader of {id}", peer.id) }
            }
            CallError::Wire(WireError::EpochNotMatch { regions }) => {
                let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
                let mut learned = false;
                for r in regions {
                    learned |= cache.insert(r, None, 0);
                }
                if !learned {
                    cache.invalidate(id);
                }
                Attempt::Retry { now: learned, why: format!("{id} changed shape") }
            }
            CallError::Wire(WireError::KeyNotInRegion { .. })
            | CallError::Wire(WireError::RegionNotFound { .. }) => {
                self.invalidate(id);
                Attempt::Retry { now: false, why: format!("{} does not serve {id} as cached", peer.store_id) }
            }
            CallError::Wire(WireError::StoreNotMatch { .. }) => {
                self.forget_store(peer.store_id);
                self.set_leader(id, None);
                Attempt::Retry { now: false, why: format!("{} answered as another store", peer.store_id) }
            }
            CallError::Wire(w @ (WireError::BadRequest { .. } | WireError::FrameTooLarge { .. })) => {
                Attempt::Fail(Error::Refused(w))
            }
            CallError::Wire(w) if w.definitely_not_applied() => {
                Attempt::Retry { now: false, why: w.to_string() }
            }
            CallError::Wire(w) => unknown(w.to_string()),
            CallError::Send(why) => {
                self.set_leader(id, None);
                Attempt::Retry { now: false, why }
            }
            e @ (CallError::Timeout | CallError::ConnectionLost(_)) => {
                // The store may be gone: ask around next time.
                self.set_leader(id, None);
                unknown(format!("{}: {e}", peer.store_id))
            }
        }
    }

    fn set_leader(&self, id: RegionId, leader: Option<PeerMeta>) {
        self.cache.write().unwrap_or_else(PoisonError::into_inner).set_leader(id, leader);
    }

    fn invalidate(&self, id: RegionId) {
        self.cache.write().unwrap_or_else(PoisonError::into_inner).invalidate(id);
    }

    fn forget_store(&self, id: StoreId) {
        self.stores.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
    }

    /// One request to the region holding `key` (or, with `before`, the
    /// keys below it), retried within the deadline. `build` makes the
    /// request for the region as currently cached. Returns the region it
    /// was served by and the answer.
    async fn single<M, F>(
        &self,
        key: &[u8],
        before: bool,
        kind: Kind,
        build: F,
    ) -> Result<(Region, AnyMessage)>
    where
        M: Message + Sync,
        F: Fn(RequestContext, &Region) -> M,
    {
        let deadline = self.deadline();
        let mut backoff = self.backoff(deadline);
        let mut attempt = 0u32;
        loop {
            let why = match self.locate(key, before).await {
                Ok(c) => {
                    let msg = build(self.ctx(&c.region), &c.region);
                    match self.attempt(&c, &msg, kind, attempt, deadline).await {
                        Attempt::Done(m) => return Ok((c.region, m)),
                        Attempt::Fail(e) => return Err(e),
                        Attempt::Retry { now: true, .. } => {
                            attempt += 1;
                            continue;
                        }
                        Attempt::Retry { now: false, why } => why,
                    }
                }
                Err(e) => e.to_string(),
            };
            attempt += 1;
            match backoff.next_delay(Instant::now()) {
                Some(d) => sleep(d).await,
                None => return Err(Error::DeadlineExceeded { attempts: attempt, last: why }),
            }
        }
    }

    /// One request per region for sorted, distinct `keys`, sent in
    /// parallel; parts refused for a stale route are regrouped and sent
    /// again. `build` makes the request for one region's keys.
    async fn batch<M, F>(&self, keys: &[Vec<u8>], kind: Kind, build: F) -> Result<Vec<AnyMessage>>
    where
        M: Message + Sync + Send,
        F: Fn(RequestContext, &[&[u8]]) -> M + Sync,
    {
        let deadline = self.deadline();
        let mut backoff = self.backoff(deadline);
        let mut todo: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let mut done = Vec::new();
        let mut attempt = 0u32;
        let max_batch = self.cfg.limits.max_batch.max(1);
        while !todo.is_empty() {
            // Fill the cache until every key has a region.
            let mut groups: Vec<(CachedRegion, Vec<&[u8]>)> = Vec::new();
            let mut locate_failed = None;
            for k in &todo {
                if let Some((c, part)) = groups.last_mut() {
                    if c.region.contains(k) && part.len() < max_batch {
                        part.push(k);
                        continue;
                    }
                }
                match self.locate(k, false).await {
                    Ok(c) => groups.push((c, vec![k])),
                    Err(e) => {
                        locate_failed = Some(e);
                        break;
                    }
                }
            }
            let mut retry: Vec<&[u8]> = Vec::new();
            let mut last = String::new();
            let mut at_once = true;
            if let Some(e) = locate_failed {
                last = e.to_string();
                at_once = false;
                retry = todo.clone();
            } else {
                let build = &build;
                let futs: Vec<PartFuture<'_>> = groups
                    .into_iter()
                    .map(|(c, part)| {
                        Box::pin(async move {
                            let msg = build(self.ctx(&c.region), &part);
                            (self.attempt(&c, &msg, kind, attempt, deadline).await, part)
                        }) as BoxFuture<'_, _>
                    })
                    .collect();
                let mut failed = None;
                for (a, part) in join_all(futs).await {
                    match a {
                        Attempt::Done(m) => done.push(m),
                        Attempt::Fail(e) => failed = failed.or(Some(e)),
                        Attempt::Retry { now, why } => {
                            at_once &= now;
                            last = why;
                            retry.extend(part);
                        }
                    }
                }
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            todo = retry;
            todo.sort_unstable();
            attempt += 1;
            if !todo.is_empty() && !at_once {
                match backoff.next_delay(Instant::now()) {
                    Some(d) => sleep(d).await,
                    None => return Err(Error::DeadlineExceeded { attempts: attempt, last }),
                }
            }
        }
        Ok(done)
    }
}

impl Client {
    /// A blocking client of the cluster whose meta service
    /// `cfg.pd_endpoints` name (no I/O until the first request).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for endpoints that do not resolve.
    pub fn new(cfg: Config) -> Result<Self> {
        Ok(AsyncClient::new(cfg)?.blocking())
    }

    /// A blocking client that asks `routes` where regions and stores are.
    pub fn with_routes(cfg: Config, routes: Arc<dyn RouteSource>) -> Self {
        AsyncClient::with_routes(cfg, routes).blocking()
    }

    /// The async face of this client (same caches and connections).
    pub fn asynchronous(&self) -> &AsyncClient {
        &self.inner
    }

    /// See [`AsyncClient::get`].
    ///
    /// # Errors
    /// See [`Error`].
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        block_on(self.inner.get(key))
    }

    /// See [`AsyncClient::put`].
    ///
    /// # Errors
    /// See [`Error`].
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        block_on(self.inner.put(key, value))
    }

    /// See [`AsyncClient::delete`].
    ///
    /// # Errors
    /// See [`Error`].
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        block_on(self.inner.delete(key))
    }

    /// See [`AsyncClient::compare_and_swap`].
    ///
    /// # Errors
    /// See [`Error`].
    pub fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<CasOutcome> {
        block_on(self.inner.compare_and_swap(key, expected, new))
    }

    /// See [`AsyncClient::batch_get`].
    ///
    /// # Errors
    /// See [`Error`].
    pub fn batch_get(&self, keys: &[Vec<u8>]) -> Result<Vec<KvPair>> {
        block_on(self.inner.batch_get(keys))
    }

    /// See [`AsyncClient::batch_put`].
    ///
    /// # Errors
    /// See [`Error`].
    pub fn batch_put(&self, pairs: Vec<KvPair>) -> Result<()> {
        block_on(self.inner.batch_put(pairs))
    }

    /// See [`AsyncClient::batch_delete`].
    ///
    /// # Errors
    /// See [`Error`].
    pub fn batch_delete(&self, keys: &[Vec<u8>]) -> Result<()> {
        block_on(self.inner.batch_delete(keys))
    }

    /// See [`AsyncClient::delete_range`].
    ///
    /// # Errors
    /// See [`Error`].
    pub fn delete_range(&self, start: &[u8], end: &[u8]) -> Result<()> {
        block_on(self.inner.delete_range(start, end))
    }

    /// See [`AsyncClient::scan`].
    ///
    /// # Errors
    /// See [`Error`].
    pub fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<KvPair>> {
        block_on(self.inner.scan(start, end, limit))
    }

    /// See [`AsyncClient::scan_with`].
    ///
    /// # Errors
    /// See [`Error`].
    pub fn scan_with(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        opts: ScanOptions,
    ) -> Result<Vec<KvPair>> {
        block_on(self.inner.scan_with(start, end, limit, opts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(start: &str, end: &str) -> Region {
        Region { start_key: start.as_bytes().to_vec(), end_key: end.as_bytes().to_vec(), ..Region::default() }
    }

    #[test]
    fn ranges_are_clipped_to_the_region() {
        let c = |r: &Region, s: &str, e: &str| {
            let (s, e) = clip(r, s.as_bytes(), e.as_bytes());
            (String::from_utf8(s).unwrap(), String::from_utf8(e).unwrap())
        };
        let mid = region("g", "p");
        assert_eq!(c(&mid, "a", "z"), ("g".into(), "p".into()));
        assert_eq!(c(&mid, "h", "k"), ("h".into(), "k".into()));
        assert_eq!(c(&mid, "a", ""), ("g".into(), "p".into()));
        let last = region("p", "");
        assert_eq!(c(&last, "a", ""), ("p".into(), "".into()));
        assert_eq!(c(&last, "q", "s"), ("q".into(), "s".into()));
    }

    #[test]
    fn without_a_leader_each_cached_replica_is_tried_then_the_route_asked_again() {
        let p = |id: u64| PeerMeta { id: ekv_proto::PeerId(id), store_id: StoreId(id) };
        let mut c = CachedRegion {
            region: Region { peers: vec![p(1), p(2), p(3)], ..Region::default() },
            leader: None,
            leader_shard: 0,
        };
        let seen: Vec<Option<u64>> = (0..8).map(|a| Inner::target(&c, a).map(|(p, _)| p.id.get())).collect();
        assert_eq!(seen, [Some(1), Some(2), Some(3), None, Some(1), Some(2), Some(3), None]);
        c.leader = Some(p(2));
        c.leader_shard = 1;
        assert!((0..8).all(|a| Inner::target(&c, a) == Some((p(2), 1))));
    }
}
