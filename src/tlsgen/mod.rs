//! Certificates for berth's own TLS listener, with no HTTP in it: a private CA kept in the data
//! directory and server certificates it signs (`berth cert`), and the facts `berth serve` reads
//! back to warn before its certificate expires.
//!
//! Keys are ECDSA P-256, which every client accepts; generation is rcgen over ring, parsing is
//! x509-parser.
//!
//! Layout: `files` (atomic writes, key permissions), `inspect` (reading certificates back),
//! `ca` (the authority), `issue` (keep or issue the server certificate).

mod ca;
mod files;
pub mod inspect;
mod issue;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::path::PathBuf;

use time::{Duration, OffsetDateTime};

pub use ca::{Ca, CA_CERT, CA_KEY};
pub use inspect::{now, show_time, CertFacts};
pub use issue::{run, Report, Request, Server, Why};

/// Default name of the server certificate and key in the `tls/` directory.
pub const SERVER_CERT: &str = "server.crt";
pub const SERVER_KEY: &str = "server.key";

/// A certificate this close to its end is replaced by `berth cert` even without `--renew`, and
/// `berth serve` warns about it: two weeks leave time to notice and to restart.
pub const RENEW_WITHIN_DAYS: i64 = 14;

/// Certificates start an hour in the past, so a client whose clock is a little behind still
/// accepts a certificate issued just now.
const BACKDATE: Duration = Duration::HOUR;

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum TlsGenError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} has mode {mode:o}: a CA key must be readable by its owner only. It may have leaked; \
         if you are sure it has not, chmod 600 it, otherwise move ca.key and ca.crt away to make a \
         new CA (and give clients the new ca.crt)",
        path.display()
    )]
    LooseKey { path: PathBuf, mode: u32 },
    #[error(
        "{} exists but {} does not: restore it, or move {} away to make a new CA (clients must then \
         be given the new ca.crt)",
        present.display(), missing.display(), present.display()
    )]
    HalfCa { present: PathBuf, missing: PathBuf },
    #[error("{} is not a CA certificate", .0.display())]
    NotACa(PathBuf),
    #[error("{} and {} do not belong together", cert.display(), key.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error(
        "the CA {} expires {}, before the new certificate would ({}): give --days {max_days} or \
         fewer, or move ca.crt and ca.key away to make a new CA (and give clients the new ca.crt)",
        path.display(), show_time(*ca_until), show_time(*wanted_until)
    )]
    CaExpiresFirst {
        path: PathBuf,
        ca_until: OffsetDateTime,
        wanted_until: OffsetDateTime,
        max_days: i64,
    },
    #[error("{}: {reason}; --renew replaces it", path.display())]
    Foreign { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Parse { path: PathBuf, reason: String },
    #[error("{0} appeared while this run was creating it; run again")]
    Exists(PathBuf),
    #[error("{0}")]
    BadName(String),
    #[error("generating: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the OS random source failed: {0}")]
    Random(String),
}

/// The DNS names and IP addresses a certificate is for, in the order given, without repeats.
/// Two sets are the same whatever their order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl Names {
    /// Checks `--host` and `--ip` values. A host written as an IP address is taken as one,
    /// since clients match addresses only against IP entries.
    pub fn new(hosts: &[String], ips: &[IpAddr]) -> Result<Names, TlsGenError> {
        let mut names = Names::default();
        for host in hosts {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = bare.parse::<IpAddr>() {
                names.push_ip(ip);
                continue;
            }
            let dns = host.trim_end_matches('.').to_ascii_lowercase();
            if !is_dns_name(&dns) {
                let hint = if dns.contains(':') {
                    " (the port goes in --port)"
                } else {
                    ""
                };
                return Err(TlsGenError::BadName(format!(
                    "--host {host}: not a DNS name{hint}"
                )));
            }
            names.push_dns(dns);
        }
        for ip in ips {
            names.push_ip(*ip);
        }
        if names.dns.is_empty() && names.ips.is_empty() {
            return Err(TlsGenError::BadName(
                "give the names clients use: --host NAME and/or --ip ADDR".to_owned(),
            ));
        }
        Ok(names)
    }

    pub(crate) fn push_dns(&mut self, dns: String) {
        if !self.dns.contains(&dns) {
            self.dns.push(dns);
        }
    }

    pub(crate) fn push_ip(&mut self, ip: IpAddr) {
        if !self.ips.contains(&ip) {
            self.ips.push(ip);
        }
    }

    /// The first DNS name, else the first address: the certificate's common name and the
    /// host the printed instructions use.
    pub fn primary(&self) -> String {
        self.all().into_iter().next().unwrap_or_default()
    }

    /// Every name as clients write it in `host:port` (IPv6 in brackets).
    pub fn all(&self) -> Vec<String> {
        let ips = self.ips.iter().map(|ip| match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        });
        self.dns.iter().cloned().chain(ips).collect()
    }

    pub fn same_as(&self, other: &Names) -> bool {
        let mut a = (self.dns.clone(), self.ips.clone());
        let mut b = (other.dns.clone(), other.ips.clone());
        for set in [&mut a, &mut b] {
            set.0.sort();
            set.1.sort();
        }
        a == b
    }
}

/// Letters, digits and hyphens in labels of at most 63, at most 253 in all; `*` alone as the
/// first label of a name with at least two more.
fn is_dns_name(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.iter().enumerate().all(|(i, label)| {
            (i == 0 && *label == "*" && labels.len() >= 3)
                || (!label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        })
}

/// 16 random bytes, positive and without a leading zero byte: serial numbers must differ between
/// certificates of one CA, or clients may refuse a renewed one.
fn random_serial() -> Result<rcgen::SerialNumber, TlsGenError> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| TlsGenError::Random(e.to_string()))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(rcgen::SerialNumber::from_slice(&bytes))
}
