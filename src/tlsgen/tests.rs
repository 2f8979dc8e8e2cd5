//! The CA and server certificates read back: names, validity, usage, key type, the chain a TLS
//! client builds; reuse against `--renew`; the refusals.

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ::time::{Duration, OffsetDateTime};
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::prelude::*;

use super::*;

struct Setup {
    tls: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("data").join("tls");
    Setup {
        cert: tls.join(SERVER_CERT),
        key: tls.join(SERVER_KEY),
        tls,
        _dir: dir,
    }
}

fn names(hosts: &[&str], ips: &[&str]) -> Names {
    let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    let ips: Vec<IpAddr> = ips.iter().map(|ip| ip.parse().unwrap()).collect();
    Names::new(&hosts, &ips).unwrap()
}

fn cert(s: &Setup, names: &Names, days: u32, renew: bool) -> Result<Report, TlsGenError> {
    let req = Request {
        names,
        days,
        renew,
        cert: &s.cert,
        key: &s.key,
    };
    run(&s.tls, &req, now())
}

fn issued_why(report: &Report) -> Option<Why> {
    match &report.server {
        Server::Issued { why, .. } => Some(why.clone()),
        Server::Reused(_) => None,
    }
}

fn der_of(path: &Path) -> Vec<u8> {
    CertFacts::from_pem(&fs::read(path).unwrap()).unwrap().der
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// What a rustls client trusting only the CA says of the server certificate for `name`.
fn verify(ca: &[u8], server: &[u8], name: &str) -> Result<(), rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.to_vec())).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
            .build()
            .unwrap();
    verifier
        .verify_server_cert(
            &CertificateDer::from(server.to_vec()),
            &[],
            &ServerName::try_from(name.to_owned()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
}

#[test]
fn the_server_certificate_reads_back_with_its_names_validity_and_usage() {
    let s = setup();
    let before = now();
    let wanted = names(&["Localhost", "registry.lan", "127.0.0.1"], &["::1"]);
    let report = cert(&s, &wanted, 397, false).unwrap();
    assert_eq!(issued_why(&report), Some(Why::Missing));
    assert!(report.ca.created);

    let server_der = der_of(&s.cert);
    let (_, x509) = X509Certificate::from_der(&server_der).unwrap();
    let san = x509.subject_alternative_name().unwrap().unwrap();
    let mut sans: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(dns) => format!("DNS:{dns}"),
            GeneralName::IPAddress(b) if b.len() == 4 => {
                format!("IP:{}", IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()))
            }
            GeneralName::IPAddress(b) => {
                format!("IP:{}", IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()))
            }
            other => panic!("unexpected name {other}"),
        })
        .collect();
    sans.sort();
    assert_eq!(
        sans,
        [
            "DNS:localhost",
            "DNS:registry.lan",
            "IP:127.0.0.1",
            "IP:::1"
        ]
    );
    let validity = x509.validity();
    let lifetime = validity.not_after.to_datetime() - before;
    assert!(
        lifetime >= Duration::days(397) && lifetime < Duration::days(397) + Duration::MINUTE,
        "{lifetime}"
    );
    assert!(validity.not_before.to_datetime() <= before - Duration::MINUTE * 59);
    let eku = x509.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth && !eku.any);
    assert!(!x509.is_ca());
    assert!(x509.key_usage().unwrap().unwrap().value.digital_signature());
    let spki = x509.public_key();
    assert_eq!(
        spki.algorithm.algorithm,
        x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
    );
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .unwrap()
        .as_oid()
        .unwrap();
    assert_eq!(curve, x509_parser::oid_registry::OID_EC_P256);
    assert_eq!(
        x509.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "localhost"
    );

    let ca_der = der_of(&s.tls.join(CA_CERT));
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    assert!(ca.is_ca());
    assert!(ca.key_usage().unwrap().unwrap().value.key_cert_sign());
    assert!(ca.validity().not_after.to_datetime() - before >= Duration::days(3650));
    assert_eq!(x509.issuer().as_raw(), ca.subject().as_raw());

    for name in ["localhost", "registry.lan", "127.0.0.1", "::1"] {
        verify(&ca_der, &server_der, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(verify(&ca_der, &server_der, "other.lan").is_err());
    assert!(verify(&ca_der, &server_der, "127.0.0.2").is_err());
    // Trusting something else, the certificate does not verify.
    let stranger = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    assert!(verify(stranger.cert.der(), &server_der, "localhost").is_err());

    assert_eq!(mode(&s.tls), 0o700);
    assert_eq!(mode(&s.tls.join(CA_KEY)), 0o600);
    assert_eq!(mode(&s.key), 0o600);
    assert_eq!(mode(&s.cert), 0o644);
    let mut left: Vec<String> = fs::read_dir(&s.tls)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["ca.crt", "ca.key", "server.crt", "server.key"]);
}

