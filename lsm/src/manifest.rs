//! The manifest: the log of version edits, and the names of the tree's files.
//!
//! ```text
//! CURRENT            "ekv-lsm 1 MANIFEST-000012 <crc32c hex>\n", zero padded
//! MANIFEST-000012    records: len u32 LE | crc32c u32 LE | edit; zeros after the last
//! 000013.sst         tables (see table::format)
//! ```
//!
//! A record's CRC covers its length and payload, seeded with the manifest's
//! number, so a record from another manifest never passes. Every append
//! rewrites the last partial block and is synced before the edit takes
//! effect in memory: the switch to a new version is atomic because it
//! happens only once its edit is durable. A new manifest begins with an edit
//! that lists the whole version; `CURRENT` is switched to it by writing
//! `CURRENT.tmp` and renaming it over, then syncing the directory.
//!
//! Recovery reads records until the zero end marker. A record that fails
//! its checksum is a torn tail (dropped) only if no valid record follows it;
//! otherwise it is corruption, reported with file and offset.

use std::path::{Path, PathBuf};

use ekv_io::{File, FileSystem, IoBuf};
use ekv_proto::codec::crc32c;

use crate::version::VersionEdit;
use crate::{Error, Result};

pub(crate) const CURRENT: &str = "CURRENT";
const CURRENT_TMP: &str = "CURRENT.tmp";
const CURRENT_MAGIC: &str = "ekv-lsm";
const CURRENT_VERSION: u32 = 1;
const RECORD_HEADER: usize = 8;
/// Largest edit the manifest accepts (a whole-version edit of ~100k tables).
const MAX_RECORD: usize = 64 << 20;

/// The kinds of files in the tree's directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Current,
    CurrentTmp,
    Manifest(u64),
    Table(u64),
    /// A table being ingested, copied in but not yet in the manifest.
    Other,
}

pub(crate) fn manifest_name(number: u64) -> String {
    format!("MANIFEST-{number:06}")
}

pub(crate) fn table_name(number: u64) -> String {
    format!("{number:06}.sst")
}

pub(crate) fn parse_file_name(name: &str) -> FileKind {
    if name == CURRENT {
        return FileKind::Current;
    }
    if name == CURRENT_TMP {
        return FileKind::CurrentTmp;
    }
    if let Some(n) = name.strip_prefix("MANIFEST-").and_then(|n| n.parse().ok()) {
        return FileKind::Manifest(n);
    }
    if let Some(n) = name.strip_suffix(".sst").and_then(|n| n.parse().ok()) {
        return FileKind::Table(n);
    }
    FileKind::Other
}

/// Appends edits to one manifest file.
#[derive(Debug)]
pub(crate) struct ManifestWriter<F: FileSystem> {
    file: F::File,
    number: u64,
    /// Logical end of the records.
    pos: u64,
    /// Bytes of the last, partly filled block (from its aligned start to `pos`).
    tail: Vec<u8>,
}

impl<F: FileSystem> ManifestWriter<F> {
    /// Creates manifest `number` starting with `snapshot`, syncs it, and
    /// points `CURRENT` at it.
    pub(crate) async fn create(fs: &F, dir: &Path, number: u64, snapshot: &VersionEdit) -> Result<Self> {
        let path = dir.join(manifest_name(number));
        let file = fs.create(&path).await?;
        let mut w = ManifestWriter { file, number, pos: 0, tail: Vec::new() };
        w.append(snapshot).await?;
        write_current(fs, dir, number).await?;
        Ok(w)
    }

    pub(crate) fn number(&self) -> u64 {
        self.number
    }

    /// Bytes of records written.
    pub(crate) fn size(&self) -> u64 {
        self.pos
    }

    /// Appends one edit and makes it durable.
    pub(crate) async fn append(&mut self, edit: &VersionEdit) -> Result<()> {
        let mut payload = Vec::new();
        edit.encode_into(&mut payload);
        if payload.len() > MAX_RECORD {
            return Err(Error::InvalidArgument(format!("version edit of {} bytes", payload.len())));
        }
        let mut record = Vec::with_capacity(RECORD_HEADER + payload.len());
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&record_crc(self.number, &payload).to_le_bytes());
        record.extend_from_slice(&payload);

