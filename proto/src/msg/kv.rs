//! Raw KV requests and responses. Every request starts with a
//! [`RequestContext`] (cf and epoch); the region id is in the frame header.
//! Keys are bounded by [`FrameLimits::max_key`], values by
//! [`FrameLimits::max_value`], batches by [`FrameLimits::max_batch`], scan
//! limits and scan answers by [`FrameLimits::max_scan_limit`].

use bytes::BufMut;

use super::fields::{
    get_bool, get_key, get_list, get_opt_bytes, get_u32, get_value, put_bool, put_bytes, put_list,
    put_opt_bytes, put_u64,
};
use super::{empty_message, Message, MsgType, RequestContext};
use crate::codec::{DecodeError, DecodeResult, Reader};
use crate::frame::FrameLimits;

/// A key and its value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvPair {
    /// The key.
    pub key: Vec<u8>,
    /// The value; empty in a key-only scan.
    pub value: Vec<u8>,
}

impl KvPair {
    fn put(buf: &mut impl BufMut, p: &KvPair) {
        put_bytes(buf, &p.key);
        put_bytes(buf, &p.value);
    }

    fn get(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<KvPair> {
        Ok(KvPair { key: get_key(r, l, "key")?, value: get_value(r, l, "value")? })
    }
}

fn put_keys(buf: &mut impl BufMut, keys: &[Vec<u8>]) {
    put_list(buf, keys, |b, k| put_bytes(b, k));
}

fn get_keys(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Vec<Vec<u8>>> {
    get_list(r, "batch", l.max_batch, |r| get_key(r, l, "key"))
}

/// Reads one key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GetRequest {
    /// Cf and epoch.
    pub ctx: RequestContext,
    /// The key.
    pub key: Vec<u8>,
}

impl Message for GetRequest {
    const TYPE: MsgType = MsgType::GetRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        self.ctx.encode_into(buf);
        put_bytes(buf, &self.key);
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { ctx: RequestContext::decode_from(r)?, key: get_key(r, l, "key")? })
    }
}

/// Answers [`GetRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GetResponse {
    /// The value, `None` if the key is absent.
    pub value: Option<Vec<u8>>,
}

impl Message for GetResponse {
    const TYPE: MsgType = MsgType::GetResponse;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_opt_bytes(buf, self.value.as_deref());
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { value: get_opt_bytes(r, "value", l.max_value)? })
    }
}

/// Reads several keys of one region.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchGetRequest {
    /// Cf and epoch.
    pub ctx: RequestContext,
    /// The keys, at most `max_batch`.
    pub keys: Vec<Vec<u8>>,
}

impl Message for BatchGetRequest {
    const TYPE: MsgType = MsgType::BatchGetRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        self.ctx.encode_into(buf);
        put_keys(buf, &self.keys);
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { ctx: RequestContext::decode_from(r)?, keys: get_keys(r, l)? })
    }
}

/// Answers [`BatchGetRequest`] with the keys found, in request order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchGetResponse {
    /// Found pairs; absent keys are left out.
    pub pairs: Vec<KvPair>,
}

impl Message for BatchGetResponse {
    const TYPE: MsgType = MsgType::BatchGetResponse;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_list(buf, &self.pairs, KvPair::put);
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { pairs: get_list(r, "batch", l.max_batch, |r| KvPair::get(r, l))? })
    }
}

/// Reads up to `limit` pairs of `[start, end)` within the region, forward or
/// in reverse (from the greatest key below `end`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanRequest {
    /// Cf and epoch.
    pub ctx: RequestContext,
    /// Inclusive start; empty means the region start.
    pub start: Vec<u8>,
    /// Exclusive end; empty means the region end.
    pub end: Vec<u8>,
    /// Most pairs to return, at most `max_scan_limit`.
    pub limit: u32,
    /// Descending key order.
    pub reverse: bool,
    /// Return keys with empty values.
    pub key_only: bool,
}

impl Message for ScanRequest {
    const TYPE: MsgType = MsgType::ScanRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        self.ctx.encode_into(buf);
        put_bytes(buf, &self.start);
        put_bytes(buf, &self.end);
        put_u64(buf, u64::from(self.limit));
        put_bool(buf, self.reverse);
        put_bool(buf, self.key_only);
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        let ctx = RequestContext::decode_from(r)?;
        let start = get_key(r, l, "scan start")?;
        let end = get_key(r, l, "scan end")?;
        let limit = get_u32(r, "scan limit")?;
        if limit > l.max_scan_limit {
            return Err(DecodeError::TooLarge {
                what: "scan limit",
                len: u64::from(limit),
                limit: u64::from(l.max_scan_limit),
            });
        }
        Ok(Self {
            ctx,
            start,
            end,
            limit,
            reverse: get_bool(r, "reverse")?,
            key_only: get_bool(r, "key_only")?,
        })
    }
}

/// Answers [`ScanRequest`], in scan order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanResponse {
    /// The pairs, at most the request's limit.
    pub pairs: Vec<KvPair>,
}

impl Message for ScanResponse {
    const TYPE: MsgType = MsgType::ScanResponse;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_list(buf, &self.pairs, KvPair::put);
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { pairs: get_list(r, "scan pairs", l.max_scan_limit as usize, |r| KvPair::get(r, l))? })
    }
}

