//! Data and index blocks: sorted entries with prefix-compressed keys.
//!
//! ```text
//! block = entry* | restart u32 * num_restarts | num_restarts u32
//! entry = { shared uvarint | unshared uvarint | value_len uvarint
//!         | key_delta [unshared] | value [value_len] }
//! ```
//!
//! An entry's key is the first `shared` bytes of the previous entry's key
//! followed by `key_delta`. Every `restart_interval` entries one starts
//! afresh (`shared = 0`); the restart array holds those entries' offsets in
//! increasing order, so a seek binary-searches the restart keys, which are
//! stored whole, and then scans at most one interval. Keys are internal keys
//! (a data block's values are user values; an index block's are block
//! handles).

use std::cmp::Ordering;

use bytes::Bytes;
use ekv_proto::codec::{put_uvarint, Reader};

use crate::key::{self, Kind, TRAILER_LEN};
use crate::table::format::Corrupt;

/// Bytes of one restart array slot (and of the restart count).
const RESTART_LEN: usize = 4;

/// Accumulates the entries of one block.
#[derive(Debug)]
pub(crate) struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    /// Entries added since the last restart point.
    since_restart: usize,
    interval: usize,
    last_key: Vec<u8>,
}

impl BlockBuilder {
    pub(crate) fn new(restart_interval: usize) -> Self {
        Self {
            buf: Vec::new(),
            restarts: Vec::new(),
            since_restart: 0,
            interval: restart_interval.max(1),
            last_key: Vec::new(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.restarts.is_empty()
    }

    /// Size of the contents if the block were finished now.
    pub(crate) fn estimated_size(&self) -> usize {
        self.buf.len() + RESTART_LEN * (self.restarts.len() + 1)
    }

    /// Appends an entry; `key` must sort after the previous one.
    pub(crate) fn add(&mut self, key: &[u8], value: &[u8]) {
        let shared = if self.restarts.is_empty() || self.since_restart == self.interval {
            // Offsets are u32: a block holds at most one oversized entry past
            // the block size, and entries are bounded well below 4 GiB.
            self.restarts.push(self.buf.len() as u32);
            self.since_restart = 0;
            0
        } else {
            self.last_key.iter().zip(key).take_while(|(a, b)| a == b).count()
        };
        put_uvarint(&mut self.buf, shared as u64);
        put_uvarint(&mut self.buf, (key.len() - shared) as u64);
        put_uvarint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(&key[shared..]);
        self.buf.extend_from_slice(value);
        self.last_key.truncate(shared);
        self.last_key.extend_from_slice(&key[shared..]);
        self.since_restart += 1;
    }

    /// Appends the finished contents to `out`, returns their length and
    /// leaves the builder empty for the next block.
    pub(crate) fn finish_into(&mut self, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        out.extend_from_slice(&self.buf);
        for r in &self.restarts {
            out.extend_from_slice(&r.to_le_bytes());
        }
        out.extend_from_slice(&(self.restarts.len() as u32).to_le_bytes());
        self.buf.clear();
        self.restarts.clear();
        self.last_key.clear();
        self.since_restart = 0;
        out.len() - start
    }
}

/// A decoded block whose restart array has been checked: it lies within the
/// block, starts at 0 and increases strictly. Entries are checked as they
/// are decoded. Cheap to clone (shares the bytes).
#[derive(Clone)]
pub(crate) struct Block {
    data: Bytes,
    /// Offset of the restart array = end of the entries.
    restarts: usize,
    num_restarts: usize,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block").field("len", &self.data.len()).field("restarts", &self.num_restarts).finish()
    }
}

impl Block {
    pub(crate) fn new(data: Bytes) -> Result<Block, Corrupt> {
        let len = data.len();
        if len < RESTART_LEN {
            return Err(Corrupt("block shorter than its restart count"));
        }
        let n = read_u32(&data, len - RESTART_LEN);
        if n > (len - RESTART_LEN) / RESTART_LEN {
            return Err(Corrupt("restart count exceeds the block"));
        }
        let restarts = len - RESTART_LEN * (n + 1);
        if (n == 0) != (restarts == 0) {
            return Err(Corrupt("block has entries without restart points"));
        }
        let block = Block { data, restarts, num_restarts: n };
        let mut prev = None;
        for i in 0..n {
            let r = block.restart(i);
            let ok = match prev {
                None => r == 0,
                Some(p) => p < r && r < restarts,
            };
            if !ok {
                return Err(Corrupt("restart points out of order or out of bounds"));
            }
            prev = Some(r);
        }
        Ok(block)
    }

