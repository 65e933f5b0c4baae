use std::sync::Arc;

use super::*;
use crate::kv::distribution::Distribution;
use crate::kv::stats::OpStats;
use crate::kv::target::memory::MemoryTarget;
use crate::kv::workload::OpKind;

const MS: Duration = Duration::from_millis(1);

/// A clock that moves only when told: sleeping jumps to the wake-up time,
/// and sessions advance it by their service times.
#[derive(Debug, Clone, Default)]
struct VirtualClock {
    now_ns: Arc<AtomicU64>,
}

impl VirtualClock {
    fn advance(&self, d: Duration) {
        self.now_ns.fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.now_ns.load(Ordering::SeqCst))
    }

    fn sleep_until(&self, t: Duration) {
        self.now_ns.fetch_max(t.as_nanos() as u64, Ordering::SeqCst);
    }
}

/// A session whose `n`-th operation takes `service(n)` of virtual time.
struct TimedSession {
    clock: VirtualClock,
    service: fn(u64) -> Duration,
    n: u64,
}

impl TimedSession {
    fn serve(&mut self) {
        self.clock.advance((self.service)(self.n));
        self.n += 1;
    }
}

impl KvSession for TimedSession {
    fn read(&mut self, _key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.serve();
        Ok(Some(Vec::new()))
    }

    fn update(&mut self, _key: &[u8], _value: &[u8]) -> Result<()> {
        self.serve();
        Ok(())
    }

    fn scan(&mut self, _start: &[u8], _end: &[u8], limit: usize) -> Result<usize> {
        self.serve();
        Ok(limit)
    }

    fn batch_put(&mut self, _pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        self.serve();
        Ok(())
    }
}

/// Operation 10 stalls for 50 ms; every other one takes 100 µs.
fn one_stall(n: u64) -> Duration {
    if n == 10 {
        50 * MS
    } else {
        Duration::from_micros(100)
    }
}

fn run_virtual(pace: Pace, clients: usize, window: Window, service: fn(u64) -> Duration) -> Vec<RunStats> {
    let keys = KeySpace::new(100);
    let shape = OpShape { value_size: 8, batch_size: 4 };
    let done = AtomicU64::new(0);
    (0..clients)
        .map(|client| {
            let clock = VirtualClock::default();
            let mut session = TimedSession { clock: clock.clone(), service, n: 0 };
            let chooser = KeyChooser::new(Distribution::Uniform, 100, false);
            let rng = ChaCha8Rng::seed_from_u64(client as u64);
            let mut gen = OpGen::new(Workload::C, chooser, &keys, shape, rng);
            run_client(&clock, &mut session, &mut gen, pace, client, window, &done)
        })
        .collect()
}

fn reads(stats: &RunStats) -> &OpStats {
    &stats.ops[&OpKind::Read]
}

/// Recorded latencies of at least `at_least`.
fn slow(stats: &OpStats, at_least: Duration) -> u64 {
    let h = stats.latency.histogram();
    h.count_between(at_least.as_nanos() as u64, h.max())
}

#[test]
fn schedule_spaces_operations_evenly_and_deals_them_to_clients_in_turn() {
    let s = Schedule::new(1000.0, 4);
    assert_eq!((0..6).map(|i| s.due(i)).collect::<Vec<_>>(), (0..6).map(|i| i * MS).collect::<Vec<_>>());
    // Client 1 sends operations 1, 5, 9: due at 1, 5, 9 ms.
    assert_eq!((0..3).map(|k| s.due(s.op_index(1, k))).collect::<Vec<_>>(), [MS, 5 * MS, 9 * MS]);
    assert_eq!(s.due_before(10 * MS), 10);
    assert_eq!(s.due_before(Duration::from_micros(9_500)), 10);
    let per_client: Vec<u64> = (0..4).map(|c| s.client_due_between(c, Duration::ZERO, 10 * MS)).collect();
    assert_eq!(per_client, [3, 3, 2, 2]);
    assert_eq!((0..4).map(|c| s.client_due_between(c, 2 * MS, 10 * MS)).sum::<u64>(), 8);

    // Rates whose interval is not a whole number of nanoseconds.
    let third = Schedule::new(3.0, 1);
    assert_eq!(third.due(1), Duration::from_nanos(333_333_333));
    assert_eq!(third.due_before(Duration::from_secs(1)), 3);
    let s = Schedule::new(2000.0, 16);
    assert_eq!(s.due_before(Duration::from_millis(300)), 600);
    assert_eq!((0..16).map(|c| s.client_due_between(c, 100 * MS, 400 * MS)).sum::<u64>(), 600);
}

