//! What a subcommand can fail with, and the exit code each failure gets.

use std::process::ExitCode;

/// Why a subcommand failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    /// Invalid configuration or arguments: exit code 2.
    Config(String),
    /// Anything else: exit code 1.
    Failed(String),
}

impl CliError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Config(_) => ExitCode::from(2),
            CliError::Failed(_) => ExitCode::from(1),
        }
    }

    /// A configuration error.
    pub fn config(msg: impl Into<String>) -> Self {
        CliError::Config(msg.into())
    }

    /// Any other failure.
    pub fn failed(msg: impl Into<String>) -> Self {
        CliError::Failed(msg.into())
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Config(m) => write!(f, "invalid configuration: {m}"),
            CliError::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CliError {}

/// The result of a subcommand: the exit code on success.
pub type CliResult = Result<ExitCode, CliError>;
