//! `ekv playground`: one meta-service member and N stores in this process,
//! on loopback, with status servers; ready once a write reads back and the
//! first region is fully replicated with nothing in flight.
//!
//! Output (stdout), the last line being exactly `ready: pd=<ip:port>`:
//!
//! ```text
//! pd       127.0.0.1:20000  status http://127.0.0.1:20001  data /tmp/ekv-playground-x/pd
//! store 1  127.0.0.1:20002  shards 2  status http://127.0.0.1:20004  data /tmp/ekv-playground-x/store1
//! ...
//! ready: pd=127.0.0.1:20000
//! ```
//!
//! Ports, from the base: the member, its status port, then for each store
//! its shard ports and its status port.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ekv_client::rt::block_on;
use ekv_client::{Client, Config as ClientConfig, MetaClient, MetaConfig};
use ekv_engine::Config as EngineConfig;
use ekv_net::local::free_base_port;
use ekv_pd::core::Settings;
use ekv_pd::member::{Member, MemberConfig};
use ekv_pd::node::{NodeConfig, StoreNode};
use ekv_proto::msg::{AnyMessage, GetStatusRequest};

use crate::config::Dur;
use crate::error::CliResult;
use crate::http::StatusServer;
use crate::metrics::{member_handler, store_handler, MemberInfo, StoreInfo};
use crate::server::{make_dir, say, start_status};
use crate::signals::{self, Shutdown, Wake};
use crate::{logging, CliError};

/// `ekv playground`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlaygroundArgs {
    /// Data directory, kept on exit: a later run with the same DIR (and
    /// --stores, --shards) starts the same cluster on the same ports.
    /// Default: a temporary directory, removed on exit.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Stores to start.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub stores: usize,
    /// Shards per store.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub shards: usize,
    /// First port (default: a free run of ports).
    #[arg(long, value_name = "PORT")]
    pub base_port: Option<u16>,
    /// Raft tick length.
    #[arg(long, default_value = "50ms", value_name = "DURATION")]
    pub tick_interval: Dur,
    /// How long to wait for the cluster to become usable.
    #[arg(long, default_value = "120s", value_name = "DURATION")]
    pub ready_timeout: Dur,
    /// Log filter (default: RUST_LOG, else warn).
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
}

const HOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Ports used from the base.
fn port_count(stores: usize, shards: usize) -> usize {
    2 + stores * (shards + 1)
}

/// Settings of the playground's stores: reports every half second, so
/// that repair and routing settle quickly.
fn engine(args: &PlaygroundArgs) -> EngineConfig {
    EngineConfig {
        shards: args.shards,
        tick_interval: args.tick_interval.0,
        pd_heartbeat_ticks: 10,
        pd_store_heartbeat_ticks: 10,
        ..EngineConfig::default()
    }
}

/// Settings of the playground's meta service.
pub fn settings(stores: usize) -> Settings {
    Settings {
        replicas: stores.clamp(1, 3),
        // Development disks are often past the default 80% mark.
        max_used_ratio: 0.99,
        ..Settings::default()
    }
}

struct Running {
    member: Option<Member>,
    stores: Vec<StoreNode>,
    status: Vec<StatusServer>,
}

impl Running {
    /// Stops the status servers, the stores, then the member.
    fn stop(mut self) -> Result<(), String> {
        self.status.clear();
        let mut first = Ok(());
        for s in self.stores.drain(..) {
            let id = s.id();
            if let Err(e) = s.stop() {
                tracing::error!(store = %id, error = %e, "store did not stop cleanly");
                first = first.and(Err(format!("store {id}: {e}")));
            }
        }
        if let Some(m) = self.member.take() {
            if let Err(e) = m.stop() {
                first = first.and(Err(format!("meta service: {e}")));
            }
        }
        first
    }
}

