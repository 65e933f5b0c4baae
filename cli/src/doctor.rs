//! `ekv doctor [DIR]`: whether this host can run ekv well, for the data
//! directory DIR. The checks and the output match `scripts/check-host`
//! (see linux-only.md), plus an fdatasync latency probe:
//!
//! ```text
//! ok   <what>
//! warn <what>: <why it matters>
//! MISSING <what>: <what to do>
//! ```
//!
//! Exit code 1 when anything is MISSING.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};

use crate::config::parse_cpu_list;
use crate::error::CliResult;
use crate::CliError;

/// `ekv doctor`.
#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    /// The data directory to check (default: the current directory).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// fdatasync calls in the latency probe.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub syncs: usize,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Fine.
    Ok(String),
    /// Works, but not as well as it could: why.
    Warn(String),
    /// Cannot work: what to do.
    Missing(String, String),
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Check::Ok(w) => write!(f, "ok   {w}"),
            Check::Warn(w) => write!(f, "warn {w}"),
            Check::Missing(w, fix) => write!(f, "MISSING {w}: {fix}"),
        }
    }
}

const CAP_IPC_LOCK: u32 = 14;
const CAP_SYS_ADMIN: u32 = 21;

/// Fields of `/proc/self/status`.
fn proc_status(field: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')).map(|v| v.trim().to_owned()))
}

fn has_cap(bit: u32) -> bool {
    proc_status("CapEff")
        .and_then(|h| u64::from_str_radix(&h, 16).ok())
        .is_some_and(|caps| caps >> bit & 1 == 1)
}

/// `major.minor` of a kernel release string.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(['.', '-']);
    let major = it.next()?.parse().ok()?;
    let minor: String = it.next()?.chars().take_while(char::is_ascii_digit).collect();
    Some((major, minor.parse().ok()?))
}

fn kernel() -> Check {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    match kernel_version(release) {
        Some(v) if v >= (5, 8) => Check::Ok(format!("kernel {release} (glommio 0.9 needs 5.8 or newer)")),
        Some(_) => Check::Missing(
            format!("kernel {release}"),
            "glommio 0.9 needs io_uring from Linux 5.8 or newer; upgrade the kernel".into(),
        ),
        None => Check::Warn(format!(
            "kernel {release:?}: cannot parse the version; glommio 0.9 needs 5.8 or newer"
        )),
    }
}

fn io_uring_sysctl() -> Check {
    let Ok(v) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") else {
        return Check::Ok("kernel.io_uring_disabled absent (kernel before 6.6: no such switch)".into());
    };
    match v.trim() {
        "0" => Check::Ok("kernel.io_uring_disabled = 0".into()),
        "1" if has_cap(CAP_SYS_ADMIN) => Check::Warn(
            "kernel.io_uring_disabled = 1: io_uring is limited to CAP_SYS_ADMIN and kernel.io_uring_group; this process qualifies, others may not".into(),
        ),
        "1" => Check::Warn(
            "kernel.io_uring_disabled = 1: io_uring is limited to CAP_SYS_ADMIN and kernel.io_uring_group; see the io_uring line below".into(),
        ),
        d => Check::Missing(
            format!("kernel.io_uring_disabled = {d}"),
            "io_uring is switched off; run 'sysctl -w kernel.io_uring_disabled=0' as root (and persist it in /etc/sysctl.d)".into(),
        ),
    }
}

/// Starts a glommio executor (io_uring rings, registered buffers) and
/// runs one task on it.
fn start_executor(placement: Placement) -> Result<(), String> {
    let handle = LocalExecutorBuilder::new(placement)
        .name("ekv-doctor")
        .io_memory(2 << 20)
        .spawn(|| async {})
        .map_err(|e| e.to_string())?;
    handle.join().map_err(|e| e.to_string())
}

fn io_uring() -> Check {
    match start_executor(Placement::Unbound) {
        Ok(()) => Check::Ok("io_uring works (a glommio executor starts and runs a task)".into()),
        Err(e) => Check::Missing(
            format!("io_uring: a glommio executor does not start: {e}"),
            "ENOSYS means a kernel without io_uring or a seccomp filter (containers: Docker's default profile blocks io_uring; use a profile that allows io_uring_setup/enter/register); EPERM means kernel.io_uring_disabled or a security policy".into(),
        ),
    }
}

