//! ekv's shared vocabulary.
//!
//! This crate holds what every other crate must agree on: typed ids
//! ([`RegionId`], [`PeerId`], [`StoreId`], [`ShardId`], [`RequestId`]), the
//! [`Region`] and its [`RegionEpoch`], [`codec`], the one place where
//! integers, varints, bounded byte strings and CRC32C framing are encoded
//! and decoded, and the wire protocol:
//!
//! - [`frame`]: the fixed 32-byte frame header (magic, version, message
//!   type, flags, region id, request id, body length, header checksum), the
//!   [`frame::FrameLimits`] every decoder enforces, and the incremental
//!   [`frame::FrameDecoder`] a connection feeds with socket bytes.
//! - [`msg`]: one struct and one `encode_into`/`decode_from` pair per
//!   message (raw KV, admin, meta service, raft transport), the stable
//!   [`msg::MsgType`] numbers, and the typed [`msg::WireError`]s with their
//!   stable codes. Bodies are encoded by hand over [`codec`]: no prost, no
//!   `.proto` files, no protoc at build time, and every length, count and
//!   limit is checked before anything is allocated.
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
//!
//! A request in a frame and back:
//!
//! ```
//! use ekv_proto::frame::{encode_frame, FrameDecoder, FrameFlags, FrameLimits};
//! use ekv_proto::msg::{AnyMessage, GetRequest, RequestContext};
//! use ekv_proto::{RegionId, RequestId};
//!
//! let limits = FrameLimits::default();
//! let req = GetRequest { ctx: RequestContext::default(), key: b"k".to_vec() };
//! let mut wire = Vec::new();
//! encode_frame(&mut wire, &req, FrameFlags::NONE, RegionId(1), RequestId(9), &limits)?;
//!
//! let mut dec = FrameDecoder::new(limits);
//! assert_eq!(dec.feed(&wire), wire.len());
//! let frame = dec.next_frame()?.expect("a whole frame was fed");
//! assert_eq!(frame.header.request_id, RequestId(9));
//! assert_eq!(frame.message(&limits).unwrap(), AnyMessage::GetRequest(req));
//! # Ok::<(), ekv_proto::frame::FrameError>(())
//! ```
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

pub mod codec;
pub mod frame;
mod ids;
pub mod msg;
mod region;

pub use ids::{PeerId, RegionId, RequestId, ShardId, StoreId};
pub use region::{PeerMeta, Region, RegionEpoch, MAX_KEY_LEN, MAX_PEERS};
