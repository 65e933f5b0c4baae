//! `ekv ctl`: data commands through the client, cluster views from the
//! meta service's status view, and admin commands sent to a region's
//! leader. Human output by default, `--json` for scripts; exit code 1 on
//! any failure, 2 on bad arguments.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ekv_client::rt::block_on;
use ekv_client::{
    CallError, Client, Config as ClientConfig, Connection, MetaClient, MetaConfig, ScanOptions,
};
use ekv_proto::frame::FrameLimits;
use ekv_proto::msg::{
    AllocIdRequest, AnyMessage, ChangeKind, ChangePeerRequest, DeleteStoreRequest, GetMembersRequest,
    GetRegionByIdRequest, GetRegionRequest, GetStatusRequest, GetStoreRequest, Message, PeerChange,
    RegionRoute, SplitRequest, TransferLeaderRequest, WireError,
};
use ekv_proto::{PeerId, PeerMeta, Region, RegionId, StoreId};
use serde_json::{json, Value};

use crate::config::Dur;
use crate::error::CliResult;
use crate::{logging, CliError};

/// `ekv ctl`.
#[derive(Debug, Clone, clap::Args)]
pub struct CtlArgs {
    /// Meta-service members, `host:port,...` (any one will do).
    #[arg(
        long,
        env = "EKV_PD",
        default_value = "127.0.0.1:2379",
        global = true,
        value_name = "HOST:PORT,..."
    )]
    pub pd: String,
    /// Print JSON (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
    /// Keys and values are hex, in arguments and output.
    #[arg(long, global = true)]
    pub hex: bool,
    /// Give up after this long.
    #[arg(long, default_value = "10s", global = true, value_name = "DURATION")]
    pub timeout: Dur,
    /// Log filter (default: RUST_LOG, else error).
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub cmd: CtlCmd,
}

/// The commands of `ekv ctl`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CtlCmd {
    /// Read a key.
    Get {
        /// The key.
        key: String,
    },
    /// Write a key.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Delete a key.
    Delete {
        /// The key.
        key: String,
    },
    /// List keys in [START, END) (empty: unbounded), across regions.
    Scan {
        /// Inclusive start (default: the first key).
        #[arg(default_value = "")]
        start: String,
        /// Exclusive end (default: no end).
        #[arg(default_value = "")]
        end: String,
        /// Most pairs.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// From the end down.
        #[arg(long)]
        reverse: bool,
        /// Keys only.
        #[arg(long)]
        keys_only: bool,
    },
    /// List stores: address, state, region and leader counts, space.
    Stores,
    /// List regions: range, leader, peers, size, operator in flight.
    Regions,
    /// List meta-service members and the leader.
    Members,
    /// The meta service's status view (raw JSON).
    Status,
    /// Exit 0 when every store is up, every region has its replicas and a
    /// leader, no peer is down or lagging and no operator is in flight.
    Health {
        /// Replicas every region should have (the meta service's
        /// schedule.replicas).
        #[arg(long, default_value_t = 3)]
        replicas: usize,
        /// Keep checking until healthy or this long has passed.
        #[arg(long, value_name = "DURATION")]
        wait: Option<Dur>,
    },
    /// Split a region at one or more keys.
    Split {
        /// The region, by id.
        #[arg(long, required_unless_present = "key", conflicts_with = "key")]
        region: Option<u64>,
        /// The region, by a key it holds.
        #[arg(long)]
        key: Option<String>,
        /// Split keys.
        #[arg(required = true)]
        at: Vec<String>,
    },
    /// Hand a region's leadership to its replica on a store.
    TransferLeader {
        /// Region id.
        region: u64,
        /// Store id of the new leader.
        store: u64,
        /// Wait until the meta service shows the new leader.
        #[arg(long)]
        wait: bool,
    },
    /// Add a replica of a region on a store.
    AddPeer {
        /// Region id.
        region: u64,
        /// Store id.
        store: u64,
        /// As a learner (does not vote).
        #[arg(long)]
        learner: bool,
    },
    /// Remove a region's replica from a store.
    RemovePeer {
        /// Region id.
        region: u64,
        /// Store id.
        store: u64,
    },
    /// Store administration.
    #[command(subcommand)]
    Store(StoreCmd),
}

