//! OCI content digests (`sha256:<hex>`, `sha512:<hex>`) and incremental hashing.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// Hash algorithms the registry accepts for content addressing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// The name used in the `<algorithm>:<hex>` form.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the raw digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }

    /// Stable one-byte code used by the on-disk format (see storage-format.md).
    pub fn code(self) -> u8 {
        match self {
            Algorithm::Sha256 => 1,
            Algorithm::Sha512 => 2,
        }
    }

    /// Inverse of [`Algorithm::code`].
    pub fn from_code(code: u8) -> Option<Algorithm> {
        match code {
            1 => Some(Algorithm::Sha256),
            2 => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("malformed digest")]
    Malformed,
    #[error("unsupported digest algorithm {0}")]
    UnsupportedAlgorithm(String),
}

/// A content digest: algorithm plus the raw hash bytes (32 or 64 of them).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    alg: Algorithm,
    bytes: Box<[u8]>,
}

impl Digest {
    /// Parses the canonical form. Hex must be lowercase, as the OCI spec's
    /// registered algorithms require.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let (alg, hex_part) = s.split_once(':').ok_or(DigestError::Malformed)?;
        // Grammar from the OCI image spec: algorithm-component ([a-z0-9]+) joined by [+._-].
        let alg_ok = !alg.is_empty()
            && alg.split(['+', '.', '_', '-']).all(|c| {
                !c.is_empty()
                    && c.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        let enc_ok = !hex_part.is_empty()
            && hex_part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'));
        if !alg_ok || !enc_ok {
            return Err(DigestError::Malformed);
        }
        let alg = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => return Err(DigestError::UnsupportedAlgorithm(other.to_string())),
        };
        if hex_part.len() != alg.digest_len() * 2
            || !hex_part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::Malformed);
        }
        let bytes = hex::decode(hex_part).map_err(|_| DigestError::Malformed)?;
        Ok(Digest {
            alg,
            bytes: bytes.into_boxed_slice(),
        })
    }

    /// Builds a digest from raw hash bytes; `None` if the length does not fit the algorithm.
    pub fn from_raw(alg: Algorithm, raw: &[u8]) -> Option<Digest> {
        (raw.len() == alg.digest_len()).then(|| Digest {
            alg,
            bytes: raw.into(),
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub fn hex(&self) -> String {
        hex::encode(&self.bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Hashes a whole buffer.
    pub fn of(alg: Algorithm, data: &[u8]) -> Digest {
        let mut h = Hasher::new(alg);
        h.update(data);
        h.finish()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.alg.name(), self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Digest, DigestError> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Incremental hasher producing a [`Digest`].
#[derive(Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hasher::Sha256(_) => "Hasher(sha256)",
            Hasher::Sha512(_) => "Hasher(sha512)",
        })
    }
}

impl Hasher {
    pub fn new(alg: Algorithm) -> Hasher {
        match alg {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest {
                alg: Algorithm::Sha256,
                bytes: h.finalize().to_vec().into(),
            },
            Hasher::Sha512(h) => Digest {
                alg: Algorithm::Sha512,
                bytes: h.finalize().to_vec().into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints_round_trip() {
        let d = Digest::parse(EMPTY256).unwrap();
        assert_eq!(d.to_string(), EMPTY256);
        assert_eq!(d, Digest::of(Algorithm::Sha256, b""));
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.as_bytes().len(), 32);
        let s512 = Digest::of(Algorithm::Sha512, b"abc");
        assert_eq!(Digest::parse(&s512.to_string()).unwrap(), s512);
        assert_eq!(s512.hex().len(), 128);
    }

    #[test]
    fn refuses_bad_forms() {
        assert_eq!(Digest::parse("sha256"), Err(DigestError::Malformed));
        assert_eq!(Digest::parse("sha256:abc"), Err(DigestError::Malformed));
        assert_eq!(
            Digest::parse(&EMPTY256.to_uppercase()),
            Err(DigestError::Malformed)
        );
        assert_eq!(
            Digest::parse(&format!("{EMPTY256}0")),
            Err(DigestError::Malformed)
        );
        assert_eq!(Digest::parse(":abcd"), Err(DigestError::Malformed));
        assert_eq!(
            Digest::parse("sha384:abcd"),
            Err(DigestError::UnsupportedAlgorithm("sha384".into()))
        );
        assert_eq!(
            Digest::parse("blake3:abcd"),
            Err(DigestError::UnsupportedAlgorithm("blake3".into()))
        );
    }

    #[test]
    fn serde_uses_the_string_form() {
        let d = Digest::parse(EMPTY256).unwrap();
        let j = serde_json::to_string(&d).unwrap();
        assert_eq!(j, format!("\"{EMPTY256}\""));
        assert_eq!(serde_json::from_str::<Digest>(&j).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }

    #[test]
    fn incremental_matches_whole() {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(b"hello ");
        h.update(b"world");
        assert_eq!(h.finish(), Digest::of(Algorithm::Sha256, b"hello world"));
    }
}