    /// Bytes of the contents, what the block cache charges.
    pub(crate) fn len(&self) -> usize {
        self.data.len()
    }

    fn restart(&self, i: usize) -> usize {
        read_u32(&self.data, self.restarts + RESTART_LEN * i)
    }

    /// The key of the entry at restart point `i`, stored whole.
    fn restart_key(&self, i: usize) -> Result<&[u8], Corrupt> {
        let region = &self.data[self.restart(i)..self.restarts];
        let head = EntryHead::decode(region)?;
        if head.shared != 0 {
            return Err(Corrupt("restart entry shares a prefix"));
        }
        let key =
            region.get(head.len..head.len + head.unshared).ok_or(Corrupt("entry key past the block"))?;
        if key.len() < TRAILER_LEN {
            return Err(Corrupt("key shorter than its trailer"));
        }
        Ok(key)
    }
}

/// The three lengths that start an entry.
struct EntryHead {
    shared: usize,
    unshared: usize,
    value_len: usize,
    /// Bytes of the three varints.
    len: usize,
}

impl EntryHead {
    /// Decodes the lengths at the start of `region`. Lengths too large for
    /// `usize` become `usize::MAX`, which no bounds check lets through.
    #[inline]
    fn decode(region: &[u8]) -> Result<EntryHead, Corrupt> {
        // Short keys and values (every length below 128) take one byte each.
        if let [a, b, c, ..] = *region {
            if (a | b | c) < 0x80 {
                return Ok(EntryHead { shared: a.into(), unshared: b.into(), value_len: c.into(), len: 3 });
            }
        }
        let mut r = Reader::new(region);
        let mut len =
            |what| -> Result<usize, Corrupt> { Ok(usize::try_from(r.uvarint(what)?).unwrap_or(usize::MAX)) };
        let (shared, unshared, value_len) =
            (len("entry shared length")?, len("entry key length")?, len("entry value length")?);
        Ok(EntryHead { shared, unshared, value_len, len: r.position() })
    }
}

fn read_u32(data: &[u8], at: usize) -> usize {
    let b = &data[at..at + 4];
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
}

/// A position to seek to, as an internal key split in two so callers can
/// seek without building one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    pub(crate) user: &'a [u8],
    pub(crate) trailer: u64,
}

impl<'a> Target<'a> {
    /// The target for an internal key. A key too short for a trailer is
    /// taken as a bare user key: before all of its versions.
    pub(crate) fn of(ikey: &'a [u8]) -> Self {
        if ikey.len() >= TRAILER_LEN {
            Target { user: key::user_key(ikey), trailer: key::trailer_of(ikey) }
        } else {
            Target { user: ikey, trailer: u64::MAX }
        }
    }

    /// How internal key `ikey` (at least [`TRAILER_LEN`] bytes) orders
    /// against the target, as [`key::compare`] would.
    #[inline]
    pub(crate) fn cmp_key(&self, ikey: &[u8]) -> Ordering {
        match key::compare_bytes(key::user_key(ikey), self.user) {
            Ordering::Equal => self.trailer.cmp(&key::trailer_of(ikey)),
            o => o,
        }
    }
}

/// A position inside some block. The cursor owns the key buffer, reused
/// from entry to entry and block to block; the caller passes the block to
/// every call, so one cursor serves a whole table.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    key: Vec<u8>,
    value: (usize, usize),
    /// Offset of the current entry.
    cur: usize,
    /// Offset just past the current entry.
    next: usize,
    valid: bool,
}

impl Cursor {
    pub(crate) fn valid(&self) -> bool {
        self.valid
    }

    pub(crate) fn invalidate(&mut self) {
        self.valid = false;
    }

