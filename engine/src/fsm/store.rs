//! A store: its shards on their executors, and the handle through which
//! clients and transports reach them from any thread.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};

use ekv_io::{GlommioFs, IoError};
use ekv_proto::{Region, RegionId, ShardId, StoreId};
use futures::channel::{mpsc, oneshot};
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use super::shard_loop::{shard_index, ShardInput, ShardLoop};
use crate::router::{Request, Response, StoreMsg, StoreRouter};
use crate::transport::{Operator, PdClient, SplitIds, Transport};
use crate::{Config, Error, PeerStatus, Result, Shard, ShardStats};

/// Makes the [`Transport`] of one shard. Called on the shard's executor,
/// because a transport is shard-local (`!Send`).
pub type TransportFactory = Box<dyn Fn(ShardId) -> Box<dyn Transport> + Send + Sync>;

/// Makes the [`PdClient`] of one shard, on the shard's executor.
pub type PdFactory = Box<dyn Fn(ShardId) -> Box<dyn PdClient> + Send + Sync>;

/// Default capacity of a shard's input channel.
pub const DEFAULT_INPUT_CAPACITY: usize = 4096;

/// Memory glommio registers for I/O buffers when the process is not root:
/// `RLIMIT_MEMLOCK` is 8 MiB on our hosts and glommio's default is 10 MiB.
const NON_ROOT_IO_MEMORY: usize = 2 << 20;

/// What [`Store::start`] needs.
pub struct StoreSpec {
    /// Settings; `cfg.shard_count()` shards are started.
    pub cfg: Config,
    /// Data directory; shard `i` keeps its files in `dir/shard-{i}`.
    pub dir: PathBuf,
    /// This store.
    pub store_id: StoreId,
    /// Transports to other stores, one per shard.
    pub transport: TransportFactory,
    /// Meta-service clients, one per shard.
    pub pd: PdFactory,
    /// Capacity of each shard's input channel of commands and raft
    /// messages; beyond it commands get [`Error::ServerBusy`] and raft
    /// messages are dropped.
    pub input_capacity: usize,
    /// Bytes glommio registers for I/O per executor; `None`: glommio's
    /// default as root, 2 MiB otherwise (`RLIMIT_MEMLOCK`).
    pub io_memory: Option<usize>,
    /// Called on each shard's executor once the shard is open, before its
    /// loop runs: where a server spawns its shard-local tasks (a listener
    /// on the shard's own port), next to the peers it serves.
    pub on_shard_start: Option<ShardService>,
}

/// See [`StoreSpec::on_shard_start`]: called with the shard's id, a handle
/// to the store and the shard's [`ShardStop`], on the shard's executor (so
/// it may `spawn_local`). Its tasks must end when the stop fires: glommio
/// does not drop tasks left behind when an executor exits.
pub type ShardService = Arc<dyn Fn(ShardId, StoreHandle, ShardStop) + Send + Sync>;

/// Fires when a shard stops, for the services running beside it.
#[derive(Debug, Clone, Default)]
pub struct ShardStop {
    stopped: Rc<std::cell::Cell<bool>>,
    event: Rc<ekv_io::Event>,
}

impl ShardStop {
    /// True once the shard is stopping.
    pub fn is_stopped(&self) -> bool {
        self.stopped.get()
    }

    /// Resolves when the shard is stopping.
    pub async fn wait(&self) {
        while !self.stopped.get() {
            let g = self.event.generation();
            if self.stopped.get() {
                break;
            }
            self.event.changed_since(g).await;
        }
    }

    pub(crate) fn fire(&self) {
        self.stopped.set(true);
        self.event.notify();
    }
}

impl StoreSpec {
    /// A spec with the default input capacity and I/O memory.
    pub fn new(
        cfg: Config,
        dir: PathBuf,
        store_id: StoreId,
        transport: TransportFactory,
        pd: PdFactory,
    ) -> Self {
        Self {
            cfg,
            dir,
            store_id,
            transport,
            pd,
            input_capacity: DEFAULT_INPUT_CAPACITY,
            io_memory: None,
            on_shard_start: None,
        }
    }
}

impl std::fmt::Debug for StoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSpec")
            .field("cfg", &self.cfg)
            .field("dir", &self.dir)
            .field("store_id", &self.store_id)
            .field("input_capacity", &self.input_capacity)
            .field("io_memory", &self.io_memory)
            .finish_non_exhaustive()
    }
}

