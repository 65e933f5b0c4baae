//! The cluster under test: three meta-service members and N stores, each an
//! `ekv` process in a namespace of its own, with its log and data directory
//! under the run directory. Processes are only ever signalled by the pids
//! the runner started.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::net::{Attachment, Network};

/// Port of every meta-service member.
pub const PD_PORT: u16 = 2379;
/// Port of shard 0 of every store.
pub const STORE_PORT: u16 = 20160;

/// Raft settings shared by members and stores: short timings so that a
/// two-minute run sees many elections and repairs, and appends of bounded
/// size.
const RAFT: &str = r#"[raft]
tick_interval = "50ms"
election_ticks = 10
heartbeat_ticks = 2
lease_ticks = 8
max_size_per_msg = "256KiB"
"#;

/// WAL segments: small, so that a store has several (the byte-flip fault
/// needs an old one), yet well above the largest batch a shard writes in
/// one round (the WAL refuses a batch larger than a segment).
const WAL_SEGMENT: &str = "2MiB";

/// Whether a node is a meta-service member or a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `ekv pd`.
    Pd,
    /// `ekv store`.
    Store,
}

/// One process slot: its name, address, namespace, data and log.
#[derive(Debug)]
pub struct Node {
    /// `pd1`, `s1`, ...
    pub name: String,
    /// Member or store.
    pub role: Role,
    /// Its place on the network.
    pub net: Attachment,
    /// Data directory.
    pub data: PathBuf,
    /// Log file (every incarnation appends).
    pub log: PathBuf,
    /// The running process, if any.
    pub child: Option<Child>,
    /// Paused with SIGSTOP.
    pub paused: bool,
    /// Store id from its ready line (stores only).
    pub store_id: Option<u64>,
    /// Member id (members only).
    pub member_id: Option<u64>,
    /// Removed from the cluster (a store replaced after refusing to start).
    pub retired: bool,
    /// Where in the log this incarnation's output has been searched up to.
    pub scanned: u64,
    /// This incarnation started on a WAL the nemesis damaged.
    pub damaged: bool,
}

impl Node {
    /// The service address.
    pub fn addr(&self) -> String {
        let port = if self.role == Role::Pd { PD_PORT } else { STORE_PORT };
        format!("{}:{port}", self.net.ip)
    }

    /// The pid of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// How a start ended.
#[derive(Debug)]
pub enum Started {
    /// The ready line came.
    Ready,
    /// The process exited first: its status and the log's last lines.
    Exited { status: String, tail: String },
}

/// The cluster.
#[derive(Debug)]
pub struct Cluster {
    /// The `ekv` binary.
    pub ekv: PathBuf,
    /// The run directory.
    pub dir: PathBuf,
    /// The network.
    pub net: Network,
    /// Every node, members first.
    pub nodes: Vec<Node>,
    /// Scheduler's down-after, for the members.
    pub down_after_ms: u64,
    next_host: u8,
    stores_made: usize,
}

impl Cluster {
    /// A cluster with nothing started yet.
    pub fn new(ekv: PathBuf, dir: PathBuf, net: Network, down_after_ms: u64) -> Self {
        Cluster { ekv, dir, net, nodes: Vec::new(), down_after_ms, next_host: 11, stores_made: 0 }
    }

    /// The members' addresses, `a,b,c`.
    pub fn pd_endpoints(&self) -> Vec<String> {
        self.nodes.iter().filter(|n| n.role == Role::Pd).map(Node::addr).collect()
    }

    fn add_node(&mut self, name: String, role: Role) -> Result<usize, String> {
        let ip = self.net.host(self.next_host);
        self.next_host = self.next_host.checked_add(1).filter(|h| *h < 255).ok_or("out of addresses")?;
        let att = self.net.attach(&name, ip)?;
        let data = self.dir.join("data").join(&name);
        let log = self.dir.join("logs").join(format!("{name}.log"));
        std::fs::create_dir_all(&data).map_err(|e| format!("creating {}: {e}", data.display()))?;
        self.nodes.push(Node {
            name,
            role,
            net: att,
            data,
            log,
            child: None,
            paused: false,
            store_id: None,
            member_id: None,
            retired: false,
            scanned: 0,
            damaged: false,
        });
        Ok(self.nodes.len() - 1)
    }

    /// Makes the namespaces of `members` members and `stores` stores.
    pub fn create_nodes(&mut self, members: usize, stores: usize) -> Result<(), String> {
        std::fs::create_dir_all(self.dir.join("logs")).map_err(|e| format!("creating logs dir: {e}"))?;
        for i in 1..=members {
            let idx = self.add_node(format!("pd{i}"), Role::Pd)?;
            self.nodes[idx].member_id = Some(i as u64);
        }
        // Stores start at .21 so that addresses tell roles apart.
        self.next_host = 21;
        for _ in 0..stores {
            self.new_store_node()?;
        }
        Ok(())
    }

