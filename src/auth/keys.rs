//! berth's own token signing key: created on first start, loaded on later ones, published as a
//! JWK and as PEM so other services can verify berth's tokens.

use std::fmt;
use std::path::Path;

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde_json::{json, Value};

use super::b64;
use super::der::{self, OID_EC, OID_ED25519, OID_P256};
use super::keyfile::{self, Created};
use super::public::{Alg, PublicKey};
use super::token_error::KeyError;

/// The private key's file name inside the configured directory.
pub const KEY_FILE: &str = "token-key.pem";

enum Pair {
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair),
}

/// A private key that signs tokens. Its `kid` is the RFC 7638 thumbprint of its public key, so
/// it is stable across restarts and changes exactly when the key does.
pub struct SigningKey {
    pair: Pair,
    public: PublicKey,
    kid: String,
    rng: SystemRandom,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, kid {})", self.alg(), self.kid)
    }
}

impl SigningKey {
    /// Loads `dir/token-key.pem`, or generates a key for `alg` and stores it there (mode 0600).
    ///
    /// A stored key of another type than `alg` is an error, not a silent switch: tokens already
    /// handed out and keys other services have pinned depend on it.
    pub fn load_or_create(dir: &Path, alg: Alg) -> Result<SigningKey, KeyError> {
        let path = dir.join(KEY_FILE);
        std::fs::create_dir_all(dir).map_err(|source| KeyError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        // Two turns: if another process wins the race to create the file, the second reads it.
        for _ in 0..2 {
            if let Some(pem) = keyfile::read(&path)? {
                return SigningKey::from_pem(&pem, alg, &path);
            }
            let pkcs8 = generate_pkcs8(alg)?;
            if keyfile::create(&path, pem_encode("PRIVATE KEY", &pkcs8).as_bytes())?
                == Created::Written
            {
                let key = SigningKey::from_pkcs8(&pkcs8, alg)?;
                tracing::info!(kid = %key.kid, alg = %alg, path = %path.display(), "created token signing key");
                return Ok(key);
            }
        }
        // The name exists but does not open as a file (a dangling symlink, say).
        let source = std::io::Error::from(std::io::ErrorKind::AlreadyExists);
        Err(KeyError::Io { path, source })
    }

    /// A key that lives only in memory, for tests and throwaway setups.
    pub fn generate(alg: Alg) -> Result<SigningKey, KeyError> {
        SigningKey::from_pkcs8(&generate_pkcs8(alg)?, alg)
    }

    fn from_pem(pem: &[u8], alg: Alg, path: &Path) -> Result<SigningKey, KeyError> {
        let not_key = || KeyError::NotAPrivateKey {
            path: path.to_path_buf(),
        };
        let pkcs8 = PrivatePkcs8KeyDer::from_pem_slice(pem).map_err(|_| not_key())?;
        let found = match der::pkcs8_algorithm(pkcs8.secret_pkcs8_der()).map_err(|_| not_key())? {
            (OID_ED25519, None) => Alg::EdDSA,
            (OID_EC, Some(OID_P256)) => Alg::ES256,
            _ => {
                return Err(KeyError::UnsupportedKey(
                    "token key file holds neither Ed25519 nor P-256",
                ))
            }
        };
        if found != alg {
            let found = if found == Alg::EdDSA {
                "Ed25519"
            } else {
                "P-256"
            };
            return Err(KeyError::AlgorithmMismatch {
                path: path.to_path_buf(),
                configured: alg,
                found,
            });
        }
        SigningKey::from_pkcs8(pkcs8.secret_pkcs8_der(), alg)
    }

    fn from_pkcs8(pkcs8: &[u8], alg: Alg) -> Result<SigningKey, KeyError> {
        let rng = SystemRandom::new();
        let rejected = |_| KeyError::UnsupportedKey("private key rejected");
        let (pair, public) = match alg {
            Alg::EdDSA => {
                // "maybe_unchecked" also takes the PKCS#8 v1 files `openssl genpkey` writes.
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(rejected)?;
                let public = PublicKey::from_spki(&der::write_spki(
                    OID_ED25519,
                    None,
                    pair.public_key().as_ref(),
                ))?;
                (Pair::Ed25519(pair), public)
            }
            Alg::ES256 => {
                let pair = EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    pkcs8,
                    &rng,
                )
                .map_err(rejected)?;
                let public = PublicKey::P256(pair.public_key().as_ref().to_vec());
                (Pair::P256(pair), public)
            }
            other => return Err(KeyError::CannotSign(other)),
        };
        let kid = public.thumbprint();
        Ok(SigningKey {
            pair,
            public,
            kid,
            rng,
        })
    }

