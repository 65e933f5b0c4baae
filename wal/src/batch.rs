//! What the log stores, and the batch through which it is written.
//!
//! A [`LogBatch`] collects, for any number of regions, entries to append,
//! hard states, and markers. [`Wal::write`](crate::Wal::write) turns all
//! batches staged during one round into one record. The record payload is a
//! sequence of items:
//!
//! ```text
//! item    = 1 region uvarint | first_index uvarint | count uvarint
//!             | block_len uvarint | block_crc u32 | block      (entries)
//!         | 2 region uvarint | term uvarint | vote uvarint | commit uvarint  (hard state)
//!         | 3 region uvarint | to uvarint                    (compact: drop indexes < to)
//!         | 4 region uvarint                                 (remove the region's log)
//! block   = entry*
//! entry   = term uvarint | type u8 | data len-prefixed | context len-prefixed
//! ```
//!
//! Entries of one region and round form a block with a checksum of its own,
//! so that one block can be read back and verified without its record. The
//! record checksum covers every payload byte outside blocks, block checksums
//! included: every byte is checksummed once, on write and on replay.

use bytes::{BufMut, Bytes};
use ekv_proto::codec::{
    crc32c, len_prefixed_len, put_len_prefixed, put_uvarint, uvarint_len, DecodeError, Reader,
};
use ekv_proto::RegionId;

/// Kind of a raft entry (the values of raft-rs `EntryType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum EntryType {
    /// A normal command.
    #[default]
    Normal = 0,
    /// A v1 membership change.
    ConfChange = 1,
    /// A joint-consensus membership change.
    ConfChangeV2 = 2,
}

impl TryFrom<u8> for EntryType {
    type Error = DecodeError;
    fn try_from(v: u8) -> Result<Self, DecodeError> {
        match v {
            0 => Ok(Self::Normal),
            1 => Ok(Self::ConfChange),
            2 => Ok(Self::ConfChangeV2),
            _ => Err(DecodeError::Invalid { what: "entry type", value: u64::from(v) }),
        }
    }
}

/// One raft log entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// Log index.
    pub index: u64,
    /// Term it was proposed in.
    pub term: u64,
    /// Kind.
    pub entry_type: EntryType,
    /// The command.
    pub data: Bytes,
    /// Opaque context.
    pub context: Bytes,
}

impl Entry {
    /// Bytes this entry takes in a block.
    pub fn encoded_len(&self) -> usize {
        uvarint_len(self.term) + 1 + len_prefixed_len(self.data.len()) + len_prefixed_len(self.context.len())
    }

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_uvarint(buf, self.term);
        buf.put_u8(self.entry_type as u8);
        put_len_prefixed(buf, &self.data);
        put_len_prefixed(buf, &self.context);
    }

    /// Decodes the entry at the reader's position.
    pub(crate) fn decode_from(index: u64, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let term = r.uvarint("entry term")?;
        let entry_type = EntryType::try_from(r.u8("entry type")?)?;
        let limit = r.remaining();
        let data = Bytes::copy_from_slice(r.len_prefixed("entry data", limit)?);
        let limit = r.remaining();
        let context = Bytes::copy_from_slice(r.len_prefixed("entry context", limit)?);
        Ok(Self { index, term, entry_type, data, context })
    }
}

/// A region's raft hard state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HardState {
    /// Current term.
    pub term: u64,
    /// Peer voted for in `term` (0 for none).
    pub vote: u64,
    /// Highest index known committed.
    pub commit: u64,
}

const TAG_ENTRIES: u8 = 1;
const TAG_HARD_STATE: u8 = 2;
const TAG_COMPACT: u8 = 3;
const TAG_REMOVE: u8 = 4;

#[derive(Debug, Clone)]
pub(crate) enum Item {
    Entries { region: RegionId, entries: Vec<Entry>, block_len: usize },
    HardState { region: RegionId, state: HardState },
    Compact { region: RegionId, to: u64 },
    Remove { region: RegionId },
}