#[test]
fn a_fitting_certificate_is_reused_and_renew_reissues_under_the_same_ca() {
    let s = setup();
    let wanted = names(&["localhost"], &["127.0.0.1"]);
    cert(&s, &wanted, 397, false).unwrap();
    let (ca, ca_key) = (
        fs::read(s.tls.join(CA_CERT)).unwrap(),
        fs::read(s.tls.join(CA_KEY)).unwrap(),
    );
    let (first, first_key) = (fs::read(&s.cert).unwrap(), fs::read(&s.key).unwrap());

    // Same names in another order, another --days: kept as it is.
    let again = cert(&s, &names(&["127.0.0.1", "localhost"], &[]), 30, false).unwrap();
    assert!(
        matches!(again.server, Server::Reused(_)),
        "{:?}",
        again.server
    );
    assert!(!again.ca.created);
    assert_eq!(fs::read(&s.cert).unwrap(), first);

    let renewed = cert(&s, &wanted, 397, true).unwrap();
    assert_eq!(issued_why(&renewed), Some(Why::Asked));
    assert!(!renewed.ca.created);
    let second = fs::read(&s.cert).unwrap();
    assert_ne!(second, first);
    assert_ne!(fs::read(&s.key).unwrap(), first_key);
    assert_eq!(fs::read(s.tls.join(CA_CERT)).unwrap(), ca);
    assert_eq!(fs::read(s.tls.join(CA_KEY)).unwrap(), ca_key);
    let (old, new) = (der_of_bytes(&first), der_of_bytes(&second));
    assert_ne!(
        serial(&old),
        serial(&new),
        "a renewed certificate needs a new serial"
    );

    // Other names: a new certificate, same CA.
    let other = cert(&s, &names(&["registry.lan"], &[]), 397, false).unwrap();
    assert_eq!(issued_why(&other), Some(Why::OtherNames(wanted)));
    assert_eq!(fs::read(s.tls.join(CA_CERT)).unwrap(), ca);

    // A key that is not the certificate's: a new pair.
    let stray = rcgen::KeyPair::generate().unwrap();
    fs::write(&s.key, stray.serialize_pem()).unwrap();
    let fixed = cert(&s, &names(&["registry.lan"], &[]), 397, false).unwrap();
    assert_eq!(issued_why(&fixed), Some(Why::KeyMismatch));
}

fn der_of_bytes(pem: &[u8]) -> Vec<u8> {
    CertFacts::from_pem(pem).unwrap().der
}

fn serial(der: &[u8]) -> Vec<u8> {
    X509Certificate::from_der(der)
        .unwrap()
        .1
        .raw_serial()
        .to_vec()
}

#[test]
fn a_certificate_near_its_end_is_replaced_without_renew() {
    let s = setup();
    let wanted = names(&["localhost"], &[]);
    cert(&s, &wanted, 10, false).unwrap();
    let report = cert(&s, &wanted, 397, false).unwrap();
    assert!(
        matches!(issued_why(&report), Some(Why::Ending(t)) if t - now() < Duration::days(11)),
        "{:?}",
        report.server
    );
    let Server::Issued { facts, .. } = report.server else {
        panic!("not issued")
    };
    assert!(facts.not_after - now() > Duration::days(396));
}

#[test]
fn a_ca_key_others_can_read_is_refused_and_nothing_changes() {
    let s = setup();
    let wanted = names(&["localhost"], &[]);
    cert(&s, &wanted, 397, false).unwrap();
    let key = s.tls.join(CA_KEY);
    let issued = fs::read(&s.cert).unwrap();
    for loose in [0o640, 0o604, 0o660] {
        fs::set_permissions(&key, fs::Permissions::from_mode(loose)).unwrap();
        for renew in [false, true] {
            let err = cert(&s, &wanted, 397, renew).err().unwrap();
            assert!(
                matches!(&err, TlsGenError::LooseKey { mode, .. } if *mode == loose),
                "{err}"
            );
            assert!(err.to_string().contains("ca.key has mode"), "{err}");
        }
    }
    assert_eq!(fs::read(&s.cert).unwrap(), issued);
    fs::set_permissions(&key, fs::Permissions::from_mode(0o400)).unwrap();
    cert(&s, &wanted, 397, true).unwrap();
}