/// The input channels of one shard.
///
/// They are `futures` channels rather than glommio's `shared_channel`:
/// senders live on threads that are not glommio executors (clients on
/// tokio or plain threads), which `shared_channel` does not serve (its
/// sender must `connect()` on an executor). A `futures` channel wakes the
/// shard's task through its waker, and glommio wakers may be woken from
/// any thread.
struct ShardTx {
    /// Bounded. A `futures` sender is bounded only while it stays the same
    /// sender (a fresh clone always has a free slot), hence one shared
    /// sender behind a lock, taken only to enqueue.
    data: Mutex<mpsc::Sender<ShardInput>>,
    ctrl: mpsc::UnboundedSender<ShardInput>,
}

#[derive(Debug)]
enum SendError {
    Full,
    Closed,
}

struct Shared {
    store_id: StoreId,
    router: StoreRouter,
    shards: Vec<ShardTx>,
    failure: Arc<Mutex<FailureWatch>>,
}

/// A caller waiting for a shard failure ([`StoreHandle::on_shard_failure`]).
type FailureWaiter = Box<dyn FnOnce(&str) + Send>;

/// The error the first failed shard of a store stopped on, and the callers
/// waiting for one.
#[derive(Default)]
struct FailureWatch {
    first: Option<String>,
    waiters: Vec<FailureWaiter>,
}

impl FailureWatch {
    /// Records the failure of `shard` (the first one wins) and wakes the waiters.
    fn report(watch: &Mutex<FailureWatch>, store: StoreId, shard: ShardId, e: &Error) {
        let msg = format!("{store} shard {}: {e}", shard.get());
        let waiters = {
            let mut w = watch.lock().unwrap_or_else(PoisonError::into_inner);
            if w.first.is_some() {
                return;
            }
            w.first = Some(msg.clone());
            std::mem::take(&mut w.waiters)
        };
        for f in waiters {
            f(&msg);
        }
    }
}

/// A cheap, cloneable, thread-safe handle to a running [`Store`]'s shards.
/// Calls on a stopped store fail with [`Error::Stopped`].
#[derive(Clone)]
pub struct StoreHandle {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle")
            .field("store_id", &self.inner.store_id)
            .field("shards", &self.inner.shards.len())
            .finish()
    }
}

