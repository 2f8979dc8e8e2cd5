//! A rollout: many nodes pulling one image at once. The tool pushes an image (a config and
//! layers of the given sizes) under a tag, then starts every client together; each, on a
//! connection of its own, resolves the tag (HEAD), GETs the manifest by digest, the config
//! and each layer, checking every digest, as containerd does. Prints the time per client
//! (p50, p99, max) and the wall time from the first start to the last finish.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, StatusCode};
use http_body_util::BodyExt;
use sha2::{Digest as _, Sha256};
use tokio::sync::Barrier;

use crate::client::{self, LoadError, Registry};
use crate::data::{sha256_of, Stream};
use crate::manifest::OCI_MANIFEST;
use crate::push_small::{self, Mode};
use crate::report::{Latencies, Line};

const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

pub struct Options {
    pub repo: String,
    pub tag: String,
    pub clients: usize,
    pub layer_sizes: Vec<u64>,
}

/// What each client fetches, as the pushed image says.
struct Image {
    manifest_digest: String,
    /// Config first, then the layers: (digest, size).
    blobs: Vec<(String, u64)>,
}

pub async fn run(reg: &Registry, opts: &Options) -> Result<(), LoadError> {
    let image = push_image(reg, opts).await?;
    let image = Arc::new(image);
    let barrier = Arc::new(Barrier::new(opts.clients));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(opts.clients);
    for _ in 0..opts.clients {
        // A registry value per client: its own pool, so its own connection.
        let own = Registry::new(reg.base())?;
        let (image, barrier, repo, tag) = (
            image.clone(),
            barrier.clone(),
            opts.repo.clone(),
            opts.tag.clone(),
        );
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let t0 = Instant::now();
            pull_image(&own, &repo, &tag, &image).await?;
            Ok::<(Duration, Instant), LoadError>((t0.elapsed(), Instant::now()))
        }));
    }
    let mut times = Vec::with_capacity(opts.clients);
    let mut last_end = started;
    for t in tasks {
        let (took, ended) = t
            .await
            .map_err(|e| LoadError::BadArgument(format!("a client task failed: {e}")))??;
        times.push(took);
        last_end = last_end.max(ended);
    }
    let total = last_end - started;
    let per_client: u64 = image.blobs.iter().map(|(_, s)| s).sum();
    let times = Latencies::new(times);
    Line::new("rollout")
        .field("registry", reg.base())
        .field("clients", opts.clients)
        .field("bytes_per_client", per_client)
        .seconds("p50_s", times.percentile(50.0))
        .seconds("p99_s", times.percentile(99.0))
        .seconds("max_s", times.percentile(100.0))
        .seconds("total_s", total)
        .mbps(per_client * opts.clients as u64, total)
        .field("manifest", &image.manifest_digest)
        .print();
    Ok(())
}

async fn push_image(reg: &Registry, opts: &Options) -> Result<Image, LoadError> {
    let config = Bytes::from_static(
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#,
    );
    let stream = Stream::fresh();
    let mut blobs = vec![(sha256_of(&config), config.len() as u64)];
    push_small::push(reg, &opts.repo, Mode::PostPut, config).await?;
    let mut offset = 0;
    let mut layers = Vec::new();
    for &size in &opts.layer_sizes {
        // Distinct stretches of one stream: distinct layers.
        let data = stream.bytes(offset, offset + size);
        offset += size;
        let digest = sha256_of(&data);
        push_small::push(reg, &opts.repo, Mode::PostPut, data).await?;
        layers.push(format!(
            r#"{{"mediaType":"{OCI_LAYER}","digest":"{digest}","size":{size}}}"#
        ));
        blobs.push((digest, size));
    }
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":{}}},"layers":[{}]}}"#,
        blobs[0].0,
        blobs[0].1,
        layers.join(",")
    );
    let manifest_digest = sha256_of(body.as_bytes());
    let url = reg.url(&format!("/v2/{}/manifests/{}", opts.repo, opts.tag));
    let resp = reg
        .send(
            Method::PUT,
            &url,
            &[(header::CONTENT_TYPE, OCI_MANIFEST.to_string())],
            client::full(body.into()),
        )
        .await?;
    client::expect("PUT manifest", resp, StatusCode::CREATED).await?;
    Ok(Image {
        manifest_digest,
        blobs,
    })
}

async fn pull_image(reg: &Registry, repo: &str, tag: &str, image: &Image) -> Result<(), LoadError> {
    let accept = [(header::ACCEPT, OCI_MANIFEST.to_string())];
    let resp = reg
        .send(
            Method::HEAD,
            &reg.url(&format!("/v2/{repo}/manifests/{tag}")),
            &accept,
            client::empty(),
        )
        .await?;
    let parts = client::expect("HEAD manifest", resp, StatusCode::OK).await?;
    let resolved = parts
        .headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if resolved != image.manifest_digest {
        return Err(LoadError::DigestMismatch {
            expected: image.manifest_digest.clone(),
            actual: resolved.to_string(),
        });
    }
    let manifest = format!("/v2/{repo}/manifests/{}", image.manifest_digest);
    fetch_verified(reg, &manifest, &accept, &image.manifest_digest).await?;
    for (digest, _) in &image.blobs {
        fetch_verified(reg, &format!("/v2/{repo}/blobs/{digest}"), &[], digest).await?;
    }
    Ok(())
}

/// GETs `path` and checks the sha256 of what arrives, hashed frame by frame.
async fn fetch_verified(
    reg: &Registry,
    path: &str,
    headers: &[(header::HeaderName, String)],
    digest: &str,
) -> Result<(), LoadError> {
    let resp = reg
        .send(Method::GET, &reg.url(path), headers, client::empty())
        .await?;
    if resp.status() != StatusCode::OK {
        client::expect("GET", resp, StatusCode::OK).await?;
        return Ok(());
    }
    let mut body = resp.into_body();
    let mut hasher = Sha256::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            hasher.update(&data);
        }
    }
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != digest {
        return Err(LoadError::DigestMismatch {
            expected: digest.to_string(),
            actual,
        });
    }
    Ok(())
}
