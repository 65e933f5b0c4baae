//! Settings of `ekv pd` and `ekv store`: a TOML file, then flags over it,
//! then checks that name what is wrong. Everything unset keeps the
//! defaults of `ekv_engine::Config`, `ekv_pd::core::Settings` and
//! `FrameLimits`.
//!
//! ```toml
//! # ekv pd
//! id = 1
//! members = ["1=10.0.0.1:2379", "2=10.0.0.2:2379", "3=10.0.0.3:2379"]
//! data_dir = "/var/lib/ekv/pd"
//! cpu = 0
//! status_addr = "auto"          # member port + 100; "off" (default) or host:port
//! [raft]
//! tick_interval = "100ms"
//! [schedule]                    # ekv_pd::core::Settings
//! max_used_ratio = 0.9
//! ```
//!
//! Durations are strings with a unit (`"100ms"`, `"30s"`), sizes are bytes
//! or strings with a binary unit (`"64MiB"`). Unknown keys are errors.
//! Unless set, `lease_ticks` and `hibernate_after_ticks` follow
//! `election_ticks` (below it, and at least twice it).

use std::collections::BTreeSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ekv_engine::Config as EngineConfig;
use ekv_pd::core::Settings;
use ekv_pd::member::MemberConfig;
use ekv_pd::node::NodeConfig;
use ekv_proto::frame::FrameLimits;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::CliError;

/// A duration written with a unit: `500us`, `100ms`, `30s`, `5m`, `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration (e.g. \"100ms\", \"30s\")"))?;
        let d = match unit.trim() {
            "us" | "µs" => Duration::from_micros(n),
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "" if n == 0 => Duration::ZERO,
            _ => return Err(format!("{s:?} needs a unit: us, ms, s, m or h (e.g. \"100ms\")")),
        };
        Ok(Dur(d))
    }
}

