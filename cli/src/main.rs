//! `ekv`: the one binary of an ekv deployment.
//!
//! ```text
//! ekv pd          a meta-service member
//! ekv store       a store process (one shard per core)
//! ekv playground  a meta service and three stores on loopback, in one process
//! ekv ctl         talk to a cluster: get, put, scan, stores, regions, split, ...
//! ekv doctor      can this host run ekv well?
//! ekv bench       the benchmark suite (runs `ekv-bench`)
//! ```
//!
//! Exit codes: 0 success (and a clean stop on SIGTERM/SIGINT), 1 failure,
//! 2 invalid configuration or arguments. `docs/deploy.md` is the operator's
//! guide.
//!
//! Rule: this crate sits on top and may use any ekv crate; it holds no
//! storage or consensus logic of its own.

mod bench;
mod config;
mod ctl;
mod doctor;
mod error;
mod http;
mod logging;
mod metrics;
mod playground;
mod server;
mod signals;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use error::CliError;

/// ekv: a range-sharded, Raft-replicated key-value store.
#[derive(Debug, Parser)]
#[command(name = "ekv", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a meta-service (placement driver) member.
    Pd(config::PdArgs),
    /// Run a store.
    Store(config::StoreArgs),
    /// Run a meta service and stores on loopback in this process.
    Playground(playground::PlaygroundArgs),
    /// Talk to a running cluster.
    Ctl(ctl::CtlArgs),
    /// Check whether this host can run ekv well.
    Doctor(doctor::DoctorArgs),
    /// Run the benchmark suite (`ekv-bench`, next to this binary or on PATH;
    /// `ekv bench --help` shows its help).
    #[command(disable_help_flag = true)]
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.cmd, Cmd::Pd(_) | Cmd::Store(_) | Cmd::Playground(_)) {
        panics_stop_the_process();
    }
    let result = match cli.cmd {
        Cmd::Pd(args) => server::run_pd(&args),
        Cmd::Store(args) => server::run_store(&args),
        Cmd::Playground(args) => playground::run(&args),
        Cmd::Ctl(args) => ctl::run(&args),
        Cmd::Doctor(args) => doctor::run(&args),
        Cmd::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ekv: {e}");
            e.exit_code()
        }
    }
}

/// A panic on any thread of a server is fatal: a shard whose executor died
/// holds regions nobody serves, and the meta service only repairs them once
/// the store is gone. The message is printed as usual, then the process
/// aborts (exit by SIGABRT), never running on half alive.
fn panics_stop_the_process() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!("ekv: a thread panicked; stopping the process");
        std::process::abort();
    }));
}
