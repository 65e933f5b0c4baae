//! The set workload: [`Op::Add`] of elements unique per key, and [`Op::ReadSet`].
//!
//! Per key:
//!
//! 1. Each element read must have been added by an add that did not fail ([`Anomaly::Phantom`])
//!    and was invoked before the read completed ([`Anomaly::FutureRead`]), and appear once
//!    per read ([`Anomaly::Duplicate`]).
//! 2. An element is *visible* from the earlier of its add's acknowledgement and the completion
//!    of the first read that returned it; an add with an unknown outcome becomes visible only
//!    by being read. Sets only grow, so every read invoked after an element became visible
//!    must return it.
//! 3. The final read (the last invoked) must return every element visible before it was
//!    invoked; each one it lacks is an [`Anomaly::LostWrite`]. An earlier read that lacks one
//!    is an [`Anomaly::StaleRead`] if an acknowledged element is missing, else an
//!    [`Anomaly::NonMonotonicRead`]: one anomaly per read.
//!
//! Elements of adds with an unknown outcome may or may not appear; those in the final read are
//! counted as recovered ([`SetSummary::recovered`]).
//!
//! # Complexity
//!
//! `O(m + n log n)` for `n` operations whose reads return `m` elements in all: reads are
//! checked by counting their elements visible before their invocation against a sorted list
//! of visibility times, and only a read that falls short is searched for a missing element.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use crate::check::{elements, partition};
use crate::verdict::{Anomaly, AnomalyKind, Problem, SetSummary, Witness};
use crate::{History, Key, Op, OpId, Outcome, Value, Verdict, Workload};

/// Checks the set operations of `history`; keys of other workloads are left out. Each key's
/// counts are in [`Verdict::sets`].
pub fn check(history: &History) -> Verdict {
    let mut verdict = Verdict::default();
    for (key, indices) in partition(history, Workload::Set, &mut verdict) {
        let summary = check_key(history, key, &indices, &mut verdict);
        verdict.sets.push(summary);
    }
    verdict
}

/// When an element became visible, and the operation (an add or a read) that made it so.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Visible {
    at: u64,
    by: usize,
}

/// When an element became visible by acknowledgement, and by being read.
#[derive(Clone, Copy, Default)]
struct Visibility {
    acked: Option<Visible>,
    read: Option<Visible>,
}

impl Visibility {
    fn first(self) -> Option<Visible> {
        [self.acked, self.read].into_iter().flatten().min()
    }
}

