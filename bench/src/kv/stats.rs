//! What a run measured: a latency histogram per operation kind, errors,
//! and for open-loop runs how far behind its schedule the run fell.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::Latency;

use super::workload::OpKind;

/// The operations of one kind.
#[derive(Debug, Clone, Default)]
pub struct OpStats {
    /// Latencies of the operations that succeeded.
    pub latency: Latency,
    /// Operations that failed (not in `latency`).
    pub errors: u64,
    /// Reads that found no value (in `latency`): after a full load there
    /// should be none.
    pub missing: u64,
}

impl OpStats {
    /// Adds `other`'s operations.
    pub fn merge(&mut self, other: &OpStats) {
        self.latency.merge(&other.latency);
        self.errors += other.errors;
        self.missing += other.missing;
    }
}

/// The measured window of one run against one target.
#[derive(Debug, Clone, Default)]
pub struct RunStats {
    /// Per kind.
    pub ops: BTreeMap<OpKind, OpStats>,
    /// Open loop: how late each measured operation was sent after its
    /// intended time (the client was still busy, or woke late).
    pub send_lag: Latency,
    /// Open loop: operations the schedule put in the measured window.
    pub scheduled: u64,
    /// Operations sent in the measured window (succeeded or failed).
    pub sent: u64,
    /// Length of the measured window (the warm-up excluded).
    pub window: Duration,
    /// The first error seen, for the notes.
    pub first_error: Option<String>,
}

impl RunStats {
    /// Records one operation of `kind` that took `latency` (or failed).
    pub fn record(&mut self, kind: OpKind, latency: Duration, outcome: Result<bool, String>) {
        let s = self.ops.entry(kind).or_default();
        self.sent += 1;
        match outcome {
            Ok(found) => {
                s.latency.record(latency);
                s.missing += u64::from(!found);
            }
            Err(e) => {
                s.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    /// Adds another client's measurements of the same window.
    pub fn merge(&mut self, other: &RunStats) {
        for (kind, s) in &other.ops {
            self.ops.entry(*kind).or_default().merge(s);
        }
        self.send_lag.merge(&other.send_lag);
        self.scheduled += other.scheduled;
        self.sent += other.sent;
        self.window = self.window.max(other.window);
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    /// Every kind together.
    pub fn total(&self) -> OpStats {
        let mut t = OpStats::default();
        for s in self.ops.values() {
            t.merge(s);
        }
        t
    }

    /// Scheduled operations never sent: the run fell so far behind that
    /// the window closed first.
    pub fn unsent(&self) -> u64 {
        self.scheduled.saturating_sub(self.sent)
    }

    /// The summary of `stats` over this run's window.
    pub fn summary(&self, stats: &OpStats) -> Summary {
        Summary::of(stats, self.window)
    }
}

/// The numbers reported for one kind (or all) of one target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Percentiles and maximum, in µs.
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// Operations that succeeded.
    pub count: u64,
    /// Operations that failed.
    pub errors: u64,
    /// Succeeded operations per second of the window.
    pub ops_per_s: f64,
}

impl Summary {
    /// Summarizes `stats` measured over `window`.
    pub fn of(stats: &OpStats, window: Duration) -> Self {
        let l = &stats.latency;
        let secs = window.as_secs_f64();
        Self {
            p50_us: l.p50(),
            p90_us: l.p(0.9),
            p99_us: l.p99(),
            p999_us: l.p999(),
            max_us: l.max(),
            count: l.count(),
            errors: stats.errors,
            ops_per_s: if secs > 0.0 { l.count() as f64 / secs } else { 0.0 },
        }
    }

    /// `(metric, value)` pairs, in report order.
    pub fn metrics(&self) -> [(&'static str, f64); 8] {
        [
            ("ops_per_s", self.ops_per_s),
            ("p50_us", self.p50_us),
            ("p90_us", self.p90_us),
            ("p99_us", self.p99_us),
            ("p999_us", self.p999_us),
            ("max_us", self.max_us),
            ("count", self.count as f64),
            ("errors", self.errors as f64),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Within HdrHistogram's 3 significant digits.
    fn close(got: f64, want: f64) -> bool {
        (got - want).abs() <= want.abs() * 0.001 + 1e-9
    }

    #[test]
    fn percentiles_of_constructed_sequences() {
        // 10,000 operations: 9,899 of 100 µs, 100 of 5 ms, one of 1 s.
        let mut run = RunStats { window: Duration::from_secs(2), ..RunStats::default() };
        for _ in 0..9_899 {
            run.record(OpKind::Read, Duration::from_micros(100), Ok(true));
        }
        for _ in 0..100 {
            run.record(OpKind::Read, Duration::from_millis(5), Ok(true));
        }
        run.record(OpKind::Read, Duration::from_secs(1), Ok(false));
        let s = run.summary(&run.ops[&OpKind::Read]);
        assert_eq!(s.count, 10_000);
        assert!(close(s.p50_us, 100.0) && close(s.p90_us, 100.0), "{s:?}");
        // The 9,900th value (p99) is the first 5 ms one; the 9,990th (p99.9) too.
        assert!(close(s.p99_us, 5_000.0), "p99 {}", s.p99_us);
        assert!(close(s.p999_us, 5_000.0), "p999 {}", s.p999_us);
        assert!(close(s.max_us, 1_000_000.0), "max {}", s.max_us);
        assert!(close(s.ops_per_s, 5_000.0), "{}", s.ops_per_s);
        assert_eq!(run.ops[&OpKind::Read].missing, 1);

        // A linear ramp 1..=1000 µs: p50 = 500, p90 = 900, p99 = 990.
        let mut ramp = RunStats { window: Duration::from_secs(1), ..RunStats::default() };
        for us in 1..=1000 {
            ramp.record(OpKind::Update, Duration::from_micros(us), Ok(true));
        }
        let s = ramp.summary(&ramp.ops[&OpKind::Update]);
        assert!(close(s.p50_us, 500.0) && close(s.p90_us, 900.0) && close(s.p99_us, 990.0), "{s:?}");
        assert!(close(s.max_us, 1000.0));
    }

    #[test]
    fn errors_are_counted_apart_and_merge_adds_up() {
        let mut a = RunStats { window: Duration::from_secs(1), scheduled: 4, ..RunStats::default() };
        a.record(OpKind::Read, Duration::from_micros(10), Ok(true));
        a.record(OpKind::Update, Duration::from_micros(10), Err("boom".into()));
        let mut b = RunStats { window: Duration::from_secs(1), scheduled: 4, ..RunStats::default() };
        b.record(OpKind::Update, Duration::from_micros(30), Ok(true));
        b.record(OpKind::Update, Duration::from_micros(30), Err("second".into()));
        a.merge(&b);
        assert_eq!((a.sent, a.scheduled, a.unsent()), (4, 8, 4));
        assert_eq!(a.first_error.as_deref(), Some("boom"));
        let update = &a.ops[&OpKind::Update];
        assert_eq!((update.latency.count(), update.errors), (1, 2));
        let total = a.total();
        assert_eq!((total.latency.count(), total.errors), (2, 2));
        let s = a.summary(&total);
        assert_eq!((s.count, s.errors), (2, 2));
        assert!(close(s.ops_per_s, 2.0));
    }
}
