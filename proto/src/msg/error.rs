//! Typed wire errors with stable numeric codes, and the one place where the
//! proto crate's own errors map to them.
//!
//! # Error codes
//!
//! Stable; never renumber, only add. Code 0 is never sent.
//!
//! | code | variant | applied? | client action |
//! |---|---|---|---|
//! | 1 | NotLeader { leader } | no | update leader (if given), retry |
//! | 2 | EpochNotMatch { regions } | no | replace cached regions, re-route, retry |
//! | 3 | RegionNotFound { region } | no | drop region from cache, re-route, retry |
//! | 4 | KeyNotInRegion { key, region, start, end } | no | re-route, retry |
//! | 5 | ServerBusy | no | back off, retry |
//! | 6 | StoreNotMatch { expected, actual } | no | refresh store address, retry |
//! | 7 | FrameTooLarge { len, limit } | no | split the request; do not retry as is |
//! | 8 | BadRequest { message } | no | a bug: do not retry |
//! | 9 | Timeout | no | retry within the caller's deadline |
//! | 10 | StaleCommand | no | retry |
//! | 11 | OutcomeUnknown | unknown | report to the caller; retry only idempotent commands |
//!
//! Timeout means the server gave up before proposing the command; a write
//! whose proposal was made and whose result is lost is OutcomeUnknown.
//! StaleCommand means the proposal was dropped by raft (leader or term
//! change) before it committed, so it certainly did not apply.
//!
//! Body layout of [`ErrorResponse`]: `code u16 LE | payload len-prefixed`,
//! the payload holding the variant's fields in declaration order. A payload
//! may carry trailing fields a newer peer added (ignored), and an unknown
//! code decodes as [`WireError::Unrecognized`], so that an old client still
//! reads a newer server's errors.

use bytes::BufMut;

use super::fields::{
    get_bytes, get_list, get_opt_peer, get_region, get_str, get_u64, put_bytes, put_list, put_opt_peer,
    put_region, put_str, put_u64,
};
use super::{Message, MsgType, MAX_TEXT_LEN};
use crate::codec::{put_len_prefixed, DecodeError, DecodeResult, Reader};
use crate::frame::{FrameError, FrameLimits};
use crate::{PeerMeta, Region, RegionId, StoreId, MAX_KEY_LEN};

/// Stable error codes (see the module table).
pub mod code {
    /// [`super::WireError::NotLeader`].
    pub const NOT_LEADER: u16 = 1;
    /// [`super::WireError::EpochNotMatch`].
    pub const EPOCH_NOT_MATCH: u16 = 2;
    /// [`super::WireError::RegionNotFound`].
    pub const REGION_NOT_FOUND: u16 = 3;
    /// [`super::WireError::KeyNotInRegion`].
    pub const KEY_NOT_IN_REGION: u16 = 4;
    /// [`super::WireError::ServerBusy`].
    pub const SERVER_BUSY: u16 = 5;
    /// [`super::WireError::StoreNotMatch`].
    pub const STORE_NOT_MATCH: u16 = 6;
    /// [`super::WireError::FrameTooLarge`].
    pub const FRAME_TOO_LARGE: u16 = 7;
    /// [`super::WireError::BadRequest`].
    pub const BAD_REQUEST: u16 = 8;
    /// [`super::WireError::Timeout`].
    pub const TIMEOUT: u16 = 9;
    /// [`super::WireError::StaleCommand`].
    pub const STALE_COMMAND: u16 = 10;
    /// [`super::WireError::OutcomeUnknown`].
    pub const OUTCOME_UNKNOWN: u16 = 11;
}

