//! Berth's private certificate authority: `ca.crt` and `ca.key` in the data directory's `tls/`,
//! made once and kept, because every client that trusts it holds a copy of `ca.crt`.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, PublicKeyData,
};
use time::{Duration, OffsetDateTime};

use super::files::{self, CERT_MODE, KEY_MODE};
use super::inspect::CertFacts;
use super::{random_serial, TlsGenError, BACKDATE};

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";

/// Ten years: server certificates are renewed many times over before the CA, whose
/// replacement means visiting every client again, runs out.
const CA_DAYS: i64 = 3650;

pub struct Ca {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub facts: CertFacts,
    key: KeyPair,
    /// Made by this run.
    pub created: bool,
}

impl Ca {
    /// The CA in `dir`, or `None` if it has neither file. Half a CA (one file without the
    /// other) is refused: making a new one would orphan what clients already trust.
    pub fn load(dir: &Path) -> Result<Option<Ca>, TlsGenError> {
        let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
        let key = files::read_private(&key_path)?;
        let cert = files::read(&cert_path)?;
        let (cert, key) = match (cert, key) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => {
                return Err(TlsGenError::HalfCa {
                    present: cert_path,
                    missing: key_path,
                })
            }
            (None, Some(_)) => {
                return Err(TlsGenError::HalfCa {
                    present: key_path,
                    missing: cert_path,
                })
            }
        };
        let facts = CertFacts::from_pem(&cert).map_err(|reason| TlsGenError::Parse {
            path: cert_path.clone(),
            reason,
        })?;
        if !facts.is_ca {
            return Err(TlsGenError::NotACa(cert_path));
        }
        let key = std::str::from_utf8(&key)
            .map_err(|e| e.to_string())
            .and_then(|pem| KeyPair::from_pem(pem).map_err(|e| e.to_string()))
            .map_err(|reason| TlsGenError::Parse {
                path: key_path.clone(),
                reason,
            })?;
        if key.subject_public_key_info() != facts.spki {
            return Err(TlsGenError::KeyMismatch {
                cert: cert_path,
                key: key_path,
            });
        }
        Ok(Some(Ca {
            cert_path,
            key_path,
            facts,
            key,
            created: false,
        }))
    }

    /// Makes a CA in `dir` valid for ten years, or up to `at_least_until` if that is later.
    /// The key is written before the certificate, each whole and never over an existing file.
    pub fn create(
        dir: &Path,
        label: &str,
        now: OffsetDateTime,
        at_least_until: OffsetDateTime,
    ) -> Result<Ca, TlsGenError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        // A random tag keeps two berth CAs apart in a trust store that holds both.
        let mut tag = [0u8; 4];
        getrandom::getrandom(&mut tag).map_err(|e| TlsGenError::Random(e.to_string()))?;
        name.push(
            DnType::CommonName,
            format!("berth CA for {label} {}", hex::encode(tag)),
        );
        name.push(DnType::OrganizationName, "berth");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(random_serial()?);
        params.not_before = now - BACKDATE;
        params.not_after = (now + Duration::days(CA_DAYS)).max(at_least_until + Duration::DAY);
        let cert = params.self_signed(&key)?;
        let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
        files::create_new(&key_path, key.serialize_pem().as_bytes(), KEY_MODE)?;
        files::create_new(&cert_path, cert.pem().as_bytes(), CERT_MODE)?;
        let facts = CertFacts::from_der(cert.der()).map_err(|reason| TlsGenError::Parse {
            path: cert_path.clone(),
            reason,
        })?;
        Ok(Ca {
            cert_path,
            key_path,
            facts,
            key,
            created: true,
        })
    }

    /// Signs a certificate for `key` with `params`.
    pub fn sign(
        &self,
        params: &CertificateParams,
        key: &KeyPair,
    ) -> Result<Certificate, TlsGenError> {
        let issuer = Issuer::from_ca_cert_der(&self.facts.der.as_slice().into(), &self.key)?;
        Ok(params.signed_by(key, &issuer)?)
    }
}