        let align = self.file.alignment();
        let start = self.pos - self.tail.len() as u64;
        let used = self.tail.len() + record.len();
        let len = used.next_multiple_of(align as usize);
        let mut buf = self.file.alloc_buf(len);
        let b = buf.as_mut_slice();
        b[..self.tail.len()].copy_from_slice(&self.tail);
        b[self.tail.len()..used].copy_from_slice(&record);
        // The zeros after the last record are the end marker; DMA buffers
        // come uninitialised (stale bytes could even hold an old record).
        b[used..].fill(0);
        self.file.write_at(buf, start).await?;
        self.file.fdatasync().await?;

        self.pos += record.len() as u64;
        let block_start = self.pos - self.pos % align;
        let keep = (self.pos - block_start) as usize;
        let mut tail = std::mem::take(&mut self.tail);
        tail.extend_from_slice(&record);
        self.tail = tail[tail.len() - keep..].to_vec();
        Ok(())
    }

    pub(crate) async fn close(self) -> Result<()> {
        Ok(self.file.close().await?)
    }
}

fn record_crc(number: u64, payload: &[u8]) -> u32 {
    let seed = crc32c(0, &number.to_le_bytes());
    let seed = crc32c(seed, &(payload.len() as u32).to_le_bytes());
    crc32c(seed, payload)
}

fn current_line(number: u64) -> String {
    let name = manifest_name(number);
    let crc = crc32c(0, name.as_bytes());
    format!("{CURRENT_MAGIC} {CURRENT_VERSION} {name} {crc:08x}\n")
}

async fn write_current<F: FileSystem>(fs: &F, dir: &Path, number: u64) -> Result<()> {
    let tmp = dir.join(CURRENT_TMP);
    let file = fs.create(&tmp).await?;
    let line = current_line(number);
    let len = line.len().next_multiple_of(file.alignment() as usize);
    let mut buf = file.alloc_buf(len);
    let b = buf.as_mut_slice();
    b[..line.len()].copy_from_slice(line.as_bytes());
    b[line.len()..].fill(0);
    file.write_at(buf, 0).await?;
    file.fdatasync().await?;
    file.close().await?;
    fs.rename(&tmp, &dir.join(CURRENT)).await?;
    fs.sync_dir(dir).await?;
    Ok(())
}

