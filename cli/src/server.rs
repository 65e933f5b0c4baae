//! `ekv pd` and `ekv store`: start, print a ready line, serve until
//! SIGTERM/SIGINT, stop cleanly.
//!
//! Ready lines (stdout, one each, for scripts and supervisors):
//!
//! ```text
//! ready: pd=10.0.0.1:2379 member=1
//! ready: store=4 addr=10.0.0.1:20160 shards=2
//! ```

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use ekv_pd::member::Member;
use ekv_pd::node::StoreNode;

use crate::config::{self, PdArgs, StoreArgs};
use crate::error::CliResult;
use crate::http::{Handler, StatusServer};
use crate::metrics::{member_handler, store_handler, MemberInfo, StoreInfo};
use crate::signals::{self, Shutdown, Wake};
use crate::{logging, CliError};

/// Makes `dir` (and its parents), saying which directory failed.
pub fn make_dir(dir: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::failed(format!("creating data directory {}: {e}", dir.display())))
}

/// Starts a status server, or says why it cannot.
pub fn start_status(addr: Option<SocketAddr>, handler: Handler) -> Result<Option<StatusServer>, CliError> {
    addr.map(|a| {
        StatusServer::start(a, handler).map_err(|e| CliError::failed(format!("status server on {a}: {e}")))
    })
    .transpose()
}

/// Prints a line on stdout and flushes it (stdout may be a pipe).
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `ekv pd`.
pub fn run_pd(args: &PdArgs) -> CliResult {
    let setup = config::load_pd(args)?;
    logging::init(args.common.log_level.as_deref(), setup.log_level.as_deref(), "info")?;
    let shutdown = Shutdown::install()?;
    let cfg = setup.member;
    make_dir(&cfg.data_dir)?;
    let (id, members, replicas) = (cfg.id, cfg.members.clone(), cfg.settings.replicas);
    let member = Member::start(cfg)
        .map_err(|e| CliError::failed(format!("starting meta-service member {id}: {e}")))?;
    let status = start_status(
        setup.status_addr,
        member_handler(MemberInfo {
            handle: member.store().handle(),
            id,
            addr: member.addr(),
            members,
            replicas,
            server: member.server_stats().clone(),
        }),
    );
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            let _ = member.stop();
            return Err(e);
        }
    };
    let notifier = shutdown.notifier();
    member.store().handle().on_shard_failure(move |why| notifier.failed(why));
    shutdown.serving();
    say(&format!("ready: pd={} member={id}", member.addr()));
    let wake = shutdown.wait();
    drop(status);
    match wake {
        Wake::Signal(sig) => {
            tracing::info!(signal = signals::name(sig), member = id, "stopping");
            member.stop().map_err(|e| CliError::failed(format!("stopping meta-service member {id}: {e}")))?;
            tracing::info!(member = id, "stopped");
            Ok(ExitCode::SUCCESS)
        }
        Wake::Failed(why) => Err(failed_stop(&why, member.stop())),
    }
}

/// `ekv store`.
pub fn run_store(args: &StoreArgs) -> CliResult {
    let setup = config::load_store(args)?;
    logging::init(args.common.log_level.as_deref(), setup.log_level.as_deref(), "info")?;
    let shutdown = Shutdown::install()?;
    let cfg = setup.node;
    make_dir(&cfg.data_dir)?;
    let data_dir = cfg.data_dir.display().to_string();
    let shards = cfg.engine.shard_count();
    tracing::info!(pd = ?cfg.pd_endpoints, data_dir = %data_dir, "joining the cluster");
    let node = StoreNode::start(cfg).map_err(|e| CliError::failed(format!("starting the store: {e}")))?;
    let status = start_status(
        setup.status_addr,
        store_handler(StoreInfo {
            handle: node.store().handle(),
            addr: node.addr(),
            data_dir,
            server: node.server_stats().clone(),
        }),
    );
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            let _ = node.stop();
            return Err(e);
        }
    };
    let id = node.id();
    let notifier = shutdown.notifier();
    node.store().handle().on_shard_failure(move |why| notifier.failed(why));
    shutdown.serving();
    say(&format!("ready: store={} addr={} shards={shards}", id.get(), node.addr()));
    let wake = shutdown.wait();
    drop(status);
    match wake {
        Wake::Signal(sig) => {
            tracing::info!(signal = signals::name(sig), store = %id, "stopping");
            node.stop().map_err(|e| CliError::failed(format!("stopping store {id}: {e}")))?;
            tracing::info!(store = %id, "stopped");
            Ok(ExitCode::SUCCESS)
        }
        Wake::Failed(why) => Err(failed_stop(&why, node.stop())),
    }
}

/// The error a server exits with after a part of it stopped on `why`
/// (fail-stop): the rest was stopped with `stopped`, whose error is
/// usually the same failure again and is only logged.
fn failed_stop<E: std::fmt::Display>(why: &str, stopped: Result<(), E>) -> CliError {
    tracing::error!(error = %why, "a shard stopped on an error; the process stops too");
    if let Err(e) = stopped {
        tracing::warn!(error = %e, "stopping the rest after the failure");
    }
    CliError::failed(format!("stopped on a storage failure: {why}"))
}
