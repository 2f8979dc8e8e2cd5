//! berth's HTTP client toward one upstream registry (the pull-through cache's source): manifests
//! and blobs by the distribution API, with the docker token flow (or Basic) when the upstream
//! asks for credentials. Every error names the upstream and the request, never a credential,
//! and says whether the upstream is down ([`UpstreamError::is_outage`]) or refused.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, Method, StatusCode};
use reqwest::{RequestBuilder, Response};

use crate::mirror::challenge::{self, Challenge};
use crate::mirror::config::{Credentials, MirrorConfig};
use crate::mirror::tls;
use crate::mirror::tokens::{parse_answer, TokenAnswer, TokenCache};
use crate::oci::digest::Digest;
use crate::oci::name::{is_valid_name, ManifestRef};

/// What berth accepts: the four current formats, and nothing (no `*/*`, no schema 1) that
/// would let an upstream convert a manifest and so change its digest. A test checks it
/// against the constants of `oci::manifest`.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";
const USER_AGENT: &str = concat!("berth/", env!("CARGO_PKG_VERSION"));
/// Blob storage behind a CDN answers with one or two redirects; more is a loop.
const MAX_REDIRECTS: usize = 10;
/// A token answer is a JWT and a few fields; anything near this is not one.
const MAX_TOKEN_ANSWER: usize = 256 * 1024;
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// One upstream registry: connection pool, TLS trust, credentials and cached tokens.
pub struct Upstream {
    /// `scheme://host[:port]`, no trailing slash.
    base: String,
    client: reqwest::Client,
    credentials: Option<Credentials>,
    /// Connect, response head and silence within a body.
    timeout: Duration,
    /// Tokens by the scope they were fetched for, `repository:<repo>:pull`.
    tokens: TokenCache,
    /// Set once the upstream challenged Basic: later requests carry the credentials at once.
    basic: AtomicBool,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("base", &self.base)
            .field("credentials", &self.credentials)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamManifest {
    /// Content-Type as the upstream sent it, trimmed, parameters kept.
    pub media_type: String,
    /// The upstream's Docker-Content-Digest header, if it sent a parseable one.
    pub digest: Option<Digest>,
    /// The body (empty for HEAD).
    pub body: Bytes,
    /// Content-Length as sent, if any.
    pub size: Option<u64>,
}

/// A blob response being read; dropping it aborts the transfer.
pub struct UpstreamBlob {
    response: Response,
    size: Option<u64>,
    timeout: Duration,
    op: Op,
}

impl fmt::Debug for UpstreamBlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamBlob")
            .field("request", &self.op.0)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl UpstreamBlob {
    /// Content-Length as sent, if any.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// The next piece of the body; Ok(None) at the end. A silence longer than the
    /// mirror's timeout is an error (UpstreamError::Unreachable).
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        next_chunk(&mut self.response, self.timeout, &self.op).await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Could not connect, TLS failed, timed out, connection reset mid-body.
    #[error("{0}")]
    Unreachable(String),
    /// The upstream answered 5xx or 429 (the status, and a message naming it).
    #[error("{1}")]
    Unavailable(u16, String),
    /// 401/403 even after authenticating (wrong credentials, no access).
    #[error("{0}")]
    Denied(String),
    /// Anything else unexpected: other 4xx, a manifest larger than the limit, a malformed
    /// token answer...
    #[error("{0}")]
    Invalid(String),
}

impl UpstreamError {
    /// Whether a cached copy should be served instead (Unreachable or Unavailable).
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            UpstreamError::Unreachable(_) | UpstreamError::Unavailable(..)
        )
    }
}

/// One request, as error messages name it: `upstream <base>: <method> <path>`.
#[derive(Clone)]
struct Op(String);

impl Op {
    fn new(base: &str, what: impl fmt::Display) -> Op {
        Op(format!("upstream {base}: {what}"))
    }

    fn unreachable(&self, detail: impl fmt::Display) -> UpstreamError {
        UpstreamError::Unreachable(format!("{}: {detail}", self.0))
    }

    fn denied(&self, detail: impl fmt::Display) -> UpstreamError {
        UpstreamError::Denied(format!("{}: {detail}", self.0))
    }

    fn invalid(&self, detail: impl fmt::Display) -> UpstreamError {
        UpstreamError::Invalid(format!("{}: {detail}", self.0))
    }