/// The manifest number `CURRENT` names, or `None` if there is no `CURRENT`.
pub(crate) async fn read_current<F: FileSystem>(fs: &F, dir: &Path) -> Result<Option<u64>> {
    let path = dir.join(CURRENT);
    if !fs.list(dir).await?.iter().any(|n| n == CURRENT) {
        return Ok(None);
    }
    let file = fs.open(&path).await?;
    let size = file.size().await?;
    let bytes = file.read_at(0, size.min(4096) as usize).await?;
    file.close().await?;
    let text = std::str::from_utf8(&bytes).unwrap_or("");
    let line = text.split('\n').next().unwrap_or("");
    let bad = || Error::corruption(&path, 0, format!("unreadable CURRENT {line:?}"));
    let mut parts = line.split(' ');
    let (Some(magic), Some(version), Some(name), Some(crc), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if magic != CURRENT_MAGIC || version != CURRENT_VERSION.to_string() {
        return Err(bad());
    }
    if u32::from_str_radix(crc, 16).ok() != Some(crc32c(0, name.as_bytes())) {
        return Err(bad());
    }
    match parse_file_name(name) {
        FileKind::Manifest(n) => Ok(Some(n)),
        _ => Err(bad()),
    }
}

/// The edits of manifest `number`, in order, and the path read.
pub(crate) async fn replay<F: FileSystem>(
    fs: &F,
    dir: &Path,
    number: u64,
    num_levels: usize,
) -> Result<(PathBuf, Vec<VersionEdit>)> {
    let path = dir.join(manifest_name(number));
    let file = fs.open(&path).await?;
    let size = file.size().await?;
    let bytes = file.read_at(0, size as usize).await?;
    file.close().await?;
    let edits = parse_records(&path, number, &bytes, num_levels)?;
    Ok((path, edits))
}

fn parse_records(path: &Path, number: u64, bytes: &[u8], num_levels: usize) -> Result<Vec<VersionEdit>> {
    let mut edits = Vec::new();
    let mut pos = 0usize;
    while let Some(step) = record_at(number, bytes, pos) {
        match step {
            Record::End => break,
            Record::Valid(payload, next) => {
                let edit = VersionEdit::decode_from(payload, num_levels)
                    .map_err(|e| Error::corruption(path, pos as u64, format!("version edit: {e}")))?;
                edits.push(edit);
                pos = next;
            }
            Record::Bad => {
                // Torn tail, unless a whole record follows somewhere later.
                if (pos + 1..bytes.len())
                    .any(|p| matches!(record_at(number, bytes, p), Some(Record::Valid(..))))
                {
                    return Err(Error::corruption(path, pos as u64, "manifest record checksum mismatch"));
                }
                break;
            }
        }
    }
    if edits.first().is_none_or(|e| !e.snapshot) {
        return Err(Error::corruption(path, 0, "manifest does not start with a whole version"));
    }
    Ok(edits)
}

enum Record<'a> {
    End,
    Valid(&'a [u8], usize),
    Bad,
}

fn record_at(number: u64, bytes: &[u8], pos: usize) -> Option<Record<'_>> {
    if pos >= bytes.len() {
        return None;
    }
    let Some(header) = bytes.get(pos..pos + RECORD_HEADER) else {
        return Some(if bytes[pos..].iter().all(|&b| b == 0) { Record::End } else { Record::Bad });
    };
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len == 0 && crc == 0 {
        return Some(Record::End);
    }
    if len > MAX_RECORD {
        return Some(Record::Bad);
    }
    let Some(payload) = bytes.get(pos + RECORD_HEADER..pos + RECORD_HEADER + len) else {
        return Some(Record::Bad);
    };
    if record_crc(number, payload) != crc {
        return Some(Record::Bad);
    }
    Some(Record::Valid(payload, pos + RECORD_HEADER + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ekv_io::MemFs;
    use futures::executor::block_on;

    fn edit(seq: u64, snapshot: bool) -> VersionEdit {
        VersionEdit {
            snapshot,
            last_seq: Some(seq),
            marker: Some(vec![seq as u8; 700]),
            ..Default::default()
        }
    }

    #[test]
    fn appends_replay_and_torn_tail_is_dropped_but_middle_damage_is_not() {
        block_on(async {
            let fs = MemFs::new(512);
            let dir = Path::new("/db");
            fs.create_dir_all(dir).await.unwrap();
            let mut w = ManifestWriter::create(&fs, dir, 3, &edit(1, true)).await.unwrap();
            for s in 2..=6 {
                w.append(&edit(s, false)).await.unwrap();
            }
            let end = w.size();
            assert_eq!(read_current(&fs, dir).await.unwrap(), Some(3));
            let (_, edits) = replay(&fs, dir, 3, 7).await.unwrap();
            assert_eq!(edits.iter().map(|e| e.last_seq.unwrap()).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6]);

            let path = dir.join(manifest_name(3));
            let whole = fs.read_file(&path).unwrap();
            // Damage in the last record: a torn tail, five edits survive.
            let torn = fs.snapshot();
            torn.overwrite_durable(&path, end - 3, &[0xAA]);
            let (_, edits) = replay(&torn, dir, 3, 7).await.unwrap();
            assert_eq!(edits.len(), 5);
            // Damage in the second record: corruption naming the offset.
            let bad = fs.snapshot();
            let second = RECORD_HEADER as u64 + whole[..4].iter().rev().fold(0u64, |a, &b| a << 8 | b as u64);
            bad.overwrite_durable(&path, second + 10, &[0xAA]);
            match replay(&bad, dir, 3, 7).await {
                Err(Error::Corruption { file, offset, .. }) => {
                    assert_eq!(file, path);
                    assert_eq!(offset, second);
                }
                other => panic!("expected corruption, got {other:?}"),
            }
        });
    }

    #[test]
    fn current_rejects_garbage() {
        block_on(async {
            let fs = MemFs::new(512);
            let dir = Path::new("/db");
            fs.create_dir_all(dir).await.unwrap();
            assert_eq!(read_current(&fs, dir).await.unwrap(), None);
            write_current(&fs, dir, 42).await.unwrap();
            assert_eq!(read_current(&fs, dir).await.unwrap(), Some(42));
            fs.overwrite_durable(&dir.join(CURRENT), 20, b"9");
            assert!(matches!(read_current(&fs, dir).await, Err(Error::Corruption { .. })));
        });
    }
}
