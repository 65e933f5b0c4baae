//! Range deletions cut into non-overlapping fragments.
//!
//! Tombstones may overlap each other. For reads and compaction it is simpler
//! to cut them at every start and end into fragments `[b_i, b_i+1)`, each
//! with the sorted seqs of the tombstones that cover it; then "is version
//! `s` of `k` deleted?" is one binary search.

use std::collections::BTreeMap;

use crate::key::Tombstone;

#[derive(Debug, Default, Clone)]
pub(crate) struct Fragments {
    /// Boundaries, sorted and unique; fragment `i` is `[bounds[i], bounds[i+1])`.
    bounds: Vec<Vec<u8>>,
    /// Seqs covering fragment `i`, ascending.
    seqs: Vec<Vec<u64>>,
}

impl Fragments {
    pub(crate) fn new<'a>(tombstones: impl IntoIterator<Item = &'a Tombstone>) -> Self {
        let mut events: Vec<(&[u8], bool, u64)> = Vec::new();
        for t in tombstones {
            if t.start < t.end {
                events.push((&t.start, true, t.seq));
                events.push((&t.end, false, t.seq));
            }
        }
        if events.is_empty() {
            return Fragments::default();
        }
        events.sort_by(|a, b| a.0.cmp(b.0));
        let mut active: BTreeMap<u64, usize> = BTreeMap::new();
        let mut bounds: Vec<Vec<u8>> = Vec::new();
        let mut seqs = Vec::new();
        let mut i = 0;
        while i < events.len() {
            let at = events[i].0;
            while i < events.len() && events[i].0 == at {
                let (_, start, seq) = events[i];
                if start {
                    *active.entry(seq).or_default() += 1;
                } else if let Some(n) = active.get_mut(&seq) {
                    *n -= 1;
                    if *n == 0 {
                        active.remove(&seq);
                    }
                }
                i += 1;
            }
            bounds.push(at.to_vec());
            seqs.push(active.keys().copied().collect());
        }
        // The last boundary opens an empty fragment; keep the vectors aligned.
        Fragments { bounds, seqs }
    }

    fn fragment(&self, user_key: &[u8]) -> Option<&[u64]> {
        let i = self.bounds.partition_point(|b| b.as_slice() <= user_key);
        if i == 0 {
            return None;
        }
        Some(&self.seqs[i - 1])
    }

    /// Whether version `seq` of `user_key` is deleted by a tombstone visible
    /// at `snapshot`.
    pub(crate) fn covers(&self, user_key: &[u8], seq: u64, snapshot: u64) -> bool {
        self.fragment(user_key).is_some_and(|s| s.iter().rev().any(|&t| t <= snapshot && t > seq))
    }

    /// The smallest tombstone seq above `seq` covering `user_key`: a
    /// compaction may drop version `seq` if no snapshot lies in between.
    pub(crate) fn next_above(&self, user_key: &[u8], seq: u64) -> Option<u64> {
        self.fragment(user_key).and_then(|s| s.iter().copied().find(|&t| t > seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str, e: &str, seq: u64) -> Tombstone {
        Tombstone { start: s.into(), end: e.into(), seq }
    }

    #[test]
    fn overlapping_tombstones_fragment_correctly() {
        let ts = [t("b", "f", 10), t("d", "h", 20), t("x", "x", 99)];
        let f = Fragments::new(&ts);
        assert!(!f.covers(b"a", 1, 100));
        assert!(f.covers(b"b", 9, 100));
        assert!(!f.covers(b"b", 10, 100));
        assert!(f.covers(b"e", 15, 100));
        assert!(!f.covers(b"e", 15, 19), "tombstone 20 is not visible at 19");
        assert!(f.covers(b"g", 19, 100));
        assert!(!f.covers(b"h", 1, 100));
        assert!(!f.covers(b"x", 1, 100), "empty range deletes nothing");
        assert_eq!(f.next_above(b"e", 5), Some(10));
        assert_eq!(f.next_above(b"e", 10), Some(20));
        assert_eq!(f.next_above(b"e", 20), None);
    }
}
