//! The `ekv` binary for real: a playground that `ekv ctl` talks to and that
//! stops cleanly on SIGTERM, `ekv pd` and `ekv store` as separate
//! processes with their status servers, and the exit codes of bad
//! configuration and failures.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

const EKV: &str = env!("CARGO_BIN_EXE_ekv");

/// A child `ekv` whose stdout lines arrive on a channel and whose stderr
/// is kept for failure messages. Killed (SIGKILL, by its own handle) if
/// the test panics before it stopped.
struct Proc {
    child: Option<Child>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    name: String,
}

impl Proc {
    fn spawn(name: &str, args: &[&str]) -> Self {
        let mut child = Command::new(EKV)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ekv starts");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr");
        let keep = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                keep.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self { child: Some(child), lines, stderr, name: name.to_owned() }
    }

    fn stderr_tail(&self) -> String {
        let s = self.stderr.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let start = s.len().saturating_sub(4000);
        s[s.char_indices().map(|(i, _)| i).find(|i| *i >= start).unwrap_or(0)..].to_owned()
    }

    /// Waits for a stdout line starting with `prefix`; returns the lines
    /// read so far, the matching one last.
    fn wait_line(&self, prefix: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let done = l.starts_with(prefix);
                    seen.push(l);
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!(
                    "{}: no line starting with {prefix:?} within {within:?}; stdout so far: {seen:#?}\nstderr:\n{}",
                    self.name,
                    self.stderr_tail()
                ),
            }
        }
    }

    /// Waits until stderr contains `text`.
    fn wait_stderr(&self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.stderr.lock().unwrap_or_else(PoisonError::into_inner).contains(text) {
            assert!(
                Instant::now() < deadline,
                "{}: stderr never said {text:?}:\n{}",
                self.name,
                self.stderr_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM to the child's pid and waits for its exit.
    fn terminate(&mut self, within: Duration) -> ExitStatus {
        let child = self.child.take().expect("running");
        let pid = i32::try_from(child.id()).expect("pid");
        must_signal(pid, libc::SIGTERM);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut child = child;
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(within) {
            Ok(status) => status.expect("wait"),
            Err(_) => {
                must_signal(pid, libc::SIGKILL);
                panic!(
                    "{}: did not exit within {within:?} of SIGTERM\nstderr:\n{}",
                    self.name,
                    self.stderr_tail()
                )
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sends `sig` to `pid`, a child this test started.
#[allow(unsafe_code)]
fn must_signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let r = unsafe { libc::kill(pid, sig) };
    assert_eq!(r, 0, "kill({pid}, {sig}) failed");
}

fn ekv(args: &[&str]) -> Output {
    Command::new(EKV).args(args).stdin(Stdio::null()).output().expect("ekv runs")
}

fn must_ok(args: &[&str]) -> String {
    let out = ekv(args);
    assert!(
        out.status.success(),
        "ekv {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("status server reachable");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("status code");
    (code, body.to_owned())
}

/// One sample of a Prometheus text page.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// `name{k="v",...} value` (label values with `\\`, `\"` and `\n` escapes).
fn must_parse_sample(line: &str) -> Sample {
    let end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value in {line:?}"));
    let name = line[..end].to_owned();
    assert!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad metric name in {line:?}"
    );
    let mut labels = BTreeMap::new();
    let mut rest = &line[end..];
    if let Some(mut r) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = r.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = r.split_once("=\"").unwrap_or_else(|| panic!("bad label in {line:?}"));
            let (mut value, mut chars) = (String::new(), after.char_indices());
            let close = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        other => panic!("bad escape {other:?} in {line:?}"),
                    },
                    Some((i, '"')) => break i,
                    Some((_, c)) => value.push(c),
                    None => panic!("unterminated label value in {line:?}"),
                }
            };
            assert!(labels.insert(key.to_owned(), value).is_none(), "label {key} twice in {line:?}");
            r = &after[close + 1..];
            r = r.strip_prefix(',').unwrap_or(r);
        }
    }
    let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("no value in {line:?}"));
    let value = value.parse().unwrap_or_else(|e| panic!("bad value in {line:?}: {e}"));
    Sample { name, labels, value }
}

