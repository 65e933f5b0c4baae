//! On-disk layout of WAL segments.
//!
//! A WAL directory holds segment files named `{seq:016}.wal`, all of the same
//! size, pre-written before use. A segment is
//!
//! ```text
//! segment = header block (HEADER_BLOCK bytes) | record* | unused bytes
//! header  = { magic [8] | version u32 | reserved u32 | seq u64 | segment_size u64
//!           | prev_seq u64 | prev_len u64 | first_record u64 | crc32c u32 }   (little endian)
//! record  = { crc32c u32 | len u32 | payload [len] }
//! crc     = crc32c(seq u64 | record_no u64 | len u32 | payload less block contents)
//! ```
//!
//! `prev_len` is where the previous segment's records end, so every segment
//! but the newest has a known end, and a bad record before it is corruption
//! rather than a torn tail. Block contents (a region's entries) carry a
//! checksum of their own inside the payload (see the batch layout), which the
//! record checksum covers. Records are numbered from `first_record`
//! onwards; the number and the segment's seq are folded into each checksum,
//! so neither leftovers of a recycled file nor a torn record that a later,
//! shorter record only partly overwrote can ever validate. A record of
//! length zero (pre-written zeros) ends the segment's data.
//!
//! A file whose header does not validate, or names another seq than its file
//! name, is a spare waiting for use: this is how pre-written and recycled
//! segments look. Only spares after the newest valid segment are legal.

use ekv_proto::codec::{crc32c, Reader};

/// Magic at the start of every segment header.
pub const MAGIC: [u8; 8] = *b"EKV-WAL\0";
/// Format version written by this code.
pub const VERSION: u32 = 1;
/// Bytes of the header block; records start here. A multiple of every
/// direct-I/O alignment we accept.
pub const HEADER_BLOCK: u64 = 4096;
/// Writes start and end on multiples of this (or of the device's logical
/// block size, if larger). Devices with 512-byte logical blocks commonly
/// have 4 KiB physical ones, and a write that covers part of a physical
/// block makes the device read, merge and write it back.
pub const WRITE_UNIT: u64 = 4096;
/// Bytes of a record header.
pub const RECORD_HEADER: u64 = 8;
/// Encoded bytes of the segment header proper.
const HEADER_LEN: usize = 8 + 4 + 4 + 8 * 5 + 4;

/// File name of segment `seq`.
pub fn segment_name(seq: u64) -> String {
    format!("{seq:016}.wal")
}

/// Parses a segment file name.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".wal")?;
    if stem.len() != 16 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The header of a segment in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// This segment's seq.
    pub seq: u64,
    /// Size of every segment file of the log.
    pub segment_size: u64,
    /// Seq of the segment before (0 for the first segment ever).
    pub prev_seq: u64,
    /// End offset of the previous segment's last record.
    pub prev_len: u64,
    /// Number of this segment's first record.
    pub first_record: u64,
}