/// `ekv ctl store ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum StoreCmd {
    /// Decommission a store: its replicas move elsewhere, then it becomes
    /// a tombstone.
    Delete {
        /// Store id.
        id: u64,
    },
}

struct Ctl {
    endpoints: Vec<String>,
    meta: MetaClient,
    timeout: Duration,
    hex: bool,
    json: bool,
    limits: FrameLimits,
}

fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::failed(e.to_string())
}

fn write_failed(e: ekv_client::Error) -> CliError {
    match e {
        ekv_client::Error::OutcomeUnknown { .. } => {
            failed(format!("{e}; the write may or may not have been applied: read the key to find out"))
        }
        e => failed(e),
    }
}

/// `ekv ctl`.
pub fn run(args: &CtlArgs) -> CliResult {
    logging::init(args.log_level.as_deref(), None, "error")?;
    let endpoints: Vec<String> =
        args.pd.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    if endpoints.is_empty() {
        return Err(CliError::config("--pd names no meta-service member"));
    }
    let meta = MetaClient::new(MetaConfig {
        endpoints: endpoints.clone(),
        timeout: args.timeout.0,
        ..MetaConfig::default()
    })
    .map_err(|e| CliError::config(e.to_string()))?;
    let ctl = Ctl {
        endpoints,
        meta,
        timeout: args.timeout.0,
        hex: args.hex,
        json: args.json,
        limits: FrameLimits::default(),
    };
    // A hard bound on the whole command, whatever the client does: every
    // step is bounded by --timeout, a command takes at most a few steps,
    // and `health --wait` adds its wait.
    let wait = match &args.cmd {
        CtlCmd::Health { wait, .. } => wait.map_or(Duration::ZERO, |d| d.0),
        _ => Duration::ZERO,
    };
    let bound = args.timeout.0.saturating_mul(4).saturating_add(wait).saturating_add(Duration::from_secs(5));
    let (tx, rx) = std::sync::mpsc::channel();
    let cmd = args.cmd.clone();
    std::thread::Builder::new()
        .name("ekv-ctl".into())
        .spawn(move || {
            let _ = tx.send(ctl.run(&cmd));
        })
        .map_err(|e| failed(format!("starting the command: {e}")))?;
    match rx.recv_timeout(bound) {
        Ok(result) => result,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            Err(failed(format!("no answer from the meta service or the stores within {bound:?}; giving up")))
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(failed("the command panicked")),
    }
}

impl Ctl {
    fn run(&self, cmd: &CtlCmd) -> CliResult {
        match cmd {
            CtlCmd::Get { key } => self.get(key),
            CtlCmd::Put { key, value } => {
                self.client()?.put(&self.bytes(key)?, &self.bytes(value)?).map_err(write_failed)?;
                self.done("OK", json!({"ok": true}))
            }
            CtlCmd::Delete { key } => {
                self.client()?.delete(&self.bytes(key)?).map_err(write_failed)?;
                self.done("OK", json!({"ok": true}))
            }
            CtlCmd::Scan { start, end, limit, reverse, keys_only } => {
                self.scan(start, end, *limit, ScanOptions { reverse: *reverse, key_only: *keys_only })
            }
            CtlCmd::Stores => self.stores(),
            CtlCmd::Regions => self.regions(),
            CtlCmd::Members => self.members(),
            CtlCmd::Status => {
                let view = self.view()?;
                println!("{}", serde_json::to_string_pretty(&view).map_err(failed)?);
                Ok(ExitCode::SUCCESS)
            }
            CtlCmd::Health { replicas, wait } => self.health(*replicas, wait.map(|d| d.0)),
            CtlCmd::Split { region, key, at } => self.split(*region, key.as_deref(), at),
            CtlCmd::TransferLeader { region, store, wait } => {
                self.transfer_leader(RegionId(*region), StoreId(*store), *wait)
            }
            CtlCmd::AddPeer { region, store, learner } => {
                self.add_peer(RegionId(*region), StoreId(*store), *learner)
            }
            CtlCmd::RemovePeer { region, store } => self.remove_peer(RegionId(*region), StoreId(*store)),
            CtlCmd::Store(StoreCmd::Delete { id }) => {
                match block_on(self.meta.call(&DeleteStoreRequest { store_id: StoreId(*id) }))
                    .map_err(failed)?
                {
                    AnyMessage::DeleteStoreResponse(_) => self.done(
                        &format!(
                            "store {id} is offline: its replicas move elsewhere, then it becomes a tombstone"
                        ),
                        json!({"ok": true, "store": id}),
                    ),
                    other => Err(unexpected("DeleteStore", &other)),
                }
            }
        }
    }