impl From<Dur> for Duration {
    fn from(d: Dur) -> Self {
        d.0
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration string with a unit, e.g. \"100ms\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                Err(E::custom(format!("{v} needs a unit: write it as a string, e.g. \"{v}ms\"")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A size in bytes: a number, or a string with a binary unit (`64MiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size (e.g. 4096, \"64MiB\")"))?;
        let shift = match unit.trim() {
            "" | "B" => 0,
            "K" | "KiB" => 10,
            "M" | "MiB" => 20,
            "G" | "GiB" => 30,
            "T" | "TiB" => 40,
            u => return Err(format!("{s:?}: unknown unit {u:?} (use B, KiB, MiB, GiB or TiB)")),
        };
        n.checked_mul(1 << shift).map(Size).ok_or_else(|| format!("{s:?} is too large"))
    }
}

impl From<Size> for u64 {
    fn from(s: Size) -> Self {
        s.0
    }
}

impl From<Size> for usize {
    fn from(s: Size) -> Self {
        usize::try_from(s.0).unwrap_or(usize::MAX)
    }
}

impl From<Size> for u32 {
    fn from(s: Size) -> Self {
        u32::try_from(s.0).unwrap_or(u32::MAX)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size: bytes, or a string such as \"64MiB\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v).map(Size).map_err(|_| E::custom(format!("{v} is not a size")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A table of optional settings that maps field by field onto a target.
macro_rules! section {
    ($(#[$doc:meta])* $name:ident => $target:ty { $($(#[$fdoc:meta])* $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Default, Clone, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: Option<$ty>,)*
        }

        impl $name {
            /// Writes the settings that are set into `t`.
            pub fn apply(&self, t: &mut $target) {
                $(if let Some(v) = &self.$field { t.$field = v.clone().into(); })*
            }
        }
    };
}

section!(
    /// `[raft]`: raft timings (fields of `ekv_engine::Config`).
    RaftSection => EngineConfig {
        tick_interval: Dur,
        election_ticks: usize,
        heartbeat_ticks: usize,
        lease_ticks: u64,
        max_size_per_msg: Size,
        max_inflight_msgs: usize,
        raft_log_gc_ticks: u64,
        raft_log_gc_count_limit: u64,
        raft_log_gc_size_limit: Size,
        raft_log_gc_threshold: u64,
        pd_heartbeat_ticks: u64,
        pd_store_heartbeat_ticks: u64,
        hibernate_after_ticks: u64,
        store_probe_ticks: u64,
    }
);

section!(
    /// `[storage]`: WAL, LSM, split and snapshot settings.
    StorageSection => EngineConfig {
        wal_segment_bytes: Size,
        wal_cache_bytes: Size,
        lsm_memtable_bytes: Size,
        lsm_block_cache_bytes: Size,
        region_split_size: Size,
        region_split_keys: u64,
        split_check_ticks: u64,
        snap_chunk_bytes: Size,
        snap_bytes_per_tick: Size,
    }
);

section!(
    /// `[limits]` for frames: what one request or answer may carry.
    FrameSection => FrameLimits {
        max_frame_body: Size,
        max_key: Size,
        max_value: Size,
        max_batch: usize,
        max_scan_limit: u32,
    }
);

section!(
    /// `[limits]` for the raftstore: commands and queues.
    CommandSection => EngineConfig {
        max_command_bytes: Size,
        max_pending_proposals: usize,
    }
);

/// `[limits]`: frame limits and raftstore limits in one table.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LimitsSection {
    /// Frame limits.
    pub frame: FrameSection,
    /// Raftstore limits.
    pub command: CommandSection,
}

impl<'de> Deserialize<'de> for LimitsSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // One table, split by key into the two targets.
        let mut table = toml::Table::deserialize(d)?;
        let mut command = toml::Table::new();
        for k in ["max_command_bytes", "max_pending_proposals"] {
            if let Some(v) = table.remove(k) {
                command.insert(k.into(), v);
            }
        }
        let frame = FrameSection::deserialize(toml::Value::Table(table)).map_err(de::Error::custom)?;
        let command = CommandSection::deserialize(toml::Value::Table(command)).map_err(de::Error::custom)?;
        Ok(Self { frame, command })
    }
}

/// Where the status HTTP server listens: `off`, `auto` (the service
/// port + 100) or `host:port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusAddr {
    /// No status server.
    Off,
    /// The service's first port + 100, on the same host.
    Auto,
    /// This address.
    At(SocketAddr),
}

impl FromStr for StatusAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" | "off" => Ok(StatusAddr::Off),
            "auto" => Ok(StatusAddr::Auto),
            a => a.parse().map(StatusAddr::At).map_err(|_| {
                format!("status address {a:?} is not \"off\", \"auto\" or an ip:port (e.g. 127.0.0.1:20260)")
            }),
        }
    }
}

impl<'de> Deserialize<'de> for StatusAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

impl StatusAddr {
    /// The address to bind, given the service's first address.
    fn resolve(self, service: SocketAddr) -> Result<Option<SocketAddr>, String> {
        match self {
            StatusAddr::Off => Ok(None),
            StatusAddr::At(a) => Ok(Some(a)),
            StatusAddr::Auto => {
                service.port().checked_add(100).map(|p| Some(SocketAddr::new(service.ip(), p))).ok_or_else(
                    || format!("status_addr \"auto\": port {} + 100 is past 65535", service.port()),
                )
            }
        }
    }
}

/// Flags both services take.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonFlags {
    /// TOML config file; flags override its values.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the data lives (WAL and LSM trees).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Status HTTP server (/metrics, /status): off, auto (service port +
    /// 100) or ip:port.
    #[arg(long, value_name = "ADDR")]
    pub status_addr: Option<StatusAddr>,
    /// Log filter: a level (error, warn, info, debug, trace) or tracing
    /// directives (`info,ekv_engine=debug`). Default: RUST_LOG, else the
    /// config file's log_level, else info.
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
}

