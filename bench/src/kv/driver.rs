//! Drives a target: the load phase, then the clients, in a closed loop
//! (each client sends its next operation when the last one is answered) or
//! an open loop (a fixed total rate: a schedule of intended send times).
//!
//! # Coordinated omission
//!
//! In the open loop an operation's latency runs from its *intended* send
//! time, not from when the client got round to sending it. A client stuck
//! behind a slow answer sends its next operations late, and they are
//! charged the wait, as a user arriving at that rate would have been. A
//! closed loop cannot see this: a stall delays the next requests instead of
//! slowing them, and only the one slow operation is recorded. How late the
//! open loop sent its operations is reported apart ([`RunStats::send_lag`])
//! with the scheduled operations it never sent before the window closed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, OnceLock};
use std::thread::ScopedJoinHandle;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::distribution::KeyChooser;
use super::progress::Progress;
use super::stats::RunStats;
use super::target::{BoxError, KvSession, KvTarget, Result};
use super::workload::{self, KeySpace, Op, OpGen, OpShape, Workload, KEYS_END};

/// Records per load batch, under etcd's default limit of 128 operations
/// per txn and far under its 1.5 MiB request limit at 4 KiB values.
const LOAD_BATCH: usize = 64;
/// Most clients of the load phase.
const LOAD_CLIENTS: usize = 8;
/// Tries of one load batch before the load fails.
const LOAD_TRIES: usize = 3;
/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Time since a run's start, and waiting for a later time. Wall time for
/// real runs; tests drive a virtual one.
pub trait Clock {
    /// Time since the start.
    fn now(&self) -> Duration;
    /// Returns at `t` or later (at once if `t` has passed).
    fn sleep_until(&self, t: Duration);
}

/// The machine's monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    origin: Instant,
}

impl WallClock {
    /// A clock whose time 0 is `origin`.
    pub fn new(origin: Instant) -> Self {
        Self { origin }
    }
}

impl Clock for WallClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn sleep_until(&self, t: Duration) {
        let now = self.now();
        if t > now {
            std::thread::sleep(t - now);
        }
    }
}

/// The open loop's schedule: operation `i` of the whole run is due at
/// `i / rate`, and the clients take turns, client `c` sending operations
/// `c, c + clients, c + 2 * clients, ...`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    interval_ns: f64,
    clients: u64,
}

impl Schedule {
    /// `rate` operations per second in all, over `clients` clients.
    ///
    /// # Panics
    /// If `rate` is not positive and finite or `clients` is 0.
    pub fn new(rate: f64, clients: usize) -> Self {
        assert!(rate.is_finite() && rate > 0.0, "rate {rate} must be positive");
        assert!(clients > 0, "a schedule needs a client");
        Self { interval_ns: 1e9 / rate, clients: clients as u64 }
    }

    /// When operation `i` is due.
    pub fn due(&self, i: u64) -> Duration {
        Duration::from_nanos((i as f64 * self.interval_ns) as u64)
    }

    /// The index of client `client`'s `k`-th operation.
    pub fn op_index(&self, client: usize, k: u64) -> u64 {
        client as u64 + k * self.clients
    }

    /// How many operations are due before `t`: the first index due at or
    /// after it.
    pub fn due_before(&self, t: Duration) -> u64 {
        let mut i = (t.as_nanos() as f64 / self.interval_ns).ceil() as u64;
        // Float rounding can put the estimate one off either way.
        while i > 0 && self.due(i - 1) >= t {
            i -= 1;
        }
        while self.due(i) < t {
            i += 1;
        }
        i
    }

    /// How many of `client`'s operations are due in `[from, to)`.
    pub fn client_due_between(&self, client: usize, from: Duration, to: Duration) -> u64 {
        // Indices below n that are `client` modulo `clients`.
        let below = |n: u64| (n + self.clients - 1 - client as u64) / self.clients;
        below(self.due_before(to)).saturating_sub(below(self.due_before(from)))
    }
}

/// When operations are sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Each client sends its next operation when the last one is answered.
    Closed,
    /// Operations go out on this schedule, whatever the answers do.
    Open(Schedule),
}

/// The part of a run that is measured: operations intended (open loop) or
/// sent (closed loop) in `[warmup, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// End of the warm-up, whose operations are not recorded.
    pub warmup: Duration,
    /// When clients stop sending.
    pub end: Duration,
}