    /// The current key; meaningful only while valid.
    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }

    /// The current value in `block`, the block the cursor was positioned in.
    pub(crate) fn value<'b>(&self, block: &'b Block) -> &'b [u8] {
        block.data.get(self.value.0..self.value.1).unwrap_or_default()
    }

    /// The current value, sharing `block`'s bytes.
    pub(crate) fn value_bytes(&self, block: &Block) -> Bytes {
        if self.value.1 <= block.data.len() && self.value.0 <= self.value.1 {
            block.data.slice(self.value.0..self.value.1)
        } else {
            Bytes::new()
        }
    }

    /// Decodes the entry at `pos`. At a restart point the previous key is
    /// not needed, and the entry must not share a prefix with it.
    fn decode_at(&mut self, b: &Block, pos: usize, at_restart: bool) -> Result<(), Corrupt> {
        self.valid = false;
        let region = b.data.get(pos..b.restarts).ok_or(Corrupt("entry offset out of bounds"))?;
        let head = EntryHead::decode(region)?;
        if at_restart {
            self.key.clear();
            if head.shared != 0 {
                return Err(Corrupt("restart entry shares a prefix"));
            }
        }
        if head.shared > self.key.len() {
            return Err(Corrupt("shared prefix longer than the previous key"));
        }
        let rest = &region[head.len..];
        if head.unshared > rest.len() || head.value_len > rest.len() - head.unshared {
            return Err(Corrupt("entry past the end of the block"));
        }
        self.key.truncate(head.shared);
        self.key.extend_from_slice(&rest[..head.unshared]);
        if self.key.len() < TRAILER_LEN {
            return Err(Corrupt("key shorter than its trailer"));
        }
        if Kind::from_u8(key::kind_of(&self.key)).is_none() {
            return Err(Corrupt("unknown entry kind"));
        }
        let value_start = pos + head.len + head.unshared;
        self.value = (value_start, value_start + head.value_len);
        self.cur = pos;
        self.next = self.value.1;
        self.valid = true;
        Ok(())
    }

    pub(crate) fn seek_to_first(&mut self, b: &Block) -> Result<(), Corrupt> {
        if b.num_restarts == 0 {
            self.valid = false;
            return Ok(());
        }
        self.decode_at(b, 0, true)
    }

    pub(crate) fn seek_to_last(&mut self, b: &Block) -> Result<(), Corrupt> {
        if b.num_restarts == 0 {
            self.valid = false;
            return Ok(());
        }
        self.decode_at(b, b.restart(b.num_restarts - 1), true)?;
        while self.next < b.restarts {
            self.decode_at(b, self.next, false)?;
        }
        Ok(())
    }

    /// Moves to the next entry; invalid past the last one.
    pub(crate) fn next(&mut self, b: &Block) -> Result<(), Corrupt> {
        if !self.valid || self.next >= b.restarts {
            self.valid = false;
            return Ok(());
        }
        self.decode_at(b, self.next, false)
    }

    /// Moves to the previous entry: rescans from the restart point before
    /// the current entry. Invalid before the first one.
    pub(crate) fn prev(&mut self, b: &Block) -> Result<(), Corrupt> {
        let here = self.cur;
        if !self.valid || here == 0 {
            self.valid = false;
            return Ok(());
        }
        // Restart points before `here`; at least restart 0.
        let (mut lo, mut hi) = (0, b.num_restarts);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if b.restart(mid) < here {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo == 0 {
            return Err(Corrupt("entry before the first restart point"));
        }
        self.decode_at(b, b.restart(lo - 1), true)?;
        while self.next < here {
            self.decode_at(b, self.next, false)?;
        }
        if self.next != here {
            return Err(Corrupt("entries do not line up with restart points"));
        }
        Ok(())
    }

    /// Moves to the first entry at or after `target`; invalid if none in
    /// this block.
    pub(crate) fn seek(&mut self, b: &Block, target: &Target<'_>) -> Result<(), Corrupt> {
        if b.num_restarts == 0 {
            self.valid = false;
            return Ok(());
        }
        // `lo` = number of restart keys before the target.
        let (mut lo, mut hi) = (0, b.num_restarts);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if target.cmp_key(b.restart_key(mid)?).is_lt() {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        // The answer lies after the last restart key before the target.
        self.decode_at(b, b.restart(lo.saturating_sub(1)), true)?;
        loop {
            if !target.cmp_key(&self.key).is_lt() {
                return Ok(());
            }
            if self.next >= b.restarts {
                self.valid = false;
                return Ok(());
            }
            self.decode_at(b, self.next, false)?;
        }
    }
}
