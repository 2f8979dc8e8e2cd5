//! docker-archive (`docker save`, `podman save`, `skopeo copy … docker-archive:`): a
//! `manifest.json` listing, per image, its config file, its layer files and its `RepoTags`.
//! The archive has no registry manifest, so one is built per image: Docker schema 2, with the
//! config and every layer by the digest of its bytes as they are in the archive (a plain tar
//! layer stays a plain tar; its digest is then its diff ID, which is checked against the config).

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::json;

use crate::oci::digest::{Algorithm, Digest};
use crate::oci::manifest::DOCKER_MANIFEST;

use super::error::BundleError;
use super::staging::Staged;

pub const MANIFEST_FILE: &str = "manifest.json";
const CONFIG_TYPE: &str = "application/vnd.docker.container.image.v1+json";
const LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
const LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";

#[derive(Debug, Deserialize)]
struct ArchiveImage {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// One image of the archive, with its built manifest.
#[derive(Debug, Clone)]
pub struct DockerImage {
    pub body: Vec<u8>,
    pub digest: Digest,
    /// `RepoTags` as the archive has them (`name:tag`).
    pub names: Vec<String>,
}

/// The files of the archive: path -> what was staged, and links path -> target.
pub struct Files<'a> {
    pub staged: &'a HashMap<String, Staged>,
    pub links: &'a HashMap<String, String>,
}

impl Files<'_> {
    fn get(&self, path: &str) -> Result<&Staged, BundleError> {
        let mut p = path.trim_start_matches("./");
        // A few hops at most: a link to a link is possible, a loop is not followed for long.
        for _ in 0..8 {
            if let Some(s) = self.staged.get(p) {
                return Ok(s);
            }
            match self.links.get(p) {
                Some(t) => p = t,
                None => break,
            }
        }
        Err(BundleError::Missing(format!(
            "manifest.json names {path}, which is not in the archive"
        )))
    }
}

pub fn images(
    manifest_json: &[u8],
    files: &Files<'_>,
    config_body: &dyn Fn(&Digest) -> Result<Vec<u8>, BundleError>,
) -> Result<Vec<DockerImage>, BundleError> {
    let list: Vec<ArchiveImage> = serde_json::from_slice(manifest_json)
        .map_err(|e| BundleError::format(format!("manifest.json: {e}")))?;
    if list.is_empty() {
        return Err(BundleError::format("manifest.json lists no image"));
    }
    list.iter().map(|i| image(i, files, config_body)).collect()
}

fn image(
    i: &ArchiveImage,
    files: &Files<'_>,
    config_body: &dyn Fn(&Digest) -> Result<Vec<u8>, BundleError>,
) -> Result<DockerImage, BundleError> {
    let config = files.get(&i.config)?;
    let diff_ids = diff_ids(&config_body(&config.digest)?, &i.config)?;
    if diff_ids.len() != i.layers.len() {
        return Err(BundleError::format(format!(
            "{}: the config lists {} layers, manifest.json {}",
            i.config,
            diff_ids.len(),
            i.layers.len()
        )));
    }
    let mut layers = Vec::with_capacity(i.layers.len());
    for (path, diff_id) in i.layers.iter().zip(&diff_ids) {
        let l = files.get(path)?;
        let media_type = layer_type(&l.head);
        // A plain tar layer is its own diff: a flipped byte shows here.
        if media_type == LAYER_TAR && &l.digest != diff_id {
            return Err(BundleError::DigestMismatch {
                path: path.clone(),
                expected: diff_id.clone(),
                actual: l.digest.clone(),
            });
        }
        layers.push(json!({"mediaType": media_type, "size": l.size, "digest": l.digest}));
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": CONFIG_TYPE, "size": config.size, "digest": config.digest},
        "layers": layers,
    });
    let body = serde_json::to_vec(&manifest)
        .map_err(|e| BundleError::format(format!("building a manifest: {e}")))?;
    Ok(DockerImage {
        digest: Digest::of(Algorithm::Sha256, &body),
        body,
        names: i.repo_tags.clone().unwrap_or_default(),
    })
}

fn layer_type(head: &[u8]) -> &'static str {
    if head.starts_with(&[0x1f, 0x8b]) {
        LAYER_GZIP
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        LAYER_ZSTD
    } else {
        LAYER_TAR
    }
}

fn diff_ids(config: &[u8], path: &str) -> Result<Vec<Digest>, BundleError> {
    #[derive(Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    #[derive(Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<Digest>,
    }
    serde_json::from_slice::<Config>(config)
        .map(|c| c.rootfs.diff_ids)
        .map_err(|e| BundleError::format(format!("{path}: not an image config ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(bytes: &[u8]) -> Staged {
        Staged {
            digest: Digest::of(Algorithm::Sha256, bytes),
            size: bytes.len() as u64,
            head: bytes.iter().take(8).copied().collect(),
            written: true,
        }
    }

    #[test]
    fn builds_a_schema2_manifest_and_checks_diff_ids() {
        let layer = b"plain tar bytes".to_vec();
        let gz = [0x1f, 0x8b, 8, 0, 1, 2, 3];
        let config = format!(
            r#"{{"rootfs":{{"type":"layers","diff_ids":["{}","{}"]}}}}"#,
            Digest::of(Algorithm::Sha256, &layer),
            Digest::of(Algorithm::Sha256, b"uncompressed")
        );
        let mut staged_files = HashMap::new();
        staged_files.insert("c.json".to_owned(), staged(config.as_bytes()));
        staged_files.insert("a/layer.tar".to_owned(), staged(&layer));
        staged_files.insert("b.tar".to_owned(), staged(&gz));
        let mut links = HashMap::new();
        links.insert("l.tar".to_owned(), "a/layer.tar".to_owned());
        let files = Files {
            staged: &staged_files,
            links: &links,
        };
        let body = config.clone().into_bytes();
        let cfg = |_: &Digest| Ok(body.clone());
        let list = br#"[{"Config":"c.json","RepoTags":["app:v1"],"Layers":["l.tar","b.tar"]}]"#;
        let imgs = images(list, &files, &cfg).unwrap();
        assert_eq!(imgs[0].names, vec!["app:v1".to_owned()]);
        let m: serde_json::Value = serde_json::from_slice(&imgs[0].body).unwrap();
        assert_eq!(m["layers"][0]["mediaType"], LAYER_TAR);
        assert_eq!(m["layers"][1]["mediaType"], LAYER_GZIP);
        assert_eq!(imgs[0].digest, Digest::of(Algorithm::Sha256, &imgs[0].body));

        let wrong = br#"[{"Config":"c.json","Layers":["b.tar","l.tar"]}]"#;
        let err = images(wrong, &files, &cfg).unwrap_err();
        assert!(matches!(err, BundleError::DigestMismatch { .. }), "{err}");
    }
}
