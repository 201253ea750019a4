//! The random draws of power-of-two-choices: two distinct endpoints, uniformly. Shared by the
//! requests of one balancer without a lock; a lost update between two racing draws only
//! repeats a number, which does not matter for spreading load.

use std::sync::atomic::{AtomicU64, Ordering};

/// A xorshift64* generator.
pub(super) struct Draw(AtomicU64);

impl Draw {
    /// A generator seeded from the wall clock (odd, so never the all-zero state).
    pub(super) fn seeded() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64)
            | 1;
        Self(AtomicU64::new(seed))
    }

    /// Two distinct indices below `k` (k ≥ 2), uniformly.
    pub(super) fn two_of(&self, k: usize) -> (usize, usize) {
        let i = self.below(k);
        let j = self.below(k - 1);
        (i, if j >= i { j + 1 } else { j })
    }

    /// A random index below `n`, from the high bits of a xorshift64* draw (its low bits are
    /// weak); plenty for drawing endpoints.
    fn below(&self, n: usize) -> usize {
        let mut x = self.0.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0.store(x, Ordering::Relaxed);
        let high = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32;
        ((high * n as u64) >> 32) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_of_draws_distinct_indices_covering_all_pairs() {
        let draw = Draw::seeded();
        let mut pairs = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let (i, j) = draw.two_of(4);
            assert!(i != j && i < 4 && j < 4);
            pairs.insert((i, j));
        }
        assert_eq!(pairs.len(), 12, "{pairs:?}");
    }
}
