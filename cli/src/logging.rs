//! Structured logs on stderr through tracing-subscriber.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::CliError;

/// Installs the log subscriber. The filter is `flag` if given, else
/// `RUST_LOG`, else `file` (the config file's `log_level`), else `default`.
///
/// # Errors
/// [`CliError::Config`] for a filter that does not parse.
pub fn init(flag: Option<&str>, file: Option<&str>, default: &str) -> Result<(), CliError> {
    let env = std::env::var("RUST_LOG").ok().filter(|s| !s.trim().is_empty());
    let (what, directives) = match (flag, env, file) {
        (Some(f), _, _) => ("--log-level", f.to_owned()),
        (None, Some(e), _) => ("RUST_LOG", e),
        (None, None, Some(f)) => ("log_level", f.to_owned()),
        (None, None, None) => ("default", default.to_owned()),
    };
    let filter = EnvFilter::try_new(&directives)
        .map_err(|e| CliError::config(format!("{what} {directives:?}: {e}")))?;
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true)
        .try_init();
    Ok(())
}