#[test]
fn open_loop_clients_send_on_their_due_times() {
    // Instant answers: every operation goes out on time, and each client
    // sends exactly its share of the schedule.
    let s = Schedule::new(1000.0, 3);
    let window = Window { warmup: 10 * MS, end: 100 * MS };
    let runs = run_virtual(Pace::Open(s), 3, window, |_| Duration::ZERO);
    for (c, run) in runs.iter().enumerate() {
        assert_eq!(run.sent, s.client_due_between(c, window.warmup, window.end), "client {c}");
        assert_eq!(run.unsent(), 0);
        assert_eq!(run.send_lag.max(), 0.0);
        assert_eq!(reads(run).latency.max(), 0.0);
    }
    assert_eq!(runs.iter().map(|r| r.sent).sum::<u64>(), 90);
}

#[test]
fn open_loop_charges_a_stall_to_the_operations_queued_behind_it() {
    // 1000 ops/s from one client for 100 ms; operation 10 stalls 50 ms.
    let window = Window { warmup: Duration::ZERO, end: 100 * MS };
    let open = &run_virtual(Pace::Open(Schedule::new(1000.0, 1)), 1, window, one_stall)[0];
    assert_eq!((open.sent, open.unsent()), (100, 0));
    // Operation 10 is due at 10 ms and answered at 60 ms. Operation j > 10
    // is due at j ms but sent when the one before is answered, at
    // 60 + 0.1 (j - 11) ms and answered 0.1 ms later: it is charged
    // 59 - 0.9 j ms, over 1 ms up to j = 64.
    let r = reads(open);
    assert_eq!(slow(r, 50 * MS), 1, "the stalled operation itself");
    assert_eq!(slow(r, MS), 55, "the stall and the 54 operations queued behind it");
    assert!(r.latency.p50() > 1_000.0, "p50 {} µs", r.latency.p50());
    assert!((r.latency.max() - 50_000.0).abs() < 50.0, "max {} µs", r.latency.max());
    // Operation 11 was sent 49 ms late.
    assert!((open.send_lag.max() - 49_000.0).abs() < 50.0, "lag {} µs", open.send_lag.max());

    // The same service times in a closed loop: the stall is one slow
    // sample among hundreds of fast ones.
    let closed = &run_virtual(Pace::Closed, 1, window, one_stall)[0];
    let r = reads(closed);
    assert_eq!(slow(r, MS), 1);
    assert!(r.latency.count() > 400, "{} ops", r.latency.count());
    assert!((r.latency.p99() - 100.0).abs() < 0.5, "p99 {} µs", r.latency.p99());
    assert_eq!((closed.scheduled, closed.send_lag.count()), (0, 0));
}

#[test]
fn open_loop_stops_at_the_end_and_counts_what_it_never_sent() {
    // Every operation takes 3 ms at 1000 ops/s: the client falls behind
    // and the window closes with two thirds of the schedule unsent.
    let window = Window { warmup: Duration::ZERO, end: 30 * MS };
    let run = &run_virtual(Pace::Open(Schedule::new(1000.0, 1)), 1, window, |_| 3 * MS)[0];
    assert_eq!(run.scheduled, 30);
    assert_eq!(run.sent, 10, "sent at 0, 3, ..., 27 ms");
    assert_eq!(run.unsent(), 20);
    assert!(run.send_lag.max() > 10_000.0, "lag {} µs", run.send_lag.max());
}

#[test]
fn warm_up_is_not_recorded() {
    let window = Window { warmup: 5 * MS, end: 10 * MS };
    let run = &run_virtual(Pace::Open(Schedule::new(1000.0, 1)), 1, window, |_| Duration::ZERO)[0];
    assert_eq!((run.sent, reads(run).latency.count()), (5, 5));
    assert_eq!(run.window, 5 * MS);
}

fn plan(workload: Workload, pace: Pace, clients: usize, records: u64, window: Window) -> RunPlan {
    RunPlan {
        workload,
        chooser: KeyChooser::new(workload.default_distribution(), records, workload.inserts()),
        shape: OpShape { value_size: 32, batch_size: 8 },
        pace,
        clients,
        window,
        seed: 1,
    }
}