    /// Makes the namespace of a new store (not started).
    pub fn new_store_node(&mut self) -> Result<usize, String> {
        self.stores_made += 1;
        self.add_node(format!("s{}", self.stores_made), Role::Store)
    }

    fn write_config(&self, idx: usize) -> Result<PathBuf, String> {
        let n = &self.nodes[idx];
        let path = self.dir.join(format!("{}.toml", n.name));
        let body = match n.role {
            Role::Pd => format!(
                "{RAFT}\n[storage]\nwal_segment_bytes = \"{WAL_SEGMENT}\"\n\n[schedule]\ndown_after_ms = {}\nmax_used_ratio = 0.999\npeer_operator_timeout_ms = 30000\nleader_operator_timeout_ms = 10000\nsplit_operator_timeout_ms = 10000\n",
                self.down_after_ms
            ),
            Role::Store => format!(
                "{RAFT}pd_heartbeat_ticks = 10\npd_store_heartbeat_ticks = 10\n\n[storage]\nwal_segment_bytes = \"{WAL_SEGMENT}\"\nlsm_memtable_bytes = \"1MiB\"\n"
            ),
        };
        std::fs::write(&path, body).map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(path)
    }

    /// Starts node `idx`'s process (it must not be running).
    pub fn spawn(&mut self, idx: usize) -> Result<u64, String> {
        let config = self.write_config(idx)?;
        let members: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.role == Role::Pd)
            .map(|n| format!("{}={}", n.member_id.unwrap_or(0), n.addr()))
            .collect();
        let pd = self.pd_endpoints().join(",");
        let n = &mut self.nodes[idx];
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&n.log)
            .map_err(|e| format!("opening {}: {e}", n.log.display()))?;
        let offset = log.seek(SeekFrom::End(0)).map_err(|e| format!("{}: {e}", n.log.display()))?;
        let err = log.try_clone().map_err(|e| format!("{}: {e}", n.log.display()))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &n.net.ns]).arg(&self.ekv);
        let addr = n.addr();
        let data = n.data.display().to_string();
        let config = config.display().to_string();
        match n.role {
            Role::Pd => {
                let id = n.member_id.unwrap_or(0).to_string();
                cmd.args(["pd", "--id", &id, "--members", &members.join(",")]);
            }
            Role::Store => {
                cmd.args(["store", "--pd", &pd, "--listen", &addr, "--advertise", &addr, "--shards", "1"]);
            }
        }
        cmd.args(["--data-dir", &data, "-c", &config, "--status-addr", "off", "--log-level", "info"]);
        cmd.stdin(Stdio::null()).stdout(log).stderr(err);
        let child = cmd.spawn().map_err(|e| format!("starting {}: {e}", n.name))?;
        n.child = Some(child);
        n.paused = false;
        n.scanned = offset;
        n.damaged = false;
        Ok(offset)
    }

    /// Waits for the ready line written after `offset`, or for the
    /// process to exit.
    pub fn wait_ready(&mut self, idx: usize, offset: u64, timeout: Duration) -> Result<Started, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = read_from(&self.nodes[idx].log, offset);
            if let Some(line) = text.lines().find(|l| l.starts_with("ready:")) {
                if let Some(id) = line.split_whitespace().find_map(|w| w.strip_prefix("store=")) {
                    self.nodes[idx].store_id = id.parse().ok();
                }
                return Ok(Started::Ready);
            }
            let n = &mut self.nodes[idx];
            if let Some(child) = n.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    n.child = None;
                    let tail: Vec<&str> = text.lines().rev().take(15).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    return Ok(Started::Exited { status: status.to_string(), tail: tail.join("\n") });
                }
            } else {
                return Err(format!("{} is not running", n.name));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} printed no ready line within {timeout:?}; see {}",
                    n.name,
                    n.log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts node `idx` and waits for it to be ready.
    pub fn start(&mut self, idx: usize, timeout: Duration) -> Result<Started, String> {
        let offset = self.spawn(idx)?;
        self.wait_ready(idx, offset, timeout)
    }

    /// The first panic message in node `idx`'s log since the last call
    /// (a panicking thread need not take the process down with it).
    pub fn new_panic(&mut self, idx: usize) -> Option<String> {
        let n = &mut self.nodes[idx];
        let (used, panic) = find_panic(&read_from(&n.log, n.scanned));
        n.scanned += used;
        panic
    }

    /// Sends `sig` to node `idx`'s process.
    pub fn signal(&self, idx: usize, sig: i32) -> Result<(), String> {
        let n = &self.nodes[idx];
        let pid = n.pid().ok_or_else(|| format!("{} is not running", n.name))?;
        signal_pid(pid, sig).map_err(|e| format!("signalling {} (pid {pid}): {e}", n.name))
    }

    /// kill -9 and reap.
    pub fn kill(&mut self, idx: usize) -> Result<(), String> {
        let n = &mut self.nodes[idx];
        let Some(mut child) = n.child.take() else { return Ok(()) };
        // SIGKILL works on a stopped process too.
        let _ = child.kill();
        child.wait().map_err(|e| format!("reaping {}: {e}", n.name))?;
        n.paused = false;
        Ok(())
    }

    /// SIGSTOP or SIGCONT.
    pub fn pause(&mut self, idx: usize, pause: bool) -> Result<(), String> {
        self.signal(idx, if pause { libc::SIGSTOP } else { libc::SIGCONT })?;
        self.nodes[idx].paused = pause;
        Ok(())
    }

    /// Stops every process: SIGCONT the paused, SIGTERM all, SIGKILL those
    /// still running after `grace`.
    pub fn stop_all(&mut self, grace: Duration) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused {
                let _ = self.pause(i, false);
            }
            if self.nodes[i].child.is_some() {
                let _ = self.signal(i, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + grace;
        for n in &mut self.nodes {
            let Some(child) = n.child.as_mut() else { continue };
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        eprintln!("ekv-chaos: {} did not stop on SIGTERM; killing it", n.name);
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
            n.child = None;
        }
    }

    /// Indices of nodes of `role` that are in the cluster (not retired).
    pub fn of_role(&self, role: Role) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].role == role && !self.nodes[i].retired).collect()
    }

    /// The store node with store id `id`.
    pub fn by_store_id(&self, id: u64) -> Option<usize> {
        self.nodes.iter().position(|n| n.store_id == Some(id) && !n.retired)
    }

    /// The addresses of every node in the cluster.
    pub fn ips(&self) -> Vec<Ipv4Addr> {
        self.nodes.iter().filter(|n| !n.retired).map(|n| n.net.ip).collect()
    }

    /// Runs `ekv ctl --json ...` from the runner's namespace.
    pub fn ctl(&self, args: &[&str], timeout: &str) -> Result<serde_json::Value, String> {
        let pd = self.pd_endpoints().join(",");
        let out = Command::new(&self.ekv)
            .args(["ctl", "--pd", &pd, "--json", "--timeout", timeout])
            .args(args)
            .output()
            .map_err(|e| format!("running ekv ctl: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "ekv ctl {} failed: {}{}",
                args.join(" "),
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        serde_json::from_str(stdout.trim())
            .map_err(|e| format!("ekv ctl {}: not JSON ({e}): {stdout}", args.join(" ")))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Processes first, so none outlives its namespace.
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Sends `sig` to `pid`.
pub fn signal_pid(pid: u32, sig: i32) -> Result<(), String> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?;
    // kill(1) rather than libc::kill: the workspace denies unsafe code.
    let status = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .map_err(|e| format!("running kill: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -{sig} {pid}: {status}"))
    }
}

/// How many bytes of `text` to count as searched (whole lines only: a line
/// still being written is searched next time), and the first panic message
/// in them.
pub fn find_panic(text: &str) -> (u64, Option<String>) {
    let whole = text.rfind('\n').map_or(0, |i| i + 1);
    let text = &text[..whole];
    let panic = text.find("panicked at").map(|at| text[at..].lines().take(2).collect::<Vec<_>>().join(" "));
    (whole as u64, panic)
}

/// The text of `path` from byte `offset` on (empty if unreadable).
pub fn read_from(path: &Path, offset: u64) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        if f.seek(SeekFrom::Start(offset)).is_ok() {
            let mut buf = Vec::new();
            let _ = f.read_to_end(&mut buf);
            s = String::from_utf8_lossy(&buf).into_owned();
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_are_found_in_whole_lines_only() {
        let log = "INFO started\nthread 'ekv-1-0-1' panicked at raft_log.rs:292:13:\nto_commit 5 is out of range\nmore";
        let (used, panic) = find_panic(log);
        assert_eq!(used as usize, log.rfind('\n').unwrap() + 1, "the unfinished last line is left for later");
        assert_eq!(panic.as_deref(), Some("panicked at raft_log.rs:292:13: to_commit 5 is out of range"));
        assert_eq!(find_panic("INFO fine\nWARN slow\n"), (20, None));
        assert_eq!(find_panic("partial"), (0, None));
    }
}
