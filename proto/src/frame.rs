//! The wire frame: a fixed 32-byte header and a body, plus the limits every
//! decoder enforces and an incremental [`FrameDecoder`] for socket input.
//!
//! Header layout, every integer little-endian:
//!
//! ```text
//! offset size field
//!      0    4 magic          b"EKV1"
//!      4    1 version        PROTOCOL_VERSION (1)
//!      5    2 msg_type       u16, see msg::MsgType
//!      7    1 flags          bit 0 RESPONSE, bit 1 ERROR, others must be 0
//!      8    8 region_id      u64, the region the frame is about (0 = none)
//!     16    8 request_id     u64, echoed by the response
//!     24    4 body_len       u32, bytes of body after the header
//!     28    4 header_crc     crc32c of bytes 0..28
//!     32      body           body_len bytes, encoded by the msg codecs
//! ```
//!
//! The header checksum catches a desynchronised stream (a peer that wrote a
//! partial frame) before a garbage `body_len` is trusted; the body has no
//! checksum of its own because TCP covers it and every body decoder is
//! bounded and total.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::crc32c;
use crate::msg::{AnyMessage, Message, MsgType};
use crate::{RegionId, RequestId, MAX_KEY_LEN};

/// First four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"EKV1";
/// The one protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 1;
/// Bytes in a [`FrameHeader`].
pub const HEADER_LEN: usize = 32;
/// Header bytes the checksum covers (everything before it).
const CRC_COVERED: usize = 28;

/// Why a frame was refused.
///
/// Only [`FrameError::UnknownType`] leaves the stream in sync (the body can
/// be skipped); after any other error the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer than [`HEADER_LEN`] bytes were given to [`FrameHeader::decode_from`].
    #[error("truncated frame header: need {need} bytes, have {have}")]
    Incomplete {
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        have: usize,
    },
    /// The first four bytes are not [`MAGIC`].
    #[error("bad frame magic {found:02x?}")]
    BadMagic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// A protocol version this build does not speak.
    #[error("unsupported protocol version {found}, expected {PROTOCOL_VERSION}")]
    UnsupportedVersion {
        /// The version found.
        found: u8,
    },
    /// The header checksum does not match the header.
    #[error("frame header checksum mismatch: stored {expected:#010x}, computed {got:#010x}")]
    ChecksumMismatch {
        /// Checksum computed over the header.
        got: u32,
        /// Checksum stored in the header.
        expected: u32,
    },
    /// Reserved flag bits set, or ERROR without RESPONSE, or ERROR on a type
    /// other than [`MsgType::ErrorResponse`] (and the reverse).
    #[error("invalid frame flags {flags:#04x} for message type {msg_type:#06x}")]
    BadFlags {
        /// The flags found.
        flags: u8,
        /// The message type beside them.
        msg_type: u16,
    },
    /// The body is longer than the limit.
    #[error("frame body of {len} bytes exceeds the limit {limit}")]
    TooLarge {
        /// The body length.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// A message type this build does not know. The frame itself is intact.
    #[error("unknown message type {value:#06x}")]
    UnknownType {
        /// The type found.
        value: u16,
    },
}

/// Bit set of frame flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FrameFlags(u8);

impl FrameFlags {
    /// No flags: a request.
    pub const NONE: FrameFlags = FrameFlags(0);
    /// The frame answers a request with the same request id.
    pub const RESPONSE: FrameFlags = FrameFlags(0x01);
    /// The body is an [`crate::msg::ErrorResponse`]; set together with RESPONSE.
    pub const ERROR: FrameFlags = FrameFlags(0x02);
    const KNOWN: u8 = 0x03;

    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// True when every bit of `other` is set in `self`.
    pub const fn contains(self, other: FrameFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of two sets.
    pub const fn union(self, other: FrameFlags) -> FrameFlags {
        FrameFlags(self.0 | other.0)
    }
}

/// The decoded fixed header of a frame (layout in the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Raw message type; [`FrameHeader::kind`] maps it to a [`MsgType`]. Kept
    /// raw so that a server can answer an unknown type with the request id.
    pub msg_type: u16,
    /// Flags.
    pub flags: FrameFlags,
    /// The region the frame is about; 0 for store- or cluster-level messages.
    pub region_id: RegionId,
    /// Matches a response to its request.
    pub request_id: RequestId,
    /// Body bytes after the header. Invariant after decode: <= the limit.
    pub body_len: u32,
}

