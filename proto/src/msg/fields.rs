//! Field codecs shared by every message body, over [`crate::codec`]. Every
//! integer is a uvarint, every byte string length-prefixed, every list
//! count-prefixed; each getter bounds its length or count before reading.

use bytes::BufMut;

use crate::codec::{put_len_prefixed, put_uvarint, DecodeError, DecodeResult, Reader};
use crate::frame::FrameLimits;
use crate::{PeerId, PeerMeta, Region, RegionEpoch, StoreId};

pub(crate) fn put_u64(buf: &mut impl BufMut, v: u64) {
    put_uvarint(buf, v);
}

pub(crate) fn get_u64(r: &mut Reader<'_>, what: &'static str) -> DecodeResult<u64> {
    r.uvarint(what)
}

pub(crate) fn get_u32(r: &mut Reader<'_>, what: &'static str) -> DecodeResult<u32> {
    let v = r.uvarint(what)?;
    u32::try_from(v).map_err(|_| DecodeError::Invalid { what, value: v })
}

pub(crate) fn put_bool(buf: &mut impl BufMut, v: bool) {
    buf.put_u8(u8::from(v));
}

pub(crate) fn get_bool(r: &mut Reader<'_>, what: &'static str) -> DecodeResult<bool> {
    match r.u8(what)? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(DecodeError::Invalid { what, value: u64::from(v) }),
    }
}

pub(crate) fn put_bytes(buf: &mut impl BufMut, v: &[u8]) {
    put_len_prefixed(buf, v);
}

pub(crate) fn get_bytes(r: &mut Reader<'_>, what: &'static str, limit: usize) -> DecodeResult<Vec<u8>> {
    Ok(r.len_prefixed(what, limit)?.to_vec())
}

pub(crate) fn get_key(r: &mut Reader<'_>, l: &FrameLimits, what: &'static str) -> DecodeResult<Vec<u8>> {
    get_bytes(r, what, l.max_key)
}

pub(crate) fn get_value(r: &mut Reader<'_>, l: &FrameLimits, what: &'static str) -> DecodeResult<Vec<u8>> {
    get_bytes(r, what, l.max_value)
}

/// `0` for none, `1 | bytes` for some.
pub(crate) fn put_opt_bytes(buf: &mut impl BufMut, v: Option<&[u8]>) {
    match v {
        None => buf.put_u8(0),
        Some(b) => {
            buf.put_u8(1);
            put_bytes(buf, b);
        }
    }
}

pub(crate) fn get_opt_bytes(
    r: &mut Reader<'_>,
    what: &'static str,
    limit: usize,
) -> DecodeResult<Option<Vec<u8>>> {
    Ok(if get_bool(r, what)? { Some(get_bytes(r, what, limit)?) } else { None })
}

pub(crate) fn put_str(buf: &mut impl BufMut, v: &str) {
    put_bytes(buf, v.as_bytes());
}

pub(crate) fn get_str(r: &mut Reader<'_>, what: &'static str, limit: usize) -> DecodeResult<String> {
    let b = r.len_prefixed(what, limit)?;
    match std::str::from_utf8(b) {
        Ok(s) => Ok(s.to_owned()),
        Err(e) => Err(DecodeError::Invalid { what, value: e.valid_up_to() as u64 }),
    }
}

pub(crate) fn put_epoch(buf: &mut impl BufMut, e: &RegionEpoch) {
    put_u64(buf, e.conf_ver);
    put_u64(buf, e.version);
}

pub(crate) fn get_epoch(r: &mut Reader<'_>) -> DecodeResult<RegionEpoch> {
    Ok(RegionEpoch { conf_ver: get_u64(r, "conf_ver")?, version: get_u64(r, "version")? })
}

pub(crate) fn put_peer(buf: &mut impl BufMut, p: &PeerMeta) {
    put_u64(buf, p.id.get());
    put_u64(buf, p.store_id.get());
}

pub(crate) fn get_peer(r: &mut Reader<'_>) -> DecodeResult<PeerMeta> {
    Ok(PeerMeta { id: PeerId(get_u64(r, "peer id")?), store_id: StoreId(get_u64(r, "store id")?) })
}

pub(crate) fn put_opt_peer(buf: &mut impl BufMut, p: Option<&PeerMeta>) {
    match p {
        None => buf.put_u8(0),
        Some(p) => {
            buf.put_u8(1);
            put_peer(buf, p);
        }
    }
}

pub(crate) fn get_opt_peer(r: &mut Reader<'_>, what: &'static str) -> DecodeResult<Option<PeerMeta>> {
    Ok(if get_bool(r, what)? { Some(get_peer(r)?) } else { None })
}

pub(crate) fn put_region(buf: &mut impl BufMut, region: &Region) {
    region.encode_into(buf);
}

pub(crate) fn get_region(r: &mut Reader<'_>) -> DecodeResult<Region> {
    Region::decode_from(r)
}

/// `count | item*`.
pub(crate) fn put_list<B: BufMut, T>(buf: &mut B, items: &[T], mut put: impl FnMut(&mut B, &T)) {
    put_u64(buf, items.len() as u64);
    for item in items {
        put(buf, item);
    }
}

/// Reads a list written by [`put_list`], refusing a count above `limit`
/// before reserving. The reservation is also capped by the bytes left, since
/// every item takes at least one byte: a lying count cannot allocate more
/// than the frame is long.
pub(crate) fn get_list<'a, T>(
    r: &mut Reader<'a>,
    what: &'static str,
    limit: usize,
    mut get: impl FnMut(&mut Reader<'a>) -> DecodeResult<T>,
) -> DecodeResult<Vec<T>> {
    let n = r.uvarint(what)?;
    if n > limit as u64 {
        return Err(DecodeError::TooLarge { what, len: n, limit: limit as u64 });
    }
    let mut out = Vec::with_capacity((n as usize).min(r.remaining()));
    for _ in 0..n {
        out.push(get(r)?);
    }
    Ok(out)
}
