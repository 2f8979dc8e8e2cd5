//! Reads a manifest or index body into the facts the registry needs: its media type, the
//! blobs and child manifests it references, its subject, artifact type and annotations.
//!
//! The body itself is never rewritten: the registry stores and serves the exact bytes it was
//! given, so this module only looks.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::oci::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Docker layers that live outside the registry (Windows base layers): never checked for presence.
const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// Why a manifest body was refused; every variant is a `MANIFEST_INVALID` for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not a JSON object: {0}")]
    NotJson(String),
    #[error("manifest field {0} is missing or malformed")]
    BadField(&'static str),
    #[error("Content-Type {header} does not match the manifest's mediaType {body}")]
    MediaTypeMismatch { header: String, body: String },
    #[error("manifest schemaVersion must be 2")]
    SchemaVersion,
    #[error("Docker schema 1 manifests are not supported")]
    Schema1,
    #[error("descriptor digest {0} is invalid")]
    BadDigest(String),
}

/// A content descriptor as found in `config`, `layers`, `manifests`, `subject`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: Option<String>,
    pub digest: Digest,
    pub size: u64,
    pub urls: bool,
}

/// What the registry learns from a manifest body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedManifest {
    /// The media type the manifest is stored and served with.
    pub media_type: String,
    /// Blobs (config, layers) and child manifests (index entries) that must already be in the
    /// repository.
    pub references: Vec<Digest>,
    pub subject: Option<Digest>,
    /// `artifactType`, or for an image manifest without one, the config's media type (what the
    /// referrers API reports).
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

/// Content types that say nothing about the manifest, so the body's `mediaType` decides.
fn is_generic(content_type: &str) -> bool {
    matches!(
        content_type,
        "" | "application/octet-stream" | "application/json" | "text/plain"
    )
}

/// `Content-Type` without parameters, lowercased.
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Parses `body` pushed with the given `Content-Type` header value.
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<ParsedManifest, ManifestError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ManifestError::NotJson(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(ManifestError::NotJson("not an object".to_owned()));
    };
    let body_type = match obj.get("mediaType") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ManifestError::BadField("mediaType")),
    };
    let header = content_type.map(essence).filter(|ct| !is_generic(ct));
    let media_type = match (header, body_type) {
        (Some(h), Some(b)) if h != b => {
            return Err(ManifestError::MediaTypeMismatch { header: h, body: b })
        }
        (Some(h), _) => h,
        (None, Some(b)) => b,
        (None, None) if obj.contains_key("manifests") => OCI_INDEX.to_owned(),
        (None, None) => OCI_MANIFEST.to_owned(),
    };
    if media_type == DOCKER_SCHEMA1 || media_type == DOCKER_SCHEMA1_SIGNED {
        return Err(ManifestError::Schema1);
    }
    if obj.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(ManifestError::SchemaVersion);
    }

    let mut references = Vec::new();
    let mut artifact_type = optional_string(&obj, "artifactType")?;
    let is_index = media_type == OCI_INDEX
        || media_type == DOCKER_MANIFEST_LIST
        || (!obj.contains_key("config") && obj.contains_key("manifests"));
    if is_index {
        for child in descriptor_list(&obj, "manifests", true)? {
            references.push(child.digest);
        }
    } else {
        let config = match obj.get("config") {
            Some(v) => Some(descriptor(v, "config")?),
            None if media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST => {
                return Err(ManifestError::BadField("config"))
            }
            None => None,
        };
        let layers_required = media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST;
        // Artifact manifests of the withdrawn 1.1 draft list their content under `blobs`.
        let field = if obj.contains_key("blobs") && !obj.contains_key("layers") {
            "blobs"
        } else {
            "layers"
        };
        let layers = descriptor_list(&obj, field, layers_required)?;
        if let Some(config) = config {
            if artifact_type.is_none() {
                artifact_type = config.media_type.clone();
            }
            references.push(config.digest);
        }
        for layer in layers {
            let foreign = layer.urls || layer.media_type.as_deref() == Some(DOCKER_FOREIGN_LAYER);
            if !foreign {
                references.push(layer.digest);
            }
        }
    }
    let subject = match obj.get("subject") {
        None | Some(Value::Null) => None,
        Some(v) => Some(descriptor(v, "subject")?.digest),
    };
    Ok(ParsedManifest {
        media_type,
        references,
        subject,
        artifact_type,
        annotations: annotations(&obj)?,
    })
}

fn optional_string(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, ManifestError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ManifestError::BadField(field)),
    }
}

