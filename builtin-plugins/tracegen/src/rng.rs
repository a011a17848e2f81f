//! The generator's deterministic random source: xoshiro256** seeded by SplitMix64
//! (`rand_xoshiro`), whose output is fixed by the algorithm, so a seed gives the same
//! trace on every platform and across dependency upgrades.

use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256StarStar;

/// Deterministic random number generator.
pub struct Rng {
    inner: Xoshiro256StarStar,
}

impl Rng {
    /// Seeds the generator; every seed (including 0) gives a valid state.
    pub fn new(seed: u64) -> Self {
        Rng { inner: Xoshiro256StarStar::seed_from_u64(seed) }
    }

    /// Next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Uniform in `0..n` (`n` > 0; 0 yields 0).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    #[inline]
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// True with probability `per_mille / 1000`.
    #[inline]
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// A uniformly chosen element (`items` must not be empty).
    #[inline]
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// `n` random lowercase hex digits.
    pub fn hex(&mut self, n: usize) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        (0..n).map(|_| DIGITS[self.below(16) as usize] as char).collect()
    }
}
