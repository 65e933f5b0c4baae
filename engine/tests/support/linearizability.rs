//! A per-key linearizability checker for a register-per-key key-value store.
//!
//! Tests record a [`History`] of invocations and completions (in real-time order, using a logical
//! clock) and call [`check`]. Every operation touches exactly one key and the keys are independent
//! registers, so the history is linearizable if and only if the sub-history of every key is
//! (P-compositionality, Horn & Kroening). Each key is checked with the Wing & Gong search as
//! improved by Lowe ("just-in-time linearization" with a memo of `(linearized set, model state)`
//! pairs), the algorithm Porcupine uses, plus a few sound reductions described at `Search`. The
//! search is iterative, with an explicit stack, and has a step budget ([`check_with_limit`]).
//!
//! Valid histories are accepted in time roughly linear in their length. Refuting an invalid one
//! can take exponential time in the worst case; in practice a key with 2,000 operations from 10
//! concurrent clients, some with unknown outcomes, is refuted within the default budget. Fewer
//! distinct values (e.g. reusing a few values for puts) make the search harder, unique values
//! make it easier.
//!
//! Model: every key starts absent (`None`). `Get` returns the current value, `Put` sets it,
//! `Delete` clears it, and `Cas` replaces it with `new` (`None` deletes) iff it equals `expected`;
//! a `Cas` reports whether it succeeded and the value that was current at its linearization point
//! (which, for a success, is `expected`).
//!
//! Outcomes: `Failed` operations definitely did not happen and are ignored. `Unknown` operations
//! (and operations that were never completed) may take effect at any single point after their
//! invocation, or never: they have no return time, and the search only has to linearize the
//! operations with a known outcome. A `Get` with an unknown outcome constrains nothing and is
//! ignored. Each key is first checked letting unknown operations take effect any number of times,
//! which is cheaper and finds most violations, then, if that succeeds, at most once.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::{self, Write as _};

pub type Key = Vec<u8>;
pub type Value = Vec<u8>;

/// The per-key step budget [`check`] uses.
pub const DEFAULT_MAX_STEPS: u64 = 5_000_000;

/// An operation on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Returns `Outcome::Get`.
    Get { key: Key },
    /// Returns `Outcome::Written`.
    Put { key: Key, value: Value },
    /// Returns `Outcome::Written`.
    Delete { key: Key },
    /// Replaces the value with `new` (`None` deletes) iff it is `expected`. Returns `Outcome::Cas`.
    Cas { key: Key, expected: Option<Value>, new: Option<Value> },
}

impl Op {
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Get { key } | Op::Put { key, .. } | Op::Delete { key } | Op::Cas { key, .. } => key,
        }
    }
}

/// How an operation ended, as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The value a `Get` returned.
    Get(Option<Value>),
    /// A `Put` or `Delete` was acknowledged.
    Written,
    /// A `Cas` result; `previous` is the value current at its linearization point.
    Cas { succeeded: bool, previous: Option<Value> },
    /// The operation definitely did not take effect (e.g. a typed error before proposing).
    Failed,
    /// The operation may or may not take effect, at any time after its invocation (timeout, crash).
    Unknown,
}

impl Outcome {
    /// Whether `self` is a possible outcome of `op` at all.
    fn fits(&self, op: &Op) -> bool {
        matches!(
            (op, self),
            (_, Outcome::Failed | Outcome::Unknown)
                | (Op::Get { .. }, Outcome::Get(_))
                | (Op::Put { .. } | Op::Delete { .. }, Outcome::Written)
                | (Op::Cas { .. }, Outcome::Cas { .. })
        )
    }
}

/// Identifies an invoked operation within its [`History`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(usize);

impl OpId {
    pub fn index(self) -> usize {
        self.0
    }
}

#[derive(Clone, Debug)]
struct Record {
    client: u64,
    op: Op,
    invoked_at: u64,
    completion: Option<(u64, Outcome)>,
}

#[derive(Clone, Copy, Debug)]
enum Event {
    Invoke(OpId),
    Complete(OpId),
}

