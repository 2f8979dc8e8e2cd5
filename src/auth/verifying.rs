//! The keys tokens are checked against: berth's own and those of external issuers (a PEM bundle
//! of certificates or public keys, or a JWKS), each with the key ids that select it.

use rustls_pki_types::pem::{PemObject, SectionKind};
use serde_json::Value;

use super::der;
use super::keys::SigningKey;
use super::public::{libtrust_kid, PublicKey};
use super::token_error::{KeyError, TokenError};

/// Where a key came from. Only berth's own keys may vouch for refresh tokens, which only berth
/// issues: an external issuer is trusted for access grants, not to mint berth sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    Own,
    External,
}

/// One trusted public key. Its algorithm is fixed by its type ([`PublicKey::alg`]).
#[derive(Debug, Clone)]
pub struct VerifyingKey {
    key: PublicKey,
    kids: Vec<String>,
    origin: KeyOrigin,
}

impl VerifyingKey {
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// Every `kid` that selects this key.
    pub fn kids(&self) -> &[String] {
        &self.kids
    }

    pub fn origin(&self) -> KeyOrigin {
        self.origin
    }
}

/// A set of trusted keys in which every key id selects at most one key.
#[derive(Debug, Clone, Default)]
pub struct VerifyingKeys {
    keys: Vec<VerifyingKey>,
}

impl VerifyingKeys {
    /// berth's own signing key, selected by its thumbprint `kid`.
    pub fn own(key: &SigningKey) -> VerifyingKeys {
        let kids = vec![key.kid().to_string()];
        VerifyingKeys {
            keys: vec![VerifyingKey {
                key: key.public_key().clone(),
                kids,
                origin: KeyOrigin::Own,
            }],
        }
    }

    /// Reads `CERTIFICATE` and `PUBLIC KEY` blocks (other blocks are skipped). Each key answers
    /// to its RFC 7638 thumbprint and to the libtrust key id Harbor, GitLab and CNCF
    /// distribution put in `kid`.
    pub fn from_pem_bundle(pem: &[u8]) -> Result<VerifyingKeys, KeyError> {
        let mut set = VerifyingKeys::default();
        for block in <(SectionKind, Vec<u8>)>::pem_slice_iter(pem) {
            let (kind, body) =
                block.map_err(|_| KeyError::BadPem("unreadable PEM block".into()))?;
            let spki = match kind {
                SectionKind::Certificate => der::certificate_spki(&body)?,
                SectionKind::PublicKey => &body[..],
                _ => continue,
            };
            let key = PublicKey::from_spki(spki)?;
            let kids = vec![key.thumbprint(), libtrust_kid(spki)];
            set.add(VerifyingKey {
                key,
                kids,
                origin: KeyOrigin::External,
            })?;
        }
        set.non_empty()
    }

    /// Reads a JWK Set. Keys berth cannot or must not use are skipped: symmetric (`oct`) keys,
    /// unknown types and curves, RSA below 2048 bits, `use` other than `sig`, and keys whose
    /// `alg` differs from the one their type implies. A key without `kid` answers to its
    /// thumbprint.
    pub fn from_jwks(json: &[u8]) -> Result<VerifyingKeys, KeyError> {
        let doc: Value =
            serde_json::from_slice(json).map_err(|e| KeyError::BadJwks(e.to_string()))?;
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(KeyError::BadJwks("no keys array".into()))?;
        let mut set = VerifyingKeys::default();
        for jwk in entries {
            if jwk.get("use").is_some_and(|u| u != "sig") {
                continue;
            }
            let key = match PublicKey::from_jwk(jwk) {
                Ok(key) => key,
                Err(KeyError::UnsupportedKey(_)) => continue,
                Err(e) => return Err(e),
            };
            if jwk.get("alg").is_some_and(|a| a != key.alg().as_str()) {
                continue;
            }
            let kid = match jwk.get("kid") {
                Some(Value::String(kid)) => kid.clone(),
                Some(_) => return Err(KeyError::BadJwk("kid")),
                None => key.thumbprint(),
            };
            set.add(VerifyingKey {
                key,
                kids: vec![kid],
                origin: KeyOrigin::External,
            })?;
        }
        set.non_empty()
    }