impl StoreHandle {
    /// The store.
    pub fn store_id(&self) -> StoreId {
        self.inner.store_id
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// The store's region → shard table.
    pub fn router(&self) -> &StoreRouter {
        &self.inner.router
    }

    /// The error the first failed shard of this store stopped on, if one
    /// did: a storage failure (fail-stop) or a failure while closing.
    pub fn shard_failure(&self) -> Option<String> {
        self.inner.failure.lock().unwrap_or_else(PoisonError::into_inner).first.clone()
    }

    /// Calls `f` with the error once a shard of this store stops on one (at
    /// once if one already did; at most once). A store with a stopped shard
    /// serves only part of its regions: its process should stop with the error.
    pub fn on_shard_failure(&self, f: impl FnOnce(&str) + Send + 'static) {
        let mut w = self.inner.failure.lock().unwrap_or_else(PoisonError::into_inner);
        match w.first.clone() {
            Some(msg) => {
                drop(w);
                f(&msg);
            }
            None => w.waiters.push(Box::new(f)),
        }
    }

    fn shard(&self, shard: ShardId) -> Option<&ShardTx> {
        self.inner.shards.get(shard_index(shard))
    }

    fn send_data(&self, shard: ShardId, input: ShardInput) -> std::result::Result<(), SendError> {
        let tx = self.shard(shard).ok_or(SendError::Closed)?;
        let mut data = tx.data.lock().unwrap_or_else(PoisonError::into_inner);
        data.try_send(input).map_err(|e| if e.is_full() { SendError::Full } else { SendError::Closed })
    }

    fn send_ctrl(&self, shard: ShardId, input: ShardInput) -> Result<()> {
        let tx = self.shard(shard).ok_or(Error::Stopped)?;
        tx.ctrl.unbounded_send(input).map_err(|_| Error::Stopped)
    }

    /// Runs a command on the shard owning `req.region_id`. Usable from any
    /// thread and any async runtime.
    ///
    /// # Errors
    /// [`Error::RegionNotFound`] when no shard of the store has the region;
    /// [`Error::ServerBusy`] when the shard's input channel is full;
    /// [`Error::Stopped`] when the shard stopped before taking the command,
    /// [`Error::Unknown`] when it stopped after; the command's own errors.
    pub async fn call(&self, req: Request) -> Result<Response> {
        let region = req.region_id;
        let shard = self.inner.router.owner(region).ok_or(Error::RegionNotFound(region))?;
        let (tx, rx) = oneshot::channel();
        match self.send_data(shard, ShardInput::Command(req, tx)) {
            Ok(()) => {}
            Err(SendError::Full) => return Err(Error::ServerBusy("shard input queue is full")),
            Err(SendError::Closed) => return Err(Error::Stopped),
        }
        rx.await.unwrap_or(Err(Error::Unknown { region, why: "the shard stopped before answering" }))
    }

    /// [`StoreHandle::call`], blocking the calling thread.
    ///
    /// Never call it on one of the store's own executors: the shard it
    /// waits for may be the one it blocks.
    ///
    /// # Errors
    /// As [`StoreHandle::call`].
    pub fn call_blocking(&self, req: Request) -> Result<Response> {
        futures::executor::block_on(self.call(req))
    }

    /// Hands a message from another store to `shard` (the receive side of a
    /// transport). Dropped when the shard's input is full or the shard is
    /// gone: raft resends.
    pub fn deliver(&self, shard: ShardId, msg: StoreMsg) {
        let _ = self.send_data(shard, ShardInput::Store(msg));
    }

    /// Hands several messages to `shard`, taking its input lock once;
    /// returns false when the shard is gone (messages that do not fit are
    /// dropped, as with [`StoreHandle::deliver`]).
    pub fn deliver_batch(&self, shard: ShardId, msgs: Vec<StoreMsg>) -> bool {
        let Some(tx) = self.shard(shard) else { return false };
        let mut data = tx.data.lock().unwrap_or_else(PoisonError::into_inner);
        for msg in msgs {
            if let Err(e) = data.try_send(ShardInput::Store(msg)) {
                return !e.is_disconnected();
            }
        }
        true
    }

    /// The meta service's answer to `shard`'s split id request `token`.
    ///
    /// # Errors
    /// [`Error::Stopped`] when the shard is gone.
    pub fn on_split_ids(&self, shard: ShardId, token: u64, ids: Result<Vec<SplitIds>>) -> Result<()> {
        self.send_ctrl(shard, ShardInput::SplitIds(token, ids))
    }

    /// An operator from the meta service for `region`'s leader.
    ///
    /// # Errors
    /// [`Error::RegionNotFound`] when no shard has the region,
    /// [`Error::Stopped`] when its shard is gone.
    pub fn on_operator(&self, region: RegionId, op: Operator) -> Result<()> {
        let shard = self.inner.router.owner(region).ok_or(Error::RegionNotFound(region))?;
        self.send_ctrl(shard, ShardInput::Operator(region, op))
    }

    /// Creates this store's replica of a new region, with empty data, on
    /// the least-loaded shard (cluster bootstrap; every store listed in the
    /// region must be bootstrapped the same way).
    ///
    /// # Errors
    /// [`Error::BadRequest`] when the region has no replica on this store
    /// or already exists; storage failures (the shard then stops).
    pub async fn bootstrap_region(&self, region: Region) -> Result<()> {
        if region.peer_on(self.inner.store_id).is_none() {
            return Err(Error::BadRequest(format!(
                "{} has no replica on {}",
                region.id, self.inner.store_id
            )));
        }
        if self.inner.router.owner(region.id).is_some() {
            return Err(Error::BadRequest(format!("{} already exists", region.id)));
        }
        self.bootstrap_on_least_loaded(vec![region]).await
    }

    /// [`StoreHandle::bootstrap_region`] for many regions at once, all on
    /// the least-loaded shard and made durable with one LSM write and one
    /// flush ([`Shard::bootstrap_regions`]), where one call per region
    /// flushes once per region. For tests and benchmarks that start with
    /// thousands of regions.
    ///
    /// # Errors
    /// [`Error::BadRequest`] when a region has no replica on this store,
    /// already exists or is listed twice (nothing is created then); storage
    /// failures (the shard then stops).
    pub async fn bootstrap_regions(&self, regions: Vec<Region>) -> Result<()> {
        let mut seen = std::collections::HashSet::with_capacity(regions.len());
        for region in &regions {
            if region.peer_on(self.inner.store_id).is_none() {
                return Err(Error::BadRequest(format!(
                    "{} has no replica on {}",
                    region.id, self.inner.store_id
                )));
            }
            if self.inner.router.owner(region.id).is_some() || !seen.insert(region.id) {
                return Err(Error::BadRequest(format!("{} already exists", region.id)));
            }
        }
        if regions.is_empty() {
            return Ok(());
        }
        self.bootstrap_on_least_loaded(regions).await
    }

    async fn bootstrap_on_least_loaded(&self, regions: Vec<Region>) -> Result<()> {
        // The shard registers the regions once they are created; until then
        // the table does not name them (a shard refuses a region it names).
        let loads = self.inner.router.loads();
        let shard = (0..loads.len()).min_by_key(|i| (loads[*i], *i)).unwrap_or(0);
        let (tx, rx) = oneshot::channel();
        self.send_ctrl(ShardId(shard as u64), ShardInput::Bootstrap(regions, tx))?;
        rx.await.unwrap_or(Err(Error::Stopped))
    }

    /// The counters of every running shard, in shard order (a shard that
    /// stopped meanwhile is left out). Taken through the control channel,
    /// between two rounds; for benchmarks and status pages.
    pub async fn stats(&self) -> Vec<ShardStats> {
        let mut answers = Vec::with_capacity(self.inner.shards.len());
        for i in 0..self.inner.shards.len() {
            let (tx, rx) = oneshot::channel();
            if self.send_ctrl(ShardId(i as u64), ShardInput::Stats(tx)).is_ok() {
                answers.push(rx);
            }
        }
        let mut out = Vec::with_capacity(answers.len());
        for rx in answers {
            if let Ok(s) = rx.await {
                out.push(s);
            }
        }
        out
    }

    /// The status of every peer of every running shard.
    pub async fn status(&self) -> Vec<PeerStatus> {
        let mut answers = Vec::with_capacity(self.inner.shards.len());
        for i in 0..self.inner.shards.len() {
            let (tx, rx) = oneshot::channel();
            if self.send_ctrl(ShardId(i as u64), ShardInput::Status(tx)).is_ok() {
                answers.push(rx);
            }
        }
        let mut out = Vec::new();
        for rx in answers {
            // A shard that stopped meanwhile has nothing to report.
            if let Ok(v) = rx.await {
                out.extend(v);
            }
        }
        out
    }
}

/// A running store: one glommio executor thread per shard.
///
/// Dropping a store stops it as [`Store::stop`] does, logging what fails.
pub struct Store {
    handle: StoreHandle,
    dir: PathBuf,
    threads: Vec<ExecutorJoinHandle<Result<()>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("store_id", &self.handle.store_id())
            .field("dir", &self.dir)
            .field("running", &self.threads.len())
            .finish()
    }
}