/// A recorder of invocations and completions. Each `invoke` and `complete` call takes the next
/// logical timestamp, so the order of calls is the real-time order of the events.
#[derive(Clone, Debug, Default)]
pub struct History {
    records: Vec<Record>,
    /// All events; an event's index is its timestamp.
    events: Vec<Event>,
}

impl History {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the invocation of `op` by `client`.
    pub fn invoke(&mut self, client: u64, op: Op) -> OpId {
        let id = OpId(self.records.len());
        self.records.push(Record { client, op, invoked_at: self.events.len() as u64, completion: None });
        self.events.push(Event::Invoke(id));
        id
    }

    /// Records the completion of `id`.
    ///
    /// # Panics
    ///
    /// If `id` is not from this history, was already completed, or `outcome` cannot be an outcome
    /// of its operation (e.g. `Written` for a `Get`): those are bugs in the test harness.
    pub fn complete(&mut self, id: OpId, outcome: Outcome) {
        let at = self.events.len() as u64;
        let record = self.records.get_mut(id.0).unwrap_or_else(|| panic!("{id:?} is not in this history"));
        assert!(record.completion.is_none(), "{id:?} completed twice");
        assert!(outcome.fits(&record.op), "{outcome:?} is not an outcome of {:?}", record.op);
        record.completion = Some((at, outcome));
        self.events.push(Event::Complete(id));
    }

    /// The number of operations invoked.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The number of events (invocations and completions) recorded.
    pub fn events_len(&self) -> usize {
        self.events.len()
    }

    /// All operations, with their outcome (`Unknown` if never completed), in invocation order.
    pub fn ops(&self) -> Vec<KeyedOp> {
        (0..self.records.len()).map(|i| self.keyed_op(i)).collect()
    }

    fn keyed_op(&self, index: usize) -> KeyedOp {
        let r = &self.records[index];
        KeyedOp {
            id: OpId(index),
            client: r.client,
            invoked_at: r.invoked_at,
            completed_at: r.completion.as_ref().map(|(at, _)| *at),
            op: r.op.clone(),
            outcome: r.completion.as_ref().map_or(Outcome::Unknown, |(_, o)| o.clone()),
        }
    }

