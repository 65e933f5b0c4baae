//! What a check found: a [`Verdict`] of [`Anomaly`]s.

use std::collections::BTreeMap;
use std::fmt;

use crate::{History, Key, OpId, Operation, Value};

/// How many anomalies of each kind a [`Verdict`] keeps; all are counted.
pub const MAX_REPORTED: usize = 16;

/// An operation cited by an anomaly, with its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Witness {
    /// Its index in the history.
    pub id: OpId,
    /// The operation.
    pub op: Operation,
}

impl Witness {
    pub(crate) fn new(history: &History, index: usize) -> Self {
        Witness { id: OpId(index), op: history.ops()[index].clone() }
    }
}

impl fmt::Display for Witness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.id, self.op)
    }
}

/// What is wrong with an operation as recorded: a bug in the harness, not in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Problem {
    /// The outcome cannot be one of the operation (e.g. a list for a put).
    OutcomeMismatch,
    /// It completed before it was invoked.
    CompletedBeforeInvoked,
    /// Its outcome is ok but it has no completion time.
    OkWithoutCompletion,
    /// Its element was added or appended to the key before; elements must be unique per key.
    DuplicateElement,
    /// Its key is used by operations of another workload too.
    MixedWorkloads,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Problem::OutcomeMismatch => "its outcome cannot be one of its operation",
            Problem::CompletedBeforeInvoked => "it completed before it was invoked",
            Problem::OkWithoutCompletion => "its outcome is ok but it has no completion time",
            Problem::DuplicateElement => "its element was written to the key before",
            Problem::MixedWorkloads => "its key is used by another workload too",
        })
    }
}

/// An operation that could come next after the longest linearizable prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The operation.
    pub op: Witness,
    /// Whether its result agrees with the register's value after the prefix (if so, every
    /// continuation from it failed further on).
    pub consistent: bool,
}

/// Why a register's history is not linearizable: how far the search got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterViolation {
    /// The register.
    pub key: Key,
    /// Operations on it with an ok outcome (these must be linearized).
    pub known: usize,
    /// Operations on it with an unknown outcome (these may be).
    pub unknown: usize,
    /// Operations on it that failed (dropped).
    pub failed: usize,
    /// Whether the search found this even letting unknown operations take effect more than once
    /// (the prefix may then do so).
    pub relaxed: bool,
    /// The length of the longest linearizable prefix found.
    pub prefix_len: usize,
    /// Its last few operations.
    pub prefix_tail: Vec<Witness>,
    /// The value after it (`None`: absent).
    pub value_after: Option<Value>,
    /// The operation that must be linearized before its completion and cannot be: the first
    /// completion after the prefix.
    pub blocker: Option<Witness>,
    /// The ok operations that could come next.
    pub candidates: Vec<Candidate>,
}

impl fmt::Display for RegisterViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "register {} is not linearizable ({} ok operations, {} unknown, {} failed and dropped)",
            self.key, self.known, self.unknown, self.failed
        )?;
        if self.relaxed {
            writeln!(
                f,
                "  (not even if unknown operations could take effect more than once, which the prefix may do)"
            )?;
        }
        writeln!(f, "  longest linearizable prefix: {} operations, ending with", self.prefix_len)?;
        if self.prefix_len > self.prefix_tail.len() {
            writeln!(f, "    ...")?;
        }
        for w in &self.prefix_tail {
            writeln!(f, "    {w}")?;
        }
        match &self.value_after {
            Some(v) => writeln!(f, "  value after it: {v}")?,
            None => writeln!(f, "  value after it: None")?,
        }
        if let Some(b) = &self.blocker {
            writeln!(f, "  it cannot be extended to linearize, before it completes,\n    {b}")?;
        }
        writeln!(f, "  ok operations that could come next:")?;
        for c in &self.candidates {
            let why =
                if c.consistent { "consistent, but no continuation works" } else { "contradicts the value" };
            writeln!(f, "    {} ({why})", c.op)?;
        }
        Ok(())
    }
}

