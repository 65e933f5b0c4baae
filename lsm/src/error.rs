//! Errors of the LSM tree.

use std::path::PathBuf;

/// Errors returned by the tree.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file operation failed.
    #[error(transparent)]
    Io(#[from] ekv_io::IoError),
    /// Bytes on disk are damaged or do not decode: names the file and the
    /// offset of the block (or record) that failed.
    #[error("corruption in {} at offset {offset}: {what}", file.display())]
    Corruption {
        /// The table or manifest file.
        file: PathBuf,
        /// Byte offset of the damaged block or record.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// The caller passed something the tree cannot accept.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No column family of that name (or id) exists.
    #[error("column family {0:?} does not exist")]
    NoSuchColumnFamily(String),
    /// A background flush or compaction failed to make its result durable
    /// (a failed fdatasync, say); the tree refuses further writes because
    /// what is on disk is no longer known. Reopen to recover.
    #[error("tree poisoned by an earlier failure: {0}")]
    Poisoned(String),
    /// The tree was closed.
    #[error("tree is closed")]
    Closed,
}

impl Error {
    /// What a failpoint returns to stop the tree right there, as a crash
    /// would: an I/O error naming the point.
    // Built whenever the `fail` crate's failpoints are (features unify).
    #[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
    pub(crate) fn failpoint(name: &'static str) -> Self {
        Error::Io(ekv_io::IoError::new("failpoint", name, std::io::Error::other("injected crash")))
    }

    pub(crate) fn corruption(file: impl Into<PathBuf>, offset: u64, what: impl Into<String>) -> Self {
        Error::Corruption { file: file.into(), offset, what: what.into() }
    }
}

/// Result of tree operations.
pub type Result<T> = std::result::Result<T, Error>;