    /// The error for a status the caller did not expect.
    fn status(&self, status: StatusCode) -> UpstreamError {
        match status.as_u16() {
            code @ (429 | 500..=599) => {
                UpstreamError::Unavailable(code, format!("{}: {status}", self.0))
            }
            401 | 403 => self.denied(status),
            _ => self.invalid(format_args!("unexpected status {status}")),
        }
    }
}

/// The credentials a request carries.
#[derive(Clone)]
enum Auth {
    Anonymous,
    Basic,
    Bearer(String),
}

impl Auth {
    fn describe(&self) -> &'static str {
        match self {
            Auth::Anonymous => "anonymously",
            Auth::Basic => "with the configured credentials",
            Auth::Bearer(_) => "with a token from its token service",
        }
    }
}

impl Upstream {
    /// `config.upstream` must be Some. Reads the trust roots now, so a bad `ca-file` stops
    /// start-up instead of the first pull.
    pub fn new(config: &MirrorConfig) -> Result<Upstream, String> {
        let base = config
            .upstream
            .clone()
            .ok_or_else(|| format!("mirror {}: no upstream configured", config.ns))?;
        let context = |e: &dyn fmt::Display| format!("mirror {} (upstream {base}): {e}", config.ns);
        let tls = tls::client_config(config.ca_file.as_deref()).map_err(|e| context(&e))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(config.timeout)
            .no_proxy()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .build()
            .map_err(|e| context(&describe(e)))?;
        Ok(Upstream {
            base,
            client,
            credentials: config.credentials.clone(),
            timeout: config.timeout,
            tokens: TokenCache::default(),
            basic: AtomicBool::new(false),
        })
    }