/// The kinds of [`Anomaly`], for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum AnomalyKind {
    /// [`Anomaly::NotLinearizable`].
    NotLinearizable,
    /// [`Anomaly::Inconclusive`].
    Inconclusive,
    /// [`Anomaly::LostWrite`].
    LostWrite,
    /// [`Anomaly::StaleRead`].
    StaleRead,
    /// [`Anomaly::NonMonotonicRead`].
    NonMonotonicRead,
    /// [`Anomaly::Phantom`].
    Phantom,
    /// [`Anomaly::FutureRead`].
    FutureRead,
    /// [`Anomaly::Duplicate`].
    Duplicate,
    /// [`Anomaly::IncompatibleOrder`].
    IncompatibleOrder,
    /// [`Anomaly::WrongOrder`].
    WrongOrder,
    /// [`Anomaly::Malformed`].
    Malformed,
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AnomalyKind::NotLinearizable => "not linearizable",
            AnomalyKind::Inconclusive => "inconclusive",
            AnomalyKind::LostWrite => "lost write",
            AnomalyKind::StaleRead => "stale read",
            AnomalyKind::NonMonotonicRead => "non-monotonic read",
            AnomalyKind::Phantom => "phantom",
            AnomalyKind::FutureRead => "future read",
            AnomalyKind::Duplicate => "duplicate",
            AnomalyKind::IncompatibleOrder => "incompatible order",
            AnomalyKind::WrongOrder => "wrong order",
            AnomalyKind::Malformed => "malformed",
        })
    }
}

/// Something a check found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Anomaly {
    /// A register's history is not linearizable.
    NotLinearizable(Box<RegisterViolation>),
    /// The search of a register gave up after `steps` steps without a verdict.
    Inconclusive {
        /// The register.
        key: Key,
        /// Steps taken.
        steps: u64,
    },
    /// The final read of a set or list lacks an element that was acknowledged, or already read,
    /// before it was invoked.
    LostWrite {
        /// The set or list.
        key: Key,
        /// The element missing.
        element: Value,
        /// The acknowledged write of the element, or an earlier read that returned it.
        cause: Witness,
        /// The final read.
        read: Witness,
    },
    /// A read lacks an element whose write was acknowledged before the read was invoked.
    StaleRead {
        /// The set or list.
        key: Key,
        /// The element missing.
        element: Value,
        /// The acknowledged write.
        cause: Witness,
        /// The read.
        read: Witness,
    },
    /// A read lacks an element that a read completed before it was invoked returned (for a
    /// list: it is shorter than that read).
    NonMonotonicRead {
        /// The set or list.
        key: Key,
        /// The element missing.
        element: Value,
        /// The earlier read.
        cause: Witness,
        /// The read.
        read: Witness,
    },
    /// A read returned an element never written, or whose write failed.
    Phantom {
        /// The set or list.
        key: Key,
        /// The element.
        element: Value,
        /// The read.
        read: Witness,
        /// The failed write of the element, if there was one.
        attempt: Option<Witness>,
    },
    /// A read returned an element whose write was invoked after the read completed.
    FutureRead {
        /// The set or list.
        key: Key,
        /// The element.
        element: Value,
        /// The read.
        read: Witness,
        /// The write.
        write: Witness,
    },
    /// A read returned an element more than once.
    Duplicate {
        /// The set or list.
        key: Key,
        /// The element.
        element: Value,
        /// The read.
        read: Witness,
    },
    /// Two reads of a list are not prefixes of one another: they disagree at `index`.
    IncompatibleOrder {
        /// The list.
        key: Key,
        /// The read.
        read: Witness,
        /// The longest read of the list.
        longest: Witness,
        /// The first index where they differ.
        index: usize,
    },
    /// An append acknowledged before another was invoked comes after it in the list.
    WrongOrder {
        /// The list.
        key: Key,
        /// The append acknowledged first.
        earlier: Witness,
        /// The append invoked later but placed before it.
        later: Witness,
    },
    /// An operation was recorded wrongly; the checks skip it.
    Malformed {
        /// The operation.
        op: Witness,
        /// What is wrong.
        problem: Problem,
    },
}

