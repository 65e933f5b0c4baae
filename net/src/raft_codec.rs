//! The raft traffic of one round to one destination shard, as one frame body.
//!
//! ```text
//! batch  = version u8 (2) | count uvarint | msg * count
//! msg    = 1 peer | 2 chunk | 3 probe
//! peer   = region | from | from_shard | to | epoch | range | kind
//!          kind = 1 raft (len-prefixed raft-rs protobuf) | 2 hibernate (term, last_index) | 3 tombstone
//! chunk  = region | from | from_shard | to | epoch | range | index | term | file | offset
//!          | data len-prefixed | 0 | 1 len-prefixed raft-rs MsgSnapshot
//! probe  = store
//! from, to = peer id | store id;  epoch = conf_ver | version
//! range  = start key len-prefixed | end key len-prefixed (the sender's region; each at most MAX_KEY_LEN)
//! every integer a uvarint
//! ```
//!
//! Every count and length is bounded by what is left of the body (itself
//! bounded by the frame limit) before anything is allocated. raft-rs
//! messages keep their own protobuf encoding inside. Version 2 added the
//! range (a receiver creates no peer for a range its own regions still
//! cover); a batch of another version is refused whole.

use bytes::{BufMut, Bytes};
use ekv_engine::{PeerMsg, RaftEnvelope, SnapshotChunk, StoreMsg};
use ekv_proto::codec::{put_len_prefixed, put_uvarint, DecodeError, DecodeResult, Reader};
use ekv_proto::{PeerId, PeerMeta, RegionEpoch, RegionId, ShardId, StoreId, MAX_KEY_LEN};
use protobuf::Message as _;

const VERSION: u8 = 2;
const TAG_PEER: u8 = 1;
const TAG_CHUNK: u8 = 2;
const TAG_PROBE: u8 = 3;
const KIND_RAFT: u8 = 1;
const KIND_HIBERNATE: u8 = 2;
const KIND_TOMBSTONE: u8 = 3;

