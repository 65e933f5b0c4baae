//! What a client operation can end in.

use ekv_proto::msg::WireError;
use ekv_proto::RegionId;

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A write may or may not have taken effect: its answer was lost (a
    /// timeout, a broken connection, a leader change after it was
    /// proposed). It is not retried blindly; read the key to find out.
    #[error("outcome unknown for {region}: {reason}")]
    OutcomeUnknown {
        /// The region the write went to.
        region: RegionId,
        /// What happened to the answer.
        reason: String,
    },
    /// The deadline passed before the operation succeeded; nothing was
    /// applied (every attempt was refused or never reached a server).
    #[error("deadline exceeded after {attempts} attempts; last: {last}")]
    DeadlineExceeded {
        /// Attempts made.
        attempts: u32,
        /// The last failure seen.
        last: String,
    },
    /// The server refused the request for a reason retrying cannot fix
    /// (a malformed request, a frame over the limits).
    #[error("refused: {0}")]
    Refused(WireError),
    /// The meta service could not be reached or gave an unusable answer.
    #[error("meta service: {0}")]
    Meta(String),
    /// The arguments are not valid (an empty batch is fine; a key over the
    /// frame limits is not).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// The client's result.
pub type Result<T> = std::result::Result<T, Error>;
