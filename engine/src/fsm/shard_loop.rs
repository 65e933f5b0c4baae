//! The loop that drives one shard on its executor.
//!
//! One round per iteration, after tikv's `PollHandler::{begin,
//! handle_normal, end}`:
//!
//! 1. wait (only when the shard has no work) for an input or the next tick;
//! 2. take in every input that has arrived, without awaiting between them:
//!    whatever arrived while the last round waited on its fdatasync becomes
//!    part of this one;
//! 3. tick, if the tick interval elapsed (catching up a few missed ticks at most);
//! 4. run one round ([`Shard::handle_ready`]): one WAL write and one LSM
//!    batch for all peers;
//! 5. send the round's output: reads are spawned as tasks, raft messages
//!    and meta-service requests go out, messages for other shards of the
//!    store go into their input channels.
//!
//! A storage failure stops the shard (fail-stop): the loop logs it, closes
//! the shard (failing waiting commands) and ends the executor.

use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use ekv_io::GlommioFs;
use ekv_proto::{Region, RegionId, ShardId};
use futures::channel::mpsc::{self, TryRecvError};
use futures::channel::oneshot;
use futures::{Future, StreamExt};
use glommio::sync::Gate;
use glommio::timer::Timer;
use glommio::{Latency, Shares};

use crate::router::{Request, Response, StoreMsg};
use crate::transport::{Operator, PdClient, SplitIds, Transport};
use crate::{Error, PeerStatus, Result, Shard, ShardStats};

/// Shares of the task queue of LSM flushes and compactions; the shard loop
/// and reads (glommio's default queue) have 1000. When both have work,
/// background work gets a third of the core; when writes stall on it, all.
const BACKGROUND_SHARES: usize = 500;

/// Most ticks run back to back after the executor fell behind; further
/// missed ticks only advance the shard's clock ([`Shard::skip_time`]):
/// a burst of raft ticks would fire elections at once.
const MAX_CATCH_UP_TICKS: u32 = 3;

/// [`Shard::maintain`] runs every this many ticks.
const MAINTAIN_EVERY_TICKS: u64 = 100;

/// Bound of a stall caused by glommio 0.9 parking an executor whose task
/// queues are still runnable: a pending timer wakes it.
const KEEP_ALIVE: Duration = Duration::from_millis(10);
/// The keep-alive period while the LSM has no background work.
const IDLE_KEEP_ALIVE: Duration = Duration::from_secs(1);

/// What a shard's input channels carry.
pub(crate) enum ShardInput {
    /// A client command and where its answer goes.
    Command(Request, oneshot::Sender<Result<Response>>),
    /// Raft traffic from another store or another shard of this one.
    Store(StoreMsg),
    /// The meta service's answer to a split's id request.
    SplitIds(u64, Result<Vec<SplitIds>>),
    /// An operator from the meta service.
    Operator(RegionId, Operator),
    /// Creates the first replicas of regions here, with one durable write
    /// ([`Shard::bootstrap_regions`]).
    Bootstrap(Vec<Region>, oneshot::Sender<Result<()>>),
    /// Asks for the status of every peer.
    Status(oneshot::Sender<Vec<PeerStatus>>),
    /// Asks for the shard's counters ([`Shard::stats`]).
    Stats(oneshot::Sender<ShardStats>),
    /// Closes the shard and ends its executor.
    Stop,
    /// A background task of the shard failed; the shard must stop.
    Fatal(Error),
}

/// One shard's end of its channels and everything its loop talks to.
pub(crate) struct ShardLoop {
    pub shard: Shard<GlommioFs>,
    /// Commands and raft traffic: bounded, filled from any thread.
    pub data_rx: mpsc::Receiver<ShardInput>,
    /// Control inputs, which must never be dropped (stop, split ids, ...).
    pub ctrl_rx: mpsc::UnboundedReceiver<ShardInput>,
    /// For the shard's own background tasks to report failures.
    pub ctrl_tx: mpsc::UnboundedSender<ShardInput>,
    /// Data senders of every shard of the store (this one included), by
    /// shard index, for messages the shard forwards.
    pub shard_txs: Vec<mpsc::Sender<ShardInput>>,
    pub transport: Box<dyn Transport>,
    pub pd: Box<dyn PdClient>,
    /// Fired when the loop ends, for the services beside the shard.
    pub stop: super::store::ShardStop,
    /// Most inputs taken into one round, so that a flood from other threads
    /// cannot keep the shard from running rounds.
    pub max_batch: usize,
}