/// `ekv playground`.
pub fn run(args: &PlaygroundArgs) -> CliResult {
    if args.stores == 0 || args.shards == 0 {
        return Err(CliError::config("--stores and --shards must be at least 1"));
    }
    let engine = engine(args);
    engine.validate().map_err(|e| CliError::config(e.to_string()))?;
    logging::init(args.log_level.as_deref(), None, "warn")?;
    let shutdown = Shutdown::install()?;
    // Start-up checks for signals between its steps and stops cleanly.
    shutdown.serving();
    let count = port_count(args.stores, args.shards);
    // A playground in a kept directory reuses its ports: members and
    // stores keep their addresses across runs.
    let port_file = args.dir.as_ref().map(|d| d.join("playground.port"));
    let saved = port_file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()?.trim().parse::<u16>().ok());
    let base = match args.base_port.or(saved) {
        Some(p) if usize::from(p) + count > usize::from(u16::MAX) => {
            return Err(CliError::config(format!("--base-port {p}: {count} ports do not fit below 65536")))
        }
        Some(p) => p,
        None => free_base_port(HOST, count as u16)
            .map_err(|e| CliError::failed(format!("finding {count} free ports: {e}")))?,
    };
    let (_temp, root) = match &args.dir {
        Some(d) => (
            None,
            std::path::absolute(d).map_err(|e| CliError::config(format!("--dir {}: {e}", d.display())))?,
        ),
        None => {
            let t = tempfile::Builder::new()
                .prefix("ekv-playground-")
                .tempdir()
                .map_err(|e| CliError::failed(format!("making a temporary directory: {e}")))?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    make_dir(&root)?;
    if let Some(f) = &port_file {
        std::fs::write(f, format!("{base}\n"))
            .map_err(|e| CliError::failed(format!("writing {}: {e}", f.display())))?;
    }
    let mut running = Running { member: None, stores: Vec::new(), status: Vec::new() };
    let outcome = start_and_wait(args, &engine, base, &root, &shutdown, &mut running);
    let code = match outcome {
        Ok(true) => {
            let stores =
                running.member.iter().map(|m| m.store()).chain(running.stores.iter().map(|n| n.store()));
            for store in stores {
                let notifier = shutdown.notifier();
                store.handle().on_shard_failure(move |why| notifier.failed(why));
            }
            match shutdown.wait() {
                Wake::Signal(sig) => {
                    eprintln!("ekv playground: {}, stopping", signals::name(sig));
                    Ok(ExitCode::SUCCESS)
                }
                Wake::Failed(why) => Err(CliError::failed(format!("stopped on a storage failure: {why}"))),
            }
        }
        Ok(false) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e),
    };
    let stopped = running.stop();
    match (code, stopped) {
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(CliError::failed(format!("stopping the playground: {e}"))),
        (Ok(c), Ok(())) => {
            eprintln!("ekv playground: stopped");
            Ok(c)
        }
    }
}

/// Starts everything into `running` and waits until the cluster is
/// usable. False when a signal came first.
fn start_and_wait(
    args: &PlaygroundArgs,
    engine: &EngineConfig,
    base: u16,
    root: &std::path::Path,
    shutdown: &Shutdown,
    running: &mut Running,
) -> Result<bool, CliError> {
    let addr = |off: usize| SocketAddr::new(HOST, base + off as u16);
    let pd_addr = addr(0);
    let settings = settings(args.stores);
    let member_cfg = MemberConfig {
        engine: EngineConfig { tick_interval: args.tick_interval.0, ..EngineConfig::default() },
        settings: settings.clone(),
        ..MemberConfig::single(&pd_addr.to_string(), root.join("pd"))
    };
    make_dir(&member_cfg.data_dir)?;
    let member = Member::start(member_cfg.clone())
        .map_err(|e| CliError::failed(format!("starting the meta service: {e}")))?;
    running.status.extend(start_status(
        Some(addr(1)),
        member_handler(MemberInfo {
            handle: member.store().handle(),
            id: 1,
            addr: pd_addr,
            members: member_cfg.members.clone(),
            replicas: settings.replicas,
            server: member.server_stats().clone(),
        }),
    )?);
    running.member = Some(member);
    let member_status = running.status.last().map_or(addr(1), StatusServer::addr);
    let mut lines = vec![format!(
        "pd       {pd_addr}  status http://{member_status}  data {}",
        member_cfg.data_dir.display()
    )];
    for i in 0..args.stores {
        if shutdown.received().is_some() {
            return Ok(false);
        }
        let listen = addr(2 + i * (args.shards + 1));
        let dir = root.join(format!("store{}", i + 1));
        make_dir(&dir)?;
        let cfg = NodeConfig {
            engine: engine.clone(),
            ..NodeConfig::new(&pd_addr.to_string(), dir.clone(), listen)
        };
        let node =
            StoreNode::start(cfg).map_err(|e| CliError::failed(format!("starting store {}: {e}", i + 1)))?;
        running.status.extend(start_status(
            Some(addr(2 + i * (args.shards + 1) + args.shards)),
            store_handler(StoreInfo {
                handle: node.store().handle(),
                addr: listen,
                data_dir: dir.display().to_string(),
                server: node.server_stats().clone(),
            }),
        )?);
        let status = running.status.last().map_or(listen, StatusServer::addr);
        lines.push(format!(
            "store {}  {listen}  shards {}  status http://{status}  data {}",
            node.id().get(),
            args.shards,
            dir.display()
        ));
        running.stores.push(node);
    }
    let deadline = Instant::now() + args.ready_timeout.0;
    if !wait_usable(pd_addr, settings.replicas, deadline, shutdown)? {
        return Ok(false);
    }
    for l in &lines {
        say(l);
    }
    say(&format!("data: {}", root.display()));
    say(&format!("ready: pd={pd_addr}"));
    Ok(true)
}