impl FrameHeader {
    /// A header for a body of `body_len` bytes of type `ty`.
    pub fn new(
        ty: MsgType,
        flags: FrameFlags,
        region_id: RegionId,
        request_id: RequestId,
        body_len: u32,
    ) -> Self {
        Self { msg_type: ty as u16, flags, region_id, request_id, body_len }
    }

    /// The message type, if this build knows it.
    ///
    /// # Errors
    /// [`FrameError::UnknownType`]; the frame is intact and may be skipped.
    pub fn kind(&self) -> Result<MsgType, FrameError> {
        MsgType::from_u16(self.msg_type).ok_or(FrameError::UnknownType { value: self.msg_type })
    }

    /// Writes the header, checksum included.
    pub fn encode_into(&self, out: &mut [u8; HEADER_LEN]) {
        out[0..4].copy_from_slice(&MAGIC);
        out[4] = PROTOCOL_VERSION;
        out[5..7].copy_from_slice(&self.msg_type.to_le_bytes());
        out[7] = self.flags.0;
        out[8..16].copy_from_slice(&self.region_id.get().to_le_bytes());
        out[16..24].copy_from_slice(&self.request_id.get().to_le_bytes());
        out[24..28].copy_from_slice(&self.body_len.to_le_bytes());
        let crc = crc32c(0, &out[..CRC_COVERED]);
        out[28..32].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes the first [`HEADER_LEN`] bytes of `buf`, checking in order
    /// magic, version, checksum, flags and the body length against
    /// `limits.max_frame_body`. Allocates nothing. An unknown message type is
    /// not an error here (see [`FrameHeader::kind`]).
    ///
    /// # Errors
    /// The [`FrameError`] of the first check that fails.
    pub fn decode_from(buf: &[u8], limits: &FrameLimits) -> Result<FrameHeader, FrameError> {
        let Some(h) = buf.first_chunk::<HEADER_LEN>() else {
            return Err(FrameError::Incomplete { need: HEADER_LEN, have: buf.len() });
        };
        let le16 = |at: usize| u16::from_le_bytes([h[at], h[at + 1]]);
        let le32 = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let le64 = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let magic = [h[0], h[1], h[2], h[3]];
        if magic != MAGIC {
            return Err(FrameError::BadMagic { found: magic });
        }
        if h[4] != PROTOCOL_VERSION {
            return Err(FrameError::UnsupportedVersion { found: h[4] });
        }
        let expected = le32(28);
        let got = crc32c(0, &h[..CRC_COVERED]);
        if got != expected {
            return Err(FrameError::ChecksumMismatch { got, expected });
        }
        let msg_type = le16(5);
        let flags = FrameFlags(h[7]);
        let is_error_type = msg_type == MsgType::ErrorResponse as u16;
        if flags.0 & !FrameFlags::KNOWN != 0
            || flags.contains(FrameFlags::ERROR) != is_error_type
            || (is_error_type && !flags.contains(FrameFlags::RESPONSE))
        {
            return Err(FrameError::BadFlags { flags: flags.0, msg_type });
        }
        let body_len = le32(24);
        if body_len > limits.max_frame_body {
            return Err(FrameError::TooLarge {
                len: u64::from(body_len),
                limit: u64::from(limits.max_frame_body),
            });
        }
        Ok(FrameHeader {
            msg_type,
            flags,
            region_id: RegionId(le64(8)),
            request_id: RequestId(le64(16)),
            body_len,
        })
    }
}

/// Why a [`FrameLimits`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid frame limit {field}: {reason}")]
pub struct LimitsError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Bounds every decoder checks before it allocates. Both ends of a
/// connection should use the same values; the defaults are safe for a
/// server facing untrusted clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Longest frame body. Default 16 MiB.
    pub max_frame_body: u32,
    /// Longest key. Default and maximum [`MAX_KEY_LEN`] (64 KiB).
    pub max_key: usize,
    /// Longest value. Default 8 MiB.
    pub max_value: usize,
    /// Most entries in a batch (batch get/put/delete, split keys, raft
    /// batches, store lists). Default 10,000.
    pub max_batch: usize,
    /// Largest scan limit, and most pairs or regions a scan answer carries.
    /// Default 10,000.
    pub max_scan_limit: u32,
}