/// What a shard's thread needs; everything in it is `Send`.
struct ShardCtx {
    cfg: Config,
    dir: PathBuf,
    store_id: StoreId,
    id: ShardId,
    router: StoreRouter,
    data_rx: mpsc::Receiver<ShardInput>,
    ctrl_rx: mpsc::UnboundedReceiver<ShardInput>,
    ctrl_tx: mpsc::UnboundedSender<ShardInput>,
    shard_txs: Vec<mpsc::Sender<ShardInput>>,
    transport: Arc<TransportFactory>,
    pd: Arc<PdFactory>,
    max_batch: usize,
    service: Option<(ShardService, StoreHandle)>,
    /// Where the shard reports the error it stops on.
    failure: Arc<Mutex<FailureWatch>>,
    /// Fires once every shard of the store is open (or the start failed).
    go: oneshot::Receiver<()>,
}

impl Store {
    /// Starts the store's shards, each on its own thread and executor
    /// (pinned to `cfg.cpus[i % len]` when `cfg.cpus` is set), opening or
    /// creating shard `i` in `dir/shard-{i}`. Returns once every shard is
    /// open.
    ///
    /// # Errors
    /// An invalid setting; an executor that cannot start (a CPU that does
    /// not exist, io_uring refused); a shard that fails to open. Shards
    /// that did open are stopped again.
    pub fn start(spec: StoreSpec) -> Result<Store> {
        spec.cfg.validate()?;
        if spec.input_capacity == 0 {
            return Err(Error::InvalidConfig("input_capacity must be positive".into()));
        }
        let n = spec.cfg.shard_count();
        let router = StoreRouter::new(n);
        let mut txs = Vec::with_capacity(n);
        let mut rxs = Vec::with_capacity(n);
        for _ in 0..n {
            let (data_tx, data_rx) = mpsc::channel(spec.input_capacity);
            let (ctrl_tx, ctrl_rx) = mpsc::unbounded();
            rxs.push((data_rx, ctrl_rx, ctrl_tx.clone()));
            txs.push((data_tx, ctrl_tx));
        }
        let shard_txs: Vec<mpsc::Sender<ShardInput>> = txs.iter().map(|(d, _)| d.clone()).collect();
        let handle = StoreHandle {
            inner: Arc::new(Shared {
                store_id: spec.store_id,
                router: router.clone(),
                shards: txs
                    .into_iter()
                    .map(|(data, ctrl)| ShardTx { data: Mutex::new(data), ctrl })
                    .collect(),
                failure: Arc::default(),
            }),
        };
        let transport = Arc::new(spec.transport);
        let pd = Arc::new(spec.pd);
        let io_memory = spec.io_memory.or_else(|| (!ekv_io::running_as_root()).then_some(NON_ROOT_IO_MEMORY));
        let mut store = Store { handle, dir: spec.dir.clone(), threads: Vec::with_capacity(n) };
        let mut opened = Vec::with_capacity(n);
        let mut gos = Vec::with_capacity(n);
        let mut failed = None;
        for (i, (data_rx, ctrl_rx, ctrl_tx)) in rxs.into_iter().enumerate() {
            let dir = shard_dir(&spec.dir, i);
            let ctx = ShardCtx {
                cfg: spec.cfg.clone(),
                dir: dir.clone(),
                store_id: spec.store_id,
                id: ShardId(i as u64),
                router: router.clone(),
                data_rx,
                ctrl_rx,
                ctrl_tx,
                shard_txs: shard_txs.clone(),
                transport: transport.clone(),
                pd: pd.clone(),
                max_batch: spec.input_capacity,
                service: spec.on_shard_start.clone().map(|f| (f, store.handle.clone())),
                failure: store.handle.inner.failure.clone(),
                go: {
                    let (tx, rx) = oneshot::channel();
                    gos.push(tx);
                    rx
                },
            };
            let placement = match spec.cfg.cpus.len() {
                0 => Placement::Unbound,
                len => Placement::Fixed(spec.cfg.cpus[i % len]),
            };
            let mut builder =
                LocalExecutorBuilder::new(placement).name(&format!("ekv-{}-{i}", spec.store_id.get()));
            if let Some(bytes) = io_memory {
                builder = builder.io_memory(bytes);
            }
            if !spec.cfg.spin_before_park.is_zero() {
                builder = builder.spin_before_park(spec.cfg.spin_before_park);
            }
            let (open_tx, open_rx) = oneshot::channel();
            match builder.spawn(move || run_shard(ctx, open_tx)) {
                Ok(h) => {
                    store.threads.push(h);
                    opened.push(open_rx);
                }
                Err(e) => {
                    failed = Some(Error::Io(IoError::new("start executor", dir, e.into())));
                    break;
                }
            }
        }
        // Every started shard reports, so that none is left half open.
        for rx in opened {
            let r = futures::executor::block_on(rx).unwrap_or(Err(Error::Stopped));
            if let (Err(e), None) = (r, &failed) {
                failed = Some(e);
            }
        }
        if failed.is_none() {
            // Every shard has found its peers and named them in the store's
            // table: only now may one of them take in messages, since a
            // message for a region another shard still has to recover
            // would create a second peer of it.
            for go in gos {
                let _ = go.send(());
            }
        } else {
            // Dropped: the opened shards run their loops only to stop.
            drop(gos);
        }
        if let Some(e) = failed {
            if let Err(e2) = store.shutdown() {
                tracing::warn!(store = %spec.store_id, error = %e2, "stopping a store that failed to start");
            }
            return Err(e);
        }
        Ok(store)
    }

