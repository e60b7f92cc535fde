//! A tiny random source for backoff jitter (SplitMix64): not cryptographic, just spread.
//!
//! Jitter only has to keep clients from retrying in lockstep, so no `rand` crate is needed.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

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
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
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
    fn generators_seeded_from_time_differ_even_when_made_together() {
        let mut a = SplitMix64::from_time();
        let mut b = SplitMix64::from_time();
        assert_ne!(a.next_u64(), b.next_u64());
    }
}