/// Raft timing flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RaftFlags {
    /// Length of one raft tick (e.g. 100ms).
    #[arg(long, value_name = "DURATION")]
    pub tick_interval: Option<Dur>,
    /// Ticks without a leader before a follower campaigns.
    #[arg(long, value_name = "N")]
    pub election_ticks: Option<usize>,
    /// Ticks between a leader's heartbeats.
    #[arg(long, value_name = "N")]
    pub heartbeat_ticks: Option<usize>,
    /// Ticks a leader lease lasts (less than election ticks).
    #[arg(long, value_name = "N")]
    pub lease_ticks: Option<u64>,
}

impl RaftFlags {
    fn overlay(&self, s: &mut RaftSection) {
        set(&mut s.tick_interval, &self.tick_interval);
        set(&mut s.election_ticks, &self.election_ticks);
        set(&mut s.heartbeat_ticks, &self.heartbeat_ticks);
        set(&mut s.lease_ticks, &self.lease_ticks);
    }
}

/// `ekv pd`: run a meta-service member.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PdArgs {
    /// This member's id (1, 2, 3, ...).
    #[arg(long)]
    pub id: Option<u64>,
    /// Every member, this one included: `1=host:port,2=host:port,...`.
    #[arg(long, value_name = "ID=HOST:PORT,...")]
    pub members: Option<String>,
    /// The CPU to pin the member's executor to (default: unpinned).
    #[arg(long, value_name = "CPU")]
    pub cpu: Option<usize>,
    /// A scheduler setting as in the `[schedule]` table (repeatable), e.g.
    /// `--schedule max_used_ratio=0.9`.
    #[arg(long = "schedule", value_name = "KEY=VALUE")]
    pub schedule: Vec<String>,
    #[command(flatten)]
    pub common: CommonFlags,
    #[command(flatten)]
    pub raft: RaftFlags,
}

/// `ekv store`: run a store.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreArgs {
    /// Meta-service members: `host:port,host:port,...`.
    #[arg(long, value_name = "HOST:PORT,...")]
    pub pd: Option<String>,
    /// Address of shard 0; shard i listens on its port + i (default
    /// 127.0.0.1:20160).
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Option<String>,
    /// Address registered with the meta service (default: --listen;
    /// required when listening on 0.0.0.0).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Shards (one executor each; default: one per CPU in --cpus, else 1).
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// CPUs to pin shards to, e.g. `0,1` or `2-5` (shard i on the i-th).
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,
    /// Pending proposals per region beyond which commands get ServerBusy.
    #[arg(long, value_name = "N")]
    pub max_pending_proposals: Option<usize>,
    /// Largest command (e.g. 8MiB).
    #[arg(long, value_name = "SIZE")]
    pub max_command_bytes: Option<Size>,
    /// Largest frame body (e.g. 16MiB).
    #[arg(long, value_name = "SIZE")]
    pub max_frame_body: Option<Size>,
    /// Largest value (e.g. 8MiB).
    #[arg(long, value_name = "SIZE")]
    pub max_value: Option<Size>,
    #[command(flatten)]
    pub common: CommonFlags,
    #[command(flatten)]
    pub raft: RaftFlags,
}

/// The `ekv pd` config file.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PdFile {
    /// This member's id.
    pub id: Option<u64>,
    /// `"id=host:port"` for every member.
    pub members: Option<Vec<String>>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// CPU to pin to.
    pub cpu: Option<usize>,
    /// Status server address.
    pub status_addr: Option<StatusAddr>,
    /// Log filter.
    pub log_level: Option<String>,
    /// How often the member checks leadership and runs the scheduler.
    pub check_interval: Option<Dur>,
    /// Raft timings.
    #[serde(default)]
    pub raft: RaftSection,
    /// Storage.
    #[serde(default)]
    pub storage: StorageSection,
    /// Limits.
    #[serde(default)]
    pub limits: LimitsSection,
    /// Scheduler settings (`ekv_pd::core::Settings`).
    #[serde(default)]
    pub schedule: toml::Table,
}