/// Runs `op`; `Ok(false)` for a read or scan that found nothing.
///
/// # Errors
/// The target's error.
pub fn execute(session: &mut dyn KvSession, op: &Op) -> Result<bool> {
    match op {
        Op::Read { key } => Ok(session.read(key)?.is_some()),
        Op::Update { key, value } => session.update(key, value).map(|()| true),
        Op::Insert { key, value, .. } => session.insert(key, value).map(|()| true),
        Op::Scan { start, count } => session.scan(start, KEYS_END, *count).map(|n| n > 0),
        Op::ReadModifyWrite { key, value } => {
            let found = session.read(key)?.is_some();
            session.update(key, value)?;
            Ok(found)
        }
        Op::Batch { pairs } => session.batch_put(pairs).map(|()| true),
    }
}

/// One client's loop: sends `gen`'s operations on `session` at `pace`
/// until `window.end`, and records those of the window. Counts every
/// operation it completes in `done`.
pub fn run_client(
    clock: &dyn Clock,
    session: &mut dyn KvSession,
    gen: &mut OpGen<'_>,
    pace: Pace,
    client: usize,
    window: Window,
    done: &AtomicU64,
) -> RunStats {
    let mut stats = RunStats { window: window.end.saturating_sub(window.warmup), ..RunStats::default() };
    if let Pace::Open(s) = pace {
        stats.scheduled = s.client_due_between(client, window.warmup, window.end);
    }
    for k in 0.. {
        let intended = match pace {
            Pace::Closed => {
                let now = clock.now();
                if now >= window.end {
                    break;
                }
                now
            }
            Pace::Open(s) => {
                let due = s.due(s.op_index(client, k));
                // Past the end, even a client behind schedule stops: what it
                // never sent is reported as unsent.
                if due >= window.end || clock.now() >= window.end {
                    break;
                }
                clock.sleep_until(due);
                due
            }
        };
        let sent = clock.now();
        let op = gen.next_op();
        let outcome = execute(session, &op);
        let finished = clock.now();
        gen.complete(&op);
        done.fetch_add(1, Ordering::Relaxed);
        if intended >= window.warmup {
            stats.record(op.kind(), finished.saturating_sub(intended), outcome.map_err(|e| e.to_string()));
            if matches!(pace, Pace::Open(_)) {
                stats.send_lag.record(sent.saturating_sub(intended));
            }
        }
    }
    stats
}

/// What a run does, the same for every target.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// The operations.
    pub workload: Workload,
    /// Chooses records; each client gets a copy.
    pub chooser: KeyChooser,
    /// Value and batch sizes.
    pub shape: OpShape,
    /// Closed or open loop.
    pub pace: Pace,
    /// Client threads, each with its own session.
    pub clients: usize,
    /// The measured part.
    pub window: Window,
    /// Client `c` draws from a generator seeded with `seed + c`.
    pub seed: u64,
}

