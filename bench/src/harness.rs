//! What every suite shares: the latency histogram, the result rows and the
//! report they go into, the machine description, the glommio executor a
//! suite runs on and the directory its files go in.

use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// A latency distribution. Records nanoseconds with 3 significant digits
/// and grows to whatever it is given; reports microseconds.
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty distribution.
    pub fn new() -> Self {
        // 3 significant digits is always a valid precision.
        let hist = Histogram::new(3).expect("3 significant digits is a valid histogram precision");
        Self { hist }
    }

    /// Adds one sample.
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // The histogram resizes itself; only a resize that cannot be done
        // (values past usize on 32-bit targets) falls back to clamping.
        if self.hist.record(ns).is_err() {
            self.hist.saturating_record(ns);
        }
    }

    /// The value at quantile `q` (0.0 ..= 1.0, so `p(0.99)` is the p99), in
    /// microseconds. 0.0 when empty.
    pub fn p(&self, q: f64) -> f64 {
        ns_to_us(self.hist.value_at_quantile(q.clamp(0.0, 1.0)))
    }

    /// Median, in µs.
    pub fn p50(&self) -> f64 {
        self.p(0.5)
    }

    /// 99th percentile, in µs.
    pub fn p99(&self) -> f64 {
        self.p(0.99)
    }

    /// 99.9th percentile, in µs.
    pub fn p999(&self) -> f64 {
        self.p(0.999)
    }

    /// Largest sample, in µs (to the histogram's precision). 0.0 when empty.
    pub fn max(&self) -> f64 {
        if self.hist.is_empty() {
            0.0
        } else {
            ns_to_us(self.hist.max())
        }
    }

    /// Mean, in µs. 0.0 when empty.
    pub fn mean(&self) -> f64 {
        if self.hist.is_empty() {
            0.0
        } else {
            self.hist.mean() / 1000.0
        }
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// Adds every sample of `other` (e.g. per-shard histograms into one).
    pub fn merge(&mut self, other: &Latency) {
        // Both histograms auto-resize, and `add` only fails when the target
        // cannot grow to the source's range.
        self.hist.add(&other.hist).expect("auto-resizing histograms always merge");
    }

    /// The underlying histogram (nanoseconds), for anything not wrapped here.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.hist
    }
}