impl Item {
    fn encoded_len(&self) -> usize {
        1 + match self {
            Item::Entries { region, entries, block_len } => {
                let first = entries.first().map_or(0, |e| e.index);
                uvarint_len(region.get())
                    + uvarint_len(first)
                    + uvarint_len(entries.len() as u64)
                    + uvarint_len(*block_len as u64)
                    + 4
                    + block_len
            }
            Item::HardState { region, state } => {
                uvarint_len(region.get())
                    + uvarint_len(state.term)
                    + uvarint_len(state.vote)
                    + uvarint_len(state.commit)
            }
            Item::Compact { region, to } => uvarint_len(region.get()) + uvarint_len(*to),
            Item::Remove { region } => uvarint_len(region.get()),
        }
    }

    /// Encodes into the front of `out` (which starts `at` bytes into the
    /// payload); returns the bytes written. Extends the record checksum
    /// `crc` (everything but block contents, see [`decode_payload`]) and
    /// pushes what the index needs, as [`decode_payload`] would find it.
    fn encode_into(&self, out: &mut [u8], at: usize, crc: &mut u32, decoded: &mut Decodeds) -> usize {
        let total = out.len();
        let mut buf = &mut *out;
        match self {
            Item::Entries { region, entries, block_len } => {
                let first_index = entries.first().map_or(0, |e| e.index);
                buf.put_u8(TAG_ENTRIES);
                put_uvarint(&mut buf, region.get());
                put_uvarint(&mut buf, first_index);
                put_uvarint(&mut buf, entries.len() as u64);
                put_uvarint(&mut buf, *block_len as u64);
                let head_len = total - buf.len();
                let (crc_slot, rest) = buf.split_at_mut(4);
                let (block, _) = rest.split_at_mut(*block_len);
                let metas_from = decoded.metas.len();
                let mut w = &mut *block;
                let mut offset = 0u32;
                for e in entries {
                    let before = w.len();
                    e.encode_into(&mut w);
                    let len = (before - w.len()) as u32;
                    decoded.metas.push(EntryMeta { term: e.term, offset, len });
                    offset += len;
                }
                let block_crc = crc32c(0, block);
                crc_slot.copy_from_slice(&block_crc.to_le_bytes());
                // The record checksum covers the block through its checksum:
                // each byte is checksummed once.
                *crc = crc32c(*crc, &out[..head_len + 4]);
                let metas = metas_from..decoded.metas.len();
                decoded.items.push(Decoded::Entries {
                    region: *region,
                    first_index,
                    block_offset: at + head_len + 4,
                    block_len: *block_len,
                    metas,
                });
                return head_len + 4 + block_len;
            }
            Item::HardState { region, state } => {
                buf.put_u8(TAG_HARD_STATE);
                put_uvarint(&mut buf, region.get());
                put_uvarint(&mut buf, state.term);
                put_uvarint(&mut buf, state.vote);
                put_uvarint(&mut buf, state.commit);
                decoded.items.push(Decoded::HardState { region: *region, state: *state });
            }
            Item::Compact { region, to } => {
                buf.put_u8(TAG_COMPACT);
                put_uvarint(&mut buf, region.get());
                put_uvarint(&mut buf, *to);
                decoded.items.push(Decoded::Compact { region: *region, to: *to });
            }
            Item::Remove { region } => {
                buf.put_u8(TAG_REMOVE);
                put_uvarint(&mut buf, region.get());
                decoded.items.push(Decoded::Remove { region: *region });
            }
        }
        let n = total - buf.len();
        *crc = crc32c(*crc, &out[..n]);
        n
    }

    pub(crate) fn region(&self) -> RegionId {
        match self {
            Item::Entries { region, .. }
            | Item::HardState { region, .. }
            | Item::Compact { region, .. }
            | Item::Remove { region } => *region,
        }
    }
}

/// Writes for many regions, to be made durable together.
///
/// Items are applied in the order they were added. Adding entries for a
/// region replaces, from the first added index on, whatever the log held
/// (raft's rule for conflicting suffixes).
#[derive(Debug, Default, Clone)]
pub struct LogBatch {
    pub(crate) items: Vec<Item>,
    size: usize,
    /// Write only if the region still looks like this (log maintenance).
    pub(crate) guard: Option<Guard>,
}

/// The state a guarded batch expects of its region.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Guard {
    pub region: RegionId,
    pub bounds: crate::index::Bounds,
    pub hard_state: Option<HardState>,
}