/// The soft `Max locked memory` limit in bytes (`None`: unlimited).
pub fn memlock_limit(limits: &str) -> Option<Option<u64>> {
    let line = limits.lines().find(|l| l.starts_with("Max locked memory"))?;
    let soft = line.trim_start_matches("Max locked memory").split_whitespace().next()?;
    if soft == "unlimited" {
        Some(None)
    } else {
        soft.parse().ok().map(Some)
    }
}

fn memlock() -> Check {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    match memlock_limit(&limits) {
        None => Check::Warn("RLIMIT_MEMLOCK: cannot read /proc/self/limits".into()),
        Some(None) => Check::Ok("RLIMIT_MEMLOCK unlimited".into()),
        Some(Some(bytes)) => {
            let kib = bytes / 1024;
            if kib < 512 {
                Check::Missing(
                    format!("RLIMIT_MEMLOCK {kib} KiB"),
                    "glommio refuses to start an executor below 512 KiB, even as root; raise 'memlock' in /etc/security/limits.conf (or LimitMEMLOCK= in the systemd unit)".into(),
                )
            } else if has_cap(CAP_IPC_LOCK) {
                Check::Ok(format!(
                    "RLIMIT_MEMLOCK {kib} KiB, but this process has CAP_IPC_LOCK (root): io_uring does not charge it"
                ))
            } else if kib >= 3 * 10 * 1024 {
                Check::Ok(format!("RLIMIT_MEMLOCK {kib} KiB (enough for one executor with glommio's default 10 MiB io_memory)"))
            } else {
                Check::Warn(format!(
                    "RLIMIT_MEMLOCK {kib} KiB without CAP_IPC_LOCK: io_uring charges about 3 x io_memory per glommio executor to this user, so keep io_memory x executors <= {} MiB (ekv asks for 2 MiB per executor when not root); beyond that glommio runs without registered buffers",
                    kib / 3 / 1024
                ))
            }
        }
    }
}

fn cpus() -> Vec<Check> {
    let usable = std::thread::available_parallelism().map_or(0, usize::from);
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").ok();
    let mut out = vec![match &online {
        Some(list) => Check::Ok(format!(
            "CPUs: {usable} usable (/sys/devices/system/cpu/online = {}); give each store shard its own CPU where you can",
            list.trim()
        )),
        None => Check::Warn(format!(
            "CPUs: {usable} usable, but /sys/devices/system/cpu is not readable: glommio reads the CPU topology from sysfs; mount /sys"
        )),
    }];
    let fix = "executors can run unpinned (several may share a CPU), but pinning needs sched_setaffinity, which this sandbox or policy denies";
    let allowed = proc_status("Cpus_allowed_list").and_then(|l| parse_cpu_list(&l).ok()).unwrap_or_default();
    out.push(match allowed.first() {
        Some(&cpu) => match start_executor(Placement::Fixed(cpu)) {
            Ok(()) => Check::Ok(format!(
                "sched_setaffinity works (an executor pinned to CPU {cpu} starts; allowed CPU list: {})",
                proc_status("Cpus_allowed_list").unwrap_or_default()
            )),
            Err(e) => Check::Warn(format!("pinning an executor to CPU {cpu} fails ({e}): {fix}")),
        },
        None => Check::Warn(format!("sched_getaffinity: cannot read Cpus_allowed_list: {fix}")),
    });
    out
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Device number.
    pub dev: (u32, u32),
    /// Mount point.
    pub point: PathBuf,
    /// Per-mount options.
    pub options: String,
    /// File-system type.
    pub fstype: String,
    /// Source (device).
    pub source: String,
    /// Super-block options.
    pub super_options: String,
}

fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// The mount holding `path` (canonical), from mountinfo text.
pub fn mount_of(mountinfo: &str, path: &Path) -> Option<Mount> {
    let mut best: Option<Mount> = None;
    for line in mountinfo.lines() {
        let (left, right) = line.split_once(" - ")?;
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 6 || r.len() < 3 {
            continue;
        }
        let (maj, min) = l[2].split_once(':')?;
        let m = Mount {
            dev: (maj.parse().ok()?, min.parse().ok()?),
            point: PathBuf::from(unescape_mount(l[4])),
            options: l[5].to_owned(),
            fstype: r[0].to_owned(),
            source: unescape_mount(r[1]),
            super_options: r[2].to_owned(),
        };
        // The longest mount point above `path`; later lines mount over earlier ones.
        if path.starts_with(&m.point)
            && best.as_ref().is_none_or(|b| m.point.as_os_str().len() >= b.point.as_os_str().len())
        {
            best = Some(m);
        }
    }
    best
}

