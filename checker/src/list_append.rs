//! The list-append workload: [`Op::Append`] of elements unique per key, and [`Op::ReadList`].
//!
//! A list only grows at its end, so in a correct store every read of a key is a prefix of the
//! longest one. Per key, with `L` the longest read:
//!
//! 1. Every read must be a prefix of `L` ([`Anomaly::IncompatibleOrder`]). The other checks
//!    take positions from `L`, and from another read only as far as it agrees with `L`.
//! 2. No read may return an element twice ([`Anomaly::Duplicate`]), one never appended or whose
//!    append failed ([`Anomaly::Phantom`]), or one whose append was invoked after the read
//!    completed ([`Anomaly::FutureRead`]).
//! 3. The element at position `p` of `L` is *visible* from the earlier of its append's
//!    acknowledgement and the completion of the first read that reached `p`. A read invoked
//!    after that must be longer than `p`. If the final read (the last invoked) is not, the
//!    element is an [`Anomaly::LostWrite`], as is an acknowledged append absent from `L`
//!    acknowledged before the final read; another read that is too short is an
//!    [`Anomaly::StaleRead`] (an acknowledged append is missing) or an
//!    [`Anomaly::NonMonotonicRead`] (it is shorter than a read that completed before it was
//!    invoked), one anomaly per read.
//! 4. An append acknowledged before another was invoked must come before it in `L`
//!    ([`Anomaly::WrongOrder`]).
//!
//! # Complexity
//!
//! `O(m + n log n)` for `n` operations whose reads return `m` elements in all (comparing
//! reads with `L` is linear in their length): the minimum length each read needs, the maximum
//! position visible before its invocation, comes from one sweep over the visibility times and
//! the reads, both sorted by time; so does step 4, over the appends. A million operations take
//! about a second in a release build.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use crate::check::{elements, partition};
use crate::verdict::{Anomaly, AnomalyKind, Problem, Witness};
use crate::{History, Key, Op, Outcome, Value, Verdict, Workload};

/// Checks the list-append operations of `history`; keys of other workloads are left out.
pub fn check(history: &History) -> Verdict {
    let mut verdict = Verdict::default();
    for (key, indices) in partition(history, Workload::ListAppend, &mut verdict) {
        check_key(history, key, &indices, &mut verdict);
    }
    verdict
}

/// When an element became visible, and the operation (an append or a read) that made it so.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Visible {
    at: u64,
    by: usize,
}

