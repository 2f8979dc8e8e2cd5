//! Base64 for tokens, PEM and Basic credentials: unpadded base64url (RFC 4648 §5) both ways,
//! padded standard base64 both ways.
//!
//! Decoding is strict: exactly one spelling of each byte string is accepted (no padding, no
//! whitespace, zero trailing bits), so a token cannot be re-spelled into a different string that
//! still verifies and so misses or pollutes the verified-token cache.

const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The input is not canonical unpadded base64url.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotBase64Url;

/// Encodes without padding in the URL-safe alphabet, as JOSE requires.
pub fn encode_url(data: &[u8]) -> String {
    encode(data, URL, false)
}

/// Encodes with padding in the standard alphabet, as PEM bodies use.
pub fn encode_std(data: &[u8]) -> String {
    encode(data, STD, true)
}

fn encode(data: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = (0..3).fold(0u32, |n, i| {
            n << 8 | u32::from(chunk.get(i).copied().unwrap_or(0))
        });
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                let sextet = (n >> (18 - 6 * i) & 0x3f) as usize;
                out.extend(alphabet.get(sextet).copied().map(char::from));
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

fn url_value(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Decodes padded standard base64 (HTTP Basic credentials): mapped onto the URL alphabet,
/// padding dropped, then decoded as strictly as a token part.
pub fn decode_std(text: &str) -> Result<Vec<u8>, NotBase64Url> {
    let unpadded = text
        .strip_suffix("==")
        .or_else(|| text.strip_suffix('='))
        .unwrap_or(text);
    if unpadded.contains(['-', '_', '=']) {
        return Err(NotBase64Url);
    }
    decode_url(&unpadded.replace('+', "-").replace('/', "_"))
}

/// Decodes canonical unpadded base64url; anything else is refused.
pub fn decode_url(text: &str) -> Result<Vec<u8>, NotBase64Url> {
    let bytes = text.as_bytes();
    if bytes.len() % 4 == 1 {
        return Err(NotBase64Url);
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3 + 2);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= url_value(c).ok_or(NotBase64Url)? << (18 - 6 * i);
        }
        let produced = chunk.len() - 1;
        // Bits below the last full byte must be zero, or two spellings would decode alike.
        let unused_mask = match produced {
            1 => 0xffff,
            2 => 0xff,
            _ => 0,
        };
        if n & unused_mask != 0 {
            return Err(NotBase64Url);
        }
        out.extend(n.to_be_bytes().into_iter().skip(1).take(produced));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_decode() {
        assert_eq!(decode_std("YWxpY2U6cHc=").unwrap(), b"alice:pw");
        assert_eq!(decode_std("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(decode_std("/+8=").unwrap(), [0xff, 0xef]);
        assert!(decode_std("_-8=").is_err());
        assert!(decode_std("Zm9v=Zm9v").is_err());
    }

    #[test]
    fn rfc4648_vectors_round_trip() {
        let cases = [
            ("", "", ""),
            ("f", "Zg", "Zg=="),
            ("fo", "Zm8", "Zm8="),
            ("foo", "Zm9v", "Zm9v"),
            ("foob", "Zm9vYg", "Zm9vYg=="),
            ("fooba", "Zm9vYmE", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy", "Zm9vYmFy"),
        ];
        for (plain, url, std) in cases {
            assert_eq!(encode_url(plain.as_bytes()), url);
            assert_eq!(encode_std(plain.as_bytes()), std);
            assert_eq!(decode_url(url).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn url_alphabet_differs_from_std() {
        assert_eq!(encode_url(&[0xfb, 0xff]), "-_8");
        assert_eq!(encode_std(&[0xfb, 0xff]), "+/8=");
        assert_eq!(decode_url("-_8").unwrap(), [0xfb, 0xff]);
    }

    #[test]
    fn non_canonical_spellings_are_refused() {
        // Padding, the standard alphabet, whitespace, an impossible length, nonzero spare bits.
        for bad in ["Zg==", "+/8", "Zm 9v", "Zm9vY", "Zh", "Zm9"] {
            assert_eq!(decode_url(bad), Err(NotBase64Url), "{bad}");
        }
    }
}