#[test]
fn a_ca_that_ends_before_the_certificate_would_is_refused() {
    let s = setup();
    let wanted = names(&["localhost"], &[]);
    cert(&s, &wanted, 397, false).unwrap();
    let before = fs::read(&s.cert).unwrap();
    let err = cert(&s, &wanted, 3700, true).err().unwrap();
    match &err {
        TlsGenError::CaExpiresFirst { max_days, .. } => {
            assert!((3649..=3650).contains(max_days), "{max_days}")
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("--days 36"), "{err}");
    assert_eq!(fs::read(&s.cert).unwrap(), before);

    // A CA made for a first certificate that long is made to outlast it.
    let long = setup();
    let report = cert(&long, &wanted, 5000, false).unwrap();
    assert!(report.ca.facts.not_after - now() > Duration::days(5000));
}

#[test]
fn someone_elses_certificate_is_replaced_only_with_renew() {
    let s = setup();
    fs::create_dir_all(&s.tls).unwrap();
    let theirs = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    fs::write(&s.cert, theirs.cert.pem()).unwrap();
    fs::write(&s.key, theirs.signing_key.serialize_pem()).unwrap();
    let wanted = names(&["localhost"], &[]);
    let err = cert(&s, &wanted, 397, false).err().unwrap();
    assert!(matches!(err, TlsGenError::Foreign { .. }), "{err}");
    assert!(err.to_string().contains("--renew"), "{err}");
    assert_eq!(fs::read_to_string(&s.cert).unwrap(), theirs.cert.pem());
    assert!(!s.tls.join(CA_KEY).exists(), "no CA is made for a refusal");
    let report = cert(&s, &wanted, 397, true).unwrap();
    assert_eq!(issued_why(&report), Some(Why::Asked));
}

#[test]
fn half_a_ca_is_refused() {
    let s = setup();
    let wanted = names(&["localhost"], &[]);
    cert(&s, &wanted, 397, false).unwrap();
    fs::remove_file(s.tls.join(CA_CERT)).unwrap();
    let err = cert(&s, &wanted, 397, true).err().unwrap();
    assert!(matches!(err, TlsGenError::HalfCa { .. }), "{err}");
    assert!(s.tls.join(CA_KEY).exists());
}

#[test]
fn names_are_checked_and_compared_as_sets() {
    let n = names(
        &["Registry.LAN.", "127.0.0.1", "[::1]", "registry.lan"],
        &["127.0.0.1"],
    );
    assert_eq!(n.dns, ["registry.lan"]);
    assert_eq!(n.all(), ["registry.lan", "127.0.0.1", "[::1]"]);
    assert_eq!(n.primary(), "registry.lan");
    assert!(n.same_as(&names(&["::1", "registry.lan"], &["127.0.0.1"])));
    assert!(!n.same_as(&names(&["registry.lan"], &["127.0.0.1"])));
    assert_eq!(names(&["*.edge.lan"], &[]).dns, ["*.edge.lan"]);
    for bad in ["localhost:5000", "a..b", "-a.lan", "*.lan", "a_b.lan", ""] {
        let err = Names::new(&[bad.to_owned()], &[]).err();
        assert!(matches!(err, Some(TlsGenError::BadName(_))), "{bad}");
    }
    assert!(Names::new(&[], &[]).is_err());
    let hint = Names::new(&["localhost:5000".to_owned()], &[])
        .err()
        .unwrap();
    assert!(hint.to_string().contains("--port"), "{hint}");
}

#[test]
fn expiry_reads_from_a_chain_file() {
    let s = setup();
    cert(&s, &names(&["localhost"], &[]), 20, false).unwrap();
    let mut chain = fs::read(&s.cert).unwrap();
    chain.extend(fs::read(s.tls.join(CA_CERT)).unwrap());
    let facts = CertFacts::from_pem(&chain).unwrap();
    assert!(!facts.is_ca && facts.server_auth);
    let left = facts.not_after - OffsetDateTime::now_utc();
    assert!(
        left > Duration::days(19) && left <= Duration::days(20),
        "{left}"
    );
}