/// Waits until a put reads back through the client and the meta service
/// shows the first region with `replicas` voters, a leader and no
/// operator in flight. False when a signal came first.
fn wait_usable(
    pd: SocketAddr,
    replicas: usize,
    deadline: Instant,
    shutdown: &Shutdown,
) -> Result<bool, CliError> {
    let client = Client::new(ClientConfig {
        pd_endpoints: vec![pd.to_string()],
        timeout: Duration::from_secs(5),
        ..ClientConfig::default()
    })
    .map_err(|e| CliError::failed(format!("client: {e}")))?;
    let meta = MetaClient::new(MetaConfig {
        endpoints: vec![pd.to_string()],
        timeout: Duration::from_secs(5),
        ..MetaConfig::default()
    })
    .map_err(|e| CliError::failed(format!("meta client: {e}")))?;
    let mut wrote = false;
    let mut last = String::from("nothing tried yet");
    loop {
        if !wrote {
            let probe = b"ekv-playground-probe";
            match client.put(probe, b"1").and_then(|()| client.get(probe)) {
                Ok(Some(v)) if v == b"1" => wrote = client.delete(probe).is_ok(),
                Ok(other) => last = format!("read back {other:?}"),
                Err(e) => last = format!("put/get: {e}"),
            }
        }
        if wrote {
            match block_on(meta.call(&GetStatusRequest)) {
                Ok(AnyMessage::GetStatusResponse(s)) => match serde_json::from_slice(&s.json) {
                    Ok(view) => match settled(&view, replicas) {
                        Ok(()) => return Ok(true),
                        Err(why) => last = why,
                    },
                    Err(e) => last = format!("status is not JSON: {e}"),
                },
                Ok(other) => last = format!("unexpected answer {:?}", other.msg_type()),
                Err(e) => last = format!("status: {e}"),
            }
        }
        if Instant::now() >= deadline {
            return Err(CliError::failed(format!(
                "the playground did not become usable in time; last: {last}"
            )));
        }
        // Poll the condition again shortly, unless a signal arrives.
        if shutdown.wait_timeout(Duration::from_millis(100)).is_some() {
            return Ok(false);
        }
    }
}

/// Ok when the first region has `replicas` voters and a leader, and no
/// operator is in flight; else what is missing.
pub fn settled(view: &serde_json::Value, replicas: usize) -> Result<(), String> {
    let first = view["regions"].as_array().and_then(|r| r.first()).ok_or("no region yet")?;
    let peers = first["peers"].as_array().map_or(&[][..], Vec::as_slice);
    let voters = peers.iter().filter(|p| p["role"] != "learner").count();
    if voters < replicas {
        return Err(format!("first region has {voters} of {replicas} voters"));
    }
    if first["leader"].is_null() {
        return Err("first region has no known leader".into());
    }
    let ops = view["operators"].as_array().map_or(0, Vec::len);
    if ops > 0 {
        return Err(format!("{ops} operators in flight"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settled_needs_voters_a_leader_and_no_operators() {
        let view = |peers: serde_json::Value, leader: serde_json::Value, ops: serde_json::Value| json!({"regions": [{"peers": peers, "leader": leader}], "operators": ops});
        let three = json!([{"role": "leader"}, {"role": "voter"}, {"role": "voter"}]);
        assert!(settled(&view(three.clone(), json!(3), json!([])), 3).is_ok());
        assert!(settled(&view(three.clone(), json!(null), json!([])), 3).unwrap_err().contains("leader"));
        assert!(settled(&view(three, json!(3), json!([{}])), 3).unwrap_err().contains("operators"));
        let learner = json!([{"role": "leader"}, {"role": "voter"}, {"role": "learner"}]);
        assert!(settled(&view(learner, json!(3), json!([])), 3).unwrap_err().contains("2 of 3"));
        assert!(settled(&json!({"regions": []}), 3).is_err());
    }

    #[test]
    fn ports_fit_the_layout() {
        assert_eq!(port_count(3, 2), 11);
        assert_eq!(settings(1).replicas, 1);
        assert_eq!(settings(5).replicas, 3);
        assert_eq!(settings(3).max_used_ratio, 0.99);
    }
}
