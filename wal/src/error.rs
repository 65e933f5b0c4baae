//! Errors of the write-ahead log.

use std::path::PathBuf;

use ekv_proto::{codec::DecodeError, RegionId};

/// What is wrong with bytes found on disk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptionKind {
    /// The segment header's magic, version or checksum is wrong.
    #[error("bad segment header")]
    BadHeader,
    /// The segment header names another segment than its file name does.
    #[error("segment header says seq {found}, file name says {expected}")]
    SeqMismatch {
        /// Seq from the file name.
        expected: u64,
        /// Seq in the header.
        found: u64,
    },
    /// The segment header's previous-segment link is wrong.
    #[error("segment links to previous seq {found}, expected {expected}")]
    BrokenChain {
        /// The seq of the segment before it.
        expected: u64,
        /// The seq it names.
        found: u64,
    },
    /// A segment in the middle of the log is missing.
    #[error("segment {seq} is missing")]
    MissingSegment {
        /// The missing seq.
        seq: u64,
    },
    /// A record's checksum does not match (or its header is unreadable)
    /// before the point where the segment is known to end.
    #[error("record checksum mismatch (segment ends at {segment_end})")]
    Checksum {
        /// Where the segment's data ends according to the next segment.
        segment_end: u64,
    },
    /// A record passed its checksum but does not decode.
    #[error("undecodable record: {0}")]
    Decode(DecodeError),
    /// A record decodes but contradicts the log (an entry gap, say).
    #[error("record contradicts the log: {0}")]
    Inconsistent(String),
}

/// Errors returned by the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file operation failed.
    #[error(transparent)]
    Io(#[from] ekv_io::IoError),
    /// Damaged data before the tail of the log. Open with
    /// [`RecoveryMode::TruncateCorrupt`](crate::RecoveryMode::TruncateCorrupt)
    /// to drop everything from here on and go on.
    #[error("corrupt WAL at {path}, offset {offset}: {kind}", path = .path.display())]
    Corruption {
        /// The segment file.
        path: PathBuf,
        /// Byte offset in it.
        offset: u64,
        /// What is wrong.
        kind: CorruptionKind,
    },
    /// An earlier write or sync failed (the text says which, on which file
    /// and why); the state on disk is unknown, so the log refuses further
    /// writes until it is reopened. A failed fdatasync is never retried: the
    /// kernel may have dropped the dirty pages it could not write.
    #[error("WAL is poisoned by an earlier failure ({0}); reopen it")]
    Poisoned(String),
    /// The entry was compacted away.
    #[error("{region}: index {index} is compacted (first index {first_index})")]
    Compacted {
        /// Region.
        region: RegionId,
        /// Requested index.
        index: u64,
        /// First index still held.
        first_index: u64,
    },
    /// The entry is past the end of the log.
    #[error("{region}: index {index} is unavailable (last index {last_index})")]
    Unavailable {
        /// Region.
        region: RegionId,
        /// Requested index.
        index: u64,
        /// Last index held.
        last_index: u64,
    },
    /// The log has nothing for this region.
    #[error("{0}: no log")]
    RegionNotFound(RegionId),
    /// Appended entries would leave a hole in the region's log.
    #[error("{region}: append at {index} leaves a gap (log holds {first_index}..={last_index})")]
    Gap {
        /// Region.
        region: RegionId,
        /// First index of the append.
        index: u64,
        /// First index held.
        first_index: u64,
        /// Last index held.
        last_index: u64,
    },
    /// Entries of one append are not consecutive.
    #[error("{region}: entries not consecutive at index {index}")]
    NotConsecutive {
        /// Region.
        region: RegionId,
        /// The first out-of-order index.
        index: u64,
    },
    /// One batch is larger than a segment can hold.
    #[error("batch of {size} bytes exceeds the largest record, {limit} bytes")]
    BatchTooLarge {
        /// Encoded size.
        size: u64,
        /// The limit (segment size less its header).
        limit: u64,
    },
    /// The region changed while log maintenance was re-writing it; nothing
    /// was written (internal to maintenance, never returned by `write`
    /// for an unguarded batch).
    #[error("{0} changed during log maintenance")]
    RegionChanged(RegionId),
    /// Options are invalid.
    #[error("invalid WAL option: {0}")]
    InvalidOption(&'static str),
}

impl Error {
    /// What a failpoint returns to stop the log right there, as a crash
    /// would: an I/O error naming the point.
    // Built whenever the `fail` crate's failpoints are (features unify).
    #[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
    pub(crate) fn failpoint(name: &'static str) -> Self {
        Error::Io(ekv_io::IoError::new("failpoint", name, std::io::Error::other("injected crash")))
    }
}

/// Result of a log operation.
pub type Result<T> = std::result::Result<T, Error>;
