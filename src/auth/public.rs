//! Public keys that may verify tokens: their one JWS algorithm, signature checks, SPKI and JWK
//! forms, and the key ids derived from them.
//!
//! The algorithm is a property of the key type, never of a token: an RSA key only ever checks
//! RS256, a P-256 key ES256, and so on. That is what defeats algorithm-confusion tokens.

use std::fmt;
use std::str::FromStr;

use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::b64;
use super::der::{self, OID_EC, OID_ED25519, OID_P256, OID_P384, OID_RSA};
use super::token_error::KeyError;

/// A JWS algorithm berth can verify. Only [`Alg::EdDSA`] and [`Alg::ES256`] can sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    EdDSA,
    ES256,
    ES384,
    RS256,
}

impl Alg {
    /// The `alg` header value (RFC 7518, RFC 8037).
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::EdDSA => "EdDSA",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::RS256 => "RS256",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Alg {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Alg, KeyError> {
        [Alg::EdDSA, Alg::ES256, Alg::ES384, Alg::RS256]
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or(KeyError::UnsupportedKey("unknown algorithm name"))
    }
}

/// RSA keys below this size are refused when loaded (ring refuses them at verification anyway).
const MIN_RSA_BITS: usize = 2048;

/// A public key. EC points are uncompressed SEC1; RSA parts are big-endian without leading zeros.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    Ed25519([u8; 32]),
    P256(Vec<u8>),
    P384(Vec<u8>),
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}, {})", self.alg(), self.thumbprint())
    }
}

impl PublicKey {
    pub fn alg(&self) -> Alg {
        match self {
            PublicKey::Ed25519(_) => Alg::EdDSA,
            PublicKey::P256(_) => Alg::ES256,
            PublicKey::P384(_) => Alg::ES384,
            PublicKey::Rsa { .. } => Alg::RS256,
        }
    }

