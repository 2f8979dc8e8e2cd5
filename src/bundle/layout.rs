//! The OCI image layout inside a bundle: file names, `oci-layout`, and `index.json` with the
//! annotations that skopeo (`org.opencontainers.image.ref.name`) and containerd
//! (`io.containerd.image.name`) read image names from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::oci::digest::{Algorithm, Digest};
use crate::oci::manifest::OCI_INDEX;

pub const OCI_LAYOUT_FILE: &str = "oci-layout";
pub const INDEX_FILE: &str = "index.json";
pub const OCI_LAYOUT_BODY: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// `blobs/<alg>/<hex>`.
pub fn blob_path(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().name(), d.hex())
}

/// The digest a `blobs/<alg>/<hex>` path names, if it is one.
pub fn digest_of_path(path: &str) -> Option<Digest> {
    let rest = path.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    let d = Digest::parse(&format!("{alg}:{hex}")).ok()?;
    matches!(d.algorithm(), Algorithm::Sha256 | Algorithm::Sha512).then_some(d)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<IndexEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexEntry {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl IndexEntry {
    /// An entry named `name` (a full `repo:tag` or `repo@digest`) for both skopeo and containerd.
    pub fn named(media_type: &str, digest: &Digest, size: u64, name: &str) -> IndexEntry {
        let annotations = [REF_NAME, CONTAINERD_NAME]
            .into_iter()
            .map(|k| (k.to_owned(), name.to_owned()))
            .collect();
        IndexEntry {
            media_type: media_type.to_owned(),
            digest: digest.clone(),
            size,
            annotations,
        }
    }

    /// The image name: containerd's full name first (its `ref.name` is often only the tag),
    /// then `ref.name`, which skopeo sets to whatever followed the archive path.
    pub fn name(&self) -> Option<&str> {
        let get = |k| self.annotations.get(k).map(String::as_str);
        get(CONTAINERD_NAME)
            .or_else(|| get(REF_NAME))
            .filter(|s| !s.is_empty())
    }
}

impl Index {
    pub fn new(manifests: Vec<IndexEntry>) -> Index {
        Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.to_owned()),
            manifests,
        }
    }
}
