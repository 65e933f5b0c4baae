//! Writing a table.

use ekv_io::{File, IoBuf};

use crate::error::{Error, Result};
use crate::key::{self, Kind, Tombstone, KIND_SEEK, MAX_SEQ, TRAILER_LEN};
use crate::table::block::BlockBuilder;
use crate::table::format::{self, BlockHandle, Footer, FOOTER_LEN};
use crate::table::{bloom, TableInfo, TableOptions};

/// Largest key plus value one entry may have: block offsets are u32.
const MAX_ENTRY: usize = 1 << 30;

/// Writes a table front to back in large aligned writes.
///
/// 1. [`add`](Self::add) entries in increasing internal-key order; each full
///    data block goes to an output buffer, written out `write_chunk` bytes
///    at a time.
/// 2. [`add_tombstone`](Self::add_tombstone) range deletions at any time.
/// 3. [`finish`](Self::finish) appends the filter, tombstone, properties and
///    index blocks, pads with zeros so the footer ends on an aligned
///    boundary, writes the rest and syncs. Nothing before the sync is
///    durable; a table is usable only once `finish` returned.
pub struct TableBuilder<F: File> {
    file: F,
    opts: TableOptions,
    /// Bytes per write: `opts.write_chunk` rounded up to the alignment.
    chunk: usize,
    align: u64,
    /// Encoded bytes not yet written; `out[0]` goes at file offset `written`.
    out: Vec<u8>,
    /// Invariant: a multiple of `align`.
    written: u64,
    block: BlockBuilder,
    index: BlockBuilder,
    /// The last key added (empty before the first).
    last_key: Vec<u8>,
    /// Reused buffers for the index entry of a finished block.
    separator: Vec<u8>,
    handle_buf: Vec<u8>,
    /// Filter hashes of the distinct user keys so far.
    hashes: Vec<u64>,
    tombstones: Vec<Tombstone>,
    /// Counters so far; `min_seq` is `u64::MAX` until something was added.
    info: TableInfo,
}

impl<F: File> std::fmt::Debug for TableBuilder<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableBuilder")
            .field("path", &self.file.path())
            .field("written", &self.written)
            .field("buffered", &self.out.len())
            .field("entries", &self.info.num_entries)
            .field("tombstones", &self.tombstones.len())
            .finish()
    }
}

impl<F: File> TableBuilder<F> {
    /// A builder writing to `file`, which must be new and empty.
    pub fn new(file: F, opts: TableOptions) -> Self {
        let align = file.alignment().max(1);
        let chunk = (opts.write_chunk.max(1) as u64).next_multiple_of(align) as usize;
        Self {
            file,
            chunk,
            align,
            out: Vec::with_capacity(chunk + opts.block_size * 2),
            written: 0,
            block: BlockBuilder::new(opts.restart_interval),
            index: BlockBuilder::new(opts.restart_interval),
            last_key: Vec::new(),
            separator: Vec::new(),
            handle_buf: Vec::new(),
            hashes: Vec::new(),
            tombstones: Vec::new(),
            info: TableInfo { min_seq: u64::MAX, ..TableInfo::default() },
            opts,
        }
    }

