//! An in-memory [`FileSystem`] that remembers what was synced, for crash tests.
//!
//! Every file keeps two images: what readers see now, and what a power cut
//! would leave. [`File::fdatasync`] moves the first into the second;
//! [`FileSystem::sync_dir`] does the same for names. [`MemFs::crash`] throws
//! away the difference, or keeps a random part of it ([`CrashMode::Tear`]).
//!
//! Faults: [`MemFs::inject`] makes writes or syncs of chosen files fail
//! with a real errno ([`EIO`], [`ENOSPC`], ...), a number of times or until
//! [`MemFs::clear_faults`]. A failed write changes nothing; a failed sync
//! leaves the file's unsynced writes unsynced (a crash still loses them).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{File, FileSystem, IoBuf, IoError, Result};

#[derive(Debug, Default)]
struct Inode {
    /// What readers see.
    data: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
    /// Writes since the last sync, in order: what a torn crash may keep part of.
    pending: Vec<(u64, Vec<u8>)>,
}

fn write_into(dst: &mut Vec<u8>, pos: u64, src: &[u8]) {
    let end = pos as usize + src.len();
    if dst.len() < end {
        dst.resize(end, 0);
    }
    dst[pos as usize..end].copy_from_slice(src);
}

#[derive(Debug, Default)]
struct State {
    /// Names as they are now.
    names: BTreeMap<PathBuf, Rc<RefCell<Inode>>>,
    /// Names as a crash would leave them.
    durable_names: BTreeMap<PathBuf, Rc<RefCell<Inode>>>,
    /// Armed faults, matched in order.
    faults: Vec<Fault>,
    /// Errors returned by faults so far.
    injected: u64,
    /// Count of successful fdatasync calls.
    syncs: u64,
}

/// Linux's errno for an I/O error.
pub const EIO: i32 = 5;
/// Linux's errno for a full device.
pub const ENOSPC: i32 = 28;

/// The file operation a [`Fault`] makes fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOp {
    /// [`File::write_at`].
    Write,
    /// [`File::fdatasync`].
    Sync,
}

/// An error [`MemFs`] returns instead of doing an operation.
#[derive(Debug, Clone)]
pub struct Fault {
    /// The operation that fails.
    pub op: FaultOp,
    /// The OS error number returned ([`EIO`], [`ENOSPC`], ...).
    pub errno: i32,
    /// Only files whose path contains this string (every file if `None`).
    pub path_contains: Option<String>,
    /// How many times it fires; `None`: until [`MemFs::clear_faults`].
    pub times: Option<u32>,
}

impl Fault {
    /// `op` fails with `errno` on every file, until cleared.
    pub fn new(op: FaultOp, errno: i32) -> Self {
        Self { op, errno, path_contains: None, times: None }
    }

    /// Only on files whose path contains `part`.
    pub fn on_path(mut self, part: impl Into<String>) -> Self {
        self.path_contains = Some(part.into());
        self
    }

    /// Only the next `n` matching operations.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }
}

/// What [`MemFs::crash`] keeps of the writes that were not synced.
#[derive(Debug, Clone, Copy)]
pub enum CrashMode {
    /// Nothing: every file is as of its last sync.
    DropUnsynced,
    /// For each file, a random prefix of its unsynced writes, the last one
    /// cut at a random byte (chosen from the seed).
    Tear {
        /// Seed for the cut points.
        seed: u64,
    },
}

/// The in-memory file system. Clones share the same files.
#[derive(Debug, Clone)]
pub struct MemFs {
    state: Rc<RefCell<State>>,
    alignment: u64,
}

impl Default for MemFs {
    fn default() -> Self {
        Self::new(512)
    }
}

impl MemFs {
    /// An empty file system whose files demand `alignment`-aligned writes.
    pub fn new(alignment: u64) -> Self {
        Self { state: Rc::default(), alignment }
    }

