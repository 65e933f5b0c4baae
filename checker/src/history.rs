//! Histories: what clients invoked, when, and how each operation ended.

use std::fmt;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};
use crate::{Key, Value};

/// A client process. A process runs one operation at a time (for [`History::from_events`];
/// the checkers themselves do not rely on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProcessId(pub u64);

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// An operation's index in its [`History`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpId(pub usize);

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The kind of object a key holds, which decides the checker its operations go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Workload {
    /// [`Op::Get`], [`Op::Put`], [`Op::Delete`] and [`Op::Cas`]: checked for linearizability.
    Register,
    /// [`Op::Add`] and [`Op::ReadSet`].
    Set,
    /// [`Op::Append`] and [`Op::ReadList`].
    ListAppend,
}

/// An operation on one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Op {
    /// Reads a register; completes with [`Outcome::Read`].
    Get {
        /// The register.
        key: Key,
    },
    /// Writes a register; completes with [`Outcome::Written`].
    Put {
        /// The register.
        key: Key,
        /// The value written.
        value: Value,
    },
    /// Makes a register absent; completes with [`Outcome::Written`].
    Delete {
        /// The register.
        key: Key,
    },
    /// Sets a register to `new` (`None`: absent) iff it is `expected` (`None`: absent);
    /// completes with [`Outcome::Cas`].
    Cas {
        /// The register.
        key: Key,
        /// The value required.
        expected: Option<Value>,
        /// The value written if `expected` was current.
        new: Option<Value>,
    },
    /// Adds an element to a set; completes with [`Outcome::Written`]. Each element is added at
    /// most once per key.
    Add {
        /// The set.
        key: Key,
        /// The element, unique per key.
        element: Value,
    },
    /// Reads a whole set; completes with [`Outcome::Elements`], in any order.
    ReadSet {
        /// The set.
        key: Key,
    },
    /// Appends an element to a list; completes with [`Outcome::Written`]. Each element is
    /// appended at most once per key.
    Append {
        /// The list.
        key: Key,
        /// The element, unique per key.
        element: Value,
    },
    /// Reads a whole list; completes with [`Outcome::Elements`], in list order.
    ReadList {
        /// The list.
        key: Key,
    },
}

impl Op {
    /// Reads register `key`.
    pub fn get(key: impl Into<Key>) -> Op {
        Op::Get { key: key.into() }
    }

    /// Writes `value` to register `key`.
    pub fn put(key: impl Into<Key>, value: impl Into<Value>) -> Op {
        Op::Put { key: key.into(), value: value.into() }
    }

    /// Makes register `key` absent.
    pub fn delete(key: impl Into<Key>) -> Op {
        Op::Delete { key: key.into() }
    }

    /// Compare-and-swap on register `key`.
    pub fn cas(key: impl Into<Key>, expected: Option<impl Into<Value>>, new: Option<impl Into<Value>>) -> Op {
        Op::Cas { key: key.into(), expected: expected.map(Into::into), new: new.map(Into::into) }
    }

    /// Adds `element` to set `key`.
    pub fn add(key: impl Into<Key>, element: impl Into<Value>) -> Op {
        Op::Add { key: key.into(), element: element.into() }
    }

    /// Reads set `key`.
    pub fn read_set(key: impl Into<Key>) -> Op {
        Op::ReadSet { key: key.into() }
    }

    /// Appends `element` to list `key`.
    pub fn append(key: impl Into<Key>, element: impl Into<Value>) -> Op {
        Op::Append { key: key.into(), element: element.into() }
    }

    /// Reads list `key`.
    pub fn read_list(key: impl Into<Key>) -> Op {
        Op::ReadList { key: key.into() }
    }

    /// The key it touches.
    pub fn key(&self) -> &Key {
        match self {
            Op::Get { key }
            | Op::Put { key, .. }
            | Op::Delete { key }
            | Op::Cas { key, .. }
            | Op::Add { key, .. }
            | Op::ReadSet { key }
            | Op::Append { key, .. }
            | Op::ReadList { key } => key,
        }
    }