/// Why a request failed, as the client sees it. Match on variants or
/// [`WireError::code`], never on the text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The peer addressed is not the leader.
    #[error("not leader; leader is {leader:?}")]
    NotLeader {
        /// The leader, if the peer knows it.
        leader: Option<PeerMeta>,
    },
    /// The request's epoch is stale (or ahead).
    #[error("epoch not match; {} current regions", regions.len())]
    EpochNotMatch {
        /// The regions now covering the old range (after a split, all of them).
        regions: Vec<Region>,
    },
    /// No peer of the region on this store (or shard).
    #[error("{region} not found")]
    RegionNotFound {
        /// The region asked for.
        region: RegionId,
    },
    /// A key of the request lies outside the region.
    #[error("key not in {region}")]
    KeyNotInRegion {
        /// The key.
        key: Vec<u8>,
        /// The region.
        region: RegionId,
        /// Its start.
        start: Vec<u8>,
        /// Its end.
        end: Vec<u8>,
    },
    /// The server sheds load: a queue is full.
    #[error("server busy")]
    ServerBusy,
    /// The request reached the wrong store.
    #[error("store not match: expected {expected}, actual {actual}")]
    StoreNotMatch {
        /// The store the request was meant for.
        expected: StoreId,
        /// The store that received it.
        actual: StoreId,
    },
    /// The request frame (or its answer) exceeds a limit.
    #[error("frame of {len} bytes exceeds the limit {limit}")]
    FrameTooLarge {
        /// The size.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// The request is malformed; retrying it cannot help.
    #[error("bad request: {message}")]
    BadRequest {
        /// What is wrong, for logs.
        message: String,
    },
    /// The server gave up before proposing the command: not applied.
    #[error("timeout")]
    Timeout,
    /// The command was proposed but dropped before commit: not applied.
    #[error("stale command")]
    StaleCommand,
    /// The command may or may not have applied.
    #[error("outcome unknown")]
    OutcomeUnknown,
    /// A code this build does not know (sent by a newer peer).
    #[error("unrecognized error code {code}")]
    Unrecognized {
        /// The code received.
        code: u16,
    },
}

impl WireError {
    /// The stable code (see [`code`]).
    pub fn code(&self) -> u16 {
        match self {
            WireError::NotLeader { .. } => code::NOT_LEADER,
            WireError::EpochNotMatch { .. } => code::EPOCH_NOT_MATCH,
            WireError::RegionNotFound { .. } => code::REGION_NOT_FOUND,
            WireError::KeyNotInRegion { .. } => code::KEY_NOT_IN_REGION,
            WireError::ServerBusy => code::SERVER_BUSY,
            WireError::StoreNotMatch { .. } => code::STORE_NOT_MATCH,
            WireError::FrameTooLarge { .. } => code::FRAME_TOO_LARGE,
            WireError::BadRequest { .. } => code::BAD_REQUEST,
            WireError::Timeout => code::TIMEOUT,
            WireError::StaleCommand => code::STALE_COMMAND,
            WireError::OutcomeUnknown => code::OUTCOME_UNKNOWN,
            WireError::Unrecognized { code } => *code,
        }
    }

    /// True when the request certainly had no effect, so that even a
    /// non-idempotent command may be retried. False for
    /// [`WireError::OutcomeUnknown`] and codes this build does not know.
    pub fn definitely_not_applied(&self) -> bool {
        !matches!(self, WireError::OutcomeUnknown | WireError::Unrecognized { .. })
    }

    fn put_payload(&self, buf: &mut Vec<u8>) {
        match self {
            WireError::NotLeader { leader } => put_opt_peer(buf, leader.as_ref()),
            WireError::EpochNotMatch { regions } => put_list(buf, regions, put_region),
            WireError::RegionNotFound { region } => put_u64(buf, region.get()),
            WireError::KeyNotInRegion { key, region, start, end } => {
                put_bytes(buf, key);
                put_u64(buf, region.get());
                put_bytes(buf, start);
                put_bytes(buf, end);
            }
            WireError::StoreNotMatch { expected, actual } => {
                put_u64(buf, expected.get());
                put_u64(buf, actual.get());
            }
            WireError::FrameTooLarge { len, limit } => {
                put_u64(buf, *len);
                put_u64(buf, *limit);
            }
            WireError::BadRequest { message } => put_str(buf, message),
            WireError::ServerBusy
            | WireError::Timeout
            | WireError::StaleCommand
            | WireError::OutcomeUnknown
            | WireError::Unrecognized { .. } => {}
        }
    }

