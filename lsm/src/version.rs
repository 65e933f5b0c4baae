//! Versions: which tables make up the tree, level by level, and the edits
//! that move from one version to the next.
//!
//! A version is immutable and shared (`Rc<Version>`): a read or an iterator
//! holds the one it started on, so a compaction that replaces tables never
//! pulls a table from under it. A table file is removed only once no version
//! that lists it is alive.

use std::rc::Rc;

use ekv_proto::codec::{put_len_prefixed, put_uvarint, DecodeError, Reader};

use crate::table::Table;

/// What the manifest knows of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileMeta {
    pub number: u64,
    pub size: u64,
    /// Smallest user key of any entry or range deletion.
    pub smallest: Vec<u8>,
    /// Exclusive upper bound of user keys (successor of the largest point
    /// key, or the end of the last range deletion).
    pub upper: Vec<u8>,
    pub min_seq: u64,
    pub max_seq: u64,
    /// Ingested tables store seq 0 and read as this seq.
    pub global_seq: Option<u64>,
    pub num_entries: u64,
    pub num_deletions: u64,
    pub num_tombstones: u64,
    pub raw_bytes: u64,
}

impl FileMeta {
    pub(crate) fn overlaps(&self, start: &[u8], upper: &[u8]) -> bool {
        self.smallest.as_slice() < upper && start < self.upper.as_slice()
    }

    pub(crate) fn contains_key(&self, user_key: &[u8]) -> bool {
        self.smallest.as_slice() <= user_key && user_key < self.upper.as_slice()
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        put_uvarint(out, self.number);
        put_uvarint(out, self.size);
        put_len_prefixed(out, &self.smallest);
        put_len_prefixed(out, &self.upper);
        put_uvarint(out, self.min_seq);
        put_uvarint(out, self.max_seq);
        match self.global_seq {
            None => out.push(0),
            Some(s) => {
                out.push(1);
                put_uvarint(out, s);
            }
        }
        put_uvarint(out, self.num_entries);
        put_uvarint(out, self.num_deletions);
        put_uvarint(out, self.num_tombstones);
        put_uvarint(out, self.raw_bytes);
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let number = r.uvarint("table number")?;
        let size = r.uvarint("table size")?;
        let smallest = r.len_prefixed("smallest key", MAX_KEY)?.to_vec();
        let upper = r.len_prefixed("upper key", MAX_KEY)?.to_vec();
        let min_seq = r.uvarint("min seq")?;
        let max_seq = r.uvarint("max seq")?;
        let global_seq = match r.u8("global seq flag")? {
            0 => None,
            1 => Some(r.uvarint("global seq")?),
            v => return Err(DecodeError::Invalid { what: "global seq flag", value: v as u64 }),
        };
        Ok(FileMeta {
            number,
            size,
            smallest,
            upper,
            min_seq,
            max_seq,
            global_seq,
            num_entries: r.uvarint("entries")?,
            num_deletions: r.uvarint("deletions")?,
            num_tombstones: r.uvarint("tombstones")?,
            raw_bytes: r.uvarint("raw bytes")?,
        })
    }
}

/// Longest key the manifest accepts.
const MAX_KEY: usize = 1 << 20;
/// Longest marker the manifest accepts.
pub(crate) const MAX_MARKER: usize = 16 << 20;
/// Version of the edit encoding.
const EDIT_FORMAT: u8 = 1;

/// One step from a version to the next. A new manifest starts with an edit
/// that lists the whole version (`snapshot = true`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct VersionEdit {
    pub snapshot: bool,
    pub marker: Option<Vec<u8>>,
    pub last_seq: Option<u64>,
    pub next_file: Option<u64>,
    pub added: Vec<(usize, FileMeta)>,
    pub deleted: Vec<(usize, u64)>,
    pub cf_added: Vec<(u32, String)>,
    pub cf_dropped: Vec<u32>,
}

