//! Message bodies: one struct and one codec pair per message, a [`MsgType`]
//! number per struct, and [`AnyMessage`] to decode a body by its type.
//!
//! Bodies are encoded by hand over [`crate::codec`] (no prost, no .proto
//! files): every integer is an LEB128 uvarint, every byte string and list
//! carries a uvarint length or count, an `Option` is a `0`/`1` tag byte then
//! the value, a bool one byte `0`/`1`, and a [`Region`](crate::Region)
//! travels as [`Region::encode_into`](crate::Region::encode_into) writes it.
//! Fields are written in declaration order. Every decode bounds each key,
//! value, batch, scan limit and string by [`FrameLimits`] before it
//! allocates, and [`Message::decode_exact`] refuses trailing bytes.
//!
//! # Message types
//!
//! Stable numbers; never renumber, only add. The high byte is the group.
//!
//! | type | name | | type | name |
//! |---|---|---|---|---|
//! | 0x0001 | ErrorResponse | | | |
//! | 0x0101 | GetRequest | | 0x0102 | GetResponse |
//! | 0x0103 | BatchGetRequest | | 0x0104 | BatchGetResponse |
//! | 0x0105 | ScanRequest | | 0x0106 | ScanResponse |
//! | 0x0107 | PutRequest | | 0x0108 | PutResponse |
//! | 0x0109 | BatchPutRequest | | 0x010a | BatchPutResponse |
//! | 0x010b | DeleteRequest | | 0x010c | DeleteResponse |
//! | 0x010d | BatchDeleteRequest | | 0x010e | BatchDeleteResponse |
//! | 0x010f | DeleteRangeRequest | | 0x0110 | DeleteRangeResponse |
//! | 0x0111 | CompareAndSwapRequest | | 0x0112 | CompareAndSwapResponse |
//! | 0x0201 | TransferLeaderRequest | | 0x0202 | TransferLeaderResponse |
//! | 0x0203 | ChangePeerRequest | | 0x0204 | ChangePeerResponse |
//! | 0x0205 | SplitRequest | | 0x0206 | SplitResponse |
//! | 0x0301 | GetRegionRequest | | 0x0302 | GetRegionResponse (also answers 0x0303) |
//! | 0x0303 | GetRegionByIdRequest | | 0x0304 | reserved |
//! | 0x0305 | ScanRegionsRequest | | 0x0306 | ScanRegionsResponse |
//! | 0x0307 | GetMembersRequest | | 0x0308 | GetMembersResponse |
//! | 0x0309 | AllocIdRequest | | 0x030a | AllocIdResponse |
//! | 0x030b | PutStoreRequest | | 0x030c | PutStoreResponse |
//! | 0x030d | GetStoreRequest | | 0x030e | GetStoreResponse |
//! | 0x030f | GetAllStoresRequest | | 0x0310 | GetAllStoresResponse |
//! | 0x0311 | StoreHeartbeatRequest | | 0x0312 | StoreHeartbeatResponse |
//! | 0x0313 | RegionHeartbeatRequest | | 0x0314 | RegionHeartbeatResponse |
//! | 0x0315 | AskBatchSplitRequest | | 0x0316 | AskBatchSplitResponse |
//! | 0x0317 | ReportBatchSplitRequest | | 0x0318 | ReportBatchSplitResponse |
//! | 0x0319 | IsBootstrappedRequest | | 0x031a | IsBootstrappedResponse |
//! | 0x031b | BootstrapRequest | | 0x031c | BootstrapResponse |
//! | 0x031d | DeleteStoreRequest | | 0x031e | DeleteStoreResponse |
//! | 0x031f | GetStatusRequest | | 0x0320 | GetStatusResponse |
//! | 0x0401 | RaftMessage (opaque, net's encoding) | | 0x0402 | SnapshotChunk (opaque, net's encoding) |

use bytes::BufMut;

use crate::codec::{DecodeError, DecodeResult, Reader};
use crate::frame::FrameLimits;
use crate::RegionEpoch;

mod admin;
mod error;
pub(crate) mod fields;
mod kv;
mod pd;
mod raft;

pub use admin::*;
pub use error::*;
pub use kv::*;
pub use pd::*;
pub use raft::*;