    /// The workload it belongs to.
    pub fn workload(&self) -> Workload {
        match self {
            Op::Get { .. } | Op::Put { .. } | Op::Delete { .. } | Op::Cas { .. } => Workload::Register,
            Op::Add { .. } | Op::ReadSet { .. } => Workload::Set,
            Op::Append { .. } | Op::ReadList { .. } => Workload::ListAppend,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |v: &Option<Value>| v.as_ref().map_or_else(|| "None".to_owned(), Value::to_string);
        match self {
            Op::Get { key } => write!(f, "get({key})"),
            Op::Put { key, value } => write!(f, "put({key}, {value})"),
            Op::Delete { key } => write!(f, "delete({key})"),
            Op::Cas { key, expected, new } => write!(f, "cas({key}, {} -> {})", opt(expected), opt(new)),
            Op::Add { key, element } => write!(f, "add({key}, {element})"),
            Op::ReadSet { key } => write!(f, "read_set({key})"),
            Op::Append { key, element } => write!(f, "append({key}, {element})"),
            Op::ReadList { key } => write!(f, "read_list({key})"),
        }
    }
}

/// How an operation ended, as its client saw it. The first four are "ok" outcomes: the
/// operation took effect (once, between its invocation and completion) and returned this.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// A put, delete, add or append was acknowledged.
    Written,
    /// The value a get returned (`None`: absent).
    Read(Option<Value>),
    /// A compare-and-swap ran. `swapped` is whether the value was `expected` (and is now
    /// `new`); a CAS that ran and did not swap belongs here, not in [`Outcome::Fail`], as it
    /// still observed a value other than `expected`. `previous` is the value it compared, if the
    /// store reports it (`Some(None)`: absent; `None`: not reported).
    Cas {
        /// Whether it swapped.
        swapped: bool,
        /// The value it found, if reported.
        #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "reported")]
        previous: Option<Option<Value>>,
    },
    /// The elements a set or list read returned.
    Elements(Vec<Value>),
    /// The operation definitely did not take effect (e.g. the store refused it before
    /// proposing it). The checkers drop it.
    Fail,
    /// The operation may or may not take effect, at any time after its invocation (timeout,
    /// crash, lost connection): its completion is in effect +infinity.
    Unknown,
}

/// Tells a `previous` that is present but null (`Some(None)`) from one that is missing (`None`).
fn reported<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Option<Value>>, D::Error> {
    Option::<Value>::deserialize(d).map(Some)
}

impl Outcome {
    /// Whether the operation took effect and returned a result.
    pub fn is_ok(&self) -> bool {
        !matches!(self, Outcome::Fail | Outcome::Unknown)
    }

    /// Whether this can be an outcome of `op` at all.
    pub fn fits(&self, op: &Op) -> bool {
        matches!(
            (op, self),
            (_, Outcome::Fail | Outcome::Unknown)
                | (Op::Get { .. }, Outcome::Read(_))
                | (Op::Put { .. } | Op::Delete { .. } | Op::Add { .. } | Op::Append { .. }, Outcome::Written)
                | (Op::Cas { .. }, Outcome::Cas { .. })
                | (Op::ReadSet { .. } | Op::ReadList { .. }, Outcome::Elements(_))
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Enough to see what a read returned without flooding a report with a long list.
        const SHOWN: usize = 8;
        match self {
            Outcome::Written => f.write_str("ok"),
            Outcome::Read(None) => f.write_str("None"),
            Outcome::Read(Some(v)) => write!(f, "{v}"),
            Outcome::Cas { swapped, previous } => {
                f.write_str(if *swapped { "swapped" } else { "not swapped" })?;
                match previous {
                    Some(Some(v)) => write!(f, ", previous {v}"),
                    Some(None) => f.write_str(", previous None"),
                    None => Ok(()),
                }
            }
            Outcome::Elements(elements) => {
                f.write_str("[")?;
                for (i, e) in elements.iter().take(SHOWN).enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{e}")?;
                }
                if elements.len() > SHOWN {
                    write!(f, ", ... {} elements in all", elements.len())?;
                }
                f.write_str("]")
            }
            Outcome::Fail => f.write_str("FAILED"),
            Outcome::Unknown => f.write_str("unknown"),
        }
    }
}