/// The `ekv store` config file.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    /// Meta-service members.
    pub pd: Option<Vec<String>>,
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Address of shard 0.
    pub listen: Option<String>,
    /// Address registered with the meta service.
    pub advertise: Option<String>,
    /// Shards.
    pub shards: Option<usize>,
    /// CPUs to pin shards to.
    pub cpus: Option<Vec<usize>>,
    /// Status server address.
    pub status_addr: Option<StatusAddr>,
    /// Log filter.
    pub log_level: Option<String>,
    /// How long to wait for the meta service at start.
    pub join_wait: Option<Dur>,
    /// Raft timings.
    #[serde(default)]
    pub raft: RaftSection,
    /// Storage.
    #[serde(default)]
    pub storage: StorageSection,
    /// Limits.
    #[serde(default)]
    pub limits: LimitsSection,
}

/// A member, ready to start.
#[derive(Debug, Clone)]
pub struct PdSetup {
    /// The member's settings.
    pub member: MemberConfig,
    /// Where the status server listens.
    pub status_addr: Option<SocketAddr>,
    /// Log filter from the file or flags.
    pub log_level: Option<String>,
}

/// A store, ready to start.
#[derive(Debug, Clone)]
pub struct StoreSetup {
    /// The store's settings.
    pub node: NodeConfig,
    /// Where the status server listens.
    pub status_addr: Option<SocketAddr>,
    /// Log filter from the file or flags.
    pub log_level: Option<String>,
}

fn read_file<T: for<'de> Deserialize<'de> + Default>(path: Option<&Path>) -> Result<T, CliError> {
    let Some(path) = path else { return Ok(T::default()) };
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::config(format!("reading {}: {e}", path.display())))?;
    toml::from_str(&text)
        .map_err(|e| CliError::config(format!("{}: {}", path.display(), e.to_string().trim_end())))
}

/// Reads `--config` and lays the flags over it.
///
/// # Errors
/// [`CliError::Config`] naming the file, key or flag that is wrong.
pub fn load_pd(args: &PdArgs) -> Result<PdSetup, CliError> {
    let mut file: PdFile = read_file(args.common.config.as_deref())?;
    overlay_pd(&mut file, args).map_err(CliError::Config)?;
    resolve_pd(&file).map_err(CliError::Config)
}

/// Reads `--config` and lays the flags over it.
///
/// # Errors
/// [`CliError::Config`] naming the file, key or flag that is wrong.
pub fn load_store(args: &StoreArgs) -> Result<StoreSetup, CliError> {
    let mut file: StoreFile = read_file(args.common.config.as_deref())?;
    overlay_store(&mut file, args).map_err(CliError::Config)?;
    resolve_store(&file).map_err(CliError::Config)
}

fn set<T: Clone>(slot: &mut Option<T>, flag: &Option<T>) {
    if let Some(v) = flag {
        *slot = Some(v.clone());
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|x| !x.is_empty()).map(str::to_owned).collect()
}

