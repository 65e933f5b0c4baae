//! Linearizability of registers: [`Op::Get`], [`Op::Put`], [`Op::Delete`] and [`Op::Cas`].
//!
//! Every operation touches one key and keys are independent registers, so a history is
//! linearizable iff the sub-history of every key is (locality, Herlihy & Wing); each key is
//! checked on its own. A key is checked with the Wing & Gong search as improved by Lowe
//! ("just-in-time linearization" with a memo of `(linearized set, register value)` pairs), plus
//! the sound reductions described in `search.rs`. The search is iterative, with an explicit
//! stack, and has a step budget ([`check_with_limit`]).
//!
//! Model: every key starts absent. A get returns the current value, a put sets it, a delete
//! clears it, and a CAS replaces it with `new` iff it equals `expected`; an ok CAS reports
//! whether it swapped and perhaps the value it compared. A CAS that ran and did not swap is
//! ok (`swapped: false`): it observed a value other than `expected`.
//!
//! Outcomes: failed operations did not happen and are dropped. Unknown ones (and those never
//! completed) may take effect at any single point after their invocation, or never: they
//! have no return time, and only the ok operations must be linearized. A get with an unknown
//! outcome constrains nothing and is dropped. Each key is first checked letting unknown
//! operations take effect any number of times, which is cheaper and finds most violations,
//! then, if that passes, at most once.
//!
//! # Complexity
//!
//! Deciding linearizability is NP-complete (Gibbons & Korach), so the worst case is
//! exponential in the number of concurrent operations. In practice a valid history costs
//! about `O(n · c)` steps for `n` operations with `c` of them concurrent, each step `O(c)`
//! plus a memo lookup hashing `O(c / 64)` words; 5 processes × 2,000 operations on a key,
//! some with unknown outcomes, take tens of milliseconds in a release build. Refuting an invalid history costs more, as the search
//! must exhaust the configurations up to the violation; the memo keeps that to the distinct
//! `(linearized set, value)` pairs, which few distinct values (reusing values) make more
//! numerous: unique values make the search easier.

mod search;

use std::collections::{HashMap, HashSet};

use search::{CasResult, Search, SearchOp, Step, ValueId, ABSENT};

use crate::check::partition;
use crate::verdict::{Anomaly, AnomalyKind, Candidate, RegisterViolation, Witness};
use crate::{History, Key, Op, Outcome, Value, Verdict, Workload};

/// The per-key step budget [`check`] uses.
pub const DEFAULT_MAX_STEPS: u64 = 5_000_000;

/// Checks the register operations of `history` for linearizability, with a per-key budget of
/// [`DEFAULT_MAX_STEPS`]. Keys of other workloads are left out.
pub fn check(history: &History) -> Verdict {
    check_with_limit(history, DEFAULT_MAX_STEPS)
}

/// As [`check`], with a budget of `max_steps` search steps per key; a key whose search runs
/// out is reported [`Anomaly::Inconclusive`].
pub fn check_with_limit(history: &History, max_steps: u64) -> Verdict {
    let mut verdict = Verdict::default();
    for (key, indices) in partition(history, Workload::Register, &mut verdict) {
        match check_key(history, key, &indices, max_steps) {
            KeyVerdict::Linearizable => {}
            KeyVerdict::Violation(v) => {
                verdict.report(AnomalyKind::NotLinearizable, || Anomaly::NotLinearizable(v));
            }
            KeyVerdict::Inconclusive(steps) => {
                verdict
                    .report(AnomalyKind::Inconclusive, || Anomaly::Inconclusive { key: key.clone(), steps });
            }
        }
    }
    verdict
}

enum KeyVerdict {
    Linearizable,
    Violation(Box<RegisterViolation>),
    Inconclusive(u64),
}

/// Interns a key's values as [`ValueId`]s.
#[derive(Default)]
struct Interner<'a> {
    ids: HashMap<&'a [u8], ValueId>,
    values: Vec<&'a [u8]>,
}

impl<'a> Interner<'a> {
    fn id(&mut self, value: Option<&'a Value>) -> ValueId {
        let Some(value) = value else { return ABSENT };
        *self.ids.entry(value.as_bytes()).or_insert_with(|| {
            self.values.push(value.as_bytes());
            self.values.len() as ValueId
        })
    }

    fn value(&self, id: ValueId) -> Option<Value> {
        id.checked_sub(1).map(|i| Value::from(self.values[i as usize]))
    }
}

