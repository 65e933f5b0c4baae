//! Damaging a stopped store's WAL, as a disk might: a torn tail in the
//! newest segment, or a flipped byte in an older one.
//!
//! The runner reads just enough of the segment layout (ekv-wal's
//! `format.rs`) to aim: files `{seq:016}.wal`; a header block of 4096 bytes
//! starting with the magic `EKV-WAL\0`, a u32 version, a u32 reserved and
//! the u64 seq; then records `{crc u32 | len u32 | payload}`, a zero length
//! ending the data. A file whose header does not name its own seq is a spare.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::Rng;

const MAGIC: &[u8; 8] = b"EKV-WAL\0";
const HEADER_BLOCK: u64 = 4096;
const RECORD_HEADER: u64 = 8;

/// A segment in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The file.
    pub path: PathBuf,
    /// Its seq.
    pub seq: u64,
    /// Offsets of its records (header start) and their lengths (header included).
    pub records: Vec<(u64, u64)>,
}

impl Segment {
    /// Where its data ends.
    pub fn end(&self) -> u64 {
        self.records.last().map_or(HEADER_BLOCK, |(at, len)| at + len)
    }
}

fn seq_of(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".wal")?;
    (stem.len() == 16 && stem.bytes().all(|b| b.is_ascii_digit())).then(|| stem.parse().ok())?
}

/// Reads a segment's header and walks its records; `None` for a spare.
fn read_segment(path: &Path, seq: u64) -> Option<Segment> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() < HEADER_BLOCK as usize || &bytes[..8] != MAGIC {
        return None;
    }
    let named = u64::from_le_bytes(bytes[16..24].try_into().ok()?);
    if named != seq {
        return None;
    }
    let mut records = Vec::new();
    let mut at = HEADER_BLOCK;
    while at + RECORD_HEADER <= bytes.len() as u64 {
        let p = at as usize;
        let len = u64::from(u32::from_le_bytes(bytes[p + 4..p + 8].try_into().ok()?));
        if len == 0 || at + RECORD_HEADER + len > bytes.len() as u64 {
            break;
        }
        records.push((at, RECORD_HEADER + len));
        at += RECORD_HEADER + len;
    }
    Some(Segment { path: path.to_path_buf(), seq, records })
}

/// The segments in use under `data` (any depth), grouped by directory
/// (one WAL per shard), each group oldest first.
pub fn wals(data: &Path) -> Vec<Vec<Segment>> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut stack = vec![data.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        let mut has_wal = false;
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name().to_str().and_then(seq_of).is_some() {
                has_wal = true;
            }
        }
        if has_wal {
            dirs.push(d);
        }
    }
    dirs.sort();
    let mut out = Vec::new();
    for d in dirs {
        let mut segs: Vec<Segment> = std::fs::read_dir(&d)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let seq = e.file_name().to_str().and_then(seq_of)?;
                read_segment(&e.path(), seq)
            })
            .collect();
        segs.sort_by_key(|s| s.seq);
        if !segs.is_empty() {
            out.push(segs);
        }
    }
    out
}

fn overwrite(path: &Path, at: u64, bytes: &[u8]) -> Result<(), String> {
    let mut f =
        OpenOptions::new().write(true).open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    f.seek(SeekFrom::Start(at)).map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
    f.sync_all().map_err(|e| format!("syncing {}: {e}", path.display()))
}

/// Tears the last record of a WAL's newest segment: zeroes it from a random
/// point inside it to its end, as a write cut short would leave it.
pub fn cut_tail(data: &Path, rng: &mut impl Rng) -> Result<String, String> {
    let candidates: Vec<Segment> =
        wals(data).into_iter().filter_map(|w| w.last().cloned()).filter(|s| !s.records.is_empty()).collect();
    let seg = candidates.choose(rng).ok_or("no WAL segment with records")?;
    let (at, len) = *seg.records.last().expect("non-empty");
    // Within the payload: the record's length stays, its checksum fails.
    let from = at + RECORD_HEADER + rng.gen_range(0..len - RECORD_HEADER);
    let zeros = vec![0u8; usize::try_from(at + len - from).map_err(|e| e.to_string())?];
    overwrite(&seg.path, from, &zeros)?;
    Ok(format!("cut the tail of {} (record at {at}, {len} bytes, zeroed from {from})", seg.path.display()))
}

