//! Write batches: puts, deletes and range deletions across column families,
//! applied atomically with consecutive sequence numbers.

use crate::key::{cf_key, Tombstone};
use crate::Cf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    Put { key: Vec<u8>, value: Vec<u8> },
    Delete { key: Vec<u8> },
    DeleteRange { start: Vec<u8>, end: Vec<u8> },
}

/// An atomic group of writes. Keys are stored with their family prefix, so
/// one batch may touch any number of families.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub(crate) ops: Vec<Op>,
    pub(crate) bytes: usize,
    pub(crate) marker: Option<Vec<u8>>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value` in `cf`.
    pub fn put(&mut self, cf: Cf, key: &[u8], value: &[u8]) -> &mut Self {
        self.bytes += key.len() + value.len();
        self.ops.push(Op::Put { key: cf_key(cf.0, key), value: value.to_vec() });
        self
    }

    /// Deletes `key` from `cf`.
    pub fn delete(&mut self, cf: Cf, key: &[u8]) -> &mut Self {
        self.bytes += key.len();
        self.ops.push(Op::Delete { key: cf_key(cf.0, key) });
        self
    }

    /// Deletes every key of `cf` in `[start, end)`. An empty range is a no-op;
    /// `start > end` is refused when the batch is written.
    pub fn delete_range(&mut self, cf: Cf, start: &[u8], end: &[u8]) -> &mut Self {
        self.bytes += start.len() + end.len();
        self.ops.push(Op::DeleteRange { start: cf_key(cf.0, start), end: cf_key(cf.0, end) });
        self
    }

    /// Deletes every key of `cf` from `start` to the family's end.
    pub fn delete_from(&mut self, cf: Cf, start: &[u8]) -> &mut Self {
        self.bytes += start.len();
        self.ops.push(Op::DeleteRange { start: cf_key(cf.0, start), end: crate::key::cf_end(cf.0) });
        self
    }

    /// The opaque flush marker: once the memtable holding this batch is
    /// flushed, [`crate::Lsm::open`] reports this marker (the newest one
    /// flushed). The engine puts its applied raft positions here.
    pub fn set_marker(&mut self, marker: Vec<u8>) -> &mut Self {
        self.marker = Some(marker);
        self
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether it holds no operation (a marker alone still counts as empty).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// User bytes (keys and values) in the batch.
    pub fn size(&self) -> usize {
        self.bytes
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.ops.clear();
        self.bytes = 0;
        self.marker = None;
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        for op in &self.ops {
            if let Op::DeleteRange { start, end } = op {
                if start > end {
                    return Err(format!("delete_range start {start:?} is after end {end:?}"));
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn tombstone(start: &[u8], end: &[u8], seq: u64) -> Tombstone {
    Tombstone { start: start.to_vec(), end: end.to_vec(), seq }
}