impl Anomaly {
    /// Its kind.
    pub fn kind(&self) -> AnomalyKind {
        match self {
            Anomaly::NotLinearizable(_) => AnomalyKind::NotLinearizable,
            Anomaly::Inconclusive { .. } => AnomalyKind::Inconclusive,
            Anomaly::LostWrite { .. } => AnomalyKind::LostWrite,
            Anomaly::StaleRead { .. } => AnomalyKind::StaleRead,
            Anomaly::NonMonotonicRead { .. } => AnomalyKind::NonMonotonicRead,
            Anomaly::Phantom { .. } => AnomalyKind::Phantom,
            Anomaly::FutureRead { .. } => AnomalyKind::FutureRead,
            Anomaly::Duplicate { .. } => AnomalyKind::Duplicate,
            Anomaly::IncompatibleOrder { .. } => AnomalyKind::IncompatibleOrder,
            Anomaly::WrongOrder { .. } => AnomalyKind::WrongOrder,
            Anomaly::Malformed { .. } => AnomalyKind::Malformed,
        }
    }

    /// The key it concerns.
    pub fn key(&self) -> &Key {
        match self {
            Anomaly::NotLinearizable(v) => &v.key,
            Anomaly::Malformed { op, .. } => op.op.op.key(),
            Anomaly::Inconclusive { key, .. }
            | Anomaly::LostWrite { key, .. }
            | Anomaly::StaleRead { key, .. }
            | Anomaly::NonMonotonicRead { key, .. }
            | Anomaly::Phantom { key, .. }
            | Anomaly::FutureRead { key, .. }
            | Anomaly::Duplicate { key, .. }
            | Anomaly::IncompatibleOrder { key, .. }
            | Anomaly::WrongOrder { key, .. } => key,
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anomaly::NotLinearizable(v) => write!(f, "{v}"),
            Anomaly::Inconclusive { key, steps } => {
                writeln!(f, "register {key}: linearizability inconclusive after {steps} steps")
            }
            Anomaly::LostWrite { key, element, cause, read } => {
                writeln!(f, "lost write: {key}: the final read lacks {element}")?;
                writeln!(f, "    {cause}\n  before\n    {read}")
            }
            Anomaly::StaleRead { key, element, cause, read } => {
                writeln!(f, "stale read: {key}: a read lacks {element}, acknowledged before it")?;
                writeln!(f, "    {cause}\n  before\n    {read}")
            }
            Anomaly::NonMonotonicRead { key, element, cause, read } => {
                writeln!(f, "non-monotonic read: {key}: a read lacks {element}, read before it")?;
                writeln!(f, "    {cause}\n  before\n    {read}")
            }
            Anomaly::Phantom { key, element, read, attempt } => {
                writeln!(f, "phantom: {key}: {element} was read but never written")?;
                writeln!(f, "    {read}")?;
                match attempt {
                    Some(a) => writeln!(f, "  its write failed\n    {a}"),
                    None => Ok(()),
                }
            }
            Anomaly::FutureRead { key, element, read, write } => {
                writeln!(f, "future read: {key}: {element} was read before it was written")?;
                writeln!(f, "    {read}\n  before\n    {write}")
            }
            Anomaly::Duplicate { key, element, read } => {
                writeln!(f, "duplicate: {key}: {element} was read twice in\n    {read}")
            }
            Anomaly::IncompatibleOrder { key, read, longest, index } => {
                writeln!(f, "incompatible order: {key}: reads differ at index {index}")?;
                writeln!(f, "    {read}\n    {longest}")
            }
            Anomaly::WrongOrder { key, earlier, later } => {
                writeln!(
                    f,
                    "wrong order: {key}: an append acknowledged before another was invoked comes after it"
                )?;
                writeln!(f, "    {earlier}\n  before\n    {later}")
            }
            Anomaly::Malformed { op, problem } => writeln!(f, "malformed operation: {problem}:\n    {op}"),
        }
    }
}

/// What a set check counted for one key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetSummary {
    /// The set.
    pub key: Key,
    /// Adds attempted.
    pub attempted: usize,
    /// Adds acknowledged.
    pub acknowledged: usize,
    /// Adds with an unknown outcome.
    pub unknown: usize,
    /// Ok reads.
    pub reads: usize,
    /// The final read: the last one invoked, if any.
    pub final_read: Option<OpId>,
    /// Elements the final read lacks though they were acknowledged or read before it.
    pub lost: usize,
    /// Elements read that were never written (or whose write failed).
    pub unexpected: usize,
    /// Elements of adds with an unknown outcome that the final read has.
    pub recovered: usize,
}

