//! Errors of loading and building histories. A history that fails a check is not an error:
//! that is a [`crate::Verdict`].

use std::fmt;
use std::path::PathBuf;

use crate::ProcessId;

/// An error loading or building a history.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a history file failed.
    Io {
        /// What was being done: "open", "create", "read", "write" or "sync".
        op: &'static str,
        /// The file, if there is one.
        path: Option<PathBuf>,
        /// The cause.
        source: std::io::Error,
    },
    /// A line of a JSON-lines history is not an operation.
    Json {
        /// The line number, from 1.
        line: usize,
        /// The cause.
        source: serde_json::Error,
    },
    /// In event form, `process` invoked an operation while another of its was pending.
    ProcessBusy {
        /// The event's index, from 0.
        event: usize,
        /// The process.
        process: ProcessId,
    },
    /// In event form, `process` completed an operation while none of its was pending.
    NothingPending {
        /// The event's index, from 0.
        event: usize,
        /// The process.
        process: ProcessId,
    },
}

/// A result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path: Some(path), source } => {
                write!(f, "cannot {op} history file {}: {source}", path.display())
            }
            Error::Io { op, path: None, source } => write!(f, "cannot {op} history: {source}"),
            Error::Json { line, source } => write!(f, "history line {line}: {source}"),
            Error::ProcessBusy { event, process } => {
                write!(f, "event {event}: {process} invoked an operation while one was pending")
            }
            Error::NothingPending { event, process } => {
                write!(f, "event {event}: {process} completed an operation but none was pending")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Json { source, .. } => Some(source),
            Error::ProcessBusy { .. } | Error::NothingPending { .. } => None,
        }
    }
}