fn ns_to_us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// One measured number of one case: a row of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseResult {
    /// What was run, with its parameters: `append_sync/regions=16/entry=4096`.
    pub case: String,
    /// What was measured, with its unit: `p99_us`, `mb_per_s`, ...
    pub metric: String,
    /// The measurement.
    pub value: f64,
    /// The same metric for the baseline or peer, measured in the same run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// `value / baseline`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// The goal, as `<= X`, `>= X`, `< X` or `> X`; checked against `ratio`
    /// when there is a baseline, else against `value`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl CaseResult {
    /// A measurement with no baseline and no target.
    pub fn plain(case: impl Into<String>, metric: impl Into<String>, value: f64) -> Self {
        Self { case: case.into(), metric: metric.into(), value, baseline: None, ratio: None, target: None }
    }

    /// A measurement against `baseline` from the same run; the ratio is
    /// `value / baseline` (absent when the baseline is 0 or not finite).
    pub fn against(
        case: impl Into<String>,
        metric: impl Into<String>,
        value: f64,
        baseline: f64,
        target: Option<&str>,
    ) -> Self {
        let ratio = value / baseline;
        Self {
            case: case.into(),
            metric: metric.into(),
            value,
            baseline: Some(baseline),
            ratio: ratio.is_finite().then_some(ratio),
            target: target.map(str::to_owned),
        }
    }

    /// Sets the target (`<= X`, `>= X`, `< X`, `> X`).
    #[must_use]
    pub fn with_target(mut self, target: &str) -> Self {
        self.target = Some(target.to_owned());
        self
    }

    /// Whether the target is met: checked against the ratio if there is a
    /// baseline, else against the value. `None` when there is no target, it
    /// does not parse, or there is a baseline but no ratio.
    pub fn target_met(&self) -> Option<bool> {
        let (op, bound) = parse_target(self.target.as_deref()?)?;
        let x = if self.baseline.is_some() { self.ratio? } else { self.value };
        Some(match op {
            Op::Le => x <= bound,
            Op::Ge => x >= bound,
            Op::Lt => x < bound,
            Op::Gt => x > bound,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Le,
    Ge,
    Lt,
    Gt,
}

fn parse_target(t: &str) -> Option<(Op, f64)> {
    let t = t.trim();
    // Two-character operators first, so `<=` is not read as `<` and `=1.2`.
    let (op, rest) = if let Some(r) = t.strip_prefix("<=") {
        (Op::Le, r)
    } else if let Some(r) = t.strip_prefix(">=") {
        (Op::Ge, r)
    } else if let Some(r) = t.strip_prefix('<') {
        (Op::Lt, r)
    } else if let Some(r) = t.strip_prefix('>') {
        (Op::Gt, r)
    } else {
        return None;
    };
    let bound: f64 = rest.trim().parse().ok()?;
    bound.is_finite().then_some((op, bound))
}

/// The machine a report was measured on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Machine {
    /// CPUs this process may run on.
    pub cores: usize,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
    /// The first `model name` of `/proc/cpuinfo`.
    pub cpu_model: String,
    /// File-system type of the data directory (`ext4`, `xfs`, `tmpfs`, ...).
    pub fs: String,
}

const UNKNOWN: &str = "unknown";

impl Machine {
    /// Describes this machine, and the file system of `dir` if given. Every
    /// field is best-effort: what cannot be read is `"unknown"` (or 0 cores).
    pub fn detect(dir: Option<&Path>) -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| UNKNOWN.to_owned());
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| cpu_model(&s))
            .unwrap_or_else(|| UNKNOWN.to_owned());
        let fs = dir.and_then(fs_type).unwrap_or_else(|| UNKNOWN.to_owned());
        Self { cores, kernel, cpu_model, fs }
    }
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_owned())
    })
}

/// The file-system type `dir` lives on: the longest mount point of
/// `/proc/mounts` that contains it, else `stat -f -c %T`.
pub fn fs_type(dir: &Path) -> Option<String> {
    let dir = std::fs::canonicalize(dir).ok()?;
    let from_mounts = std::fs::read_to_string("/proc/mounts").ok().and_then(|mounts| {
        mounts
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let _device = fields.next()?;
                let mount_point = unescape_mount(fields.next()?);
                let fs = fields.next()?;
                dir.starts_with(&mount_point).then(|| (mount_point.as_os_str().len(), fs.to_owned()))
            })
            // The last of equally long mount points is the one on top.
            .max_by_key(|(len, _)| *len)
            .map(|(_, fs)| fs)
    });
    from_mounts.or_else(|| {
        let out = std::process::Command::new("stat").args(["-f", "-c", "%T"]).arg(&dir).output().ok()?;
        let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (out.status.success() && !s.is_empty()).then_some(s)
    })
}

/// `/proc/mounts` writes space, tab, newline and backslash as `\ooo`.
fn unescape_mount(s: &str) -> PathBuf {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    PathBuf::from(out)
}

