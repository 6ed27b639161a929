//! Strict base64url (RFC 4648 §5, no padding) decoding of JWS compact segments.
//!
//! We decode the segments ourselves, before josekit sees the token, so that every malformed token
//! is reported as malformed with one consistent rule: only the URL-safe alphabet, no padding, no
//! whitespace, and no non-zero leftover bits (so each byte string has exactly one encoding).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Decodes one unpadded base64url segment, or returns `None` if it is not canonical base64url.
///
/// The `base64` crate's URL-safe no-pad engine is exactly that rule: it refuses padding
/// (`DecodePaddingMode::RequireNone`), bytes outside the alphabet and whitespace, and non-zero
/// trailing bits (`decode_allow_trailing_bits` is off). The tests below hold it to that.
pub(crate) fn decode(input: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(input).ok()
}

/// Encodes bytes as unpadded base64url.
#[cfg(test)]
pub(crate) fn encode(input: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_all_lengths() {
        let data: Vec<u8> = (0u8..=255).collect();
        for len in 0..40 {
            let slice = &data[..len];
            let enc = encode(slice);
            assert!(!enc.contains('='));
            assert_eq!(decode(&enc).as_deref(), Some(slice), "len {len}");
        }
        assert_eq!(encode(b"\xfb\xff"), "-_8");
    }

    #[test]
    fn two_and_three_character_tails_need_zero_spare_bits() {
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for (i, a) in alphabet.chars().enumerate() {
            for (j, b) in alphabet.chars().enumerate() {
                let two = format!("{a}{b}");
                assert_eq!(decode(&two).is_some(), j & 0xf == 0, "{two}");
                if let Some(bytes) = decode(&two) {
                    assert_eq!(bytes, vec![((i << 2) | (j >> 4)) as u8]);
                }
                let three = format!("AA{a}{b}").split_off(1);
                assert_eq!(decode(&three).is_some(), j & 0x3 == 0, "{three}");
            }
        }
    }

    #[test]
    fn refuses_non_canonical_and_foreign_input() {
        // Padding, standard alphabet, whitespace and an impossible length.
        for bad in ["QQ==", "+/8", "QQ Q", "Q", "QUJD\n", "é"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        // "QR" decodes to the same byte as "QQ" if the leftover bits were ignored.
        assert_eq!(decode("QQ"), Some(b"A".to_vec()));
        assert_eq!(decode("QR"), None);
    }
}
