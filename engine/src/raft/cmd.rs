//! Commands as they travel in raft entries. The WAL checksums every entry;
//! this codec bounds every length and versions the layout.
//!
//! ```text
//! entry data = version u8 (1) | region uvarint | conf_ver uvarint | version uvarint | kind u8 | body
//! kind 1 write   = n uvarint | op*
//!        op      = 1 cf key value | 2 cf key | 3 cf start end      (each a len-prefixed string)
//! kind 2 cas     = cf key opt(expected) opt(new)      opt = 0 | 1 len-prefixed
//! kind 3 split   = n uvarint | (key | region uvarint | m uvarint | peer uvarint * m) * n
//! kind 4 compact = index uvarint | term uvarint
//! conf change context = version u8 (1) | region | conf_ver | version | n | (tag u8 | peer | store) * n
//!        tag 1 add voter, 2 add learner, 3 remove
//! ```

use bytes::{BufMut, Bytes};
use ekv_proto::codec::{put_len_prefixed, put_uvarint, DecodeError, DecodeResult, Reader};
use ekv_proto::{PeerId, PeerMeta, RegionEpoch, RegionId, StoreId, MAX_KEY_LEN, MAX_PEERS};

use crate::router::{PeerChange, WriteOp};
use crate::transport::SplitIds;

const VERSION: u8 = 1;
const MAX_CF_LEN: usize = 64;
/// Most mutations in one write command.
pub const MAX_BATCH_OPS: usize = 64 << 10;

/// The header every command carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmdHeader {
    /// The region it was proposed to.
    pub region_id: RegionId,
    /// The epoch it was proposed under.
    pub epoch: RegionEpoch,
}

/// A command in a normal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryCmd {
    /// Mutations.
    Write(Vec<WriteOp>),
    /// Compare-and-swap.
    Cas {
        /// Family.
        cf: String,
        /// Key.
        key: Bytes,
        /// Required value.
        expected: Option<Bytes>,
        /// New value.
        new: Option<Bytes>,
    },
    /// Split at `keys` into new regions with `ids`.
    Split {
        /// Split keys, increasing.
        keys: Vec<Bytes>,
        /// Ids of the regions right of each key.
        ids: Vec<SplitIds>,
    },
    /// Log truncation up to `index` (of `term`).
    CompactLog {
        /// Last index dropped.
        index: u64,
        /// Its term.
        term: u64,
    },
}

fn put_header(buf: &mut Vec<u8>, h: &CmdHeader) {
    buf.put_u8(VERSION);
    put_uvarint(buf, h.region_id.get());
    put_uvarint(buf, h.epoch.conf_ver);
    put_uvarint(buf, h.epoch.version);
}

fn header(r: &mut Reader<'_>) -> DecodeResult<CmdHeader> {
    let v = r.u8("command version")?;
    if v != VERSION {
        return Err(DecodeError::Invalid { what: "command version", value: u64::from(v) });
    }
    Ok(CmdHeader {
        region_id: RegionId(r.uvarint("region")?),
        epoch: RegionEpoch { conf_ver: r.uvarint("conf_ver")?, version: r.uvarint("version")? },
    })
}

fn put_opt(buf: &mut Vec<u8>, v: &Option<Bytes>) {
    match v {
        None => buf.put_u8(0),
        Some(v) => {
            buf.put_u8(1);
            put_len_prefixed(buf, v);
        }
    }
}

fn opt(r: &mut Reader<'_>, what: &'static str) -> DecodeResult<Option<Bytes>> {
    match r.u8(what)? {
        0 => Ok(None),
        1 => {
            let limit = r.remaining();
            Ok(Some(Bytes::copy_from_slice(r.len_prefixed(what, limit)?)))
        }
        v => Err(DecodeError::Invalid { what, value: u64::from(v) }),
    }
}

fn cf(r: &mut Reader<'_>) -> DecodeResult<String> {
    let b = r.len_prefixed("cf", MAX_CF_LEN)?;
    String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Invalid { what: "cf", value: 0 })
}

fn key(r: &mut Reader<'_>, what: &'static str) -> DecodeResult<Bytes> {
    Ok(Bytes::copy_from_slice(r.len_prefixed(what, MAX_KEY_LEN)?))
}