impl Default for FrameLimits {
    fn default() -> Self {
        Self {
            max_frame_body: 16 << 20,
            max_key: MAX_KEY_LEN,
            max_value: 8 << 20,
            max_batch: 10_000,
            max_scan_limit: 10_000,
        }
    }
}

impl FrameLimits {
    /// Smallest `max_frame_body` accepted: room for a max key and some value.
    pub const MIN_FRAME_BODY: u32 = 128 << 10;

    /// Checks that the limits are consistent: a body can hold a max key and
    /// a max value, nothing is zero, keys fit a region boundary.
    ///
    /// # Errors
    /// [`LimitsError`] naming the first bad field.
    pub fn validate(&self) -> Result<(), LimitsError> {
        let bad = |field, reason| Err(LimitsError { field, reason });
        if self.max_frame_body < Self::MIN_FRAME_BODY {
            return bad("max_frame_body", "below MIN_FRAME_BODY (128 KiB)");
        }
        if self.max_key == 0 || self.max_key > MAX_KEY_LEN {
            return bad("max_key", "must be in 1..=MAX_KEY_LEN");
        }
        if self.max_value == 0 {
            return bad("max_value", "must be positive");
        }
        // The request must fit in one frame with its envelope (cf, epoch, varints).
        if (self.max_key as u64 + self.max_value as u64 + 1024) > u64::from(self.max_frame_body) {
            return bad("max_value", "max_key + max_value + 1 KiB must fit in max_frame_body");
        }
        if self.max_batch == 0 {
            return bad("max_batch", "must be positive");
        }
        if self.max_scan_limit == 0 {
            return bad("max_scan_limit", "must be positive");
        }
        Ok(())
    }
}

/// One whole frame: its header and its body bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The checked header.
    pub header: FrameHeader,
    /// Exactly `header.body_len` bytes.
    pub body: Bytes,
}

impl Frame {
    /// Decodes the body as the message its header names.
    ///
    /// # Errors
    /// The [`crate::msg::ErrorResponse`] to answer with: BadRequest for an
    /// unknown type or a malformed or over-limit body.
    pub fn message(&self, limits: &FrameLimits) -> Result<AnyMessage, crate::msg::ErrorResponse> {
        let ty = self.header.kind()?;
        Ok(AnyMessage::decode_from(ty, &self.body, limits)?)
    }
}

/// Appends one frame carrying `msg` to `out`: header then body. The flags
/// are made consistent with the type: RESPONSE and ERROR are set for an
/// [`crate::msg::ErrorResponse`], ERROR is cleared for any other message.
///
/// # Errors
/// [`FrameError::TooLarge`] when the body exceeds `limits.max_frame_body`;
/// `out` is then left as it was.
pub fn encode_frame<M: Message>(
    out: &mut Vec<u8>,
    msg: &M,
    flags: FrameFlags,
    region_id: RegionId,
    request_id: RequestId,
    limits: &FrameLimits,
) -> Result<(), FrameError> {
    let start = out.len();
    out.put_slice(&[0u8; HEADER_LEN]);
    msg.encode_into(out);
    let body_len = out.len() - start - HEADER_LEN;
    if body_len > limits.max_frame_body as usize {
        out.truncate(start);
        return Err(FrameError::TooLarge { len: body_len as u64, limit: u64::from(limits.max_frame_body) });
    }
    let flags = if M::TYPE == MsgType::ErrorResponse {
        flags.union(FrameFlags::ERROR).union(FrameFlags::RESPONSE)
    } else {
        FrameFlags(flags.0 & !FrameFlags::ERROR.0)
    };
    let header = FrameHeader::new(M::TYPE, flags, region_id, request_id, body_len as u32);
    let mut h = [0u8; HEADER_LEN];
    header.encode_into(&mut h);
    out[start..start + HEADER_LEN].copy_from_slice(&h);
    Ok(())
}

/// Reassembles frames from bytes as they arrive from a socket.
///
/// It holds at most one frame: [`FrameDecoder::feed`] accepts bytes only up
/// to the end of the frame in progress, and the header (with its body
/// length) is checked as soon as its 32 bytes are in, before any body byte
/// is stored. Use:
///
/// ```
/// # use ekv_proto::frame::{FrameDecoder, FrameLimits};
/// # fn handle(_: ekv_proto::frame::Frame) {}
/// let mut dec = FrameDecoder::new(FrameLimits::default());
/// let mut input: &[u8] = &[]; // bytes just read from the socket
/// while !input.is_empty() {
///     let n = dec.feed(input);
///     input = &input[n..];
///     while let Some(frame) = dec.next_frame()? {
///         handle(frame);
///     }
/// }
/// # Ok::<(), ekv_proto::frame::FrameError>(())
/// ```
///
/// After an error the decoder stays failed (the stream is out of sync):
/// close the connection.
#[derive(Debug)]
pub struct FrameDecoder {
    limits: FrameLimits,
    buf: BytesMut,
    /// Set once the header of the frame in progress has been checked.
    header: Option<FrameHeader>,
    failed: Option<FrameError>,
}

