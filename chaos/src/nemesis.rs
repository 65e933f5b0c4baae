//! Injecting the faults of the schedule into the running cluster, healing
//! them, and timing how long writes take to succeed again.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ekv_client::Client;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cluster::{Cluster, Role, Started};
use crate::net::{drops_for_groups, drops_for_ring};
use crate::report::FaultRecord;
use crate::schedule::{FaultKind, Step};
use crate::wal;
use crate::workload::probe_keys;

/// How long a restarted process may take to print its ready line.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long after a heal writes may take to succeed again before the
/// fault counts as not recovered.
pub const RECOVERY_LIMIT: Duration = Duration::from_secs(60);

/// A process that exited without being told to.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Crash {
    /// Node name.
    pub node: String,
    /// Milliseconds from the start.
    pub at_ms: u64,
    /// Exit status.
    pub status: String,
    /// The end of its log.
    pub tail: String,
}

/// The nemesis.
pub struct Nemesis<'a> {
    /// The cluster.
    pub cluster: &'a mut Cluster,
    probe: Client,
    t0: Instant,
    log_path: PathBuf,
    stop: Arc<AtomicBool>,
    /// Faults as they happened.
    pub records: Vec<FaultRecord>,
    /// Processes that died on their own.
    pub crashes: Vec<Crash>,
    /// Stores started on a damaged WAL that failed after starting.
    pub late_refusals: Vec<Crash>,
    probe_n: u64,
}

impl std::fmt::Debug for Nemesis<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nemesis").field("records", &self.records.len()).finish()
    }
}

/// What one fault did, and how to undo it.
enum Undo {
    Nothing,
    Restart(usize),
    Resume(usize),
    Drops(Vec<usize>),
    LinkUp(usize),
}

impl<'a> Nemesis<'a> {
    /// A nemesis over `cluster`, probing with `probe`, logging to `log_path`.
    pub fn new(
        cluster: &'a mut Cluster,
        probe: Client,
        t0: Instant,
        log_path: PathBuf,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Nemesis {
            cluster,
            probe,
            t0,
            log_path,
            stop,
            records: Vec::new(),
            crashes: Vec::new(),
            late_refusals: Vec::new(),
            probe_n: 0,
        }
    }