fn count(r: &mut Reader<'_>, what: &'static str, limit: usize) -> DecodeResult<usize> {
    let n = r.uvarint(what)?;
    if n > limit as u64 {
        return Err(DecodeError::TooLarge { what, len: n, limit: limit as u64 });
    }
    Ok(n as usize)
}

impl EntryCmd {
    /// Encodes the command under `h`.
    pub fn encode(&self, h: &CmdHeader) -> Vec<u8> {
        let mut buf = Vec::with_capacity(64);
        put_header(&mut buf, h);
        match self {
            EntryCmd::Write(ops) => {
                buf.put_u8(1);
                put_uvarint(&mut buf, ops.len() as u64);
                for op in ops {
                    match op {
                        WriteOp::Put { cf, key, value } => {
                            buf.put_u8(1);
                            put_len_prefixed(&mut buf, cf.as_bytes());
                            put_len_prefixed(&mut buf, key);
                            put_len_prefixed(&mut buf, value);
                        }
                        WriteOp::Delete { cf, key } => {
                            buf.put_u8(2);
                            put_len_prefixed(&mut buf, cf.as_bytes());
                            put_len_prefixed(&mut buf, key);
                        }
                        WriteOp::DeleteRange { cf, start, end } => {
                            buf.put_u8(3);
                            put_len_prefixed(&mut buf, cf.as_bytes());
                            put_len_prefixed(&mut buf, start);
                            put_len_prefixed(&mut buf, end);
                        }
                    }
                }
            }
            EntryCmd::Cas { cf, key, expected, new } => {
                buf.put_u8(2);
                put_len_prefixed(&mut buf, cf.as_bytes());
                put_len_prefixed(&mut buf, key);
                put_opt(&mut buf, expected);
                put_opt(&mut buf, new);
            }
            EntryCmd::Split { keys, ids } => {
                buf.put_u8(3);
                put_uvarint(&mut buf, keys.len() as u64);
                for (k, id) in keys.iter().zip(ids) {
                    put_len_prefixed(&mut buf, k);
                    put_uvarint(&mut buf, id.region_id.get());
                    put_uvarint(&mut buf, id.peer_ids.len() as u64);
                    for p in &id.peer_ids {
                        put_uvarint(&mut buf, p.get());
                    }
                }
            }
            EntryCmd::CompactLog { index, term } => {
                buf.put_u8(4);
                put_uvarint(&mut buf, *index);
                put_uvarint(&mut buf, *term);
            }
        }
        buf
    }

    /// Decodes entry data.
    ///
    /// # Errors
    /// [`DecodeError`] for anything malformed or out of bounds.
    pub fn decode(data: &[u8]) -> DecodeResult<(CmdHeader, EntryCmd)> {
        let mut r = Reader::new(data);
        let h = header(&mut r)?;
        let cmd = match r.u8("command kind")? {
            1 => {
                let n = count(&mut r, "write ops", MAX_BATCH_OPS)?;
                let mut ops = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    ops.push(match r.u8("write op")? {
                        1 => {
                            let cf = cf(&mut r)?;
                            let key = key(&mut r, "key")?;
                            let limit = r.remaining();
                            let value = Bytes::copy_from_slice(r.len_prefixed("value", limit)?);
                            WriteOp::Put { cf, key, value }
                        }
                        2 => WriteOp::Delete { cf: cf(&mut r)?, key: key(&mut r, "key")? },
                        3 => WriteOp::DeleteRange {
                            cf: cf(&mut r)?,
                            start: key(&mut r, "range start")?,
                            end: key(&mut r, "range end")?,
                        },
                        v => return Err(DecodeError::Invalid { what: "write op", value: u64::from(v) }),
                    });
                }
                EntryCmd::Write(ops)
            }
            2 => EntryCmd::Cas {
                cf: cf(&mut r)?,
                key: key(&mut r, "key")?,
                expected: opt(&mut r, "expected")?,
                new: opt(&mut r, "new value")?,
            },
            3 => {
                let n = count(&mut r, "split keys", 1024)?;
                let mut keys = Vec::with_capacity(n);
                let mut ids = Vec::with_capacity(n);
                for _ in 0..n {
                    keys.push(key(&mut r, "split key")?);
                    let region_id = RegionId(r.uvarint("split region")?);
                    let m = count(&mut r, "split peers", MAX_PEERS)?;
                    let mut peer_ids = Vec::with_capacity(m);
                    for _ in 0..m {
                        peer_ids.push(PeerId(r.uvarint("split peer")?));
                    }
                    ids.push(SplitIds { region_id, peer_ids });
                }
                EntryCmd::Split { keys, ids }
            }
            4 => {
                EntryCmd::CompactLog { index: r.uvarint("compact index")?, term: r.uvarint("compact term")? }
            }
            v => return Err(DecodeError::Invalid { what: "command kind", value: u64::from(v) }),
        };
        if !r.is_empty() {
            return Err(DecodeError::Invalid { what: "trailing command bytes", value: r.remaining() as u64 });
        }
        Ok((h, cmd))
    }
}

