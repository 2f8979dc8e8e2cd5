//! Asks a running registry's admin endpoint: one POST with a JSON body over HTTP/1.1, plain or
//! TLS (trusting the CA certificate given with `--ca-cert`), waiting as long as the job takes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::cli::CliError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The registry's base URL, split up: `http[s]://host[:port][/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash (a registry behind a proxy under a path).
    pub prefix: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, CliError> {
        let bad = |why: &str| CliError::Usage(format!("--url {url:?}: {why}"));
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("must start with http:// or https://")),
        };
        let host = uri.host().ok_or_else(|| bad("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if uri.query().is_some() {
            return Err(bad("must not have a query"));
        }
        Ok(Endpoint {
            tls,
            host,
            port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The registry's answer.
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Answer {
    /// The `detail` (or else the `message`) of an OCI error body, or the body as text.
    pub fn error_text(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        let first = v.pointer("/errors/0");
        let text = |key| {
            first
                .and_then(|e| e.get(key))
                .and_then(serde_json::Value::as_str)
        };
        text("detail")
            .or_else(|| text("message"))
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).trim().to_owned())
    }
}

/// POSTs `body` to `path` under the endpoint and waits for the whole answer.
pub async fn post(
    endpoint: &Endpoint,
    ca_cert: Option<&Path>,
    path: &str,
    body: Vec<u8>,
) -> Result<Answer, CliError> {
    post_as(endpoint, ca_cert, path, body, None).await
}

/// Like [`post`], with an `Authorization` header.
pub async fn post_as(
    endpoint: &Endpoint,
    ca_cert: Option<&Path>,
    path: &str,
    body: Vec<u8>,
    authorization: Option<&str>,
) -> Result<Answer, CliError> {
    let addr = endpoint.authority();
    let connector = endpoint.tls.then(|| tls_connector(ca_cert)).transpose()?;
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| CliError::Remote(format!("connecting to {addr}: timed out")))?
        .map_err(|e| CliError::Remote(format!("connecting to {addr}: {e}")))?;
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(format!("{}{path}", endpoint.prefix))
        .header(http::header::HOST, &addr);
    if let Some(a) = authorization {
        request = request.header(http::header::AUTHORIZATION, a);
    }
    let request = request
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| CliError::Usage(format!("request: {e}")))?;
    if let Some(connector) = connector {
        let name = ServerName::try_from(endpoint.host.clone())
            .map_err(|e| CliError::Usage(format!("--url host: {e}")))?;
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| CliError::Remote(format!("TLS with {addr}: {e}")))?;
        exchange(stream, request).await
    } else {
        exchange(tcp, request).await
    }
}

async fn exchange<IO>(io: IO, request: Request<Full<Bytes>>) -> Result<Answer, CliError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let lost = |e: hyper::Error| CliError::Remote(format!("talking to the registry: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(lost)?;
    let driver = tokio::spawn(conn);
    let response = sender.send_request(request).await.map_err(lost)?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(lost)?
        .to_bytes();
    driver.abort();
    Ok(Answer { status, body })
}

fn tls_connector(ca_cert: Option<&Path>) -> Result<tokio_rustls::TlsConnector, CliError> {
    let path = ca_cert.ok_or_else(|| {
        CliError::Usage(
            "an https:// --url needs --ca-cert FILE, the CA that signed the registry's certificate"
                .into(),
        )
    })?;
    let read_error =
        |e: &dyn std::fmt::Display| CliError::Usage(format!("{}: {e}", path.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| read_error(&e))? {
        roots
            .add(cert.map_err(|e| read_error(&e))?)
            .map_err(|e| read_error(&e))?;
    }
    if roots.is_empty() {
        return Err(read_error(&"no certificate found"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| CliError::Usage(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let e = Endpoint::parse("http://127.0.0.1:5000").unwrap();
        assert_eq!(
            e,
            Endpoint {
                tls: false,
                host: "127.0.0.1".into(),
                port: 5000,
                prefix: String::new()
            }
        );
        let e = Endpoint::parse("https://[::1]/registry/").unwrap();
        assert!(e.tls);
        assert_eq!((e.host.as_str(), e.port), ("::1", 443));
        assert_eq!(e.prefix, "/registry");
        assert_eq!(e.authority(), "[::1]:443");
        for bad in ["127.0.0.1:5000", "ftp://x", "http://x/?a=b", "not a url"] {
            assert!(
                matches!(Endpoint::parse(bad), Err(CliError::Usage(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn error_bodies() {
        let a = Answer {
            status: StatusCode::CONFLICT,
            body: Bytes::from_static(
                br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"too many requests","detail":"a scrub is already running"}]}"#,
            ),
        };
        assert_eq!(a.error_text(), "a scrub is already running");
        let a = Answer {
            status: StatusCode::BAD_GATEWAY,
            body: Bytes::from_static(b"bad gateway\n"),
        };
        assert_eq!(a.error_text(), "bad gateway");
    }
}
