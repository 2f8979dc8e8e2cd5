//! The bundle commands against a running registry, through the distribution API: a small
//! blocking client (reqwest on a current-thread runtime) that reads images for `export` and
//! `inventory` and pushes them for `import`. Credentials: `--username` and `BERTH_PASSWORD`,
//! sent as Basic on every request (berth accepts Basic in both of its access-control modes).

use std::io::{self, Read};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, StatusCode};
use serde::Deserialize;

use crate::bundle::origin::Origin;
use crate::bundle::BundleError;
use crate::config::commands::BundleTarget;
use crate::oci::digest::{Algorithm, Digest};
use crate::storage::{Reference, StoredManifest};

use super::CliError;

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";
const PAGE: usize = 1000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest manifest read into memory.
const MAX_MANIFEST: usize = 16 << 20;

pub struct Remote {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
    authorization: Option<String>,
}

/// A failed exchange, as a bundle error naming the request.
fn failed(what: &str, e: impl std::fmt::Display) -> BundleError {
    BundleError::Io(io::Error::other(format!("{what}: {e}")))
}

impl Remote {
    pub fn connect(t: &BundleTarget) -> Result<Remote, CliError> {
        let url = t
            .url
            .as_deref()
            .ok_or_else(|| CliError::Usage("give --data DIR or --url URL".into()))?;
        super::remote::Endpoint::parse(url)?;
        let tls =
            crate::mirror::tls::client_config(t.ca_cert.as_deref()).map_err(CliError::Usage)?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| CliError::Usage(format!("HTTP client: {e}")))?;
        let authorization = match &t.username {
            Some(user) => {
                let pw = std::env::var("BERTH_PASSWORD").map_err(|_| {
                    CliError::Usage("--username needs the password in BERTH_PASSWORD".into())
                })?;
                let token = crate::auth::b64::encode_std(format!("{user}:{pw}").as_bytes());
                Some(format!("Basic {token}"))
            }
            None => None,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Remote {
            rt,
            client,
            base: url.trim_end_matches('/').to_owned(),
            authorization,
        })
    }

    /// Sends one request and waits for the response head.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(header::HeaderName, String)],
        body: Option<Bytes>,
    ) -> Result<reqwest::Response, BundleError> {
        let what = format!("{method} {path}");
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(a) = &self.authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = self.rt.block_on(req.send()).map_err(|e| failed(&what, e))?;
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            return Err(BundleError::Names(format!(
                "{what}: the registry answered {} (give --username, with the password in \
                 BERTH_PASSWORD)",
                resp.status()
            )));
        }
        Ok(resp)
    }

    /// The whole body, at most `max` bytes.
    pub fn body(&self, resp: reqwest::Response, max: usize) -> Result<Bytes, BundleError> {
        let what = resp.url().path().to_owned();
        let body = self
            .rt
            .block_on(resp.bytes())
            .map_err(|e| failed(&what, e))?;
        if body.len() > max {
            return Err(failed(&what, "answer too large"));
        }
        Ok(body)
    }

    /// Fails with the registry's own error text unless the status is one of `ok`.
    pub fn require(
        &self,
        resp: reqwest::Response,
        ok: &[StatusCode],
        what: &str,
    ) -> Result<reqwest::Response, BundleError> {
        if ok.contains(&resp.status()) {
            return Ok(resp);
        }
        let status = resp.status();
        let body = self.body(resp, 1 << 20).unwrap_or_default();
        let answer = super::remote::Answer { status, body };
        Err(failed(
            what,
            format!("the registry answered {status}: {}", answer.error_text()),
        ))
    }

    fn get_json<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<Option<T>, BundleError> {
        let resp = self.send(Method::GET, path, &[], None)?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.require(resp, &[StatusCode::OK], path)?;
        let body = self.body(resp, MAX_MANIFEST)?;
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| failed(path, e))
    }
}

#[derive(Deserialize)]
struct Catalog {
    #[serde(default)]
    repositories: Vec<String>,
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct ReferrerIndex {
    #[serde(default)]
    manifests: Vec<ReferrerEntry>,
}

#[derive(Deserialize)]
struct ReferrerEntry {
    digest: Digest,
}

impl Origin for Remote {
    fn repositories(&self) -> Result<Vec<String>, BundleError> {
        let mut out: Vec<String> = Vec::new();
        loop {
            let mut path = format!("/v2/_catalog?n={PAGE}");
            if let Some(last) = out.last() {
                path.push_str(&format!("&last={last}"));
            }
            let page: Catalog = self.get_json(&path)?.unwrap_or(Catalog {
                repositories: Vec::new(),
            });
            let done = page.repositories.len() < PAGE;
            out.extend(page.repositories);
            if done {
                return Ok(out);
            }
        }
    }

    fn tags(&self, repo: &str) -> Result<Vec<String>, BundleError> {
        let mut out: Vec<String> = Vec::new();
        loop {
            let mut path = format!("/v2/{repo}/tags/list?n={PAGE}");
            if let Some(last) = out.last() {
                path.push_str(&format!("&last={last}"));
            }
            let page = self
                .get_json::<TagList>(&path)?
                .and_then(|t| t.tags)
                .unwrap_or_default();
            let done = page.len() < PAGE;
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    fn manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>, BundleError> {
        let r = match reference {
            Reference::Tag(t) => t.clone(),
            Reference::Digest(d) => d.to_string(),
        };
        let path = format!("/v2/{repo}/manifests/{r}");
        let accept = [(header::ACCEPT, MANIFEST_ACCEPT.to_owned())];
        let resp = self.send(Method::GET, &path, &accept, None)?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.require(resp, &[StatusCode::OK], &path)?;
        let media_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = self.body(resp, MAX_MANIFEST)?;
        let digest = Digest::of(Algorithm::Sha256, &body);
        if let Reference::Digest(want) = reference {
            if *want != digest {
                return Err(failed(&path, format!("the body hashes to {digest}")));
            }
        }
        Ok(Some(StoredManifest {
            digest,
            media_type,
            body,
        }))
    }

    fn blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, BundleError> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let resp = self.send(Method::HEAD, &path, &[], None)?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.require(resp, &[StatusCode::OK], &path)?;
        let size = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| failed(&path, "no Content-Length"))?;
        Ok(Some(size))
    }

    fn referrers(&self, repo: &str, digest: &Digest) -> Result<Vec<Digest>, BundleError> {
        let path = format!("/v2/{repo}/referrers/{digest}");
        let index: Option<ReferrerIndex> = self.get_json(&path)?;
        Ok(index
            .map(|i| i.manifests.into_iter().map(|m| m.digest).collect())
            .unwrap_or_default())
    }

    fn open_blob<'a>(
        &'a self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Box<dyn Read + 'a>, BundleError> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let resp = self.send(Method::GET, &path, &[], None)?;
        let resp = self.require(resp, &[StatusCode::OK], &path)?;
        Ok(Box::new(BodyRead {
            remote: self,
            resp,
            current: Bytes::new(),
        }))
    }
}

/// A response body as `Read`, one received frame at a time.
struct BodyRead<'a> {
    remote: &'a Remote,
    resp: reqwest::Response,
    current: Bytes,
}

impl Read for BodyRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.remote.rt.block_on(self.resp.chunk()) {
                Ok(Some(b)) => self.current = b,
                Ok(None) => return Ok(0),
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
        }
        let n = (&*self.current).read(buf)?;
        let _ = self.current.split_to(n);
        Ok(n)
    }
}
