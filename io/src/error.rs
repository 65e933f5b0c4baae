//! I/O errors that say what was being done to which file.

use std::path::PathBuf;

/// An I/O error with the operation and the path it concerned.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}", path = .path.display())]
pub struct IoError {
    /// What was being done: "write", "fdatasync", "rename", ...
    pub op: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The operating system's error.
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    /// Wraps `source` with its operation and path.
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self { op, path: path.into(), source }
    }

    /// The raw OS error number, if any (for ENOSPC and friends).
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

/// Result of a file operation.
pub type Result<T> = std::result::Result<T, IoError>;
