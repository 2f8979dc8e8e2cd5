//! The HTTP side of the load tool: one pooled HTTP/1.1 client, URL building against the
//! registry base, `Location` resolution, and the tool's single error type.

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub type ReqBody = BoxBody<Bytes, Infallible>;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("bad registry URL {0:?}: only http://host:port is supported")]
    BadRegistry(String),
    #[error("bad argument: {0}")]
    BadArgument(String),
    #[error("bad URL {0:?}")]
    BadUrl(String),
    #[error("request failed: {0}")]
    Request(#[from] hyper_util::client::legacy::Error),
    #[error("reading the response failed: {0}")]
    Body(#[from] hyper::Error),
    #[error("{what}: unexpected status {status}: {body}")]
    Status {
        what: &'static str,
        status: StatusCode,
        body: String,
    },
    #[error("{0}: response has no Location header")]
    NoLocation(&'static str),
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("serving failed: {0}")]
    Serve(#[from] std::io::Error),
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch { expected: u64, actual: u64 },
}

/// A registry reachable over plain HTTP, e.g. `http://127.0.0.1:5000`.
#[derive(Clone)]
pub struct Registry {
    base: String,
    client: Client<HttpConnector, ReqBody>,
}

impl Registry {
    pub fn new(url: &str) -> Result<Registry, LoadError> {
        let base = url.trim_end_matches('/').to_string();
        let authority = base
            .strip_prefix("http://")
            .ok_or_else(|| LoadError::BadRegistry(url.to_string()))?;
        if authority.is_empty() || authority.contains('/') {
            return Err(LoadError::BadRegistry(url.to_string()));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(64)
            .build(connector);
        Ok(Registry { base, client })
    }

    /// The base URL as given, without a trailing slash (for result lines).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Absolute URL for a path (`/v2/...`) or for a `Location` value, which registries send
    /// either absolute or as a path relative to the host.
    pub fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else if path_or_url.starts_with('/') {
            format!("{}{}", self.base, path_or_url)
        } else {
            format!("{}/{}", self.base, path_or_url)
        }
    }

    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(header::HeaderName, String)],
        body: ReqBody,
    ) -> Result<Response<Incoming>, LoadError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| LoadError::BadUrl(url.to_string()))?;
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(len) = body.size_hint().exact() {
            builder = builder.header(header::CONTENT_LENGTH, len);
        }
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let req = builder
            .body(body)
            .map_err(|_| LoadError::BadUrl(url.to_string()))?;
        Ok(self.client.request(req).await?)
    }
}

pub fn empty() -> ReqBody {
    Empty::new().boxed()
}

pub fn full(data: Bytes) -> ReqBody {
    Full::new(data).boxed()
}

pub fn boxed<B>(body: B) -> ReqBody
where
    B: Body<Data = Bytes, Error = Infallible> + Send + Sync + 'static,
{
    body.boxed()
}

/// Fails with the response body as text unless the status is `want`; otherwise drains the body
/// (so the connection goes back to the pool) and returns the response head.
pub async fn expect(
    what: &'static str,
    resp: Response<Incoming>,
    want: StatusCode,
) -> Result<http::response::Parts, LoadError> {
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await?.to_bytes();
    if parts.status != want {
        return Err(LoadError::Status {
            what,
            status: parts.status,
            body: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
        });
    }
    Ok(parts)
}

pub fn location(what: &'static str, parts: &http::response::Parts) -> Result<String, LoadError> {
    parts
        .headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or(LoadError::NoLocation(what))
}

/// Appends a query parameter to a URL that may already carry a query (upload state tokens).
pub fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_registry() {
        let r = Registry::new("http://127.0.0.1:5000/").unwrap();
        assert_eq!(
            r.url("/v2/a/blobs/uploads/x"),
            "http://127.0.0.1:5000/v2/a/blobs/uploads/x"
        );
        assert_eq!(r.url("http://h:1/v2/x"), "http://h:1/v2/x");
    }

    #[test]
    fn only_plain_http_host_port_is_accepted() {
        assert!(Registry::new("https://127.0.0.1:5000").is_err());
        assert!(Registry::new("http://127.0.0.1:5000/v2").is_err());
    }

    #[test]
    fn query_is_appended_with_the_right_separator() {
        assert_eq!(with_query("/u", "digest", "sha256:a"), "/u?digest=sha256:a");
        assert_eq!(
            with_query("/u?_state=x", "digest", "d"),
            "/u?_state=x&digest=d"
        );
    }
}