fn check_key(history: &History, key: &Key, indices: &[usize], verdict: &mut Verdict) {
    let ops = history.ops();
    let mut appends: HashMap<&Value, usize> = HashMap::with_capacity(indices.len());
    let mut reads: Vec<usize> = Vec::new();
    for &i in indices {
        match (&ops[i].op, &ops[i].outcome) {
            (Op::Append { element, .. }, _) => match appends.entry(element) {
                Entry::Vacant(v) => {
                    v.insert(i);
                }
                Entry::Occupied(_) => verdict.report(AnomalyKind::Malformed, || Anomaly::Malformed {
                    op: Witness::new(history, i),
                    problem: Problem::DuplicateElement,
                }),
            },
            (Op::ReadList { .. }, Outcome::Elements(_)) => reads.push(i),
            _ => {}
        }
    }
    let Some(&longest) = reads.iter().max_by_key(|&&r| (list(history, r).len(), Reverse(r))) else { return };
    let l = list(history, longest);
    let completed = |r: usize| ops[r].complete.expect("ok reads have completed");
    // The append of an element, unless it failed.
    let append_of = |e: &Value| appends.get(e).copied().filter(|&a| ops[a].outcome != Outcome::Fail);

    // Positions in `L`; `valid[p]` is whether `L[p]` is an element the checks of step 3 and 4
    // apply to, i.e. neither a duplicate nor a phantom.
    let mut pos: HashMap<&Value, usize> = HashMap::with_capacity(l.len());
    let mut valid = vec![true; l.len()];
    for (p, e) in l.iter().enumerate() {
        match pos.entry(e) {
            Entry::Vacant(v) => {
                v.insert(p);
            }
            Entry::Occupied(_) => {
                valid[p] = false;
                verdict.report(AnomalyKind::Duplicate, || Anomaly::Duplicate {
                    key: key.clone(),
                    element: e.clone(),
                    read: Witness::new(history, longest),
                });
            }
        }
    }

    // Step 1: how far each read agrees with `L`; step 2 for what lies beyond.
    let mut agree = Vec::with_capacity(reads.len());
    for &r in &reads {
        let xs = list(history, r);
        let n = xs.iter().zip(l).position(|(x, y)| x != y).unwrap_or(xs.len());
        agree.push(n);
        if n == xs.len() {
            continue;
        }
        verdict.report(AnomalyKind::IncompatibleOrder, || Anomaly::IncompatibleOrder {
            key: key.clone(),
            read: Witness::new(history, r),
            longest: Witness::new(history, longest),
            index: n,
        });
        let mut seen: HashSet<&Value> = xs[..n].iter().collect();
        for e in &xs[n..] {
            if !seen.insert(e) {
                verdict.report(AnomalyKind::Duplicate, || Anomaly::Duplicate {
                    key: key.clone(),
                    element: e.clone(),
                    read: Witness::new(history, r),
                });
            } else if let Some(a) = append_of(e) {
                if ops[a].invoke > completed(r) {
                    verdict.report(AnomalyKind::FutureRead, || Anomaly::FutureRead {
                        key: key.clone(),
                        element: e.clone(),
                        read: Witness::new(history, r),
                        write: Witness::new(history, a),
                    });
                }
            } else {
                verdict.report(AnomalyKind::Phantom, || Anomaly::Phantom {
                    key: key.clone(),
                    element: e.clone(),
                    read: Witness::new(history, r),
                    attempt: appends.get(e).map(|&a| Witness::new(history, a)),
                });
            }
        }
    }

    // The first read to reach each position of `L`: a sweep down the positions over the reads by
    // decreasing agreement.
    let mut by_agree: Vec<usize> = (0..reads.len()).collect();
    by_agree.sort_unstable_by_key(|&j| Reverse(agree[j]));
    let mut first_seen = vec![Visible { at: u64::MAX, by: longest }; l.len()];
    let (mut k, mut min) = (0, Visible { at: u64::MAX, by: longest });
    for p in (0..l.len()).rev() {
        while k < by_agree.len() && agree[by_agree[k]] > p {
            let r = reads[by_agree[k]];
            min = min.min(Visible { at: completed(r), by: r });
            k += 1;
        }
        first_seen[p] = min;
    }

    // Step 2 for `L`, and visibility by acknowledgement.
    let mut acked: Vec<Option<Visible>> = vec![None; l.len()];
    for (p, e) in l.iter().enumerate() {
        if !valid[p] {
            continue;
        }
        let Some(a) = append_of(e) else {
            valid[p] = false;
            verdict.report(AnomalyKind::Phantom, || Anomaly::Phantom {
                key: key.clone(),
                element: e.clone(),
                read: Witness::new(history, first_seen[p].by),
                attempt: appends.get(e).map(|&a| Witness::new(history, a)),
            });
            continue;
        };
        if ops[a].invoke > first_seen[p].at {
            verdict.report(AnomalyKind::FutureRead, || Anomaly::FutureRead {
                key: key.clone(),
                element: e.clone(),
                read: Witness::new(history, first_seen[p].by),
                write: Witness::new(history, a),
            });
        }
        acked[p] = ops[a].returned().map(|at| Visible { at, by: a });
    }
    let visible = |p: usize| acked[p].map_or(first_seen[p], |a| a.min(first_seen[p]));

    // Step 3 for the final read: every element visible before it that it lacks is lost.
    let last = (0..reads.len()).max_by_key(|&j| (ops[reads[j]].invoke, reads[j])).expect("there are reads");
    let (final_read, invoked) = (reads[last], ops[reads[last]].invoke);
    let final_list = list(history, final_read);
    // Only needed where the final read disagrees with `L`: it may then hold any element.
    let beyond: HashSet<&Value> = final_list[agree[last]..].iter().collect();
    let lost = |element: &Value, cause: usize, verdict: &mut Verdict| {
        verdict.report(AnomalyKind::LostWrite, || Anomaly::LostWrite {
            key: key.clone(),
            element: element.clone(),
            cause: Witness::new(history, cause),
            read: Witness::new(history, final_read),
        });
    };
    for p in agree[last]..l.len() {
        if valid[p] && visible(p).at < invoked && !beyond.contains(&l[p]) {
            lost(&l[p], visible(p).by, verdict);
        }
    }
    let mut absent: Vec<(u64, usize, &Value)> = appends
        .iter()
        .filter(|(e, _)| !pos.contains_key(*e) && !beyond.contains(*e))
        .filter_map(|(e, &a)| ops[a].returned().filter(|&t| t < invoked).map(|t| (t, a, *e)))
        .collect();
    absent.sort_unstable();
    for (_, a, element) in absent {
        lost(element, a, verdict);
    }

    // Step 3 for the other reads, by invocation, sweeping the visibility times: the largest
    // position acknowledged, and read, before each invocation.
    let mut ack_times: Vec<(u64, usize)> =
        (0..l.len()).filter(|&p| valid[p]).filter_map(|p| acked[p].map(|v| (v.at, p))).collect();
    ack_times.sort_unstable();
    let mut seen_times: Vec<(u64, usize)> =
        (0..l.len()).filter(|&p| valid[p]).map(|p| (first_seen[p].at, p)).collect();
    seen_times.sort_unstable();
    let mut by_invoke: Vec<usize> = (0..reads.len()).filter(|&j| j != last).collect();
    by_invoke.sort_unstable_by_key(|&j| ops[reads[j]].invoke);
    let mut acks = Sweep::new(&ack_times);
    let mut seens = Sweep::new(&seen_times);
    for j in by_invoke {
        let r = reads[j];
        let invoked = ops[r].invoke;
        let (acked_max, seen_max) = (acks.max_before(invoked), seens.max_before(invoked));
        let (kind, p, cause) = match (acked_max, seen_max) {
            (Some(p), _) if p >= agree[j] => (AnomalyKind::StaleRead, p, acked[p].expect("acknowledged").by),
            (_, Some(p)) if p >= agree[j] => (AnomalyKind::NonMonotonicRead, p, first_seen[p].by),
            _ => continue,
        };
        let (key, element, cause, read) =
            (key.clone(), l[p].clone(), Witness::new(history, cause), Witness::new(history, r));
        verdict.report(kind, || match kind {
            AnomalyKind::StaleRead => Anomaly::StaleRead { key, element, cause, read },
            _ => Anomaly::NonMonotonicRead { key, element, cause, read },
        });
    }

    // Step 4: each append of `L` must come after those acknowledged before its invocation.
    let mut in_list: Vec<(u64, usize)> =
        (0..l.len()).filter(|&p| valid[p]).map(|p| (ops[appends[&l[p]]].invoke, p)).collect();
    in_list.sort_unstable();
    let mut acks = Sweep::new(&ack_times);
    for (invoked, p) in in_list {
        let Some(earlier) = acks.max_before(invoked).filter(|&q| q > p) else { continue };
        verdict.report(AnomalyKind::WrongOrder, || Anomaly::WrongOrder {
            key: key.clone(),
            earlier: Witness::new(history, appends[&l[earlier]]),
            later: Witness::new(history, appends[&l[p]]),
        });
    }
}

/// The elements an ok read returned.
fn list(history: &History, r: usize) -> &[Value] {
    elements(&history.ops()[r].outcome).expect("reads are ok")
}

/// The largest position among `(time, position)` events before a time, for times asked in
/// nondecreasing order.
struct Sweep<'a> {
    events: &'a [(u64, usize)],
    next: usize,
    max: Option<usize>,
}

impl<'a> Sweep<'a> {
    /// `events` sorted by time.
    fn new(events: &'a [(u64, usize)]) -> Self {
        Sweep { events, next: 0, max: None }
    }

    /// The largest position of the events strictly before `time`.
    fn max_before(&mut self, time: u64) -> Option<usize> {
        while let Some(&(_, p)) = self.events.get(self.next).filter(|(t, _)| *t < time) {
            self.max = self.max.max(Some(p));
            self.next += 1;
        }
        self.max
    }
}
