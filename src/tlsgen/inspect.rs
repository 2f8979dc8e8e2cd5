//! Facts read back from a certificate: names, validity, CA or not, key, issuer. Used to decide
//! whether an existing certificate can be kept, and by `berth serve` to warn of expiry.

use std::net::IpAddr;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::Names;

/// What berth needs to know of a certificate.
#[derive(Debug, Clone)]
pub struct CertFacts {
    pub der: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// DNS names and IP addresses of its subjectAltName.
    pub names: Names,
    pub is_ca: bool,
    /// Whether its extended key usage allows a TLS server (or it has none, which allows all).
    pub server_auth: bool,
    /// DER of its SubjectPublicKeyInfo, to match it with a key file.
    pub spki: Vec<u8>,
}

impl CertFacts {
    /// The first certificate of a PEM file (the server's own, in a chain).
    pub fn from_pem(pem: &[u8]) -> Result<CertFacts, String> {
        let der = CertificateDer::pem_slice_iter(pem)
            .next()
            .ok_or_else(|| "no certificate found".to_owned())?
            .map_err(|e| e.to_string())?;
        CertFacts::from_der(der.as_ref())
    }

    pub fn from_der(der: &[u8]) -> Result<CertFacts, String> {
        let cert = parse(der)?;
        let validity = cert.validity();
        let mut names = Names::default();
        if let Some(san) = cert.subject_alternative_name().map_err(|e| e.to_string())? {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => names.push_dns(dns.to_ascii_lowercase()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from(bytes) {
                            names.push_ip(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        let server_auth = match cert.extended_key_usage().map_err(|e| e.to_string())? {
            Some(eku) => eku.value.server_auth || eku.value.any,
            None => true,
        };
        Ok(CertFacts {
            der: der.to_vec(),
            not_before: validity.not_before.to_datetime(),
            not_after: validity.not_after.to_datetime(),
            names,
            is_ca: cert.is_ca(),
            server_auth,
            spki: cert.public_key().raw.to_vec(),
        })
    }

    /// Whether `issuer` signed this certificate: its name is this one's issuer and its key
    /// verifies the signature.
    pub fn signed_by(&self, issuer: &CertFacts) -> bool {
        let (Ok(cert), Ok(ca)) = (parse(&self.der), parse(&issuer.der)) else {
            return false;
        };
        cert.issuer().as_raw() == ca.subject().as_raw()
            && cert.verify_signature(Some(ca.public_key())).is_ok()
    }
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err("trailing bytes after the certificate".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

fn ip_from(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// `2027-01-31 14:05 UTC`: what the command and the log show.
pub fn show_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// Now, to the second: certificates hold whole seconds, and a CA made to last until a
/// certificate's end must not fall short of it by a fraction.
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    OffsetDateTime::from_unix_timestamp(now.unix_timestamp()).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_show_in_utc_to_the_minute() {
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert_eq!(show_time(t), "2027-01-15 08:00 UTC");
        assert_eq!(now().nanosecond(), 0);
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(CertFacts::from_pem(b"not pem").is_err());
        assert!(CertFacts::from_der(b"\x30\x03\x02\x01\x00").is_err());
    }
}