/// Checks one key's operations, `indices` into `history`, all well-formed register operations.
fn check_key(history: &History, key: &Key, indices: &[usize], max_steps: u64) -> KeyVerdict {
    let mut values = Interner::default();
    let mut ops = Vec::new();
    let (mut failed, mut unknown) = (0, 0);
    for &i in indices {
        let o = &history.ops()[i];
        let ret = match &o.outcome {
            Outcome::Fail => {
                failed += 1;
                continue;
            }
            Outcome::Unknown => {
                unknown += 1;
                None
            }
            _ => Some(o.complete.expect("partition leaves out ok operations without a completion")),
        };
        let step = match (&o.op, &o.outcome) {
            // A get with an unknown outcome constrains nothing.
            (Op::Get { .. }, Outcome::Unknown) => continue,
            (Op::Get { .. }, Outcome::Read(v)) => Step::Read(values.id(v.as_ref())),
            (Op::Put { value, .. }, _) => Step::Write(values.id(Some(value))),
            (Op::Delete { .. }, _) => Step::Write(ABSENT),
            (Op::Cas { expected, new, .. }, outcome) => Step::Cas {
                expected: values.id(expected.as_ref()),
                new: values.id(new.as_ref()),
                result: match outcome {
                    Outcome::Cas { swapped, previous } => Some(CasResult {
                        swapped: *swapped,
                        previous: previous.as_ref().map(|p| values.id(p.as_ref())),
                    }),
                    _ => None,
                },
            },
            (op, outcome) => unreachable!("partition leaves out {outcome:?} for {op:?}"),
        };
        ops.push(SearchOp { record: i, step, call: o.invoke, ret, slot: 0 });
    }
    // Unknown operations invoked after every ok one returned cannot matter.
    let last_return = ops.iter().filter_map(|o| o.ret).max();
    ops.retain(|o| o.known() || last_return.is_some_and(|t| o.call <= t));
    // Nor can one whose value nothing observes: the search only tries an unknown operation
    // whose new value an ok get or CAS accepts or an unknown CAS expects (see `Search`). This
    // drops, e.g., timed-out puts of unique values never read, which would otherwise stay
    // pending, and be looked at, in every step after their invocation.
    if let Some(observable) = observable_values(&ops) {
        ops.retain(|o| {
            o.known()
                || match o.step {
                    Step::Write(v) | Step::Cas { new: v, .. } => observable.contains(&v),
                    Step::Read(_) => true,
                }
        });
    }
    // In invocation order, the linearized sets the memo keys on are mostly a prefix.
    ops.sort_by_key(|o| (o.call, o.record));
    let mut slots = [0, 0];
    for o in &mut ops {
        o.slot = slots[usize::from(o.known())];
        slots[usize::from(o.known())] += 1;
    }

    // First let unknown operations take effect any number of times. That search is cheaper (the
    // configurations do not record which took effect) and more permissive, so a failure is a
    // violation. Then, if there are unknown operations, search again with each taking effect at
    // most once.
    let mut steps = 0;
    for once in [false, true] {
        if once && slots[0] == 0 {
            break;
        }
        let mut search = Search::new(&ops, once);
        let found = search.run(max_steps - steps);
        steps += search.steps;
        match found {
            Some(true) => {}
            Some(false) => {
                let counts = Counts { known: slots[1], unknown, failed, relaxed: !once && slots[0] > 0 };
                return KeyVerdict::Violation(explain(history, key, &ops, &values, &search.deepest, counts));
            }
            None => return KeyVerdict::Inconclusive(steps),
        }
    }
    KeyVerdict::Linearizable
}

/// The values some operation may observe the register holding and so tell an unknown write of
/// them from its absence: those ok gets return, ok CASes expect (if they swapped) or report,
/// and unknown CASes expect. `None` if any value can be observed: an ok CAS that did not swap
/// and did not report the value accepts all but one.
fn observable_values(ops: &[SearchOp]) -> Option<HashSet<ValueId>> {
    let mut values = HashSet::new();
    for o in ops {
        match o.step {
            Step::Read(v) => {
                values.insert(v);
            }
            Step::Write(_) => {}
            Step::Cas { expected, result: None, .. } => {
                values.insert(expected);
            }
            Step::Cas { expected, result: Some(r), .. } => {
                if r.swapped {
                    values.insert(expected);
                }
                match r.previous {
                    Some(p) => {
                        values.insert(p);
                    }
                    None if !r.swapped => return None,
                    None => {}
                }
            }
        }
    }
    Some(values)
}

/// What a violation's explanation says about the operations of its key.
struct Counts {
    known: usize,
    unknown: usize,
    failed: usize,
    relaxed: bool,
}

fn explain(
    history: &History,
    key: &Key,
    ops: &[SearchOp],
    values: &Interner<'_>,
    deepest: &search::Deepest,
    Counts { known, unknown, failed, relaxed }: Counts,
) -> Box<RegisterViolation> {
    /// How much of the longest linearizable prefix to show.
    const TAIL: usize = 10;
    let witness = |op: usize| Witness::new(history, ops[op].record);
    let order = &deepest.order;
    Box::new(RegisterViolation {
        key: key.clone(),
        known,
        unknown,
        failed,
        relaxed,
        prefix_len: order.len(),
        prefix_tail: order[order.len().saturating_sub(TAIL)..].iter().map(|&op| witness(op)).collect(),
        value_after: values.value(deepest.state),
        blocker: deepest.blocker.map(witness),
        candidates: deepest
            .candidates
            .iter()
            .map(|&op| Candidate { op: witness(op), consistent: ops[op].step.apply(deepest.state).is_some() })
            .collect(),
    })
}
