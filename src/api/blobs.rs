//! Blob GET/HEAD (whole or one byte range, served from the segment maps) and DELETE.

use http::header::{ACCEPT_RANGES, CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_NONE_MATCH, RANGE};
use http::{HeaderMap, StatusCode};

use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::api::reply::{Reply, CONTENT_DIGEST};
use crate::api::Registry;
use crate::oci::digest::Digest;

pub async fn get(
    reg: &Registry,
    name: String,
    digest: Digest,
    headers: &HeaderMap,
    head: bool,
) -> ApiResult<Reply> {
    let d = digest.clone();
    let blob = reg
        .blocking(move |s| {
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
        .await?;
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

pub async fn delete(reg: &Registry, name: String, digest: Digest) -> ApiResult<Reply> {
    let d = digest.clone();
    if reg.blocking(move |s| s.unlink_blob(&name, &d)).await? {
        Ok(Reply::new(StatusCode::ACCEPTED))
    } else {
        Err(ApiError::not_found(ErrorCode::BlobUnknown).with_detail(digest.to_string()))
    }
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
    use super::parse_range;

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