/// Lays the flags of `ekv pd` over `file`.
pub fn overlay_pd(file: &mut PdFile, args: &PdArgs) -> Result<(), String> {
    set(&mut file.id, &args.id);
    set(&mut file.members, &args.members.as_deref().map(split_list));
    set(&mut file.cpu, &args.cpu);
    set(&mut file.data_dir, &args.common.data_dir);
    set(&mut file.status_addr, &args.common.status_addr);
    set(&mut file.log_level, &args.common.log_level);
    args.raft.overlay(&mut file.raft);
    for kv in &args.schedule {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--schedule {kv:?}: expected KEY=VALUE, e.g. max_used_ratio=0.9"))?;
        let value: toml::Value = format!("v = {v}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(v.to_owned()));
        file.schedule.insert(k.trim().to_owned(), value);
    }
    Ok(())
}

/// Lays the flags of `ekv store` over `file`.
pub fn overlay_store(file: &mut StoreFile, args: &StoreArgs) -> Result<(), String> {
    set(&mut file.pd, &args.pd.as_deref().map(split_list));
    set(&mut file.listen, &args.listen);
    set(&mut file.advertise, &args.advertise);
    set(&mut file.shards, &args.shards);
    if let Some(list) = &args.cpus {
        file.cpus = Some(parse_cpu_list(list)?);
    }
    set(&mut file.data_dir, &args.common.data_dir);
    set(&mut file.status_addr, &args.common.status_addr);
    set(&mut file.log_level, &args.common.log_level);
    args.raft.overlay(&mut file.raft);
    set(&mut file.limits.command.max_pending_proposals, &args.max_pending_proposals);
    set(&mut file.limits.command.max_command_bytes, &args.max_command_bytes);
    set(&mut file.limits.frame.max_frame_body, &args.max_frame_body);
    set(&mut file.limits.frame.max_value, &args.max_value);
    Ok(())
}

/// Parses `0,1`, `2-5` or `0-1,4`.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("CPU list {s:?}: {part:?} is not a CPU number or range (e.g. 0,1 or 2-5)");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    Ok(out)
}

/// The CPUs this machine has online, when the kernel says.
fn online_cpus() -> Option<BTreeSet<usize>> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
    parse_cpu_list(text.trim()).ok().map(|v| v.into_iter().collect())
}

fn check_cpus(cpus: &[usize]) -> Result<(), String> {
    let Some(online) = online_cpus() else { return Ok(()) };
    for c in cpus {
        if !online.contains(c) {
            let list: Vec<String> = online.iter().map(ToString::to_string).collect();
            return Err(format!("CPU {c} is not online on this machine (online: {})", list.join(",")));
        }
    }
    let mut seen = BTreeSet::new();
    if let Some(dup) = cpus.iter().find(|c| !seen.insert(**c)) {
        return Err(format!("CPU {dup} is listed twice"));
    }
    Ok(())
}

/// The data directory as an absolute path (the I/O layer needs one).
fn absolute(dir: Option<&Path>) -> Result<PathBuf, String> {
    let dir = dir.ok_or("data_dir is required (--data-dir or data_dir in the config file)")?;
    if dir.as_os_str().is_empty() {
        return Err("data_dir is empty".into());
    }
    std::path::absolute(dir).map_err(|e| format!("data_dir {}: {e}", dir.display()))
}

fn resolve_one(what: &str, addr: &str) -> Result<SocketAddr, String> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| format!("{what} {addr:?} is not host:port"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("{what} {addr:?} is not host:port"));
    }
    addr.to_socket_addrs()
        .map_err(|e| format!("{what} {addr:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{what} {addr:?} resolves to nothing"))
}

/// Parses `id=host:port` entries.
pub fn parse_members(list: &[String]) -> Result<Vec<(u64, String)>, String> {
    let mut out: Vec<(u64, String)> = Vec::new();
    let mut addrs = BTreeSet::new();
    for m in list {
        let (id, addr) = m
            .split_once('=')
            .ok_or_else(|| format!("member {m:?} is not id=host:port (e.g. 1=10.0.0.1:2379)"))?;
        let id: u64 = id.trim().parse().map_err(|_| format!("member {m:?}: {id:?} is not a member id"))?;
        if id == 0 {
            return Err(format!("member {m:?}: member ids start at 1"));
        }
        if out.iter().any(|(i, _)| *i == id) {
            return Err(format!("member {id} is listed twice"));
        }
        let sock = resolve_one(&format!("member {id}"), addr.trim())?;
        if !addrs.insert(sock) {
            return Err(format!("member {id}: address {sock} is used by another member"));
        }
        out.push((id, addr.trim().to_owned()));
    }
    Ok(out)
}