/// The loop's own state.
struct Run {
    data_open: bool,
    stopping: bool,
    next_tick: Instant,
    ticks: u64,
    /// Read tasks; closing it waits for the running ones.
    reads: Gate,
}

impl ShardLoop {
    /// Runs the shard until it is stopped or fails; closes it. Returns the
    /// failure that stopped it, or the outcome of closing.
    pub async fn run(mut self) -> Result<()> {
        let alive = Rc::new(std::cell::Cell::new(true));
        self.spawn_background(&alive);
        let mut run = Run {
            data_open: true,
            stopping: false,
            next_tick: Instant::now() + self.tick_interval(),
            ticks: 0,
            reads: Gate::new(),
        };
        let outcome = self.serve(&mut run).await;
        // Services (a listener, its connections) end their tasks now; they
        // run while the shard closes below.
        self.stop.fire();
        glommio::executor().yield_now().await;
        let id = self.shard.id();
        if let Err(e) = &outcome {
            tracing::error!(shard = %id, error = %e, "shard failed; stopping it");
        }
        // Inputs still queued are dropped with their answer senders: their
        // callers see the shard stopped.
        self.data_rx.close();
        self.ctrl_rx.close();
        let _ = run.reads.close().await;
        let closed = self.shard.close().await;
        alive.set(false);
        match (outcome, closed) {
            (Err(e), Err(c)) => {
                tracing::error!(shard = %id, error = %c, "closing a failed shard failed too");
                Err(e)
            }
            (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
            (Ok(()), Ok(())) => Ok(()),
        }
    }

    fn tick_interval(&self) -> Duration {
        self.shard.cfg.tick_interval
    }

    /// Spawns LSM flushes and compactions into a task queue of lower
    /// priority, and the keep-alive timer.
    fn spawn_background(&self, alive: &Rc<std::cell::Cell<bool>>) {
        let ex = glommio::executor();
        let tq = ex.create_task_queue(Shares::Static(BACKGROUND_SHARES), Latency::NotImportant, "lsm-bg");
        let id = self.shard.id();
        for flusher in [true, false] {
            let lsm = self.shard.lsm().clone();
            let ctrl = self.ctrl_tx.clone();
            // Two tasks, not one joined future: see `Lsm::run_flusher`.
            let job = async move {
                let r = if flusher { lsm.run_flusher().await } else { lsm.run_compactor().await };
                if let Err(e) = r {
                    let _ = ctrl.unbounded_send(ShardInput::Fatal(e.into()));
                }
            };
            match glommio::spawn_local_into(job, tq) {
                Ok(task) => {
                    task.detach();
                }
                // The LSM then flushes and compacts inline in its writers.
                Err(e) => tracing::warn!(shard = %id, error = %e, "cannot spawn LSM background task"),
            }
        }
        let alive = alive.clone();
        let lsm = self.shard.lsm().clone();
        glommio::spawn_local(async move {
            while alive.get() {
                // Only background work can be left runnable by a parked
                // executor; an idle store sleeps long (10,000 idle regions
                // must cost almost nothing), and the tick timer wakes it anyway.
                let st = lsm.stats();
                let busy = st.immutable_memtables > 0 || st.pending_compaction_bytes > 0;
                glommio::timer::sleep(if busy { KEEP_ALIVE } else { IDLE_KEEP_ALIVE }).await;
            }
        })
        .detach();
    }

    async fn serve(&mut self, run: &mut Run) -> Result<()> {
        loop {
            if !self.shard.has_ready() {
                self.wait(run).await?;
            }
            self.drain(run).await?;
            self.tick_if_due(run).await?;
            if self.shard.has_ready() {
                self.shard.handle_ready_sending(&mut *self.transport).await?;
            }
            self.dispatch(run);
            if run.stopping {
                return Ok(());
            }
            if self.shard.has_ready() {
                // Let spawned reads run between back-to-back rounds.
                glommio::executor().yield_now().await;
            }
        }
    }

    /// Waits for one input (and takes it in) or for the next tick.
    async fn wait(&mut self, run: &mut Run) -> Result<()> {
        let now = Instant::now();
        if now >= run.next_tick {
            return Ok(());
        }
        let mut timer = Timer::new(run.next_tick - now);
        let (ctrl, data, data_open) = (&mut self.ctrl_rx, &mut self.data_rx, &mut run.data_open);
        let input = futures::future::poll_fn(|cx| {
            if let Poll::Ready(Some(input)) = ctrl.poll_next_unpin(cx) {
                return Poll::Ready(Some(input));
            }
            if *data_open {
                match data.poll_next_unpin(cx) {
                    Poll::Ready(Some(input)) => return Poll::Ready(Some(input)),
                    // Every sender is gone; stop polling a closed stream.
                    Poll::Ready(None) => *data_open = false,
                    Poll::Pending => {}
                }
            }
            match Pin::new(&mut timer).poll(cx) {
                Poll::Ready(_) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match input {
            Some(input) => self.on_input(run, input).await,
            None => Ok(()),
        }
    }

    /// Takes in every input that has arrived (control first), up to `max_batch`.
    async fn drain(&mut self, run: &mut Run) -> Result<()> {
        for _ in 0..self.max_batch {
            let input = match self.ctrl_rx.try_recv() {
                Ok(input) => Some(input),
                Err(_) if run.data_open => match self.data_rx.try_recv() {
                    Ok(input) => Some(input),
                    Err(TryRecvError::Closed) => {
                        run.data_open = false;
                        None
                    }
                    Err(TryRecvError::Empty) => None,
                },
                Err(_) => None,
            };
            let Some(input) = input else { return Ok(()) };
            self.on_input(run, input).await?;
        }
        Ok(())
    }

    async fn on_input(&mut self, run: &mut Run, input: ShardInput) -> Result<()> {
        match input {
            ShardInput::Command(_, tx) if run.stopping => {
                let _ = tx.send(Err(Error::Stopped));
            }
            ShardInput::Command(req, tx) => self.shard.on_command(
                req,
                Box::new(move |r| {
                    // The caller may have given up waiting.
                    let _ = tx.send(r);
                }),
            ),
            ShardInput::Store(msg) => self.shard.on_store_msg(msg),
            ShardInput::SplitIds(token, ids) => self.shard.on_split_ids(token, ids),
            ShardInput::Operator(region, op) => self.shard.on_operator(region, op),
            ShardInput::Bootstrap(regions, tx) => match self.shard.bootstrap_regions(regions).await {
                Err(e) if e.is_fatal() => {
                    // The caller gets the cause; the loop stops.
                    tracing::error!(shard = %self.shard.id(), error = %e, "bootstrap failed");
                    let _ = tx.send(Err(e));
                    return Err(Error::Stopped);
                }
                r => {
                    let _ = tx.send(r);
                }
            },
            ShardInput::Status(tx) => {
                let _ = tx.send(self.shard.peer_status());
            }
            ShardInput::Stats(tx) => {
                let _ = tx.send(self.shard.stats());
            }
            ShardInput::Stop => run.stopping = true,
            ShardInput::Fatal(e) => return Err(e),
        }
        Ok(())
    }

    async fn tick_if_due(&mut self, run: &mut Run) -> Result<()> {
        let interval = self.tick_interval();
        let now = Instant::now();
        let mut n = 0;
        while now >= run.next_tick && n < MAX_CATCH_UP_TICKS {
            self.shard.tick();
            n += 1;
            run.ticks += 1;
            run.next_tick += interval;
            if run.ticks % MAINTAIN_EVERY_TICKS == 0 {
                self.shard.maintain().await?;
            }
        }
        if now >= run.next_tick {
            // Skipped ticks still count on the clock leases are measured
            // on: a lease must not outlive a pause of the executor.
            let behind = now - run.next_tick;
            let missed = 1 + behind.as_nanos() / interval.as_nanos().max(1);
            self.shard.skip_time(u64::try_from(missed).unwrap_or(u64::MAX));
            run.next_tick = now + interval;
        }
        Ok(())
    }

    /// Sends what the round produced.
    fn dispatch(&mut self, run: &Run) {
        for task in self.shard.take_reads() {
            let lsm = self.shard.lsm().clone();
            // A failure means the gate is closed (the shard is stopping):
            // the read is dropped and its caller sees the shard stopped.
            if let Ok(t) = run.reads.spawn(async move {
                task.run(&lsm).await;
            }) {
                t.detach();
            }
        }
        self.shard.flush_io(&mut *self.transport, &mut *self.pd);
        let me = self.shard.id();
        for (to, msg) in self.shard.take_forwards() {
            if to == me {
                self.shard.on_store_msg(msg);
            } else if let Some(tx) = self.shard_txs.get_mut(shard_index(to)) {
                // Full: dropped, raft resends.
                let _ = tx.try_send(ShardInput::Store(msg));
            }
        }
    }
}

/// A shard id as an index into per-shard vectors.
pub(crate) fn shard_index(id: ShardId) -> usize {
    usize::try_from(id.get()).unwrap_or(usize::MAX)
}