impl fmt::Display for SetSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "set {}: {} adds ({} ok, {} unknown), {} reads: {} lost, {} unexpected, {} recovered",
            self.key,
            self.attempted,
            self.acknowledged,
            self.unknown,
            self.reads,
            self.lost,
            self.unexpected,
            self.recovered
        )?;
        if self.final_read.is_none() {
            f.write_str(" (no ok read: nothing could be checked)")?;
        }
        Ok(())
    }
}

/// The result of a check. [`Verdict::is_ok`] says whether the history passed; its
/// [`Display`](fmt::Display) is a summary for humans, and a runner saves the history (see
/// [`crate::save_jsonl`]) when it did not pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Keys checked.
    pub keys: usize,
    /// Operations checked.
    pub ops: usize,
    /// The first [`MAX_REPORTED`] anomalies of each kind.
    pub anomalies: Vec<Anomaly>,
    /// All anomalies found, by kind.
    pub counts: BTreeMap<AnomalyKind, u64>,
    /// Per-key counts of the set workload.
    pub sets: Vec<SetSummary>,
}

impl Verdict {
    /// Whether no anomaly was found (nor was any check inconclusive).
    pub fn is_ok(&self) -> bool {
        self.counts.is_empty()
    }

    /// Whether a definite violation was found: an anomaly other than
    /// [`Anomaly::Inconclusive`].
    pub fn has_violation(&self) -> bool {
        self.counts.keys().any(|k| *k != AnomalyKind::Inconclusive)
    }

    /// How many anomalies of `kind` were found.
    pub fn count(&self, kind: AnomalyKind) -> u64 {
        self.counts.get(&kind).copied().unwrap_or(0)
    }

    /// The reported anomalies of `kind`.
    pub fn of_kind(&self, kind: AnomalyKind) -> impl Iterator<Item = &Anomaly> + '_ {
        self.anomalies.iter().filter(move |a| a.kind() == kind)
    }

    /// Adds `other`'s findings to these.
    pub fn merge(&mut self, other: Verdict) {
        self.keys += other.keys;
        self.ops += other.ops;
        for a in other.anomalies {
            let kind = a.kind();
            if self.reported(kind) < MAX_REPORTED {
                self.anomalies.push(a);
            }
        }
        for (kind, n) in other.counts {
            *self.counts.entry(kind).or_default() += n;
        }
        self.sets.extend(other.sets);
    }

    /// Counts an anomaly of `kind`, and keeps the one `make` builds unless enough of its kind
    /// are kept already.
    pub(crate) fn report(&mut self, kind: AnomalyKind, make: impl FnOnce() -> Anomaly) {
        self.tally(kind);
        if self.reported(kind) < MAX_REPORTED {
            let a = make();
            debug_assert_eq!(a.kind(), kind);
            self.anomalies.push(a);
        }
    }

    /// Counts an anomaly of `kind` without keeping it, for when [`Verdict::wants`] says it would
    /// not be.
    pub(crate) fn tally(&mut self, kind: AnomalyKind) {
        *self.counts.entry(kind).or_default() += 1;
    }

    /// Whether another anomaly of `kind` would be kept.
    pub(crate) fn wants(&self, kind: AnomalyKind) -> bool {
        self.reported(kind) < MAX_REPORTED
    }

    fn reported(&self, kind: AnomalyKind) -> usize {
        self.anomalies.iter().filter(|a| a.kind() == kind).count()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ok() {
            writeln!(f, "ok: {} keys, {} operations", self.keys, self.ops)?;
        } else {
            let counts: Vec<String> = self.counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
            writeln!(f, "NOT OK: {} keys, {} operations: {}", self.keys, self.ops, counts.join(", "))?;
            for a in &self.anomalies {
                write!(f, "{a}")?;
            }
            let shown = self.anomalies.len() as u64;
            let total: u64 = self.counts.values().sum();
            if total > shown {
                writeln!(f, "({} more not shown)", total - shown)?;
            }
        }
        for s in &self.sets {
            writeln!(f, "{s}")?;
        }
        Ok(())
    }
}