fn fs_type(m: Option<&Mount>, dir: &Path) -> Vec<Check> {
    let Some(m) = m else {
        return vec![Check::Warn(format!(
            "file system of {}: not found in /proc/self/mountinfo",
            dir.display()
        ))];
    };
    let d = dir.display();
    let mut out = vec![match m.fstype.as_str() {
        "ext4" | "ext3" | "ext2" | "xfs" | "btrfs" => Check::Ok(format!("file system of {d}: {} (supports O_DIRECT)", m.fstype)),
        "tmpfs" => Check::Warn(format!("file system of {d}: tmpfs: glommio turns direct I/O off there and uses the page cache; data lives in RAM, fdatasync persists nothing and latencies are not disk latencies (fine for tests, not for a store or benchmark numbers)")),
        "ramfs" => Check::Missing(format!("file system of {d}: ramfs"), "ramfs has no O_DIRECT; put the data directory on ext4 or xfs".into()),
        "overlay" | "overlayfs" => Check::Warn(format!("file system of {d}: overlayfs: O_DIRECT depends on the kernel and the upper file system, and copy-up adds latency; put the data directory on a bind mount or volume (ext4/xfs)")),
        t if t.starts_with("nfs") || t.starts_with("fuse") || t.starts_with("smb") || ["cifs", "9p", "virtiofs"].contains(&t) => Check::Warn(format!("file system of {d}: {t}: a network/FUSE file system; O_DIRECT and fdatasync semantics vary and latencies include the network; use local ext4 or xfs")),
        "zfs" => Check::Warn(format!("file system of {d}: zfs: O_DIRECT is honoured only by OpenZFS 2.3+ (earlier versions silently buffer); ext4 or xfs are what ekv is tested on")),
        t => Check::Warn(format!("file system of {d}: {t}: not one ekv is tested on (ext4, xfs, btrfs); check the O_DIRECT line below")),
    }];
    let opts = format!(",{},{},", m.options, m.super_options);
    if opts.contains(",nobarrier,") || opts.contains(",barrier=0,") {
        out.push(Check::Warn(format!("mount options of {d} include nobarrier: fdatasync does not flush the device's write cache, so acknowledged writes can be lost on power failure")));
    }
    out
}

/// A 4 KiB block aligned for O_DIRECT, inside `buf`.
fn aligned(buf: &mut [u8]) -> &mut [u8] {
    let off = buf.as_ptr().align_offset(4096);
    &mut buf[off..off + 4096]
}

fn o_direct(dir: &Path, probe: &Path) -> Check {
    let d = dir.display();
    let open = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(probe);
    let f = match open {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            return Check::Missing(
                format!("O_DIRECT in {d}"),
                "this file system refuses O_DIRECT; put the data directory on ext4 or xfs".into(),
            )
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            return Check::Missing(
                format!("writing to {d}"),
                format!("{e}; make the data directory writable for this user"),
            )
        }
        Err(e) => {
            return Check::Missing(
                format!("O_DIRECT open in {d} fails: {e}"),
                "put the data directory on a local ext4 or xfs file system".into(),
            )
        }
    };
    let mut buf = vec![0u8; 8192];
    let block = aligned(&mut buf);
    block.fill(0x5a);
    if let Err(e) = f.write_all_at(block, 0) {
        return Check::Missing(
            format!("O_DIRECT write in {d} fails: {e}"),
            "put the data directory on a local ext4 or xfs file system".into(),
        );
    }
    let mut back = vec![0u8; 8192];
    let rb = aligned(&mut back);
    match f.read_exact_at(rb, 0) {
        Ok(()) if rb.iter().all(|b| *b == 0x5a) => {
            Check::Ok(format!("O_DIRECT write (with O_DSYNC) and read of 4 KiB in {d}"))
        }
        Ok(()) => Check::Missing(
            format!("O_DIRECT read in {d} returned other data"),
            "check the file system and device".into(),
        ),
        Err(e) => Check::Missing(
            format!("O_DIRECT read in {d} fails: {e}"),
            "ekv reads its files with O_DIRECT; put the data directory on ext4 or xfs".into(),
        ),
    }
}

