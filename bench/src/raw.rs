//! The raw-disk baseline: what overwriting an already-written file and
//! syncing it costs on this machine, with nothing of ekv in the way. Suites
//! measure their cases against it in the same run.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use ekv_io::{File, FileSystem, GlommioFile, GlommioFs, IoBuf, IoError};

/// Size of each write that fills the file in [`RawFile::prepare`].
const FILL_CHUNK: u64 = 1 << 20;

/// A fully written, synced file that is overwritten in place, sequentially,
/// wrapping at its end: the best case for a log's sync latency, since no
/// write extends the file and so none has metadata to sync.
#[derive(Debug)]
pub struct RawFile {
    file: GlommioFile,
    size: u64,
    pos: u64,
}

impl RawFile {
    /// Creates (truncating) `path`, fills `size_bytes` of it (rounded up to
    /// the file's alignment) with non-zero bytes in 1 MiB direct writes, and
    /// fdatasyncs it. `fs` must have been made for `path`'s directory
    /// ([`GlommioFs::new`]).
    ///
    /// # Errors
    /// Any I/O failure, or a zero size.
    pub async fn prepare(fs: &GlommioFs, path: &Path, size_bytes: u64) -> Result<RawFile, IoError> {
        if size_bytes == 0 {
            return Err(invalid(path, "a raw file needs a non-zero size"));
        }
        let file = fs.create(path).await?;
        let size = size_bytes.next_multiple_of(file.alignment());
        let mut pos = 0;
        while pos < size {
            let len = FILL_CHUNK.min(size - pos);
            let mut buf = file.alloc_buf(len as usize);
            fill(buf.as_mut_slice(), pos);
            file.write_at(buf, pos).await?;
            pos += len;
        }
        file.fdatasync().await?;
        Ok(RawFile { file, size, pos: 0 })
    }

    /// Overwrites the next `len` bytes (rounded up to the alignment; back at
    /// offset 0 when they would pass the end) and fdatasyncs, returning how
    /// long the write and the sync took together. Filling the buffer is not
    /// timed.
    ///
    /// # Errors
    /// Any I/O failure, or `len` larger than the file.
    pub async fn overwrite_sync(&mut self, len: usize) -> Result<Duration, IoError> {
        let len = (len.max(1) as u64).next_multiple_of(self.file.alignment());
        if len > self.size {
            return Err(invalid(self.file.path(), "overwrite larger than the raw file"));
        }
        if self.pos + len > self.size {
            self.pos = 0;
        }
        let mut buf = self.file.alloc_buf(len as usize);
        fill(buf.as_mut_slice(), self.pos);
        let start = Instant::now();
        self.file.write_at(buf, self.pos).await?;
        self.file.fdatasync().await?;
        let elapsed = start.elapsed();
        self.pos += len;
        Ok(elapsed)
    }

    /// The file's size in bytes (what was filled; overwrites never change it).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The file's write alignment.
    pub fn alignment(&self) -> u64 {
        self.file.alignment()
    }

    /// The open file, e.g. to ask the file system for its size.
    pub fn file(&self) -> &GlommioFile {
        &self.file
    }

    /// Closes the file.
    ///
    /// # Errors
    /// The close fails.
    pub async fn close(self) -> Result<(), IoError> {
        self.file.close().await
    }
}

/// Non-zero bytes that differ from one write to the next (so no layer can
/// skip writing zeros or identical data).
fn fill(buf: &mut [u8], pos: u64) {
    let seed = (pos / 4096) as u8;
    for (i, b) in buf.iter_mut().enumerate() {
        *b = ((i as u8).wrapping_mul(31).wrapping_add(seed) % 255) + 1;
    }
}

fn invalid(path: &Path, msg: &str) -> IoError {
    IoError::new("raw file", path, io::Error::new(io::ErrorKind::InvalidInput, msg.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::{data_dir, run_on_executor};

    #[test]
    fn overwrites_are_timed_and_keep_the_size() {
        let dir = data_dir(None).unwrap();
        let path = dir.path().to_path_buf();
        let durations = run_on_executor("raw-test", move || async move {
            let fs = GlommioFs::new(&path).await.unwrap();
            let file_path = path.join("raw");
            let mut raw = RawFile::prepare(&fs, &file_path, 4 << 20).await.unwrap();
            assert_eq!(raw.size(), 4 << 20);
            assert_eq!(raw.file().size().await.unwrap(), 4 << 20);
            let mut durations = Vec::new();
            for _ in 0..20 {
                durations.push(raw.overwrite_sync(4096).await.unwrap());
            }
            // An odd length is rounded up, and wrapping past the end works.
            for _ in 0..3 {
                durations.push(raw.overwrite_sync((2 << 20) - 100).await.unwrap());
            }
            assert!(raw.overwrite_sync((4 << 20) + 1).await.is_err());
            assert_eq!(raw.file().size().await.unwrap(), 4 << 20);
            // The content is non-zero throughout.
            let head = raw.file().read_at(0, 8192).await.unwrap();
            assert!(head.iter().all(|&b| b != 0));
            raw.close().await.unwrap();
            assert_eq!(std::fs::metadata(&file_path).unwrap().len(), 4 << 20);
            durations
        });
        assert_eq!(durations.len(), 23);
        assert!(durations.iter().all(|d| *d > Duration::ZERO), "{durations:?}");
    }
}