    /// A handle for other threads (transports, clients).
    pub fn handle(&self) -> StoreHandle {
        self.handle.clone()
    }

    /// The store.
    pub fn store_id(&self) -> StoreId {
        self.handle.store_id()
    }

    /// See [`StoreHandle::call`].
    ///
    /// # Errors
    /// As [`StoreHandle::call`].
    pub async fn call(&self, req: Request) -> Result<Response> {
        self.handle.call(req).await
    }

    /// See [`StoreHandle::call_blocking`].
    ///
    /// # Errors
    /// As [`StoreHandle::call`].
    pub fn call_blocking(&self, req: Request) -> Result<Response> {
        self.handle.call_blocking(req)
    }

    /// See [`StoreHandle::deliver`].
    pub fn deliver(&self, shard: ShardId, msg: StoreMsg) {
        self.handle.deliver(shard, msg)
    }

    /// See [`StoreHandle::bootstrap_region`].
    ///
    /// # Errors
    /// As [`StoreHandle::bootstrap_region`].
    pub async fn bootstrap_region(&self, region: Region) -> Result<()> {
        self.handle.bootstrap_region(region).await
    }

    /// See [`StoreHandle::status`].
    pub async fn status(&self) -> Vec<PeerStatus> {
        self.handle.status().await
    }

