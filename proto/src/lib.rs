//! ekv's shared vocabulary.
//!
//! This crate holds what every other crate must agree on: typed ids
//! ([`RegionId`], [`PeerId`], [`StoreId`], [`ShardId`]), the [`Region`] and
//! its [`RegionEpoch`], and [`codec`], the one place where integers, varints,
//! bounded byte strings and CRC32C framing are encoded and decoded.
//!
//! Rule: this crate does no I/O and must not depend on glommio, raft or any
//! other ekv crate; the client links it without an async runtime.
//!
//! ```
//! use ekv_proto::{codec::Reader, RegionId};
//! let mut buf = Vec::new();
//! ekv_proto::codec::put_uvarint(&mut buf, 300);
//! let mut r = Reader::new(&buf);
//! assert_eq!(r.uvarint("n").unwrap(), 300);
//! assert_eq!(RegionId(7).to_string(), "region 7");
//! ```
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod codec;
mod ids;
mod region;

pub use ids::{PeerId, RegionId, ShardId, StoreId};
pub use region::{PeerMeta, Region, RegionEpoch, MAX_KEY_LEN, MAX_PEERS};
