//! Internal keys: how versions of one user key are ordered.
//!
//! An internal key is the user key followed by an 8-byte little-endian
//! trailer `seq << 8 | kind`. Internal keys sort by user key ascending, then
//! by trailer descending, so the newest version of a key comes first and a
//! seek to `(key, snapshot_seq, KIND_SEEK)` lands on the newest version
//! visible at that snapshot.
//!
//! The tree's user key is itself `cf_id (4 bytes big-endian) ++ key`: column
//! families are key prefixes of one tree, which is what makes a write batch
//! across them atomic for free and a dropped family one range deletion.

use std::cmp::Ordering;

/// Sequence numbers are 56 bits: the low byte of the trailer is the kind.
pub const MAX_SEQ: u64 = (1 << 56) - 1;
/// Length of the trailer.
pub const TRAILER_LEN: usize = 8;

/// The kind of a point entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Kind {
    /// A deletion of one key.
    Delete = 0,
    /// A value.
    Put = 1,
}

/// The kind used in seek keys: the largest, so `(k, s, KIND_SEEK)` sorts
/// before every entry of `k` with seq `s`.
pub const KIND_SEEK: u8 = 1;

impl Kind {
    /// Decodes a kind byte.
    pub fn from_u8(b: u8) -> Option<Kind> {
        match b {
            0 => Some(Kind::Delete),
            1 => Some(Kind::Put),
            _ => None,
        }
    }
}

/// Packs a trailer.
#[inline]
pub fn trailer(seq: u64, kind: u8) -> u64 {
    debug_assert!(seq <= MAX_SEQ);
    seq << 8 | kind as u64
}

/// Appends the internal key of `(user_key, seq, kind)` to `out`.
#[inline]
pub fn encode_into(out: &mut Vec<u8>, user_key: &[u8], seq: u64, kind: u8) {
    out.extend_from_slice(user_key);
    out.extend_from_slice(&trailer(seq, kind).to_le_bytes());
}

/// The internal key of `(user_key, seq, kind)`.
pub fn encode(user_key: &[u8], seq: u64, kind: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(user_key.len() + TRAILER_LEN);
    encode_into(&mut v, user_key, seq, kind);
    v
}

/// The key to seek to for the newest version of `user_key` visible at `seq`.
pub fn seek_key(user_key: &[u8], seq: u64) -> Vec<u8> {
    encode(user_key, seq, KIND_SEEK)
}

/// The user key part. Callers only pass keys that are at least
/// [`TRAILER_LEN`] long (decoders check this before handing keys out).
#[inline]
pub fn user_key(ikey: &[u8]) -> &[u8] {
    &ikey[..ikey.len() - TRAILER_LEN]
}

/// The trailer.
#[inline]
pub fn trailer_of(ikey: &[u8]) -> u64 {
    let t = &ikey[ikey.len() - TRAILER_LEN..];
    u64::from_le_bytes([t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]])
}

/// The sequence number.
#[inline]
pub fn seq_of(ikey: &[u8]) -> u64 {
    trailer_of(ikey) >> 8
}

/// The kind byte.
#[inline]
pub fn kind_of(ikey: &[u8]) -> u8 {
    trailer_of(ikey) as u8
}

/// Rewrites the seq in a trailer (ingested tables carry one global seq).
#[inline]
pub fn set_seq(ikey: &mut [u8], seq: u64) {
    let kind = kind_of(ikey);
    let n = ikey.len();
    ikey[n - TRAILER_LEN..].copy_from_slice(&trailer(seq, kind).to_le_bytes());
}

/// Byte-wise order of two short slices, eight bytes at a time: keys here
/// are tens of bytes, where a call into libc's `memcmp` costs more than the
/// comparison itself.
#[inline]
pub fn compare_bytes(a: &[u8], b: &[u8]) -> Ordering {
    let n = a.len().min(b.len());
    let mut i = 0;
    while i + 8 <= n {
        let x = u64::from_be_bytes(a[i..i + 8].try_into().expect("8 bytes"));
        let y = u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if x != y {
            return x.cmp(&y);
        }
        i += 8;
    }
    match a[i..n].cmp(&b[i..n]) {
        Ordering::Equal => a.len().cmp(&b.len()),
        o => o,
    }
}

