//! A cheap hasher for maps keyed by ids.

/// Hashing for maps keyed by ids the meta service hands out: a multiply
/// spreads them well enough, at a fraction of SipHash's cost.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHash;

#[derive(Debug, Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}