    /// The events as JSON, one object per line in timestamp order, keys and values hex-encoded;
    /// for saving a history next to a failing test's output.
    pub fn to_json_lines(&self) -> String {
        let mut out = String::new();
        for (ts, event) in self.events.iter().enumerate() {
            match *event {
                Event::Invoke(id) => {
                    let r = &self.records[id.0];
                    let _ = write!(
                        out,
                        r#"{{"ts":{ts},"event":"invoke","id":{},"client":{},"key":{}"#,
                        id.0,
                        r.client,
                        json_bytes(Some(r.op.key()))
                    );
                    match &r.op {
                        Op::Get { .. } => out.push_str(r#","op":"get""#),
                        Op::Put { value, .. } => {
                            let _ = write!(out, r#","op":"put","value":{}"#, json_bytes(Some(value)));
                        }
                        Op::Delete { .. } => out.push_str(r#","op":"delete""#),
                        Op::Cas { expected, new, .. } => {
                            let _ = write!(
                                out,
                                r#","op":"cas","expected":{},"new":{}"#,
                                json_bytes(expected.as_deref()),
                                json_bytes(new.as_deref())
                            );
                        }
                    }
                }
                Event::Complete(id) => {
                    let (_, outcome) = self.records[id.0].completion.as_ref().expect("completed");
                    let _ = write!(out, r#"{{"ts":{ts},"event":"complete","id":{}"#, id.0);
                    match outcome {
                        Outcome::Get(value) => {
                            let _ =
                                write!(out, r#","outcome":"get","value":{}"#, json_bytes(value.as_deref()));
                        }
                        Outcome::Written => out.push_str(r#","outcome":"written""#),
                        Outcome::Cas { succeeded, previous } => {
                            let _ = write!(
                                out,
                                r#","outcome":"cas","succeeded":{succeeded},"previous":{}"#,
                                json_bytes(previous.as_deref())
                            );
                        }
                        Outcome::Failed => out.push_str(r#","outcome":"failed""#),
                        Outcome::Unknown => out.push_str(r#","outcome":"unknown""#),
                    }
                }
            }
            out.push_str("}\n");
        }
        out
    }
}

fn json_bytes(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "null".to_owned(),
        Some(bytes) => {
            let mut s = String::with_capacity(2 + 2 * bytes.len());
            s.push('"');
            for b in bytes {
                let _ = write!(s, "{b:02x}");
            }
            s.push('"');
            s
        }
    }
}

/// Bytes for humans: a quoted string if printable ASCII, else hex; `None` for absent.
fn show(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "None".to_owned(),
        Some(b) if b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') => {
            format!("{:?}", String::from_utf8_lossy(b))
        }
        Some(b) => format!("0x{}", json_bytes(Some(b)).trim_matches('"')),
    }
}

/// One operation of a history, with its outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyedOp {
    pub id: OpId,
    pub client: u64,
    pub invoked_at: u64,
    /// When its completion was recorded; `None` if it never was (its outcome is then `Unknown`).
    pub completed_at: Option<u64>,
    pub op: Op,
    pub outcome: Outcome,
}

impl fmt::Display for KeyedOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} client {} [{}, ", self.id.0, self.client, self.invoked_at)?;
        match self.completed_at {
            Some(at) => write!(f, "{at}] ")?,
            None => f.write_str("-] ")?,
        }
        match &self.op {
            Op::Get { .. } => f.write_str("get")?,
            Op::Put { value, .. } => write!(f, "put({})", show(Some(value)))?,
            Op::Delete { .. } => f.write_str("delete")?,
            Op::Cas { expected, new, .. } => {
                write!(f, "cas({} -> {})", show(expected.as_deref()), show(new.as_deref()))?
            }
        }
        match &self.outcome {
            Outcome::Get(value) => write!(f, " = {}", show(value.as_deref())),
            Outcome::Written => f.write_str(" = ok"),
            Outcome::Cas { succeeded, previous } => {
                let verdict = if *succeeded { "succeeded" } else { "failed" };
                write!(f, " = {verdict}, previous {}", show(previous.as_deref()))
            }
            Outcome::Failed => f.write_str(" = FAILED (ignored)"),
            Outcome::Unknown => f.write_str(" = unknown"),
        }
    }
}

/// The sub-history of `key` is not linearizable.
#[derive(Clone, Debug)]
pub struct Violation {
    pub key: Key,
    /// What the search found: the longest linearizable prefix and where it got stuck.
    pub explanation: String,
    /// All operations on `key`, in invocation order.
    pub ops: Vec<KeyedOp>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 200;
        writeln!(f, "{}", self.explanation)?;
        writeln!(f, "operations on key {} ({}):", show(Some(&self.key)), self.ops.len())?;
        for op in self.ops.iter().take(SHOWN) {
            writeln!(f, "  {op}")?;
        }
        if self.ops.len() > SHOWN {
            writeln!(f, "  ... and {} more", self.ops.len() - SHOWN)?;
        }
        Ok(())
    }
}

impl std::error::Error for Violation {}

/// Why [`check_with_limit`] did not accept a history.
#[derive(Clone, Debug)]
pub enum CheckError {
    Violation(Violation),
    /// The search of `key` gave up after `steps` steps without a verdict.
    Inconclusive {
        key: Key,
        steps: u64,
    },
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Violation(v) => v.fmt(f),
            CheckError::Inconclusive { key, steps } => {
                write!(f, "linearizability of key {} inconclusive after {steps} steps", show(Some(key)))
            }
        }
    }
}

impl std::error::Error for CheckError {}

/// Checks that `history` is linearizable, with a per-key budget of [`DEFAULT_MAX_STEPS`].
///
/// # Panics
///
/// If the budget runs out for some key and no other key has a violation: the history is then
/// too hard to decide, which a test should not silently accept.
pub fn check(history: &History) -> Result<(), Violation> {
    match check_with_limit(history, DEFAULT_MAX_STEPS) {
        Ok(()) => Ok(()),
        Err(CheckError::Violation(v)) => Err(v),
        Err(e @ CheckError::Inconclusive { .. }) => panic!("{e}; use check_with_limit to handle this"),
    }
}