impl LogBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `entries` (consecutive indexes) to `region`'s log.
    pub fn add_entries(&mut self, region: RegionId, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        let block_len = entries.iter().map(Entry::encoded_len).sum();
        self.push(Item::Entries { region, entries, block_len });
    }

    /// Sets `region`'s hard state.
    pub fn put_hard_state(&mut self, region: RegionId, state: HardState) {
        self.push(Item::HardState { region, state });
    }

    /// Drops `region`'s entries below index `to`.
    pub fn compact(&mut self, region: RegionId, to: u64) {
        self.push(Item::Compact { region, to });
    }

    /// Drops everything `region` has in the log.
    pub fn remove(&mut self, region: RegionId) {
        self.push(Item::Remove { region });
    }

    fn push(&mut self, item: Item) {
        self.size += item.encoded_len();
        self.items.push(item);
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes this batch adds to a record payload.
    pub fn encoded_len(&self) -> usize {
        self.size
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.items.clear();
        self.size = 0;
        self.guard = None;
    }

    /// Encodes all items into `out`, which must be `encoded_len()` long and
    /// start `at` bytes into the record payload; see `Item::encode_into`.
    pub(crate) fn encode_into(&self, out: &mut [u8], at: usize, crc: &mut u32, decoded: &mut Decodeds) {
        let mut n = 0;
        for item in &self.items {
            n += item.encode_into(&mut out[n..], at + n, crc, decoded);
        }
        debug_assert_eq!(n, self.size);
    }
}

/// Where one entry sits inside its block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntryMeta {
    pub term: u64,
    pub offset: u32,
    pub len: u32,
}

/// An item decoded from a record payload; positions relative to the payload.
#[derive(Debug)]
pub(crate) enum Decoded {
    Entries {
        region: RegionId,
        first_index: u64,
        block_offset: usize,
        block_len: usize,
        /// Range of the record's [`Decodeds::metas`].
        metas: std::ops::Range<usize>,
    },
    HardState {
        region: RegionId,
        state: HardState,
    },
    Compact {
        region: RegionId,
        to: u64,
    },
    Remove {
        region: RegionId,
    },
}

/// The items of a record, and the entry locations they point into (one
/// vector for the whole record: no allocation per region).
#[derive(Debug, Default)]
pub(crate) struct Decodeds {
    pub items: Vec<Decoded>,
    pub metas: Vec<EntryMeta>,
}

/// Decodes every item of a record payload, verifying every block's
/// checksum, and extends `crc` over the payload's bytes other than block
/// contents (the record checksum; blocks are covered by their own, which
/// it includes). Returns the items and the extended checksum.
pub(crate) fn decode_payload(payload: &[u8], mut crc: u32) -> Result<(Decodeds, u32), DecodeError> {
    let mut r = Reader::new(payload);
    let mut out = Decodeds::default();
    let mut covered = 0;
    while !r.is_empty() {
        let tag = r.u8("item tag")?;
        let region = RegionId(r.uvarint("region id")?);
        let item = match tag {
            TAG_ENTRIES => {
                let first_index = r.uvarint("first index")?;
                let count = r.uvarint("entry count")?;
                let block_len = r.uvarint("block length")?;
                if block_len > r.remaining() as u64 {
                    return Err(DecodeError::TooLarge {
                        what: "block",
                        len: block_len,
                        limit: r.remaining() as u64,
                    });
                }
                // Every entry takes at least 4 bytes: bound the count before allocating.
                if count == 0 || count > block_len / 4 + 1 || first_index.checked_add(count).is_none() {
                    return Err(DecodeError::Invalid { what: "entry count", value: count });
                }
                let stored_crc = r.u32_le("block checksum")?;
                let block_offset = r.position();
                let block = r.bytes("block", block_len as usize)?;
                let got = crc32c(0, block);
                if got != stored_crc {
                    return Err(DecodeError::ChecksumMismatch { got, expected: stored_crc });
                }
                crc = crc32c(crc, &payload[covered..block_offset]);
                covered = block_offset + block_len as usize;
                let from = out.metas.len();
                decode_block_metas(block, count as usize, &mut out.metas)?;
                let metas = from..out.metas.len();
                Decoded::Entries { region, first_index, block_offset, block_len: block_len as usize, metas }
            }
            TAG_HARD_STATE => Decoded::HardState {
                region,
                state: HardState {
                    term: r.uvarint("term")?,
                    vote: r.uvarint("vote")?,
                    commit: r.uvarint("commit")?,
                },
            },
            TAG_COMPACT => Decoded::Compact { region, to: r.uvarint("compact index")? },
            TAG_REMOVE => Decoded::Remove { region },
            other => return Err(DecodeError::Invalid { what: "item tag", value: u64::from(other) }),
        };
        out.items.push(item);
    }
    Ok((out, crc32c(crc, &payload[covered..])))
}