    /// Adds a point entry.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a key without a valid trailer or an
    /// entry over 1 GiB; [`Error::Io`] if writing a full chunk fails (the
    /// builder must then be abandoned).
    ///
    /// # Panics
    ///
    /// In debug builds, if `ikey` does not sort after the previous key.
    pub async fn add(&mut self, ikey: &[u8], value: &[u8]) -> Result<()> {
        if ikey.len() < TRAILER_LEN || Kind::from_u8(key::kind_of(ikey)).is_none() {
            return Err(Error::InvalidArgument(format!("not an internal key: {ikey:?}")));
        }
        if ikey.len() + value.len() > MAX_ENTRY {
            return Err(Error::InvalidArgument(format!("entry of {} bytes", ikey.len() + value.len())));
        }
        debug_assert!(
            self.info.num_entries == 0 || key::compare(&self.last_key, ikey).is_lt(),
            "table keys must increase"
        );
        // Upper bound of what the entry adds: three varints, key, value, restart.
        let entry_len = 3 * 5 + ikey.len() + value.len() + 4;
        if !self.block.is_empty() && self.block.estimated_size() + entry_len > self.opts.block_size {
            self.finish_block(Some(ikey));
        }
        let user_key = key::user_key(ikey);
        if self.opts.bloom_bits_per_key > 0
            && (self.info.num_entries == 0 || key::user_key(&self.last_key) != user_key)
        {
            self.hashes.push(bloom::hash(user_key));
        }
        self.block.add(ikey, value);

        let seq = key::seq_of(ikey);
        let info = &mut self.info;
        if info.num_entries == 0 {
            info.smallest = Some(ikey.to_vec());
        }
        info.num_entries += 1;
        if key::kind_of(ikey) == Kind::Delete as u8 {
            info.num_deletions += 1;
        }
        info.raw_key_bytes += ikey.len() as u64;
        info.raw_value_bytes += value.len() as u64;
        info.min_seq = info.min_seq.min(seq);
        info.max_seq = info.max_seq.max(seq);
        self.last_key.clear();
        self.last_key.extend_from_slice(ikey);

        if self.out.len() >= self.chunk {
            self.write_chunks().await?;
        }
        Ok(())
    }

    /// Adds a range deletion.
    pub fn add_tombstone(&mut self, t: Tombstone) {
        debug_assert!(t.seq <= MAX_SEQ);
        self.info.min_seq = self.info.min_seq.min(t.seq);
        self.info.max_seq = self.info.max_seq.max(t.seq);
        self.tombstones.push(t);
    }

    /// Point entries added so far.
    pub fn num_entries(&self) -> u64 {
        self.info.num_entries
    }

    /// Bytes written plus bytes buffered: roughly the file size if the
    /// table were finished now, to decide when to cut it.
    pub fn estimated_size(&self) -> u64 {
        self.written + self.out.len() as u64 + self.block.estimated_size() as u64
    }

    /// Writes everything that is left and syncs the file, then closes it.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if a write, the sync or the close fails; the file is
    /// closed either way and must be removed by the caller.
    pub async fn finish(mut self) -> Result<TableInfo> {
        match self.write_rest().await {
            Ok(info) => {
                self.file.close().await?;
                Ok(info)
            }
            Err(e) => {
                let _ = self.file.close().await;
                Err(e)
            }
        }
    }

    /// Closes the file without finishing the table; the caller removes it.
    pub async fn abandon(self) {
        // Nothing of the file is kept, so a close failure loses nothing.
        let _ = self.file.close().await;
    }

    /// Moves the current data block to the output and indexes it under a
    /// separator between its last key and `next` (the next block's first
    /// key), or under its last key if it is the final block.
    fn finish_block(&mut self, next: Option<&[u8]>) {
        let start = self.out.len();
        let size = self.block.finish_into(&mut self.out);
        format::append_trailer(&mut self.out, start);
        let handle = BlockHandle { offset: self.written + start as u64, size: size as u64 };
        match next {
            Some(next) => separator(&self.last_key, next, &mut self.separator),
            None => {
                self.separator.clear();
                self.separator.extend_from_slice(&self.last_key);
            }
        }
        self.handle_buf.clear();
        handle.encode_into(&mut self.handle_buf);
        self.index.add(&self.separator, &self.handle_buf);
    }

