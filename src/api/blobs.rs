//! Blob GET/HEAD (whole or one byte range, served from the segment maps) and DELETE.

use http::header::{ACCEPT_RANGES, CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_NONE_MATCH, RANGE};
use http::{HeaderMap, StatusCode};

use crate::api::enforce;
use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::api::mirrored;
use crate::api::reply::{Reply, CONTENT_DIGEST};
use crate::api::Registry;
use crate::auth::access::Caller;
use crate::auth::audit::AuditAction;
use crate::oci::digest::Digest;
use crate::storage::{BlobData, StorageError};

pub async fn get(
    reg: &Registry,
    name: String,
    digest: Digest,
    headers: &HeaderMap,
    head: bool,
) -> ApiResult<Reply> {
    let mut blob = stored(reg, &name, &digest, head).await?;
    if blob.is_none() {
        // Under a mirror the blob may be fetched (streamed as it arrives) or linked.
        if let Some(reply) = mirrored::blob(reg, &name, &digest, headers, head).await? {
            return Ok(reply);
        }
        blob = stored(reg, &name, &digest, head).await?;
    }
    let Some((size, data)) = blob else {
        return Err(ApiError::not_found(ErrorCode::BlobUnknown).with_detail(digest.to_string()));
    };
    let etag = format!("\"{digest}\"");
    let reply = Reply::new(StatusCode::OK)
        .header(CONTENT_DIGEST, &digest)
        .header(ETAG, &etag)
        .header(ACCEPT_RANGES, "bytes")
        .header(CONTENT_TYPE, "application/octet-stream");
    if headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return Ok(reply.status(StatusCode::NOT_MODIFIED));
    }
    let range = match headers.get(RANGE) {
        None => None,
        Some(value) => match value.to_str().ok().and_then(|v| parse_range(v, size)) {
            Some(r) => Some(r),
            None => {
                return Err(ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    ErrorCode::SizeInvalid,
                )
                .with_detail("range not satisfiable")
                .with_header(
                    CONTENT_RANGE,
                    http::HeaderValue::from_str(&format!("bytes */{size}"))
                        .map_err(ApiError::internal)?,
                ))
            }
        },
    };
    let Some((start, end)) = range else {
        let reply = reply.content_length(size);
        return Ok(match data {
            Some(data) => reply.body(crate::api::body::ResponseBody::blob(data.reader())),
            None => reply,
        });
    };
    let reply = reply
        .status(StatusCode::PARTIAL_CONTENT)
        .header(CONTENT_RANGE, format!("bytes {start}-{}/{size}", end - 1))
        .content_length(end - start);
    Ok(match data {
        Some(data) => reply.body(crate::api::body::ResponseBody::blob(data.range(start, end))),
        None => reply,
    })
}

/// The blob's size, and for a GET its zero-copy view, if `name` holds it.
async fn stored(
    reg: &Registry,
    name: &str,
    digest: &Digest,
    head: bool,
) -> ApiResult<Option<(u64, Option<BlobData>)>> {
    let (name, d) = (name.to_owned(), digest.clone());
    reg.read(move |s| {
        if !s.repo_has_blob(&name, &d)? {
            return Ok(None);
        }
        // HEAD needs only the size; GET takes the zero-copy view.
        if head {
            Ok(s.stat(&d)?.map(|info| (info.size, None)))
        } else {
            Ok(s.get(&d)?.map(|data| (data.size, Some(data))))
        }
    })
    .await
}

/// Most manifest digests named in a refusal; the rest are counted.
const NAMED_REFERRERS: usize = 10;