    /// The upstream's base URL (for logs).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GET (head=false) or HEAD (head=true) /v2/<repo>/manifests/<reference>. Ok(None) on 404.
    /// A body larger than max_bytes is Invalid, and no more than max_bytes is ever buffered.
    /// `repo` is the upstream's repository name (e.g. "library/busybox").
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        head: bool,
        max_bytes: usize,
    ) -> Result<Option<UpstreamManifest>, UpstreamError> {
        let method = if head { Method::HEAD } else { Method::GET };
        let path = format!("/v2/{repo}/manifests/{reference}");
        let op = Op::new(&self.base, format_args!("{method} {path}"));
        if !is_valid_name(repo) || ManifestRef::parse(reference).is_err() {
            return Err(op.invalid("not a repository name and tag or digest"));
        }
        let url = format!("{}{path}", self.base);
        let response = self
            .authed(repo, &op, || {
                self.client
                    .request(method.clone(), &url)
                    .header(header::ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            status => return Err(op.status(status)),
        }
        let headers = response.headers();
        let media_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| op.invalid("the answer has no usable Content-Type"))?
            .to_owned();
        let digest = headers
            .get(DOCKER_CONTENT_DIGEST)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v.trim()).ok());
        let size = content_length(headers);
        let body = if head {
            Bytes::new()
        } else {
            read_bounded(response, max_bytes, self.timeout, &op).await?
        };
        Ok(Some(UpstreamManifest {
            media_type,
            digest,
            body,
            size,
        }))
    }

    /// GET /v2/<repo>/blobs/<digest>, following redirects (a redirect to another host loses
    /// the Authorization header). Ok(None) on 404. Waiting for the response head is bounded
    /// by the mirror's timeout, and so is each silence within the body.
    pub async fn blob(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<UpstreamBlob>, UpstreamError> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let op = Op::new(&self.base, format_args!("GET {path}"));
        if !is_valid_name(repo) {
            return Err(op.invalid("not a repository name"));
        }
        let url = format!("{}{path}", self.base);
        let response = self.authed(repo, &op, || self.client.get(&url)).await?;
        match response.status() {
            StatusCode::OK => Ok(Some(UpstreamBlob {
                size: content_length(response.headers()),
                response,
                timeout: self.timeout,
                op,
            })),
            StatusCode::NOT_FOUND => Ok(None),
            status => Err(op.status(status)),
        }
    }

    /// Sends the request `build` makes, authenticating once more when the upstream answers
    /// 401 with a challenge. Any status but 401/403 is handed back for the caller to judge.
    async fn authed(
        &self,
        repo: &str,
        op: &Op,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, UpstreamError> {
        let scope = format!("repository:{repo}:pull");
        let first = self.first_auth(&scope);
        let response = self.send(self.with_auth(build(), &first), op).await?;
        match response.status() {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::FORBIDDEN => {
                return Err(op.denied(format_args!("403 Forbidden {}", first.describe())))
            }
            _ => return Ok(response),
        }
        let challenges = challenges(response.headers());
        drop(response);
        let retry = if let Some(bearer) = challenges.iter().find(|c| c.is("bearer")) {
            if matches!(first, Auth::Bearer(_)) {
                self.tokens.forget(&scope);
            }
            let fetched = Instant::now();
            let answer = self.fetch_token(bearer, &scope, op).await?;
            self.tokens
                .put(&scope, &answer.token, answer.expires_in, fetched);
            Auth::Bearer(answer.token)
        } else if challenges.iter().any(|c| c.is("basic")) {
            if self.credentials.is_none() {
                return Err(
                    op.denied("401: the upstream wants Basic credentials, none are configured")
                );
            }
            if matches!(first, Auth::Basic) {
                return Err(op.denied(format_args!("401 Unauthorized {}", first.describe())));
            }
            self.basic.store(true, Ordering::Relaxed);
            Auth::Basic
        } else {
            return Err(op.denied("401 without a Bearer or Basic challenge"));
        };
        let response = self.send(self.with_auth(build(), &retry), op).await?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            if matches!(retry, Auth::Bearer(_)) {
                self.tokens.forget(&scope);
            }
            return Err(op.denied(format_args!("{status} {}", retry.describe())));
        }
        Ok(response)
    }

    /// A cached token if there is one; else Basic when the upstream asked for it before.
    fn first_auth(&self, scope: &str) -> Auth {
        if let Some(token) = self.tokens.get(scope, Instant::now()) {
            Auth::Bearer(token)
        } else if self.credentials.is_some() && self.basic.load(Ordering::Relaxed) {
            Auth::Basic
        } else {
            Auth::Anonymous
        }
    }

    fn with_auth(&self, request: RequestBuilder, auth: &Auth) -> RequestBuilder {
        match (auth, &self.credentials) {
            (Auth::Bearer(token), _) => request.bearer_auth(token),
            (Auth::Basic, Some(c)) => request.basic_auth(&c.username, Some(&c.password)),
            _ => request,
        }
    }

    /// Asks the challenge's realm for a token (docker token spec): `service` and `scope` from
    /// the challenge (`default_scope` when it names none), Basic credentials if configured.
    async fn fetch_token(
        &self,
        challenge: &Challenge,
        default_scope: &str,
        op: &Op,
    ) -> Result<TokenAnswer, UpstreamError> {
        let realm = challenge
            .param("realm")
            .filter(|r| !r.is_empty())
            .ok_or_else(|| op.invalid("Bearer challenge without a realm"))?;
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| op.invalid(format_args!("token realm {realm:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(op.invalid(format_args!("token realm {realm:?} is not an HTTP URL")));
        }
        if self.credentials.is_some() && url.scheme() == "http" && self.base.starts_with("https://")
        {
            return Err(op.invalid(format_args!(
                "token realm {realm:?} is plain HTTP; credentials are not sent there"
            )));
        }
        let token_op = Op::new(
            &self.base,
            format_args!("token service {}", realm.split('?').next().unwrap_or(realm)),
        );
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = challenge.param("service") {
                query.append_pair("service", service);
            }
            let scopes: Vec<&str> = challenge
                .param("scope")
                .map(|s| s.split_whitespace().collect())
                .unwrap_or_default();
            if scopes.is_empty() {
                query.append_pair("scope", default_scope);
            }
            for scope in scopes {
                query.append_pair("scope", scope);
            }
        }
        let mut request = self.client.get(url);
        if let Some(c) = &self.credentials {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        let response = self.send(request, &token_op).await?;
        let status = response.status();
        if !status.is_success() {
            let who = if self.credentials.is_some() {
                "the configured credentials were refused"
            } else {
                "anonymous access was refused"
            };
            return Err(match status.as_u16() {
                401 | 403 => token_op.denied(format_args!("{status}: {who}")),
                _ => token_op.status(status),
            });
        }
        let body = read_bounded(response, MAX_TOKEN_ANSWER, self.timeout, &token_op).await?;
        parse_answer(&body).map_err(|e| token_op.invalid(format_args!("token answer: {e}")))
    }

    /// Sends `request`, waiting at most the timeout for the response head.
    async fn send(&self, request: RequestBuilder, op: &Op) -> Result<Response, UpstreamError> {
        match tokio::time::timeout(self.timeout, request.send()).await {
            Err(_) => Err(op.unreachable(format_args!(
                "no answer within {} ms",
                self.timeout.as_millis()
            ))),
            Ok(Err(e)) if e.is_builder() || e.is_redirect() => Err(op.invalid(describe(e))),
            Ok(Err(e)) => Err(op.unreachable(describe(e))),
            Ok(Ok(response)) => Ok(response),
        }
    }
}