    /// Checks a JWS signature (fixed-size `r || s` for ECDSA) with this key's one algorithm.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        let result = match self {
            PublicKey::Ed25519(k) => {
                UnparsedPublicKey::new(&signature::ED25519, k).verify(message, sig)
            }
            PublicKey::P256(p) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, p).verify(message, sig)
            }
            PublicKey::P384(p) => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, p).verify(message, sig)
            }
            PublicKey::Rsa { n, e } => RsaPublicKeyComponents { n, e }.verify(
                &signature::RSA_PKCS1_2048_8192_SHA256,
                message,
                sig,
            ),
        };
        result.is_ok()
    }

    /// Reads a DER SubjectPublicKeyInfo (the body of a `PUBLIC KEY` PEM block).
    pub fn from_spki(spki: &[u8]) -> Result<PublicKey, KeyError> {
        let parsed = der::parse_spki(spki)?;
        match (parsed.algorithm, parsed.curve) {
            (OID_ED25519, None) => ed25519(parsed.key),
            (OID_EC, Some(OID_P256)) => ec_point(parsed.key, 32).map(PublicKey::P256),
            (OID_EC, Some(OID_P384)) => ec_point(parsed.key, 48).map(PublicKey::P384),
            (OID_RSA, None) => {
                let (n, e) = der::rsa_public_key(parsed.key)?;
                rsa(n, e)
            }
            _ => Err(KeyError::UnsupportedKey("key type or curve")),
        }
    }

    /// Reads the public members of a JWK (`kty` EC, OKP or RSA).
    pub fn from_jwk(jwk: &Value) -> Result<PublicKey, KeyError> {
        let member = |name: &'static str| -> Result<Vec<u8>, KeyError> {
            let text = jwk
                .get(name)
                .and_then(Value::as_str)
                .ok_or(KeyError::BadJwk(name))?;
            b64::decode_url(text).map_err(|_| KeyError::BadJwk(name))
        };
        let crv = jwk.get("crv").and_then(Value::as_str);
        match (jwk.get("kty").and_then(Value::as_str), crv) {
            (Some("OKP"), Some("Ed25519")) => ed25519(&member("x")?),
            (Some("EC"), Some(curve @ ("P-256" | "P-384"))) => {
                let size = if curve == "P-256" { 32 } else { 48 };
                let (x, y) = (member("x")?, member("y")?);
                if x.len() != size || y.len() != size {
                    return Err(KeyError::BadJwk("EC coordinate length"));
                }
                let point = [&[4u8][..], &x, &y].concat();
                Ok(if size == 32 {
                    PublicKey::P256(point)
                } else {
                    PublicKey::P384(point)
                })
            }
            (Some("RSA"), _) => rsa(
                der::strip_zeros(&member("n")?),
                der::strip_zeros(&member("e")?),
            ),
            _ => Err(KeyError::UnsupportedKey("key type or curve")),
        }
    }

    /// The DER SubjectPublicKeyInfo, as `PUBLIC KEY` PEM blocks and libtrust key ids use it.
    pub fn spki_der(&self) -> Vec<u8> {
        match self {
            PublicKey::Ed25519(k) => der::write_spki(OID_ED25519, None, k),
            PublicKey::P256(p) => der::write_spki(OID_EC, Some(OID_P256), p),
            PublicKey::P384(p) => der::write_spki(OID_EC, Some(OID_P384), p),
            PublicKey::Rsa { n, e } => {
                der::write_spki(OID_RSA, None, &der::write_rsa_public_key(n, e))
            }
        }
    }

    /// The JWK with exactly the RFC 7638 required members: what a JWKS endpoint publishes.
    pub fn jwk(&self) -> Value {
        serde_json::from_str(&self.canonical_jwk()).unwrap_or(Value::Null)
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url): berth's `kid` for its own keys.
    pub fn thumbprint(&self) -> String {
        b64::encode_url(&Sha256::digest(self.canonical_jwk().as_bytes()))
    }

    /// The required members in lexicographic order without whitespace (RFC 7638 §3), spelled
    /// out rather than left to a JSON map's ordering.
    fn canonical_jwk(&self) -> String {
        // An uncompressed point (`ec_point`): 0x04, then x and y of equal size.
        let xy = |p: &[u8]| {
            let coords = p.get(1..).unwrap_or_default();
            let (x, y) = coords.split_at(coords.len() / 2);
            (b64::encode_url(x), b64::encode_url(y))
        };
        match self {
            PublicKey::Ed25519(k) => {
                format!(
                    r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                    b64::encode_url(k)
                )
            }
            PublicKey::P256(p) | PublicKey::P384(p) => {
                let crv = if p.len() == 65 { "P-256" } else { "P-384" };
                let (x, y) = xy(p);
                format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#)
            }
            PublicKey::Rsa { n, e } => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                b64::encode_url(e),
                b64::encode_url(n)
            ),
        }
    }
}

/// The key id docker/libtrust derives and CNCF distribution, Harbor and GitLab put in `kid`:
/// SHA-256 of the DER SPKI cut to 240 bits, base32 without padding, in 12 groups of 4 joined by ':'.
pub fn libtrust_kid(spki_der: &[u8]) -> String {
    const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = Sha256::digest(spki_der);
    let mut out = String::with_capacity(59);
    // 240 bits make exactly 48 five-bit symbols, so no padding arises.
    for (i, chunk) in digest.chunks(5).take(6).enumerate() {
        let n = chunk.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
        for j in 0..8 {
            if (i * 8 + j) % 4 == 0 && i + j > 0 {
                out.push(':');
            }
            out.extend(
                BASE32
                    .get((n >> (35 - 5 * j) & 0x1f) as usize)
                    .map(|&c| char::from(c)),
            );
        }
    }
    out
}

fn ed25519(key: &[u8]) -> Result<PublicKey, KeyError> {
    key.try_into()
        .map(PublicKey::Ed25519)
        .map_err(|_| KeyError::UnsupportedKey("Ed25519 key length"))
}

fn ec_point(point: &[u8], size: usize) -> Result<Vec<u8>, KeyError> {
    if point.len() == 1 + 2 * size && point.first() == Some(&4) {
        Ok(point.to_vec())
    } else {
        Err(KeyError::UnsupportedKey("EC point must be uncompressed"))
    }
}