/// Percentile `p` (0..=100) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// `n` overwrites of 4 KiB at rotating offsets of a pre-written file, each
/// followed by fdatasync: the WAL's pattern.
fn fdatasync_probe(probe: &Path, n: usize, tmpfs: bool) -> Check {
    let direct = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(probe);
    let (f, how) = match direct {
        Ok(f) => (f, "O_DIRECT"),
        Err(_) => match OpenOptions::new().read(true).write(true).create(true).truncate(true).open(probe) {
            Ok(f) => (f, "buffered"),
            Err(e) => return Check::Warn(format!("fdatasync probe: cannot create {}: {e}", probe.display())),
        },
    };
    let mut buf = vec![0u8; 8192];
    let block = aligned(&mut buf);
    const SLOTS: u64 = 16;
    for i in 0..SLOTS {
        if let Err(e) = f.write_all_at(block, i * 4096) {
            return Check::Warn(format!("fdatasync probe: pre-writing failed: {e}"));
        }
    }
    if let Err(e) = f.sync_all() {
        return Check::Warn(format!("fdatasync probe: sync failed: {e}"));
    }
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        block[0] = i as u8;
        let t = Instant::now();
        let r = f.write_all_at(block, (i as u64 % SLOTS) * 4096).and_then(|()| f.sync_data());
        if let Err(e) = r {
            return Check::Missing(
                format!("fdatasync in {} fails: {e}", probe.display()),
                "the data directory must support fdatasync; use local ext4 or xfs".into(),
            );
        }
        times.push(t.elapsed());
    }
    times.sort();
    let (p50, p99) = (percentile(&times, 50.0), percentile(&times, 99.0));
    let what = format!(
        "fdatasync after a 4 KiB {how} overwrite: p50 {} µs, p99 {} µs ({n} syncs)",
        p50.as_micros(),
        p99.as_micros()
    );
    if tmpfs {
        Check::Warn(format!("{what}: on tmpfs this measures memory, not a disk"))
    } else if p99 > Duration::from_millis(2) || p50 > Duration::from_millis(1) {
        Check::Warn(format!(
            "{what}: a replicated write cannot be faster than one fdatasync; ekv's latency targets assume well under 1 ms (0.2-0.4 ms on its development VMs); use a local SSD/NVMe with power-loss protection"
        ))
    } else {
        Check::Ok(what)
    }
}

fn block_size(m: Option<&Mount>, dir: &Path) -> Check {
    let Some(m) = m else { return Check::Warn("logical block size: no mount found".into()) };
    if m.fstype == "tmpfs" {
        return Check::Ok("logical block size: none (tmpfs has no block device)".into());
    }
    let queue_of = |sys: PathBuf| -> Option<PathBuf> {
        let p = std::fs::canonicalize(sys).ok()?;
        [p.join("queue"), p.join("../queue")]
            .into_iter()
            .find(|q| q.is_dir())
            .and_then(|q| std::fs::canonicalize(q).ok())
    };
    let mut queue = None;
    if m.dev.0 != 0 {
        queue = queue_of(PathBuf::from(format!("/sys/dev/block/{}:{}", m.dev.0, m.dev.1)));
    }
    if queue.is_none() && m.source.starts_with("/dev/") {
        if let Ok(src) = std::fs::canonicalize(&m.source) {
            if let Some(name) = src.file_name() {
                queue = queue_of(Path::new("/sys/class/block").join(name));
            }
        }
    }
    let Some(queue) = queue else {
        return Check::Warn(format!(
            "logical block size: no block device found for {} (device {}:{}, source '{}'); glommio then assumes 512 B",
            dir.display(),
            m.dev.0,
            m.dev.1,
            m.source
        ));
    };
    let read = |f: &str| std::fs::read_to_string(queue.join(f)).map(|s| s.trim().to_owned()).ok();
    let dev = queue
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some(lbs) = read("logical_block_size").and_then(|s| s.parse::<u64>().ok()) else {
        return Check::Warn(format!("logical block size of {dev}: unreadable"));
    };
    let cache = read("write_cache").unwrap_or_else(|| "unknown".into());
    let what = format!("logical block size of {dev}: {lbs} B (O_DIRECT offsets and lengths align to it; write cache: {cache})");
    if m.dev.0 == 0 && lbs > 512 {
        Check::Warn(format!(
            "{what}: glommio 0.9 cannot see the device behind {} (device {}:{}) and aligns to 512 B",
            m.fstype, m.dev.0, m.dev.1
        ))
    } else if lbs == 512 || lbs == 4096 {
        Check::Ok(what)
    } else {
        Check::Warn(format!(
            "{what}: ekv lays files out in 4 KiB blocks; a block size that does not divide 4096 is untested"
        ))
    }
}

