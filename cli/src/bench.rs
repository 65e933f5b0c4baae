//! `ekv bench ARGS...`: runs `ekv-bench ARGS...` (the benchmark suite),
//! found next to this binary or on PATH.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use crate::error::CliResult;
use crate::CliError;

/// `ekv bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Arguments for `ekv-bench`, e.g. `kv --quick` or `wal --json`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

fn find() -> Option<PathBuf> {
    let beside = std::env::current_exe().ok()?.parent()?.join("ekv-bench");
    if beside.is_file() {
        return Some(beside);
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join("ekv-bench")).find(|p| p.is_file())
}

/// `ekv bench`: replaces this process with `ekv-bench`.
pub fn run(args: &BenchArgs) -> CliResult {
    let Some(bin) = find() else {
        return Err(CliError::failed(
            "ekv-bench is neither next to this binary nor on PATH; build it with \
             `cargo build --release -p ekv-bench` (or run `cargo run --release -p ekv-bench -- ARGS`)",
        ));
    };
    let err = std::process::Command::new(&bin).args(&args.args).exec();
    Err(CliError::failed(format!("running {}: {err}", bin.display())))
}