/// Longest column-family name.
pub const MAX_CF_LEN: usize = 255;
/// Longest free-text string (error messages, addresses, names).
pub const MAX_TEXT_LEN: usize = 4096;

/// A message body with its codec.
pub trait Message: Sized {
    /// The frame type of this message.
    const TYPE: MsgType;

    /// Appends the body.
    fn encode_into(&self, buf: &mut impl BufMut);

    /// Reads the body from `r`, bounding every length by `limits`.
    ///
    /// # Errors
    /// [`DecodeError`] for truncated, invalid or over-limit input.
    fn decode_from(r: &mut Reader<'_>, limits: &FrameLimits) -> DecodeResult<Self>;

    /// The body as a new vector.
    fn encode_into_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_into(&mut v);
        v
    }

    /// Decodes a whole body, refusing trailing bytes.
    ///
    /// # Errors
    /// As [`Message::decode_from`], plus [`DecodeError::Invalid`] with
    /// `what = "trailing bytes"` and the count left.
    fn decode_exact(body: &[u8], limits: &FrameLimits) -> DecodeResult<Self> {
        let mut r = Reader::new(body);
        let m = Self::decode_from(&mut r, limits)?;
        if !r.is_empty() {
            return Err(DecodeError::Invalid { what: "trailing bytes", value: r.remaining() as u64 });
        }
        Ok(m)
    }
}

/// What every raw KV request carries beside its region id (in the frame
/// header): the column family and the epoch the client routed with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// Column family; empty for the default.
    pub cf: String,
    /// The region epoch the client's cache holds.
    pub epoch: RegionEpoch,
}

impl RequestContext {
    /// Appends `cf | conf_ver | version`.
    pub fn encode_into(&self, buf: &mut impl BufMut) {
        fields::put_str(buf, &self.cf);
        fields::put_epoch(buf, &self.epoch);
    }

    /// Reads what [`RequestContext::encode_into`] wrote, `cf` bounded by [`MAX_CF_LEN`].
    ///
    /// # Errors
    /// [`DecodeError`] for truncated or invalid input.
    pub fn decode_from(r: &mut Reader<'_>) -> DecodeResult<Self> {
        Ok(Self { cf: fields::get_str(r, "cf", MAX_CF_LEN)?, epoch: fields::get_epoch(r)? })
    }
}

macro_rules! messages {
    ($($name:ident = $code:literal,)*) => {
        /// The type of a frame's body. Numbers are stable (see the module table).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u16)]
        #[non_exhaustive]
        pub enum MsgType {
            $(
                #[doc = concat!("A [`", stringify!($name), "`].")]
                $name = $code,
            )*
        }

        impl MsgType {
            /// Every type, in table order.
            pub const ALL: &'static [MsgType] = &[$(MsgType::$name,)*];

            /// The type numbered `v`, if known.
            pub fn from_u16(v: u16) -> Option<MsgType> {
                match v {
                    $($code => Some(MsgType::$name),)*
                    _ => None,
                }
            }

            /// The type's name, for logs.
            pub fn name(self) -> &'static str {
                match self {
                    $(MsgType::$name => stringify!($name),)*
                }
            }
        }

        // Each struct's `Message::TYPE` must be its own table entry.
        $(const _: () = assert!($name::TYPE as u16 == $code);)*

        /// Any message, decoded by its [`MsgType`].
        #[derive(Clone, Debug, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum AnyMessage {
            $(
                #[doc = concat!("A [`", stringify!($name), "`].")]
                $name($name),
            )*
        }

        impl AnyMessage {
            /// Decodes `body` as the message type `ty` names.
            ///
            /// # Errors
            /// [`DecodeError`] for a body that is not a valid `ty`.
            pub fn decode_from(ty: MsgType, body: &[u8], limits: &FrameLimits) -> DecodeResult<AnyMessage> {
                match ty {
                    $(MsgType::$name => $name::decode_exact(body, limits).map(AnyMessage::$name),)*
                }
            }

            /// The message's type.
            pub fn msg_type(&self) -> MsgType {
                match self {
                    $(AnyMessage::$name(_) => MsgType::$name,)*
                }
            }

            /// Appends the message's body.
            pub fn encode_into(&self, buf: &mut impl BufMut) {
                match self {
                    $(AnyMessage::$name(m) => m.encode_into(buf),)*
                }
            }

            /// The message's body as a new vector.
            pub fn encode_into_vec(&self) -> Vec<u8> {
                let mut v = Vec::new();
                self.encode_into(&mut v);
                v
            }
        }

        $(
            impl From<$name> for AnyMessage {
                fn from(m: $name) -> AnyMessage {
                    AnyMessage::$name(m)
                }
            }
        )*
    };
}