/// `ekv doctor`.
pub fn run(args: &DoctorArgs) -> CliResult {
    if !args.dir.is_dir() {
        let d = args.dir.display();
        println!("MISSING data directory {d}: it does not exist; create it (mkdir -p {d}) and run again");
        return Ok(ExitCode::from(1));
    }
    let dir = std::fs::canonicalize(&args.dir)
        .map_err(|e| CliError::failed(format!("{}: {e}", args.dir.display())))?;
    let mut checks = vec![Check::Ok("operating system Linux".into()), kernel(), io_uring_sysctl()];
    print_all(&checks);
    let mut more = vec![io_uring(), memlock()];
    more.extend(cpus());
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mount = mount_of(&mountinfo, &dir);
    more.extend(fs_type(mount.as_ref(), &dir));
    let probe = dir.join(format!(".ekv-doctor.{}", std::process::id()));
    more.push(o_direct(&dir, &probe));
    more.push(block_size(mount.as_ref(), &dir));
    more.push(fdatasync_probe(
        &probe,
        args.syncs.max(1),
        mount.as_ref().is_some_and(|m| m.fstype == "tmpfs"),
    ));
    let _ = std::fs::remove_file(&probe);
    print_all(&more);
    checks.extend(more);
    let missing = checks.iter().filter(|c| matches!(c, Check::Missing(..))).count();
    let warns = checks.iter().filter(|c| matches!(c, Check::Warn(..))).count();
    if missing > 0 {
        eprintln!("doctor: {missing} check(s) MISSING, {warns} warning(s); see linux-only.md");
        Ok(ExitCode::from(1))
    } else {
        eprintln!("doctor: ekv can run here ({warns} warning(s))");
        Ok(ExitCode::SUCCESS)
    }
}

fn print_all(checks: &[Check]) {
    let mut out = std::io::stdout().lock();
    for c in checks {
        let _ = writeln!(out, "{c}");
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_limits_and_mounts() {
        assert_eq!(kernel_version("6.18.0-1-amd64"), Some((6, 18)));
        assert_eq!(kernel_version("5.8.0"), Some((5, 8)));
        assert_eq!(kernel_version("garbage"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax locked memory         8388608              8388608              bytes\n";
        assert_eq!(memlock_limit(limits), Some(Some(8 << 20)));
        assert_eq!(
            memlock_limit("Max locked memory         unlimited            unlimited            bytes"),
            Some(None)
        );
        let info = "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro\n\
                    30 22 0:25 / /tmp rw,nosuid shared:5 - tmpfs tmpfs rw,size=100k\n\
                    31 22 254:2 / /data\\040disk rw,relatime - xfs /dev/vdb rw,nobarrier\n";
        let root = mount_of(info, Path::new("/work/x")).unwrap();
        assert_eq!((root.fstype.as_str(), root.dev), ("ext4", (254, 1)));
        assert_eq!(mount_of(info, Path::new("/tmp/a")).unwrap().fstype, "tmpfs");
        assert_eq!(mount_of(info, Path::new("/tmpx")).unwrap().fstype, "ext4", "a prefix is not a parent");
        let data = mount_of(info, Path::new("/data disk/ekv")).unwrap();
        assert_eq!(data.fstype, "xfs");
        let checks = fs_type(Some(&data), Path::new("/data disk/ekv"));
        assert!(matches!(&checks[1], Check::Warn(w) if w.contains("nobarrier")));
    }

    #[test]
    fn percentiles_of_sorted_samples() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_micros(51));
        assert_eq!(percentile(&v, 99.0), Duration::from_micros(99));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }

    #[test]
    fn the_probe_measures_syncs_in_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let probe = dir.path().join("probe");
        let c = fdatasync_probe(&probe, 5, false);
        assert!(matches!(&c, Check::Ok(w) | Check::Warn(w) if w.contains("5 syncs")), "{c}");
    }
}