fn rsa(n: &[u8], e: &[u8]) -> Result<PublicKey, KeyError> {
    let bits = n
        .first()
        .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
    if bits < MIN_RSA_BITS || e.is_empty() {
        return Err(KeyError::UnsupportedKey("RSA keys need at least 2048 bits"));
    }
    Ok(PublicKey::Rsa {
        n: n.to_vec(),
        e: e.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::{PemObject, SectionKind};

    const P384_PUB: &[u8] = include_bytes!("../../tests/fixtures/auth/ec-p384-pub.pem");
    const ED25519_PUB: &[u8] = include_bytes!("../../tests/fixtures/auth/ed25519-pub.pem");
    const RSA_CERT: &[u8] = include_bytes!("../../tests/fixtures/auth/rsa-cert.pem");

    fn pem_der(pem: &[u8]) -> Vec<u8> {
        match <(SectionKind, Vec<u8>)>::from_pem_slice(pem).unwrap() {
            (SectionKind::PublicKey, d) => d,
            (SectionKind::Certificate, d) => der::certificate_spki(&d).unwrap().to_vec(),
            _ => panic!("unexpected PEM block"),
        }
    }

    #[test]
    fn thumbprints_match_rfc_examples() {
        // RFC 7638 §3.1 and RFC 8037 appendix A.3.
        let rsa =
            PublicKey::from_jwk(&serde_json::json!({"kty": "RSA", "e": "AQAB", "n": RFC7638_N}))
                .unwrap();
        assert_eq!(
            rsa.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        let ed = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        assert_eq!(
            PublicKey::from_jwk(&ed).unwrap().thumbprint(),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn libtrust_kids_match_independently_computed_values() {
        // Expected values computed with openssl and Python (see tests/fixtures/auth/README.md).
        let cases = [
            (
                RSA_CERT,
                "R5DT:QJFA:HNMW:VL4B:QUDZ:74D4:PRKK:EZZF:ROLY:XJZP:JR4W:VKAW",
            ),
            (
                P384_PUB,
                "SPEH:X3A2:T3JJ:C4TK:UEL5:HAE4:DUNF:RO2V:WEA3:Q3DE:DYQS:OK6P",
            ),
            (
                ED25519_PUB,
                "MWKT:WE5S:UT6G:FVR2:YJGH:HEBD:MV5N:XR4Y:YA4B:ZEMD:MHH4:IYPP",
            ),
        ];
        for (pem, kid) in cases {
            assert_eq!(libtrust_kid(&pem_der(pem)), kid);
        }
    }

    #[test]
    fn spki_round_trips_for_every_key_type() {
        for pem in [RSA_CERT, P384_PUB, ED25519_PUB] {
            let der = pem_der(pem);
            let key = PublicKey::from_spki(&der).unwrap();
            assert_eq!(key.spki_der(), der, "{key:?}");
            assert_eq!(PublicKey::from_jwk(&key.jwk()).unwrap(), key);
        }
        assert_eq!(
            PublicKey::from_spki(&pem_der(RSA_CERT)).unwrap().alg(),
            Alg::RS256
        );
        assert_eq!(
            PublicKey::from_spki(&pem_der(P384_PUB)).unwrap().alg(),
            Alg::ES384
        );
    }

    #[test]
    fn weak_or_malformed_keys_are_refused() {
        let short_rsa =
            serde_json::json!({"kty": "RSA", "e": "AQAB", "n": b64::encode_url(&[0xff; 128])});
        assert!(PublicKey::from_jwk(&short_rsa).is_err(), "1024-bit RSA");
        let short_x = serde_json::json!({"kty": "EC", "crv": "P-256", "x": "AQ", "y": "AQ"});
        assert!(PublicKey::from_jwk(&short_x).is_err());
        let secret = serde_json::json!({"kty": "oct", "k": "c2VjcmV0"});
        assert!(
            PublicKey::from_jwk(&secret).is_err(),
            "symmetric keys never verify"
        );
    }

    const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
}
