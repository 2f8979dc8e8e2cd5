//! rustls server configuration from PEM files: TLS 1.2 and 1.3, ALPN h2 then http/1.1; and the
//! log's warning, at start and once a day, when the served certificate nears its end.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;
use crate::server::ServerError;
use crate::tlsgen::{show_time, CertFacts, RENEW_WITHIN_DAYS};

pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ServerError> {
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ServerError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServerError::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ServerError::Tls(format!(
            "{}: no certificate found",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, ServerError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        pem::Error::NoItemsFound => {
            ServerError::Tls(format!("{}: no private key found", path.display()))
        }
        e => ServerError::Tls(format!("{}: {e}", path.display())),
    })
}

/// Watches the expiry of the certificate `acceptor` loaded from `files`, read now, while the
/// file is what is being served. `None` if it cannot be read (rustls accepted it, so serving
/// goes on; only the warning is lost).
pub fn watch_expiry(files: &TlsFiles) -> Option<tokio::task::JoinHandle<()>> {
    let facts = std::fs::read(&files.cert)
        .map_err(|e| e.to_string())
        .and_then(|pem| CertFacts::from_pem(&pem));
    match facts {
        Ok(facts) => Some(tokio::spawn(warn_of_expiry(
            files.cert.clone(),
            facts.not_after,
        ))),
        Err(e) => {
            tracing::warn!(file = %files.cert.display(), error = %e, "cannot read the TLS certificate's expiry date");
            None
        }
    }
}

/// An expired certificate fails every client at once, and a registry runs unattended for
/// months: say so in the log at start and then once a day, from two weeks ahead.
async fn warn_of_expiry(path: PathBuf, not_after: OffsetDateTime) {
    let mut tick = tokio::time::interval(Duration::from_secs(86_400));
    loop {
        tick.tick().await;
        if let Some(left) = left_if_soon(not_after, OffsetDateTime::now_utc()) {
            let (file, expires) = (path.display(), show_time(not_after));
            if left.is_negative() {
                tracing::warn!(%file, %expires, "TLS certificate has expired; clients refuse it. Renew it (berth cert --renew) and restart");
            } else {
                let days_left = left.whole_days();
                tracing::warn!(%file, %expires, days_left, "TLS certificate expires soon; renew it (berth cert --renew) and restart");
            }
        }
    }
}

/// Time left until `not_after` (negative once past), when that is within the warning period.
fn left_if_soon(not_after: OffsetDateTime, now: OffsetDateTime) -> Option<time::Duration> {
    let left = not_after - now;
    (left <= time::Duration::days(RENEW_WITHIN_DAYS)).then_some(left)
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;

    #[test]
    fn warns_from_two_weeks_ahead() {
        let now = OffsetDateTime::now_utc();
        let soon = |d: Duration| left_if_soon(now + d, now);
        assert_eq!(soon(Duration::days(15)), None);
        assert_eq!(soon(Duration::days(14) + Duration::SECOND), None);
        assert_eq!(soon(Duration::days(397)), None);
        assert_eq!(soon(Duration::days(14)), Some(Duration::days(14)));
        assert_eq!(soon(Duration::hours(2)), Some(Duration::hours(2)));
        assert!(soon(-Duration::days(3)).is_some_and(|left| left.is_negative()));
    }
}
