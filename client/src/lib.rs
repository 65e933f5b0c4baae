//! ekv's thin client.
//!
//! Built so far: the [`RegionCache`] (which region holds a key, who leads
//! it, newer epochs win) and the [`Backoff`] that bounds retries within a
//! deadline. The connections, the request path over ekv's frames and the
//! async and blocking APIs come next (see the README's "What works today").
//!
//! Rule: this crate depends on `ekv-proto` only: no glommio, no async
//! runtime of its own, so that it links into tokio services and plain
//! threads alike.
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

mod backoff;
mod region_cache;

pub use backoff::Backoff;
pub use region_cache::{CachedRegion, KeyGroups, RegionCache};