impl FrameDecoder {
    /// Initial body reservation cap: a trickling peer cannot make us reserve
    /// a whole max-size body up front.
    const RESERVE_CAP: usize = 64 << 10;

    /// A decoder enforcing `limits`.
    pub fn new(limits: FrameLimits) -> Self {
        Self { limits, buf: BytesMut::new(), header: None, failed: None }
    }

    /// Bytes buffered for the frame in progress.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes still needed to complete the frame in progress (the header's
    /// remainder until it is in). 0 when a frame is ready or after an error.
    pub fn needed(&self) -> usize {
        if self.failed.is_some() {
            return 0;
        }
        self.frame_end().saturating_sub(self.buf.len())
    }

    fn frame_end(&self) -> usize {
        match self.header {
            None => HEADER_LEN,
            Some(h) => HEADER_LEN + h.body_len as usize,
        }
    }

    /// Takes a prefix of `data`, up to the end of the frame in progress, and
    /// returns its length. Call [`FrameDecoder::next_frame`] and feed the
    /// rest; a return of 0 means a frame is ready or the decoder failed.
    pub fn feed(&mut self, data: &[u8]) -> usize {
        let mut taken = 0;
        while self.failed.is_none() {
            let n = (self.frame_end() - self.buf.len()).min(data.len() - taken);
            if n == 0 {
                break; // Input used up, or a whole frame waits for next_frame.
            }
            self.buf.extend_from_slice(&data[taken..taken + n]);
            taken += n;
            if self.header.is_none() && self.buf.len() == HEADER_LEN {
                match FrameHeader::decode_from(&self.buf, &self.limits) {
                    Ok(h) => {
                        self.buf.reserve((h.body_len as usize).min(Self::RESERVE_CAP));
                        self.header = Some(h);
                    }
                    Err(e) => self.failed = Some(e),
                }
            }
        }
        taken
    }

    /// The next whole frame, `Ok(None)` while incomplete.
    ///
    /// # Errors
    /// The [`FrameError`] that failed the stream, again on every call.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let Some(header) = self.header else { return Ok(None) };
        if self.buf.len() < self.frame_end() {
            return Ok(None);
        }
        let mut frame = self.buf.split_to(self.frame_end());
        let body = frame.split_off(HEADER_LEN).freeze();
        self.header = None;
        Ok(Some(Frame { header, body }))
    }
}