/// Checks that `history` is linearizable, giving up on a key after `max_steps` search steps.
/// Keys are checked in order; a violation on any key is reported in preference to running out of
/// steps on another.
pub fn check_with_limit(history: &History, max_steps: u64) -> Result<(), CheckError> {
    let mut by_key: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
    for (i, r) in history.records.iter().enumerate() {
        by_key.entry(r.op.key()).or_default().push(i);
    }
    let mut inconclusive = None;
    for (key, indices) in by_key {
        match check_key(history, key, &indices, max_steps) {
            KeyVerdict::Linearizable => {}
            KeyVerdict::Violation(explanation) => {
                let ops = indices.iter().map(|&i| history.keyed_op(i)).collect();
                return Err(CheckError::Violation(Violation { key: key.to_vec(), explanation, ops }));
            }
            KeyVerdict::Inconclusive(steps) => {
                inconclusive.get_or_insert(CheckError::Inconclusive { key: key.to_vec(), steps });
            }
        }
    }
    inconclusive.map_or(Ok(()), Err)
}

/// A model state or value: 0 is absent, `n > 0` is the `n`th distinct value of the key.
type ValueId = u32;
const ABSENT: ValueId = 0;

/// What an operation does to, and requires of, the register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// A `Get` that returned this.
    Read(ValueId),
    /// A `Put` or `Delete`.
    Write(ValueId),
    /// `result` is `(succeeded, previous)`, or `None` if unknown.
    Cas { expected: ValueId, new: ValueId, result: Option<(bool, ValueId)> },
}

impl Step {
    /// The state after applying this at `state`, or `None` if its result contradicts `state`.
    fn apply(self, state: ValueId) -> Option<ValueId> {
        match self {
            Step::Read(v) => (v == state).then_some(state),
            Step::Write(v) => Some(v),
            Step::Cas { expected, new, result } => {
                let succeeded = expected == state;
                let after = if succeeded { new } else { state };
                match result {
                    None => Some(after),
                    Some(r) => (r == (succeeded, state)).then_some(after),
                }
            }
        }
    }

    /// Whether its result depends on the state.
    fn observes_state(self) -> bool {
        matches!(self, Step::Read(_) | Step::Cas { result: Some(_), .. })
    }

    /// Whether it leaves the state unchanged wherever it is linearized.
    fn is_read_only(self) -> bool {
        match self {
            Step::Read(_) => true,
            Step::Write(_) => false,
            Step::Cas { expected, new, result } => {
                result.is_some_and(|(succeeded, _)| !succeeded || expected == new)
            }
        }
    }
}

#[derive(Default)]
struct Interner<'a> {
    ids: HashMap<&'a [u8], ValueId>,
    values: Vec<&'a [u8]>,
}

impl<'a> Interner<'a> {
    fn id(&mut self, value: Option<&'a [u8]>) -> ValueId {
        let Some(value) = value else { return ABSENT };
        *self.ids.entry(value).or_insert_with(|| {
            self.values.push(value);
            self.values.len() as ValueId
        })
    }

    fn show(&self, id: ValueId) -> String {
        show(id.checked_sub(1).map(|i| self.values[i as usize]))
    }
}

/// An operation taking part in the search of one key.
struct SearchOp {
    /// Index into the history's records.
    record: usize,
    step: Step,
    call: u64,
    /// When it returned, if its outcome is known; only those operations must be linearized.
    ret: Option<u64>,
    /// Its index among the operations with the same `known()`.
    slot: usize,
}

impl SearchOp {
    fn known(&self) -> bool {
        self.ret.is_some()
    }
}

#[derive(Clone, Debug)]
struct BitSet(Vec<u64>);

impl BitSet {
    fn new(len: usize) -> Self {
        BitSet(vec![0; len.div_ceil(64)])
    }

    fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    fn is_subset(&self, other: &BitSet) -> bool {
        self.0.iter().zip(&other.0).all(|(a, b)| a & !b == 0)
    }
}

fn set_bit(words: &mut [u64], i: usize, value: bool) {
    if value {
        words[i / 64] |= 1 << (i % 64);
    } else {
        words[i / 64] &= !(1 << (i % 64));
    }
}

/// A set of slots, as bits, that tends to be a prefix and a few more.
struct KnownSet {
    words: Vec<u64>,
    /// How many leading words are full.
    full: usize,
    /// How many words there are up to the last that is not empty.
    used: usize,
}

impl KnownSet {
    fn set(&mut self, i: usize, value: bool) {
        set_bit(&mut self.words, i, value);
        if value {
            self.used = self.used.max(i / 64 + 1);
            while self.words.get(self.full) == Some(&u64::MAX) {
                self.full += 1;
            }
        } else {
            self.full = self.full.min(i / 64);
            while self.used > 0 && self.words[self.used - 1] == 0 {
                self.used -= 1;
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Node {
    op: usize,
    is_return: bool,
    prev: usize,
    next: usize,
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;

/// The doubly linked list of the calls and returns of the operations with a known outcome, in
/// time order, from which linearized operations are unlinked ("lifted"), and relinked when the
/// search backtracks.
struct EventList {
    nodes: Vec<Node>,
    /// The nodes of each operation's call and return (`NIL` for unknown operations).
    call: Vec<usize>,
    ret: Vec<usize>,
}

impl EventList {
    fn new(ops: &[SearchOp]) -> Self {
        let mut events: Vec<(u64, usize, bool)> = Vec::new();
        for (i, o) in ops.iter().enumerate() {
            if let Some(ret) = o.ret {
                events.extend([(o.call, i, false), (ret, i, true)]);
            }
        }
        events.sort_unstable_by_key(|&(time, ..)| time);
        let mut list = EventList {
            nodes: vec![Node { op: NIL, is_return: false, prev: NIL, next: NIL }],
            call: vec![NIL; ops.len()],
            ret: vec![NIL; ops.len()],
        };
        for (_, op, is_return) in events {
            let n = list.nodes.len();
            list.nodes.push(Node { op, is_return, prev: n - 1, next: NIL });
            list.nodes[n - 1].next = n;
            if is_return {
                list.ret[op] = n;
            } else {
                list.call[op] = n;
            }
        }
        list
    }

    fn unlink(&mut self, n: usize) {
        let Node { prev, next, .. } = self.nodes[n];
        self.nodes[prev].next = next;
        if next != NIL {
            self.nodes[next].prev = prev;
        }
    }

    /// Undoes the last `unlink` not yet undone, which must have been of `n`.
    fn relink(&mut self, n: usize) {
        let Node { prev, next, .. } = self.nodes[n];
        self.nodes[prev].next = n;
        if next != NIL {
            self.nodes[next].prev = n;
        }
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call[op]);
        self.unlink(self.ret[op]);
    }

    fn unlift(&mut self, op: usize) {
        self.relink(self.ret[op]);
        self.relink(self.call[op]);
    }

    /// The operations called before the first return in the list, and that return's operation.
    fn frontier(&self) -> (Vec<usize>, Option<usize>) {
        let mut calls = Vec::new();
        let mut n = self.nodes[HEAD].next;
        while n != NIL {
            let node = self.nodes[n];
            if node.is_return {
                return (calls, Some(node.op));
            }
            calls.push(node.op);
            n = node.next;
        }
        (calls, None)
    }
}

enum KeyVerdict {
    Linearizable,
    Violation(String),
    Inconclusive(u64),
}

fn check_key(history: &History, key: &[u8], indices: &[usize], max_steps: u64) -> KeyVerdict {
    let mut values = Interner::default();
    let mut ops = Vec::new();
    let (mut failed, mut unknown) = (0, 0);
    for &i in indices {
        let r = &history.records[i];
        let (ret, outcome) = match &r.completion {
            Some((_, Outcome::Failed)) => {
                failed += 1;
                continue;
            }
            Some((at, outcome @ (Outcome::Get(_) | Outcome::Written | Outcome::Cas { .. }))) => {
                (Some(*at), Some(outcome))
            }
            Some((_, Outcome::Unknown)) | None => {
                unknown += 1;
                (None, None)
            }
        };
        let step = match (&r.op, outcome) {
            // A get with an unknown outcome constrains nothing.
            (Op::Get { .. }, None) => continue,
            (Op::Get { .. }, Some(Outcome::Get(v))) => Step::Read(values.id(v.as_deref())),
            (Op::Put { value, .. }, _) => Step::Write(values.id(Some(value))),
            (Op::Delete { .. }, _) => Step::Write(ABSENT),
            (Op::Cas { expected, new, .. }, outcome) => Step::Cas {
                expected: values.id(expected.as_deref()),
                new: values.id(new.as_deref()),
                result: match outcome {
                    Some(Outcome::Cas { succeeded, previous }) => {
                        Some((*succeeded, values.id(previous.as_deref())))
                    }
                    _ => None,
                },
            },
            (op, outcome) => unreachable!("{outcome:?} recorded for {op:?}"),
        };
        ops.push(SearchOp { record: i, step, call: r.invoked_at, ret, slot: 0 });
    }
    // Operations with an unknown outcome invoked after every known one returned cannot matter.
    let last_return = ops.iter().filter_map(|o| o.ret).max();
    ops.retain(|o| o.known() || last_return.is_some_and(|t| o.call < t));
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

/// A configuration of the search: the operations linearized so far and the state they lead to.
struct Level {
    /// The operation linearized to reach this configuration from the previous one, and the state
    /// before it.
    via: Option<(usize, ValueId)>,
    /// The operations to try linearizing next, in order, and how many have been tried.
    moves: Vec<usize>,
    tried: usize,
}

/// The deepest configuration the search reached, for explaining a violation.
#[derive(Default)]
struct Deepest {
    order: Vec<usize>,
    state: ValueId,
    candidates: Vec<usize>,
    blocker: Option<usize>,
}

/// The search for a linearization of one key's operations: Wing & Gong's depth-first search over
/// the operations that may be linearized next (those called before the first pending return),
/// with Lowe's memo of visited configurations, and these sound reductions:
///
/// * If a pending get (or a CAS known to have failed, or other operation that never changes the
///   state) is consistent with the state, only it is tried: a linearization from here can be
///   rewritten to take it first, as it is called before any pending operation returns and
///   moving it affects no other result.
/// * Operations with an unknown outcome are linearized only where they matter. A linearization
///   can be rewritten so that every run of unknown operations is followed by a known operation
///   that observes the state (a get or a CAS), each operation of the run changes the state, and
///   each but the last is followed by a CAS that expects the state it leaves: drop runs followed
///   by a put or delete (or by nothing) and operations the rest of the run does not need; they
///   then never take effect. So an unknown operation is tried only if it changes the state into
///   one that a pending known observer or unknown CAS expects, and a known put or delete is not
///   tried right after an unknown operation.
/// * Pending unknown operations that do the same (e.g. put the same value) are interchangeable,
///   so only the first invoked is tried.
/// * A configuration is no more linearizable than one visited earlier that has the same known
///   operations linearized and the same state, a subset of the unknown operations linearized
///   (those can still take effect later), and is no more restricted.
struct Search<'a> {
    ops: &'a [SearchOp],
    /// The operations with an unknown outcome, by invocation time.
    unknown_ops: Vec<usize>,
    list: EventList,
    state: ValueId,
    /// The set of known operations linearized, indexed by slot.
    known: KnownSet,
    /// Scratch space for [`Search::config_key`].
    key: Vec<u64>,
    /// The set of unknown operations linearized, indexed by slot.
    unknown: BitSet,
    /// The configurations visited, by [`Search::config_key`]: the sets of unknown operations
    /// linearized, each with whether the configuration was reached by an unknown operation. As the
    /// search stops at the first success, every visited configuration not on the path failed.
    cache: HashMap<Box<[u64]>, Vec<(BitSet, bool)>>,
    /// The path from the initial configuration to the current one.
    path: Vec<Level>,
    /// Operations with a known outcome not yet linearized.
    remaining: usize,
    /// Whether an unknown operation takes effect at most once; if not, `unknown` stays empty.
    once: bool,
    /// Moves tried and configurations left so far.
    steps: u64,
    deepest: Deepest,
}

impl<'a> Search<'a> {
    fn new(ops: &'a [SearchOp], once: bool) -> Self {
        let list = EventList::new(ops);
        let mut unknown_ops: Vec<usize> = (0..ops.len()).filter(|&i| !ops[i].known()).collect();
        unknown_ops.sort_by_key(|&i| ops[i].call);
        let known = ops.len() - unknown_ops.len();
        let mut deepest = Deepest::default();
        (deepest.candidates, deepest.blocker) = list.frontier();
        Search {
            ops,
            unknown: BitSet::new(unknown_ops.len()),
            unknown_ops,
            list,
            state: ABSENT,
            known: KnownSet { words: BitSet::new(known).0, full: 0, used: 0 },
            key: Vec::new(),
            cache: HashMap::new(),
            path: Vec::new(),
            remaining: known,
            once,
            steps: 0,
            deepest,
        }
    }

    /// Whether a linearization exists, or `None` if `max_steps` ran out first.
    fn run(&mut self, max_steps: u64) -> Option<bool> {
        let moves = self.moves(false);
        self.path.push(Level { via: None, moves, tried: 0 });
        while self.remaining > 0 {
            if self.steps == max_steps {
                return None;
            }
            self.steps += 1;
            let level = self.path.last_mut().expect("the search is not over");
            if let Some(&op) = level.moves.get(level.tried) {
                level.tried += 1;
                self.try_linearize(op);
            } else {
                // A dead end.
                if self.path.len() > self.deepest.order.len() + 1 {
                    self.deepest.order = self.path.iter().filter_map(|l| l.via.map(|(op, _)| op)).collect();
                    self.deepest.state = self.state;
                    (self.deepest.candidates, self.deepest.blocker) = self.list.frontier();
                }
                let level = self.path.pop().expect("the search is not over");
                let Some((op, before)) = level.via else { return Some(false) };
                self.state = before;
                self.mark(op, false);
                if self.ops[op].known() {
                    self.list.unlift(op);
                    self.remaining += 1;
                }
            }
        }
        Some(true)
    }

    /// The operations to try linearizing next (see [`Search`]); `after_unknown` is whether the
    /// last operation linearized has an unknown outcome.
    fn moves(&self, after_unknown: bool) -> Vec<usize> {
        let (ops, state) = (self.ops, self.state);
        let (frontier, first_return) = self.list.frontier();
        let consistent = |op: usize| ops[op].step.apply(state).is_some();
        if let Some(&op) = frontier.iter().find(|&&op| ops[op].step.is_read_only() && consistent(op)) {
            return vec![op];
        }
        let mut moves: Vec<usize> = frontier
            .iter()
            .copied()
            .filter(|&op| consistent(op) && (!after_unknown || ops[op].step.observes_state()))
            .collect();
        let horizon = first_return.and_then(|op| ops[op].ret).unwrap_or(u64::MAX);
        let pending: Vec<usize> = self
            .unknown_ops
            .iter()
            .copied()
            .take_while(|&u| ops[u].call < horizon)
            .filter(|&u| !self.unknown.contains(ops[u].slot))
            .collect();
        let mut tried: Vec<Step> = Vec::new();
        for &u in &pending {
            // Pending unknown operations that do the same are interchangeable: try the first.
            if tried.contains(&ops[u].step) {
                continue;
            }
            tried.push(ops[u].step);
            let Some(after) = ops[u].step.apply(state).filter(|&after| after != state) else { continue };
            let observed =
                frontier.iter().any(|&k| ops[k].step.observes_state() && ops[k].step.apply(after).is_some());
            let chained = || {
                pending.iter().any(|&c| {
                    c != u && matches!(ops[c].step, Step::Cas { expected, .. } if expected == after)
                })
            };
            if observed || chained() {
                moves.push(u);
            }
        }
        moves
    }

    /// Linearizes `op` next, unless that leads to a configuration no more linearizable than one
    /// visited before.
    fn try_linearize(&mut self, op: usize) {
        let o = &self.ops[op];
        let by_unknown = !o.known();
        let before = self.state;
        let after = o.step.apply(before).expect("moves are consistent");
        self.mark(op, true);
        self.state = after;
        self.config_key();
        let unknown = &self.unknown;
        let dominates = |(u, r): &(BitSet, bool)| u.is_subset(unknown) && (!r || by_unknown);
        match self.cache.get_mut(&self.key[..]) {
            Some(seen) if seen.iter().any(dominates) => {
                self.mark(op, false);
                self.state = before;
                return;
            }
            Some(seen) => {
                seen.retain(|(u, r)| !(unknown.is_subset(u) && (!by_unknown || *r)));
                seen.push((unknown.clone(), by_unknown));
            }
            None => {
                self.cache.insert(self.key.clone().into_boxed_slice(), vec![(unknown.clone(), by_unknown)]);
            }
        }
        if o.known() {
            self.list.lift(op);
            self.remaining -= 1;
        }
        let moves = self.moves(by_unknown);
        self.path.push(Level { via: Some((op, before)), moves, tried: 0 });
    }

    /// Sets `key` to the state and the set of known operations linearized, compactly: as that set
    /// is closed under real-time precedence, it is a prefix of the operations (which are in order
    /// of invocation) and a few more operations concurrent with the first one left out.
    fn config_key(&mut self) {
        let KnownSet { words, full, used } = &self.known;
        self.key.clear();
        self.key.extend([u64::from(self.state), *full as u64]);
        self.key.extend_from_slice(&words[*full..*used]);
    }

    /// Adds `op` to, or removes it from, the set of linearized operations.
    fn mark(&mut self, op: usize, linearized: bool) {
        let o = &self.ops[op];
        if o.known() {
            self.known.set(o.slot, linearized);
        } else if self.once {
            set_bit(&mut self.unknown.0, o.slot, linearized);
        }
    }
}

/// What a violation's explanation says about the operations of its key.
struct Counts {
    known: usize,
    unknown: usize,
    failed: usize,
    /// Whether the violation was found letting unknown operations take effect more than once.
    relaxed: bool,
}

fn explain(
    history: &History,
    key: &[u8],
    ops: &[SearchOp],
    values: &Interner<'_>,
    deepest: &Deepest,
    Counts { known, unknown, failed, relaxed }: Counts,
) -> String {
    const TAIL: usize = 10;
    let describe = |op: usize| history.keyed_op(ops[op].record).to_string();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "key {}: not linearizable ({known} operations with a known outcome, {unknown} unknown, \
         {failed} failed and ignored)",
        show(Some(key)),
    );
    if relaxed {
        let _ = writeln!(
            s,
            "(not even if operations with an unknown outcome could take effect more than once, \
             which the prefix below may do)"
        );
    }
    let order = &deepest.order;
    let _ = writeln!(s, "longest linearizable prefix: {} operations, ending with", order.len());
    if order.len() > TAIL {
        let _ = writeln!(s, "  ...");
    }
    for &op in &order[order.len().saturating_sub(TAIL)..] {
        let _ = writeln!(s, "  {}", describe(op));
    }
    let _ = writeln!(s, "value after it: {}", values.show(deepest.state));
    if let Some(blocker) = deepest.blocker {
        let _ =
            writeln!(s, "it cannot be extended to linearize, before it returns,\n  {}", describe(blocker));
    }
    let _ = writeln!(s, "operations with a known outcome that could come next:");
    for &op in &deepest.candidates {
        let verdict = match ops[op].step.apply(deepest.state) {
            None => "contradicts the value",
            Some(_) => "consistent, but no continuation works",
        };
        let _ = writeln!(s, "  {} ({verdict})", describe(op));
    }
    s
}