/// Writes one key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutRequest {
    /// Cf and epoch.
    pub ctx: RequestContext,
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
}

impl Message for PutRequest {
    const TYPE: MsgType = MsgType::PutRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        self.ctx.encode_into(buf);
        put_bytes(buf, &self.key);
        put_bytes(buf, &self.value);
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self {
            ctx: RequestContext::decode_from(r)?,
            key: get_key(r, l, "key")?,
            value: get_value(r, l, "value")?,
        })
    }
}

empty_message!(
    /// Answers [`PutRequest`]: applied.
    PutResponse
);

/// Writes several pairs of one region atomically.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchPutRequest {
    /// Cf and epoch.
    pub ctx: RequestContext,
    /// The pairs, at most `max_batch`.
    pub pairs: Vec<KvPair>,
}

impl Message for BatchPutRequest {
    const TYPE: MsgType = MsgType::BatchPutRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        self.ctx.encode_into(buf);
        put_list(buf, &self.pairs, KvPair::put);
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self {
            ctx: RequestContext::decode_from(r)?,
            pairs: get_list(r, "batch", l.max_batch, |r| KvPair::get(r, l))?,
        })
    }
}

empty_message!(
    /// Answers [`BatchPutRequest`]: applied.
    BatchPutResponse
);

/// Deletes one key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRequest {
    /// Cf and epoch.
    pub ctx: RequestContext,
    /// The key.
    pub key: Vec<u8>,
}

impl Message for DeleteRequest {
    const TYPE: MsgType = MsgType::DeleteRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        self.ctx.encode_into(buf);
        put_bytes(buf, &self.key);
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { ctx: RequestContext::decode_from(r)?, key: get_key(r, l, "key")? })
    }
}

empty_message!(
    /// Answers [`DeleteRequest`]: applied (whether or not the key existed).
    DeleteResponse
);

/// Deletes several keys of one region atomically.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchDeleteRequest {
    /// Cf and epoch.
    pub ctx: RequestContext,
    /// The keys, at most `max_batch`.
    pub keys: Vec<Vec<u8>>,
}

impl Message for BatchDeleteRequest {
    const TYPE: MsgType = MsgType::BatchDeleteRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        self.ctx.encode_into(buf);
        put_keys(buf, &self.keys);
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self { ctx: RequestContext::decode_from(r)?, keys: get_keys(r, l)? })
    }
}

empty_message!(
    /// Answers [`BatchDeleteRequest`]: applied.
    BatchDeleteResponse
);

/// Deletes every key of `[start, end)` within the region.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeRequest {
    /// Cf and epoch.
    pub ctx: RequestContext,
    /// Inclusive start.
    pub start: Vec<u8>,
    /// Exclusive end; empty means the region end.
    pub end: Vec<u8>,
}

impl Message for DeleteRangeRequest {
    const TYPE: MsgType = MsgType::DeleteRangeRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        self.ctx.encode_into(buf);
        put_bytes(buf, &self.start);
        put_bytes(buf, &self.end);
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self {
            ctx: RequestContext::decode_from(r)?,
            start: get_key(r, l, "range start")?,
            end: get_key(r, l, "range end")?,
        })
    }
}

empty_message!(
    /// Answers [`DeleteRangeRequest`]: applied.
    DeleteRangeResponse
);

/// Sets `key` to `new` if its current value equals `expected`, atomically.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompareAndSwapRequest {
    /// Cf and epoch.
    pub ctx: RequestContext,
    /// The key.
    pub key: Vec<u8>,
    /// The value required; `None` requires the key to be absent.
    pub expected: Option<Vec<u8>>,
    /// The value to set; `None` deletes the key.
    pub new: Option<Vec<u8>>,
}

impl Message for CompareAndSwapRequest {
    const TYPE: MsgType = MsgType::CompareAndSwapRequest;

    fn encode_into(&self, buf: &mut impl BufMut) {
        self.ctx.encode_into(buf);
        put_bytes(buf, &self.key);
        put_opt_bytes(buf, self.expected.as_deref());
        put_opt_bytes(buf, self.new.as_deref());
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self {
            ctx: RequestContext::decode_from(r)?,
            key: get_key(r, l, "key")?,
            expected: get_opt_bytes(r, "expected value", l.max_value)?,
            new: get_opt_bytes(r, "new value", l.max_value)?,
        })
    }
}

/// Answers [`CompareAndSwapRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompareAndSwapResponse {
    /// True when the swap was applied.
    pub succeeded: bool,
    /// The value before the request (`None` if absent), whether or not it succeeded.
    pub previous: Option<Vec<u8>>,
}

impl Message for CompareAndSwapResponse {
    const TYPE: MsgType = MsgType::CompareAndSwapResponse;

    fn encode_into(&self, buf: &mut impl BufMut) {
        put_bool(buf, self.succeeded);
        put_opt_bytes(buf, self.previous.as_deref());
    }

    fn decode_from(r: &mut Reader<'_>, l: &FrameLimits) -> DecodeResult<Self> {
        Ok(Self {
            succeeded: get_bool(r, "succeeded")?,
            previous: get_opt_bytes(r, "previous value", l.max_value)?,
        })
    }
}