/// The challenges of every `WWW-Authenticate` header; unparseable ones are skipped (another
/// header may still hold a usable challenge).
fn challenges(headers: &HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| challenge::parse(v).ok())
        .flatten()
        .collect()
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The next piece of a body, or an Unreachable error after `timeout` of silence.
async fn next_chunk(
    response: &mut Response,
    timeout: Duration,
    op: &Op,
) -> Result<Option<Bytes>, UpstreamError> {
    match tokio::time::timeout(timeout, response.chunk()).await {
        Err(_) => Err(op.unreachable(format_args!("body stalled for {} ms", timeout.as_millis()))),
        Ok(Err(e)) => Err(op.unreachable(format_args!("reading the body: {}", describe(e)))),
        Ok(Ok(piece)) => Ok(piece),
    }
}

/// The whole body, refused (Invalid) as soon as it would exceed `max` bytes: a declared
/// length is checked before reading, a chunked body as it arrives.
async fn read_bounded(
    mut response: Response,
    max: usize,
    timeout: Duration,
    op: &Op,
) -> Result<Bytes, UpstreamError> {
    let too_large = || op.invalid(format_args!("the body is larger than {max} bytes"));
    let declared = content_length(response.headers());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let capacity = declared.map_or(0, |n| usize::try_from(n).unwrap_or(max).min(max));
    let mut body = BytesMut::with_capacity(capacity);
    while let Some(piece) = next_chunk(&mut response, timeout, op).await? {
        if piece.len() > max - body.len() {
            return Err(too_large());
        }
        body.extend_from_slice(&piece);
    }
    Ok(body.freeze())
}

/// A reqwest error with its causes, without the URL (a redirect's may carry a signature).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};

    /// The cache shares one `Arc<Upstream>` across requests and streams blobs from tasks.
    #[test]
    fn shareable_across_tasks() {
        fn check<T: Send + Sync>() {}
        check::<Upstream>();
        check::<UpstreamBlob>();
        check::<UpstreamError>();
    }

    #[test]
    fn accept_lists_exactly_the_four_formats() {
        let listed: Vec<&str> = MANIFEST_ACCEPT.split(',').map(str::trim).collect();
        assert_eq!(
            listed,
            [
                OCI_INDEX,
                OCI_MANIFEST,
                DOCKER_MANIFEST_LIST,
                DOCKER_MANIFEST
            ]
        );
    }

    #[test]
    fn statuses_map_to_outages_or_refusals() {
        let op = Op::new("http://up", "GET /v2/a/manifests/b");
        for (code, outage) in [
            (503, true),
            (500, true),
            (429, true),
            (401, false),
            (400, false),
        ] {
            let e = op.status(StatusCode::from_u16(code).unwrap());
            assert_eq!(e.is_outage(), outage, "{code}: {e}");
            assert!(
                e.to_string().starts_with("upstream http://up: GET /v2/a/"),
                "{e}"
            );
        }
        assert!(matches!(
            op.status(StatusCode::SERVICE_UNAVAILABLE),
            UpstreamError::Unavailable(503, _)
        ));
        assert!(matches!(
            op.status(StatusCode::FORBIDDEN),
            UpstreamError::Denied(_)
        ));
    }

    #[test]
    fn new_needs_an_upstream_and_a_readable_ca_file() {
        let mut config = MirrorConfig::resolve(&crate::mirror::config::MirrorTable {
            ns: "quay.io".into(),
            ..Default::default()
        })
        .unwrap();
        assert!(Upstream::new(&config).unwrap_err().contains("no upstream"));
        config.upstream = Some("https://quay.io".into());
        let up = Upstream::new(&config).unwrap();
        assert_eq!(up.base(), "https://quay.io");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        config.ca_file = Some(empty);
        let e = Upstream::new(&config).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
    }
}