const TAG_MARKER: u8 = 1;
const TAG_LAST_SEQ: u8 = 2;
const TAG_NEXT_FILE: u8 = 3;
const TAG_ADD: u8 = 4;
const TAG_DELETE: u8 = 5;
const TAG_CF_ADD: u8 = 6;
const TAG_CF_DROP: u8 = 7;

impl VersionEdit {
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(EDIT_FORMAT);
        out.push(self.snapshot as u8);
        if let Some(m) = &self.marker {
            out.push(TAG_MARKER);
            put_len_prefixed(out, m);
        }
        if let Some(s) = self.last_seq {
            out.push(TAG_LAST_SEQ);
            put_uvarint(out, s);
        }
        if let Some(n) = self.next_file {
            out.push(TAG_NEXT_FILE);
            put_uvarint(out, n);
        }
        for (level, f) in &self.added {
            out.push(TAG_ADD);
            put_uvarint(out, *level as u64);
            f.encode_into(out);
        }
        for (level, n) in &self.deleted {
            out.push(TAG_DELETE);
            put_uvarint(out, *level as u64);
            put_uvarint(out, *n);
        }
        for (id, name) in &self.cf_added {
            out.push(TAG_CF_ADD);
            put_uvarint(out, *id as u64);
            put_len_prefixed(out, name.as_bytes());
        }
        for id in &self.cf_dropped {
            out.push(TAG_CF_DROP);
            put_uvarint(out, *id as u64);
        }
    }

    pub(crate) fn decode_from(bytes: &[u8], num_levels: usize) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let format = r.u8("edit format")?;
        if format != EDIT_FORMAT {
            return Err(DecodeError::Invalid { what: "edit format", value: format as u64 });
        }
        let mut e = VersionEdit { snapshot: r.u8("snapshot flag")? == 1, ..Default::default() };
        let level = |r: &mut Reader<'_>| -> Result<usize, DecodeError> {
            let l = r.uvarint("level")?;
            if l >= num_levels as u64 {
                return Err(DecodeError::Invalid { what: "level", value: l });
            }
            Ok(l as usize)
        };
        while !r.is_empty() {
            match r.u8("edit tag")? {
                TAG_MARKER => e.marker = Some(r.len_prefixed("marker", MAX_MARKER)?.to_vec()),
                TAG_LAST_SEQ => e.last_seq = Some(r.uvarint("last seq")?),
                TAG_NEXT_FILE => e.next_file = Some(r.uvarint("next file")?),
                TAG_ADD => {
                    let l = level(&mut r)?;
                    e.added.push((l, FileMeta::decode_from(&mut r)?));
                }
                TAG_DELETE => {
                    let l = level(&mut r)?;
                    e.deleted.push((l, r.uvarint("table number")?));
                }
                TAG_CF_ADD => {
                    let id = cf_id(&mut r)?;
                    let name = std::str::from_utf8(r.len_prefixed("cf name", 4096)?)
                        .map_err(|_| DecodeError::Invalid { what: "cf name (utf-8)", value: 0 })?;
                    e.cf_added.push((id, name.to_string()));
                }
                TAG_CF_DROP => {
                    let id = cf_id(&mut r)?;
                    e.cf_dropped.push(id);
                }
                t => return Err(DecodeError::Invalid { what: "edit tag", value: t as u64 }),
            }
        }
        Ok(e)
    }
}

fn cf_id(r: &mut Reader<'_>) -> Result<u32, DecodeError> {
    let id = r.uvarint("cf id")?;
    match u32::try_from(id) {
        Ok(id) if id <= crate::key::MAX_CF_ID => Ok(id),
        _ => Err(DecodeError::Invalid { what: "cf id", value: id }),
    }
}

/// A table in a version: its manifest entry and its open reader.
#[derive(Debug)]
pub(crate) struct TableHandle<F: ekv_io::File> {
    pub meta: FileMeta,
    pub table: Rc<Table<F>>,
}

/// The tables of the tree, by level. L0 is ordered newest first (its tables
/// may overlap); every other level is sorted by key and does not overlap.
#[derive(Debug)]
pub(crate) struct Version<F: ekv_io::File> {
    pub levels: Vec<Vec<Rc<TableHandle<F>>>>,
}