fn check_key(history: &History, key: &Key, indices: &[usize], verdict: &mut Verdict) -> SetSummary {
    let ops = history.ops();
    let mut summary = SetSummary { key: key.clone(), ..SetSummary::default() };
    let mut adds: HashMap<&Value, usize> = HashMap::new();
    let mut reads: Vec<usize> = Vec::new();
    for &i in indices {
        match (&ops[i].op, &ops[i].outcome) {
            (Op::Add { element, .. }, outcome) => {
                summary.attempted += 1;
                summary.acknowledged += usize::from(outcome.is_ok());
                summary.unknown += usize::from(*outcome == Outcome::Unknown);
                // The first add of an element counts; later ones are harness bugs.
                match adds.entry(element) {
                    Entry::Vacant(v) => {
                        v.insert(i);
                    }
                    Entry::Occupied(_) => verdict.report(AnomalyKind::Malformed, || Anomaly::Malformed {
                        op: Witness::new(history, i),
                        problem: Problem::DuplicateElement,
                    }),
                }
            }
            (Op::ReadSet { .. }, Outcome::Elements(_)) => reads.push(i),
            _ => {}
        }
    }
    summary.reads = reads.len();
    let read_elements = |r: usize| elements(&ops[r].outcome).expect("reads are ok");

    // Step 1, and visibility by acknowledgement and by reads.
    let mut visible: HashMap<&Value, Visibility> = HashMap::new();
    for (&element, &a) in &adds {
        if let Some(t) = ops[a].returned() {
            visible.entry(element).or_default().acked = Some(Visible { at: t, by: a });
        }
    }
    let mut unexpected: HashSet<&Value> = HashSet::new();
    // Each read's distinct elements that were added (the others are reported here).
    let mut distinct: Vec<Vec<&Value>> = Vec::with_capacity(reads.len());
    for &r in &reads {
        let completed = ops[r].complete.expect("ok reads have completed");
        let mut seen = HashSet::new();
        let mut added = Vec::new();
        for element in read_elements(r) {
            if !seen.insert(element) {
                verdict.report(AnomalyKind::Duplicate, || Anomaly::Duplicate {
                    key: key.clone(),
                    element: element.clone(),
                    read: Witness::new(history, r),
                });
                continue;
            }
            match adds.get(element) {
                Some(&a) if ops[a].outcome != Outcome::Fail => {
                    if ops[a].invoke > completed {
                        verdict.report(AnomalyKind::FutureRead, || Anomaly::FutureRead {
                            key: key.clone(),
                            element: element.clone(),
                            read: Witness::new(history, r),
                            write: Witness::new(history, a),
                        });
                    }
                    let now = Visible { at: completed, by: r };
                    let read = &mut visible.entry(element).or_default().read;
                    if read.is_none_or(|v| now < v) {
                        *read = Some(now);
                    }
                    added.push(element);
                }
                attempt => {
                    unexpected.insert(element);
                    verdict.report(AnomalyKind::Phantom, || Anomaly::Phantom {
                        key: key.clone(),
                        element: element.clone(),
                        read: Witness::new(history, r),
                        attempt: attempt.map(|&a| Witness::new(history, a)),
                    });
                }
            }
        }
        distinct.push(added);
    }
    summary.unexpected = unexpected.len();

    let Some(last) = (0..reads.len()).max_by_key(|&j| (ops[reads[j]].invoke, reads[j])) else {
        return summary;
    };
    summary.final_read = Some(OpId(reads[last]));

    // Step 3 for the final read: every element it lacks is lost.
    let in_final: HashSet<&Value> = distinct[last].iter().copied().collect();
    let invoked = ops[reads[last]].invoke;
    let mut lost: Vec<(Visible, &Value)> = visible
        .iter()
        .filter(|(e, _)| !in_final.contains(*e))
        .filter_map(|(e, v)| v.first().filter(|first| first.at < invoked).map(|first| (first, *e)))
        .collect();
    lost.sort_unstable();
    summary.lost = lost.len();
    for (v, element) in lost {
        verdict.report(AnomalyKind::LostWrite, || Anomaly::LostWrite {
            key: key.clone(),
            element: element.clone(),
            cause: Witness::new(history, v.by),
            read: Witness::new(history, reads[last]),
        });
    }
    summary.recovered =
        in_final.iter().filter(|e| adds.get(*e).is_some_and(|&a| ops[a].outcome == Outcome::Unknown)).count();

    // Step 3 for the other reads: count what they have against what they need.
    let by_time = |pick: fn(Visibility) -> Option<Visible>| {
        let mut list: Vec<(u64, usize, &Value)> =
            visible.iter().filter_map(|(e, v)| pick(*v).map(|v| (v.at, v.by, *e))).collect();
        list.sort_unstable();
        list
    };
    let acked = by_time(|v| v.acked);
    let either = by_time(Visibility::first);
    let visible_at = |e: &Value, pick_ack: bool| {
        let v = visible[e];
        if pick_ack { v.acked } else { v.first() }.map(|v| v.at)
    };
    for (j, &r) in reads.iter().enumerate() {
        if j == last {
            continue;
        }
        let invoked = ops[r].invoke;
        let count_before = |pick_ack| {
            distinct[j].iter().filter(|e| visible_at(e, pick_ack).is_some_and(|t| t < invoked)).count()
        };
        let needed = |list: &[(u64, usize, &Value)]| list.partition_point(|(t, ..)| *t < invoked);
        let (kind, list) = if count_before(true) < needed(&acked) {
            (AnomalyKind::StaleRead, &acked)
        } else if count_before(false) < needed(&either) {
            (AnomalyKind::NonMonotonicRead, &either)
        } else {
            continue;
        };
        if !verdict.wants(kind) {
            verdict.tally(kind);
            continue;
        }
        let have: HashSet<&Value> = distinct[j].iter().copied().collect();
        let &(_, by, element) = list[..needed(list)]
            .iter()
            .find(|(_, _, e)| !have.contains(e))
            .expect("the count says one is missing");
        let (key, element, cause, read) =
            (key.clone(), element.clone(), Witness::new(history, by), Witness::new(history, r));
        verdict.report(kind, || match kind {
            AnomalyKind::StaleRead => Anomaly::StaleRead { key, element, cause, read },
            _ => Anomaly::NonMonotonicRead { key, element, cause, read },
        });
    }
    summary
}
