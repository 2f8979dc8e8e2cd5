//! Manifest PUT (validated, stored byte for byte, tagged under every `?tag=`), GET/HEAD by tag
//! or digest with the stored media type whatever `Accept` says, and DELETE.

use http::header::{CONTENT_TYPE, ETAG};
use http::{HeaderMap, Request, StatusCode};
use hyper::body::Incoming;

use crate::api::enforce;
use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::api::mirrored;
use crate::api::query::Query;
use crate::api::reply::{Reply, CONTENT_DIGEST, OCI_SUBJECT, OCI_TAG};
use crate::api::room;
use crate::api::stream::{refuse, BodyReader};
use crate::api::Registry;
use crate::auth::access::Caller;
use crate::auth::audit::AuditAction;
use crate::oci::digest::{Algorithm, Digest};
use crate::oci::manifest;
use crate::oci::name::{is_valid_tag, ManifestRef};
use crate::storage::{ManifestPut, Reference};

fn too_large(limit: usize) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::SizeInvalid)
        .with_detail(format!("manifest larger than {limit} bytes"))
}

/// What a manifest PUT can be refused for before its body is read; returns the tags to set,
/// the digest algorithm, whether `?tag=` was used, and the content type.
fn check_put(
    headers: &HeaderMap,
    reference: &ManifestRef,
    query: &Query,
) -> ApiResult<(Vec<String>, Algorithm, bool, Option<String>)> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);

    let mut tags = Vec::new();
    let algorithm = match reference {
        ManifestRef::Tag(tag) => {
            tags.push(tag.clone());
            Algorithm::Sha256
        }
        ManifestRef::Digest(d) => d.algorithm(),
    };
    let mut tagged_by_param = false;
    for tag in query.all("tag") {
        tagged_by_param = true;
        if !is_valid_tag(tag) {
            return Err(ApiError::bad_request(
                ErrorCode::ManifestInvalid,
                format!("invalid tag {tag:?}"),
            ));
        }
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_owned());
        }
    }
    Ok((tags, algorithm, tagged_by_param, content_type))
}

pub async fn put(
    reg: &Registry,
    name: String,
    reference: ManifestRef,
    query: &Query,
    req: Request<Incoming>,
    caller: Option<&Caller>,
) -> ApiResult<Reply> {
    let limit = reg.limits().max_manifest_bytes;
    if room::declared_length(req.headers()).is_some_and(|len| len > limit as u64) {
        // Answered before the body is read: no `100 Continue`, no waiting for megabytes that
        // would be thrown away.
        return Err(refuse(reg, req, too_large(limit)));
    }
    let (tags, algorithm, tagged_by_param, content_type) =
        match check_put(req.headers(), &reference, query) {
            Ok(t) => t,
            Err(e) => return Err(refuse(reg, req, e)),
        };
    let mut reader = BodyReader::new(reg, req, limit);
    let body = reader
        .read_all(limit)
        .await?
        .ok_or_else(|| too_large(limit))?;
    let digest = Digest::of(algorithm, &body);
    if let ManifestRef::Digest(expected) = &reference {
        if *expected != digest {
            return Err(ApiError::bad_request(
                ErrorCode::DigestInvalid,
                format!("body digest is {digest}, not {expected}"),
            ));
        }
    }
    let parsed = manifest::parse(&body, content_type.as_deref())?;
    enforce::project_for_push(reg, caller, &name)?;
    enforce::tags_may_move(reg, caller, &name, &tags, &digest).await?;
    enforce::quota(reg, caller, &name, Some(&digest), body.len() as u64).await?;
    let subject = parsed.subject.clone();
    // The spec asks for an `OCI-Tag` header naming every tag a `?tag=` push created; clients
    // that see none fall back to one PUT per tag, which cannot carry a non-sha256 digest.
    let oci_tag = tagged_by_param.then(|| tags.join(", "));
    let put = ManifestPut {
        digest: digest.clone(),
        media_type: parsed.media_type,
        body: body.to_vec(),
        tags,
        references: parsed.references,
        subject: parsed.subject,
        artifact_type: parsed.artifact_type,
        annotations: parsed.annotations,
    };
    let n = name.clone();
    let audit_tags = put.tags.clone();
    reg.blocking(move |s| s.put_manifest(&n, &put)).await?;
    if audit_tags.is_empty() {
        enforce::audit(reg, caller, AuditAction::Push, &name, Some(&digest), None);
    }
    for tag in &audit_tags {
        enforce::audit(
            reg,
            caller,
            AuditAction::Push,
            &name,
            Some(&digest),
            Some(tag),
        );
    }
    let mut reply = Reply::new(StatusCode::CREATED)
        .location(format!("/v2/{name}/manifests/{digest}"))
        .header(CONTENT_DIGEST, &digest);
    if let Some(subject) = subject {
        reply = reply.header(OCI_SUBJECT, subject);
    }
    if let Some(oci_tag) = oci_tag {
        reply = reply.header(OCI_TAG, oci_tag);
    }
    Ok(reply)
}