/// Encodes the context of a conf change entry: the changes with their stores.
pub fn encode_changes(h: &CmdHeader, changes: &[PeerChange]) -> Vec<u8> {
    let mut buf = Vec::new();
    put_header(&mut buf, h);
    put_uvarint(&mut buf, changes.len() as u64);
    for c in changes {
        let (tag, p) = match c {
            PeerChange::AddVoter(p) => (1, p),
            PeerChange::AddLearner(p) => (2, p),
            PeerChange::Remove(p) => (3, p),
        };
        buf.put_u8(tag);
        put_uvarint(&mut buf, p.id.get());
        put_uvarint(&mut buf, p.store_id.get());
    }
    buf
}

/// Decodes what [`encode_changes`] wrote.
///
/// # Errors
/// [`DecodeError`] for anything malformed.
pub fn decode_changes(data: &[u8]) -> DecodeResult<(CmdHeader, Vec<PeerChange>)> {
    let mut r = Reader::new(data);
    let h = header(&mut r)?;
    let n = count(&mut r, "peer changes", MAX_PEERS)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let tag = r.u8("change type")?;
        let p = PeerMeta { id: PeerId(r.uvarint("peer")?), store_id: StoreId(r.uvarint("store")?) };
        out.push(match tag {
            1 => PeerChange::AddVoter(p),
            2 => PeerChange::AddLearner(p),
            3 => PeerChange::Remove(p),
            v => return Err(DecodeError::Invalid { what: "change type", value: u64::from(v) }),
        });
    }
    if !r.is_empty() {
        return Err(DecodeError::Invalid { what: "trailing change bytes", value: r.remaining() as u64 });
    }
    Ok((h, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<EntryCmd> {
        vec![
            EntryCmd::Write(vec![
                WriteOp::Put { cf: "default".into(), key: "k".into(), value: "v".into() },
                WriteOp::Delete { cf: "lock".into(), key: "x".into() },
                WriteOp::DeleteRange { cf: "default".into(), start: "a".into(), end: "".into() },
            ]),
            EntryCmd::Cas { cf: "default".into(), key: "k".into(), expected: None, new: Some("n".into()) },
            EntryCmd::Split {
                keys: vec!["m".into()],
                ids: vec![SplitIds { region_id: RegionId(4), peer_ids: vec![PeerId(5), PeerId(6)] }],
            },
            EntryCmd::CompactLog { index: 10, term: 2 },
        ]
    }

    #[test]
    fn commands_round_trip_and_every_truncation_is_refused() {
        let h = CmdHeader { region_id: RegionId(3), epoch: RegionEpoch { conf_ver: 2, version: 9 } };
        for cmd in all() {
            let data = cmd.encode(&h);
            assert_eq!(EntryCmd::decode(&data).unwrap(), (h, cmd.clone()));
            for cut in 0..data.len() {
                assert!(EntryCmd::decode(&data[..cut]).is_err(), "{cmd:?} cut at {cut}");
            }
            let mut longer = data.clone();
            longer.push(0);
            assert!(EntryCmd::decode(&longer).is_err());
        }
        let changes = vec![
            PeerChange::AddVoter(PeerMeta { id: PeerId(1), store_id: StoreId(2) }),
            PeerChange::Remove(PeerMeta { id: PeerId(3), store_id: StoreId(4) }),
        ];
        let data = encode_changes(&h, &changes);
        assert_eq!(decode_changes(&data).unwrap(), (h, changes));
        let mut bad = data.clone();
        bad[0] = 9;
        assert!(decode_changes(&bad).is_err());
    }
}