/// Why a batch does not encode or decode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The bytes are truncated, oversize or malformed.
    #[error("raft batch: {0}")]
    Decode(#[from] DecodeError),
    /// A raft-rs message does not (de)serialize.
    #[error("raft message: {0}")]
    Raft(#[from] protobuf::ProtobufError),
}

fn put_meta(buf: &mut Vec<u8>, p: &PeerMeta) {
    put_uvarint(buf, p.id.get());
    put_uvarint(buf, p.store_id.get());
}

fn meta(r: &mut Reader<'_>) -> DecodeResult<PeerMeta> {
    Ok(PeerMeta { id: PeerId(r.uvarint("peer id")?), store_id: StoreId(r.uvarint("store id")?) })
}

fn put_epoch(buf: &mut Vec<u8>, e: &RegionEpoch) {
    put_uvarint(buf, e.conf_ver);
    put_uvarint(buf, e.version);
}

fn epoch(r: &mut Reader<'_>) -> DecodeResult<RegionEpoch> {
    Ok(RegionEpoch { conf_ver: r.uvarint("conf_ver")?, version: r.uvarint("version")? })
}

fn put_range(buf: &mut Vec<u8>, start: &[u8], end: &[u8]) {
    put_len_prefixed(buf, start);
    put_len_prefixed(buf, end);
}

fn range(r: &mut Reader<'_>) -> DecodeResult<(Bytes, Bytes)> {
    let start = Bytes::copy_from_slice(r.len_prefixed("region start", MAX_KEY_LEN)?);
    let end = Bytes::copy_from_slice(r.len_prefixed("region end", MAX_KEY_LEN)?);
    Ok((start, end))
}

fn raft_msg(r: &mut Reader<'_>) -> Result<Box<raft::eraftpb::Message>, CodecError> {
    let limit = r.remaining();
    let bytes = r.len_prefixed("raft message", limit)?;
    Ok(Box::new(raft::eraftpb::Message::parse_from_bytes(bytes)?))
}

/// Appends `msgs` to `buf` as one batch.
///
/// # Errors
/// A raft-rs message that protobuf refuses to encode.
pub fn encode_into(buf: &mut Vec<u8>, msgs: &[StoreMsg]) -> Result<(), CodecError> {
    buf.put_u8(VERSION);
    put_uvarint(buf, msgs.len() as u64);
    for m in msgs {
        match m {
            StoreMsg::Peer(e) => {
                buf.put_u8(TAG_PEER);
                put_uvarint(buf, e.region_id.get());
                put_meta(buf, &e.from);
                put_uvarint(buf, e.from_shard.get());
                put_meta(buf, &e.to);
                put_epoch(buf, &e.epoch);
                put_range(buf, &e.start_key, &e.end_key);
                match &e.msg {
                    PeerMsg::Raft(m) => {
                        buf.put_u8(KIND_RAFT);
                        put_len_prefixed(buf, &m.write_to_bytes()?);
                    }
                    PeerMsg::Hibernate { term, last_index } => {
                        buf.put_u8(KIND_HIBERNATE);
                        put_uvarint(buf, *term);
                        put_uvarint(buf, *last_index);
                    }
                    PeerMsg::Tombstone => buf.put_u8(KIND_TOMBSTONE),
                }
            }
            StoreMsg::Snapshot(c) => {
                buf.put_u8(TAG_CHUNK);
                put_uvarint(buf, c.region_id.get());
                put_meta(buf, &c.from);
                put_uvarint(buf, c.from_shard.get());
                put_meta(buf, &c.to);
                put_epoch(buf, &c.epoch);
                put_range(buf, &c.start_key, &c.end_key);
                put_uvarint(buf, c.index);
                put_uvarint(buf, c.term);
                put_uvarint(buf, u64::from(c.file));
                put_uvarint(buf, c.offset);
                put_len_prefixed(buf, &c.data);
                match &c.msg {
                    None => buf.put_u8(0),
                    Some(m) => {
                        buf.put_u8(1);
                        put_len_prefixed(buf, &m.write_to_bytes()?);
                    }
                }
            }
            StoreMsg::Probe { from } => {
                buf.put_u8(TAG_PROBE);
                put_uvarint(buf, from.get());
            }
        }
    }
    Ok(())
}

/// Decodes a batch made by [`encode_into`].
///
/// # Errors
/// [`CodecError`] for anything truncated, oversize or malformed; nothing
/// of a bad batch is returned.
pub fn decode_from(data: &[u8]) -> Result<Vec<StoreMsg>, CodecError> {
    let mut r = Reader::new(data);
    let v = r.u8("raft batch version")?;
    if v != VERSION {
        return Err(DecodeError::Invalid { what: "raft batch version", value: u64::from(v) }.into());
    }
    let n = r.uvarint("raft batch count")?;
    // Every message takes at least two bytes: a bound before allocating.
    if n > r.remaining() as u64 / 2 {
        return Err(DecodeError::TooLarge {
            what: "raft batch count",
            len: n,
            limit: r.remaining() as u64 / 2,
        }
        .into());
    }
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        out.push(match r.u8("store message tag")? {
            TAG_PEER => {
                let region_id = RegionId(r.uvarint("region")?);
                let from = meta(&mut r)?;
                let from_shard = ShardId(r.uvarint("from shard")?);
                let to = meta(&mut r)?;
                let epoch = epoch(&mut r)?;
                let (start_key, end_key) = range(&mut r)?;
                let msg = match r.u8("peer message kind")? {
                    KIND_RAFT => PeerMsg::Raft(raft_msg(&mut r)?),
                    KIND_HIBERNATE => {
                        PeerMsg::Hibernate { term: r.uvarint("term")?, last_index: r.uvarint("last index")? }
                    }
                    KIND_TOMBSTONE => PeerMsg::Tombstone,
                    k => {
                        return Err(
                            DecodeError::Invalid { what: "peer message kind", value: u64::from(k) }.into()
                        )
                    }
                };
                StoreMsg::Peer(RaftEnvelope {
                    region_id,
                    from,
                    from_shard,
                    to,
                    epoch,
                    start_key,
                    end_key,
                    msg,
                })
            }
            TAG_CHUNK => {
                let region_id = RegionId(r.uvarint("region")?);
                let from = meta(&mut r)?;
                let from_shard = ShardId(r.uvarint("from shard")?);
                let to = meta(&mut r)?;
                let epoch = epoch(&mut r)?;
                let (start_key, end_key) = range(&mut r)?;
                let index = r.uvarint("snapshot index")?;
                let term = r.uvarint("snapshot term")?;
                let file = r.uvarint("snapshot file")?;
                let file = u32::try_from(file)
                    .map_err(|_| DecodeError::Invalid { what: "snapshot file", value: file })?;
                let offset = r.uvarint("snapshot offset")?;
                let limit = r.remaining();
                let data = Bytes::copy_from_slice(r.len_prefixed("snapshot data", limit)?);
                let msg = match r.u8("snapshot message flag")? {
                    0 => None,
                    1 => Some(raft_msg(&mut r)?),
                    f => {
                        return Err(DecodeError::Invalid {
                            what: "snapshot message flag",
                            value: u64::from(f),
                        }
                        .into())
                    }
                };
                StoreMsg::Snapshot(SnapshotChunk {
                    region_id,
                    from,
                    from_shard,
                    to,
                    index,
                    term,
                    file,
                    offset,
                    data,
                    msg,
                    epoch,
                    start_key,
                    end_key,
                })
            }
            TAG_PROBE => StoreMsg::Probe { from: StoreId(r.uvarint("probe store")?) },
            t => return Err(DecodeError::Invalid { what: "store message tag", value: u64::from(t) }.into()),
        });
    }
    if !r.is_empty() {
        return Err(
            DecodeError::Invalid { what: "trailing raft batch bytes", value: r.remaining() as u64 }.into()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{Entry, MessageType};

    fn sample() -> Vec<StoreMsg> {
        let mut append = raft::eraftpb::Message::default();
        append.set_msg_type(MessageType::MsgAppend);
        append.to = 2;
        append.from = 1;
        append.term = 7;
        append.index = 41;
        append.log_term = 6;
        append.commit = 40;
        let e = Entry { index: 42, term: 7, data: b"put k v".to_vec().into(), ..Default::default() };
        append.mut_entries().push(e);
        let mut snap = raft::eraftpb::Message::default();
        snap.set_msg_type(MessageType::MsgSnapshot);
        snap.mut_snapshot().mut_metadata().index = 99;
        let p = |id: u64, s: u64| PeerMeta { id: PeerId(id), store_id: StoreId(s) };
        let epoch = RegionEpoch { conf_ver: 3, version: 5 };
        vec![
            StoreMsg::Peer(RaftEnvelope {
                region_id: RegionId(9),
                from: p(1, 1),
                from_shard: ShardId(1),
                to: p(2, 2),
                epoch,
                start_key: Bytes::from_static(b"k"),
                end_key: Bytes::from_static(b"t"),
                msg: PeerMsg::Raft(Box::new(append)),
            }),
            StoreMsg::Peer(RaftEnvelope {
                region_id: RegionId(9),
                from: p(1, 1),
                from_shard: ShardId(0),
                to: p(3, 3),
                epoch,
                start_key: Bytes::new(),
                end_key: Bytes::from_static(b"k"),
                msg: PeerMsg::Hibernate { term: 7, last_index: 42 },
            }),
            StoreMsg::Peer(RaftEnvelope {
                region_id: RegionId(4),
                from: p(1, 1),
                from_shard: ShardId(0),
                to: p(5, 3),
                epoch,
                start_key: Bytes::from_static(b"t"),
                end_key: Bytes::new(),
                msg: PeerMsg::Tombstone,
            }),
            StoreMsg::Snapshot(SnapshotChunk {
                region_id: RegionId(9),
                from: p(1, 1),
                from_shard: ShardId(0),
                to: p(2, 2),
                index: 99,
                term: 7,
                file: 2,
                offset: 4096,
                data: Bytes::from(vec![7u8; 512]),
                msg: Some(Box::new(snap)),
                epoch,
                start_key: Bytes::from_static(b"k"),
                end_key: Bytes::from_static(b"t"),
            }),
            StoreMsg::Probe { from: StoreId(1) },
        ]
    }

    /// The engine's messages carry no equality; compare their debug forms.
    fn show(msgs: &[StoreMsg]) -> String {
        format!("{msgs:?}")
    }

    #[test]
    fn a_batch_round_trips() {
        let msgs = sample();
        let mut buf = Vec::new();
        encode_into(&mut buf, &msgs).unwrap();
        assert_eq!(show(&decode_from(&buf).unwrap()), show(&msgs));
    }

    #[test]
    fn the_region_range_round_trips_and_is_bounded() {
        let msgs = sample();
        let mut buf = Vec::new();
        encode_into(&mut buf, &msgs).unwrap();
        let back = decode_from(&buf).unwrap();
        let StoreMsg::Peer(e) = &back[0] else { panic!("{back:?}") };
        assert_eq!((&e.start_key[..], &e.end_key[..]), (&b"k"[..], &b"t"[..]));
        let StoreMsg::Snapshot(c) = &back[3] else { panic!("{back:?}") };
        assert_eq!((&c.start_key[..], &c.end_key[..]), (&b"k"[..], &b"t"[..]));
        // A start key longer than any key is refused before it is copied.
        let StoreMsg::Peer(mut big) = msgs[2].clone() else { unreachable!() };
        big.start_key = Bytes::from(vec![b'x'; MAX_KEY_LEN + 1]);
        let mut buf = Vec::new();
        encode_into(&mut buf, &[StoreMsg::Peer(big)]).unwrap();
        assert!(matches!(
            decode_from(&buf),
            Err(CodecError::Decode(DecodeError::TooLarge { what: "region start", .. }))
        ));
    }

    #[test]
    fn a_batch_of_the_version_without_ranges_is_refused() {
        let mut buf = Vec::new();
        encode_into(&mut buf, &sample()).unwrap();
        buf[0] = 1;
        assert!(matches!(
            decode_from(&buf),
            Err(CodecError::Decode(DecodeError::Invalid { what: "raft batch version", value: 1 }))
        ));
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        let mut buf = Vec::new();
        encode_into(&mut buf, &sample()).unwrap();
        for cut in 0..buf.len() {
            assert!(decode_from(&buf[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = buf.clone();
        longer.push(0);
        assert!(decode_from(&longer).is_err());
    }

    #[test]
    fn flipped_bytes_never_panic_and_huge_counts_do_not_allocate() {
        let mut buf = Vec::new();
        encode_into(&mut buf, &sample()).unwrap();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut bad = buf.clone();
            let i = (x % bad.len() as u64) as usize;
            bad[i] ^= (x >> 32) as u8 | 1;
            let _ = decode_from(&bad);
        }
        // A count of 2^62 messages in a 12-byte body is refused up front.
        let mut huge = vec![VERSION];
        put_uvarint(&mut huge, 1 << 62);
        huge.extend_from_slice(&[TAG_PROBE, 1]);
        assert!(matches!(decode_from(&huge), Err(CodecError::Decode(DecodeError::TooLarge { .. }))));
    }
}
