//! The etcd cluster a run starts for itself (`--etcd-start`): three
//! members on loopback, started by `bench/etcd-cluster.sh` into the run's
//! data directory and stopped when the guard drops.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::target::Result;

/// The script, found in the source tree the binary was built from.
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/etcd-cluster.sh");
/// Ports the script uses from its base: clients base..base+2, peers
/// base+10..base+12.
const PORTS: u16 = 13;

/// A running cluster; stopped on drop.
#[derive(Debug)]
pub struct EtcdCluster {
    script: PathBuf,
    dir: PathBuf,
    endpoints: Vec<String>,
}

impl EtcdCluster {
    /// Starts a cluster with `script` in `dir` (made if missing) on free
    /// loopback ports; returns once every member is healthy.
    ///
    /// # Errors
    /// No free ports, or the script failed (its messages are on stderr).
    pub fn start(script: &Path, dir: &Path) -> Result<Self> {
        let base = ekv_net::local::free_base_port(IpAddr::V4(Ipv4Addr::LOCALHOST), PORTS)?;
        let mut cluster =
            Self { script: script.to_path_buf(), dir: dir.to_path_buf(), endpoints: Vec::new() };
        let out = Command::new("bash")
            .arg(script)
            .arg("start")
            .arg(dir)
            .arg(base.to_string())
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!("{} start failed ({})", script.display(), out.status).into());
        }
        cluster.endpoints = parse_endpoints(&String::from_utf8_lossy(&out.stdout))
            .ok_or_else(|| format!("{} printed no endpoints", script.display()))?;
        Ok(cluster)
    }

    /// The members' client endpoints, `host:port`.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        // Also after a failed start: the script stops what it started, and
        // a second stop finds nothing to do.
        let status =
            Command::new("bash").arg(&self.script).arg("stop").arg(&self.dir).stdin(Stdio::null()).status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("warning: stopping the etcd cluster in {} failed: {status:?}", self.dir.display());
        }
    }
}

/// The endpoints on the last non-empty line of the script's stdout.
fn parse_endpoints(stdout: &str) -> Option<Vec<String>> {
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty())?;
    let endpoints: Vec<String> =
        line.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_owned).collect();
    (!endpoints.is_empty()).then_some(endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_endpoint_line() {
        assert_eq!(
            parse_endpoints("127.0.0.1:1,127.0.0.1:2, 127.0.0.1:3\n"),
            Some(vec!["127.0.0.1:1".to_owned(), "127.0.0.1:2".to_owned(), "127.0.0.1:3".to_owned()])
        );
        assert_eq!(parse_endpoints("noise\n127.0.0.1:9\n\n"), Some(vec!["127.0.0.1:9".to_owned()]));
        assert_eq!(parse_endpoints(""), None);
        assert_eq!(parse_endpoints(" , \n"), None);
        assert!(Path::new(SCRIPT).is_file(), "{SCRIPT} ships with the crate");
    }
}
