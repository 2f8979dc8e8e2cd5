//! ed25519 signatures over the contents manifest's exact bytes. The contents manifest names
//! every blob by digest, and import checks every blob against it, so signing it signs the
//! whole bundle. Keys are PEM files as `openssl genpkey -algorithm ed25519` writes them
//! (PKCS#8 private key, SPKI public key).

use std::path::Path;

use ring::signature::{Ed25519KeyPair, UnparsedPublicKey, ED25519};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};

use super::error::BundleError;

/// DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410): the 32 key bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

pub struct Signer(Ed25519KeyPair);

impl Signer {
    pub fn from_pem_file(path: &Path) -> Result<Signer, BundleError> {
        let bad = |why: String| BundleError::Signature(format!("{}: {why}", path.display()));
        let der = PrivatePkcs8KeyDer::from_pem_file(path).map_err(|e| bad(e.to_string()))?;
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der())
            .map(Signer)
            .map_err(|e| bad(format!("not an ed25519 private key ({e})")))
    }

    /// The signature file's text: the signature in hex and a newline.
    pub fn sign(&self, message: &[u8]) -> Result<String, BundleError> {
        Ok(format!("{}\n", hex::encode(self.0.sign(message).as_ref())))
    }
}

pub struct Verifier(Vec<u8>);

impl Verifier {
    pub fn from_pem_file(path: &Path) -> Result<Verifier, BundleError> {
        let bad = |why: String| BundleError::Signature(format!("{}: {why}", path.display()));
        let der = SubjectPublicKeyInfoDer::from_pem_file(path).map_err(|e| bad(e.to_string()))?;
        match der.as_ref().strip_prefix(&ED25519_SPKI_PREFIX[..]) {
            Some(key) if key.len() == 32 => Ok(Verifier(key.to_vec())),
            _ => Err(bad("not an ed25519 public key".into())),
        }
    }

    pub fn verify(&self, message: &[u8], signature_file: &[u8]) -> Result<(), BundleError> {
        let text = std::str::from_utf8(signature_file)
            .unwrap_or_default()
            .trim();
        let sig = hex::decode(text)
            .map_err(|_| BundleError::Signature("the signature file is not hex".into()))?;
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(message, &sig)
            .map_err(|_| {
                BundleError::Signature(
                    "the contents manifest is not signed by the key given with --verify-key".into(),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/auth")
            .join(name)
    }

    #[test]
    fn signs_and_verifies_and_refuses_other_bytes() {
        let signer = Signer::from_pem_file(&fixture("ed25519-key.pem")).unwrap();
        let verifier = Verifier::from_pem_file(&fixture("ed25519-pub.pem")).unwrap();
        let sig = signer.sign(b"contents").unwrap();
        verifier.verify(b"contents", sig.as_bytes()).unwrap();
        assert!(verifier.verify(b"content5", sig.as_bytes()).is_err());
        assert!(verifier.verify(b"contents", b"zz").is_err());
        assert!(Verifier::from_pem_file(&fixture("ec-p384-pub.pem")).is_err());
    }
}