/// One operation of a history: one line of a saved history.
///
/// Times are a logical clock or monotonic nanoseconds, one or the other within a history.
/// Operation `a` precedes `b` in real time iff `a.complete < b.invoke`; equal times are
/// concurrent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Who invoked it.
    pub process: ProcessId,
    /// When it was invoked.
    pub invoke: u64,
    /// When its outcome was known: required for ok outcomes; for [`Outcome::Unknown`], when the
    /// client gave up (the checkers ignore it); `None` if it never completed.
    /// Invariant (checked, else [`crate::Problem::CompletedBeforeInvoked`]): `invoke <= complete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<u64>,
    /// What it did.
    pub op: Op,
    /// How it ended.
    pub outcome: Outcome,
}

impl Operation {
    /// When it took effect at the latest: its completion if its outcome is ok, else never.
    pub fn returned(&self) -> Option<u64> {
        self.complete.filter(|_| self.outcome.is_ok())
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}, ", self.process, self.invoke)?;
        match self.complete {
            Some(t) => write!(f, "{t}]")?,
            None => f.write_str("-]")?,
        }
        write!(f, " {} = {}", self.op, self.outcome)
    }
}

/// One event of a history in event form: an invocation, or the completion of the operation its
/// process invoked last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// `process` invoked `op` at `time`.
    Invoke {
        /// Who.
        process: ProcessId,
        /// When.
        time: u64,
        /// What.
        op: Op,
    },
    /// `process`'s pending operation ended with `outcome` at `time`.
    Complete {
        /// Who.
        process: ProcessId,
        /// When.
        time: u64,
        /// How.
        outcome: Outcome,
    },
}