/// Runs `plan` against `target`, whose records `keys` describes.
///
/// # Errors
/// A session cannot be opened. Failed operations are counted, not returned.
pub fn run(target: &dyn KvTarget, plan: &RunPlan, keys: &KeySpace, progress: Progress) -> Result<RunStats> {
    if matches!(plan.pace, Pace::Open(_)) {
        tighten_timer_slack();
    }
    let mut sessions = (0..plan.clients).map(|_| target.session()).collect::<Result<Vec<_>>>()?;
    let done = AtomicU64::new(0);
    let start = Barrier::new(plan.clients + 1);
    let origin = OnceLock::new();
    let stats = std::thread::scope(|s| {
        let handles: Vec<_> = sessions
            .iter_mut()
            .enumerate()
            .map(|(client, session)| {
                let rng = ChaCha8Rng::seed_from_u64(plan.seed.wrapping_add(client as u64));
                let mut gen = OpGen::new(plan.workload, plan.chooser.clone(), keys, plan.shape, rng);
                let (start, origin, done) = (&start, &origin, &done);
                std::thread::Builder::new()
                    .name(format!("kv-client-{client}"))
                    .spawn_scoped(s, move || {
                        start.wait();
                        let origin = *origin.get().expect("the origin is set before the start barrier opens");
                        let clock = WallClock::new(origin);
                        run_client(&clock, session.as_mut(), &mut gen, plan.pace, client, plan.window, done)
                    })
                    .expect("spawning a client thread")
            })
            .collect();
        let t0 = Instant::now();
        origin.set(t0).expect("the origin is set once");
        start.wait();
        let clock = WallClock::new(t0);
        let end = plan.window.end.as_secs_f64();
        let mut last = (Duration::ZERO, 0u64);
        wait_for(&handles, || {
            let (now, ops) = (clock.now(), done.load(Ordering::Relaxed));
            let rate = (ops - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-9);
            last = (now, ops);
            let phase = if now < plan.window.warmup { "warm-up" } else { "run" };
            let detail = format!("{:.0}/{end:.0} s, {ops} ops, {rate:.0} ops/s", now.as_secs_f64());
            progress.show(&format!("{} {phase}", target.name()), now.as_secs_f64() / end, &detail);
        });
        progress.clear();
        let mut total = RunStats::default();
        for h in handles {
            match h.join() {
                Ok(stats) => total.merge(&stats),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        total
    });
    Ok(stats)
}

/// Writes records `[0, records)` with values of `value_size` bytes, in
/// batches from several clients at once; returns how long it took.
///
/// # Errors
/// A session cannot be opened, or a batch failed [`LOAD_TRIES`] times.
pub fn load(
    target: &dyn KvTarget,
    records: u64,
    value_size: usize,
    clients: usize,
    seed: u64,
    progress: Progress,
) -> Result<Duration> {
    let batch = LOAD_BATCH.min(target.max_batch().unwrap_or(LOAD_BATCH)).max(1) as u64;
    let loaders = clients.clamp(1, LOAD_CLIENTS);
    let mut sessions = (0..loaders).map(|_| target.session()).collect::<Result<Vec<_>>>()?;
    let next = AtomicU64::new(0);
    let loaded = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<ScopedJoinHandle<'_, Result<()>>> = sessions
            .iter_mut()
            .enumerate()
            .map(|(i, session)| {
                let (next, loaded, failed) = (&next, &loaded, &failed);
                s.spawn(move || {
                    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(i as u64).rotate_left(32));
                    while !failed.load(Ordering::Relaxed) {
                        let first = next.fetch_add(batch, Ordering::Relaxed);
                        if first >= records {
                            break;
                        }
                        let pairs: Vec<_> = (first..(first + batch).min(records))
                            .map(|r| (workload::key(r), workload::value(&mut rng, value_size)))
                            .collect();
                        if let Err(e) = put_with_retries(session.as_mut(), &pairs) {
                            failed.store(true, Ordering::Relaxed);
                            return Err(format!("loading records {first}..: {e}").into());
                        }
                        loaded.fetch_add(pairs.len() as u64, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        wait_for(&handles, || {
            let n = loaded.load(Ordering::Relaxed);
            let detail = format!("{n}/{records} records");
            progress.show(&format!("{} load", target.name()), n as f64 / records.max(1) as f64, &detail);
        });
        progress.clear();
        handles.into_iter().try_for_each(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    })?;
    Ok(started.elapsed())
}

fn put_with_retries(session: &mut dyn KvSession, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
    let mut last: Option<BoxError> = None;
    for _ in 0..LOAD_TRIES {
        match session.batch_put(pairs) {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| "no try made".into()))
}

/// Makes sleeps of threads spawned from now on end within a microsecond of
/// their deadline instead of Linux's default 50 µs timer slack, which an
/// open loop's every send would otherwise add to its latency. Best effort:
/// `/proc/self/timerslack_ns` is the main thread's, writable only from it
/// (or with CAP_SYS_NICE), and threads inherit their creator's slack.
fn tighten_timer_slack() {
    let _ = std::fs::write("/proc/self/timerslack_ns", "1000");
}

/// Returns when every thread of `handles` has finished, calling `tick`
/// about once a [`PROGRESS_EVERY`] meanwhile.
fn wait_for<T>(handles: &[ScopedJoinHandle<'_, T>], mut tick: impl FnMut()) {
    let mut last = Instant::now();
    while !handles.iter().all(ScopedJoinHandle::is_finished) {
        std::thread::sleep(Duration::from_millis(20));
        if last.elapsed() >= PROGRESS_EVERY {
            tick();
            last = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests;
