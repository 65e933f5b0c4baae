//! The byte codec shared by every ekv format: fixed little-endian integers,
//! LEB128 varints, length-prefixed byte strings with a bound checked before
//! anything is allocated, and CRC32C.
//!
//! Encoders write into any [`bytes::BufMut`] (a `Vec<u8>` or a pre-sized
//! `&mut [u8]`); decoders read from a [`Reader`] over a borrowed slice and
//! return [`DecodeError`], never panic, on short or hostile input.

use bytes::BufMut;

/// Why a decoder refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside `what`.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Incomplete {
        /// The field being read.
        what: &'static str,
        /// Bytes the field needs.
        need: u64,
        /// Bytes left in the input.
        have: u64,
    },
    /// A length prefix exceeds the limit the caller set for `what`.
    #[error("{what} length {len} exceeds the limit {limit}")]
    TooLarge {
        /// The field being read.
        what: &'static str,
        /// The length found.
        len: u64,
        /// The caller's bound.
        limit: u64,
    },
    /// A field holds a value outside its domain (an unknown tag, a varint
    /// longer than 10 bytes, ...).
    #[error("invalid {what}: {value}")]
    Invalid {
        /// The field being read.
        what: &'static str,
        /// The offending value.
        value: u64,
    },
    /// A checksum did not match its data.
    #[error("checksum mismatch: stored {expected:#010x}, computed {got:#010x}")]
    ChecksumMismatch {
        /// Checksum computed over the data.
        got: u32,
        /// Checksum stored beside it.
        expected: u32,
    },
}

/// Result of a decode.
pub type DecodeResult<T> = std::result::Result<T, DecodeError>;

/// CRC32C (Castagnoli) of `data`, continuing from `seed` (0 to start).
/// Hardware-accelerated where the CPU has SSE4.2 or ARMv8 CRC.
#[inline]
pub fn crc32c(seed: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(seed, data)
}