/// The outcome of one suite run: what `ekv-bench <suite>` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The suite's name (the subcommand).
    pub suite: String,
    /// Where it ran.
    pub machine: Machine,
    /// One row per (case, metric).
    pub results: Vec<CaseResult>,
    /// Free-form remarks: run length, skipped cases, caveats.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Report {
    /// An empty report for `suite`.
    pub fn new(suite: impl Into<String>, machine: Machine) -> Self {
        Self { suite: suite.into(), machine, results: Vec::new(), notes: Vec::new() }
    }

    /// Adds a row.
    pub fn push(&mut self, result: CaseResult) {
        self.results.push(result);
    }

    /// Adds a note.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// The report as one JSON object on one line.
    pub fn to_json(&self) -> String {
        // Non-finite floats serialize as null; nothing here can fail.
        serde_json::to_string(self).expect("a report always serializes")
    }

    /// The report as a human-readable table followed by the notes.
    pub fn to_table(&self) -> String {
        let m = &self.machine;
        let mut out = format!(
            "suite {} on {} cores, {}, kernel {}, fs {}\n\n",
            self.suite, m.cores, m.cpu_model, m.kernel, m.fs
        );
        let header = ["case", "metric", "value", "baseline", "ratio", "target", "met?"].map(str::to_owned);
        let rows: Vec<[String; 7]> = self
            .results
            .iter()
            .map(|r| {
                let met = match (&r.target, r.target_met()) {
                    (None, _) => "",
                    (Some(_), Some(true)) => "yes",
                    (Some(_), Some(false)) => "NO",
                    (Some(_), None) => "?",
                };
                [
                    r.case.clone(),
                    r.metric.clone(),
                    fmt_num(r.value),
                    r.baseline.map(fmt_num).unwrap_or_default(),
                    r.ratio.map(|x| format!("{x:.3}")).unwrap_or_default(),
                    r.target.clone().unwrap_or_default(),
                    met.to_owned(),
                ]
            })
            .collect();
        let mut widths = header.clone().map(|h| h.len());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                // Text columns left-aligned, numbers right-aligned.
                if matches!(i, 2..=4) {
                    let _ = write!(line, "{cell:>w$}  ");
                } else {
                    let _ = write!(line, "{cell:<w$}  ");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        if !self.notes.is_empty() {
            out.push_str("\nnotes:\n");
            for n in &self.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
        out
    }

    /// Prints the report to stdout: one JSON object if `json`, else the table.
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", self.to_json());
        } else {
            print!("{}", self.to_table());
        }
    }
}

fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.4}")
    }
}

/// Runs `f`'s future to completion on a fresh glommio executor on its own
/// thread, not pinned to any CPU and without spinning before parking, and
/// returns its output.
///
/// Non-root processes get 2 MiB of io_uring-registered I/O memory instead of
/// glommio's default 10 MiB, which is more than the 8 MiB RLIMIT_MEMLOCK they
/// cannot raise.
///
/// # Panics
/// If the executor cannot be started; a panic inside `f` is resumed here.
pub fn run_on_executor<F, Fut, T>(name: &str, f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let mut builder = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).name(name);
    if !ekv_io::running_as_root() {
        builder = builder.io_memory(2 << 20);
    }
    let handle = builder.spawn(f).unwrap_or_else(|e| panic!("starting glommio executor {name}: {e}"));
    match handle.join() {
        Ok(v) => v,
        Err(glommio::GlommioError::BuilderError(glommio::BuilderErrorKind::ThreadPanic(payload))) => {
            std::panic::resume_unwind(payload)
        }
        Err(e) => panic!("glommio executor {name}: {e}"),
    }
}

/// A benchmark's data directory, removed (with everything in it) on drop.
#[derive(Debug)]
pub struct DataDir {
    dir: tempfile::TempDir,
}

impl DataDir {
    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Creates the data directory for a run: a fresh `ekv-bench-*` directory
/// inside `arg` (the `--dir` option) if given, else inside
/// `<cargo target dir>/bench-data` (`./target/bench-data` when the binary
/// does not live under a `target` directory). Never `/tmp` by default:
/// direct I/O needs a real disk file system, and `/tmp` may be tmpfs. Only
/// the fresh directory is removed at the end, never `arg` itself.
///
/// Warns on stderr when the directory is on tmpfs.
///
/// # Errors
/// The parent cannot be created or the directory cannot be made in it.
pub fn data_dir(arg: Option<PathBuf>) -> io::Result<DataDir> {
    let parent = arg.unwrap_or_else(default_data_parent);
    std::fs::create_dir_all(&parent)?;
    let dir = tempfile::Builder::new().prefix("ekv-bench-").tempdir_in(&parent)?;
    if fs_type(dir.path()).as_deref() == Some("tmpfs") {
        eprintln!(
            "warning: {} is on tmpfs; direct I/O timings there say nothing about a disk",
            dir.path().display()
        );
    }
    Ok(DataDir { dir })
}

fn default_data_parent() -> PathBuf {
    let target = std::env::current_exe().ok().and_then(|exe| {
        exe.ancestors().find(|a| a.file_name().is_some_and(|n| n == "target")).map(Path::to_path_buf)
    });
    target.unwrap_or_else(|| PathBuf::from("target")).join("bench-data")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut l = Latency::new();
        // 1 µs, 2 µs, ..., 1000 µs.
        for us in 1..=1000u64 {
            l.record(Duration::from_micros(us));
        }
        assert_eq!(l.count(), 1000);
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 1e-9;
        assert!(close(l.p50(), 500.0), "p50 {}", l.p50());
        assert!(close(l.p99(), 990.0), "p99 {}", l.p99());
        assert!(close(l.p999(), 999.0), "p999 {}", l.p999());
        assert!(close(l.max(), 1000.0), "max {}", l.max());
        assert!(close(l.mean(), 500.5), "mean {}", l.mean());
        assert!(close(l.p(0.0), 1.0), "p0 {}", l.p(0.0));
    }