    /// Appends a meta block whose contents `encode` writes.
    fn meta_block(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> BlockHandle {
        let start = self.out.len();
        encode(&mut self.out);
        let size = (self.out.len() - start) as u64;
        format::append_trailer(&mut self.out, start);
        BlockHandle { offset: self.written + start as u64, size }
    }

    /// Writes every whole chunk of the output buffer.
    async fn write_chunks(&mut self) -> Result<()> {
        let whole = self.out.len() / self.chunk * self.chunk;
        self.write_front(whole).await
    }

    /// Writes the first `len` bytes of the output (a multiple of the
    /// alignment) in chunk-sized writes and drops them from the buffer.
    async fn write_front(&mut self, len: usize) -> Result<()> {
        debug_assert_eq!(len as u64 % self.align, 0);
        let mut done = 0;
        while done < len {
            let n = self.chunk.min(len - done);
            let mut buf = self.file.alloc_buf(n);
            buf.as_mut_slice().copy_from_slice(&self.out[done..done + n]);
            self.file.write_at(buf, self.written + done as u64).await?;
            done += n;
        }
        self.out.drain(..len);
        self.written += len as u64;
        Ok(())
    }

    async fn write_rest(&mut self) -> Result<TableInfo> {
        if !self.block.is_empty() {
            self.finish_block(None);
        }
        let hashes = std::mem::take(&mut self.hashes);
        let bits = self.opts.bloom_bits_per_key;
        let filter = self.meta_block(|out| bloom::build(&hashes, bits, out));

        let mut tombstones = std::mem::take(&mut self.tombstones);
        tombstones.sort_by(format::tombstone_order);
        let tombstone_handle = self.meta_block(|out| format::encode_tombstones(out, &tombstones));

        let mut info = std::mem::take(&mut self.info);
        info.num_tombstones = tombstones.len() as u64;
        if info.num_entries > 0 {
            info.largest = Some(self.last_key.clone());
        }
        if info.min_seq == u64::MAX {
            info.min_seq = 0;
        }
        let properties = self.meta_block(|out| format::encode_properties(out, &info));

        let mut index_block = std::mem::replace(&mut self.index, BlockBuilder::new(1));
        let index = self.meta_block(|out| {
            index_block.finish_into(out);
        });

        // Pad so that the footer ends the file on an aligned boundary.
        let end = self.written + self.out.len() as u64;
        let size = (end + FOOTER_LEN as u64).next_multiple_of(self.align);
        self.out.resize(self.out.len() + (size - FOOTER_LEN as u64 - end) as usize, 0);
        Footer { file_size: size, index, filter, tombstones: tombstone_handle, properties }
            .encode_into_vec(&mut self.out);
        self.write_front(self.out.len()).await?;
        self.file.fdatasync().await?;
        info.size = size;
        Ok(info)
    }
}

/// Sets `out` to a short key `s` with `last <= s < next` (internal order),
/// so index entries stay small: the user key cut just past where `last` and
/// `next` first differ, with the largest trailer; `last` itself when no such
/// cut exists.
fn separator(last: &[u8], next: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let (a, b) = (key::user_key(last), key::user_key(next));
    let n = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    if n + 1 < a.len() && n < b.len() && a[n] < 0xff && a[n] + 1 < b[n] {
        // a < a[..n] ++ [a[n] + 1] < b: the cut is strictly between the user keys.
        out.extend_from_slice(&a[..n]);
        out.push(a[n] + 1);
        out.extend_from_slice(&key::trailer(MAX_SEQ, KIND_SEEK).to_le_bytes());
    } else {
        out.extend_from_slice(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ik(k: &[u8], seq: u64) -> Vec<u8> {
        key::encode(k, seq, Kind::Put as u8)
    }

    #[test]
    fn separators_lie_between_their_neighbours() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"apple", b"banana"),
            (b"abc1", b"abc9"),
            (b"abc", b"abcd"),
            (b"ab\xff", b"ac"),
            (b"a", b"b"),
            (b"same", b"same"),
            (b"abcdef", b"abd"),
        ];
        for (a, b) in cases {
            let (last, next) = (ik(a, 5), ik(b, 3));
            let mut s = Vec::new();
            separator(&last, &next, &mut s);
            assert!(key::compare(&last, &s).is_le(), "{a:?} {b:?} -> {s:?}");
            assert!(key::compare(&s, &next).is_lt(), "{a:?} {b:?} -> {s:?}");
        }
        let mut s = Vec::new();
        separator(&ik(b"abcdef", 1), &ik(b"abzzzz", 1), &mut s);
        assert_eq!(key::user_key(&s), b"abd", "cut short");
    }
}
