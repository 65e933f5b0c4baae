//! The per-table bloom filter over user keys.
//!
//! A blocked filter: the bit array is cut into 512-bit lines (one cache
//! line) and all `k` probes of a key fall in one line, so a lookup costs one
//! cache miss instead of `k`. That costs a little accuracy against a plain
//! filter of the same size (about 1% false positives at 10 bits per key).
//!
//! ```text
//! filter = bits [64 * lines] | k u8 | lines u32
//! ```
//!
//! A key's 64-bit hash picks the line with its high 32 bits; its low 18
//! bits seed the probes `(a + i * b) mod 512`, `b` odd, for `i < k`.
//! An empty filter block means the table has no filter.

use ekv_proto::codec::Reader;

use crate::table::format::Corrupt;

const LINE_BITS: usize = 512;
const LINE_BYTES: usize = LINE_BITS / 8;
/// Most probes per key a filter may use (more only slows lookups down).
const MAX_PROBES: u8 = 30;

/// 64-bit hash of a user key. Only used in filters: its output is part of
/// the format, so it must never change.
pub(crate) fn hash(data: &[u8]) -> u64 {
    const MUL: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (data.len() as u64).wrapping_mul(MUL) ^ 0x2545_f491_4f6c_dd1d;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h ^ w).wrapping_mul(MUL);
        h ^= h >> 31;
    }
    let mut tail = [0u8; 8];
    let rest = chunks.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(MUL);
    // Final avalanche so every input bit reaches the line and probe bits.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Probes per key for `bits_per_key`: about `bits * ln 2`, which minimizes
/// false positives.
fn probes_for(bits_per_key: usize) -> u8 {
    ((bits_per_key * 69 + 50) / 100).clamp(1, MAX_PROBES as usize) as u8
}

#[inline]
fn line_of(h: u64, lines: u64) -> usize {
    (((h >> 32) * lines) >> 32) as usize
}

/// Calls `probe` with the bit index (within the line) of each of the `k`
/// probes of hash `h`; stops early when `probe` returns false.
#[inline]
fn for_each_probe(h: u64, k: u8, mut probe: impl FnMut(usize) -> bool) -> bool {
    let a = h as usize;
    let b = (h >> 9) as usize | 1;
    (0..k as usize).all(|i| probe(a.wrapping_add(i.wrapping_mul(b)) % LINE_BITS))
}

/// Appends a filter over the key hashes `hashes` with `bits_per_key` bits
/// each; appends nothing (no filter) if either is zero.
pub(crate) fn build(hashes: &[u64], bits_per_key: usize, out: &mut Vec<u8>) {
    if hashes.is_empty() || bits_per_key == 0 {
        return;
    }
    let lines = (hashes.len() * bits_per_key).div_ceil(LINE_BITS).clamp(1, u32::MAX as usize);
    let k = probes_for(bits_per_key);
    let start = out.len();
    out.resize(start + lines * LINE_BYTES, 0);
    let bits = &mut out[start..];
    for &h in hashes {
        let line = &mut bits[line_of(h, lines as u64) * LINE_BYTES..][..LINE_BYTES];
        for_each_probe(h, k, |bit| {
            line[bit / 8] |= 1 << (bit % 8);
            true
        });
    }
    out.push(k);
    out.extend_from_slice(&(lines as u32).to_le_bytes());
}

/// A decoded filter.
pub(crate) struct Filter {
    bits: Box<[u8]>,
    lines: u64,
    k: u8,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter").field("lines", &self.lines).field("k", &self.k).finish()
    }
}

impl Filter {
    /// Decodes a filter block; `None` for the empty block (no filter).
    pub(crate) fn decode(buf: &[u8]) -> Result<Option<Filter>, Corrupt> {
        if buf.is_empty() {
            return Ok(None);
        }
        let Some(body_len) = buf.len().checked_sub(5) else {
            return Err(Corrupt("filter shorter than its footer"));
        };
        let mut r = Reader::new(&buf[body_len..]);
        let k = r.u8("filter probes")?;
        let lines = r.u32_le("filter lines")? as usize;
        if lines == 0 || lines.checked_mul(LINE_BYTES) != Some(body_len) {
            return Err(Corrupt("filter size does not match its line count"));
        }
        if k == 0 || k > MAX_PROBES {
            return Err(Corrupt("filter probe count out of range"));
        }
        Ok(Some(Filter { bits: buf[..body_len].into(), lines: lines as u64, k }))
    }

    /// False if `user_key` is certainly not in the table.
    pub(crate) fn may_contain(&self, user_key: &[u8]) -> bool {
        let h = hash(user_key);
        let line = &self.bits[line_of(h, self.lines) * LINE_BYTES..][..LINE_BYTES];
        for_each_probe(h, self.k, |bit| line[bit / 8] & (1 << (bit % 8)) != 0)
    }
}