    fn client(&self) -> Result<Client, CliError> {
        Client::new(ClientConfig {
            pd_endpoints: self.endpoints.clone(),
            timeout: self.timeout,
            ..ClientConfig::default()
        })
        .map_err(|e| CliError::config(e.to_string()))
    }

    /// An argument as bytes (hex-decoded with `--hex`).
    fn bytes(&self, s: &str) -> Result<Vec<u8>, CliError> {
        if self.hex {
            decode_hex(s).map_err(CliError::config)
        } else {
            Ok(s.as_bytes().to_vec())
        }
    }

    /// Bytes for output: hex with `--hex`, else printable ASCII with
    /// escapes.
    fn show(&self, b: &[u8]) -> String {
        if self.hex {
            b.iter().map(|x| format!("{x:02x}")).collect()
        } else {
            b.escape_ascii().to_string()
        }
    }

    fn done(&self, human: &str, machine: Value) -> CliResult {
        if self.json {
            println!("{machine}");
        } else {
            println!("{human}");
        }
        Ok(ExitCode::SUCCESS)
    }

    fn get(&self, key: &str) -> CliResult {
        let k = self.bytes(key)?;
        let v = self.client()?.get(&k).map_err(failed)?;
        let human = v.as_deref().map_or_else(|| "(not found)".to_owned(), |v| self.show(v));
        self.done(&human, json!({"key": self.show(&k), "value": v.map(|v| self.show(&v))}))
    }