/// Unlinks a blob from the repository, unless a manifest of the repository still references
/// it: that manifest would become unpullable. The refusal is 403 `DENIED` rather than 405
/// `UNSUPPORTED`, which berth keeps for a registry with deletes disabled: this blob cannot go
/// yet, others can, and it can once the manifests named in the message are deleted.
pub async fn delete(
    reg: &Registry,
    name: String,
    digest: Digest,
    caller: Option<&Caller>,
) -> ApiResult<Reply> {
    let d = digest.clone();
    let repo = name.clone();
    let outcome = reg
        .blocking(move |s| match s.unlink_unreferenced_blob(&repo, &d) {
            Err(StorageError::BlobReferenced(by)) => Ok(Err(by)),
            other => other.map(Ok),
        })
        .await?;
    match outcome {
        Ok(true) => {
            enforce::audit(reg, caller, AuditAction::Delete, &name, Some(&digest), None);
            Ok(Reply::new(StatusCode::ACCEPTED))
        }
        Ok(false) => {
            Err(ApiError::not_found(ErrorCode::BlobUnknown).with_detail(digest.to_string()))
        }
        Err(referencing) => Err(still_referenced(&name, &digest, &referencing)),
    }
}

fn still_referenced(name: &str, digest: &Digest, manifests: &[Digest]) -> ApiError {
    let mut named: Vec<String> = manifests
        .iter()
        .take(NAMED_REFERRERS)
        .map(Digest::to_string)
        .collect();
    if manifests.len() > NAMED_REFERRERS {
        named.push(format!("and {} more", manifests.len() - NAMED_REFERRERS));
    }
    let (noun, them) = if manifests.len() == 1 {
        ("manifest", "it")
    } else {
        ("manifests", "them")
    };
    ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Denied).with_detail(format!(
        "blob {digest} is still referenced by {noun} {} of repository {name}; delete {them} first",
        named.join(", ")
    ))
}

/// One `bytes=` range of a blob of `size` bytes, as `[start, end)`. `None` when the header is
/// malformed, asks for several ranges, or cannot be satisfied.
pub fn parse_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let (start, end) = if first.is_empty() {
        let suffix: u64 = last.parse().ok()?;
        if suffix == 0 {
            return None;
        }
        (size.saturating_sub(suffix), size)
    } else {
        let start: u64 = first.parse().ok()?;
        let end = if last.is_empty() {
            size
        } else {
            let last: u64 = last.parse().ok()?;
            if last < start {
                return None;
            }
            last.saturating_add(1).min(size)
        };
        (start, end)
    };
    (start < end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::{parse_range, still_referenced};
    use crate::oci::digest::{Algorithm, Digest};

    #[test]
    fn refusals_name_the_referencing_manifests() {
        let blob = Digest::of(Algorithm::Sha256, b"layer");
        let manifests: Vec<Digest> = (0..12u8)
            .map(|i| Digest::of(Algorithm::Sha256, &[i]))
            .collect();
        let e = still_referenced("app", &blob, &manifests[..1]);
        assert_eq!(e.status, http::StatusCode::FORBIDDEN);
        let detail = e.detail.unwrap();
        assert!(detail.contains(&manifests[0].to_string()), "{detail}");
        assert!(detail.contains(&blob.to_string()), "{detail}");
        let detail = still_referenced("app", &blob, &manifests).detail.unwrap();
        assert!(detail.contains(&manifests[9].to_string()), "{detail}");
        assert!(!detail.contains(&manifests[10].to_string()), "{detail}");
        assert!(detail.contains("and 2 more"), "{detail}");
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-0", 10), Some((0, 1)));
        assert_eq!(parse_range("bytes=2-", 10), Some((2, 10)));
        assert_eq!(parse_range("bytes=-3", 10), Some((7, 10)));
        assert_eq!(parse_range("bytes=-30", 10), Some((0, 10)));
        assert_eq!(parse_range("bytes=5-100", 10), Some((5, 10)));
        assert_eq!(parse_range("bytes=10-", 10), None);
        assert_eq!(parse_range("bytes=3-2", 10), None);
        assert_eq!(parse_range("bytes=0-1,3-4", 10), None);
        assert_eq!(parse_range("items=0-1", 10), None);
        assert_eq!(parse_range("bytes=-0", 10), None);
        assert_eq!(parse_range("bytes=x-1", 10), None);
        assert_eq!(parse_range("bytes=0-", 0), None);
    }
}
