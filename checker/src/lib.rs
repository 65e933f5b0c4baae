//! Checks histories of client operations against ekv, Jepsen-style: clients record what they
//! invoked, when, and how each operation ended, and a check says whether a correct store could
//! have produced that.
//!
//! Workloads, each key belonging to one (see [`Workload`]):
//!
//! * registers ([`register`]): get, put, delete and compare-and-swap, checked for
//!   linearizability per key with the Wing & Gong search, memoized as Lowe does;
//! * sets ([`set`]): adds of unique elements and reads, checked for lost, stale and phantom
//!   elements;
//! * list-append ([`list_append`]): appends of unique elements and reads of whole lists,
//!   checked for order, lost, stale and phantom elements in `O(n log n)`.
//!
//! Outcomes ([`Outcome`]) are ok (took effect, with its result), [`Outcome::Fail`] (definitely
//! did not take effect; dropped) or [`Outcome::Unknown`] (may take effect at any time after its
//! invocation, or never). Times are a logical clock or monotonic nanoseconds; `a` precedes `b`
//! iff `a` completed before `b` was invoked.
//!
//! Cost: the register search is exponential in the worst case (the problem is NP-complete)
//! but close to linear on valid histories; the set and list-append checks are `O(m + n log n)`
//! for `n` operations whose reads return `m` elements. Each module's doc has the details.
//!
//! A [`Verdict`] lists the anomalies found. When it is not ok, a runner saves the history with
//! [`save_jsonl`] (one [`Operation`] per line) and replays the check with [`load_jsonl`].
//!
//! This crate depends on no other ekv crate, so any test, benchmark or tool can use it.
//!
//! # Example
//!
//! ```
//! use ekv_checker::{check, History, Op, Outcome, ProcessId};
//!
//! let mut h = History::new();
//! let (p1, p2) = (ProcessId(1), ProcessId(2));
//! let put = h.invoke(p1, Op::put("k", "v1"));
//! let get = h.invoke(p2, Op::get("k"));
//! // The get overlaps the put, so it may or may not see it.
//! h.complete(get, Outcome::Read(None));
//! h.complete(put, Outcome::Written);
//! assert!(check(&h).is_ok());
//!
//! // Once the put is acknowledged, a get invoked later must see it.
//! let get = h.invoke(p2, Op::get("k"));
//! h.complete(get, Outcome::Read(None));
//! let verdict = check(&h);
//! assert!(!verdict.is_ok());
//! println!("{verdict}"); // names the key and the operations involved
//! ```

#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

mod bytes;
mod check;
mod error;
mod history;
pub mod list_append;
pub mod register;
pub mod set;
mod verdict;

pub use crate::bytes::{Key, Value};
pub use crate::check::check;
pub use crate::error::{Error, Result};
pub use crate::history::{
    load_jsonl, save_jsonl, Event, History, Op, OpId, Operation, Outcome, ProcessId, Workload,
};
pub use crate::verdict::{
    Anomaly, AnomalyKind, Candidate, Problem, RegisterViolation, SetSummary, Verdict, Witness, MAX_REPORTED,
};