impl<F: ekv_io::File> Clone for Version<F> {
    fn clone(&self) -> Self {
        Version { levels: self.levels.clone() }
    }
}

impl<F: ekv_io::File> Version<F> {
    pub(crate) fn new(num_levels: usize) -> Self {
        Version { levels: vec![Vec::new(); num_levels] }
    }

    pub(crate) fn level_bytes(&self, level: usize) -> u64 {
        self.levels[level].iter().map(|t| t.meta.size).sum()
    }

    /// Tables of `level` overlapping `[start, upper)`.
    pub(crate) fn overlapping(&self, level: usize, start: &[u8], upper: &[u8]) -> Vec<Rc<TableHandle<F>>> {
        self.levels[level].iter().filter(|t| t.meta.overlaps(start, upper)).cloned().collect()
    }

    /// The table of a sorted level (>= 1) that may hold `user_key`.
    pub(crate) fn find_in_level(&self, level: usize, user_key: &[u8]) -> Option<&Rc<TableHandle<F>>> {
        let files = &self.levels[level];
        let i = files.partition_point(|t| t.meta.upper.as_slice() <= user_key);
        files.get(i).filter(|t| t.meta.smallest.as_slice() <= user_key)
    }

    /// Applies an edit whose added tables are already open.
    pub(crate) fn apply(&self, deleted: &[(usize, u64)], added: Vec<(usize, Rc<TableHandle<F>>)>) -> Self {
        let mut v = self.clone();
        for (level, number) in deleted {
            v.levels[*level].retain(|t| t.meta.number != *number);
        }
        for (level, t) in added {
            if level == 0 {
                v.levels[0].push(t);
            } else {
                let files = &mut v.levels[level];
                let i = files.partition_point(|f| f.meta.smallest < t.meta.smallest);
                files.insert(i, t);
            }
        }
        // Newest first: ingested and flushed tables carry higher seqs.
        v.levels[0]
            .sort_by(|a, b| b.meta.max_seq.cmp(&a.meta.max_seq).then(b.meta.number.cmp(&a.meta.number)));
        v
    }

    /// Every level >= 1 sorted and free of overlap (checked after recovery).
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        for (level, files) in self.levels.iter().enumerate().skip(1) {
            for w in files.windows(2) {
                if w[0].meta.upper > w[1].meta.smallest {
                    return Err(format!(
                        "level {level}: table {} overlaps table {}",
                        w[0].meta.number, w[1].meta.number
                    ));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn all_tables(&self) -> impl Iterator<Item = (usize, &Rc<TableHandle<F>>)> {
        self.levels.iter().enumerate().flat_map(|(l, files)| files.iter().map(move |t| (l, t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_round_trips_and_rejects_damage() {
        let f = FileMeta {
            number: 7,
            size: 4096,
            smallest: b"a".to_vec(),
            upper: b"q\0".to_vec(),
            min_seq: 3,
            max_seq: 90,
            global_seq: Some(91),
            num_entries: 10,
            num_deletions: 1,
            num_tombstones: 2,
            raw_bytes: 999,
        };
        let e = VersionEdit {
            snapshot: true,
            marker: Some(b"applied=5".to_vec()),
            last_seq: Some(90),
            next_file: Some(8),
            added: vec![(1, f)],
            deleted: vec![(0, 3)],
            cf_added: vec![(1, "lock".into())],
            cf_dropped: vec![2],
        };
        let mut buf = Vec::new();
        e.encode_into(&mut buf);
        assert_eq!(VersionEdit::decode_from(&buf, 7).unwrap(), e);
        assert!(VersionEdit::decode_from(&buf, 1).is_err(), "level 1 beyond one level");
        for cut in 0..buf.len() {
            // Every strict prefix either fails or decodes to something else.
            if let Ok(d) = VersionEdit::decode_from(&buf[..cut], 7) {
                assert_ne!(d, e);
            }
        }
    }
}
