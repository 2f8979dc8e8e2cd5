//! The referrers API: an OCI image index of the manifests whose `subject` is a digest,
//! optionally filtered by `artifactType`.

use http::header::CONTENT_TYPE;
use http::StatusCode;
use serde_json::{json, Map, Value};

use crate::api::error::{ApiError, ApiResult};
use crate::api::query::Query;
use crate::api::reply::{Reply, OCI_FILTERS_APPLIED};
use crate::api::Registry;
use crate::oci::digest::Digest;
use crate::oci::manifest::OCI_INDEX;

/// GET `/v2/<name>/referrers/<digest>`; an unknown subject is an empty index, not a 404.
pub async fn list(reg: &Registry, name: String, digest: Digest, query: &Query) -> ApiResult<Reply> {
    let filter = query
        .get("artifactType")
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let referrers = reg.blocking(move |s| s.referrers(&name, &digest)).await?;
    let manifests: Vec<Value> = referrers
        .into_iter()
        .filter(|r| match &filter {
            Some(f) => r.artifact_type.as_deref() == Some(f.as_str()),
            None => true,
        })
        .map(|r| {
            let mut d = Map::new();
            d.insert("mediaType".into(), json!(r.media_type));
            d.insert("digest".into(), json!(r.digest.to_string()));
            d.insert("size".into(), json!(r.size));
            if let Some(t) = r.artifact_type {
                d.insert("artifactType".into(), json!(t));
            }
            if !r.annotations.is_empty() {
                d.insert("annotations".into(), json!(r.annotations));
            }
            Value::Object(d)
        })
        .collect();
    let index = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    let body = serde_json::to_vec(&index).map_err(ApiError::internal)?;
    let reply = Reply::new(StatusCode::OK)
        .header(CONTENT_TYPE, OCI_INDEX)
        .body(body);
    Ok(if filter.is_some() {
        reply.header(OCI_FILTERS_APPLIED, "artifactType")
    } else {
        reply
    })
}
