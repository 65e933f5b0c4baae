//! [`FileSystem`] over glommio's DMA files (`O_DIRECT` through io_uring).

use std::cell::RefCell;
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use glommio::io::{DmaBuffer, DmaFile, OpenOptions, ReadResult};

use crate::{File, FileSystem, IoBuf, IoError, Result};

thread_local! {
    /// Devices (st_dev) whose polled-I/O probe this thread has settled.
    /// Per thread, because glommio keeps its probe results per thread: every
    /// executor (shard) must settle its own.
    static PROBED_DEVICES: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
}

/// Name of the file [`GlommioFs::new`] reads to settle glommio's probe.
pub const PROBE_FILE: &str = ".ekv-io-probe";

/// The production file system: glommio DMA files. Must be used from inside
/// a glommio executor.
#[derive(Debug, Clone)]
pub struct GlommioFs {
    _priv: (),
}

impl GlommioFs {
    /// Prepares `dir` (creating it) for DMA files and returns the file system.
    ///
    /// glommio 0.9 decides once per block device whether it supports polled
    /// I/O, by reading through the first DMA file opened on that device. If
    /// that file is open for reading and empty, the read "succeeds", the
    /// device is wrongly marked poll-capable, and from then on every DMA read
    /// fails with `EOPNOTSUPP` and file-extending writes take milliseconds.
    /// So before any other DMA file on the device, this opens and reads a
    /// non-empty file of our own there. Call it at start-up, for every
    /// directory ekv will keep files in; it is cheap after the first call.
    ///
    /// # Errors
    /// Creating the directory or the probe file fails, or the probe read
    /// fails (the device cannot do direct I/O).
    pub async fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| IoError::new("create_dir_all", dir, e))?;
        let dev = std::fs::metadata(dir).map_err(|e| IoError::new("stat", dir, e))?.dev();
        if !PROBED_DEVICES.with(|p| p.borrow().contains(&dev)) {
            probe_device(dir).await?;
            PROBED_DEVICES.with(|p| p.borrow_mut().insert(dev));
        }
        Ok(Self { _priv: () })
    }
}

async fn probe_device(dir: &Path) -> Result<()> {
    let path = dir.join(PROBE_FILE);
    // Written with plain buffered I/O: no DMA file may be opened before the probe.
    let block = vec![0xa5u8; 4096];
    let need_write = std::fs::metadata(&path).map(|m| m.len() < block.len() as u64).unwrap_or(true);
    if need_write {
        std::fs::write(&path, &block).map_err(|e| IoError::new("write", &path, e))?;
        let f = std::fs::File::open(&path).map_err(|e| IoError::new("open", &path, e))?;
        f.sync_all().map_err(|e| IoError::new("fsync", &path, e))?;
    }
    let file = DmaFile::open(&path).await.map_err(|e| IoError::new("open", &path, e.into()))?;
    let read = file.read_at(0, block.len()).await.map_err(|e| IoError::new("read", &path, e.into()))?;
    let _ = file.close().await;
    if read.len() != block.len() {
        return Err(IoError::new(
            "read",
            &path,
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short read of the direct-I/O probe file"),
        ));
    }
    Ok(())
}

/// A DMA file and its path.
#[derive(Debug)]
pub struct GlommioFile {
    file: DmaFile,
    path: PathBuf,
}

impl IoBuf for DmaBuffer {
    fn as_mut_slice(&mut self) -> &mut [u8] {
        self.as_bytes_mut()
    }
    fn as_slice(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl File for GlommioFile {
    type Buf = DmaBuffer;
    type ReadBuf = ReadResult;

    fn path(&self) -> &Path {
        &self.path
    }

    fn alignment(&self) -> u64 {
        self.file.alignment()
    }

    fn alloc_buf(&self, len: usize) -> DmaBuffer {
        // glommio hands out recycled memory; the trait promises zeros.
        let mut buf = self.file.alloc_dma_buffer(len);
        buf.as_bytes_mut().fill(0);
        buf
    }

    async fn write_at(&self, buf: DmaBuffer, pos: u64) -> Result<()> {
        let len = buf.len();
        let n =
            self.file.write_at(buf, pos).await.map_err(|e| IoError::new("write", &self.path, e.into()))?;
        if n != len {
            // Direct I/O writes of aligned buffers complete whole or fail;
            // a short one means the device is full or misbehaving.
            return Err(IoError::new(
                "write",
                &self.path,
                std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("short write: {n} of {len} bytes"),
                ),
            ));
        }
        Ok(())
    }

    async fn read_at(&self, pos: u64, len: usize) -> Result<ReadResult> {
        self.file.read_at(pos, len).await.map_err(|e| IoError::new("read", &self.path, e.into()))
    }

    async fn fdatasync(&self) -> Result<()> {
        self.file.fdatasync().await.map_err(|e| IoError::new("fdatasync", &self.path, e.into()))
    }

    async fn size(&self) -> Result<u64> {
        self.file.file_size().await.map_err(|e| IoError::new("stat", &self.path, e.into()))
    }

    async fn close(self) -> Result<()> {
        self.file.close().await.map_err(|e| IoError::new("close", &self.path, e.into()))
    }
}

impl FileSystem for GlommioFs {
    type File = GlommioFile;

    async fn open(&self, path: &Path) -> Result<GlommioFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .dma_open(path)
            .await
            .map_err(|e| IoError::new("open", path, e.into()))?;
        Ok(GlommioFile { file, path: path.to_path_buf() })
    }

    async fn create(&self, path: &Path) -> Result<GlommioFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(path)
            .await
            .map_err(|e| IoError::new("create", path, e.into()))?;
        Ok(GlommioFile { file, path: path.to_path_buf() })
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        glommio::io::rename(from, to).await.map_err(|e| IoError::new("rename", from, e.into()))
    }

    async fn remove(&self, path: &Path) -> Result<()> {
        glommio::io::remove(path).await.map_err(|e| IoError::new("remove", path, e.into()))
    }

    async fn sync_dir(&self, dir: &Path) -> Result<()> {
        let d =
            glommio::io::Directory::open(dir).await.map_err(|e| IoError::new("open dir", dir, e.into()))?;
        d.sync().await.map_err(|e| IoError::new("fsync dir", dir, e.into()))?;
        d.close().await.map_err(|e| IoError::new("close dir", dir, e.into()))
    }

    async fn create_dir_all(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| IoError::new("create_dir_all", dir, e))
    }

    async fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| IoError::new("read_dir", dir, e))? {
            let entry = entry.map_err(|e| IoError::new("read_dir", dir, e))?;
            let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
            if is_file {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }
}
