//! Key choosers: which record an operation touches. YCSB's generators, so
//! that runs compare with published YCSB figures: uniform, scrambled
//! zipfian (theta 0.99) and latest (zipfian over recency).

use clap::ValueEnum;
use rand::Rng;

/// YCSB's `zipfian_constant`.
pub const ZIPFIAN_THETA: f64 = 0.99;
/// The item space YCSB's scrambled zipfian draws ranks from before hashing
/// them onto the records (`ScrambledZipfianGenerator.ITEM_COUNT`).
const SCRAMBLED_ITEMS: u64 = 10_000_000_000;
/// zeta(`SCRAMBLED_ITEMS`, 0.99), precomputed by YCSB (`ZETAN`): summing
/// 10^10 terms at start-up would take minutes.
const SCRAMBLED_ZETAN: f64 = 26.469_028_201_783_02;
/// Draws of the scrambled zipfian before it gives up finding a record that
/// exists and folds the draw into range instead.
const REDRAWS: usize = 16;

/// How keys are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Distribution {
    /// Every existing record alike.
    Uniform,
    /// YCSB's scrambled zipfian: zipfian popularity (theta 0.99) with the
    /// popular records scattered over the key space.
    Zipfian,
    /// Zipfian over recency: the newest record is the most popular.
    Latest,
}

impl Distribution {
    /// The name used on the command line and in case names.
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Uniform => "uniform",
            Distribution::Zipfian => "zipfian",
            Distribution::Latest => "latest",
        }
    }
}

/// Zipfian over `[0, items)`, 0 the most popular: Gray et al., "Quickly
/// Generating Billion-Record Synthetic Databases" (SIGMOD 1994), as YCSB's
/// `ZipfianGenerator` implements it.
#[derive(Debug, Clone)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    /// 1 / (1 - theta).
    alpha: f64,
    /// zeta(items, theta) = sum over i in 1..=items of 1 / i^theta.
    zetan: f64,
    eta: f64,
}

impl Zipfian {
    /// Zipfian over `[0, items)`; computes zeta in O(items).
    ///
    /// # Panics
    /// If `items` is 0 or `theta` is not in (0, 1).
    pub fn new(items: u64, theta: f64) -> Self {
        Self::with_zetan(items, theta, zeta(0, items, theta, 0.0))
    }

    fn with_zetan(items: u64, theta: f64, zetan: f64) -> Self {
        assert!(items > 0, "a zipfian needs at least one item");
        assert!(theta > 0.0 && theta < 1.0, "zipfian theta {theta} outside (0, 1)");
        let mut z = Self { items, theta, alpha: 1.0 / (1.0 - theta), zetan, eta: 0.0 };
        z.eta = z.eta();
        z
    }

    fn eta(&self) -> f64 {
        let zeta2 = 1.0 + 0.5f64.powf(self.theta);
        (1.0 - (2.0 / self.items as f64).powf(1.0 - self.theta)) / (1.0 - zeta2 / self.zetan)
    }

    /// Extends the item space to `items` (never shrinks it), adding the new
    /// terms of zeta: O(new items).
    pub fn grow(&mut self, items: u64) {
        if items > self.items {
            self.zetan = zeta(self.items, items, self.theta, self.zetan);
            self.items = items;
            self.eta = self.eta();
        }
    }

    /// The item for a uniform draw `u` in [0, 1).
    pub fn sample(&self, u: f64) -> u64 {
        let uz = u * self.zetan;
        if uz < 1.0 || self.items == 1 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1;
        }
        let v = self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha);
        (v as u64).min(self.items - 1)
    }
}

/// zeta(to) given zeta(from) = `initial`.
fn zeta(from: u64, to: u64, theta: f64, initial: f64) -> f64 {
    (from..to).fold(initial, |sum, i| sum + 1.0 / ((i + 1) as f64).powf(theta))
}

