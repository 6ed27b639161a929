//! Strict base64url (RFC 4648 §5, no padding) decoding of JWS compact segments.
//!
//! We decode the segments ourselves, before josekit sees the token, so that every malformed token
//! is reported as malformed with one consistent rule: only the URL-safe alphabet, no padding, no
//! whitespace, and no non-zero leftover bits (so each byte string has exactly one encoding).

/// Maps each byte to its 6-bit value, or 0xff for bytes outside the URL-safe alphabet.
const DECODE: [u8; 256] = {
    let mut table = [0xff_u8; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut i = 0;
    while i < 64 {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Decodes one unpadded base64url segment, or returns `None` if it is not canonical base64url.
pub(crate) fn decode(input: &str) -> Option<Vec<u8>> {
    let bytes = input.as_bytes();
    // A single leftover character carries only 6 bits and cannot encode a byte.
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3 + 2);
    let mut chunks = bytes.chunks_exact(4);
    for chunk in &mut chunks {
        let (a, b, c, d) = (
            DECODE[usize::from(chunk[0])],
            DECODE[usize::from(chunk[1])],
            DECODE[usize::from(chunk[2])],
            DECODE[usize::from(chunk[3])],
        );
        // Any invalid byte has the high bit set, so one test covers all four.
        if (a | b | c | d) & 0x80 != 0 {
            return None;
        }
        let n = (u32::from(a) << 18) | (u32::from(b) << 12) | (u32::from(c) << 6) | u32::from(d);
        out.extend_from_slice(&n.to_be_bytes()[1..]);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut n: u32 = 0;
        for &c in rest {
            let v = DECODE[usize::from(c)];
            if v & 0x80 != 0 {
                return None;
            }
            n = (n << 6) | u32::from(v);
        }
        // Two characters carry 12 bits for one byte, three carry 18 bits for two; the leftover
        // bits must be zero, otherwise two spellings would decode to the same bytes.
        let (bytes_out, spare_bits) = if rest.len() == 2 { (1, 4) } else { (2, 2) };
        if n & ((1 << spare_bits) - 1) != 0 {
            return None;
        }
        let n = n >> spare_bits;
        let be = n.to_be_bytes();
        out.extend_from_slice(&be[4 - bytes_out..]);
    }
    Some(out)
}

/// Encodes bytes as unpadded base64url.
#[cfg(test)]
pub(crate) fn encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[idx as usize]));
        }
    }
    out
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