/// Term, offset and length of each of the `count` entries of a block.
fn decode_block_metas(block: &[u8], count: usize, metas: &mut Vec<EntryMeta>) -> Result<(), DecodeError> {
    let mut r = Reader::new(block);
    metas.reserve(count);
    for _ in 0..count {
        let offset = r.position();
        let term = r.uvarint("entry term")?;
        EntryType::try_from(r.u8("entry type")?)?;
        let limit = r.remaining();
        r.len_prefixed("entry data", limit)?;
        let limit = r.remaining();
        r.len_prefixed("entry context", limit)?;
        metas.push(EntryMeta { term, offset: offset as u32, len: (r.position() - offset) as u32 });
    }
    if !r.is_empty() {
        return Err(DecodeError::Invalid { what: "block trailing bytes", value: r.remaining() as u64 });
    }
    Ok(())
}

/// Decodes the entry at `meta` from a block whose checksum was verified.
pub(crate) fn decode_entry(block: &[u8], index: u64, meta: EntryMeta) -> Result<Entry, DecodeError> {
    let start = meta.offset as usize;
    let end = start + meta.len as usize;
    if end > block.len() {
        return Err(DecodeError::Incomplete { what: "entry", need: end as u64, have: block.len() as u64 });
    }
    Entry::decode_from(index, &mut Reader::new(&block[start..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            entry_type: EntryType::Normal,
            data: Bytes::copy_from_slice(data),
            context: Bytes::new(),
        }
    }

    fn sample() -> LogBatch {
        let mut b = LogBatch::new();
        b.add_entries(RegionId(3), vec![entry(5, 2, b"abc"), entry(6, 2, &[9; 300])]);
        b.put_hard_state(RegionId(3), HardState { term: 2, vote: 1, commit: 5 });
        b.compact(RegionId(4), 10);
        b.remove(RegionId(5));
        b
    }

    #[test]
    fn batch_round_trips() {
        let b = sample();
        let mut buf = vec![0u8; b.encoded_len()];
        let (mut crc, mut live) = (0, Decodeds::default());
        b.encode_into(&mut buf, 0, &mut crc, &mut live);
        let (items, decoded_crc) = decode_payload(&buf, 0).unwrap();
        assert_eq!(crc, decoded_crc, "writer and reader compute the same record checksum");
        assert_eq!(format!("{live:?}"), format!("{items:?}"), "encoder and decoder agree");
        let metas = items.metas;
        let items = items.items;
        assert_eq!(items.len(), 4);
        let Decoded::Entries { region, first_index, block_offset, block_len, metas: range } = &items[0]
        else {
            panic!("{items:?}")
        };
        let metas = &metas[range.clone()];
        assert_eq!((*region, *first_index, metas.len()), (RegionId(3), 5, 2));
        let block = &buf[*block_offset..*block_offset + *block_len];
        let e = decode_entry(block, 6, metas[1]).unwrap();
        assert_eq!(e, entry(6, 2, &[9; 300]));
        assert!(matches!(
            items[1],
            Decoded::HardState { state: HardState { term: 2, vote: 1, commit: 5 }, .. }
        ));
        assert!(matches!(items[2], Decoded::Compact { to: 10, .. }));
        assert!(matches!(items[3], Decoded::Remove { region: RegionId(5) }));
    }

    #[test]
    fn damaged_payloads_are_errors_not_panics() {
        let b = sample();
        let mut buf = vec![0u8; b.encoded_len()];
        b.encode_into(&mut buf, 0, &mut 0, &mut Decodeds::default());
        for i in 0..buf.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = buf.clone();
                bad[i] ^= bit;
                let _ = decode_payload(&bad, 0);
            }
            let _ = decode_payload(&buf[..i], 0);
        }
        let mut bad = buf.clone();
        let last = bad.len() - 30;
        bad[last] ^= 0xff;
        assert!(decode_payload(&bad, 0).is_err(), "block checksum catches a flip in entry data");
    }
}
