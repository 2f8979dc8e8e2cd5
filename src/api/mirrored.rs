//! Reads under a mirror: containerd's `?ns=` (and docker's unprefixed mirror names) turned into
//! local repository names before the route is authorized, and the pull-through cache's
//! answers turned into responses. Writes ignore `ns`.

use std::sync::Arc;

use http::header::{ACCEPT_RANGES, CONTENT_RANGE, CONTENT_TYPE, ETAG, RANGE};
use http::{HeaderMap, Method, Request, StatusCode};
use hyper::body::Incoming;
use tokio::sync::mpsc;

use crate::api::blobs::parse_range;
use crate::api::body::ResponseBody;
use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::api::query::Query;
use crate::api::reply::{Reply, CONTENT_DIGEST};
use crate::api::route::Route;
use crate::api::Registry;
use crate::mirror::cache::{BlobSource, MirrorError};
use crate::mirror::NsError;
use crate::oci::digest::Digest;
use crate::oci::name::ManifestRef;
use crate::storage::{StorageError, StoredManifest};

/// Blob bytes queued between a fetch and one client's connection.
const BODY_QUEUE: usize = 8;

/// `route` with its repository name as a mirror read means it. With no mirror configured
/// `ns` is ignored, as before mirrors existed; with mirrors, only their `ns` values are served
/// and any other is a fast 404, so containerd moves on to its next host.
pub async fn route(reg: &Registry, route: Route, req: &Request<Incoming>) -> ApiResult<Route> {
    let mirrors = reg.mirrors();
    if mirrors.is_empty() || !matches!(*req.method(), Method::GET | Method::HEAD) {
        return Ok(route);
    }
    let name = match &route {
        Route::Manifest { name, .. }
        | Route::Blob { name, .. }
        | Route::Tags { name }
        | Route::Referrers { name, .. } => name.clone(),
        _ => return Ok(route),
    };
    let query = Query::parse(req.uri().query());
    let local = match query.get("ns") {
        Some(ns) => match mirrors.local_name(&name, ns) {
            Ok(local) => local,
            Err(NsError::Unknown(ns)) => {
                return Err(ApiError::not_found(ErrorCode::NameUnknown)
                    .with_detail(format!("this registry mirrors no registry named {ns:?}")))
            }
            Err(NsError::BadName(n)) => {
                return Err(ApiError::bad_request(
                    ErrorCode::NameInvalid,
                    format!("{n:?} is not a valid repository name"),
                ))
            }
        },
        None => match mirrors.unprefixed_name(&name) {
            Some(fallback) => {
                let n = name.clone();
                if reg.blocking(move |s| s.repository_exists(&n)).await? {
                    return Ok(route);
                }
                fallback
            }
            None => return Ok(route),
        },
    };
    Ok(match route {
        Route::Manifest { reference, .. } => Route::Manifest {
            name: local,
            reference,
        },
        Route::Blob { digest, .. } => Route::Blob {
            name: local,
            digest,
        },
        Route::Tags { .. } => Route::Tags { name: local },
        Route::Referrers { digest, .. } => Route::Referrers {
            name: local,
            digest,
        },
        other => other,
    })
}

/// A manifest read of a repository under a mirror: `None` when `name` is not under one.
pub async fn manifest(
    reg: &Registry,
    name: &str,
    reference: &ManifestRef,
) -> Option<ApiResult<StoredManifest>> {
    let mirrors = reg.mirrors();
    let (mirror, remote) = mirrors.mirror_of(name)?;
    let max = reg.limits().max_manifest_bytes;
    let found = mirrors
        .manifest(reg.store(), mirror, name, &remote, reference, max)
        .await;
    Some(match found {
        Ok(Some(m)) => {
            mirrors.pulled(name, &m.digest);
            Ok(m)
        }
        Ok(None) | Err(MirrorError::NotFound) => {
            Err(ApiError::not_found(ErrorCode::ManifestUnknown))
        }
        Err(e) => Err(mirror_error(e)),
    })
}

/// A blob read of a repository under a mirror that does not hold the blob: `Ok(None)` when
/// the store now serves it (it was linked from another repository or just committed).
pub async fn blob(
    reg: &Registry,
    name: &str,
    digest: &Digest,
    headers: &HeaderMap,
    head: bool,
) -> ApiResult<Option<Reply>> {
    let mirrors = reg.mirrors();
    let unknown = || ApiError::not_found(ErrorCode::BlobUnknown).with_detail(digest.to_string());
    let Some((mirror, remote)) = mirrors.mirror_of(name) else {
        return Err(unknown());
    };
    let source = mirrors
        .blob(
            reg.store(),
            mirror,
            name,
            &remote,
            digest,
            reg.access().is_none(),
        )
        .await
        .map_err(|e| match e {
            MirrorError::NotFound => unknown(),
            e => mirror_error(e),
        })?;
    let (flight, size) = match source {
        None => return Err(unknown()),
        Some(BlobSource::Stored) => return Ok(None),
        Some(BlobSource::Fetching { flight, size }) => (flight, size),
    };
    let reply = Reply::new(StatusCode::OK)
        .header(CONTENT_DIGEST, digest)
        .header(ETAG, format!("\"{digest}\""))
        .header(ACCEPT_RANGES, "bytes")
        .header(CONTENT_TYPE, "application/octet-stream");
    let (start, end, reply) = match headers.get(RANGE) {
        None => (0, size, reply.content_length(size)),
        Some(value) => match value.to_str().ok().and_then(|v| parse_range(v, size)) {
            Some((start, end)) => (
                start,
                end,
                reply
                    .status(StatusCode::PARTIAL_CONTENT)
                    .header(CONTENT_RANGE, format!("bytes {start}-{}/{size}", end - 1))
                    .content_length(end - start),
            ),
            None => {
                return Err(ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    ErrorCode::SizeInvalid,
                )
                .with_detail(format!("range not satisfiable (size {size})")))
            }
        },
    };
    if head {
        // The fetch goes on and stores the blob: a GET usually follows a HEAD.
        return Ok(Some(reply));
    }
    let (tx, rx) = mpsc::channel(BODY_QUEUE);
    tokio::spawn(Arc::clone(&flight).follow(reg.store().clone(), start, end, tx));
    Ok(Some(reply.body(ResponseBody::channel(rx, end - start))))
}

/// The OCI answer to a failed mirrored read. An upstream that cannot be reached or refuses is
/// a 502: berth is a gateway here, and containerd tries its next host.
fn mirror_error(e: MirrorError) -> ApiError {
    match e {
        MirrorError::NotFound => ApiError::not_found(ErrorCode::ManifestUnknown),
        MirrorError::NotAllowed(what) => ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Denied)
            .with_detail(format!("{what} is not in the mirror's allow list")),
        e @ (MirrorError::Upstream { .. } | MirrorError::Invalid { .. }) => {
            ApiError::new(StatusCode::BAD_GATEWAY, ErrorCode::Unknown).with_detail(e.to_string())
        }
        MirrorError::Storage(e) => match Arc::try_unwrap(e) {
            Ok(e) => ApiError::from(e),
            Err(shared) => {
                ApiError::from(StorageError::Io(std::io::Error::other(shared.to_string())))
            }
        },
    }
}
