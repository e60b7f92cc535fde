//! FNV-1a, 64 bit: a tiny, stable hash for the offline backend's deterministic choices.

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// An FNV-1a 64-bit hasher whose output never changes between builds or platforms.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fnv64(u64);

impl Fnv64 {
    /// A hasher at the FNV offset basis.
    pub(super) fn new() -> Self {
        Self(OFFSET_BASIS)
    }

    /// Feeds raw bytes.
    pub(super) fn bytes(mut self, bytes: &[u8]) -> Self {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(PRIME);
        }
        self
    }

    /// Feeds an integer, little-endian.
    pub(super) fn u64(self, value: u64) -> Self {
        self.bytes(&value.to_le_bytes())
    }

    /// Feeds a string with its length first, so `("ab", "c")` and `("a", "bc")` differ.
    pub(super) fn str(self, value: &str) -> Self {
        self.u64(value.len() as u64).bytes(value.as_bytes())
    }

    /// The hash so far.
    pub(super) fn finish(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_fnv1a_test_vectors() {
        assert_eq!(Fnv64::new().finish(), 0xcbf2_9ce4_8422_2325);
        assert_eq!(Fnv64::new().bytes(b"a").finish(), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            Fnv64::new().bytes(b"foobar").finish(),
            0x8594_4171_f739_67e8
        );
    }

    #[test]
    fn length_prefixes_keep_string_boundaries_apart() {
        let left = Fnv64::new().str("ab").str("c").finish();
        let right = Fnv64::new().str("a").str("bc").finish();
        assert_ne!(left, right);
    }
}
