//! Shared harness for the API scenarios: a berth server started in-process on 127.0.0.1:0
//! over a temporary data directory, and a minimal HTTP/1.1 client that can send bodies with a
//! length or chunked without one.
#![allow(dead_code)]

pub mod auth;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use berth::config::Config;
use berth::oci::digest::{Algorithm, Digest};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::oneshot;

pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), berth::server::ServerError>>>,
    pub dir: tempfile::TempDir,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(|_| {}).await
    }

    /// Starts a server after letting the scenario adjust the configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), adjust).await
    }

    /// Starts a server over an existing directory (to restart over the same data).
    pub async fn start_in(dir: tempfile::TempDir, adjust: impl FnOnce(&mut Config)) -> Server {
        Server::start_at(dir, "127.0.0.1:0", adjust).await
    }

    /// Starts a server listening on `bind` (e.g. `0.0.0.0:0` to be reached from a
    /// non-loopback address).
    pub async fn start_at(
        dir: tempfile::TempDir,
        bind: &str,
        adjust: impl FnOnce(&mut Config),
    ) -> Server {
        let mut config = Config::with_data(&dir.path().join("data"));
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(berth::server::run(
            listener,
            async move {
                let _ = stopped.await;
            },
            config,
        ));
        Server {
            addr,
            stop: Some(stop),
            task: Some(task),
            dir,
        }
    }

    /// Signals shutdown and waits for the server to close the store; hands back the data.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        self.dir
    }

    /// A handle that only sends requests to `addr` (for use from spawned tasks).
    pub fn client_only(addr: SocketAddr) -> Client {
        Client { addr }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, &[], Body::Empty).await
    }

    pub async fn head(&self, path: &str) -> Resp {
        self.send(Method::HEAD, path, &[], Body::Empty).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, &[], Body::Empty).await
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Resp {
        Server::client_only(self.addr)
            .send(method, path, headers, body)
            .await
    }

    // ---- registry steps used by many scenarios ----

    /// Pushes a blob monolithically; returns its digest.
    pub async fn push_blob(&self, name: &str, data: &[u8]) -> Digest {
        let digest = sha256(data);
        let r = self
            .send(
                Method::POST,
                &format!("/v2/{name}/blobs/uploads/?digest={digest}"),
                &[],
                Body::full(data.to_vec()),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        digest
    }

    /// `PUT ?digest=` without a body, which must create the blob.
    pub async fn close_upload(&self, location: &str, digest: &Digest) -> Resp {
        let r = self
            .send(
                Method::PUT,
                &format!("{location}?digest={digest}"),
                &[],
                Body::Empty,
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        r
    }

    /// Starts an upload session; returns its `Location`.
    pub async fn start_upload(&self, name: &str) -> String {
        let r = self
            .send(
                Method::POST,
                &format!("/v2/{name}/blobs/uploads/"),
                &[],
                Body::Empty,
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        r.header("location").to_owned()
    }

    /// Pushes a manifest under `reference` with the given content type.
    pub async fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Resp {
        self.send(
            Method::PUT,
            &format!("/v2/{name}/manifests/{reference}"),
            &[("content-type", media_type)],
            Body::full(body.to_vec()),
        )
        .await
    }

    /// Pushes a config and one layer and returns an image manifest body referencing them.
    pub async fn image(&self, name: &str, seed: &str) -> Vec<u8> {
        let config = format!("{{\"seed\":\"{seed}\"}}");
        let c = self.push_blob(name, config.as_bytes()).await;
        let layer = format!("layer of {seed}");
        let l = self.push_blob(name, layer.as_bytes()).await;
        image_manifest(&c, config.len(), &[(&l, layer.len())], "")
    }
}

/// Sends requests, one connection each.
#[derive(Clone, Copy)]
pub struct Client {
    pub addr: SocketAddr,
}

impl Client {
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Resp {
        let stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let response = sender.send_request(req.body(body).unwrap()).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    }
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An OCI image manifest; `extra` is spliced in as further top-level fields (`,"k":v…`).
pub fn image_manifest(
    config: &Digest,
    config_size: usize,
    layers: &[(&Digest, usize)],
    extra: &str,
) -> Vec<u8> {
    let layers: Vec<String> = layers
        .iter()
        .map(|(d, n)| {
            format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{n}}}"#)
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{config_size}}},"layers":[{}]{extra}}}"#,
        layers.join(",")
    )
    .into_bytes()
}

pub fn sha256(data: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, data)
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.headers.contains_key(name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    /// The OCI error code of an error response, checking the error body's shape.
    pub fn error_code(&self) -> String {
        let v = self.json();
        let first = &v["errors"][0];
        assert!(first["message"].is_string(), "{v}");
        first["code"].as_str().unwrap().to_owned()
    }
}

/// Request bodies: none, with a known length, or chunked with no length.
pub enum Body {
    Empty,
    Full(Option<Bytes>),
    Chunked(VecDeque<Bytes>),
    /// Chunked, fed by the test while the request is in flight; ends when the sender drops.
    Channel(tokio::sync::mpsc::Receiver<Bytes>),
}

impl Body {
    pub fn full(data: impl Into<Bytes>) -> Body {
        Body::Full(Some(data.into()))
    }

    pub fn chunked(parts: Vec<Vec<u8>>) -> Body {
        Body::Chunked(parts.into_iter().map(Bytes::from).collect())
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = match self.get_mut() {
            Body::Empty => None,
            Body::Full(data) => data.take(),
            Body::Chunked(parts) => parts.pop_front(),
            Body::Channel(rx) => match rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(next) => next,
            },
        };
        Poll::Ready(next.map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(data) => data.is_none(),
            Body::Chunked(parts) => parts.is_empty(),
            Body::Channel(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(Some(data)) => SizeHint::with_exact(data.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            // No exact size: hyper sends `Transfer-Encoding: chunked`.
            Body::Chunked(_) | Body::Channel(_) => SizeHint::new(),
        }
    }
}
