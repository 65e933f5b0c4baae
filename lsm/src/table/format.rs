//! On-disk layout of a table file.
//!
//! ```text
//! table   = data block* | filter block | tombstone block | properties block | index block
//!           | zero padding | footer                  (the footer ends the file; size is aligned)
//! block   = contents | trailer
//! trailer = { compression u8 | crc32c u32 }          crc32c over contents ++ compression
//! footer  = { magic [8] | version u32 | file_size u64 | index handle | filter handle
//!           | tombstone handle | properties handle | crc32c u32 }      (FOOTER_LEN bytes)
//! handle  = { offset u64 | size u64 }                in the footer (fixed width)
//!         = { offset uvarint | size uvarint }        in the index block
//! ```
//!
//! Integers are little endian. A handle's `size` counts the contents only;
//! the trailer follows them.
//!
//! Data and index blocks share one layout (encoded in `block.rs`). An index
//! entry's key is a separator `>=` the last key of its data block and `<`
//! the first key of the next; its value is the block's handle.
//!
//! ```text
//! block = entry* | restart u32 * num_restarts | num_restarts u32
//! entry = { shared uvarint | unshared uvarint | value_len uvarint
//!         | key_delta [unshared] | value [value_len] }
//! ```
//!
//! The filter (encoded in `bloom.rs`) is a blocked bloom filter over user
//! keys: `bits [64 * lines] | k u8 | lines u32`, or no bytes for no filter.
//! Tombstones and properties are encoded here.
//!
//! Tombstone block: `count uvarint | { start lp | end lp | seq uvarint }*`,
//! sorted by start ascending, then seq descending (`lp` = varint length
//! then bytes).
//!
//! Properties block: `num_entries | num_deletions | num_tombstones |
//! min_seq | max_seq | raw_key_bytes | raw_value_bytes` as uvarints, then
//! `smallest lp | largest lp` (empty when the table has no point entries;
//! internal keys are never empty). The file size is not stored there but
//! in the footer, which is written last.

use ekv_proto::codec::{crc32c, put_len_prefixed, put_uvarint, DecodeError, Reader};

use crate::error::Error;
use crate::key::{self, Tombstone};
use crate::table::TableInfo;

/// Magic at the start of every footer.
pub const MAGIC: [u8; 8] = *b"EKV-TBL\0";
/// Format version written by this code.
pub const VERSION: u32 = 1;
/// Bytes of the footer; it occupies the last `FOOTER_LEN` bytes of the file.
pub const FOOTER_LEN: usize = 8 + 4 + 8 + 4 * 16 + 4;
/// Bytes of the trailer after each block's contents.
pub const BLOCK_TRAILER_LEN: usize = 5;
/// The only compression byte written so far: contents stored as they are.
pub const COMPRESSION_NONE: u8 = 0;

/// Why some bytes do not decode. Carries no location: the table reader
/// knows which block it was reading and turns this into
/// [`Error::Corruption`] with the file and the block offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Corrupt(pub(crate) &'static str);

impl Corrupt {
    /// The crate error for this damage in block `offset` of `file`.
    pub(crate) fn at(self, file: &std::path::Path, offset: u64) -> Error {
        Error::corruption(file, offset, self.0)
    }
}

impl From<DecodeError> for Corrupt {
    fn from(e: DecodeError) -> Self {
        Corrupt(match e {
            DecodeError::Incomplete { what, .. }
            | DecodeError::TooLarge { what, .. }
            | DecodeError::Invalid { what, .. } => what,
            _ => "undecodable field",
        })
    }
}

/// Where a block lives in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockHandle {
    /// Offset of the first byte of the contents.
    pub offset: u64,
    /// Length of the contents, trailer excluded.
    pub size: u64,
}

impl BlockHandle {
    /// Offset just past the block's trailer, `None` on overflow.
    pub fn end(&self) -> Option<u64> {
        self.offset.checked_add(self.size)?.checked_add(BLOCK_TRAILER_LEN as u64)
    }

    /// Appends the varint form used in index entries.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        put_uvarint(out, self.offset);
        put_uvarint(out, self.size);
    }

    /// Decodes the varint form, which must fill `buf` exactly.
    pub(crate) fn decode_from(buf: &[u8]) -> Result<Self, Corrupt> {
        let mut r = Reader::new(buf);
        let h = BlockHandle { offset: r.uvarint("handle offset")?, size: r.uvarint("handle size")? };
        if !r.is_empty() {
            return Err(Corrupt("trailing bytes after a block handle"));
        }
        Ok(h)
    }
}

/// The fixed-size record at the end of a table: where the meta blocks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Footer {
    /// Size of the whole file, footer included. A file of another size was
    /// truncated or extended.
    pub file_size: u64,
    /// The index block.
    pub index: BlockHandle,
    /// The bloom filter block (empty contents: no filter).
    pub filter: BlockHandle,
    /// The range-tombstone block.
    pub tombstones: BlockHandle,
    /// The properties block.
    pub properties: BlockHandle,
}

impl Footer {
    /// Appends the footer's bytes.
    pub(crate) fn encode_into_vec(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.file_size.to_le_bytes());
        for h in [self.index, self.filter, self.tombstones, self.properties] {
            out.extend_from_slice(&h.offset.to_le_bytes());
            out.extend_from_slice(&h.size.to_le_bytes());
        }
        let crc = crc32c(0, &out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }

    /// Decodes the footer from exactly [`FOOTER_LEN`] bytes.
    pub(crate) fn decode_from(buf: &[u8]) -> Result<Footer, Corrupt> {
        if buf.len() != FOOTER_LEN {
            return Err(Corrupt("footer cut short"));
        }
        let (body, crc) = buf.split_at(FOOTER_LEN - 4);
        if crc32c(0, body).to_le_bytes() != crc {
            return Err(Corrupt("footer checksum mismatch"));
        }
        let mut r = Reader::new(body);
        if r.array::<8>("magic")? != MAGIC {
            return Err(Corrupt("not a table: bad magic"));
        }
        if r.u32_le("version")? != VERSION {
            return Err(Corrupt("unknown table format version"));
        }
        let file_size = r.u64_le("file size")?;
        let handle = |r: &mut Reader<'_>| -> Result<BlockHandle, Corrupt> {
            Ok(BlockHandle { offset: r.u64_le("handle offset")?, size: r.u64_le("handle size")? })
        };
        Ok(Footer {
            file_size,
            index: handle(&mut r)?,
            filter: handle(&mut r)?,
            tombstones: handle(&mut r)?,
            properties: handle(&mut r)?,
        })
    }
}

/// Appends a block trailer for the contents at `out[start..]`.
pub(crate) fn append_trailer(out: &mut Vec<u8>, start: usize) {
    out.push(COMPRESSION_NONE);
    let crc = crc32c(0, &out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Checks the trailer of a raw block (`size` bytes of contents, then the
/// trailer) and returns the contents.
pub(crate) fn verify_block(raw: &[u8], size: usize) -> Result<&[u8], Corrupt> {
    if raw.len() != size + BLOCK_TRAILER_LEN {
        return Err(Corrupt("block extends past the end of the file"));
    }
    let (body, crc) = raw.split_at(size + 1);
    if crc32c(0, body).to_le_bytes() != crc {
        return Err(Corrupt("block checksum mismatch"));
    }
    if body[size] != COMPRESSION_NONE {
        return Err(Corrupt("unknown block compression"));
    }
    Ok(&body[..size])
}

/// Appends the tombstone block contents; `tombstones` must be sorted.
pub(crate) fn encode_tombstones(out: &mut Vec<u8>, tombstones: &[Tombstone]) {
    put_uvarint(out, tombstones.len() as u64);
    for t in tombstones {
        put_len_prefixed(out, &t.start);
        put_len_prefixed(out, &t.end);
        put_uvarint(out, t.seq);
    }
}

/// The order tombstones are stored in: start ascending, seq descending.
pub(crate) fn tombstone_order(a: &Tombstone, b: &Tombstone) -> std::cmp::Ordering {
    a.start.cmp(&b.start).then(b.seq.cmp(&a.seq)).then_with(|| a.end.cmp(&b.end))
}

/// Decodes a tombstone block, checking bounds and order.
pub(crate) fn decode_tombstones(buf: &[u8]) -> Result<Vec<Tombstone>, Corrupt> {
    let mut r = Reader::new(buf);
    let count = r.uvarint("tombstone count")?;
    // Each tombstone takes at least three bytes (two empty keys, one seq).
    if count > (r.remaining() / 3) as u64 {
        return Err(Corrupt("tombstone count exceeds the block"));
    }
    let mut out: Vec<Tombstone> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let start = r.len_prefixed("tombstone start", buf.len())?.to_vec();
        let end = r.len_prefixed("tombstone end", buf.len())?.to_vec();
        let seq = r.uvarint("tombstone seq")?;
        if seq > key::MAX_SEQ {
            return Err(Corrupt("tombstone seq out of range"));
        }
        let t = Tombstone { start, end, seq };
        if out.last().is_some_and(|p| tombstone_order(p, &t).is_gt()) {
            return Err(Corrupt("tombstones out of order"));
        }
        out.push(t);
    }
    if !r.is_empty() {
        return Err(Corrupt("trailing bytes after the tombstones"));
    }
    Ok(out)
}

/// Appends the properties block contents (everything but `size`).
pub(crate) fn encode_properties(out: &mut Vec<u8>, info: &TableInfo) {
    for v in [
        info.num_entries,
        info.num_deletions,
        info.num_tombstones,
        info.min_seq,
        info.max_seq,
        info.raw_key_bytes,
        info.raw_value_bytes,
    ] {
        put_uvarint(out, v);
    }
    put_len_prefixed(out, info.smallest.as_deref().unwrap_or_default());
    put_len_prefixed(out, info.largest.as_deref().unwrap_or_default());
}

/// Decodes a properties block; `size` is left 0 for the caller to fill.
pub(crate) fn decode_properties(buf: &[u8]) -> Result<TableInfo, Corrupt> {
    let mut r = Reader::new(buf);
    let mut info = TableInfo {
        size: 0,
        num_entries: r.uvarint("num_entries")?,
        num_deletions: r.uvarint("num_deletions")?,
        num_tombstones: r.uvarint("num_tombstones")?,
        min_seq: r.uvarint("min_seq")?,
        max_seq: r.uvarint("max_seq")?,
        raw_key_bytes: r.uvarint("raw_key_bytes")?,
        raw_value_bytes: r.uvarint("raw_value_bytes")?,
        smallest: None,
        largest: None,
    };
    let mut bound = |what| -> Result<Option<Vec<u8>>, Corrupt> {
        match r.len_prefixed(what, buf.len())? {
            [] => Ok(None),
            k if k.len() < key::TRAILER_LEN => Err(Corrupt("bound key shorter than its trailer")),
            k => Ok(Some(k.to_vec())),
        }
    };
    info.smallest = bound("smallest key")?;
    info.largest = bound("largest key")?;
    if !r.is_empty() {
        return Err(Corrupt("trailing bytes after the properties"));
    }
    if info.num_deletions > info.num_entries
        || info.min_seq > info.max_seq
        || info.max_seq > key::MAX_SEQ
        || info.smallest.is_some() != (info.num_entries > 0)
        || info.largest.is_some() != (info.num_entries > 0)
    {
        return Err(Corrupt("inconsistent properties"));
    }
    Ok(info)
}
