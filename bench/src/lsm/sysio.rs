//! What the suite reads from the system to treat every engine alike: bytes
//! written to storage, space used on disk, and the CPU everything runs on.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// Bytes this process (all its threads, and every child it has reaped)
/// caused to be sent to storage: `write_bytes` of `/proc/self/io`.
///
/// Reaped children count because the kernel adds a child's I/O accounting
/// to its parent's when the parent waits for it, so the difference around
/// a `db_bench` child (spawn .. wait) is that child's, measured exactly as
/// the difference around an in-process engine is the engine's. Direct I/O
/// counts when submitted, buffered writes when pages are dirtied.
///
/// # Errors
/// `/proc/self/io` cannot be read or has no `write_bytes` line (a kernel
/// without task I/O accounting).
pub fn write_bytes() -> io::Result<u64> {
    let s = std::fs::read_to_string("/proc/self/io")?;
    parse_io_field(&s, "write_bytes")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no write_bytes in /proc/self/io"))
}

fn parse_io_field(s: &str, field: &str) -> Option<u64> {
    s.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == field).then(|| v.trim().parse().ok())?
    })
}

/// Space the files under `dir` take on disk, as `du` counts it (allocated
/// blocks, not lengths), skipping files for which `skip(name)` is true.
///
/// # Errors
/// A directory or file cannot be listed or stat'ed.
pub fn allocated_bytes(dir: &Path, skip: &dyn Fn(&str) -> bool) -> io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += allocated_bytes(&entry.path(), skip)?;
        } else if !skip(&entry.file_name().to_string_lossy()) {
            total += meta.blocks() * 512;
        }
    }
    Ok(total)
}

/// The highest-numbered CPU this process may run on (the last of
/// `Cpus_allowed_list`), where every engine is pinned: CPU 0 is left to
/// interrupts and the rest of the machine.
pub fn last_allowed_cpu() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
    parse_cpu_list(list.trim()).into_iter().max()
}

fn parse_cpu_list(s: &str) -> Vec<usize> {
    s.split(',')
        .filter_map(|part| match part.split_once('-') {
            Some((a, b)) => Some((a.trim().parse().ok()?..=b.trim().parse().ok()?).collect::<Vec<_>>()),
            None => part.trim().parse().ok().map(|c| vec![c]),
        })
        .flatten()
        .collect()
}

/// The CPU list this process may run on now, as `taskset` takes it.
pub fn allowed_cpu_list() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).map(|s| s.trim().to_owned())
}

/// Sets the CPU affinity of every thread of this process to `cpus` (a
/// `taskset` list such as `1` or `0-3`); threads made later inherit it
/// from the thread that makes them. Done with `taskset -a -p` rather than
/// `sched_setaffinity`, which would need `unsafe`.
///
/// # Errors
/// `taskset` is missing or fails.
pub fn pin_process(cpus: &str) -> io::Result<()> {
    let out =
        Command::new("taskset").args(["-a", "-p", "-c", cpus, &std::process::id().to_string()]).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "taskset -a -p -c {cpus}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Finds `name` in `PATH`.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_io_and_cpu_lists() {
        let io = "rchar: 1\nwchar: 2\nread_bytes: 3\nwrite_bytes: 4096\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_io_field(io, "write_bytes"), Some(4096));
        assert_eq!(parse_io_field(io, "nope"), None);
        assert_eq!(parse_cpu_list("0-1"), vec![0, 1]);
        assert_eq!(parse_cpu_list("0,2-3,7"), vec![0, 2, 3, 7]);
        assert!(write_bytes().is_ok());
        assert!(last_allowed_cpu().is_some());
    }

    #[test]
    fn allocated_bytes_counts_blocks_and_skips() {
        let dir = tempfile::tempdir_in(".").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a"), vec![1u8; 10_000]).unwrap();
        std::fs::write(dir.path().join("LOG"), vec![1u8; 10_000]).unwrap();
        let all = allocated_bytes(dir.path(), &|_| false).unwrap();
        let some = allocated_bytes(dir.path(), &|n| n.starts_with("LOG")).unwrap();
        assert!(all >= 20_000 && some >= 10_000 && some < all, "{all} {some}");
    }
}