/// YCSB's `Utils.fnvhash64`: FNV-1a over the 8 little-endian bytes, sign
/// bit cleared (YCSB takes the absolute value of a Java long).
pub fn fnv_hash64(x: u64) -> u64 {
    const OFFSET_BASIS: u64 = 0xCBF2_9CE4_8422_2325;
    const PRIME: u64 = 1_099_511_628_211;
    let h = x.to_le_bytes().iter().fold(OFFSET_BASIS, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    h & (u64::MAX >> 1)
}

/// Picks the record an operation touches, among the records that exist.
#[derive(Debug, Clone)]
pub enum KeyChooser {
    /// Uniform over the existing records.
    Uniform,
    /// YCSB's scrambled zipfian over a fixed item space: the popular items
    /// stay put as records are inserted; draws past the existing records
    /// are drawn again.
    Zipfian {
        /// Records the scrambled ranks are hashed onto.
        items: u64,
        ranks: Zipfian,
    },
    /// Zipfian over recency: rank 0 is the newest record.
    Latest(Zipfian),
}

impl KeyChooser {
    /// A chooser over `records` loaded records. `inserts` says whether the
    /// workload adds records: a zipfian chooser then spreads its popularity
    /// over twice as many records (YCSB sizes it by the expected inserts),
    /// so that new records get their share.
    pub fn new(distribution: Distribution, records: u64, inserts: bool) -> Self {
        let records = records.max(1);
        match distribution {
            Distribution::Uniform => KeyChooser::Uniform,
            Distribution::Zipfian => KeyChooser::Zipfian {
                items: if inserts { records.saturating_mul(2) } else { records },
                ranks: Zipfian::with_zetan(SCRAMBLED_ITEMS, ZIPFIAN_THETA, SCRAMBLED_ZETAN),
            },
            Distribution::Latest => KeyChooser::Latest(Zipfian::new(records, ZIPFIAN_THETA)),
        }
    }

    /// A record in `[0, existing)`.
    ///
    /// # Panics
    /// If `existing` is 0.
    pub fn next(&mut self, rng: &mut impl Rng, existing: u64) -> u64 {
        assert!(existing > 0, "no record to choose from");
        match self {
            KeyChooser::Uniform => rng.gen_range(0..existing),
            KeyChooser::Zipfian { items, ranks } => {
                let mut record = 0;
                for _ in 0..REDRAWS {
                    record = fnv_hash64(ranks.sample(rng.gen())) % *items;
                    if record < existing {
                        return record;
                    }
                }
                record % existing
            }
            KeyChooser::Latest(ranks) => {
                ranks.grow(existing);
                let age = ranks.sample(rng.gen()).min(existing - 1);
                existing - 1 - age
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    const DRAWS: usize = 200_000;

    fn histogram(chooser: &mut KeyChooser, existing: u64, seed: u64) -> Vec<u64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut counts = vec![0u64; existing as usize];
        for _ in 0..DRAWS {
            let r = chooser.next(&mut rng, existing);
            assert!(r < existing, "record {r} out of [0, {existing})");
            counts[r as usize] += 1;
        }
        counts
    }

    fn share(count: u64) -> f64 {
        count as f64 / DRAWS as f64
    }

    #[test]
    fn zipfian_matches_its_probabilities() {
        // P(rank) = 1 / (rank+1)^theta / zeta(n): 1000 items, zeta ~ 7.73.
        let z = Zipfian::new(1000, ZIPFIAN_THETA);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut counts = [0u64; 3];
        for _ in 0..DRAWS {
            let r = z.sample(rng.gen());
            assert!(r < 1000);
            if let Some(c) = counts.get_mut(r as usize) {
                *c += 1;
            }
        }
        for (rank, &c) in counts.iter().enumerate() {
            let want = 1.0 / ((rank + 1) as f64).powf(ZIPFIAN_THETA) / z.zetan;
            assert!((share(c) - want).abs() < 0.01, "rank {rank}: {} vs {want}", share(c));
        }
    }

    #[test]
    fn growing_zeta_equals_computing_it_afresh() {
        let mut z = Zipfian::new(100, ZIPFIAN_THETA);
        z.grow(5000);
        z.grow(10); // never shrinks
        let fresh = Zipfian::new(5000, ZIPFIAN_THETA);
        assert_eq!(z.items, 5000);
        assert!((z.zetan - fresh.zetan).abs() < 1e-9);
        assert!((z.eta - fresh.eta).abs() < 1e-9);
    }

    #[test]
    fn scrambled_zipfian_is_skewed_and_in_range() {
        let mut chooser = KeyChooser::new(Distribution::Zipfian, 1000, false);
        let mut counts = histogram(&mut chooser, 1000, 7);
        counts.sort_unstable_by(|a, b| b.cmp(a));
        // The top rank alone has 1/zeta(10^10) = 3.8% of the draws; the
        // ranks past the records hash uniformly onto them.
        let hottest = share(counts[0]);
        assert!((0.03..0.06).contains(&hottest), "hottest record's share {hottest}");
        assert!(share(counts[1]) > 0.015, "second {}", share(counts[1]));
        // A uniform chooser's hottest of 1000 is near 0.1%.
        let mut uniform = KeyChooser::new(Distribution::Uniform, 1000, false);
        let top_uniform = histogram(&mut uniform, 1000, 7).into_iter().max().unwrap();
        assert!(share(top_uniform) < 0.003, "uniform hottest {}", share(top_uniform));
    }

    #[test]
    fn scrambled_zipfian_with_inserts_chooses_only_existing_records() {
        // Space for 2000 records, 1200 exist: draws past them are redrawn.
        let mut chooser = KeyChooser::new(Distribution::Zipfian, 1000, true);
        let counts = histogram(&mut chooser, 1200, 3);
        assert!(counts[1000..].iter().sum::<u64>() > 0, "inserted records get chosen too");
    }

    #[test]
    fn latest_favours_recent_records() {
        let mut chooser = KeyChooser::new(Distribution::Latest, 1000, true);
        // Records were inserted since the load: the newest is 1499.
        let counts = histogram(&mut chooser, 1500, 11);
        let newest = counts[1499];
        assert_eq!(counts.iter().max(), Some(&newest), "the newest record is the most popular");
        let newest_ten: u64 = counts[1490..].iter().sum();
        // zeta(10) / zeta(1500) = 2.96 / 8.16 = 36%.
        assert!(share(newest_ten) > 0.3, "newest ten {}", share(newest_ten));
        let oldest_half: u64 = counts[..750].iter().sum();
        assert!(share(oldest_half) < 0.15, "oldest half {}", share(oldest_half));
    }

    #[test]
    fn fnv_hash_is_ycsbs() {
        // FNV-1a 64 of eight zero bytes, sign bit cleared.
        assert_eq!(fnv_hash64(0), 0x28C7_F832_281A_39C5);
        assert_ne!(fnv_hash64(1), fnv_hash64(2));
        assert!(fnv_hash64(u64::MAX) <= i64::MAX as u64);
    }
}
