//! The nemesis schedule: from a seed, the faults of a run, their order,
//! when they start and how long they hold. Targets are chosen when a fault
//! starts (the leader of then), from a generator seeded by the step.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// kill -9 a store, restart it after the hold.
    Kill,
    /// kill -9 the meta-service leader, restart it after the hold.
    KillPd,
    /// SIGSTOP a store or the meta-service leader, SIGCONT after the hold.
    Pause,
    /// Split the nodes into two halves.
    PartitionHalves,
    /// Cut a leader (of a region, or of the meta service) off from the others.
    PartitionLeader,
    /// Some nodes stop hearing one node; it still hears them.
    PartitionOneWay,
    /// Each node hears only its two neighbours.
    PartitionRing,
    /// A node's veth link down.
    LinkDown,
    /// Move a region's leadership.
    Transfer,
    /// Split a region.
    Split,
    /// Add a replica on a store that lacks one, or remove a follower.
    Member,
    /// kill -9 a store, cut the tail of its newest WAL segment, restart.
    WalCut,
    /// kill -9 a store, flip a byte in an older WAL segment, restart.
    BitFlip,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 13] = [
        FaultKind::Kill,
        FaultKind::KillPd,
        FaultKind::Pause,
        FaultKind::PartitionHalves,
        FaultKind::PartitionLeader,
        FaultKind::PartitionOneWay,
        FaultKind::PartitionRing,
        FaultKind::LinkDown,
        FaultKind::Transfer,
        FaultKind::Split,
        FaultKind::Member,
        FaultKind::WalCut,
        FaultKind::BitFlip,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::KillPd => "kill-pd",
            FaultKind::Pause => "pause",
            FaultKind::PartitionHalves => "partition-halves",
            FaultKind::PartitionLeader => "partition-leader",
            FaultKind::PartitionOneWay => "partition-one-way",
            FaultKind::PartitionRing => "partition-ring",
            FaultKind::LinkDown => "link-down",
            FaultKind::Transfer => "transfer",
            FaultKind::Split => "split",
            FaultKind::Member => "member",
            FaultKind::WalCut => "wal-cut",
            FaultKind::BitFlip => "bit-flip",
        }
    }

    /// Whether the fault lasts until healed (else it is one action; a
    /// corrupted store is restarted, or replaced, at once).
    pub fn holds(self) -> bool {
        !matches!(
            self,
            FaultKind::Transfer
                | FaultKind::Split
                | FaultKind::Member
                | FaultKind::WalCut
                | FaultKind::BitFlip
        )
    }

    /// Parses a comma-separated list; `all` and the group `partition` (every
    /// partition kind) are accepted.
    pub fn parse_list(s: &str) -> Result<Vec<FaultKind>, String> {
        let mut out = Vec::new();
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let add: Vec<FaultKind> = match word {
                "all" => FaultKind::ALL.to_vec(),
                "partition" => vec![
                    FaultKind::PartitionHalves,
                    FaultKind::PartitionLeader,
                    FaultKind::PartitionOneWay,
                    FaultKind::PartitionRing,
                ],
                "corrupt" => vec![FaultKind::WalCut, FaultKind::BitFlip],
                w => vec![FaultKind::ALL.into_iter().find(|k| k.name() == w).ok_or_else(|| {
                    format!("unknown fault {w:?}; known: all, partition, corrupt, {}", names())
                })?],
            };
            for k in add {
                if !out.contains(&k) {
                    out.push(k);
                }
            }
        }
        if out.is_empty() {
            return Err("--faults names no fault".into());
        }
        Ok(out)
    }
}

fn names() -> String {
    FaultKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
}

/// One step of the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Milliseconds from the start of the run at which the fault starts.
    pub at_ms: u64,
    /// What.
    pub kind: FaultKind,
    /// How long it holds before it is healed (0 for one-off actions).
    pub hold_ms: u64,
    /// Seed of the generator that picks the step's targets.
    pub seed: u64,
}

