//! Base64url without padding (RFC 7515 section 2), the one encoding of the JWS compact form and of JWKs.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Encodes bytes as base64url without padding.
pub(crate) fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding; `None` for any other text (padding, `+`, `/`, stray bits).
pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// Decodes base64url into exactly `N` bytes; `None` for bad text or another length.
pub(crate) fn decode_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    decode(text)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_without_padding() {
        let text = encode(b"\xfb\xff\x01");
        assert_eq!(text, "-_8B");
        assert_eq!(decode(&text).as_deref(), Some(&b"\xfb\xff\x01"[..]));
    }

    #[test]
    fn padded_or_standard_alphabet_text_is_rejected() {
        assert_eq!(decode("-_8="), None);
        assert_eq!(decode("+/8B"), None);
        assert_eq!(decode("a"), None);
    }

    #[test]
    fn non_canonical_trailing_bits_are_rejected() {
        // "AB" encodes one byte; "AA" is its canonical form, "AB" sets a stray bit.
        assert_eq!(decode("AA").as_deref(), Some(&[0u8][..]));
        assert_eq!(decode("AB"), None);
    }

    #[test]
    fn decode_array_requires_the_exact_length() {
        assert_eq!(decode_array::<2>(&encode(&[1, 2])), Some([1, 2]));
        assert_eq!(decode_array::<3>(&encode(&[1, 2])), None);
    }
}
