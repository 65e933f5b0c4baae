//! Store-to-store raft traffic, opaque here. The frame body of a
//! [`RaftMessage`] is one round's raft messages to one destination shard in
//! `ekv-net`'s own encoding (raft-rs messages keep their protobuf encoding
//! inside it); a [`SnapshotChunk`] is a piece of a snapshot stream, a type
//! of its own so that a server routes it to the rate-limited snapshot path.
//! This crate never links raft; it only bounds and carries the bytes.

use bytes::BufMut;

use super::fields::{get_bytes, put_bytes};
use super::{Message, MsgType};
use crate::codec::{DecodeResult, Reader};
use crate::frame::FrameLimits;

/// Raft messages for one destination shard, in net's encoding. Body:
/// `payload len-prefixed`, at most `max_frame_body` (the prefix lets a
/// truncated body be told from a short one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaftMessage {
    /// The encoded batch.
    pub payload: Vec<u8>,
}

impl Message for RaftMessage {
    const TYPE: MsgType = MsgType::RaftMessage;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_bytes(buf, &self.payload);
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { payload: get_bytes(r, "raft payload", l.max_frame_body as usize)? })
    }
}

/// One piece of a snapshot, in net's encoding. Body: `payload
/// len-prefixed`, at most `max_frame_body`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// The encoded chunk.
    pub payload: Vec<u8>,
}

impl Message for SnapshotChunk {
    const TYPE: MsgType = MsgType::SnapshotChunk;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_bytes(buf, &self.payload);
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { payload: get_bytes(r, "snapshot payload", l.max_frame_body as usize)? })
    }
}
