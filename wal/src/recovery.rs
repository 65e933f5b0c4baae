//! Rebuilding the index from the segments on disk.
//!
//! 1. List `{seq}.wal` files and read each header block. A file whose header
//!    is valid and names the file's own seq is a segment in use; the newest
//!    of those ends the log, and every file after it is a spare.
//! 2. The segments in use must form an unbroken chain: consecutive seqs,
//!    each header linking to the one before, record numbers continuing.
//! 3. Replay every record through [`MemIndex::apply`]. A segment with a
//!    successor must end exactly where the successor's header says; a bad
//!    record before that is corruption. In the newest segment the first bad
//!    record is the torn tail: the log ends there.
//! 4. Spares are renamed, if need be, to the seqs that follow the newest segment.

use std::path::Path;

use ekv_io::{File, FileSystem};

use crate::batch::decode_payload;
use crate::error::{CorruptionKind, Error, Result};
use crate::format::{self, RecordAt, SegmentHeader, HEADER_BLOCK, RECORD_HEADER};
use crate::index::{MemIndex, Replay};
use crate::wal::{RecoveryMode, WalOptions};
use ekv_proto::codec::DecodeError;

pub(crate) struct Active {
    pub seq: u64,
    pub pos: u64,
    pub next_record: u64,
    pub tail: Vec<u8>,
}

pub(crate) struct Recovered<Fl> {
    pub index: MemIndex,
    /// Segments in use, oldest first.
    pub segments: Vec<(u64, Fl)>,
    /// Spares, named with the seqs that follow `next_seq - 1`.
    pub spares: Vec<(u64, Fl)>,
    /// Where writing resumes; `None` for an empty log.
    pub active: Option<Active>,
    /// Seq of the first spare.
    pub next_seq: u64,
}

struct Found<Fl> {
    seq: u64,
    file: Fl,
    header: Option<SegmentHeader>,
}