/// Parses a Prometheus text page and panics at anything that breaks the
/// format: every family has one HELP then one TYPE before its samples,
/// and its samples follow them together; no series twice; counters end in
/// `_total` and are not negative; every histogram series has buckets with
/// rising bounds and non-decreasing counts, ending at `+Inf`, whose count
/// `_count` repeats, and a `_sum`.
fn must_parse_exposition(text: &str) -> Vec<Sample> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helped = HashSet::new();
    let mut current: Option<String> = None;
    let mut series = HashSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().expect("name").to_owned();
            assert!(helped.insert(name.clone()), "HELP twice for {name}");
            current = Some(name);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line {line:?}"));
            assert_eq!(current.as_deref(), Some(name), "TYPE of {name} without its HELP just before");
            assert!(matches!(kind, "counter" | "gauge" | "histogram"), "unknown type in {line:?}");
            assert!(types.insert(name.to_owned(), kind.to_owned()).is_none(), "TYPE twice for {name}");
            continue;
        }
        assert!(!line.is_empty() && !line.starts_with('#'), "stray line {line:?}");
        let s = must_parse_sample(line);
        let family = current.clone().unwrap_or_else(|| panic!("{line:?} before any family"));
        let kind = types.get(&family).unwrap_or_else(|| panic!("{family} has no TYPE"));
        let own = match kind.as_str() {
            "histogram" => ["_bucket", "_sum", "_count"].iter().any(|x| s.name == format!("{family}{x}")),
            _ => s.name == family,
        };
        assert!(own, "{line:?} is not a sample of {family}, the family it stands under");
        assert!(family.starts_with("ekv_"), "{family} is not an ekv_ family");
        if kind == "counter" {
            assert!(family.ends_with("_total") && s.value >= 0.0, "bad counter {line:?}");
        }
        assert!(series.insert(format!("{}{:?}", s.name, s.labels)), "series twice: {line:?}");
        samples.push(s);
    }
    for (family, _) in types.iter().filter(|(_, k)| *k == "histogram") {
        let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        let key = |s: &Sample| {
            let mut l = s.labels.clone();
            l.remove("le");
            format!("{l:?}")
        };
        for s in samples.iter().filter(|s| s.name == format!("{family}_bucket")) {
            let le = s.labels.get("le").unwrap_or_else(|| panic!("{family} bucket without le"));
            buckets.entry(key(s)).or_default().push((le.parse().expect("le is a number"), s.value));
        }
        for (labels, b) in &buckets {
            assert!(b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{family}{labels}: {b:?}");
            let (le, inf) = *b.last().expect("a bucket");
            assert_eq!(le, f64::INFINITY, "{family}{labels} does not end at +Inf");
            let count = samples.iter().find(|s| s.name == format!("{family}_count") && key(s) == *labels);
            assert_eq!(count.map(|s| s.value), Some(inf), "{family}{labels}: _count is not the +Inf bucket");
            assert!(samples.iter().any(|s| s.name == format!("{family}_sum") && key(s) == *labels));
        }
        let counts = samples.iter().filter(|s| s.name == format!("{family}_count")).count();
        assert_eq!(counts, buckets.len(), "{family}: a _count without buckets");
    }
    samples
}

#[test]
fn the_exposition_check_refuses_broken_pages() {
    let head = "# HELP ekv_x_seconds X.\n# TYPE ekv_x_seconds histogram\n";
    let good = format!(
        "{head}ekv_x_seconds_bucket{{le=\"0.1\"}} 1\nekv_x_seconds_bucket{{le=\"+Inf\"}} 2\n\
         ekv_x_seconds_sum 0.3\nekv_x_seconds_count 2\n# HELP ekv_n_total N.\n# TYPE ekv_n_total counter\n\
         ekv_n_total{{a=\"q\\\"\"}} 1\n"
    );
    assert_eq!(must_parse_exposition(&good).len(), 5);
    let broken = [
        // Buckets that fall.
        good.replace("le=\"0.1\"} 1", "le=\"0.1\"} 3"),
        // `_count` that is not the +Inf bucket.
        good.replace("_count 2", "_count 3"),
        // No +Inf bucket.
        good.replace("+Inf", "0.2"),
        // A family twice.
        format!("{good}# HELP ekv_n_total N.\n# TYPE ekv_n_total counter\n"),
        // A sample outside its family's block.
        format!("{good}ekv_x_seconds_sum 1\n"),
        // A counter without `_total`.
        "# HELP ekv_n N.\n# TYPE ekv_n counter\nekv_n 1\n".to_owned(),
        // A sample with no family.
        "ekv_up 1\n".to_owned(),
    ];
    for page in broken {
        let caught = std::panic::catch_unwind(|| must_parse_exposition(&page));
        assert!(caught.is_err(), "accepted:\n{page}");
    }
}