#[test]
fn memory_target_end_to_end_closed_and_open_loop() {
    const RECORDS: u64 = 500;
    let target = MemoryTarget::new(Duration::ZERO);
    load(&target, RECORDS, 32, 3, 9, Progress::off()).unwrap();
    assert_eq!(target.len() as u64, RECORDS);

    let window = Window { warmup: 50 * MS, end: 300 * MS };
    let keys = KeySpace::new(RECORDS);
    let closed =
        run(&target, &plan(Workload::A, Pace::Closed, 2, RECORDS, window), &keys, Progress::off()).unwrap();
    for kind in [OpKind::Read, OpKind::Update] {
        let s = &closed.ops[&kind];
        assert!(s.latency.count() > 0, "{} recorded", kind.name());
        assert_eq!((s.errors, s.missing), (0, 0), "{}", kind.name());
    }
    assert_eq!(closed.ops.len(), 2);
    assert_eq!(closed.sent, closed.total().latency.count());
    assert_eq!((closed.scheduled, closed.unsent(), closed.window), (0, 0, 250 * MS));

    // 2000 ops/s over a 300 ms window: exactly 600 operations scheduled.
    let window = Window { warmup: 100 * MS, end: 400 * MS };
    let open_plan = plan(Workload::A, Pace::Open(Schedule::new(2000.0, 2)), 2, RECORDS, window);
    let open = run(&target, &open_plan, &keys, Progress::off()).unwrap();
    assert_eq!(open.scheduled, 600);
    assert_eq!(open.sent + open.unsent(), 600);
    assert!(open.sent > 0);
    assert_eq!(open.send_lag.count(), open.sent);
    let total = open.total();
    assert_eq!((total.latency.count(), total.errors, total.missing), (open.sent, 0, 0));
    assert!(open.ops[&OpKind::Read].latency.count() > 0 && open.ops[&OpKind::Update].latency.count() > 0);
    assert_eq!(target.len() as u64, RECORDS, "updates add no records");
}

#[test]
fn memory_target_runs_every_kind_of_operation() {
    const RECORDS: u64 = 300;
    let window = Window { warmup: Duration::ZERO, end: 100 * MS };
    for (workload, kinds) in [
        (Workload::D, &[OpKind::Read, OpKind::Insert][..]),
        (Workload::E, &[OpKind::Insert, OpKind::Scan]),
        (Workload::F, &[OpKind::Read, OpKind::ReadModifyWrite]),
        (Workload::Write, &[OpKind::Update]),
        (Workload::Batch, &[OpKind::Batch]),
    ] {
        let target = MemoryTarget::new(Duration::ZERO);
        load(&target, RECORDS, 16, 1, 3, Progress::off()).unwrap();
        let keys = KeySpace::new(RECORDS);
        let stats =
            run(&target, &plan(workload, Pace::Closed, 2, RECORDS, window), &keys, Progress::off()).unwrap();
        let got: Vec<OpKind> = stats.ops.keys().copied().collect();
        assert_eq!(got, kinds, "{}", workload.name());
        let total = stats.total();
        assert_eq!((total.errors, total.missing), (0, 0), "{}", workload.name());
        let inserted = stats.ops.get(&OpKind::Insert).map_or(0, |s| s.latency.count());
        assert_eq!(target.len() as u64, RECORDS + inserted, "{}", workload.name());
        assert_eq!(keys.existing(), RECORDS + inserted, "{}: every insert acknowledged", workload.name());
    }
}

#[test]
fn load_respects_the_targets_batch_limit_and_fails_loudly() {
    struct Limited(MemoryTarget);
    impl KvTarget for Limited {
        fn name(&self) -> &str {
            "limited"
        }
        fn session(&self) -> Result<Box<dyn KvSession>> {
            Ok(Box::new(Checked(self.0.session()?)))
        }
        fn max_batch(&self) -> Option<usize> {
            Some(5)
        }
    }
    struct Checked(Box<dyn KvSession>);
    impl KvSession for Checked {
        fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
            self.0.read(key)
        }
        fn update(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
            self.0.update(key, value)
        }
        fn scan(&mut self, start: &[u8], end: &[u8], limit: usize) -> Result<usize> {
            self.0.scan(start, end, limit)
        }
        fn batch_put(&mut self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
            if pairs.len() > 5 {
                return Err(format!("batch of {} over the limit", pairs.len()).into());
            }
            self.0.batch_put(pairs)
        }
    }
    let target = Limited(MemoryTarget::new(Duration::ZERO));
    load(&target, 103, 8, 4, 1, Progress::off()).unwrap();
    assert_eq!(target.0.len(), 103);

    struct Broken;
    impl KvTarget for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        fn session(&self) -> Result<Box<dyn KvSession>> {
            Err("unreachable store".into())
        }
    }
    let err = load(&Broken, 10, 8, 2, 1, Progress::off()).unwrap_err().to_string();
    assert!(err.contains("unreachable"), "{err}");
}
