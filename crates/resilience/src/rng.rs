//! SplitMix64, the mesh's one small random source: not cryptographic, just spread.
//!
//! [`SplitMix64`] feeds backoff jitter, which only has to keep clients from retrying in
//! lockstep, so no `rand` crate is needed; [`mix`], its output function on its own, is the
//! counter-based draw of the turn order and of session ID suffixes (same input, same output).

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

/// The golden-ratio increment SplitMix64 adds to its state at every step.
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Added to every seed so that sources made in the same nanosecond still differ.
static SEED_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    /// The generator's whole state.
    state: u64,
}

impl SplitMix64 {
    /// A generator with a fixed seed (same seed, same sequence).
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A generator seeded from the wall clock and a process-wide counter.
    pub fn from_time() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        let count = SEED_COUNTER.fetch_add(1, Ordering::Relaxed);
        Self::new(nanos ^ count.wrapping_mul(0xA076_1D64_78BD_642F))
    }

    /// The next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        let draw = mix(self.state);
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        draw
    }
}

/// SplitMix64's output for state `x`: a good 64-bit mix for a counter-based draw
/// (`mix(seed)` is the first number of `SplitMix64::new(seed)`).
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        let first: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let second: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        assert_eq!(first, second);
    }

    #[test]
    fn the_sequence_is_splitmix64s() {
        // The reference values of SplitMix64 for seed 1234567 (Vigna's splitmix64.c).
        let mut rng = SplitMix64::new(1_234_567);
        let draws: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        assert_eq!(
            draws,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423
            ]
        );
    }

    #[test]
    fn mix_is_the_first_draw_of_a_generator_seeded_with_its_input() {
        for seed in [0, 1, 42, u64::MAX] {
            assert_eq!(mix(seed), SplitMix64::new(seed).next_u64(), "{seed}");
        }
    }

    #[test]
    fn generators_seeded_from_time_differ_even_when_made_together() {
        let mut a = SplitMix64::from_time();
        let mut b = SplitMix64::from_time();
        assert_ne!(a.next_u64(), b.next_u64());
    }
}