    /// Stops the store gracefully: every shard finishes its round, fails
    /// the commands still waiting ([`Error::Unknown`]), flushes and closes
    /// its WAL and LSM; then the threads are joined.
    ///
    /// # Errors
    /// The first failure of a shard: the storage error that stopped it
    /// earlier, or one met while closing; [`Error::Stopped`] for a shard
    /// thread that panicked (the panic is logged).
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        for i in 0..self.handle.shard_count() {
            let _ = self.handle.send_ctrl(ShardId(i as u64), ShardInput::Stop);
        }
        let me = std::thread::current().id();
        let mut first = Ok(());
        for (i, h) in std::mem::take(&mut self.threads).into_iter().enumerate() {
            if h.thread().id() == me {
                // Dropped on its own shard: it stops, but cannot join itself.
                continue;
            }
            let r = match h.join() {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(store = %self.handle.store_id(), shard = i, error = %e, "shard thread failed");
                    Err(Error::Stopped)
                }
            };
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        if let Err(e) = self.shutdown() {
            tracing::warn!(store = %self.handle.store_id(), error = %e, "store stopped on drop with an error");
        }
    }
}

fn shard_dir(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("shard-{i}"))
}

/// The body of a shard's thread: opens the shard, reports the outcome on
/// `opened`, runs the loop. An open failure is reported, not returned.
async fn run_shard(ctx: ShardCtx, opened: oneshot::Sender<Result<()>>) -> Result<()> {
    let open = async {
        let fs = GlommioFs::new(&ctx.dir).await?;
        // Background LSM work yields its (low-share) task queue after each
        // work slice, so a round never waits behind a compaction.
        let lsm_yield: ekv_lsm::YieldHook =
            Rc::new(|| Box::pin(async { glommio::executor().yield_task_queue_now().await }));
        let cfg = Rc::new(ctx.cfg.clone());
        Shard::open_with_yield(
            fs,
            ctx.dir.clone(),
            cfg,
            ctx.store_id,
            ctx.id,
            ctx.router.clone(),
            Some(lsm_yield),
        )
        .await
    };
    let shard = match open.await {
        Ok(shard) => shard,
        Err(e) => {
            let _ = opened.send(Err(e));
            return Ok(());
        }
    };
    let shard_loop = ShardLoop {
        shard,
        data_rx: ctx.data_rx,
        ctrl_rx: ctx.ctrl_rx,
        ctrl_tx: ctx.ctrl_tx,
        shard_txs: ctx.shard_txs,
        transport: (ctx.transport)(ctx.id),
        pd: (ctx.pd)(ctx.id),
        max_batch: ctx.max_batch,
        stop: ShardStop::default(),
    };
    let stop = shard_loop.stop.clone();
    if let Some((service, handle)) = ctx.service {
        service(ctx.id, handle, stop.clone());
    }
    let _ = opened.send(Ok(()));
    // Either outcome of the start lets the loop run: it stops at once when
    // the start failed.
    let _ = ctx.go.await;
    let outcome = shard_loop.run().await;
    if let Err(e) = &outcome {
        FailureWatch::report(&ctx.failure, ctx.store_id, ctx.id, e);
    }
    outcome
}