/// The internal-key order.
#[inline]
pub fn compare(a: &[u8], b: &[u8]) -> Ordering {
    match compare_bytes(user_key(a), user_key(b)) {
        Ordering::Equal => trailer_of(b).cmp(&trailer_of(a)),
        o => o,
    }
}

/// The immediate successor of `key` in byte order, `key ++ [0]`. Table bounds are
/// half-open `[smallest, upper)`, and a table whose last key is `k` has
/// `upper = successor(k)`.
pub fn successor(key: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(key.len() + 1);
    v.extend_from_slice(key);
    v.push(0);
    v
}

/// Column-family prefix of a tree key.
pub const CF_PREFIX_LEN: usize = 4;

/// `cf ++ key`.
pub fn cf_key(cf: u32, key: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(CF_PREFIX_LEN + key.len());
    v.extend_from_slice(&cf.to_be_bytes());
    v.extend_from_slice(key);
    v
}

/// Column-family ids stay below this, so every family has a finite end.
pub const MAX_CF_ID: u32 = u32::MAX - 1;

/// The first tree key after every key of `cf` (`cf <= MAX_CF_ID`).
pub fn cf_end(cf: u32) -> Vec<u8> {
    debug_assert!(cf <= MAX_CF_ID);
    (cf + 1).to_be_bytes().to_vec()
}

/// A range deletion: every version of every user key in `[start, end)` with
/// a seq below `seq` is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tombstone {
    /// First deleted user key.
    pub start: Vec<u8>,
    /// First user key not deleted (exclusive).
    pub end: Vec<u8>,
    /// Versions with a lower seq are deleted.
    pub seq: u64,
}

impl Tombstone {
    /// Whether this tombstone deletes version `seq` of `user_key`.
    #[inline]
    pub fn covers(&self, user_key: &[u8], seq: u64) -> bool {
        seq < self.seq && self.start.as_slice() <= user_key && user_key < self.end.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_version_first_and_prefixes_sort_by_user_key() {
        let a5 = encode(b"a", 5, Kind::Put as u8);
        let a3 = encode(b"a", 3, Kind::Put as u8);
        let a3d = encode(b"a", 3, Kind::Delete as u8);
        let ab1 = encode(b"ab", 1, Kind::Put as u8);
        assert_eq!(compare(&a5, &a3), Ordering::Less);
        assert_eq!(compare(&a3, &a3d), Ordering::Less);
        assert_eq!(compare(&a3d, &ab1), Ordering::Less);
        assert_eq!(compare(&seek_key(b"a", 4), &a3), Ordering::Less);
        assert_eq!(compare(&seek_key(b"a", 4), &a5), Ordering::Greater);
        assert_eq!(seq_of(&a5), 5);
        assert_eq!(kind_of(&a3d), 0);
        let mut k = a3.clone();
        set_seq(&mut k, 9);
        assert_eq!((seq_of(&k), kind_of(&k), user_key(&k)), (9, 1, &b"a"[..]));
    }

    #[test]
    fn compare_bytes_is_slice_order() {
        let keys: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            vec![1; 7],
            vec![1; 8],
            vec![1; 9],
            [vec![1; 8], vec![0]].concat(),
            [vec![1; 8], vec![2, 0, 0, 0, 0, 0, 0, 0, 0]].concat(),
            vec![255; 17],
            b"abcdefgh-longer-key".to_vec(),
            b"abcdefgh-longer-kez".to_vec(),
        ];
        for a in &keys {
            for b in &keys {
                assert_eq!(compare_bytes(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn cf_ranges_are_disjoint() {
        assert!(cf_key(1, b"\xff\xff") < cf_end(1));
        assert!(cf_end(1) <= cf_key(2, b""));
        assert!(cf_key(MAX_CF_ID, &[0xff; 9]) < cf_end(MAX_CF_ID));
    }
}