    pub fn alg(&self) -> Alg {
        self.public.alg()
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The public JWK with `kid`, `alg` and `use`, as a JWKS endpoint lists it.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = self.public.jwk();
        if let Some(members) = jwk.as_object_mut() {
            members.insert("kid".into(), json!(self.kid));
            members.insert("alg".into(), json!(self.alg().as_str()));
            members.insert("use".into(), json!("sig"));
        }
        jwk
    }

    /// The `{"keys": [...]}` document for a JWKS endpoint.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.public_jwk()] })
    }

    /// The public key as a `PUBLIC KEY` PEM block, for issuers configured with a certificate
    /// or key bundle (CNCF distribution's `rootcertbundle` accepts it).
    pub fn public_pem(&self) -> String {
        pem_encode("PUBLIC KEY", &self.public.spki_der())
    }

    /// Signs a JWS signing input; ECDSA signatures come in the fixed `r || s` form JWS uses.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.pair {
            Pair::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Pair::P256(pair) => pair
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Sign),
        }
    }
}

fn generate_pkcs8(alg: Alg) -> Result<Vec<u8>, KeyError> {
    let rng = SystemRandom::new();
    let doc = match alg {
        Alg::EdDSA => Ed25519KeyPair::generate_pkcs8(&rng),
        Alg::ES256 => {
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        }
        other => return Err(KeyError::CannotSign(other)),
    };
    doc.map(|d| d.as_ref().to_vec())
        .map_err(|_| KeyError::Generate)
}

/// Wraps DER in a PEM block with 64-character lines (RFC 7468).
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = b64::encode_std(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::SubjectPublicKeyInfoDer;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_is_created_once_and_reloaded_with_the_same_kid() {
        for alg in [Alg::EdDSA, Alg::ES256] {
            let dir = tempfile::tempdir().unwrap();
            let first = SigningKey::load_or_create(dir.path(), alg).unwrap();
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let again = SigningKey::load_or_create(dir.path(), alg).unwrap();
            assert_eq!((again.kid(), again.alg()), (first.kid(), alg));
            assert_eq!(first.kid(), first.public_key().thumbprint());
        }
    }

    #[test]
    fn stored_key_of_another_type_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        SigningKey::load_or_create(dir.path(), Alg::EdDSA).unwrap();
        let err = SigningKey::load_or_create(dir.path(), Alg::ES256).unwrap_err();
        assert!(
            matches!(
                err,
                KeyError::AlgorithmMismatch {
                    configured: Alg::ES256,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn only_eddsa_and_es256_can_sign() {
        assert!(matches!(
            SigningKey::generate(Alg::RS256),
            Err(KeyError::CannotSign(Alg::RS256))
        ));
        assert!(matches!(
            SigningKey::generate(Alg::ES384),
            Err(KeyError::CannotSign(Alg::ES384))
        ));
    }

    #[test]
    fn openssl_generated_keys_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        for (pem, alg) in [
            (
                &include_bytes!("../../tests/fixtures/auth/ed25519-key.pem")[..],
                Alg::EdDSA,
            ),
            (
                &include_bytes!("../../tests/fixtures/auth/ec-p256-key.pem")[..],
                Alg::ES256,
            ),
        ] {
            let key = SigningKey::from_pem(pem, alg, &path).unwrap();
            let sig = key.sign(b"msg").unwrap();
            assert!(key.public_key().verify(b"msg", &sig));
        }
    }

    #[test]
    fn public_forms_describe_the_same_key() {
        let key = SigningKey::generate(Alg::ES256).unwrap();
        let jwk = key.public_jwk();
        assert_eq!(
            (jwk["kid"].as_str(), jwk["alg"].as_str()),
            (Some(key.kid()), Some("ES256"))
        );
        assert_eq!(&PublicKey::from_jwk(&jwk).unwrap(), key.public_key());
        let pem = key.public_pem();
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(
            &PublicKey::from_spki(spki.as_ref()).unwrap(),
            key.public_key()
        );
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }
}
