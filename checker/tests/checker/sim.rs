//! Simulated correct stores and the histories their clients record: every operation takes
//! effect atomically at a random point between its invocation and its completion, interleaved
//! with the other processes' events, so every generated history is valid.

use std::collections::{BTreeMap, BTreeSet};

use ekv_checker::{History, Key, Op, OpId, Outcome, ProcessId, Value};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A generated event: `slot` numbers the operations in invocation order.
#[derive(Clone, Debug)]
pub enum GenEvent {
    Invoke { slot: usize, process: u64, op: Op },
    Complete { slot: usize, outcome: Outcome },
}

/// A correct store.
pub trait Model {
    /// Applies `op` atomically and returns its ok outcome.
    fn apply(&mut self, op: &Op) -> Outcome;
}

/// Registers: a put sets, a CAS swaps iff the value is expected, and reports what it compared
/// half of the time.
#[derive(Default)]
pub struct Registers {
    pub values: BTreeMap<Key, Value>,
    pub rng_bit: bool,
}

impl Model for Registers {
    fn apply(&mut self, op: &Op) -> Outcome {
        match op {
            Op::Get { key } => Outcome::Read(self.values.get(key).cloned()),
            Op::Put { key, value } => {
                self.values.insert(key.clone(), value.clone());
                Outcome::Written
            }
            Op::Delete { key } => {
                self.values.remove(key);
                Outcome::Written
            }
            Op::Cas { key, expected, new } => {
                let previous = self.values.get(key).cloned();
                let swapped = previous == *expected;
                if swapped {
                    match new {
                        Some(new) => self.values.insert(key.clone(), new.clone()),
                        None => self.values.remove(key),
                    };
                }
                self.rng_bit = !self.rng_bit;
                Outcome::Cas { swapped, previous: self.rng_bit.then_some(previous) }
            }
            other => panic!("not a register operation: {other:?}"),
        }
    }
}

/// Sets; reads return the elements in a shuffled order.
pub struct Sets {
    pub elements: BTreeMap<Key, BTreeSet<Value>>,
    pub rng: ChaCha8Rng,
}

impl Model for Sets {
    fn apply(&mut self, op: &Op) -> Outcome {
        match op {
            Op::Add { key, element } => {
                self.elements.entry(key.clone()).or_default().insert(element.clone());
                Outcome::Written
            }
            Op::ReadSet { key } => {
                let mut read: Vec<Value> = self.elements.get(key).into_iter().flatten().cloned().collect();
                read.shuffle(&mut self.rng);
                Outcome::Elements(read)
            }
            other => panic!("not a set operation: {other:?}"),
        }
    }
}

/// Lists.
#[derive(Default)]
pub struct Lists {
    pub lists: BTreeMap<Key, Vec<Value>>,
}