    /// Simulates a power cut: unsynced data and unsynced names are lost
    /// (or, with [`CrashMode::Tear`], partly kept). Handles opened before the
    /// crash must not be used after it.
    pub fn crash(&self, mode: CrashMode) {
        let mut st = self.state.borrow_mut();
        let mut rng = match mode {
            CrashMode::Tear { seed } => Some(ChaCha8Rng::seed_from_u64(seed)),
            CrashMode::DropUnsynced => None,
        };
        let mut all: Vec<Rc<RefCell<Inode>>> = st.names.values().cloned().collect();
        all.extend(st.durable_names.values().cloned());
        for inode in all {
            let mut ino = inode.borrow_mut();
            let mut image = ino.durable.clone();
            let pending = std::mem::take(&mut ino.pending);
            if let Some(rng) = rng.as_mut() {
                if !pending.is_empty() {
                    let keep = rng.gen_range(0..=pending.len());
                    for (i, (pos, bytes)) in pending.iter().enumerate().take(keep + 1) {
                        if i < keep {
                            write_into(&mut image, *pos, bytes);
                        } else if i < pending.len() {
                            let cut = rng.gen_range(0..=bytes.len());
                            write_into(&mut image, *pos, &bytes[..cut]);
                        }
                    }
                }
            }
            ino.data = image.clone();
            ino.durable = image;
        }
        st.names = st.durable_names.clone();
    }

    /// An independent copy of every file and name (both images), so a test
    /// can damage one copy many ways from the same starting point.
    pub fn snapshot(&self) -> MemFs {
        let st = self.state.borrow();
        let mut copies: Vec<(*const RefCell<Inode>, Rc<RefCell<Inode>>)> = Vec::new();
        let mut copy = |inode: &Rc<RefCell<Inode>>| -> Rc<RefCell<Inode>> {
            if let Some((_, c)) = copies.iter().find(|(p, _)| std::ptr::eq(*p, Rc::as_ptr(inode))) {
                return c.clone();
            }
            let i = inode.borrow();
            let c = Rc::new(RefCell::new(Inode {
                data: i.data.clone(),
                durable: i.durable.clone(),
                pending: i.pending.clone(),
            }));
            copies.push((Rc::as_ptr(inode), c.clone()));
            c
        };
        let names = st.names.iter().map(|(p, i)| (p.clone(), copy(i))).collect();
        let durable_names = st.durable_names.iter().map(|(p, i)| (p.clone(), copy(i))).collect();
        MemFs {
            state: Rc::new(RefCell::new(State { names, durable_names, ..State::default() })),
            alignment: self.alignment,
        }
    }

    /// Makes the next `n` fdatasync calls fail with EIO (and not sync),
    /// replacing what an earlier call asked for.
    pub fn fail_next_syncs(&self, n: u32) {
        let counted_eio = |f: &Fault| {
            f.op == FaultOp::Sync && f.errno == EIO && f.path_contains.is_none() && f.times.is_some()
        };
        self.state.borrow_mut().faults.retain(|f| !counted_eio(f));
        self.inject(Fault::new(FaultOp::Sync, EIO).times(n));
    }

    /// Arms `fault`: matching operations fail with its errno and do nothing.
    /// A fault for zero operations is no fault.
    pub fn inject(&self, fault: Fault) {
        if fault.times != Some(0) {
            self.state.borrow_mut().faults.push(fault);
        }
    }

    /// Disarms every fault (a full disk was given room again, say).
    pub fn clear_faults(&self) {
        self.state.borrow_mut().faults.clear();
    }

    /// How many operations failed by an injected fault so far.
    pub fn injected_count(&self) -> u64 {
        self.state.borrow().injected
    }

    /// The injected error for `op` on `path`, if a fault is armed for it.
    fn take_fault(&self, op: FaultOp, path: &Path) -> Option<IoError> {
        let mut st = self.state.borrow_mut();
        let text = path.to_string_lossy();
        let i = st
            .faults
            .iter()
            .position(|f| f.op == op && f.path_contains.as_deref().is_none_or(|p| text.contains(p)))?;
        let f = &mut st.faults[i];
        let errno = f.errno;
        if let Some(n) = f.times.as_mut() {
            *n -= 1;
            if *n == 0 {
                st.faults.remove(i);
            }
        }
        st.injected += 1;
        let name = match op {
            FaultOp::Write => "write",
            FaultOp::Sync => "fdatasync",
        };
        Some(IoError::new(name, path, std::io::Error::from_raw_os_error(errno)))
    }

    /// Number of successful fdatasync calls so far.
    pub fn sync_count(&self) -> u64 {
        self.state.borrow().syncs
    }