    fn ms(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Appends a line to the nemesis log and prints it.
    pub fn note(&self, line: &str) {
        let line = format!("[{:>7.1}s] {line}", self.t0.elapsed().as_secs_f64());
        eprintln!("{line}");
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(&self.log_path) {
            let _ = writeln!(f, "{line}");
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps until `deadline` (or a stop), checking for crashed processes.
    pub fn idle_until(&mut self, deadline: Instant) {
        while Instant::now() < deadline && !self.stopped() {
            self.check_crashes();
            std::thread::sleep(
                Duration::from_millis(100).min(deadline.saturating_duration_since(Instant::now())),
            );
        }
    }

    /// Records and restarts every process that exited on its own or had a
    /// thread panic (such a process is killed first: it may hang on without
    /// the thread). A store started on a damaged WAL that fails later is
    /// not a crash but a late refusal: it is replaced as a refusing one is.
    pub fn check_crashes(&mut self) {
        for i in 0..self.cluster.nodes.len() {
            if self.cluster.nodes[i].retired {
                continue;
            }
            let exited = {
                let n = &mut self.cluster.nodes[i];
                match n.child.as_mut().map(|c| c.try_wait()) {
                    Some(Ok(Some(status))) => Some(status.to_string()),
                    _ => None,
                }
            };
            let status = match exited {
                Some(s) => {
                    self.cluster.nodes[i].child = None;
                    // Its last words may name a panic.
                    let _ = self.cluster.new_panic(i);
                    s
                }
                None if self.cluster.nodes[i].child.is_some() => match self.cluster.new_panic(i) {
                    Some(p) => {
                        let _ = self.cluster.kill(i);
                        format!("a thread panicked, process killed by the runner: {p}")
                    }
                    None => continue,
                },
                None => continue,
            };
            let n = &self.cluster.nodes[i];
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
            let crash = Crash { node: n.name.clone(), at_ms: self.ms(), status: status.clone(), tail };
            if n.damaged {
                self.note(&format!(
                    "{} (started on a damaged WAL) failed later ({status}); replacing it; log {}",
                    n.name,
                    n.log.display()
                ));
                self.late_refusals.push(crash);
                if let Err(e) = self.replace_store(i) {
                    self.note(&format!("replacing {}: {e}", self.cluster.nodes[i].name));
                }
                continue;
            }
            self.note(&format!("CRASH: {} ({status}); restarting it; log {}", n.name, n.log.display()));
            self.crashes.push(crash);
            if let Err(e) = self.restart(i) {
                self.note(&format!("restarting {} after its crash: {e}", self.cluster.nodes[i].name));
            }
        }
    }

    fn restart(&mut self, idx: usize) -> Result<(), String> {
        match self.cluster.start(idx, START_TIMEOUT)? {
            Started::Ready => Ok(()),
            Started::Exited { status, tail } => {
                Err(format!("{} exited at start ({status}):\n{tail}", self.cluster.nodes[idx].name))
            }
        }
    }

    /// Time until every probe key takes a write, or `None` past `limit`
    /// (then the keys still failing and their last error are noted).
    pub fn probe(&mut self, limit: Duration) -> Option<u64> {
        let start = Instant::now();
        let mut pending = probe_keys();
        let mut last = String::new();
        while start.elapsed() < limit && !self.stopped() {
            self.probe_n += 1;
            let value = self.probe_n.to_string();
            let probe = &self.probe;
            pending.retain(|k| match probe.put(k, value.as_bytes()) {
                Ok(()) => false,
                Err(e) => {
                    last = format!("{}: {e}", String::from_utf8_lossy(k));
                    true
                }
            });
            if pending.is_empty() {
                return Some(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
            }
            self.check_crashes();
            std::thread::sleep(Duration::from_millis(50));
        }
        if limit >= RECOVERY_LIMIT && !self.stopped() {
            self.note(&format!("writes still fail after {limit:?}; last: {last}"));
        }
        None
    }

    /// The meta-service leader's node, from `ekv ctl members`.
    fn pd_leader(&self) -> Option<usize> {
        let v = self.cluster.ctl(&["members"], "3s").ok()?;
        let leader = v["leader"].as_u64()?;
        self.cluster.of_role(Role::Pd).into_iter().find(|&i| self.cluster.nodes[i].member_id == Some(leader))
    }

    /// Regions as the meta service shows them.
    fn regions(&self) -> Vec<serde_json::Value> {
        self.cluster.ctl(&["regions"], "3s").ok().and_then(|v| v.as_array().cloned()).unwrap_or_default()
    }

    fn running_stores(&self) -> Vec<usize> {
        self.cluster
            .of_role(Role::Store)
            .into_iter()
            .filter(|&i| self.cluster.nodes[i].child.is_some())
            .collect()
    }

    /// Runs one step: inject, hold, heal, and time the recovery.
    pub fn run_step(&mut self, step: &Step) -> FaultRecord {
        let mut rng = ChaCha8Rng::seed_from_u64(step.seed);
        let at_ms = self.ms();
        let mut rec = FaultRecord {
            kind: step.kind.name().to_owned(),
            at_ms,
            detail: String::new(),
            recovery_during_ms: None,
            recovery_after_ms: None,
            refused: false,
            skipped: false,
        };
        let injected = Instant::now();
        let undo = match self.inject(step.kind, &mut rng, &mut rec) {
            Ok(u) => u,
            Err(why) => {
                rec.skipped = true;
                rec.detail = why;
                self.note(&format!("{}: skipped: {}", rec.kind, rec.detail));
                return rec;
            }
        };
        self.note(&format!("{}: {}", rec.kind, rec.detail));
        if step.kind.holds() {
            let hold = Duration::from_millis(step.hold_ms);
            rec.recovery_during_ms = self.probe(hold);
            self.idle_until(injected + hold);
            if let Err(e) = self.undo(undo) {
                self.note(&format!("{}: heal failed: {e}", rec.kind));
                rec.detail.push_str(&format!("; heal failed: {e}"));
            }
            rec.recovery_after_ms = self.probe(RECOVERY_LIMIT);
        } else {
            rec.recovery_after_ms = self.probe(RECOVERY_LIMIT);
        }
        let ms = |v: Option<u64>| v.map_or_else(|| "not within the limit".into(), |v| format!("{v} ms"));
        if step.kind.holds() {
            self.note(&format!(
                "{}: writes ok {} into the fault, {} after the heal",
                rec.kind,
                rec.recovery_during_ms.map_or_else(|| "not".into(), |v| format!("{v} ms")),
                ms(rec.recovery_after_ms)
            ));
        } else {
            self.note(&format!("{}: writes ok {} after it", rec.kind, ms(rec.recovery_after_ms)));
        }
        rec
    }

    fn undo(&mut self, undo: Undo) -> Result<(), String> {
        match undo {
            Undo::Nothing => Ok(()),
            Undo::Restart(i) => self.restart(i),
            Undo::Resume(i) => self.cluster.pause(i, false),
            Undo::Drops(nodes) => {
                for i in nodes {
                    self.cluster.net.set_drops(&self.cluster.nodes[i].net.ns, &BTreeSet::new())?;
                }
                Ok(())
            }
            Undo::LinkUp(i) => self.cluster.net.set_link(&self.cluster.nodes[i].net.host_if, true),
        }
    }

    fn apply_drops(&mut self, drops: Vec<(Ipv4Addr, BTreeSet<Ipv4Addr>)>) -> Result<Undo, String> {
        let mut touched = Vec::new();
        for (ip, from) in drops {
            if from.is_empty() {
                continue;
            }
            let i =
                self.cluster.nodes.iter().position(|n| n.net.ip == ip && !n.retired).ok_or("no such node")?;
            self.cluster.net.set_drops(&self.cluster.nodes[i].net.ns, &from)?;
            touched.push(i);
        }
        Ok(Undo::Drops(touched))
    }

    fn names(&self, ips: &[Ipv4Addr]) -> String {
        ips.iter()
            .map(|ip| {
                self.cluster
                    .nodes
                    .iter()
                    .find(|n| n.net.ip == *ip)
                    .map_or_else(|| ip.to_string(), |n| n.name.clone())
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn inject(
        &mut self,
        kind: FaultKind,
        rng: &mut ChaCha8Rng,
        rec: &mut FaultRecord,
    ) -> Result<Undo, String> {
        match kind {
            FaultKind::Kill => {
                let i = *self.running_stores().choose(rng).ok_or("no running store")?;
                self.cluster.kill(i)?;
                rec.detail = format!("kill -9 {}", self.cluster.nodes[i].name);
                Ok(Undo::Restart(i))
            }
            FaultKind::KillPd => {
                let i = self.pd_leader().ok_or("no meta-service leader known")?;
                self.cluster.kill(i)?;
                rec.detail = format!("kill -9 meta-service leader {}", self.cluster.nodes[i].name);
                Ok(Undo::Restart(i))
            }
            FaultKind::Pause => {
                let i = if rng.gen_bool(0.3) {
                    self.pd_leader().ok_or("no meta-service leader known")?
                } else {
                    *self.running_stores().choose(rng).ok_or("no running store")?
                };
                self.cluster.pause(i, true)?;
                rec.detail = format!("SIGSTOP {}", self.cluster.nodes[i].name);
                Ok(Undo::Resume(i))
            }
            FaultKind::PartitionHalves => {
                let mut ips = self.cluster.ips();
                ips.shuffle(rng);
                let half = ips.split_off(ips.len() / 2);
                rec.detail = format!("halves [{}] | [{}]", self.names(&ips), self.names(&half));
                self.apply_drops(drops_for_groups(&[ips, half]))
            }
            FaultKind::PartitionLeader => {
                let leader = if rng.gen_bool(0.3) {
                    self.pd_leader().map(|i| (i, "meta-service leader".to_owned()))
                } else {
                    let regions = self.regions();
                    let r = regions.choose(rng).ok_or("no regions known")?;
                    let store = r["peers"]
                        .as_array()
                        .and_then(|p| p.iter().find(|p| p["role"] == "leader"))
                        .and_then(|p| p["store_id"].as_u64());
                    store
                        .and_then(|s| self.cluster.by_store_id(s))
                        .map(|i| (i, format!("leader of region {}", r["id"])))
                };
                let (i, what) = leader.ok_or("no leader known")?;
                let ip = self.cluster.nodes[i].net.ip;
                let rest: Vec<Ipv4Addr> = self.cluster.ips().into_iter().filter(|x| *x != ip).collect();
                rec.detail = format!("isolate {} ({what})", self.cluster.nodes[i].name);
                self.apply_drops(drops_for_groups(&[vec![ip], rest]))
            }
            FaultKind::PartitionOneWay => {
                let ips = self.cluster.ips();
                let a = *ips.choose(rng).ok_or("no nodes")?;
                let mut others: Vec<Ipv4Addr> = ips.into_iter().filter(|x| *x != a).collect();
                others.shuffle(rng);
                others.truncate(others.len().div_ceil(2));
                rec.detail = format!(
                    "[{}] stop hearing {} (it still hears them)",
                    self.names(&others),
                    self.names(&[a])
                );
                let only_a: BTreeSet<Ipv4Addr> = [a].into_iter().collect();
                self.apply_drops(others.into_iter().map(|o| (o, only_a.clone())).collect())
            }
            FaultKind::PartitionRing => {
                let mut ips = self.cluster.ips();
                ips.shuffle(rng);
                rec.detail = format!("ring {}", self.names(&ips));
                self.apply_drops(drops_for_ring(&ips))
            }
            FaultKind::LinkDown => {
                let nodes: Vec<usize> =
                    (0..self.cluster.nodes.len()).filter(|&i| !self.cluster.nodes[i].retired).collect();
                let i = *nodes.choose(rng).ok_or("no nodes")?;
                self.cluster.net.set_link(&self.cluster.nodes[i].net.host_if, false)?;
                rec.detail = format!("link of {} down", self.cluster.nodes[i].name);
                Ok(Undo::LinkUp(i))
            }
            FaultKind::Transfer => {
                let regions = self.regions();
                let r = regions.choose(rng).ok_or("no regions known")?;
                let peers = r["peers"].as_array().cloned().unwrap_or_default();
                let targets: Vec<u64> = peers
                    .iter()
                    .filter(|p| p["role"] == "voter")
                    .filter_map(|p| p["store_id"].as_u64())
                    .collect();
                let to = *targets.choose(rng).ok_or("region has no follower voter")?;
                let region = r["id"].as_u64().ok_or("region without id")?;
                let out = self.cluster.ctl(&["transfer-leader", &region.to_string(), &to.to_string()], "5s");
                rec.detail = format!("transfer leader of region {region} to store {to}: {}", brief(out));
                Ok(Undo::Nothing)
            }
            FaultKind::Split => {
                let key = if rng.gen_bool(0.7) {
                    format!(
                        "r/{}/{}x{}",
                        rng.gen_range(0..crate::workload::SLOTS),
                        rng.gen_range(0..100),
                        rng.gen::<u16>()
                    )
                } else {
                    format!("s/{}/{}", rng.gen_range(0..8), rng.gen_range(0..10_000))
                };
                let out = self.cluster.ctl(&["split", "--key", &key, &key], "5s");
                rec.detail = format!("split at {key:?}: {}", brief(out));
                Ok(Undo::Nothing)
            }
            FaultKind::Member => {
                let regions = self.regions();
                let r = regions.choose(rng).ok_or("no regions known")?;
                let region = r["id"].as_u64().ok_or("region without id")?.to_string();
                let peers = r["peers"].as_array().cloned().unwrap_or_default();
                let on: Vec<u64> = peers.iter().filter_map(|p| p["store_id"].as_u64()).collect();
                let spare: Vec<u64> = self
                    .running_stores()
                    .into_iter()
                    .filter_map(|i| self.cluster.nodes[i].store_id)
                    .filter(|s| !on.contains(s))
                    .collect();
                if let Some(&s) = spare.choose(rng) {
                    let out = self.cluster.ctl(&["add-peer", &region, &s.to_string()], "5s");
                    rec.detail = format!("add a replica of region {region} on store {s}: {}", brief(out));
                } else {
                    let followers: Vec<u64> = peers
                        .iter()
                        .filter(|p| p["role"] == "voter")
                        .filter_map(|p| p["store_id"].as_u64())
                        .collect();
                    let s = *followers.choose(rng).ok_or("region has no follower to remove")?;
                    let out = self.cluster.ctl(&["remove-peer", &region, &s.to_string()], "5s");
                    rec.detail = format!("remove region {region}'s replica on store {s}: {}", brief(out));
                }
                Ok(Undo::Nothing)
            }
            FaultKind::WalCut | FaultKind::BitFlip => self.corrupt(kind, rng, rec),
        }
    }

    /// Kills a store, damages its WAL, restarts it. A store that refuses to
    /// start is replaced as an operator would: deleted from the cluster,
    /// and a fresh store started in its place.
    fn corrupt(
        &mut self,
        kind: FaultKind,
        rng: &mut ChaCha8Rng,
        rec: &mut FaultRecord,
    ) -> Result<Undo, String> {
        // A store that refuses to start is wiped and replaced; wiping one
        // while another's replicas are still being rebuilt could take a
        // region's majority, which no cluster survives. So, like a careful
        // operator, damage a store only when every region is whole.
        let health = self.cluster.ctl(&["health", "--replicas", "3", "--wait", "10s"], "3s");
        if let Err(e) = health {
            let why: String = e.replace('\n', " ").chars().take(200).collect();
            return Err(format!("the cluster is not fully replicated yet ({why})"));
        }
        let i = *self.running_stores().choose(rng).ok_or("no running store")?;
        let name = self.cluster.nodes[i].name.clone();
        self.cluster.kill(i)?;
        let data = self.cluster.nodes[i].data.clone();
        let damage = match kind {
            FaultKind::WalCut => wal::cut_tail(&data, rng),
            _ => wal::flip_old_byte(&data, rng),
        };
        let what = match damage {
            Ok(w) => w,
            Err(e) => {
                // Nothing damaged: bring the store back as it was.
                self.restart(i)?;
                return Err(format!("{name}: {e} (restarted undamaged)"));
            }
        };
        rec.detail = format!("kill -9 {name}, {what}");
        match self.cluster.start(i, START_TIMEOUT)? {
            Started::Ready => {
                self.cluster.nodes[i].damaged = true;
                rec.detail.push_str("; restarted and recovered");
            }
            Started::Exited { status, tail } => {
                rec.refused = true;
                let last = tail.lines().last().unwrap_or("").to_owned();
                rec.detail.push_str(&format!("; refused to start ({status}): {last}"));
                self.note(&format!("{}: {name} refused to start ({status}); log tail:\n{tail}", kind.name()));
                let replaced = self.replace_store(i);
                let fresh = self.cluster.nodes.last().map_or("?", |n| &n.name);
                rec.detail.push_str(&format!("; replaced by {fresh}"));
                if let Err(e) = replaced {
                    rec.detail.push_str(&format!(" ({e})"));
                }
            }
        }
        Ok(Undo::Nothing)
    }

    /// Deletes store `i` from the cluster (retrying while the meta service
    /// is unreachable) and starts a fresh store with a new address and an
    /// empty data directory; the old one's files stay for inspection.
    fn replace_store(&mut self, i: usize) -> Result<(), String> {
        let mut result = Ok(());
        if let Some(id) = self.cluster.nodes[i].store_id {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match self.cluster.ctl(&["store", "delete", &id.to_string()], "5s") {
                    Ok(_) => break,
                    Err(e) if Instant::now() >= deadline || self.stopped() => {
                        result = Err(format!("deleting store {id}: {e}"));
                        break;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(500)),
                }
            }
        }
        self.cluster.nodes[i].retired = true;
        let fresh = self.cluster.new_store_node()?;
        self.restart(fresh)?;
        result
    }

    /// Undoes everything a stopped run may have left: rules, links, pauses,
    /// stopped processes.
    pub fn heal_everything(&mut self) -> Result<(), String> {
        let mut first = self.cluster.net.heal_all();
        for i in 0..self.cluster.nodes.len() {
            if self.cluster.nodes[i].retired {
                continue;
            }
            if self.cluster.nodes[i].paused {
                first = first.and(self.cluster.pause(i, false));
            }
            if self.cluster.nodes[i].child.is_none() {
                first = first.and(self.restart(i));
            }
        }
        first
    }
}

/// A `ctl` result in a few words.
fn brief(r: Result<serde_json::Value, String>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => {
            let e = e.replace('\n', " ");
            format!("refused ({})", e.chars().take(160).collect::<String>())
        }
    }
}