    fn get_payload(code: u16, r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<WireError> {
        Ok(match code {
            code::NOT_LEADER => WireError::NotLeader { leader: get_opt_peer(r, "leader")? },
            // A split can leave at most max_batch + 1 regions where one was.
            code::EPOCH_NOT_MATCH => {
                WireError::EpochNotMatch { regions: get_list(r, "regions", l.max_batch + 1, get_region)? }
            }
            code::REGION_NOT_FOUND => {
                WireError::RegionNotFound { region: RegionId(get_u64(r, "region id")?) }
            }
            code::KEY_NOT_IN_REGION => WireError::KeyNotInRegion {
                key: get_bytes(r, "key", l.max_key)?,
                region: RegionId(get_u64(r, "region id")?),
                start: get_bytes(r, "region start", MAX_KEY_LEN)?,
                end: get_bytes(r, "region end", MAX_KEY_LEN)?,
            },
            code::SERVER_BUSY => WireError::ServerBusy,
            code::STORE_NOT_MATCH => WireError::StoreNotMatch {
                expected: StoreId(get_u64(r, "store id")?),
                actual: StoreId(get_u64(r, "store id")?),
            },
            code::FRAME_TOO_LARGE => WireError::FrameTooLarge {
                len: get_u64(r, "frame length")?,
                limit: get_u64(r, "frame limit")?,
            },
            code::BAD_REQUEST => WireError::BadRequest { message: get_str(r, "message", MAX_TEXT_LEN)? },
            code::TIMEOUT => WireError::Timeout,
            code::STALE_COMMAND => WireError::StaleCommand,
            code::OUTCOME_UNKNOWN => WireError::OutcomeUnknown,
            0 => return Err(DecodeError::Invalid { what: "error code", value: 0 }),
            code => WireError::Unrecognized { code },
        })
    }
}

/// The body of an error frame (type [`MsgType::ErrorResponse`], flags
/// RESPONSE | ERROR), answering any request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct ErrorResponse {
    /// The error.
    pub error: WireError,
}

impl ErrorResponse {
    /// The stable code of the error.
    pub fn code(&self) -> u16 {
        self.error.code()
    }

    /// A [`WireError::BadRequest`], its message cut to [`MAX_TEXT_LEN`]
    /// bytes (on a char boundary) so that it always decodes.
    pub fn bad_request(message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_TEXT_LEN {
            let mut end = MAX_TEXT_LEN;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        ErrorResponse { error: WireError::BadRequest { message } }
    }
}

impl From<WireError> for ErrorResponse {
    fn from(error: WireError) -> Self {
        ErrorResponse { error }
    }
}

impl From<FrameError> for ErrorResponse {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::TooLarge { len, limit } => WireError::FrameTooLarge { len, limit }.into(),
            e => ErrorResponse::bad_request(e.to_string()),
        }
    }
}

impl From<DecodeError> for ErrorResponse {
    fn from(e: DecodeError) -> Self {
        ErrorResponse::bad_request(e.to_string())
    }
}

impl Message for ErrorResponse {
    const TYPE: MsgType = MsgType::ErrorResponse;

    fn encode_into(&self, buf: &mut impl BufMut) {
        buf.put_u16_le(self.code());
        // The payload goes through a scratch vector for its length prefix;
        // errors are rare and small (except EpochNotMatch, still bounded).
        let mut payload = Vec::new();
        self.error.put_payload(&mut payload);
        put_len_prefixed(buf, &payload);
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        let code = u16::from_le_bytes(r.array("error code")?);
        let payload = r.len_prefixed("error payload", l.max_frame_body as usize)?;
        let error = WireError::get_payload(code, &mut Reader::new(payload), l)?;
        Ok(ErrorResponse { error })
    }
}
