//! Strict base64url (RFC 4648 §5, no padding) decoding of JWS compact segments.
//!
//! We decode the segments ourselves, before josekit sees the token, so that every malformed token
//! is reported as malformed with one consistent rule: only the URL-safe alphabet, no padding, no
//! whitespace, and no non-zero leftover bits (so each byte string has exactly one encoding).

/// Decodes one unpadded base64url segment, or returns `None` if it is not canonical base64url.
pub(crate) fn decode(input: &str) -> Option<Vec<u8>> {
    let bytes = input.as_bytes();
    // A single leftover character carries only 6 bits and cannot encode a byte.
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits: u32 = 0;
    for &c in bytes {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            // The mask below keeps `acc` under 2^bits, so this shift yields one byte.
            out.push(((acc >> bits) & 0xff) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero; otherwise two spellings would decode to the same bytes.
    if acc != 0 {
        return None;
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
