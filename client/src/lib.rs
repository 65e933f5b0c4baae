//! ekv's thin client.
//!
//! [`Client`] (blocking, for plain threads) and [`AsyncClient`] (for any
//! async runtime: tokio, async-std, `futures`) share one implementation.
//! Each request goes to the leader of the region holding its key, on the
//! store shard (core) that owns the region, over a pipelined connection
//! from a small pool. Routes come from the meta service and are cached
//! ([`RegionCache`]); the typed errors of the servers (`NotLeader`,
//! `EpochNotMatch`, `RegionNotFound`, `ServerBusy`, ...) update the cache
//! and the request is retried with bounded exponential backoff
//! ([`Backoff`]) within a deadline. A write whose answer was lost is never
//! retried blindly: it fails with [`Error::OutcomeUnknown`]. Batches are
//! split by region and sent in parallel; scans walk regions in either
//! direction.
//!
//! ```no_run
//! use ekv_client::{Client, Config};
//!
//! let client = Client::new(Config {
//!     pd_endpoints: vec!["127.0.0.1:2379".into()],
//!     ..Config::default()
//! })?;
//! client.put(b"user/1", b"ada")?;
//! assert_eq!(client.get(b"user/1")?, Some(b"ada".to_vec()));
//! for pair in client.scan(b"user/", b"user0", 100)? {
//!     println!("{:?} = {:?}", pair.key, pair.value);
//! }
//! # Ok::<(), ekv_client::Error>(())
//! ```
//!
//! Rule: this crate depends on `ekv-proto` only: no glommio, no async
//! runtime of its own, so that it links into tokio services and plain
//! threads alike.
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

mod backoff;
mod client;
mod conn;
mod error;
mod meta;
mod region_cache;
pub mod rt;

pub use backoff::Backoff;
pub use client::{AsyncClient, CasOutcome, Client, Config, ScanOptions};
pub use conn::{CallError, Connection, Reply};
pub use ekv_proto::msg::KvPair;
pub use error::{Error, Result};
pub use meta::{MetaClient, MetaConfig, RouteSource};
pub use region_cache::{CachedRegion, KeyGroups, RegionCache};