pub(crate) async fn recover<F: FileSystem>(
    fs: &F,
    dir: &Path,
    opts: &WalOptions,
) -> Result<Recovered<F::File>> {
    let mut found = Vec::new();
    let mut max_seen = 0u64;
    for name in fs.list(dir).await? {
        let Some(seq) = format::parse_segment_name(&name) else { continue };
        let file = fs.open(&dir.join(&name)).await?;
        let block = file.read_at(0, HEADER_BLOCK as usize).await?;
        let header = SegmentHeader::decode_from(&block);
        max_seen = max_seen.max(seq).max(header.map_or(0, |h| h.seq));
        found.push(Found { seq, file, header: header.filter(|h| h.seq == seq) });
    }
    found.sort_by_key(|f| f.seq);

    let newest = found.iter().rposition(|f| f.header.is_some());
    let (mut used, rest): (Vec<_>, Vec<_>) = match newest {
        Some(n) => {
            let rest = found.split_off(n + 1);
            (found, rest)
        }
        None => (Vec::new(), found),
    };
    let mut doomed: Vec<u64> = Vec::new();

    // 2. The chain.
    for i in 0..used.len() {
        let problem = match (&used[i].header, i.checked_sub(1).map(|p| &used[p])) {
            (None, _) => Some((0, CorruptionKind::BadHeader)),
            (Some(_), Some(prev)) if used[i].seq != prev.seq + 1 => {
                Some((0, CorruptionKind::MissingSegment { seq: prev.seq + 1 }))
            }
            (Some(h), Some(prev)) if h.prev_seq != prev.seq => {
                Some((0, CorruptionKind::BrokenChain { expected: prev.seq, found: h.prev_seq }))
            }
            (Some(h), _) if h.segment_size != opts.segment_size && i + 1 < used.len() => {
                Some((0, CorruptionKind::Inconsistent(format!("segment size {} in header", h.segment_size))))
            }
            _ => None,
        };
        if let Some((offset, kind)) = problem {
            let path = dir.join(format::segment_name(used[i].seq));
            if opts.recovery == RecoveryMode::ReportCorruption {
                return Err(Error::Corruption { path, offset, kind });
            }
            tracing::warn!(path = %path.display(), %kind, "WAL corruption: dropping this segment and all after it");
            doomed.extend(used.drain(i..).map(|f| f.seq));
            break;
        }
    }

    // 3. Replay.
    let mut index = MemIndex::new(opts.cache_capacity);
    let mut next_record = used.first().and_then(|f| f.header).map_or(1, |h| h.first_record);
    let mut active = None;
    let max_payload = opts.max_payload();
    let mut i = 0;
    while i < used.len() {
        let seq = used[i].seq;
        let path = dir.join(format::segment_name(seq));
        let successor = used.get(i + 1).and_then(|f| f.header);
        let expected_end = successor.map(|h| h.prev_len);
        let data = used[i].file.read_at(0, opts.segment_size as usize).await?;
        let mut off = HEADER_BLOCK;
        let mut problem: Option<(u64, CorruptionKind)> = None;
        loop {
            if expected_end.is_some_and(|end| off >= end) {
                break;
            }
            let at = &data[(off as usize).min(data.len())..];
            let checked = match format::record_at(at, max_payload) {
                RecordAt::Record { crc, payload } => {
                    match decode_payload(payload, format::record_crc_prefix(seq, next_record, payload.len()))
                    {
                        Ok((items, got)) if got == crc => Ok((items, payload.len())),
                        Ok((_, got)) => Err(DecodeError::ChecksumMismatch { got, expected: crc }),
                        Err(e) => Err(e),
                    }
                }
                RecordAt::End => {
                    Err(DecodeError::Incomplete { what: "record", need: RECORD_HEADER, have: 0 })
                }
                RecordAt::Invalid => Err(DecodeError::Invalid { what: "record length", value: 0 }),
            };
            match checked {
                Ok((items, len)) => {
                    let mut applied = Ok(());
                    for item in items.items {
                        applied =
                            index.apply(item, &items.metas, seq, off + RECORD_HEADER, None, Replay::Recovery);
                        if applied.is_err() {
                            break;
                        }
                    }
                    if let Err(e) = applied {
                        problem = Some((off, CorruptionKind::Inconsistent(e.to_string())));
                        break;
                    }
                    off += RECORD_HEADER + len as u64;
                    next_record += 1;
                }
                Err(e) => {
                    // In the newest segment this is the torn tail: the log ends here.
                    if expected_end.is_some() {
                        problem = Some((off, CorruptionKind::Decode(e)));
                    }
                    break;
                }
            }
        }
        if problem.is_none() {
            if let (Some(end), Some(next)) = (expected_end, successor) {
                if off != end {
                    problem = Some((off, CorruptionKind::Checksum { segment_end: end }));
                } else if next.first_record != next_record {
                    problem = Some((
                        off,
                        CorruptionKind::Inconsistent(format!(
                            "next segment starts at record {}, expected {next_record}",
                            next.first_record
                        )),
                    ));
                }
            }
        }
        if let Some((offset, kind)) = problem {
            if opts.recovery == RecoveryMode::ReportCorruption {
                return Err(Error::Corruption { path, offset, kind });
            }
            tracing::warn!(path = %path.display(), offset, %kind, "WAL corruption: truncating the log here");
            doomed.extend(used.drain(i + 1..).map(|f| f.seq));
        }
        if i + 1 == used.len() {
            let align = used[i].file.alignment().max(format::WRITE_UNIT);
            let from = (off / align * align) as usize;
            active = Some(Active { seq, pos: off, next_record, tail: data[from..off as usize].to_vec() });
        }
        i += 1;
    }

    for seq in &doomed {
        fs.remove(&dir.join(format::segment_name(*seq))).await?;
    }

    // 4. Spares follow the newest segment (or, in an empty log, every seq seen).
    let next_seq = match &active {
        Some(a) => a.seq + 1,
        None => max_seen + 1,
    };
    let mut spares = Vec::new();
    let mut renamed = !doomed.is_empty();
    for (k, f) in rest.into_iter().enumerate() {
        let want = next_seq + k as u64;
        if f.seq != want {
            fs.rename(&dir.join(format::segment_name(f.seq)), &dir.join(format::segment_name(want))).await?;
            renamed = true;
        }
        spares.push((want, f.file));
    }
    if renamed {
        fs.sync_dir(dir).await?;
    }
    let segments = used.into_iter().map(|f| (f.seq, f.file)).collect();
    Ok(Recovered { index, segments, spares, active, next_seq })
}