/// Timing of the schedule.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Length of the faulty part of the run.
    pub duration_ms: u64,
    /// Quiet time after each heal: at least this ...
    pub quiet_min_ms: u64,
    /// ... and at most this.
    pub quiet_max_ms: u64,
    /// Hold of a fault: at least this ...
    pub hold_min_ms: u64,
    /// ... and at most this.
    pub hold_max_ms: u64,
}

/// The schedule of a run: faults drawn from `kinds`, alternating with quiet
/// windows, all starting before `timing.duration_ms`. The same seed gives
/// the same schedule. A runner that falls behind (a slow heal) starts the
/// next step late rather than skipping it.
pub fn generate(seed: u64, kinds: &[FaultKind], timing: Timing) -> Vec<Step> {
    assert!(!kinds.is_empty(), "no fault kinds");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut steps = Vec::new();
    let mut t = rng.gen_range(timing.quiet_min_ms..=timing.quiet_max_ms);
    // Cycle through the kinds in a shuffled order, so that a short run sees
    // each kind before it sees any twice.
    let mut deck: Vec<FaultKind> = Vec::new();
    while t < timing.duration_ms {
        if deck.is_empty() {
            deck = kinds.to_vec();
            for i in (1..deck.len()).rev() {
                deck.swap(i, rng.gen_range(0..=i));
            }
        }
        let kind = deck.pop().expect("refilled above");
        let hold_ms = if kind.holds() { rng.gen_range(timing.hold_min_ms..=timing.hold_max_ms) } else { 0 };
        steps.push(Step { at_ms: t, kind, hold_ms, seed: rng.gen() });
        t += hold_ms + rng.gen_range(timing.quiet_min_ms..=timing.quiet_max_ms);
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        duration_ms: 120_000,
        quiet_min_ms: 2_000,
        quiet_max_ms: 4_000,
        hold_min_ms: 3_000,
        hold_max_ms: 8_000,
    };

    #[test]
    fn same_seed_same_schedule_other_seed_other() {
        let a = generate(7, &FaultKind::ALL, TIMING);
        assert_eq!(a, generate(7, &FaultKind::ALL, TIMING));
        assert_ne!(a, generate(8, &FaultKind::ALL, TIMING));
    }

    #[test]
    fn steps_fit_the_run_and_do_not_overlap() {
        for seed in 0..50 {
            let s = generate(seed, &FaultKind::ALL, TIMING);
            assert!(!s.is_empty());
            for w in s.windows(2) {
                let end = w[0].at_ms + w[0].hold_ms;
                assert!(w[1].at_ms >= end + TIMING.quiet_min_ms, "seed {seed}: {w:?}");
                assert!(w[1].at_ms <= end + TIMING.quiet_max_ms, "seed {seed}: {w:?}");
            }
            for st in &s {
                assert!(st.at_ms < TIMING.duration_ms);
                if st.kind.holds() {
                    assert!((TIMING.hold_min_ms..=TIMING.hold_max_ms).contains(&st.hold_ms));
                } else {
                    assert_eq!(st.hold_ms, 0);
                }
            }
        }
    }

    #[test]
    fn only_chosen_kinds_and_each_before_any_twice() {
        let kinds = [FaultKind::Kill, FaultKind::Pause, FaultKind::Split];
        let s = generate(3, &kinds, TIMING);
        assert!(s.iter().all(|st| kinds.contains(&st.kind)));
        let first: Vec<FaultKind> = s.iter().take(3).map(|st| st.kind).collect();
        for k in kinds {
            assert!(first.contains(&k), "{first:?}");
        }
    }

    #[test]
    fn parse_lists_groups_and_rejects_unknown() {
        assert_eq!(FaultKind::parse_list("kill,pause").unwrap(), vec![FaultKind::Kill, FaultKind::Pause]);
        assert_eq!(FaultKind::parse_list("partition").unwrap().len(), 4);
        assert_eq!(FaultKind::parse_list("all,kill").unwrap().len(), FaultKind::ALL.len());
        assert!(FaultKind::parse_list("kil").unwrap_err().contains("unknown fault"));
        assert!(FaultKind::parse_list("").is_err());
    }
}