/// Sum of the samples named `name` whose labels include `labels`.
fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
        })
        .map(|s| s.value)
        .sum()
}

fn tmp() -> tempfile::TempDir {
    // Not /tmp: it may be tmpfs; the target directory is a real disk.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir")
}

/// The value after `key=` in a ready line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")).map(|v| v.trim_start_matches("ready:")))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

#[test]
fn playground_serves_ctl_and_stops_cleanly_on_sigterm() {
    let dir = tmp();
    let data = dir.path().join("pg");
    let mut pg = Proc::spawn("playground", &["playground", "--dir", data.to_str().expect("utf-8")]);
    let out = pg.wait_line("ready: pd=", Duration::from_secs(180));
    let ready = out.last().expect("ready line");
    let pd = ready.strip_prefix("ready: pd=").expect("format");
    pd.parse::<SocketAddr>().expect("ready names an ip:port");
    assert_eq!(out.iter().filter(|l| l.starts_with("store ")).count(), 3, "{out:#?}");
    let status: SocketAddr = out
        .iter()
        .find(|l| l.starts_with("pd "))
        .and_then(|l| l.split("status http://").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("the member's status address");

    let ctl = |args: &[&str]| {
        let mut all = vec!["ctl", "--pd", pd];
        all.extend_from_slice(args);
        must_ok(&all)
    };
    assert_eq!(ctl(&["put", "fruit/apple", "red"]).trim(), "OK");
    assert_eq!(ctl(&["put", "fruit/banana", "yellow"]).trim(), "OK");
    assert_eq!(ctl(&["put", "veg/kale", "green"]).trim(), "OK");
    assert_eq!(ctl(&["get", "fruit/apple"]).trim(), "red");
    assert_eq!(ctl(&["get", "fruit/cherry"]).trim(), "(not found)");
    assert_eq!(ctl(&["scan", "fruit/", "fruit0"]), "fruit/apple\tred\nfruit/banana\tyellow\n");
    assert_eq!(ctl(&["scan", "--reverse", "--limit", "1", "--keys-only"]).trim(), "veg/kale");
    let scan: serde_json::Value =
        serde_json::from_str(&ctl(&["--json", "scan", "fruit/", "fruit0"])).expect("json");
    assert_eq!(scan[1]["value"], "yellow");
    assert_eq!(ctl(&["--hex", "get", "667275697421"]).trim(), "(not found)");
    assert_eq!(ctl(&["delete", "veg/kale"]).trim(), "OK");
    assert_eq!(ctl(&["get", "veg/kale"]).trim(), "(not found)");

    let stores = ctl(&["stores"]);
    let rows: Vec<&str> = stores.lines().skip(1).collect();
    assert_eq!(rows.len(), 3, "{stores}");
    assert!(rows.iter().all(|r| r.contains(" Up ")), "{stores}");
    let stores: serde_json::Value = serde_json::from_str(&ctl(&["--json", "stores"])).expect("json");
    assert_eq!(stores.as_array().map(Vec::len), Some(3));
    let regions: serde_json::Value = serde_json::from_str(&ctl(&["--json", "regions"])).expect("json");
    let first = &regions[0];
    assert_eq!(first["peers"].as_array().map(Vec::len), Some(3), "{regions:#}");
    let stores_of_region: std::collections::BTreeSet<u64> = first["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| p["store_id"].as_u64().expect("id"))
        .collect();
    assert_eq!(stores_of_region.len(), 3, "three replicas on three stores");
    assert!(ctl(&["regions"]).lines().nth(1).is_some_and(|l| l.contains('@')));
    let view: serde_json::Value = serde_json::from_str(&ctl(&["status"])).expect("status is JSON");
    assert_eq!(view["bootstrapped"], true);
    assert!(ctl(&["members"]).contains("leader"));
    assert_eq!(ctl(&["health", "--wait", "60s"]).trim(), "healthy");

    // Split and move leadership through the admin commands.
    let split = ctl(&["--json", "split", "--key", "fruit/apple", "m"]);
    let parts: serde_json::Value = serde_json::from_str(&split).expect("json");
    assert_eq!(parts.as_array().map(Vec::len), Some(2), "{split}");
    assert_eq!(ctl(&["get", "veg/kale"]).trim(), "(not found)");
    assert_eq!(ctl(&["put", "veg/leek", "white"]).trim(), "OK");
    assert_eq!(ctl(&["scan"]), "fruit/apple\tred\nfruit/banana\tyellow\nveg/leek\twhite\n", "both regions");
    // The scheduler balances leaders meanwhile, so only the request itself
    // is checked here: the leader took it.
    let region = parts[1]["id"].as_u64().expect("id").to_string();
    let target = stores_of_region.iter().next_back().expect("a store").to_string();
    let moved = ctl(&["--timeout", "60s", "transfer-leader", &region, &target]);
    assert!(moved.contains("started") || moved.contains("already led"), "{moved}");
    let no_replica = ekv(&["ctl", "--pd", pd, "transfer-leader", &region, "999"]);
    assert_eq!(no_replica.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_replica.stderr).contains("no replica on store 999"));

    // The status server of the member.
    let (code, metrics) = http_get(status, "/metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("ekv_pd_is_leader{member=\"1\"} 1"), "{metrics}");
    assert!(metrics.contains("ekv_pd_stores{state=\"Up\"} 3"), "{metrics}");
    let samples = must_parse_exposition(&metrics);
    assert!(sum(&samples, "ekv_requests_total", &[("op", "get_region"), ("outcome", "ok")]) >= 1.0);
    let (code, body) = http_get(status, "/status");
    assert_eq!(code, 200);
    let st: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
    assert_eq!(st["is_leader"], true);
    assert_eq!(http_get(status, "/nothing").0, 404);

    let exit = pg.terminate(Duration::from_secs(60));
    assert!(exit.success(), "playground exit status {exit}\nstderr:\n{}", pg.stderr_tail());
    assert!(pg.stderr_tail().contains("stopped"), "{}", pg.stderr_tail());
}

#[test]
fn pd_and_store_processes_serve_status_and_stop_cleanly_on_sigterm() {
    let dir = tmp();
    let base = ekv_net::local::free_base_port([127, 0, 0, 1].into(), 10).expect("ports");
    let pd_addr = format!("127.0.0.1:{base}");
    let pd_status = format!("127.0.0.1:{}", base + 1);
    let store_listen = format!("127.0.0.1:{}", base + 2);
    let store_status = format!("127.0.0.1:{}", base + 4);
    let pd_dir = dir.path().join("pd");
    let store_dir = dir.path().join("store");
    let config = dir.path().join("pd.toml");
    std::fs::write(
        &config,
        format!(
            "id = 1\nmembers = [\"1={pd_addr}\"]\ndata_dir = \"{}\"\nstatus_addr = \"{pd_status}\"\n\
             [raft]\ntick_interval = \"20ms\"\n[schedule]\nreplicas = 1\nmax_used_ratio = 0.99\n",
            pd_dir.display()
        ),
    )
    .expect("config");
    let mut pd = Proc::spawn("pd", &["pd", "--config", config.to_str().expect("utf-8")]);
    let ready = pd.wait_line("ready: pd=", Duration::from_secs(60));
    assert_eq!(ready.last().map(String::as_str), Some(format!("ready: pd={pd_addr} member=1").as_str()));
    let mut store = Proc::spawn(
        "store",
        &[
            "store",
            "--pd",
            &pd_addr,
            "--data-dir",
            store_dir.to_str().expect("utf-8"),
            "--listen",
            &store_listen,
            "--shards",
            "2",
            "--status-addr",
            &store_status,
            "--tick-interval",
            "20ms",
        ],
    );
    let ready = store.wait_line("ready: store=", Duration::from_secs(60));
    let line = ready.last().expect("line");
    assert_eq!(field(line, "addr"), store_listen);
    assert_eq!(field(line, "shards"), "2");

    let ctl = |args: &[&str]| {
        let mut all = vec!["ctl", "--pd", &pd_addr, "--timeout", "30s"];
        all.extend_from_slice(args);
        must_ok(&all)
    };
    assert_eq!(ctl(&["put", "k", "v"]).trim(), "OK");
    assert_eq!(ctl(&["get", "k"]).trim(), "v");
    const MORE: usize = 4;
    for i in 0..MORE {
        assert_eq!(ctl(&["put", &format!("k{i}"), "v"]).trim(), "OK");
        assert_eq!(ctl(&["get", &format!("k{i}")]).trim(), "v");
    }
    let sent = (MORE + 1) as f64;

    let (code, metrics) = http_get(store_status.parse().expect("addr"), "/metrics");
    assert_eq!(code, 200);
    for family in
        ["ekv_shard_rounds_total", "ekv_shard_wal_writes_total", "ekv_shard_proposals_total", "ekv_regions"]
    {
        assert!(metrics.contains(&format!("# TYPE {family} ")), "{family} missing:\n{metrics}");
    }
    assert!(
        metrics.lines().any(|l| l.starts_with("ekv_shard_proposals_total{") && !l.ends_with(" 0")),
        "{metrics}"
    );
    let samples = must_parse_exposition(&metrics);
    for op in ["put", "get"] {
        let ok = sum(&samples, "ekv_requests_total", &[("op", op), ("outcome", "ok")]);
        assert!(ok >= sent, "{ok} {op}s answered, {sent} sent:\n{metrics}");
        let timed = sum(&samples, "ekv_request_duration_seconds_count", &[("op", op)]);
        assert!(timed >= sent, "{timed} {op}s timed, {sent} sent:\n{metrics}");
        let within = sum(&samples, "ekv_request_duration_seconds_bucket", &[("op", op), ("le", "10")]);
        assert!(within >= sent, "{op}s of at most 10 s: {within}");
        assert!(sum(&samples, "ekv_request_duration_seconds_sum", &[("op", op)]) > 0.0);
    }
    assert!(sum(&samples, "ekv_shard_appended_entries_total", &[]) >= sent);
    assert!(sum(&samples, "ekv_wal_syncs_total", &[]) > 0.0, "{metrics}");
    assert!(sum(&samples, "ekv_wal_sync_duration_seconds_count", &[]) > 0.0, "{metrics}");
    assert!(sum(&samples, "ekv_wal_written_bytes_total", &[]) > 0.0, "{metrics}");
    assert!(sum(&samples, "ekv_lsm_user_written_bytes_total", &[]) > 0.0, "{metrics}");
    for family in [
        "ekv_lsm_memtable_bytes",
        "ekv_lsm_level_files",
        "ekv_lsm_level_bytes",
        "ekv_lsm_block_cache_hits_total",
        "ekv_lsm_write_stalls_total",
        "ekv_wal_segments",
        "ekv_net_connections_accepted_total",
    ] {
        assert!(metrics.contains(&format!("# TYPE {family} ")), "{family} missing:\n{metrics}");
    }
    let (_, body) = http_get(store_status.parse().expect("addr"), "/status");
    let st: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(st["shards"], 2);
    assert_eq!(st["regions"].as_array().map(Vec::len), Some(1));
    let puts: u64 = st["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter_map(|s| s["requests"]["put"].as_u64())
        .sum();
    assert!(puts as f64 >= sent, "{body}");
    let syncs: u64 =
        st["stats"].as_array().expect("stats").iter().filter_map(|s| s["wal"]["syncs"].as_u64()).sum();
    assert!(syncs > 0, "{body}");
    let (_, metrics) = http_get(pd_status.parse().expect("addr"), "/metrics");
    assert!(metrics.contains("ekv_pd_is_leader{member=\"1\"} 1"), "{metrics}");
    assert!(metrics.contains("ekv_pd_regions 1"), "{metrics}");
    let samples = must_parse_exposition(&metrics);
    // The store joined and reported, and every ctl call asked for a route.
    assert!(sum(&samples, "ekv_requests_total", &[("op", "get_region"), ("outcome", "ok")]) >= 2.0 * sent);
    assert!(sum(&samples, "ekv_request_duration_seconds_count", &[("op", "is_bootstrapped")]) >= 1.0);
    assert!(sum(&samples, "ekv_wal_syncs_total", &[]) > 0.0, "{metrics}");

    let exit = store.terminate(Duration::from_secs(30));
    assert!(exit.success(), "store: {exit}\n{}", store.stderr_tail());
    let exit = pd.terminate(Duration::from_secs(30));
    assert!(exit.success(), "pd: {exit}\n{}", pd.stderr_tail());
    assert!(store_dir.join("store.id").exists());
}

#[test]
fn a_store_still_joining_exits_at_once_on_sigterm() {
    let dir = tmp();
    let base = ekv_net::local::free_base_port([127, 0, 0, 1].into(), 3).expect("ports");
    let nobody = format!("127.0.0.1:{base}");
    let listen = format!("127.0.0.1:{}", base + 1);
    let data = dir.path().join("s");
    let mut store = Proc::spawn(
        "store",
        &["store", "--pd", &nobody, "--data-dir", data.to_str().expect("utf-8"), "--listen", &listen],
    );
    store.wait_stderr("joining the cluster", Duration::from_secs(30));
    let started = Instant::now();
    let exit = store.terminate(Duration::from_secs(10));
    assert!(exit.success(), "{exit}\n{}", store.stderr_tail());
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(store.stderr_tail().contains("exiting before serving"), "{}", store.stderr_tail());
}

fn must_fail_with(args: &[&str], code: i32, says: &str) {
    let out = ekv(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "ekv {args:?}: {}\nstderr: {stderr}", out.status);
    assert!(stderr.contains(says), "ekv {args:?}: stderr does not say {says:?}:\n{stderr}");
}

#[test]
fn bad_configuration_exits_2_and_says_what_is_wrong() {
    let dir = tmp();
    let file = dir.path().join("pd.toml");
    let x = dir.path().join("x");
    let x = x.to_str().expect("utf-8");
    let f = |text: &str| {
        std::fs::write(&file, text).expect("write");
        file.to_str().expect("utf-8").to_owned()
    };
    must_fail_with(&["pd", "--config", &f("id = 1\nmembrs = []\n")], 2, "unknown field `membrs`");
    must_fail_with(&["pd", "--config", &f("id = \n")], 2, "pd.toml");
    must_fail_with(
        &[
            "pd",
            "--config",
            &f("[schedule]\nmax_used_ratio = 2.0\n"),
            "--id",
            "1",
            "--members",
            "1=127.0.0.1:1",
            "--data-dir",
            x,
        ],
        2,
        "max_used_ratio",
    );
    must_fail_with(
        &["pd", "--id", "4", "--members", "1=127.0.0.1:2379", "--data-dir", x],
        2,
        "member 4 is not in the member list",
    );
    must_fail_with(&["pd", "--config", "/nonexistent/ekv.toml"], 2, "reading /nonexistent/ekv.toml");
    must_fail_with(&["store", "--data-dir", x], 2, "meta service is required");
    must_fail_with(
        &["store", "--pd", "127.0.0.1:2379", "--data-dir", x, "--listen", "0.0.0.0:20160"],
        2,
        "advertise",
    );
    must_fail_with(
        &["store", "--pd", "127.0.0.1:2379", "--data-dir", x, "--tick-interval", "100"],
        2,
        "unit",
    );
    must_fail_with(
        &["store", "--pd", "127.0.0.1:2379", "--data-dir", x, "--log-level", "info,[="],
        2,
        "--log-level",
    );
    must_fail_with(&["playground", "--stores", "0"], 2, "--stores");
    must_fail_with(&["ctl", "split", "x"], 2, "--region");
    must_fail_with(&["nonsense"], 2, "unrecognized subcommand");
    assert!(!dir.path().join("x").exists(), "nothing was created");
}

#[test]
fn ctl_fails_clearly_without_a_meta_service() {
    let port = ekv_net::local::free_base_port([127, 0, 0, 1].into(), 1).expect("port");
    let pd = format!("127.0.0.1:{port}");
    must_fail_with(&["ctl", "--pd", &pd, "--timeout", "1s", "get", "k"], 1, "ekv:");
    must_fail_with(&["ctl", "--pd", &pd, "--timeout", "1s", "stores"], 1, "meta service");
    must_fail_with(&["ctl", "--pd", "nohost", "stores"], 2, "nohost");
}

#[test]
fn doctor_reports_on_a_data_directory() {
    let dir = tmp();
    let out = ekv(&["doctor", dir.path().to_str().expect("utf-8"), "--syncs", "20"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.code() == Some(0) || out.status.code() == Some(1), "{}", out.status);
    for want in ["kernel", "RLIMIT_MEMLOCK", "CPUs", "file system of", "O_DIRECT", "fdatasync after a 4 KiB"]
    {
        assert!(text.contains(want), "doctor does not mention {want:?}:\n{text}");
    }
    assert!(
        text.lines().all(|l| l.starts_with("ok   ") || l.starts_with("warn ") || l.starts_with("MISSING ")),
        "{text}"
    );
    assert!(std::fs::read_dir(dir.path()).expect("dir").next().is_none(), "the probe file is removed");
    let missing = ekv(&["doctor", "/nonexistent/ekv-data"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stdout).starts_with("MISSING data directory"));
}

/// Fail-stop on a real disk: the store's LSM directory is removed under it,
/// so the next flush cannot create its table (ENOENT). The shard stops on
/// the error and the `ekv store` process exits with code 1, naming the
/// store, the shard, the file and the errno, instead of going on serving
/// part of its regions.
#[test]
fn a_store_whose_shard_fails_exits_with_the_error() {
    let dir = tmp();
    let base = ekv_net::local::free_base_port([127, 0, 0, 1].into(), 4).expect("ports");
    let pd_addr = format!("127.0.0.1:{base}");
    let store_listen = format!("127.0.0.1:{}", base + 2);
    let pd_config = dir.path().join("pd.toml");
    std::fs::write(
        &pd_config,
        format!(
            "id = 1\nmembers = [\"1={pd_addr}\"]\ndata_dir = \"{}\"\nstatus_addr = \"off\"\n\
             [raft]\ntick_interval = \"20ms\"\n[schedule]\nreplicas = 1\nmax_used_ratio = 0.99\n",
            dir.path().join("pd").display()
        ),
    )
    .expect("config");
    let mut pd = Proc::spawn("pd", &["pd", "--config", pd_config.to_str().expect("utf-8")]);
    pd.wait_line("ready: pd=", Duration::from_secs(60));
    let store_dir = dir.path().join("store");
    let store_config = dir.path().join("store.toml");
    // Memtables this small make every few writes a flush.
    std::fs::write(&store_config, "[storage]\nlsm_memtable_bytes = 4096\n").expect("config");
    let mut store = Proc::spawn(
        "store",
        &[
            "store",
            "--config",
            store_config.to_str().expect("utf-8"),
            "--pd",
            &pd_addr,
            "--data-dir",
            store_dir.to_str().expect("utf-8"),
            "--listen",
            &store_listen,
            "--shards",
            "1",
            "--status-addr",
            "off",
            "--tick-interval",
            "20ms",
        ],
    );
    store.wait_line("ready: store=", Duration::from_secs(60));
    let put = |key: &str, value: &str| ekv(&["ctl", "--pd", &pd_addr, "--timeout", "5s", "put", key, value]);
    let first = put("k", "v");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let mut lsm_dirs = Vec::new();
    let mut todo = vec![store_dir.clone()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").map_while(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "lsm") {
                    lsm_dirs.push(p);
                } else {
                    todo.push(p);
                }
            }
        }
    }
    assert!(!lsm_dirs.is_empty(), "no lsm directory under {}", store_dir.display());
    for d in &lsm_dirs {
        std::fs::remove_dir_all(d).expect("remove the LSM directory");
    }
    let value = "x".repeat(1024);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    let status = loop {
        if let Some(status) = store.child.as_mut().expect("running").try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the store kept running:\n{}", store.stderr_tail());
        // Answers do not matter: the writes are there to fill a memtable.
        let _ = put(&format!("fill{i}"), &value);
        i += 1;
    };
    store.child = None;
    let stderr = store.stderr_tail();
    assert_eq!(status.code(), Some(1), "store exit: {status}\n{stderr}");
    assert!(
        stderr.contains("ekv: stopped on a storage failure: store ")
            && stderr.contains(" shard 0: ")
            && stderr.contains("/lsm/")
            && stderr.contains("os error 2"),
        "the exit message must name the store, shard, file and errno:\n{stderr}"
    );
    let exit = pd.terminate(Duration::from_secs(30));
    assert!(exit.success(), "pd: {exit}\n{}", pd.stderr_tail());
}