fn engine_config(raft: &RaftSection, storage: &StorageSection, limits: &LimitsSection) -> EngineConfig {
    let mut e = EngineConfig::default();
    raft.apply(&mut e);
    storage.apply(&mut e);
    limits.command.apply(&mut e);
    // Settings tied to election_ticks follow it unless set explicitly.
    if raft.lease_ticks.is_none() && e.lease_ticks >= e.election_ticks as u64 {
        e.lease_ticks = (e.election_ticks as u64).saturating_sub(2).max(1);
    }
    if raft.hibernate_after_ticks.is_none() && e.hibernate_after_ticks != 0 {
        e.hibernate_after_ticks = e.hibernate_after_ticks.max(2 * e.election_ticks as u64);
    }
    e
}

fn frame_limits(limits: &LimitsSection) -> Result<FrameLimits, String> {
    let mut l = FrameLimits::default();
    limits.frame.apply(&mut l);
    l.validate().map_err(|e| format!("limits: {e}"))?;
    Ok(l)
}

/// Scheduler settings from the `[schedule]` table; unknown keys and
/// values out of range are errors.
pub fn schedule_settings(table: &toml::Table) -> Result<Settings, String> {
    let known = toml::Table::try_from(Settings::default()).map_err(|e| format!("schedule: {e}"))?;
    if let Some(k) = table.keys().find(|k| !known.contains_key(*k)) {
        let names: Vec<&str> = known.keys().map(String::as_str).collect();
        return Err(format!("schedule: unknown setting {k:?}; known: {}", names.join(", ")));
    }
    let s: Settings = toml::Value::Table(table.clone())
        .try_into()
        .map_err(|e: toml::de::Error| format!("schedule: {}", e.to_string().trim_end()))?;
    let ratio = |name: &str, v: f64, zero_ok: bool| {
        if !(0.0..=1.0).contains(&v) || (!zero_ok && v == 0.0) {
            Err(format!("schedule.{name} = {v}: must be in {}, 1]", if zero_ok { "[0" } else { "(0" }))
        } else {
            Ok(())
        }
    };
    if s.replicas == 0 {
        return Err("schedule.replicas must be at least 1".into());
    }
    if s.down_after_ms == 0 {
        return Err("schedule.down_after_ms must be positive".into());
    }
    if s.id_batch == 0 || s.max_id_count == 0 {
        return Err("schedule.id_batch and schedule.max_id_count must be positive".into());
    }
    ratio("max_used_ratio", s.max_used_ratio, false)?;
    ratio("prepared_ratio", s.prepared_ratio, true)?;
    ratio("hot_store_share", s.hot_store_share, true)?;
    for (name, v) in [
        ("leader_tolerance_ratio", s.leader_tolerance_ratio),
        ("region_tolerance_ratio", s.region_tolerance_ratio),
        ("size_tolerance_ratio", s.size_tolerance_ratio),
    ] {
        if v.is_nan() || v < 0.0 {
            return Err(format!("schedule.{name} = {v}: must not be negative"));
        }
    }
    Ok(s)
}