fn descriptor_list(
    obj: &Map<String, Value>,
    field: &'static str,
    required: bool,
) -> Result<Vec<Descriptor>, ManifestError> {
    match obj.get(field) {
        None | Some(Value::Null) if !required => Ok(Vec::new()),
        Some(Value::Array(items)) => items.iter().map(|v| descriptor(v, field)).collect(),
        _ => Err(ManifestError::BadField(field)),
    }
}

fn descriptor(value: &Value, field: &'static str) -> Result<Descriptor, ManifestError> {
    let Value::Object(obj) = value else {
        return Err(ManifestError::BadField(field));
    };
    let digest = match obj.get("digest") {
        Some(Value::String(s)) => {
            Digest::parse(s).map_err(|_| ManifestError::BadDigest(s.clone()))?
        }
        _ => return Err(ManifestError::BadField(field)),
    };
    let size = obj
        .get("size")
        .and_then(Value::as_u64)
        .ok_or(ManifestError::BadField(field))?;
    let media_type =
        optional_string(obj, "mediaType").map_err(|_| ManifestError::BadField(field))?;
    let urls = matches!(obj.get("urls"), Some(Value::Array(a)) if !a.is_empty());
    Ok(Descriptor {
        media_type,
        digest,
        size,
        urls,
    })
}

fn annotations(obj: &Map<String, Value>) -> Result<BTreeMap<String, String>, ManifestError> {
    match obj.get("annotations") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(ManifestError::BadField("annotations")),
            })
            .collect(),
        Some(_) => Err(ManifestError::BadField("annotations")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::digest::Algorithm;

    fn d(n: u8) -> Digest {
        Digest::of(Algorithm::Sha256, &[n])
    }

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":1}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":1}}]{extra}}}"#,
            d(1),
            d(2)
        )
    }

    #[test]
    fn image_manifest_lists_config_and_layers() {
        let m = parse(image("").as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(m.media_type, OCI_MANIFEST);
        assert_eq!(m.references, vec![d(1), d(2)]);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert_eq!(m.subject, None);
    }

    #[test]
    fn subject_artifact_type_and_annotations_are_read() {
        let extra = format!(
            r#","artifactType":"application/x-sig","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":9}},"annotations":{{"k":"v"}}"#,
            d(3)
        );
        let m = parse(image(&extra).as_bytes(), None).unwrap();
        assert_eq!(m.subject, Some(d(3)));
        assert_eq!(m.artifact_type.as_deref(), Some("application/x-sig"));
        assert_eq!(m.annotations.get("k").map(String::as_str), Some("v"));
    }

    #[test]
    fn index_references_its_children() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":5}}]}}"#,
            d(4)
        );
        let m = parse(body.as_bytes(), Some("application/json")).unwrap();
        assert_eq!(m.media_type, OCI_INDEX);
        assert_eq!(m.references, vec![d(4)]);
    }

    #[test]
    fn content_type_parameters_are_ignored_and_mismatch_refused() {
        let m = parse(
            image("").as_bytes(),
            Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
        );
        assert!(m.is_ok());
        assert!(matches!(
            parse(image("").as_bytes(), Some(DOCKER_MANIFEST)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        assert!(matches!(parse(b"{", None), Err(ManifestError::NotJson(_))));
        assert!(matches!(parse(b"[]", None), Err(ManifestError::NotJson(_))));
        let no_layers = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"digest":"{}","size":1}}}}"#,
            d(1)
        );
        assert_eq!(
            parse(no_layers.as_bytes(), None),
            Err(ManifestError::BadField("layers"))
        );
        let bad_digest = image("").replace(&d(2).to_string(), "sha256:nothex");
        assert!(matches!(
            parse(bad_digest.as_bytes(), None),
            Err(ManifestError::BadDigest(_))
        ));
        let v1 = image("").replace("\"schemaVersion\":2", "\"schemaVersion\":1");
        assert_eq!(
            parse(v1.as_bytes(), None),
            Err(ManifestError::SchemaVersion)
        );
    }

    #[test]
    fn foreign_layers_are_not_required() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
            "config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{}","size":1}},
            "layers":[{{"mediaType":"{DOCKER_FOREIGN_LAYER}","digest":"{}","size":1,"urls":["https://example.invalid/l"]}}]}}"#,
            d(1),
            d(2)
        );
        let m = parse(body.as_bytes(), None).unwrap();
        assert_eq!(m.references, vec![d(1)]);
    }
}