impl Model for Lists {
    fn apply(&mut self, op: &Op) -> Outcome {
        match op {
            Op::Append { key, element } => {
                self.lists.entry(key.clone()).or_default().push(element.clone());
                Outcome::Written
            }
            Op::ReadList { key } => Outcome::Elements(self.lists.get(key).cloned().unwrap_or_default()),
            other => panic!("not a list operation: {other:?}"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub processes: u64,
    pub ops: usize,
    /// Percent of operations that end `Fail` without taking effect.
    pub failed: u32,
    /// Percent of operations whose outcome is `Unknown` (or that never complete); a third of them
    /// never take effect, a third take effect in their interval, a third at a random later time.
    pub unknown: u32,
}

enum Phase {
    Idle,
    Invoked { slot: usize, op: Op },
    Done { slot: usize, outcome: Option<Outcome> },
}

/// Runs `config.ops` operations from `next_op` against `model`.
pub fn simulate(
    config: SimConfig,
    model: &mut impl Model,
    mut next_op: impl FnMut(&mut ChaCha8Rng) -> Op,
) -> Vec<GenEvent> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut phases: Vec<Phase> = (0..config.processes).map(|_| Phase::Idle).collect();
    // Unknown operations that will take effect at some later time, or never.
    let mut limbo: Vec<Op> = Vec::new();
    let mut events = Vec::new();
    let mut started = 0;
    while started < config.ops || phases.iter().any(|p| !matches!(p, Phase::Idle)) {
        if !limbo.is_empty() && rng.gen_ratio(1, 50) {
            let op = limbo.swap_remove(rng.gen_range(0..limbo.len()));
            model.apply(&op);
        }
        let process = rng.gen_range(0..config.processes);
        let phase = &mut phases[process as usize];
        *phase = match std::mem::replace(phase, Phase::Idle) {
            Phase::Idle if started < config.ops => {
                let op = next_op(&mut rng);
                events.push(GenEvent::Invoke { slot: started, process, op: op.clone() });
                started += 1;
                Phase::Invoked { slot: started - 1, op }
            }
            Phase::Idle => Phase::Idle,
            Phase::Invoked { slot, op } => {
                let outcome = if rng.gen_ratio(config.failed, 100) {
                    Some(Outcome::Fail)
                } else if rng.gen_ratio(config.unknown, 100) {
                    match rng.gen_range(0..3) {
                        0 => {}
                        1 => drop(model.apply(&op)),
                        _ => limbo.push(op),
                    }
                    rng.gen_bool(0.5).then_some(Outcome::Unknown)
                } else {
                    Some(model.apply(&op))
                };
                Phase::Done { slot, outcome }
            }
            Phase::Done { slot, outcome } => {
                if let Some(outcome) = outcome {
                    events.push(GenEvent::Complete { slot, outcome });
                }
                Phase::Idle
            }
        };
    }
    events
}

/// Appends a final read of each key, alone, after everything else.
pub fn final_reads(events: &mut Vec<GenEvent>, model: &mut impl Model, reads: impl IntoIterator<Item = Op>) {
    let first = events.iter().filter(|e| matches!(e, GenEvent::Invoke { .. })).count();
    for (slot, op) in (first..).zip(reads) {
        let outcome = model.apply(&op);
        events.push(GenEvent::Invoke { slot, process: 0, op });
        events.push(GenEvent::Complete { slot, outcome });
    }
}

/// The history of `events`, on a logical clock: one tick per event.
pub fn record(events: &[GenEvent]) -> History {
    let mut h = History::new();
    let mut ids: Vec<OpId> = Vec::new();
    for event in events {
        match event {
            GenEvent::Invoke { slot, process, op } => {
                assert_eq!(*slot, ids.len());
                ids.push(h.invoke(ProcessId(*process), op.clone()));
            }
            GenEvent::Complete { slot, outcome } => h.complete(ids[*slot], outcome.clone()),
        }
    }
    h
}

/// The history of `events` with coarse clock times: consecutive events often share a time,
/// which makes operations that followed each other concurrent (so a valid history stays valid).
pub fn record_coarse(events: &[GenEvent], seed: u64) -> History {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut h = History::new();
    let mut ids: Vec<OpId> = Vec::new();
    let mut now = 1_000_000_000u64;
    for event in events {
        if rng.gen_bool(0.5) {
            now += rng.gen_range(1..1_000);
        }
        match event {
            GenEvent::Invoke { process, op, .. } => {
                ids.push(h.invoke_at(ProcessId(*process), op.clone(), now))
            }
            GenEvent::Complete { slot, outcome } => h.complete_at(ids[*slot], outcome.clone(), now),
        }
    }
    h
}

/// The indices of the completions in `events` whose outcome satisfies `pred`.
pub fn completions(events: &[GenEvent], pred: impl Fn(&Outcome) -> bool) -> Vec<usize> {
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e, GenEvent::Complete { outcome, .. } if pred(outcome)))
        .map(|(i, _)| i)
        .collect()
}

/// The outcome of the completion at `events[i]`, to mutate.
pub fn outcome_mut(events: &mut [GenEvent], i: usize) -> &mut Outcome {
    match &mut events[i] {
        GenEvent::Complete { outcome, .. } => outcome,
        GenEvent::Invoke { .. } => panic!("event {i} is an invocation"),
    }
}

/// The largest number of operations pending at once.
pub fn max_concurrency(h: &History) -> usize {
    let mut changes: Vec<(u64, isize)> = Vec::new();
    for o in h.ops() {
        changes.push((o.invoke, 1));
        changes.extend(o.complete.map(|t| (t, -1)));
    }
    changes.sort_unstable();
    let mut pending = 0;
    changes
        .iter()
        .map(|&(_, change)| {
            pending += change;
            pending as usize
        })
        .max()
        .unwrap_or(0)
}