    /// The current bytes of a file, if it exists.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        self.state.borrow().names.get(path).map(|i| i.borrow().data.clone())
    }

    /// Overwrites bytes of a file as if the disk itself changed them (bit rot,
    /// a torn sector): both images change. Returns false if there is no such file.
    pub fn overwrite_durable(&self, path: &Path, pos: u64, bytes: &[u8]) -> bool {
        let st = self.state.borrow();
        let Some(inode) = st.names.get(path) else { return false };
        let mut ino = inode.borrow_mut();
        write_into(&mut ino.data, pos, bytes);
        write_into(&mut ino.durable, pos, bytes);
        true
    }

    /// Paths of all files that exist now.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.state.borrow().names.keys().cloned().collect()
    }

    fn err(op: &'static str, path: &Path, kind: ErrorKind, msg: &str) -> IoError {
        IoError::new(op, path, std::io::Error::new(kind, msg.to_owned()))
    }
}

/// Returns `Pending` once, as a real device would: concurrent tasks get to
/// run while a write or sync is "in flight", so group commit is exercised.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// An open in-memory file.
#[derive(Debug)]
pub struct MemFile {
    inode: Rc<RefCell<Inode>>,
    path: PathBuf,
    alignment: u64,
    fs: MemFs,
}

/// A plain vector serves as the in-memory write buffer.
impl IoBuf for Vec<u8> {
    fn as_mut_slice(&mut self) -> &mut [u8] {
        self
    }
    fn as_slice(&self) -> &[u8] {
        self
    }
}

impl File for MemFile {
    type Buf = Vec<u8>;
    type ReadBuf = Vec<u8>;

    fn path(&self) -> &Path {
        &self.path
    }

    fn alignment(&self) -> u64 {
        self.alignment
    }

    fn alloc_buf(&self, len: usize) -> Vec<u8> {
        vec![0; len]
    }

    async fn write_at(&self, buf: Vec<u8>, pos: u64) -> Result<()> {
        yield_once().await;
        if pos % self.alignment != 0 || buf.len() as u64 % self.alignment != 0 {
            return Err(MemFs::err("write", &self.path, ErrorKind::InvalidInput, "unaligned direct write"));
        }
        if let Some(e) = self.fs.take_fault(FaultOp::Write, &self.path) {
            return Err(e);
        }
        let mut ino = self.inode.borrow_mut();
        write_into(&mut ino.data, pos, &buf);
        ino.pending.push((pos, buf));
        Ok(())
    }

    async fn read_at(&self, pos: u64, len: usize) -> Result<Vec<u8>> {
        let ino = self.inode.borrow();
        let start = (pos as usize).min(ino.data.len());
        let end = (start + len).min(ino.data.len());
        Ok(ino.data[start..end].to_vec())
    }

    async fn fdatasync(&self) -> Result<()> {
        yield_once().await;
        if let Some(e) = self.fs.take_fault(FaultOp::Sync, &self.path) {
            return Err(e);
        }
        self.fs.state.borrow_mut().syncs += 1;
        let mut ino = self.inode.borrow_mut();
        let pending = std::mem::take(&mut ino.pending);
        for (pos, bytes) in pending {
            write_into(&mut ino.durable, pos, &bytes);
        }
        Ok(())
    }

    async fn size(&self) -> Result<u64> {
        Ok(self.inode.borrow().data.len() as u64)
    }

    async fn close(self) -> Result<()> {
        Ok(())
    }
}

impl FileSystem for MemFs {
    type File = MemFile;

    async fn open(&self, path: &Path) -> Result<MemFile> {
        let st = self.state.borrow();
        let inode = st
            .names
            .get(path)
            .cloned()
            .ok_or_else(|| Self::err("open", path, ErrorKind::NotFound, "no such file"))?;
        Ok(MemFile { inode, path: path.to_path_buf(), alignment: self.alignment, fs: self.clone() })
    }

    async fn create(&self, path: &Path) -> Result<MemFile> {
        let inode = Rc::new(RefCell::new(Inode::default()));
        self.state.borrow_mut().names.insert(path.to_path_buf(), inode.clone());
        Ok(MemFile { inode, path: path.to_path_buf(), alignment: self.alignment, fs: self.clone() })
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let mut st = self.state.borrow_mut();
        let inode = st
            .names
            .remove(from)
            .ok_or_else(|| Self::err("rename", from, ErrorKind::NotFound, "no such file"))?;
        st.names.insert(to.to_path_buf(), inode);
        Ok(())
    }