/// Checks everything and builds the member's settings.
pub fn resolve_pd(file: &PdFile) -> Result<PdSetup, String> {
    let id = file.id.ok_or("the member id is required (--id or id in the config file)")?;
    let list = file.members.as_deref().unwrap_or_default();
    if list.is_empty() {
        return Err(
            "the member list is required (--members 1=host:port,... or members in the config file)".into()
        );
    }
    let members = parse_members(list)?;
    let me = members
        .iter()
        .find(|(i, _)| *i == id)
        .ok_or_else(|| format!("member {id} is not in the member list"))?;
    let addr = resolve_one(&format!("member {id}"), &me.1)?;
    let data_dir = absolute(file.data_dir.as_deref())?;
    if let Some(cpu) = file.cpu {
        check_cpus(&[cpu])?;
    }
    let engine = engine_config(&file.raft, &file.storage, &file.limits);
    // The member forces one shard and no splits; check what it will run.
    let checked = EngineConfig {
        shards: 1,
        cpus: Vec::new(),
        region_split_size: u64::MAX / 4,
        region_split_keys: u64::MAX / 4,
        ..engine.clone()
    };
    checked.validate().map_err(|e| e.to_string())?;
    let limits = frame_limits(&file.limits)?;
    let settings = schedule_settings(&file.schedule)?;
    let status_addr = file.status_addr.unwrap_or(StatusAddr::Off).resolve(addr)?;
    if status_addr
        .is_some_and(|s| s.port() == addr.port() && (s.ip() == addr.ip() || s.ip().is_unspecified()))
    {
        return Err(format!("status_addr {} is the member's own port", addr));
    }
    let mut member = MemberConfig::single(&me.1, data_dir);
    member.id = id;
    member.members = members;
    member.cpu = file.cpu;
    member.engine = engine;
    member.settings = settings;
    member.limits = limits;
    if let Some(d) = file.check_interval {
        if d.0.is_zero() {
            return Err("check_interval must be positive".into());
        }
        member.check_interval = d.0;
    }
    Ok(PdSetup { member, status_addr, log_level: file.log_level.clone() })
}

/// Checks everything and builds the store's settings.
pub fn resolve_store(file: &StoreFile) -> Result<StoreSetup, String> {
    let pd = file.pd.clone().unwrap_or_default();
    if pd.is_empty() {
        return Err("the meta service is required (--pd host:port,... or pd in the config file)".into());
    }
    for p in &pd {
        resolve_one("meta-service endpoint", p)?;
    }
    let data_dir = absolute(file.data_dir.as_deref())?;
    let listen_text = file.listen.as_deref().unwrap_or("127.0.0.1:20160");
    let listen: SocketAddr = listen_text
        .parse()
        .map_err(|_| format!("listen address {listen_text:?} is not ip:port (e.g. 0.0.0.0:20160)"))?;
    if listen.port() == 0 {
        return Err("listen port must not be 0: stores advertise fixed ports".into());
    }
    if let Some(a) = &file.advertise {
        resolve_one("advertise address", a)?;
    } else if listen.ip().is_unspecified() {
        return Err(format!(
            "listening on {listen} needs an advertise address that other machines reach (--advertise host:port)"
        ));
    }
    let cpus = file.cpus.clone().unwrap_or_default();
    check_cpus(&cpus)?;
    let mut engine = engine_config(&file.raft, &file.storage, &file.limits);
    if file.shards == Some(0) {
        return Err("shards must be at least 1".into());
    }
    engine.shards = file.shards.unwrap_or(0);
    engine.cpus = cpus;
    engine.validate().map_err(|e| e.to_string())?;
    let shards = engine.shard_count();
    if usize::from(listen.port()) + shards > usize::from(u16::MAX) + 1 {
        return Err(format!("{shards} shards do not fit above port {}", listen.port()));
    }
    let limits = frame_limits(&file.limits)?;
    let status_addr = file.status_addr.unwrap_or(StatusAddr::Off).resolve(listen)?;
    if let Some(s) = status_addr {
        let same_host = s.ip() == listen.ip() || s.ip().is_unspecified() || listen.ip().is_unspecified();
        let range = usize::from(listen.port())..usize::from(listen.port()) + shards;
        if same_host && range.contains(&usize::from(s.port())) {
            return Err(format!(
                "status_addr {s} collides with the shard ports {}..{}",
                range.start,
                range.end - 1
            ));
        }
    }
    let mut node = NodeConfig::new("", data_dir, listen);
    node.pd_endpoints = pd;
    node.advertise = file.advertise.clone();
    node.engine = engine;
    node.limits = limits;
    if let Some(d) = file.join_wait {
        node.join_wait = d.0;
    }
    Ok(StoreSetup { node, status_addr, log_level: file.log_level.clone() })
}

#[cfg(test)]
mod tests;