impl SegmentHeader {
    /// Writes the header into the start of `block` (at least `HEADER_LEN` bytes).
    pub fn encode_into(&self, block: &mut [u8]) {
        let mut out = &mut block[..HEADER_LEN];
        let mut put = |b: &[u8]| {
            let (head, rest) = std::mem::take(&mut out).split_at_mut(b.len());
            head.copy_from_slice(b);
            out = rest;
        };
        put(&MAGIC);
        put(&VERSION.to_le_bytes());
        put(&0u32.to_le_bytes());
        put(&self.seq.to_le_bytes());
        put(&self.segment_size.to_le_bytes());
        put(&self.prev_seq.to_le_bytes());
        put(&self.prev_len.to_le_bytes());
        put(&self.first_record.to_le_bytes());
        let crc = crc32c(0, &block[..HEADER_LEN - 4]);
        block[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes a header; `None` if it is not a valid header of this version.
    pub fn decode_from(block: &[u8]) -> Option<Self> {
        if block.len() < HEADER_LEN {
            return None;
        }
        let stored = u32::from_le_bytes(block[HEADER_LEN - 4..HEADER_LEN].try_into().ok()?);
        if crc32c(0, &block[..HEADER_LEN - 4]) != stored {
            return None;
        }
        let mut r = Reader::new(&block[..HEADER_LEN - 4]);
        if r.array::<8>("magic").ok()? != MAGIC || r.u32_le("version").ok()? != VERSION {
            return None;
        }
        let _reserved = r.u32_le("reserved").ok()?;
        Some(Self {
            seq: r.u64_le("seq").ok()?,
            segment_size: r.u64_le("segment_size").ok()?,
            prev_seq: r.u64_le("prev_seq").ok()?,
            prev_len: r.u64_le("prev_len").ok()?,
            first_record: r.u64_le("first_record").ok()?,
        })
    }
}

/// Checksum of a record's implicit prefix (seq, number, length); the
/// decoder extends it over the payload to get the record checksum.
pub fn record_crc_prefix(seq: u64, record_no: u64, len: usize) -> u32 {
    let mut pre = [0u8; 20];
    pre[..8].copy_from_slice(&seq.to_le_bytes());
    pre[8..16].copy_from_slice(&record_no.to_le_bytes());
    pre[16..20].copy_from_slice(&(len as u32).to_le_bytes());
    crc32c(0, &pre)
}

/// Writes a record header.
pub fn encode_record_header(out: &mut [u8], crc: u32, len: usize) {
    out[..4].copy_from_slice(&crc.to_le_bytes());
    out[4..8].copy_from_slice(&(len as u32).to_le_bytes());
}

/// Result of looking for a record at some offset.
#[derive(Debug, PartialEq, Eq)]
pub enum RecordAt<'a> {
    /// A record whose length fits: its stored checksum and payload, still
    /// to be verified by decoding.
    Record {
        /// Stored checksum.
        crc: u32,
        /// The payload.
        payload: &'a [u8],
    },
    /// Zeros (or fewer than a record header of bytes): the data ends here.
    End,
    /// Bytes that cannot be a record.
    Invalid,
}

/// Frames the record at the start of `buf`. `max_len` bounds the payload.
pub fn record_at(buf: &[u8], max_len: u64) -> RecordAt<'_> {
    if buf.len() < RECORD_HEADER as usize {
        return RecordAt::End;
    }
    let crc = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let len = u64::from(u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]));
    if len == 0 {
        return if crc == 0 { RecordAt::End } else { RecordAt::Invalid };
    }
    if len > max_len || RECORD_HEADER + len > buf.len() as u64 {
        return RecordAt::Invalid;
    }
    RecordAt::Record { crc, payload: &buf[RECORD_HEADER as usize..(RECORD_HEADER + len) as usize] }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SegmentHeader {
        SegmentHeader { seq: 7, segment_size: 1 << 20, prev_seq: 6, prev_len: 12345, first_record: 99 }
    }

    #[test]
    fn header_round_trips() {
        let mut block = vec![0u8; HEADER_BLOCK as usize];
        header().encode_into(&mut block);
        assert_eq!(SegmentHeader::decode_from(&block), Some(header()));
    }

    #[test]
    fn any_flipped_header_byte_is_refused() {
        let mut block = vec![0u8; 64];
        header().encode_into(&mut block);
        for i in 0..HEADER_LEN {
            let mut bad = block.clone();
            bad[i] ^= 0x10;
            assert_eq!(SegmentHeader::decode_from(&bad), None, "byte {i}");
        }
        assert_eq!(SegmentHeader::decode_from(&[0u8; 64]), None);
        assert_eq!(SegmentHeader::decode_from(&block[..10]), None);
    }

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("42.wal"), None);
        assert_eq!(parse_segment_name("000000000000004x.wal"), None);
        assert_eq!(parse_segment_name(".ekv-io-probe"), None);
    }

    #[test]
    fn record_framing_is_bounded() {
        let mut buf = vec![0u8; 32];
        encode_record_header(&mut buf, 0xabcd, 5);
        assert_eq!(record_at(&buf, 100), RecordAt::Record { crc: 0xabcd, payload: &buf[8..13] });
        assert_eq!(record_at(&buf, 4), RecordAt::Invalid, "over the bound");
        assert_eq!(record_at(&buf[..10], 100), RecordAt::Invalid, "cut short");
        assert_eq!(record_at(&[0u8; 16], 100), RecordAt::End);
        assert_eq!(record_at(&[0u8; 5], 100), RecordAt::End);
        assert_ne!(record_crc_prefix(3, 10, 5), record_crc_prefix(4, 10, 5));
        assert_ne!(record_crc_prefix(3, 10, 5), record_crc_prefix(3, 11, 5));
    }
}