/// Fuzz entry point. If the first byte is even, the rest is a raw byte
/// stream; if odd, the rest describes frames (`type selector u8 | flags u8 |
/// body len u8 | body`) that get a valid header, so that the fuzzer reaches
/// the body decoders through the frame path. Either stream is fed to a
/// [`FrameDecoder`] in chunks of varying size and every whole frame's body
/// is decoded as its type. Must never panic or buffer more than one frame.
pub fn fuzz_frame_decoder(data: &[u8]) {
    let limits = FrameLimits { max_frame_body: FrameLimits::MIN_FRAME_BODY, ..FrameLimits::default() };
    let stream = match data.split_first() {
        Some((mode, rest)) if mode & 1 == 1 => frames_from(rest),
        Some((_, rest)) => rest.to_vec(),
        None => return,
    };
    let mut dec = FrameDecoder::new(limits);
    let mut input = &stream[..];
    let mut step = 1;
    while !input.is_empty() {
        let chunk = &input[..step.min(input.len())];
        let n = dec.feed(chunk);
        input = &input[n..];
        assert!(dec.buffered() <= HEADER_LEN + limits.max_frame_body as usize);
        loop {
            match dec.next_frame() {
                Ok(Some(frame)) => {
                    assert_eq!(frame.body.len(), frame.header.body_len as usize);
                    let _ = frame.message(&limits);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        // Vary the chunk size: 1, 2, ... up to 64, then wrap.
        step = step % 64 + 1;
    }
}

/// Builds a frame stream with valid headers from a fuzzer's description.
fn frames_from(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let [sel, flags, len, rest @ ..] = data {
        // Mostly known types; a selector past the table is an unknown type.
        let ty = MsgType::ALL.get(*sel as usize).map_or(u16::from(*sel) << 8 | 0xff, |t| *t as u16);
        let body = &rest[..(*len as usize).min(rest.len())];
        let header = FrameHeader {
            msg_type: ty,
            flags: FrameFlags(*flags),
            region_id: RegionId(u64::from(*sel)),
            request_id: RequestId(out.len() as u64),
            body_len: u32::from(*len),
        };
        let mut h = [0u8; HEADER_LEN];
        header.encode_into(&mut h);
        out.extend_from_slice(&h);
        out.extend_from_slice(body);
        data = &rest[body.len()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{GetRequest, RequestContext};

    fn header() -> FrameHeader {
        FrameHeader::new(MsgType::GetRequest, FrameFlags::NONE, RegionId(7), RequestId(42), 100)
    }

    fn encoded(h: &FrameHeader) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        h.encode_into(&mut b);
        b
    }

    fn reseal(b: &mut [u8; HEADER_LEN]) {
        let crc = crc32c(0, &b[..CRC_COVERED]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn header_round_trips_with_fixed_layout() {
        let h = header();
        let b = encoded(&h);
        assert_eq!(&b[0..4], b"EKV1");
        assert_eq!(b[4], 1);
        assert_eq!(u16::from_le_bytes([b[5], b[6]]), MsgType::GetRequest as u16);
        assert_eq!(b[8], 7);
        assert_eq!(b[16], 42);
        assert_eq!(b[24], 100);
        assert_eq!(FrameHeader::decode_from(&b, &FrameLimits::default()), Ok(h));
        for cut in 0..HEADER_LEN {
            assert_eq!(
                FrameHeader::decode_from(&b[..cut], &FrameLimits::default()),
                Err(FrameError::Incomplete { need: HEADER_LEN, have: cut })
            );
        }
    }

    #[test]
    fn header_refuses_bad_magic_version_checksum_flags_and_size() {
        let l = FrameLimits::default();
        let mut b = encoded(&header());
        b[0] = b'X';
        reseal(&mut b);
        assert_eq!(FrameHeader::decode_from(&b, &l), Err(FrameError::BadMagic { found: *b"XKV1" }));

        let mut b = encoded(&header());
        b[4] = 2;
        reseal(&mut b);
        assert_eq!(FrameHeader::decode_from(&b, &l), Err(FrameError::UnsupportedVersion { found: 2 }));

        let mut b = encoded(&header());
        b[20] ^= 1;
        assert!(matches!(FrameHeader::decode_from(&b, &l), Err(FrameError::ChecksumMismatch { .. })));

        for flags in [0x04u8, FrameFlags::ERROR.bits(), 0x03] {
            let mut b = encoded(&header());
            b[7] = flags;
            reseal(&mut b);
            assert!(matches!(FrameHeader::decode_from(&b, &l), Err(FrameError::BadFlags { .. })), "{flags}");
        }

        let mut h = header();
        h.body_len = l.max_frame_body + 1;
        assert_eq!(
            FrameHeader::decode_from(&encoded(&h), &l),
            Err(FrameError::TooLarge { len: u64::from(h.body_len), limit: u64::from(l.max_frame_body) })
        );
        h.body_len = l.max_frame_body;
        assert!(FrameHeader::decode_from(&encoded(&h), &l).is_ok());
    }

    #[test]
    fn unknown_type_is_decoded_and_reported_by_kind() {
        let mut h = header();
        h.msg_type = 0xfff0;
        let d = FrameHeader::decode_from(&encoded(&h), &FrameLimits::default()).unwrap();
        assert_eq!(d.kind(), Err(FrameError::UnknownType { value: 0xfff0 }));
    }

    #[test]
    fn limits_default_is_valid_and_validation_catches_each_field() {
        FrameLimits::default().validate().unwrap();
        let d = FrameLimits::default();
        let cases = [
            ("max_frame_body", FrameLimits { max_frame_body: 1024, ..d }),
            ("max_key", FrameLimits { max_key: 0, ..d }),
            ("max_key", FrameLimits { max_key: MAX_KEY_LEN + 1, ..d }),
            ("max_value", FrameLimits { max_value: 0, ..d }),
            ("max_value", FrameLimits { max_value: 16 << 20, ..d }),
            ("max_batch", FrameLimits { max_batch: 0, ..d }),
            ("max_scan_limit", FrameLimits { max_scan_limit: 0, ..d }),
        ];
        for (field, l) in cases {
            assert_eq!(l.validate().unwrap_err().field, field);
        }
    }

    fn frames(n: u64) -> (Vec<u8>, Vec<GetRequest>) {
        let mut out = Vec::new();
        let mut msgs = Vec::new();
        for i in 0..n {
            let m = GetRequest { ctx: RequestContext::default(), key: vec![i as u8; i as usize] };
            encode_frame(&mut out, &m, FrameFlags::NONE, RegionId(i), RequestId(i), &FrameLimits::default())
                .unwrap();
            msgs.push(m);
        }
        (out, msgs)
    }

    fn drain(dec: &mut FrameDecoder, mut input: &[u8], got: &mut Vec<Frame>) {
        while !input.is_empty() {
            let n = dec.feed(input);
            input = &input[n..];
            while let Some(f) = dec.next_frame().unwrap() {
                got.push(f);
            }
        }
    }

    fn check(got: &[Frame], msgs: &[GetRequest]) {
        assert_eq!(got.len(), msgs.len());
        for (i, (f, m)) in got.iter().zip(msgs).enumerate() {
            assert_eq!(f.header.request_id, RequestId(i as u64));
            assert_eq!(GetRequest::decode_exact(&f.body, &FrameLimits::default()).unwrap(), *m);
        }
    }

    #[test]
    fn decoder_handles_byte_at_a_time_input() {
        let (bytes, msgs) = frames(5);
        let mut dec = FrameDecoder::new(FrameLimits::default());
        let mut got = Vec::new();
        for b in &bytes {
            drain(&mut dec, std::slice::from_ref(b), &mut got);
            assert!(dec.buffered() <= HEADER_LEN + 64);
        }
        check(&got, &msgs);
        assert_eq!(dec.buffered(), 0);
        assert_eq!(dec.needed(), HEADER_LEN);
    }

    #[test]
    fn decoder_splits_several_frames_in_one_buffer() {
        let (bytes, msgs) = frames(20);
        for chunk in [bytes.len(), 7, 33, 64] {
            let mut dec = FrameDecoder::new(FrameLimits::default());
            let mut got = Vec::new();
            for c in bytes.chunks(chunk) {
                drain(&mut dec, c, &mut got);
            }
            check(&got, &msgs);
        }
    }

    #[test]
    fn decoder_rejects_oversize_frame_before_storing_its_body() {
        let l = FrameLimits { max_frame_body: FrameLimits::MIN_FRAME_BODY, ..FrameLimits::default() };
        let mut h = header();
        h.body_len = u32::MAX;
        let mut input = encoded(&h).to_vec();
        input.extend_from_slice(&[0u8; 1000]);
        let mut dec = FrameDecoder::new(l);
        let n = dec.feed(&input);
        assert_eq!(n, HEADER_LEN, "nothing past the header is taken");
        assert_eq!(dec.buffered(), HEADER_LEN);
        let err = FrameError::TooLarge { len: u64::from(u32::MAX), limit: u64::from(l.max_frame_body) };
        assert_eq!(dec.next_frame(), Err(err.clone()));
        assert_eq!(dec.feed(&input[n..]), 0);
        assert_eq!(dec.next_frame(), Err(err));
    }

    #[test]
    fn decoder_fails_on_garbage() {
        let mut dec = FrameDecoder::new(FrameLimits::default());
        assert_eq!(dec.feed(&[0xAB; 100]), HEADER_LEN);
        assert!(matches!(dec.next_frame(), Err(FrameError::BadMagic { .. })));
    }

    #[test]
    fn encode_frame_refuses_oversize_body_and_leaves_output_alone() {
        let l = FrameLimits { max_frame_body: FrameLimits::MIN_FRAME_BODY, ..FrameLimits::default() };
        let m =
            GetRequest { ctx: RequestContext::default(), key: vec![1; FrameLimits::MIN_FRAME_BODY as usize] };
        let mut out = vec![9u8];
        let r = encode_frame(&mut out, &m, FrameFlags::NONE, RegionId(1), RequestId(1), &l);
        assert!(matches!(r, Err(FrameError::TooLarge { .. })));
        assert_eq!(out, vec![9u8]);
    }
}