    fn scan(&self, start: &str, end: &str, limit: usize, opts: ScanOptions) -> CliResult {
        let pairs =
            self.client()?.scan_with(&self.bytes(start)?, &self.bytes(end)?, limit, opts).map_err(failed)?;
        if self.json {
            let v: Vec<Value> = pairs
                .iter()
                .map(|p| {
                    if opts.key_only {
                        json!({"key": self.show(&p.key)})
                    } else {
                        json!({"key": self.show(&p.key), "value": self.show(&p.value)})
                    }
                })
                .collect();
            println!("{}", Value::Array(v));
        } else {
            for p in &pairs {
                if opts.key_only {
                    println!("{}", self.show(&p.key));
                } else {
                    println!("{}\t{}", self.show(&p.key), self.show(&p.value));
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    /// The meta service's status view.
    fn view(&self) -> Result<Value, CliError> {
        match block_on(self.meta.call(&GetStatusRequest)).map_err(failed)? {
            AnyMessage::GetStatusResponse(s) => {
                serde_json::from_slice(&s.json).map_err(|e| failed(format!("status is not JSON: {e}")))
            }
            other => Err(unexpected("GetStatus", &other)),
        }
    }

    fn stores(&self) -> CliResult {
        let view = self.view()?;
        let stores = view["stores"].as_array().cloned().unwrap_or_default();
        if self.json {
            println!("{}", Value::Array(stores));
            return Ok(ExitCode::SUCCESS);
        }
        let rows = stores
            .iter()
            .map(|s| {
                vec![
                    s["id"].to_string(),
                    text(&s["address"]),
                    s["shard_count"].to_string(),
                    text(&s["state"]),
                    s["region_count"].to_string(),
                    s["leader_count"].to_string(),
                    bytes_human(s["region_size"].as_u64().unwrap_or(0)),
                    format!(
                        "{} / {}",
                        bytes_human(s["available"].as_u64().unwrap_or(0)),
                        bytes_human(s["capacity"].as_u64().unwrap_or(0))
                    ),
                    s["last_heartbeat_age_ms"]
                        .as_u64()
                        .map_or_else(|| "never".into(), |ms| format!("{:.1}s ago", ms as f64 / 1000.0)),
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &[
                    "ID",
                    "ADDRESS",
                    "SHARDS",
                    "STATE",
                    "REGIONS",
                    "LEADERS",
                    "SIZE",
                    "FREE / CAPACITY",
                    "HEARTBEAT"
                ],
                rows
            )
        );
        Ok(ExitCode::SUCCESS)
    }

    fn regions(&self) -> CliResult {
        let view = self.view()?;
        let regions = view["regions"].as_array().cloned().unwrap_or_default();
        let ops = view["operators"].as_array().cloned().unwrap_or_default();
        if self.json {
            println!("{}", Value::Array(regions));
            return Ok(ExitCode::SUCCESS);
        }
        let rows = regions
            .iter()
            .map(|r| {
                let peers = r["peers"].as_array().map_or(&[][..], Vec::as_slice);
                let leader = peers
                    .iter()
                    .find(|p| p["role"] == "leader")
                    .map_or_else(|| "-".into(), |p| format!("{}@{}", p["id"], p["store_id"]));
                let peer_list: Vec<String> = peers
                    .iter()
                    .map(|p| {
                        let mut s = format!("{}@{}", p["id"], p["store_id"]);
                        for (flag, mark) in [("down", "down"), ("pending", "pending")] {
                            if p[flag].as_bool() == Some(true) {
                                s.push_str(&format!("({mark})"));
                            }
                        }
                        if p["role"] == "learner" {
                            s.push_str("(learner)");
                        }
                        s
                    })
                    .collect();
                let op = ops
                    .iter()
                    .find(|o| o["region_id"] == r["id"])
                    .map_or_else(|| "-".into(), |o| text(&o["kind"]));
                vec![
                    r["id"].to_string(),
                    quoted(&r["start_key"]),
                    quoted(&r["end_key"]),
                    leader,
                    peer_list.join(" "),
                    bytes_human(r["approximate_size"].as_u64().unwrap_or(0)),
                    r["approximate_keys"].to_string(),
                    format!("{}/{}", r["conf_ver"], r["version"]),
                    op,
                ]
            })
            .collect();
        print!(
            "{}",
            table(
                &["ID", "START", "END", "LEADER", "PEERS (peer@store)", "SIZE", "KEYS", "EPOCH", "OPERATOR"],
                rows
            )
        );
        Ok(ExitCode::SUCCESS)
    }

    fn members(&self) -> CliResult {
        let m = match block_on(self.meta.call(&GetMembersRequest)).map_err(failed)? {
            AnyMessage::GetMembersResponse(m) => m,
            other => return Err(unexpected("GetMembers", &other)),
        };
        let leader = m.leader.map(StoreId::get);
        if self.json {
            let list: Vec<Value> = m
                .members
                .iter()
                .map(|x| json!({"id": x.store_id.get(), "address": x.address, "leader": Some(x.store_id.get()) == leader}))
                .collect();
            println!("{}", json!({"members": list, "leader": leader}));
            return Ok(ExitCode::SUCCESS);
        }
        let rows = m
            .members
            .iter()
            .map(|x| {
                let role = if Some(x.store_id.get()) == leader { "leader" } else { "follower" };
                vec![x.store_id.get().to_string(), x.address.clone(), role.to_owned()]
            })
            .collect();
        print!("{}", table(&["ID", "ADDRESS", "ROLE"], rows));
        Ok(ExitCode::SUCCESS)
    }

    fn health(&self, replicas: usize, wait: Option<Duration>) -> CliResult {
        let deadline = Instant::now() + wait.unwrap_or_default();
        loop {
            let problems = match self.view() {
                Ok(v) => unhealthy(&v, replicas),
                Err(e) => vec![e.to_string()],
            };
            if problems.is_empty() {
                return self.done("healthy", json!({"healthy": true, "problems": []}));
            }
            if Instant::now() >= deadline {
                if self.json {
                    println!("{}", json!({"healthy": false, "problems": problems}));
                } else {
                    println!("not healthy:");
                    for p in &problems {
                        println!("  {p}");
                    }
                }
                return Ok(ExitCode::from(1));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn route_by_id(&self, id: RegionId) -> Result<RegionRoute, CliError> {
        match block_on(self.meta.call(&GetRegionByIdRequest { region_id: id })).map_err(failed)? {
            AnyMessage::GetRegionResponse(r) => {
                r.route.ok_or_else(|| failed(format!("region {} does not exist", id.get())))
            }
            other => Err(unexpected("GetRegionById", &other)),
        }
    }

    fn route_by_key(&self, key: &[u8]) -> Result<RegionRoute, CliError> {
        match block_on(self.meta.call(&GetRegionRequest { key: key.to_vec(), before: false }))
            .map_err(failed)?
        {
            AnyMessage::GetRegionResponse(r) => {
                r.route.ok_or_else(|| failed(format!("no region holds key {}", self.show(key))))
            }
            other => Err(unexpected("GetRegion", &other)),
        }
    }

    fn store_addr(&self, id: StoreId) -> Result<SocketAddr, CliError> {
        match block_on(self.meta.call(&GetStoreRequest { store_id: id })).map_err(failed)? {
            AnyMessage::GetStoreResponse(r) => {
                let s = r.store.ok_or_else(|| failed(format!("store {} is not registered", id.get())))?;
                s.address.to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or_else(|| {
                    failed(format!("store {}: address {:?} does not resolve", id.get(), s.address))
                })
            }
            other => Err(unexpected("GetStore", &other)),
        }
    }

    /// Sends the admin request `build(region)` to the region's leader,
    /// following leader changes and epoch changes until the timeout.
    fn admin<M: Message>(
        &self,
        id: RegionId,
        build: impl Fn(&Region) -> Result<M, CliError>,
    ) -> Result<AnyMessage, CliError> {
        let deadline = Instant::now() + self.timeout;
        let mut route = self.route_by_id(id)?;
        let mut hint: Option<PeerMeta> = None;
        let mut last = String::from("no attempt");
        loop {
            let msg = build(&route.region)?;
            let target = match (hint, route.leader) {
                (Some(h), _) => Some((h.store_id, 0)),
                (None, Some(l)) => Some((l.store_id, route.leader_shard)),
                (None, None) => None,
            };
            let outcome = match target {
                None => {
                    last = format!("region {} has no known leader", id.get());
                    None
                }
                Some((store, shard)) => {
                    let mut addr = self.store_addr(store)?;
                    addr.set_port(addr.port().saturating_add(shard as u16));
                    match Connection::connect(addr, Duration::from_secs(1), self.limits) {
                        Ok(conn) => Some(conn.call_blocking(&msg, id, deadline)),
                        Err(e) => {
                            last = format!("connecting to {addr}: {e}");
                            None
                        }
                    }
                }
            };
            hint = None;
            match outcome {
                Some(Ok(AnyMessage::ErrorResponse(e))) => return Err(failed(e.error)),
                Some(Ok(resp)) => return Ok(resp),
                Some(Err(CallError::Wire(WireError::NotLeader { leader }))) => {
                    last = "not the leader".into();
                    hint = leader;
                }
                Some(Err(CallError::Wire(WireError::EpochNotMatch { regions }))) => {
                    last = "the region changed meanwhile".into();
                    if let Some(r) = regions.into_iter().find(|r| r.id == id) {
                        route.region = r;
                        continue;
                    }
                }
                Some(Err(CallError::Wire(
                    w @ (WireError::RegionNotFound { .. } | WireError::ServerBusy),
                ))) => {
                    last = w.to_string();
                }
                Some(Err(e @ CallError::Send(_))) => last = e.to_string(),
                Some(Err(e)) => return Err(failed(format!("region {}: {e}", id.get()))),
                None => {}
            }
            if Instant::now() >= deadline {
                return Err(failed(format!(
                    "region {}: gave up after {:?}; last: {last}",
                    id.get(),
                    self.timeout
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
            if hint.is_none() {
                route = self.route_by_id(id)?;
            }
        }
    }

    fn print_regions(&self, what: &str, regions: &[Region]) -> CliResult {
        if self.json {
            println!("{}", Value::Array(regions.iter().map(|r| self.region_json(r)).collect()));
            return Ok(ExitCode::SUCCESS);
        }
        println!("{what}");
        let rows = regions
            .iter()
            .map(|r| {
                let peers: Vec<String> =
                    r.peers.iter().map(|p| format!("{}@{}", p.id.get(), p.store_id.get())).collect();
                vec![
                    r.id.get().to_string(),
                    format!("\"{}\"", self.show(&r.start_key)),
                    format!("\"{}\"", self.show(&r.end_key)),
                    peers.join(" "),
                    format!("{}/{}", r.epoch.conf_ver, r.epoch.version),
                ]
            })
            .collect();
        print!("{}", table(&["ID", "START", "END", "PEERS (peer@store)", "EPOCH"], rows));
        Ok(ExitCode::SUCCESS)
    }

    fn region_json(&self, r: &Region) -> Value {
        json!({
            "id": r.id.get(),
            "start_key": self.show(&r.start_key),
            "end_key": self.show(&r.end_key),
            "conf_ver": r.epoch.conf_ver,
            "version": r.epoch.version,
            "peers": r.peers.iter().map(|p| json!({"id": p.id.get(), "store_id": p.store_id.get()})).collect::<Vec<_>>(),
        })
    }

    fn split(&self, region: Option<u64>, key: Option<&str>, at: &[String]) -> CliResult {
        let id = match (region, key) {
            (Some(r), _) => RegionId(r),
            (None, Some(k)) => self.route_by_key(&self.bytes(k)?)?.region.id,
            (None, None) => return Err(CliError::config("give --region ID or --key KEY")),
        };
        let mut keys = at.iter().map(|k| self.bytes(k)).collect::<Result<Vec<_>, _>>()?;
        keys.sort();
        keys.dedup();
        if keys.iter().any(Vec::is_empty) {
            return Err(CliError::config("a split key must not be empty"));
        }
        let resp = self.admin(id, |r| {
            if let Some(k) = keys.iter().find(|k| !r.contains(k) || k.as_slice() == r.start_key.as_slice()) {
                return Err(failed(format!(
                    "split key {} is not inside region {} [\"{}\", \"{}\")",
                    self.show(k),
                    r.id.get(),
                    self.show(&r.start_key),
                    self.show(&r.end_key)
                )));
            }
            Ok(SplitRequest { epoch: r.epoch, split_keys: keys.clone() })
        })?;
        match resp {
            AnyMessage::SplitResponse(s) => {
                self.print_regions(&format!("region {} split into:", id.get()), &s.regions)
            }
            other => Err(unexpected("Split", &other)),
        }
    }

    fn peer_on(region: &Region, store: StoreId) -> Result<PeerMeta, CliError> {
        region.peers.iter().copied().find(|p| p.store_id == store).ok_or_else(|| {
            let peers: Vec<String> =
                region.peers.iter().map(|p| format!("{}@{}", p.id.get(), p.store_id.get())).collect();
            failed(format!(
                "region {} has no replica on store {} (peers: {})",
                region.id.get(),
                store.get(),
                peers.join(" ")
            ))
        })
    }

    fn transfer_leader(&self, id: RegionId, to: StoreId, wait: bool) -> CliResult {
        let route = self.route_by_id(id)?;
        let target = Self::peer_on(&route.region, to)?;
        if route.leader.is_some_and(|l| l.store_id == to) {
            return self.done(
                &format!("region {} is already led by store {}", id.get(), to.get()),
                json!({"region": id.get(), "leader_store": to.get(), "transferred": true}),
            );
        }
        match self.admin(id, |r| Ok(TransferLeaderRequest { epoch: r.epoch, to: Self::peer_on(r, to)? }))? {
            AnyMessage::TransferLeaderResponse(_) => {}
            other => return Err(unexpected("TransferLeader", &other)),
        }
        if !wait {
            return self.done(
                &format!("region {}: transfer to peer {} on store {} started", id.get(), target.id.get(), to.get()),
                json!({"region": id.get(), "to_peer": target.id.get(), "to_store": to.get(), "started": true}),
            );
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            let r = self.route_by_id(id)?;
            if r.leader.is_some_and(|l| l.store_id == to) {
                return self.done(
                    &format!("region {} is led by store {}", id.get(), to.get()),
                    json!({"region": id.get(), "leader_store": to.get(), "transferred": true}),
                );
            }
            if Instant::now() >= deadline {
                return Err(failed(format!(
                    "region {}: the transfer started, but the meta service does not show store {} leading after {:?} (it learns at the next region heartbeat)",
                    id.get(),
                    to.get(),
                    self.timeout
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn add_peer(&self, id: RegionId, store: StoreId, learner: bool) -> CliResult {
        let route = self.route_by_id(id)?;
        if route.region.peers.iter().any(|p| p.store_id == store) {
            return Err(failed(format!(
                "region {} already has a replica on store {}",
                id.get(),
                store.get()
            )));
        }
        self.store_addr(store)?;
        let peer_id = match block_on(self.meta.call(&AllocIdRequest { count: 1 })).map_err(failed)? {
            AnyMessage::AllocIdResponse(a) if a.count >= 1 => PeerId(a.first),
            other => return Err(unexpected("AllocId", &other)),
        };
        let peer = PeerMeta { id: peer_id, store_id: store };
        let kind = if learner { ChangeKind::AddLearner } else { ChangeKind::AddVoter };
        let resp = self.admin(id, |r| {
            if r.peers.iter().any(|p| p.store_id == store) {
                return Err(failed(format!(
                    "region {} already has a replica on store {}",
                    id.get(),
                    store.get()
                )));
            }
            Ok(ChangePeerRequest { epoch: r.epoch, changes: vec![PeerChange { kind, peer }] })
        })?;
        match resp {
            AnyMessage::ChangePeerResponse(c) => self.print_regions(
                &format!(
                    "region {}: added peer {} on store {}{}",
                    id.get(),
                    peer_id.get(),
                    store.get(),
                    if learner { " as a learner" } else { "" }
                ),
                &[c.region],
            ),
            other => Err(unexpected("ChangePeer", &other)),
        }
    }

    fn remove_peer(&self, id: RegionId, store: StoreId) -> CliResult {
        let route = self.route_by_id(id)?;
        let peer = Self::peer_on(&route.region, store)?;
        let resp = self.admin(id, |r| {
            Ok(ChangePeerRequest {
                epoch: r.epoch,
                changes: vec![PeerChange { kind: ChangeKind::Remove, peer: Self::peer_on(r, store)? }],
            })
        })?;
        match resp {
            AnyMessage::ChangePeerResponse(c) => self.print_regions(
                &format!("region {}: removed peer {} on store {}", id.get(), peer.id.get(), store.get()),
                &[c.region],
            ),
            other => Err(unexpected("ChangePeer", &other)),
        }
    }
}

fn unexpected(what: &str, m: &AnyMessage) -> CliError {
    match m {
        AnyMessage::ErrorResponse(e) => failed(format!("{what}: {}", e.error)),
        m => failed(format!("{what}: unexpected answer {:?}", m.msg_type())),
    }
}

/// What keeps the cluster from being healthy, per the status view.
pub fn unhealthy(view: &Value, replicas: usize) -> Vec<String> {
    let mut out = Vec::new();
    let empty = Vec::new();
    for s in view["stores"].as_array().unwrap_or(&empty) {
        match s["state"].as_str() {
            Some("Up") | Some("Tombstone") => {}
            Some(state) => out.push(format!("store {} ({}) is {state}", s["id"], text(&s["address"]))),
            None => out.push(format!("store {} has no state", s["id"])),
        }
    }
    let up: Vec<&Value> = view["stores"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter(|s| s["state"] == "Up")
        .map(|s| &s["id"])
        .collect();
    let regions = view["regions"].as_array().unwrap_or(&empty);
    if regions.is_empty() {
        out.push("no region yet (the cluster is not bootstrapped)".into());
    }
    for r in regions {
        let id = &r["id"];
        let peers = r["peers"].as_array().unwrap_or(&empty);
        // A voter counts when it could vote now: on a store that is up,
        // and heard by its leader.
        let voters = peers
            .iter()
            .filter(|p| p["role"] != "learner" && p["down"] != true && up.contains(&&p["store_id"]))
            .count();
        if voters < replicas {
            out.push(format!("region {id} has {voters} of {replicas} voters"));
        }
        if r["leader"].is_null() {
            out.push(format!("region {id} has no known leader"));
        }
        for p in peers {
            if !up.contains(&&p["store_id"]) {
                out.push(format!(
                    "region {id}: peer {} is on store {}, which is not up",
                    p["id"], p["store_id"]
                ));
            }
            for flag in ["down", "pending"] {
                if p[flag].as_bool() == Some(true) {
                    out.push(format!("region {id}: peer {} on store {} is {flag}", p["id"], p["store_id"]));
                }
            }
            if p["role"] == "learner" {
                out.push(format!("region {id}: peer {} on store {} is a learner", p["id"], p["store_id"]));
            }
        }
    }
    for o in view["operators"].as_array().unwrap_or(&empty) {
        out.push(format!(
            "region {}: operator in flight: {} ({})",
            o["region_id"],
            text(&o["kind"]),
            text(&o["step"])
        ));
    }
    out
}

/// A JSON string without quotes (other values as JSON).
fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// A key from the status view, quoted.
fn quoted(v: &Value) -> String {
    format!("\"{}\"", text(v))
}

/// Bytes with a binary unit.
pub fn bytes_human(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Columns padded to their widest cell.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.iter().map(|h| (*h).to_owned()).collect());
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

/// Decodes hex (two digits a byte).
pub fn decode_hex(s: &str) -> Result<Vec<u8>, String> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    if s.len() % 2 != 0 {
        return Err(format!("hex {s:?} has an odd number of digits"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| format!("{s:?} is not hex")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_sizes_and_tables() {
        assert_eq!(decode_hex("00ff10").unwrap(), vec![0, 255, 16]);
        assert_eq!(decode_hex("0x61").unwrap(), b"a");
        assert!(decode_hex("abc").is_err());
        assert!(decode_hex("zz").is_err());
        assert_eq!(bytes_human(512), "512 B");
        assert_eq!(bytes_human(3 << 20), "3.0 MiB");
        assert_eq!(
            table(&["ID", "NAME"], vec![vec!["1".into(), "a".into()], vec!["22".into(), "bb".into()]]),
            "ID  NAME\n1   a\n22  bb\n"
        );
    }

    #[test]
    fn health_names_every_problem() {
        let healthy = json!({
            "stores": [{"id": 1, "address": "a", "state": "Up"}, {"id": 2, "address": "b", "state": "Up"},
                {"id": 3, "address": "c", "state": "Up"}, {"id": 9, "address": "z", "state": "Tombstone"}],
            "regions": [{"id": 2, "leader": 3, "peers": [
                {"id": 3, "store_id": 1, "role": "leader"}, {"id": 4, "store_id": 2, "role": "voter"},
                {"id": 5, "store_id": 3, "role": "voter"}]}],
            "operators": [],
        });
        assert!(unhealthy(&healthy, 3).is_empty());
        // A voter left on a decommissioned store cannot vote.
        let mut stale = healthy.clone();
        stale["regions"][0]["peers"][2]["store_id"] = json!(9);
        let p = unhealthy(&stale, 3).join("\n");
        assert!(p.contains("2 of 3 voters") && p.contains("on store 9, which is not up"), "{p}");
        let sick = json!({
            "stores": [{"id": 1, "address": "a", "state": "Down"}],
            "regions": [{"id": 2, "leader": null, "peers": [
                {"id": 3, "store_id": 1, "role": "voter", "down": true},
                {"id": 4, "store_id": 2, "role": "learner", "pending": true}]}],
            "operators": [{"region_id": 2, "kind": "add-peer", "step": "wait"}],
        });
        let p = unhealthy(&sick, 3).join("\n");
        for want in [
            "store 1 (a) is Down",
            "0 of 3 voters",
            "no known leader",
            "is down",
            "is pending",
            "learner",
            "operator in flight",
            "on store 2, which is not up",
        ] {
            assert!(p.contains(want), "{want:?} not in\n{p}");
        }
    }
}
