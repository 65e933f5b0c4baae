//! What a run reports: operations by outcome, faults injected, recovery
//! times, and the checker's verdict, as a table for humans and as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// Operation counts by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OpCounts {
    /// Took effect (or read) and answered.
    pub ok: u64,
    /// Definitely had no effect.
    pub fail: u64,
    /// May or may not have taken effect.
    pub unknown: u64,
}

impl OpCounts {
    /// All operations.
    pub fn total(&self) -> u64 {
        self.ok + self.fail + self.unknown
    }
}

/// One fault as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    /// Kind name.
    pub kind: String,
    /// Milliseconds from the start of the run.
    pub at_ms: u64,
    /// What exactly (targets, effect).
    pub detail: String,
    /// Milliseconds from injection until a probe write succeeded while the
    /// fault held (`None`: not within the hold).
    pub recovery_during_ms: Option<u64>,
    /// Milliseconds from the heal (or the one-off action) until a probe
    /// write succeeded (`None`: not within the limit).
    pub recovery_after_ms: Option<u64>,
    /// A corrupted store refused to start (and was replaced).
    pub refused: bool,
    /// The runner could not inject it (the reason is in `detail`).
    pub skipped: bool,
}

/// Percentiles of a sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Samples.
    pub n: usize,
    /// Median, milliseconds.
    pub p50_ms: Option<u64>,
    /// Maximum, milliseconds.
    pub max_ms: Option<u64>,
}

/// The nearest-rank percentile `p` (0..=100) of `values`.
pub fn percentile(values: &[u64], p: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// p50 and max of `values`.
pub fn summarize(values: &[u64]) -> Summary {
    Summary { n: values.len(), p50_ms: percentile(values, 50.0), max_ms: values.iter().copied().max() }
}

/// The whole report of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Seed.
    pub seed: u64,
    /// Seconds the workload ran.
    pub seconds: f64,
    /// Stores at the start.
    pub stores: usize,
    /// Client threads.
    pub clients: usize,
    /// Operations by workload (`register`, `set`) and in all.
    pub ops: BTreeMap<String, OpCounts>,
    /// Faults injected, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Each fault.
    pub fault_log: Vec<FaultRecord>,
    /// Recovery after a fault was injected, while it held.
    pub recovery_during: Summary,
    /// Recovery after a fault was healed (or a one-off action).
    pub recovery_after: Summary,
    /// Recoveries that did not happen within the limit after a heal.
    pub not_recovered: usize,
    /// Corrupted stores that refused to start.
    pub refused: usize,
    /// Corrupted stores that started, then failed (were replaced).
    pub damaged_failed_later: usize,
    /// Processes that exited or panicked on their own.
    pub crashes: usize,
    /// Anomalies by kind (the checker's counts).
    pub anomalies: BTreeMap<String, u64>,
    /// Acknowledged set adds missing from the final read.
    pub lost_writes: u64,
    /// Set elements read that were never written.
    pub unexpected: u64,
    /// The checker's verdict, as text.
    pub verdict: String,
    /// No violation and no lost write.
    pub ok: bool,
    /// Where the run's files are.
    pub dir: String,
}

impl Report {
    /// Recovery summaries from the fault log.
    pub fn fill_recovery(&mut self) {
        let during: Vec<u64> = self.fault_log.iter().filter_map(|f| f.recovery_during_ms).collect();
        let after: Vec<u64> = self.fault_log.iter().filter_map(|f| f.recovery_after_ms).collect();
        self.recovery_during = summarize(&during);
        self.recovery_after = summarize(&after);
        self.not_recovered =
            self.fault_log.iter().filter(|f| !f.skipped && f.recovery_after_ms.is_none()).count();
        self.refused = self.fault_log.iter().filter(|f| f.refused).count();
        self.faults.clear();
        for f in self.fault_log.iter().filter(|f| !f.skipped) {
            *self.faults.entry(f.kind.clone()).or_default() += 1;
        }
    }

