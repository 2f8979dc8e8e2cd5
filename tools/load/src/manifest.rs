//! Pushes a small OCI image (config, one layer, manifest under a tag) so that manifest GETs
//! can be measured with wrk against a URL that exists on every registry.

use http::{header, Method, StatusCode};

use crate::client::{self, LoadError, Registry};
use crate::data::{sha256_of, Stream};
use crate::push_small::{self, Mode};
use crate::report::Line;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

pub struct Options {
    pub repo: String,
    pub tag: String,
    pub layer_size: u64,
}

pub async fn run(reg: &Registry, opts: &Options) -> Result<(), LoadError> {
    let config = bytes::Bytes::from_static(
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#,
    );
    let layer = Stream::fresh().bytes(0, opts.layer_size);
    let (config_digest, layer_digest) = (sha256_of(&config), sha256_of(&layer));
    let (config_len, layer_len) = (config.len(), layer.len());
    push_small::push(reg, &opts.repo, Mode::PostPut, config).await?;
    push_small::push(reg, &opts.repo, Mode::PostPut, layer).await?;

    let body = format!(
        concat!(
            r#"{{"schemaVersion":2,"mediaType":"{mt}","#,
            r#""config":{{"mediaType":"{ct}","digest":"{cd}","size":{cs}}},"#,
            r#""layers":[{{"mediaType":"{lt}","digest":"{ld}","size":{ls}}}]}}"#
        ),
        mt = OCI_MANIFEST,
        ct = OCI_CONFIG,
        cd = config_digest,
        cs = config_len,
        lt = OCI_LAYER,
        ld = layer_digest,
        ls = layer_len,
    );
    let digest = sha256_of(body.as_bytes());
    let path = format!("/v2/{}/manifests/{}", opts.repo, opts.tag);
    let resp = reg
        .send(
            Method::PUT,
            &reg.url(&path),
            &[(header::CONTENT_TYPE, OCI_MANIFEST.to_string())],
            client::full(body.into()),
        )
        .await?;
    client::expect("PUT manifest", resp, StatusCode::CREATED).await?;

    // Read it back once: a wrk run against a URL that 404s would measure nothing useful.
    let resp = reg
        .send(
            Method::GET,
            &reg.url(&path),
            &[(header::ACCEPT, OCI_MANIFEST.to_string())],
            client::empty(),
        )
        .await?;
    let parts = client::expect("GET manifest", resp, StatusCode::OK).await?;
    let served = parts
        .headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if served != digest {
        return Err(LoadError::DigestMismatch {
            expected: digest,
            actual: served.to_string(),
        });
    }
    Line::new("push-manifest")
        .field("registry", reg.base())
        .field("repo", &opts.repo)
        .field("tag", &opts.tag)
        .field("digest", &digest)
        .field("url", reg.url(&path))
        .print();
    Ok(())
}
