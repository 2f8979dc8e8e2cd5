//! The server certificate: kept when it still fits (this CA's, these names, a matching key, and
//! more than [`RENEW_WITHIN_DAYS`] left), issued anew otherwise or when asked to.

use std::path::Path;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use time::{Duration, OffsetDateTime};

use super::ca::Ca;
use super::files::{self, CERT_MODE, KEY_MODE};
use super::inspect::CertFacts;
use super::{random_serial, Names, TlsGenError, BACKDATE, RENEW_WITHIN_DAYS};

/// What `berth cert` was asked for.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub names: &'a Names,
    pub days: u32,
    pub renew: bool,
    pub cert: &'a Path,
    pub key: &'a Path,
}

/// Why a new server certificate was issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// `--renew`.
    Asked,
    /// No certificate or no key file yet.
    Missing,
    /// The one there ends at this time, which has passed or is near.
    Ending(OffsetDateTime),
    /// The one there is for these names.
    OtherNames(Names),
    /// The key file does not belong to the certificate.
    KeyMismatch,
}

#[derive(Debug)]
pub enum Server {
    Reused(CertFacts),
    Issued { facts: CertFacts, why: Why },
}

pub struct Report {
    pub ca: Ca,
    pub server: Server,
}

/// What is at the certificate's path now.
enum Existing {
    Fits(CertFacts),
    Stale(Why),
    /// Not this CA's, or not a certificate: someone else's file, replaced only with `--renew`.
    Foreign(String),
}

/// Loads or creates the CA in `tls_dir`, then keeps or issues the server certificate.
pub fn run(tls_dir: &Path, req: &Request<'_>, now: OffsetDateTime) -> Result<Report, TlsGenError> {
    files::ensure_dir(tls_dir)?;
    let ca = Ca::load(tls_dir)?;
    let why = match examine(req, ca.as_ref(), now)? {
        _ if req.renew => Why::Asked,
        Existing::Foreign(reason) => {
            return Err(TlsGenError::Foreign {
                path: req.cert.to_path_buf(),
                reason,
            })
        }
        Existing::Stale(why) => why,
        Existing::Fits(facts) => match ca {
            Some(ca) => {
                return Ok(Report {
                    ca,
                    server: Server::Reused(facts),
                })
            }
            // Without a CA, `examine` calls any certificate foreign.
            None => Why::Missing,
        },
    };
    let not_after = now + Duration::days(i64::from(req.days));
    let ca = match ca {
        Some(ca) => ca,
        None => Ca::create(tls_dir, &req.names.primary(), now, not_after)?,
    };
    if ca.facts.not_after < not_after {
        return Err(TlsGenError::CaExpiresFirst {
            path: ca.cert_path.clone(),
            ca_until: ca.facts.not_after,
            wanted_until: not_after,
            max_days: (ca.facts.not_after - now).whole_days().max(0),
        });
    }
    let facts = issue(&ca, req, now, not_after)?;
    Ok(Report {
        ca,
        server: Server::Issued { facts, why },
    })
}

fn examine(
    req: &Request<'_>,
    ca: Option<&Ca>,
    now: OffsetDateTime,
) -> Result<Existing, TlsGenError> {
    let Some(pem) = files::read(req.cert)? else {
        return Ok(Existing::Stale(Why::Missing));
    };
    let facts = match CertFacts::from_pem(&pem) {
        Ok(facts) => facts,
        Err(reason) => return Ok(Existing::Foreign(reason)),
    };
    if !ca.is_some_and(|ca| facts.signed_by(&ca.facts)) {
        return Ok(Existing::Foreign(
            "not issued by berth's CA in this data directory".to_owned(),
        ));
    }
    let Some(key) = files::read(req.key)? else {
        return Ok(Existing::Stale(Why::Missing));
    };
    let key_fits = std::str::from_utf8(&key)
        .ok()
        .and_then(|pem| KeyPair::from_pem(pem).ok())
        .is_some_and(|key| key.subject_public_key_info() == facts.spki);
    if !key_fits {
        return Ok(Existing::Stale(Why::KeyMismatch));
    }
    if !facts.names.same_as(req.names) {
        return Ok(Existing::Stale(Why::OtherNames(facts.names)));
    }
    if facts.not_before > now || facts.not_after - now <= Duration::days(RENEW_WITHIN_DAYS) {
        return Ok(Existing::Stale(Why::Ending(facts.not_after)));
    }
    Ok(Existing::Fits(facts))
}

/// A fresh P-256 key and a certificate for it: the names as subjectAltNames (what clients
/// check), the first as common name (what people read), serverAuth only.
fn issue(
    ca: &Ca,
    req: &Request<'_>,
    now: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertFacts, TlsGenError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    let common = match (req.names.dns.first(), req.names.ips.first()) {
        (Some(dns), _) => dns.clone(),
        (None, Some(ip)) => ip.to_string(),
        (None, None) => String::new(),
    };
    name.push(DnType::CommonName, common);
    params.distinguished_name = name;
    params.subject_alt_names = req
        .names
        .dns
        .iter()
        .map(|dns| Ok(SanType::DnsName(dns.clone().try_into()?)))
        .chain(req.names.ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
        .collect::<Result<_, rcgen::Error>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    params.not_before = now - BACKDATE;
    params.not_after = not_after;
    let cert = ca.sign(&params, &key)?;
    // Key first: a crash between the two leaves a key the old certificate does not match,
    // which the next run notices and replaces.
    files::replace(req.key, key.serialize_pem().as_bytes(), KEY_MODE)?;
    files::replace(req.cert, cert.pem().as_bytes(), CERT_MODE)?;
    CertFacts::from_der(cert.der()).map_err(|reason| TlsGenError::Parse {
        path: req.cert.to_path_buf(),
        reason,
    })
}