    /// The table for humans.
    pub fn human(&self) -> String {
        let ms = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v} ms"));
        let mut s = String::new();
        let _ = writeln!(
            s,
            "ekv-chaos seed {}: {:.0}s, {} stores, {} clients",
            self.seed, self.seconds, self.stores, self.clients
        );
        let _ = writeln!(s, "{:<10} {:>9} {:>9} {:>9} {:>9}", "ops", "ok", "fail", "unknown", "total");
        for (w, c) in &self.ops {
            let _ = writeln!(s, "{w:<10} {:>9} {:>9} {:>9} {:>9}", c.ok, c.fail, c.unknown, c.total());
        }
        let total: u64 = self.faults.values().sum();
        let kinds: Vec<String> = self.faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(s, "faults     {total}: {}", kinds.join(", "));
        let skipped = self.fault_log.iter().filter(|f| f.skipped).count();
        if skipped > 0 {
            let _ = writeln!(
                s,
                "skipped    {skipped} (nothing to aim at then, e.g. no old WAL segment yet; see nemesis.log)"
            );
        }
        let _ = writeln!(
            s,
            "recovery   during fault: p50 {} max {} (n={});  after heal: p50 {} max {} (n={}, {} not within the limit)",
            ms(self.recovery_during.p50_ms),
            ms(self.recovery_during.max_ms),
            self.recovery_during.n,
            ms(self.recovery_after.p50_ms),
            ms(self.recovery_after.max_ms),
            self.recovery_after.n,
            self.not_recovered
        );
        let _ =
            writeln!(s, "refused    {} corrupted store(s) refused to start and were replaced", self.refused);
        let _ = writeln!(
            s,
            "lost       {} acknowledged writes, {} never-written elements read",
            self.lost_writes, self.unexpected
        );
        let _ = write!(s, "verdict    {}", self.verdict);
        if !self.verdict.ends_with('\n') {
            s.push('\n');
        }
        let _ =
            writeln!(s, "result     {}  (run directory {})", if self.ok { "PASS" } else { "FAIL" }, self.dir);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(kind: &str, during: Option<u64>, after: Option<u64>, skipped: bool) -> FaultRecord {
        FaultRecord {
            kind: kind.into(),
            at_ms: 0,
            detail: String::new(),
            recovery_during_ms: during,
            recovery_after_ms: after,
            refused: kind == "bit-flip",
            skipped,
        }
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 50.0), Some(7));
        assert_eq!(percentile(&[4, 1, 3, 2], 50.0), Some(2));
        assert_eq!(percentile(&[5, 1, 4, 2, 3], 50.0), Some(3));
        assert_eq!(percentile(&[5, 1, 4, 2, 3], 100.0), Some(5));
        assert_eq!(percentile(&[5, 1, 4, 2, 3], 0.0), Some(1));
    }

    #[test]
    fn recovery_and_fault_counts_come_from_the_log() {
        let mut r = Report {
            seed: 1,
            seconds: 1.0,
            stores: 3,
            clients: 2,
            ops: BTreeMap::new(),
            faults: BTreeMap::new(),
            fault_log: vec![
                fault("kill", Some(900), Some(100), false),
                fault("kill", None, Some(300), false),
                fault("bit-flip", None, None, false),
                fault("split", None, Some(50), true),
            ],
            recovery_during: Summary::default(),
            recovery_after: Summary::default(),
            not_recovered: 0,
            refused: 0,
            damaged_failed_later: 0,
            crashes: 0,
            anomalies: BTreeMap::new(),
            lost_writes: 0,
            unexpected: 0,
            verdict: "ok".into(),
            ok: true,
            dir: "/tmp/x".into(),
        };
        r.fill_recovery();
        assert_eq!(r.faults.get("kill"), Some(&2));
        assert_eq!(r.faults.get("split"), None, "skipped faults are not counted");
        assert_eq!(r.recovery_during, Summary { n: 1, p50_ms: Some(900), max_ms: Some(900) });
        assert_eq!(r.recovery_after.n, 3);
        assert_eq!(r.recovery_after.p50_ms, Some(100));
        assert_eq!(r.recovery_after.max_ms, Some(300));
        assert_eq!(r.not_recovered, 1);
        assert_eq!(r.refused, 1);
        let text = r.human();
        assert!(text.contains("faults     3: bit-flip 1, kill 2"), "{text}");
        assert!(text.contains("PASS"));
    }
}
