//! The entry point over all workloads, and the partition of a history by key that each
//! workload's check starts from.

use std::collections::BTreeMap;

use crate::verdict::{Anomaly, AnomalyKind, Problem, Witness};
use crate::{list_append, register, set, History, Key, Outcome, Verdict, Workload};

/// Checks every key of `history` with the check of its workload: [`register::check`],
/// [`set::check`] and [`list_append::check`]. A key used by more than one workload is a
/// harness bug, reported as [`Problem::MixedWorkloads`] (each workload's operations on it are
/// still checked on their own).
pub fn check(history: &History) -> Verdict {
    let mut verdict = register::check(history);
    verdict.merge(set::check(history));
    verdict.merge(list_append::check(history));
    let mut first: BTreeMap<&Key, Workload> = BTreeMap::new();
    for (i, o) in history.ops().iter().enumerate() {
        let w = *first.entry(o.op.key()).or_insert(o.op.workload());
        if w != o.op.workload() {
            verdict.report(AnomalyKind::Malformed, || Anomaly::Malformed {
                op: Witness::new(history, i),
                problem: Problem::MixedWorkloads,
            });
        }
    }
    verdict
}

/// The indices of the operations of `workload` by key, in index order, leaving out (and
/// reporting in `verdict`) malformed ones; counts the keys and operations in `verdict`.
pub(crate) fn partition<'h>(
    history: &'h History,
    workload: Workload,
    verdict: &mut Verdict,
) -> BTreeMap<&'h Key, Vec<usize>> {
    let mut by_key: BTreeMap<&Key, Vec<usize>> = BTreeMap::new();
    for (i, o) in history.ops().iter().enumerate() {
        if o.op.workload() != workload {
            continue;
        }
        let problem = if !o.outcome.fits(&o.op) {
            Some(Problem::OutcomeMismatch)
        } else if o.complete.is_some_and(|t| t < o.invoke) {
            Some(Problem::CompletedBeforeInvoked)
        } else if o.outcome.is_ok() && o.complete.is_none() {
            Some(Problem::OkWithoutCompletion)
        } else {
            None
        };
        if let Some(problem) = problem {
            verdict.report(AnomalyKind::Malformed, || Anomaly::Malformed {
                op: Witness::new(history, i),
                problem,
            });
            continue;
        }
        by_key.entry(o.op.key()).or_default().push(i);
        verdict.ops += 1;
    }
    verdict.keys += by_key.len();
    by_key
}

/// A read's elements, if `outcome` is an ok read.
pub(crate) fn elements(outcome: &Outcome) -> Option<&[crate::Value]> {
    match outcome {
        Outcome::Elements(e) => Some(e),
        _ => None,
    }
}