    #[test]
    fn empty_latency_is_zero() {
        let l = Latency::new();
        assert_eq!(l.count(), 0);
        assert_eq!(l.p99(), 0.0);
        assert_eq!(l.max(), 0.0);
        assert_eq!(l.mean(), 0.0);
    }

    #[test]
    fn merge_adds_samples_and_grows() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        for _ in 0..90 {
            a.record(Duration::from_micros(10));
        }
        for _ in 0..10 {
            b.record(Duration::from_secs(2));
        }
        a.merge(&b);
        assert_eq!(a.count(), 100);
        assert!((a.p50() - 10.0).abs() < 0.01);
        assert!((a.max() - 2_000_000.0).abs() <= 2_000.0, "max {}", a.max());
    }

    #[test]
    fn ratio_is_value_over_baseline() {
        let r = CaseResult::against("c", "p99_us", 412.0, 388.0, Some("<= 1.2"));
        assert_eq!(r.baseline, Some(388.0));
        assert!((r.ratio.unwrap() - 412.0 / 388.0).abs() < 1e-12);
        assert_eq!(r.target.as_deref(), Some("<= 1.2"));
        assert_eq!(r.target_met(), Some(true));

        let zero = CaseResult::against("c", "p99_us", 1.0, 0.0, None);
        assert_eq!(zero.ratio, None);

        let p = CaseResult::plain("c", "ops_per_s", 5.0);
        assert_eq!((p.baseline, p.ratio, p.target), (None, None, None));
    }

    #[test]
    fn target_met_for_every_operator() {
        let ratio = |ratio: f64, t: &str| CaseResult::against("c", "m", ratio, 1.0, Some(t)).target_met();
        assert_eq!(ratio(1.2, "<= 1.2"), Some(true));
        assert_eq!(ratio(1.21, "<= 1.2"), Some(false));
        assert_eq!(ratio(1.2, "< 1.2"), Some(false));
        assert_eq!(ratio(1.19, "<1.2"), Some(true));
        assert_eq!(ratio(0.9, ">= 0.9"), Some(true));
        assert_eq!(ratio(0.89, ">=0.9"), Some(false));
        assert_eq!(ratio(0.9, "> 0.9"), Some(false));
        assert_eq!(ratio(0.91, "  >  0.9 "), Some(true));

        // Without a baseline the value is checked.
        let value = |v: f64, t: &str| CaseResult::plain("c", "m", v).with_target(t).target_met();
        assert_eq!(value(100.0, "<= 500"), Some(true));
        assert_eq!(value(600.0, "<= 500"), Some(false));
        assert_eq!(value(3.0, "> 2"), Some(true));

        // No target, an unparsable one, or a baseline without a ratio.
        assert_eq!(CaseResult::plain("c", "m", 1.0).target_met(), None);
        assert_eq!(value(1.0, "== 1"), None);
        assert_eq!(value(1.0, "<= fast"), None);
        assert_eq!(CaseResult::against("c", "m", 1.0, 0.0, Some("<= 2")).target_met(), None);
    }

    fn sample_report() -> Report {
        let machine =
            Machine { cores: 2, kernel: "6.1.0".into(), cpu_model: "Test CPU".into(), fs: "ext4".into() };
        let mut r = Report::new("wal", machine);
        r.push(CaseResult::against(
            "append_sync/regions=16/entry=4096",
            "p99_us",
            412.0,
            388.0,
            Some("<= 1.2"),
        ));
        r.push(CaseResult::plain("append_sync/regions=1/entry=4096", "p50_us", 80.0));
        r
    }

    #[test]
    fn json_shape() {
        let r = sample_report();
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        let obj = v.as_object().unwrap();
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["machine", "results", "suite"], "no notes key when there are none");
        assert_eq!(v["suite"], "wal");
        assert_eq!(v["machine"]["cores"], 2);
        assert_eq!(v["machine"]["kernel"], "6.1.0");
        assert_eq!(v["machine"]["cpu_model"], "Test CPU");
        assert_eq!(v["machine"]["fs"], "ext4");

        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), 2);
        let full = results[0].as_object().unwrap();
        let mut keys: Vec<&str> = full.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["baseline", "case", "metric", "ratio", "target", "value"]);
        assert_eq!(full["case"], "append_sync/regions=16/entry=4096");
        assert_eq!(full["metric"], "p99_us");
        assert_eq!(full["value"], 412.0);
        assert_eq!(full["baseline"], 388.0);
        assert!((full["ratio"].as_f64().unwrap() - 1.0619).abs() < 1e-3);
        assert_eq!(full["target"], "<= 1.2");

        let plain = results[1].as_object().unwrap();
        let mut keys: Vec<&str> = plain.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["case", "metric", "value"]);

        let mut r = r;
        r.note("quick run");
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["notes"], serde_json::json!(["quick run"]));
        assert!(!r.to_json().contains('\n'), "one object on one line");
    }

    #[test]
    fn table_has_columns_and_verdicts() {
        let mut r = sample_report();
        r.push(CaseResult::against("slow", "p99_us", 600.0, 300.0, Some("<= 1.2")));
        r.note("quick run");
        let t = r.to_table();
        let header = t.lines().find(|l| l.starts_with("case")).unwrap();
        for col in ["metric", "value", "baseline", "ratio", "target", "met?"] {
            assert!(header.contains(col), "{header}");
        }
        let row = |case: &str| t.lines().find(|l| l.starts_with(case)).unwrap().to_owned();
        assert!(row("append_sync/regions=16").ends_with("yes"), "{t}");
        assert!(row("slow").ends_with("NO"), "{t}");
        assert!(row("slow").contains("2.000"), "{t}");
        assert!(t.contains("- quick run"), "{t}");
    }

    #[test]
    fn parses_cpu_model_and_mount_escapes() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: X\nmodel name\t: Some CPU @ 2.0GHz\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("Some CPU @ 2.0GHz"));
        assert_eq!(cpu_model("processor : 0\n"), None);
        assert_eq!(unescape_mount(r"/mnt/my\040disk"), PathBuf::from("/mnt/my disk"));
        assert_eq!(unescape_mount(r"/a\b"), PathBuf::from(r"/a\b"));
    }

    #[test]
    fn machine_detect_is_best_effort() {
        let m = Machine::detect(Some(Path::new(".")));
        assert!(m.cores >= 1);
        assert!(!m.kernel.is_empty());
        assert!(!m.fs.is_empty());
        assert_eq!(Machine::detect(None).fs, "unknown");
    }

    #[test]
    fn data_dir_is_removed_on_drop_and_keeps_the_parent() {
        let parent = default_data_parent().join("harness-test");
        let d = data_dir(Some(parent.clone())).unwrap();
        let path = d.path().to_path_buf();
        assert!(path.starts_with(&parent) && path.is_dir());
        std::fs::write(path.join("f"), b"x").unwrap();
        drop(d);
        assert!(!path.exists());
        assert!(parent.is_dir());
        let _ = std::fs::remove_dir(&parent);
    }

    #[test]
    fn executor_returns_value_and_resumes_panics() {
        assert_eq!(run_on_executor("harness-test", || async { 40 + 2 }), 42);
        let caught = std::panic::catch_unwind(|| {
            run_on_executor("harness-test", || async {
                panic!("boom");
            })
        });
        let payload = caught.unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>().copied(), Some("boom"));
    }
}