    async fn remove(&self, path: &Path) -> Result<()> {
        let mut st = self.state.borrow_mut();
        st.names
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| Self::err("remove", path, ErrorKind::NotFound, "no such file"))
    }

    async fn sync_dir(&self, dir: &Path) -> Result<()> {
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        st.durable_names.retain(|p, _| p.parent() != Some(dir));
        for (p, inode) in &st.names {
            if p.parent() == Some(dir) {
                st.durable_names.insert(p.clone(), inode.clone());
            }
        }
        Ok(())
    }

    async fn create_dir_all(&self, _dir: &Path) -> Result<()> {
        Ok(())
    }

    async fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let st = self.state.borrow();
        Ok(st
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    #[test]
    fn crash_drops_unsynced_data_and_names() {
        block_on(async {
            let fs = MemFs::new(512);
            let dir = Path::new("/d");
            let a = fs.create(&dir.join("a")).await.unwrap();
            a.write_at(vec![1; 512], 0).await.unwrap();
            a.fdatasync().await.unwrap();
            fs.sync_dir(dir).await.unwrap();
            a.write_at(vec![2; 512], 512).await.unwrap();
            let b = fs.create(&dir.join("b")).await.unwrap();
            b.write_at(vec![3; 512], 0).await.unwrap();
            b.fdatasync().await.unwrap();
            fs.crash(CrashMode::DropUnsynced);
            assert_eq!(fs.read_file(&dir.join("a")).unwrap(), vec![1; 512]);
            assert!(fs.read_file(&dir.join("b")).is_none(), "name never synced");
        });
    }

    #[test]
    fn tear_keeps_a_prefix_of_unsynced_writes() {
        block_on(async {
            for seed in 0..50 {
                let fs = MemFs::new(512);
                let dir = Path::new("/d");
                let a = fs.create(&dir.join("a")).await.unwrap();
                fs.sync_dir(dir).await.unwrap();
                for i in 0..4u8 {
                    a.write_at(vec![i + 1; 512], u64::from(i) * 512).await.unwrap();
                }
                fs.crash(CrashMode::Tear { seed });
                let img = fs.read_file(&dir.join("a")).unwrap();
                // Whatever survived is a prefix of the writes in order.
                for (i, b) in img.iter().enumerate() {
                    assert_eq!(*b, (i / 512) as u8 + 1, "seed {seed} byte {i}");
                }
            }
        });
    }

    #[test]
    fn injected_sync_failure_keeps_data_unsynced() {
        block_on(async {
            let fs = MemFs::new(512);
            let a = fs.create(Path::new("/a")).await.unwrap();
            fs.sync_dir(Path::new("/")).await.unwrap();
            a.write_at(vec![9; 512], 0).await.unwrap();
            fs.fail_next_syncs(1);
            assert!(a.fdatasync().await.is_err());
            fs.crash(CrashMode::DropUnsynced);
            assert_eq!(fs.read_file(Path::new("/a")).unwrap(), Vec::<u8>::new());
        });
    }

    #[test]
    fn injected_faults_name_file_and_errno_and_match_by_path_and_count() {
        block_on(async {
            let fs = MemFs::new(512);
            let wal = fs.create(Path::new("/s/wal/1.log")).await.unwrap();
            let sst = fs.create(Path::new("/s/lsm/7.sst")).await.unwrap();
            fs.inject(Fault::new(FaultOp::Write, ENOSPC).on_path("/lsm/").times(2));
            wal.write_at(vec![1; 512], 0).await.unwrap();
            for _ in 0..2 {
                let e = sst.write_at(vec![1; 512], 0).await.unwrap_err();
                assert_eq!(e.raw_os_error(), Some(ENOSPC));
                let text = e.to_string();
                assert!(text.contains("/s/lsm/7.sst") && text.contains("os error 28"), "{text}");
            }
            assert_eq!(
                fs.read_file(Path::new("/s/lsm/7.sst")).unwrap(),
                Vec::<u8>::new(),
                "failed write wrote"
            );
            sst.write_at(vec![2; 512], 0).await.unwrap();
            fs.inject(Fault::new(FaultOp::Sync, EIO));
            for _ in 0..3 {
                assert_eq!(wal.fdatasync().await.unwrap_err().raw_os_error(), Some(EIO));
            }
            assert_eq!(fs.injected_count(), 5);
            fs.clear_faults();
            wal.fdatasync().await.unwrap();
        });
    }

    #[test]
    fn unaligned_writes_are_refused() {
        block_on(async {
            let fs = MemFs::new(512);
            let a = fs.create(Path::new("/a")).await.unwrap();
            assert!(a.write_at(vec![0; 100], 0).await.is_err());
            assert!(a.write_at(vec![0; 512], 100).await.is_err());
        });
    }
}