    /// Joins two sets, e.g. berth's own key and an external issuer's.
    pub fn merge(mut self, other: VerifyingKeys) -> Result<VerifyingKeys, KeyError> {
        for key in other.keys {
            self.add(key)?;
        }
        Ok(self)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &VerifyingKey> {
        self.keys.iter()
    }

    /// Picks the key a token names. Without a `kid` only a lone configured key can be meant.
    pub(crate) fn select(&self, kid: Option<&str>) -> Result<&VerifyingKey, TokenError> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kids.iter().any(|k| k == kid))
                .ok_or(TokenError::UnknownKey),
            None => match self.keys.as_slice() {
                [only] => Ok(only),
                [] => Err(TokenError::UnknownKey),
                _ => Err(TokenError::AmbiguousKey),
            },
        }
    }

    /// Adds a key; the same key twice is kept once, two keys sharing a kid are refused.
    fn add(&mut self, new: VerifyingKey) -> Result<(), KeyError> {
        if self
            .keys
            .iter()
            .any(|k| k.key == new.key && k.kids == new.kids)
        {
            return Ok(());
        }
        if self
            .keys
            .iter()
            .any(|k| k.kids.iter().any(|kid| new.kids.contains(kid)))
        {
            return Err(KeyError::DuplicateKid);
        }
        self.keys.push(new);
        Ok(())
    }

    fn non_empty(self) -> Result<VerifyingKeys, KeyError> {
        if self.keys.is_empty() {
            Err(KeyError::NoKeys)
        } else {
            Ok(self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::public::Alg;

    const RSA_CERT: &[u8] = include_bytes!("../../tests/fixtures/auth/rsa-cert.pem");
    const EC_CERT: &[u8] = include_bytes!("../../tests/fixtures/auth/ec-p256-cert.pem");
    const P384_PUB: &[u8] = include_bytes!("../../tests/fixtures/auth/ec-p384-pub.pem");
    const ED25519_PUB: &[u8] = include_bytes!("../../tests/fixtures/auth/ed25519-pub.pem");
    const JWKS: &[u8] = include_bytes!("../../tests/fixtures/auth/jwks.json");

    #[test]
    fn pem_bundle_keys_answer_to_thumbprint_and_libtrust_kid() {
        let bundle = [
            RSA_CERT,
            EC_CERT,
            P384_PUB,
            ED25519_PUB,
            b"-----BEGIN X509 CRL-----\n-----END X509 CRL-----\n",
        ]
        .concat();
        let set = VerifyingKeys::from_pem_bundle(&bundle).unwrap();
        assert_eq!(set.len(), 4);
        let rsa = set
            .select(Some(
                "R5DT:QJFA:HNMW:VL4B:QUDZ:74D4:PRKK:EZZF:ROLY:XJZP:JR4W:VKAW",
            ))
            .unwrap();
        assert_eq!(rsa.key().alg(), Alg::RS256);
        let by_thumb = set
            .select(Some("wanfvrgSXdVvWrCWpBFjJUX9pdW4BgZL2AoyzfCzO_E"))
            .unwrap();
        assert_eq!(by_thumb.key(), rsa.key());
        let ec = set
            .select(Some(
                "52M6:HZZ3:6OEC:G57C:2USQ:WFTQ:Q2OT:5VID:IO3H:BPLL:GYG4:NJMQ",
            ))
            .unwrap();
        assert_eq!(
            (ec.key().alg(), ec.origin()),
            (Alg::ES256, KeyOrigin::External)
        );
        assert_eq!(set.select(None).unwrap_err(), TokenError::AmbiguousKey);
        assert_eq!(
            set.select(Some("nope")).unwrap_err(),
            TokenError::UnknownKey
        );
    }

    #[test]
    fn jwks_keeps_signing_keys_and_skips_symmetric_ones() {
        let set = VerifyingKeys::from_jwks(JWKS).unwrap();
        assert_eq!(set.len(), 2, "the oct key is skipped");
        assert_eq!(
            set.select(Some("gitlab-rsa-1")).unwrap().key().alg(),
            Alg::RS256
        );
        assert_eq!(set.select(Some("kc-p384")).unwrap().key().alg(), Alg::ES384);
        assert!(set.select(Some("hmac-ignored")).is_err());
    }

    #[test]
    fn jwks_key_claiming_another_algorithm_is_skipped() {
        let jwks = br#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","alg":"HS256"}]}"#;
        assert!(matches!(
            VerifyingKeys::from_jwks(jwks),
            Err(KeyError::NoKeys)
        ));
    }

    #[test]
    fn shared_kid_is_refused_and_empty_input_is_an_error() {
        let twice = br#"{"keys":[
            {"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"OKP","crv":"Ed25519","kid":"a","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]}"#;
        assert!(matches!(
            VerifyingKeys::from_jwks(twice),
            Err(KeyError::DuplicateKid)
        ));
        assert!(matches!(
            VerifyingKeys::from_pem_bundle(b""),
            Err(KeyError::NoKeys)
        ));
        assert!(matches!(
            VerifyingKeys::from_jwks(b"{}"),
            Err(KeyError::BadJwks(_))
        ));
    }

    #[test]
    fn lone_key_is_selected_without_kid() {
        let set = VerifyingKeys::from_pem_bundle(ED25519_PUB).unwrap();
        assert_eq!(set.select(None).unwrap().key().alg(), Alg::EdDSA);
    }
}