/// The operations clients ran, in invocation order if recorded with [`History::invoke`].
///
/// Record with [`History::invoke`] and [`History::complete`] (a logical clock: each call takes
/// the next tick), or with [`History::invoke_at`] and [`History::complete_at`] (times of your
/// own, e.g. monotonic nanoseconds), or [`History::push`] whole operations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    ops: Vec<Operation>,
    /// The next logical time. Invariant: greater than every time recorded so far.
    clock: u64,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// A history of these operations.
    pub fn from_ops(ops: Vec<Operation>) -> Self {
        let clock = ops.iter().map(|o| o.invoke.max(o.complete.unwrap_or(0)) + 1).max().unwrap_or(0);
        History { ops, clock }
    }

    /// Pairs each completion with its process's pending invocation. Operations still pending at
    /// the end never completed (their outcome is [`Outcome::Unknown`]).
    ///
    /// # Errors
    ///
    /// [`Error::ProcessBusy`] if a process invokes while it has an operation pending, and
    /// [`Error::NothingPending`] if one completes without one.
    pub fn from_events(events: impl IntoIterator<Item = Event>) -> Result<Self> {
        let mut h = History::new();
        let mut pending = std::collections::HashMap::new();
        for (index, event) in events.into_iter().enumerate() {
            match event {
                Event::Invoke { process, time, op } => {
                    let id = h.invoke_at(process, op, time);
                    if pending.insert(process, id).is_some() {
                        return Err(Error::ProcessBusy { event: index, process });
                    }
                }
                Event::Complete { process, time, outcome } => {
                    let id =
                        pending.remove(&process).ok_or(Error::NothingPending { event: index, process })?;
                    let o = &mut h.ops[id.0];
                    o.complete = Some(time);
                    o.outcome = outcome;
                    h.clock = h.clock.max(time + 1);
                }
            }
        }
        Ok(h)
    }

    /// Records that `process` invoked `op` now (the next logical time).
    pub fn invoke(&mut self, process: ProcessId, op: Op) -> OpId {
        self.invoke_at(process, op, self.clock)
    }

    /// Records that `process` invoked `op` at `time`.
    pub fn invoke_at(&mut self, process: ProcessId, op: Op, time: u64) -> OpId {
        self.push(Operation { process, invoke: time, complete: None, op, outcome: Outcome::Unknown })
    }

    /// Records that `id` completed now (the next logical time) with `outcome`.
    ///
    /// # Panics
    ///
    /// As [`History::complete_at`].
    pub fn complete(&mut self, id: OpId, outcome: Outcome) {
        self.complete_at(id, outcome, self.clock);
    }

    /// Records that `id` completed at `time` with `outcome`.
    ///
    /// # Panics
    ///
    /// If `id` is not from this history, was already completed, or `outcome` cannot be an
    /// outcome of its operation (e.g. [`Outcome::Written`] for a get): bugs in the harness.
    pub fn complete_at(&mut self, id: OpId, outcome: Outcome, time: u64) {
        let o = self.ops.get_mut(id.0).unwrap_or_else(|| panic!("{id} is not in this history"));
        assert!(o.complete.is_none(), "{id} completed twice");
        assert!(outcome.fits(&o.op), "{outcome:?} is not an outcome of {:?}", o.op);
        o.complete = Some(time);
        o.outcome = outcome;
        self.clock = self.clock.max(time + 1);
    }

    /// Adds a whole operation.
    pub fn push(&mut self, op: Operation) -> OpId {
        self.clock = self.clock.max(op.invoke.max(op.complete.unwrap_or(0)) + 1);
        self.ops.push(op);
        OpId(self.ops.len() - 1)
    }

    /// The operations; an operation's index is its [`OpId`].
    pub fn ops(&self) -> &[Operation] {
        &self.ops
    }

    /// Operation `id`.
    pub fn get(&self, id: OpId) -> Option<&Operation> {
        self.ops.get(id.0)
    }

    /// The operations with their ids.
    pub fn iter(&self) -> impl Iterator<Item = (OpId, &Operation)> + '_ {
        self.ops.iter().enumerate().map(|(i, o)| (OpId(i), o))
    }

    /// The number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether there are no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The history as JSON lines: one [`Operation`] per line, in [`OpId`] order.
    pub fn to_jsonl(&self) -> String {
        let mut out = Vec::new();
        self.write_jsonl(&mut out).expect("writing to a Vec cannot fail");
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }

    /// Writes the history as JSON lines.
    ///
    /// # Errors
    ///
    /// Those of `w`.
    pub fn write_jsonl(&self, mut w: impl Write) -> std::io::Result<()> {
        for op in &self.ops {
            serde_json::to_writer(&mut w, op)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Parses JSON lines as written by [`History::to_jsonl`]; blank lines are skipped.
    ///
    /// # Errors
    ///
    /// [`Error::Json`] for the first line that is not an [`Operation`].
    pub fn from_jsonl(text: &str) -> Result<Self> {
        Self::read_jsonl(text.as_bytes())
    }

    /// Reads JSON lines as written by [`History::write_jsonl`]; blank lines are skipped.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if reading fails, [`Error::Json`] for the first line that is not an
    /// [`Operation`].
    pub fn read_jsonl(r: impl std::io::Read) -> Result<Self> {
        let mut ops = Vec::new();
        for (i, line) in BufReader::new(r).lines().enumerate() {
            let line = line.map_err(|source| Error::Io { op: "read", path: None, source })?;
            if line.trim().is_empty() {
                continue;
            }
            ops.push(serde_json::from_str(&line).map_err(|source| Error::Json { line: i + 1, source })?);
        }
        Ok(History::from_ops(ops))
    }
}

/// Saves `history` to `path` as JSON lines (see [`History::to_jsonl`]), replacing the file.
///
/// # Errors
///
/// [`Error::Io`] with the path.
pub fn save_jsonl(path: impl AsRef<Path>, history: &History) -> Result<()> {
    let path = path.as_ref();
    let io = |op| move |source| Error::Io { op, path: Some(path.to_path_buf()), source };
    let file = std::fs::File::create(path).map_err(io("create"))?;
    let mut w = BufWriter::new(file);
    history.write_jsonl(&mut w).map_err(io("write"))?;
    w.into_inner().map_err(|e| e.into_error()).map_err(io("write"))?.sync_all().map_err(io("sync"))
}

/// Loads a history saved by [`save_jsonl`].
///
/// # Errors
///
/// [`Error::Io`] with the path, or [`Error::Json`] for the first bad line.
pub fn load_jsonl(path: impl AsRef<Path>) -> Result<History> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        op: "open",
        path: Some(path.to_path_buf()),
        source,
    })?;
    History::read_jsonl(file).map_err(|e| match e {
        Error::Io { op, path: None, source } => Error::Io { op, path: Some(path.to_path_buf()), source },
        e => e,
    })
}
