//! The test network: one Linux bridge in the runner's namespace, and one
//! network namespace per node joined to it by a veth pair. The runner's
//! side of the bridge has an address, so clients reach every node directly.
//!
//! Partitions are nftables rules inside node namespaces that drop packets by
//! source address (so a one-way partition drops only one direction), or a
//! node's veth taken down. Every object is named after the runner's pid, so
//! runs never collide and a crashed run's leftovers are recognisable.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;

/// The nftables table the runner owns inside each node namespace.
pub const NFT_TABLE: &str = "ekvchaos";

/// Runs a command, failing with its stderr.
pub fn sh(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("running {program} {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `nft -f -` with `script` on stdin inside namespace `ns`.
fn nft_in(ns: &str, script: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("running nft in {ns}: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("nft: no stdin")?
        .write_all(script.as_bytes())
        .map_err(|e| format!("writing to nft in {ns}: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("nft in {ns}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("nft in {ns} failed: {}\nscript:\n{script}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The nftables script that makes a node drop every packet from `sources`
/// (replacing earlier rules of the runner; empty `sources` heals).
pub fn drop_rules(sources: &BTreeSet<Ipv4Addr>) -> String {
    // Adding then deleting the table makes the script idempotent whether or
    // not the table exists; then it is rebuilt from scratch.
    let mut s = format!("table inet {NFT_TABLE}\ndelete table inet {NFT_TABLE}\n");
    if sources.is_empty() {
        return s;
    }
    let list: Vec<String> = sources.iter().map(Ipv4Addr::to_string).collect();
    s.push_str(&format!(
        "table inet {NFT_TABLE} {{\n  chain input {{\n    type filter hook input priority -10; policy accept;\n    ip saddr {{ {} }} drop\n  }}\n}}\n",
        list.join(", ")
    ));
    s
}

/// One node's place on the network.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// Namespace name.
    pub ns: String,
    /// The veth end on the bridge (in the runner's namespace).
    pub host_if: String,
    /// The node's address.
    pub ip: Ipv4Addr,
}

/// The bridge and the namespaces made so far; [`Network::teardown`] (also
/// run on drop) removes them all.
#[derive(Debug)]
pub struct Network {
    tag: u32,
    /// The bridge.
    pub bridge: String,
    /// The /24 the nodes live in: `10.77.<subnet>.0/24`.
    pub subnet: u8,
    /// Nodes attached, by creation order.
    pub nodes: Vec<Attachment>,
    torn_down: bool,
}

impl Network {
    /// Makes the bridge `ekvcb<tag>` with address `10.77.<subnet>.1/24`.
    pub fn create(tag: u32, subnet: u8) -> Result<Self, String> {
        let bridge = format!("ekvcb{tag}");
        let net = Network { tag, bridge: bridge.clone(), subnet, nodes: Vec::new(), torn_down: false };
        sh("ip", &["link", "add", &bridge, "type", "bridge"])?;
        sh("ip", &["addr", "add", &format!("{}/24", net.gateway()), "dev", &bridge])?;
        sh("ip", &["link", "set", &bridge, "up"])?;
        // Bridged frames must not go through the host's iptables (a
        // FORWARD policy of DROP, as container hosts have, would cut the
        // nodes off from each other). Absent when br_netfilter is not loaded.
        let knob = "/proc/sys/net/bridge/bridge-nf-call-iptables";
        if std::path::Path::new(knob).exists() {
            let _ = std::fs::write(knob, "0");
        }
        Ok(net)
    }

    /// The runner's address on the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, 1)
    }

    /// Address of host number `n` (2..=254).
    pub fn host(&self, n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, n)
    }

    /// Makes namespace `ekvc-<tag>-<name>` with address `ip` on the bridge.
    pub fn attach(&mut self, name: &str, ip: Ipv4Addr) -> Result<Attachment, String> {
        let idx = self.nodes.len();
        let ns = format!("ekvc-{}-{name}", self.tag);
        let host_if = format!("ekvc{}h{idx}", self.tag);
        let peer_if = format!("ekvc{}p{idx}", self.tag);
        sh("ip", &["netns", "add", &ns])?;
        let a = Attachment { ns: ns.clone(), host_if: host_if.clone(), ip };
        self.nodes.push(a.clone());
        sh("ip", &["link", "add", &host_if, "type", "veth", "peer", "name", &peer_if])?;
        sh("ip", &["link", "set", &peer_if, "netns", &ns])?;
        sh("ip", &["link", "set", &host_if, "master", &self.bridge])?;
        sh("ip", &["link", "set", &host_if, "up"])?;
        sh("ip", &["-n", &ns, "link", "set", &peer_if, "name", "eth0"])?;
        sh("ip", &["-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        sh("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
        sh("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(a)
    }

    /// Makes the node in `ns` drop packets from `sources` (empty: heal).
    pub fn set_drops(&self, ns: &str, sources: &BTreeSet<Ipv4Addr>) -> Result<(), String> {
        nft_in(ns, &drop_rules(sources))
    }

    /// Takes a node's link down or up.
    pub fn set_link(&self, host_if: &str, up: bool) -> Result<(), String> {
        sh("ip", &["link", "set", host_if, if up { "up" } else { "down" }]).map(|_| ())
    }

    /// Removes every rule and brings every link up.
    pub fn heal_all(&self) -> Result<(), String> {
        let mut first = Ok(());
        for n in &self.nodes {
            if let Err(e) = self.set_drops(&n.ns, &BTreeSet::new()) {
                first = first.and(Err(e));
            }
            if let Err(e) = self.set_link(&n.host_if, true) {
                first = first.and(Err(e));
            }
        }
        first
    }

    /// Removes the namespaces (and with them the veths) and the bridge.
    /// Errors are printed, not returned: teardown goes on regardless.
    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        for n in self.nodes.drain(..).rev() {
            // Deleting the host end removes the pair.
            let _ = sh("ip", &["link", "del", &n.host_if]);
            if let Err(e) = sh("ip", &["netns", "del", &n.ns]) {
                eprintln!("ekv-chaos: cleanup: {e}");
            }
        }
        if let Err(e) = sh("ip", &["link", "del", &self.bridge]) {
            eprintln!("ekv-chaos: cleanup: {e}");
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// The runner pid in a name the runner made (`ekvc-<pid>-<node>`,
/// `ekvcb<pid>`, `ekvc<pid>h<i>`).
pub fn owner_pid(name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix("ekvc-")
        .or_else(|| name.strip_prefix("ekvcb"))
        .or_else(|| name.strip_prefix("ekvc"))?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Removes what runs that died without cleaning up (SIGKILL, a crash of the
/// host) left behind: the processes in their namespaces, the namespaces,
/// and their bridge and veths. Only objects named by this runner whose
/// runner pid is no longer alive are touched. Returns what was removed.
pub fn cleanup_stale() -> Vec<String> {
    let alive = |pid: u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    let mut removed = Vec::new();
    let list = sh("ip", &["netns", "list"]).unwrap_or_default();
    for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
        if !ns.starts_with("ekvc-") || owner_pid(ns).is_none_or(alive) {
            continue;
        }
        for pid in sh("ip", &["netns", "pids", ns]).unwrap_or_default().split_whitespace() {
            let _ = sh("kill", &["-9", pid]);
        }
        if sh("ip", &["netns", "del", ns]).is_ok() {
            removed.push(ns.to_owned());
        }
    }
    let links = sh("ip", &["-o", "link", "show"]).unwrap_or_default();
    for l in links.lines() {
        let Some(name) = l.split(':').nth(1).map(|n| n.trim().split('@').next().unwrap_or("")) else {
            continue;
        };
        if name.starts_with("ekvc")
            && owner_pid(name).is_some_and(|p| !alive(p))
            && sh("ip", &["link", "del", name]).is_ok()
        {
            removed.push(name.to_owned());
        }
    }
    removed
}

/// What each node must drop so that only `groups` talk among themselves:
/// a node drops every node outside its group. Nodes in no group are left
/// alone.
pub fn drops_for_groups(groups: &[Vec<Ipv4Addr>]) -> Vec<(Ipv4Addr, BTreeSet<Ipv4Addr>)> {
    let mut out = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        let others: BTreeSet<Ipv4Addr> = groups
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != gi)
            .flat_map(|(_, o)| o.iter().copied())
            .collect();
        for &n in g {
            out.push((n, others.clone()));
        }
    }
    out
}

/// A ring: node i hears only nodes i-1 and i+1 (mod n).
pub fn drops_for_ring(nodes: &[Ipv4Addr]) -> Vec<(Ipv4Addr, BTreeSet<Ipv4Addr>)> {
    let n = nodes.len();
    nodes
        .iter()
        .enumerate()
        .map(|(i, &me)| {
            let keep = [nodes[(i + n - 1) % n], nodes[(i + 1) % n], me];
            (me, nodes.iter().copied().filter(|x| !keep.contains(x)).collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, 1, n)
    }

    #[test]
    fn drop_rules_list_sources_and_empty_heals() {
        let s = drop_rules(&[ip(3), ip(2)].into_iter().collect());
        assert!(s.contains("ip saddr { 10.77.1.2, 10.77.1.3 } drop"), "{s}");
        assert!(s.starts_with("table inet ekvchaos\ndelete table inet ekvchaos\n"));
        let heal = drop_rules(&BTreeSet::new());
        assert!(!heal.contains("drop"), "{heal}");
        assert!(heal.contains("delete table"));
    }

    #[test]
    fn names_tell_their_runner() {
        assert_eq!(owner_pid("ekvc-4242-s1"), Some(4242));
        assert_eq!(owner_pid("ekvcb4242"), Some(4242));
        assert_eq!(owner_pid("ekvc4242h3"), Some(4242));
        assert_eq!(owner_pid("eth0"), None);
        assert_eq!(owner_pid("ekvc-x"), None);
    }

    #[test]
    fn groups_drop_everyone_outside() {
        let d = drops_for_groups(&[vec![ip(1), ip(2)], vec![ip(3)]]);
        assert_eq!(d.len(), 3);
        let of = |n| d.iter().find(|(x, _)| *x == n).map(|(_, s)| s.clone()).unwrap();
        assert_eq!(of(ip(1)), [ip(3)].into_iter().collect());
        assert_eq!(of(ip(2)), [ip(3)].into_iter().collect());
        assert_eq!(of(ip(3)), [ip(1), ip(2)].into_iter().collect());
    }

    #[test]
    fn ring_keeps_only_neighbours() {
        let nodes: Vec<_> = (1..=5).map(ip).collect();
        let d = drops_for_ring(&nodes);
        let of = |n| d.iter().find(|(x, _)| *x == n).map(|(_, s)| s.clone()).unwrap();
        assert_eq!(of(ip(1)), [ip(3), ip(4)].into_iter().collect());
        assert_eq!(of(ip(3)), [ip(1), ip(5)].into_iter().collect());
        // Three nodes in a ring all see each other: nothing dropped.
        assert!(drops_for_ring(&nodes[..3]).iter().all(|(_, s)| s.is_empty()));
    }
}
