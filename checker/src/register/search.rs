//! The search for a linearization of one register's operations.

use std::collections::HashMap;

/// A model state or value: 0 is absent, `n > 0` is the `n`th distinct value of the register.
pub(super) type ValueId = u32;
pub(super) const ABSENT: ValueId = 0;

/// What a compare-and-swap returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct CasResult {
    pub(super) swapped: bool,
    /// The value it compared, if reported.
    pub(super) previous: Option<ValueId>,
}

/// What an operation does to, and requires of, the register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// A get that returned this.
    Read(ValueId),
    /// A put or delete.
    Write(ValueId),
    /// A compare-and-swap; `result` is `None` if its outcome is unknown.
    Cas { expected: ValueId, new: ValueId, result: Option<CasResult> },
}

impl Step {
    /// The state after applying this at `state`, or `None` if its result contradicts `state`.
    pub(super) fn apply(self, state: ValueId) -> Option<ValueId> {
        match self {
            Step::Read(v) => (v == state).then_some(state),
            Step::Write(v) => Some(v),
            Step::Cas { expected, new, result } => {
                let swapped = expected == state;
                let after = if swapped { new } else { state };
                match result {
                    None => Some(after),
                    Some(r) => {
                        (r.swapped == swapped && r.previous.is_none_or(|p| p == state)).then_some(after)
                    }
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
            Step::Cas { expected, new, result } => result.is_some_and(|r| !r.swapped || expected == new),
        }
    }
}

/// An operation taking part in the search of one register.
pub(super) struct SearchOp {
    /// Its index in the history.
    pub(super) record: usize,
    pub(super) step: Step,
    pub(super) call: u64,
    /// When it returned, if its outcome is ok; only those operations must be linearized.
    pub(super) ret: Option<u64>,
    /// Its index among the operations with the same `known()`.
    pub(super) slot: usize,
}

impl SearchOp {
    pub(super) fn known(&self) -> bool {
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

/// The doubly linked list of the calls and returns of the operations with an ok outcome, in
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
        let mut events: Vec<(u64, bool, usize)> = Vec::new();
        for (i, o) in ops.iter().enumerate() {
            if let Some(ret) = o.ret {
                events.extend([(o.call, false, i), (ret, true, i)]);
            }
        }
        // At equal times calls come first: operations that end and start at the same time are
        // concurrent.
        events.sort_unstable();
        let mut list = EventList {
            nodes: vec![Node { op: NIL, is_return: false, prev: NIL, next: NIL }],
            call: vec![NIL; ops.len()],
            ret: vec![NIL; ops.len()],
        };
        for (_, is_return, op) in events {
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
pub(super) struct Deepest {
    /// The operations linearized, in order.
    pub(super) order: Vec<usize>,
    pub(super) state: ValueId,
    /// The ok operations that could have come next.
    pub(super) candidates: Vec<usize>,
    /// The first pending return.
    pub(super) blocker: Option<usize>,
}

/// The search for a linearization of one register's operations: Wing & Gong's depth-first
/// search over the operations that may be linearized next (those called before the first
/// pending return), with Lowe's memo of visited configurations, and these sound reductions:
///
/// * If a pending get (or a CAS known not to have swapped, or other operation that never
///   changes the state) is consistent with the state, only it is tried: a linearization from
///   here can be rewritten to take it first, as it is called before any pending operation
///   returns and moving it affects no other result.
/// * Operations with an unknown outcome are linearized only where they matter. A linearization
///   can be rewritten so that every run of unknown operations is followed by a known operation
///   that observes the state (a get or a CAS), each operation of the run changes the state, and
///   each but the last is followed by a CAS that expects the state it leaves: drop runs followed
///   by a put or delete (or by nothing) and operations the rest of the run does not need; they
///   then never take effect. So an unknown operation is tried only if it changes the state into
///   one that a pending known observer accepts or a pending unknown CAS expects, and a known put
///   or delete is not tried right after an unknown operation.
/// * Pending unknown operations that do the same (e.g. put the same value) are interchangeable,
///   so only the first invoked is tried.
/// * A configuration is no more linearizable than one visited earlier that has the same known
///   operations linearized and the same state, a subset of the unknown operations linearized
///   (those can still take effect later), and is no more restricted.
pub(super) struct Search<'a> {
    ops: &'a [SearchOp],
    /// The operations with an unknown outcome, by invocation time.
    unknown_ops: Vec<usize>,
    /// Those that are CASes.
    unknown_cas: Vec<usize>,
    /// The puts and deletes among them by the value they write, each list by invocation time.
    puts: HashMap<ValueId, Vec<usize>>,
    /// The CASes among them by the value they write if they swap, each list by invocation time.
    swaps: HashMap<ValueId, Vec<usize>>,
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
    pub(super) steps: u64,
    pub(super) deepest: Deepest,
}

impl<'a> Search<'a> {
    pub(super) fn new(ops: &'a [SearchOp], once: bool) -> Self {
        let list = EventList::new(ops);
        let mut unknown_ops: Vec<usize> = (0..ops.len()).filter(|&i| !ops[i].known()).collect();
        unknown_ops.sort_by_key(|&i| ops[i].call);
        let known = ops.len() - unknown_ops.len();
        let unknown_cas =
            unknown_ops.iter().copied().filter(|&u| matches!(ops[u].step, Step::Cas { .. })).collect();
        let (mut puts, mut swaps): (HashMap<ValueId, Vec<usize>>, HashMap<ValueId, Vec<usize>>) =
            Default::default();
        for &u in &unknown_ops {
            match ops[u].step {
                Step::Write(v) => puts.entry(v).or_default().push(u),
                Step::Cas { new, .. } => swaps.entry(new).or_default().push(u),
                Step::Read(_) => {}
            }
        }
        let mut deepest = Deepest::default();
        (deepest.candidates, deepest.blocker) = list.frontier();
        Search {
            ops,
            unknown: BitSet::new(unknown_ops.len()),
            unknown_ops,
            unknown_cas,
            puts,
            swaps,
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
    pub(super) fn run(&mut self, max_steps: u64) -> Option<bool> {
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
        let pending = |list| self.pending(list, horizon);
        // The values worth moving the register to: those a pending observer accepts or a pending
        // unknown CAS expects. Looking up only their writers keeps a step from scanning every
        // pending unknown operation, of which there can be hundreds (e.g. timed-out puts).
        let mut targets: Vec<ValueId> = pending(&self.unknown_cas)
            .filter_map(|c| match ops[c].step {
                Step::Cas { expected, .. } => Some(expected),
                _ => None,
            })
            .collect();
        let mut accepts_any = false;
        for &k in &frontier {
            match ops[k].step {
                Step::Read(v) => targets.push(v),
                Step::Cas { expected, result: Some(r), .. } => match r.previous {
                    Some(p) => targets.push(p),
                    None if r.swapped => targets.push(expected),
                    // It accepts every value but `expected`.
                    None => accepts_any = true,
                },
                _ => {}
            }
        }
        let candidates: Vec<usize> = if accepts_any {
            pending(&self.unknown_ops).collect()
        } else {
            targets.sort_unstable();
            targets.dedup();
            let mut candidates = Vec::new();
            for v in targets.iter().filter(|&&v| v != state) {
                // Puts (or deletes) of the same value are interchangeable: only the first counts.
                candidates.extend(self.puts.get(v).and_then(|puts| pending(puts).next()));
                candidates.extend(self.swaps.get(v).into_iter().flat_map(|swaps| pending(swaps)));
            }
            candidates
        };
        let mut tried: Vec<Step> = Vec::new();
        for u in candidates {
            // Pending unknown operations that do the same are interchangeable: try the first.
            if tried.contains(&ops[u].step) {
                continue;
            }
            tried.push(ops[u].step);
            let Some(after) = ops[u].step.apply(state).filter(|&after| after != state) else { continue };
            let observed =
                frontier.iter().any(|&k| ops[k].step.observes_state() && ops[k].step.apply(after).is_some());
            let chained = || {
                pending(&self.unknown_cas)
                    .any(|c| c != u && matches!(ops[c].step, Step::Cas { expected, .. } if expected == after))
            };
            if observed || chained() {
                moves.push(u);
            }
        }
        moves
    }

    /// The unknown operations of `list` (by invocation time) invoked up to `horizon`, the first
    /// pending return (equal times are concurrent), and not yet linearized.
    fn pending<'s>(&'s self, list: &'s [usize], horizon: u64) -> impl Iterator<Item = usize> + 's {
        let ops = self.ops;
        list.iter()
            .copied()
            .take_while(move |&u| ops[u].call <= horizon)
            .filter(move |&u| !self.unknown.contains(ops[u].slot))
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
