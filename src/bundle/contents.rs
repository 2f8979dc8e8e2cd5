//! The bundle's contents manifest (`berth-bundle.json`, the first file of every bundle) and the
//! have-list (`berth inventory`). Both are plain JSON so that a person, or a script on the
//! receiving side, can read what a bundle holds without berth:
//!
//! ```text
//! {"format": 1,
//!  "refs": {"docker.io/library/app:1.0": "sha256:…"},
//!  "manifests": [{"repository": "docker.io/library/app", "digest": "sha256:…",
//!                 "mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 525,
//!                 "tags": ["1.0"], "shipped": true}, …],
//!  "blobs": [{"digest": "sha256:…", "size": 2811, "shipped": false,
//!             "repository": "docker.io/library/app"}, …]}
//! ```
//!
//! `shipped: false` marks what an incremental export left out (the receiver must hold it).

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::oci::digest::Digest;

pub const CONTENTS_FILE: &str = "berth-bundle.json";
/// The detached ed25519 signature of the contents manifest's exact bytes, right after it.
pub const SIGNATURE_FILE: &str = "berth-bundle.json.sig";
pub const FORMAT_VERSION: u32 = 1;

/// Everything a bundle is about, written before any blob so that an import knows up front what
/// to expect, and can refuse a bundle that holds more, less or other bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Contents {
    pub format: u32,
    /// Every exported reference (`repo:tag` or `repo@digest`) and the manifest it names.
    pub refs: BTreeMap<String, Digest>,
    /// Every manifest, children before the indexes that list them.
    pub manifests: Vec<ManifestEntry>,
    /// Every other blob (configs, layers).
    pub blobs: Vec<BlobEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestEntry {
    pub repository: String,
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// False when an incremental export left the bytes out: the receiver has them.
    pub shipped: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlobEntry {
    pub digest: Digest,
    pub size: u64,
    pub shipped: bool,
    /// The first repository (of `manifests`) whose images use it: where an importer that
    /// pushes to a registry as it reads sends it, before any manifest has arrived.
    pub repository: String,
}

impl Contents {
    /// Digest -> size of every file the tar must hold under `blobs/`, each once.
    pub fn shipped(&self) -> BTreeMap<Digest, u64> {
        let manifests = self
            .manifests
            .iter()
            .map(|m| (&m.digest, m.size, m.shipped));
        let blobs = self.blobs.iter().map(|b| (&b.digest, b.size, b.shipped));
        manifests
            .chain(blobs)
            .filter(|(_, _, shipped)| *shipped)
            .map(|(d, s, _)| (d.clone(), s))
            .collect()
    }

    /// Digest -> size of what the receiver must already hold.
    pub fn assumed(&self) -> BTreeMap<Digest, u64> {
        let shipped = self.shipped();
        let manifests = self.manifests.iter().map(|m| (&m.digest, m.size));
        let blobs = self.blobs.iter().map(|b| (&b.digest, b.size));
        manifests
            .chain(blobs)
            .filter(|(d, _)| !shipped.contains_key(*d))
            .map(|(d, s)| (d.clone(), s))
            .collect()
    }

    /// Everything the bundle names, shipped or not: what a receiver that imported it holds.
    pub fn have(&self) -> HashSet<Digest> {
        let manifests = self.manifests.iter().map(|m| m.digest.clone());
        manifests
            .chain(self.blobs.iter().map(|b| b.digest.clone()))
            .collect()
    }
}

/// What a data directory holds: every blob digest (manifest bodies are blobs too) and every
/// manifest reachable from a tag. `berth export --have` leaves out what it lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    pub format: u32,
    pub blobs: Vec<Digest>,
    pub manifests: Vec<InventoryManifest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InventoryManifest {
    pub repository: String,
    pub digest: Digest,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl Inventory {
    pub fn have(&self) -> HashSet<Digest> {
        let manifests = self.manifests.iter().map(|m| m.digest.clone());
        self.blobs.iter().cloned().chain(manifests).collect()
    }
}

/// The contents manifest of the bundle at `path` (its first file), read without the rest.
pub fn read_contents(path: &std::path::Path) -> Result<Contents, super::BundleError> {
    use super::BundleError;
    let input = super::source::Input::open(path)?;
    let mut found = None;
    input.for_first(1, &mut |e| {
        if e.path == CONTENTS_FILE {
            let mut raw = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(e.data, e.size), &mut raw)?;
            found = Some(serde_json::from_slice::<Contents>(&raw).map_err(|err| {
                BundleError::ContentsMismatch(format!("{CONTENTS_FILE} does not parse: {err}"))
            })?);
        }
        Ok(())
    })?;
    found.ok_or_else(|| {
        BundleError::format(format!(
            "{}: not a berth bundle (it does not start with {CONTENTS_FILE})",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::digest::Algorithm;

    #[test]
    fn the_json_shape_is_the_documented_one() {
        let d = Digest::of(Algorithm::Sha256, b"m");
        let b = Digest::of(Algorithm::Sha256, b"b");
        let c = Contents {
            format: FORMAT_VERSION,
            refs: [("app:1".to_owned(), d.clone())].into_iter().collect(),
            manifests: vec![ManifestEntry {
                repository: "app".into(),
                digest: d.clone(),
                media_type: "m".into(),
                size: 1,
                tags: vec!["1".into()],
                shipped: true,
            }],
            blobs: vec![BlobEntry {
                digest: b.clone(),
                size: 1,
                shipped: false,
                repository: "app".into(),
            }],
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["format"], 1);
        assert_eq!(v["refs"]["app:1"], d.to_string());
        assert_eq!(v["manifests"][0]["mediaType"], "m");
        assert_eq!(v["blobs"][0]["shipped"], false);
        assert_eq!(c.shipped().len(), 1);
        assert_eq!(c.assumed().keys().collect::<Vec<_>>(), vec![&b]);
        let back: Contents = serde_json::from_value(v).unwrap();
        assert_eq!(back, c);
        let mut extra = serde_json::to_value(&c).unwrap();
        extra["surprise"] = serde_json::json!(1);
        assert!(serde_json::from_value::<Contents>(extra).is_err());
    }
}