/// Frames a record: `version u8 | crc32c u32 LE of body | body`. The one
/// place where small versioned, checksummed records are framed.
pub fn framed(version: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(version);
    out.extend_from_slice(&crc32c(0, body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// The body of a record made by [`framed`], after checking its version
/// (`what` names the record in errors) and checksum.
///
/// # Errors
/// [`DecodeError::Invalid`] for another version, [`DecodeError::ChecksumMismatch`],
/// [`DecodeError::Incomplete`] for a truncated header.
pub fn unframe<'a>(data: &'a [u8], version: u8, what: &'static str) -> DecodeResult<&'a [u8]> {
    let mut r = Reader::new(data);
    let v = r.u8(what)?;
    if v != version {
        return Err(DecodeError::Invalid { what, value: u64::from(v) });
    }
    let expected = r.u32_le(what)?;
    let body = &data[r.position()..];
    let got = crc32c(0, body);
    if got != expected {
        return Err(DecodeError::ChecksumMismatch { got, expected });
    }
    Ok(body)
}

/// CRC32C of `a || b` from `crc32c(0, a)`, `crc32c(0, b)` and `b.len()`:
/// lets a writer checksum each piece of a record once.
#[inline]
pub fn crc32c_combine(crc_a: u32, crc_b: u32, len_b: usize) -> u32 {
    crc32c::crc32c_combine(crc_a, crc_b, len_b)
}

/// Bytes [`put_uvarint`] writes for `v` (1..=10).
#[inline]
pub const fn uvarint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Writes `v` as an LEB128 varint.
#[inline]
pub fn put_uvarint(buf: &mut impl BufMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Writes `data` prefixed by its length as a varint.
#[inline]
pub fn put_len_prefixed(buf: &mut impl BufMut, data: &[u8]) {
    put_uvarint(buf, data.len() as u64);
    buf.put_slice(data);
}

/// Bytes [`put_len_prefixed`] writes for a string of `len` bytes.
#[inline]
pub const fn len_prefixed_len(len: usize) -> usize {
    uvarint_len(len as u64) + len
}

/// A cursor over borrowed bytes whose every read is bounds-checked.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Offset of the next byte to read from the start of the input.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// True when nothing is left.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, what: &'static str, n: usize) -> DecodeResult<&'a [u8]> {
        if n > self.remaining() {
            return Err(DecodeError::Incomplete { what, need: n as u64, have: self.remaining() as u64 });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> DecodeResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(what, N)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self, what: &'static str) -> DecodeResult<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    /// A little-endian u32.
    pub fn u32_le(&mut self, what: &'static str) -> DecodeResult<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// A little-endian u64.
    pub fn u64_le(&mut self, what: &'static str) -> DecodeResult<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// An LEB128 varint of at most 10 bytes.
    pub fn uvarint(&mut self, what: &'static str) -> DecodeResult<u64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8(what)?;
            let chunk = u64::from(b & 0x7f);
            // The tenth byte may carry only the top bit of a u64.
            if i == 9 && b > 1 {
                return Err(DecodeError::Invalid { what, value: u64::from(b) });
            }
            v |= chunk << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Invalid { what, value: v })
    }

    /// A byte string written by [`put_len_prefixed`], refused before it is
    /// read if longer than `limit`.
    pub fn len_prefixed(&mut self, what: &'static str, limit: usize) -> DecodeResult<&'a [u8]> {
        let len = self.uvarint(what)?;
        if len > limit as u64 {
            return Err(DecodeError::TooLarge { what, len, limit: limit as u64 });
        }
        self.bytes(what, len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framed_records_check_version_and_checksum() {
        let rec = framed(3, b"body");
        assert_eq!(unframe(&rec, 3, "rec").unwrap(), b"body");
        assert!(matches!(unframe(&rec, 4, "rec"), Err(DecodeError::Invalid { .. })));
        for i in 0..rec.len() {
            let mut bad = rec.clone();
            bad[i] ^= 0x20;
            assert!(unframe(&bad, 3, "rec").is_err(), "flip at {i}");
        }
        for cut in 0..5 {
            assert!(matches!(unframe(&rec[..cut], 3, "rec"), Err(DecodeError::Incomplete { .. })));
        }
    }
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn uvarint_round_trips(v in any::<u64>()) {
            let mut buf = Vec::new();
            put_uvarint(&mut buf, v);
            prop_assert_eq!(buf.len(), uvarint_len(v));
            let mut r = Reader::new(&buf);
            prop_assert_eq!(r.uvarint("v").unwrap(), v);
            prop_assert!(r.is_empty());
        }

        #[test]
        fn truncated_input_is_an_error_not_a_panic(data in proptest::collection::vec(any::<u8>(), 0..40), limit in 0usize..64) {
            let mut r = Reader::new(&data);
            // Whatever the bytes, reading must end in Ok or Err.
            let _ = r.len_prefixed("s", limit);
            let _ = r.uvarint("v");
            let _ = r.u64_le("x");
        }
    }

    #[test]
    fn len_prefixed_is_bounded_before_reading() {
        let mut buf = Vec::new();
        put_len_prefixed(&mut buf, &[7u8; 100]);
        assert_eq!(
            Reader::new(&buf).len_prefixed("key", 99),
            Err(DecodeError::TooLarge { what: "key", len: 100, limit: 99 })
        );
        assert_eq!(Reader::new(&buf).len_prefixed("key", 100).unwrap(), &[7u8; 100][..]);
        assert!(matches!(
            Reader::new(&buf[..50]).len_prefixed("key", 100),
            Err(DecodeError::Incomplete { .. })
        ));
    }

    #[test]
    fn overlong_varint_is_invalid() {
        let buf = [0xffu8; 11];
        assert!(matches!(Reader::new(&buf).uvarint("v"), Err(DecodeError::Invalid { .. })));
        let mut max = Vec::new();
        put_uvarint(&mut max, u64::MAX);
        assert_eq!(max.len(), 10);
        assert_eq!(Reader::new(&max).uvarint("v").unwrap(), u64::MAX);
    }

    #[test]
    fn crc32c_combine_matches_one_pass() {
        let (a, b) = (b"thread-per-core ".as_slice(), b"write-ahead log".as_slice());
        let whole = [a, b].concat();
        assert_eq!(crc32c_combine(crc32c(0, a), crc32c(0, b), b.len()), crc32c(0, &whole));
    }

    #[test]
    fn crc32c_known_vector() {
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c(0, &[0u8; 32]), 0x8a91_36aa);
    }
}