messages! {
    ErrorResponse = 0x0001,
    GetRequest = 0x0101,
    GetResponse = 0x0102,
    BatchGetRequest = 0x0103,
    BatchGetResponse = 0x0104,
    ScanRequest = 0x0105,
    ScanResponse = 0x0106,
    PutRequest = 0x0107,
    PutResponse = 0x0108,
    BatchPutRequest = 0x0109,
    BatchPutResponse = 0x010a,
    DeleteRequest = 0x010b,
    DeleteResponse = 0x010c,
    BatchDeleteRequest = 0x010d,
    BatchDeleteResponse = 0x010e,
    DeleteRangeRequest = 0x010f,
    DeleteRangeResponse = 0x0110,
    CompareAndSwapRequest = 0x0111,
    CompareAndSwapResponse = 0x0112,
    TransferLeaderRequest = 0x0201,
    TransferLeaderResponse = 0x0202,
    ChangePeerRequest = 0x0203,
    ChangePeerResponse = 0x0204,
    SplitRequest = 0x0205,
    SplitResponse = 0x0206,
    GetRegionRequest = 0x0301,
    GetRegionResponse = 0x0302,
    GetRegionByIdRequest = 0x0303,
    ScanRegionsRequest = 0x0305,
    ScanRegionsResponse = 0x0306,
    GetMembersRequest = 0x0307,
    GetMembersResponse = 0x0308,
    AllocIdRequest = 0x0309,
    AllocIdResponse = 0x030a,
    PutStoreRequest = 0x030b,
    PutStoreResponse = 0x030c,
    GetStoreRequest = 0x030d,
    GetStoreResponse = 0x030e,
    GetAllStoresRequest = 0x030f,
    GetAllStoresResponse = 0x0310,
    StoreHeartbeatRequest = 0x0311,
    StoreHeartbeatResponse = 0x0312,
    RegionHeartbeatRequest = 0x0313,
    RegionHeartbeatResponse = 0x0314,
    AskBatchSplitRequest = 0x0315,
    AskBatchSplitResponse = 0x0316,
    ReportBatchSplitRequest = 0x0317,
    ReportBatchSplitResponse = 0x0318,
    IsBootstrappedRequest = 0x0319,
    IsBootstrappedResponse = 0x031a,
    BootstrapRequest = 0x031b,
    BootstrapResponse = 0x031c,
    DeleteStoreRequest = 0x031d,
    DeleteStoreResponse = 0x031e,
    GetStatusRequest = 0x031f,
    GetStatusResponse = 0x0320,
    RaftMessage = 0x0401,
    SnapshotChunk = 0x0402,
}

/// Defines an empty message (an acknowledgement or a parameterless request).
macro_rules! empty_message {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name;

        impl $crate::msg::Message for $name {
            const TYPE: $crate::msg::MsgType = $crate::msg::MsgType::$name;

            fn encode_into(&self, _buf: &mut impl bytes::BufMut) {}

            fn decode_from(
                _r: &mut $crate::codec::Reader<'_>,
                _limits: &$crate::frame::FrameLimits,
            ) -> $crate::codec::DecodeResult<Self> {
                Ok($name)
            }
        }
    };
}
pub(crate) use empty_message;

/// Fuzz entry point: decodes `data` as every message type; any input must
/// end in `Ok` or `Err`, never a panic, and whatever decodes must re-encode
/// to bytes that decode to the same message.
pub fn fuzz_decode_all(data: &[u8]) {
    let limits = FrameLimits::default();
    for &ty in MsgType::ALL {
        if let Ok(m) = AnyMessage::decode_from(ty, data, &limits) {
            // The encoding is canonical except for non-minimal varints, so
            // compare by decoding the re-encoding rather than bytes.
            let again = m.encode_into_vec();
            assert_eq!(AnyMessage::decode_from(ty, &again, &limits).ok(), Some(m), "{}", ty.name());
        }
    }
}
