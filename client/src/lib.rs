//! ekv's thin client.
//!
//! Built so far: the [`RegionCache`] (which region holds a key, who leads
//! it, newer epochs win), the [`Backoff`] that bounds retries within a
//! deadline, and the pipelined [`Connection`] to one shard, usable blocking
//! or from any async runtime. The client over them (routing, retries by
//! error code, batches split by region, scans across regions) comes next
//! (see the README's "What works today").
//!
//! Rule: this crate depends on `ekv-proto` only: no glommio, no async
//! runtime of its own, so that it links into tokio services and plain
//! threads alike.
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

mod backoff;
mod conn;
mod region_cache;

pub use backoff::Backoff;
pub use conn::{CallError, Connection, Reply};
pub use region_cache::{CachedRegion, KeyGroups, RegionCache};
