//! Test images in OCI layouts (built by `tools/e2e/make-image.sh` with umoci) and the
//! byte-for-byte comparison of an image between two layouts.

use super::cmd;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// An image in an OCI layout, with the random files it carries and their sha256.
pub struct OciImage {
    pub layout: PathBuf,
    pub tag: String,
    pub files: Vec<(String, String)>,
}

impl OciImage {
    /// A busybox-static base layer plus one random layer of each size (KiB).
    pub fn build(layout: &Path, tag: &str, random_kib: &[usize]) -> OciImage {
        cmd::require("umoci");
        let mut c = cmd::tool("bash");
        c.arg(cmd::repo_path("tools/e2e/make-image.sh"))
            .arg(layout)
            .arg(tag);
        c.args(random_kib.iter().map(|k| k.to_string()));
        let files = cmd::run(&mut c)
            .lines()
            .map(|l| {
                let (p, h) = l
                    .split_once(' ')
                    .expect("make-image.sh prints `path sha256`");
                (p.to_string(), h.to_string())
            })
            .collect();
        OciImage {
            layout: layout.to_path_buf(),
            tag: tag.to_string(),
            files,
        }
    }

    /// `oci:LAYOUT:TAG` for skopeo, podman and buildah.
    pub fn transport_ref(&self) -> String {
        format!("oci:{}:{}", self.layout.display(), self.tag)
    }

    pub fn manifest_digest(&self) -> String {
        manifest_digest(&self.layout, &self.tag)
    }
}

/// The digest the layout's index.json records for `tag`.
pub fn manifest_digest(layout: &Path, tag: &str) -> String {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("tag {tag} not in {}", layout.display()))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').unwrap();
    layout.join("blobs").join(alg).join(hex)
}

pub fn read_blob(layout: &Path, digest: &str) -> Vec<u8> {
    let path = blob_path(layout, digest);
    std::fs::read(&path).unwrap_or_else(|e| panic!("blob {digest} missing ({e}): {path:?}"))
}

/// Asserts that the manifest, config and every layer of `tag` are byte-identical in both layouts,
/// and that every blob's bytes hash to its digest. Returns the number of blobs compared.
pub fn assert_same_image(a: &Path, b: &Path, tag: &str) -> usize {
    let digest = manifest_digest(a, tag);
    assert_eq!(
        digest,
        manifest_digest(b, tag),
        "manifest digest changed in the round trip"
    );
    let manifest_bytes = read_blob(a, &digest);
    assert_eq!(
        manifest_bytes,
        read_blob(b, &digest),
        "manifest bytes differ"
    );
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let mut digests = vec![manifest["config"]["digest"].as_str().unwrap().to_string()];
    for layer in manifest["layers"].as_array().unwrap() {
        digests.push(layer["digest"].as_str().unwrap().to_string());
    }
    for d in &digests {
        let bytes = read_blob(b, d);
        assert_eq!(bytes, read_blob(a, d), "blob {d} differs");
        assert_eq!(
            &cmd::sha256_digest(&bytes),
            d,
            "blob {d} does not hash to its digest"
        );
    }
    digests.len() + 1
}