pub async fn get(
    reg: &Registry,
    name: String,
    reference: ManifestRef,
    head: bool,
    caller: Option<&Caller>,
) -> ApiResult<Reply> {
    let tag = match &reference {
        ManifestRef::Tag(t) => Some(t.clone()),
        ManifestRef::Digest(_) => None,
    };
    let stored = match mirrored::manifest(reg, &name, &reference).await {
        Some(found) => found?,
        None if head => {
            let r = to_store_ref(reference);
            let found = reg.read(move |s| s.manifest_head(&name, &r)).await?;
            let m = found.ok_or_else(|| ApiError::not_found(ErrorCode::ManifestUnknown))?;
            return Ok(manifest_reply(&m.digest, &m.media_type, m.size));
        }
        None => {
            let r = to_store_ref(reference);
            let n = name.clone();
            reg.read(move |s| s.get_manifest(&n, &r))
                .await?
                .ok_or_else(|| ApiError::not_found(ErrorCode::ManifestUnknown))?
        }
    };
    if !head {
        enforce::audit(
            reg,
            caller,
            AuditAction::Pull,
            &name,
            Some(&stored.digest),
            tag.as_deref(),
        );
    }
    let reply = manifest_reply(&stored.digest, &stored.media_type, stored.body.len() as u64);
    Ok(if head { reply } else { reply.body(stored.body) })
}

/// The headers of a manifest GET or HEAD.
fn manifest_reply(digest: &Digest, media_type: &str, size: u64) -> Reply {
    Reply::new(StatusCode::OK)
        .header(CONTENT_TYPE, media_type)
        .header(CONTENT_DIGEST, digest)
        .header(ETAG, format!("\"{digest}\""))
        .content_length(size)
}

pub async fn delete(
    reg: &Registry,
    name: String,
    reference: ManifestRef,
    caller: Option<&Caller>,
) -> ApiResult<Reply> {
    let (digest, tag) = match &reference {
        ManifestRef::Digest(d) => (Some(d.clone()), None),
        ManifestRef::Tag(t) => (None, Some(t.clone())),
    };
    enforce::may_delete(reg, caller, &name, tag.as_deref(), digest.as_ref()).await?;
    let n = name.clone();
    let deleted = match reference {
        ManifestRef::Digest(d) => reg.blocking(move |s| s.delete_manifest(&n, &d)).await?,
        ManifestRef::Tag(t) => reg.blocking(move |s| s.delete_tag(&n, &t)).await?,
    };
    if deleted {
        enforce::audit(
            reg,
            caller,
            AuditAction::Delete,
            &name,
            digest.as_ref(),
            tag.as_deref(),
        );
        Ok(Reply::new(StatusCode::ACCEPTED))
    } else {
        Err(ApiError::not_found(ErrorCode::ManifestUnknown))
    }
}

fn to_store_ref(reference: ManifestRef) -> Reference {
    match reference {
        ManifestRef::Tag(t) => Reference::Tag(t),
        ManifestRef::Digest(d) => Reference::Digest(d),
    }
}