/// Flips one byte inside the records of a segment that is not its WAL's
/// newest (so recovery cannot take it for a torn tail).
pub fn flip_old_byte(data: &Path, rng: &mut impl Rng) -> Result<String, String> {
    let old: Vec<Segment> = wals(data)
        .into_iter()
        .flat_map(|mut w| {
            w.pop();
            w
        })
        .filter(|s| !s.records.is_empty())
        .collect();
    let seg = old.choose(rng).ok_or("no WAL segment older than the newest yet")?;
    let at = rng.gen_range(HEADER_BLOCK..seg.end());
    let mut f = std::fs::File::open(&seg.path).map_err(|e| format!("{}: {e}", seg.path.display()))?;
    f.seek(SeekFrom::Start(at)).map_err(|e| e.to_string())?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b).map_err(|e| e.to_string())?;
    let flipped = b[0] ^ (1 << rng.gen_range(0..8));
    overwrite(&seg.path, at, &[flipped])?;
    Ok(format!("flipped byte {at} of {} ({:#04x} -> {flipped:#04x})", seg.path.display(), b[0]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A segment file with records of the given payload lengths.
    fn segment(dir: &Path, seq: u64, payloads: &[usize]) -> PathBuf {
        let mut b = vec![0u8; 64 << 10];
        b[..8].copy_from_slice(MAGIC);
        b[16..24].copy_from_slice(&seq.to_le_bytes());
        let mut at = HEADER_BLOCK as usize;
        for &n in payloads {
            b[at..at + 4].copy_from_slice(&0xdead_beef_u32.to_le_bytes());
            b[at + 4..at + 8].copy_from_slice(&(n as u32).to_le_bytes());
            b[at + 8..at + 8 + n].fill(0xab);
            at += 8 + n;
        }
        let p = dir.join(format!("{seq:016}.wal"));
        std::fs::write(&p, b).unwrap();
        p
    }

    #[test]
    fn finds_segments_in_use_and_skips_spares() {
        let t = tempfile::tempdir().unwrap();
        let w = t.path().join("shard0").join("wal");
        std::fs::create_dir_all(&w).unwrap();
        segment(&w, 1, &[10, 20]);
        segment(&w, 2, &[5]);
        // A spare: its header names another seq.
        let spare = segment(&w, 2, &[]);
        std::fs::rename(spare, w.join(format!("{:016}.wal", 3))).unwrap();
        segment(&w, 2, &[5]);
        std::fs::write(w.join("notes.txt"), b"x").unwrap();
        let found = wals(t.path());
        assert_eq!(found.len(), 1);
        let seqs: Vec<u64> = found[0].iter().map(|s| s.seq).collect();
        assert_eq!(seqs, vec![1, 2]);
        assert_eq!(found[0][0].records, vec![(4096, 18), (4114, 28)]);
        assert_eq!(found[0][0].end(), 4142);
    }

    #[test]
    fn cut_tail_zeroes_inside_the_last_record_of_the_newest() {
        let t = tempfile::tempdir().unwrap();
        segment(t.path(), 1, &[10]);
        let newest = segment(t.path(), 2, &[10, 30]);
        let before = std::fs::read(&newest).unwrap();
        let what = cut_tail(t.path(), &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        assert!(what.contains("0000000000000002.wal"), "{what}");
        let after = std::fs::read(&newest).unwrap();
        let last = 4096 + 18;
        assert_eq!(before[..last + 8], after[..last + 8], "the header of the last record is kept");
        assert!(after[last + 8..last + 38].contains(&0), "some of the last record is zeroed");
        assert_eq!(before[last + 38..], after[last + 38..]);
    }

    #[test]
    fn flip_changes_one_byte_of_an_old_segment_only() {
        let t = tempfile::tempdir().unwrap();
        let old = segment(t.path(), 1, &[100]);
        let newest = segment(t.path(), 2, &[100]);
        let (o, n) = (std::fs::read(&old).unwrap(), std::fs::read(&newest).unwrap());
        flip_old_byte(t.path(), &mut ChaCha8Rng::seed_from_u64(2)).unwrap();
        let o2 = std::fs::read(&old).unwrap();
        let diff: Vec<usize> = (0..o.len()).filter(|&i| o[i] != o2[i]).collect();
        assert_eq!(diff.len(), 1);
        assert!((4096..4096 + 108).contains(&diff[0]));
        assert_eq!(std::fs::read(&newest).unwrap(), n);
        // With one segment only there is nothing old to flip.
        let t2 = tempfile::tempdir().unwrap();
        segment(t2.path(), 1, &[100]);
        assert!(flip_old_byte(t2.path(), &mut ChaCha8Rng::seed_from_u64(2)).is_err());
    }
}
