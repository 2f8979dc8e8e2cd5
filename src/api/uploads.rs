//! Blob uploads: start (plain, monolithic `?digest=`, cross-repo mount), PATCH chunks (with
//! `Content-Range` or streamed without a length), PUT to finish, status and cancel.
//!
//! Bodies go to the store batch by batch as they arrive; the next batch is read from the
//! socket while the previous one is being appended.

use std::str::FromStr;

use http::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use hyper::body::Incoming;

use crate::api::appender::{batch_len, Appender};
use crate::api::enforce;
use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::api::query::Query;
use crate::api::reply::{Reply, CONTENT_DIGEST, OCI_CHUNK_MIN_LENGTH, UPLOAD_UUID};
use crate::api::room;
use crate::api::stream::{concat, refuse, BodyReader};
use crate::api::Registry;
use crate::auth::access::Caller;
use crate::oci::digest::Digest;
use crate::oci::name::{is_valid_name, parse_digest};
use crate::storage::{UploadId, UploadStatus};

/// POST `/v2/<name>/blobs/uploads/`.
pub async fn start(
    reg: &Registry,
    name: String,
    query: &Query,
    req: Request<Incoming>,
    caller: Option<&Caller>,
) -> ApiResult<Reply> {
    if let Err(e) = enforce::project_for_push(reg, caller, &name) {
        return Err(refuse(reg, req, e));
    }
    match plan_start(reg, &name, query, caller).await {
        Ok(Start::Mounted(digest)) => Ok(blob_created(&name, &digest)),
        Ok(Start::Monolithic(digest)) => {
            if let Err(e) = room::check_blob_fits(reg, req.headers()) {
                return Err(refuse(reg, req, e));
            }
            monolithic(reg, name, digest, req, caller).await
        }
        Ok(Start::Session) => {
            let n = name.clone();
            let id = reg.blocking(move |s| s.begin_upload(&n)).await?;
            // The spec's hint that clients honouring it send chunks at least this long (all
            // but the last): one append batch, which the store writes as whole chunk records
            // without a copy. Only a hint: shorter chunks are still accepted.
            Ok(
                session_reply(StatusCode::ACCEPTED, &name, &id.to_string(), 0)
                    .header(OCI_CHUNK_MIN_LENGTH, reg.limits().append_batch_bytes.max(1)),
            )
        }
        Err(e) => Err(refuse(reg, req, e)),
    }
}

/// What a POST does, decided from its query alone.
enum Start {
    /// A cross-repository mount that succeeded: nothing to upload.
    Mounted(Digest),
    /// The whole blob is in the body.
    Monolithic(Digest),
    /// A new session (also the spec's fallback when a mount is not possible).
    Session,
}

async fn plan_start(
    reg: &Registry,
    name: &str,
    query: &Query,
    caller: Option<&Caller>,
) -> ApiResult<Start> {
    // `?digest-algorithm=` names the hash the client will commit with; one we cannot verify
    // is refused before a session exists (end-4c: 400).
    if let Some(alg) = query.get("digest-algorithm") {
        if !matches!(alg, "sha256" | "sha512") {
            return Err(ApiError::bad_request(
                ErrorCode::DigestInvalid,
                format!("unsupported digest algorithm {alg:?}"),
            ));
        }
    }
    if let Some(mount) = query.get("mount") {
        let digest = parse_digest(mount)?;
        let from = query.get("from").map(str::to_owned);
        if let Some(from) = &from {
            if !is_valid_name(from) {
                return Err(ApiError::bad_request(
                    ErrorCode::NameInvalid,
                    "invalid from",
                ));
            }
        }
        // A mount links only what the caller may pull; otherwise the client uploads (202).
        if !enforce::may_mount_from(reg, caller, from.as_deref()) {
            return Ok(Start::Session);
        }
        let size = reg.blocking({
            let d = digest.clone();
            move |s| s.stat(&d)
        });
        if let Some(info) = size.await? {
            if enforce::quota(reg, caller, name, Some(&digest), info.size)
                .await
                .is_err()
            {
                return Ok(Start::Session);
            }
        }
        let (n, d) = (name.to_owned(), digest.clone());
        let mounted = reg
            .blocking(move |s| match from {
                Some(from) if !s.repo_has_blob(&from, &d)? => Ok(false),
                _ => s.link_blob(&n, &d),
            })
            .await?;
        return Ok(if mounted {
            Start::Mounted(digest)
        } else {
            Start::Session
        });
    }
    match query.get("digest") {
        Some(digest) => Ok(Start::Monolithic(parse_digest(digest)?)),
        None => Ok(Start::Session),
    }
}

/// POST with `?digest=`: small bodies are stored in one call, large ones stream through a
/// session that is removed again if anything fails.
async fn monolithic(
    reg: &Registry,
    name: String,
    digest: Digest,
    req: Request<Incoming>,
    caller: Option<&Caller>,
) -> ApiResult<Reply> {
    let limits = reg.limits();
    let mut reader = BodyReader::new(
        reg,
        req,
        limits
            .monolithic_buffer_bytes
            .max(limits.append_batch_bytes),
    );
    // Only what has arrived is held: a body that declares a megabyte and sends a kilobyte
    // costs a kilobyte.
    let first = reader.next_frames().await?.unwrap_or_default();
    let small = batch_len(&first) <= limits.monolithic_buffer_bytes as u64;
    if small && reader.ended() {
        let body = concat(first);
        enforce::quota(reg, caller, &name, Some(&digest), body.len() as u64).await?;
        let (n, d) = (name.clone(), digest.clone());
        reg.blocking(move |s| s.put_blob(&n, &d, &body)).await?;
        return Ok(blob_created(&name, &digest));
    }
    let n = name.clone();
    let id = reg.blocking(move |s| s.begin_upload(&n)).await?;
    let mut pipe = Appender::new(reg, id, 0);
    let streamed = async {
        pipe.push(first).await?;
        while let Some(batch) = reader.next_frames().await? {
            pipe.push(batch).await?;
        }
        Ok::<(), ApiError>(())
    }
    .await;
    // The append in flight lands before the session is committed or removed.
    let finished = pipe.finish().await;
    let result = match (streamed, finished) {
        (Ok(()), Ok(_)) => {
            let size = reg.blocking(move |s| s.status(&id)).await?.offset;
            match enforce::quota(reg, caller, &name, Some(&digest), size).await {
                Ok(()) => {
                    let d = digest.clone();
                    reg.blocking(move |s| s.commit(&id, &d)).await.map(|_| ())
                }
                Err(e) => Err(e),
            }
        }
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    match result {
        Ok(_) => Ok(blob_created(&name, &digest)),
        Err(e) => {
            // Best effort: the session may already be gone (digest mismatch consumes it).
            let _ = reg.blocking(move |s| s.abort(&id)).await;
            Err(e)
        }
    }
}

/// GET `/v2/<name>/blobs/uploads/<id>`.
pub async fn status(reg: &Registry, name: String, id: String) -> ApiResult<Reply> {
    let (id, offset) = session(reg, &name, &id).await?;
    Ok(session_reply(
        StatusCode::NO_CONTENT,
        &name,
        &id.to_string(),
        offset,
    ))
}

/// PATCH `/v2/<name>/blobs/uploads/<id>`: one chunk, at the offset given by `Content-Range`
/// or at the current end when the client streams without one.
pub async fn patch(
    reg: &Registry,
    name: String,
    id_text: String,
    req: Request<Incoming>,
) -> ApiResult<Reply> {
    let target = async {
        let (id, offset) = session_end(reg, &name, &id_text).await?;
        let declared = chunk_range(req.headers(), offset, &name, &id_text)?;
        Ok::<_, ApiError>((id, offset, declared))
    };
    let (id, offset, declared) = match target.await {
        Ok(t) => t,
        Err(e) => return Err(refuse(reg, req, e)),
    };
    if let Err(e) = room::check_blob_fits(reg, req.headers()) {
        return Err(refuse(reg, req, e));
    }
    let end = stream_chunk(reg, &id, offset, declared, req).await?;
    Ok(session_reply(StatusCode::ACCEPTED, &name, &id_text, end))
}

/// PUT `/v2/<name>/blobs/uploads/<id>?digest=`: an optional last chunk, then the commit.
pub async fn finish(
    reg: &Registry,
    name: String,
    id_text: String,
    query: &Query,
    req: Request<Incoming>,
    caller: Option<&Caller>,
) -> ApiResult<Reply> {
    let target = async {
        let digest = match query.get("digest") {
            Some(d) => parse_digest(d)?,
            None => {
                return Err(ApiError::bad_request(
                    ErrorCode::DigestInvalid,
                    "digest missing",
                ))
            }
        };
        let (id, offset) = session_end(reg, &name, &id_text).await?;
        let declared = chunk_range(req.headers(), offset, &name, &id_text)?;
        Ok((digest, id, offset, declared))
    };
    let (digest, id, offset, declared) = match target.await {
        Ok(t) => t,
        Err(e) => return Err(refuse(reg, req, e)),
    };
    if let Err(e) = room::check_blob_fits(reg, req.headers()) {
        return Err(refuse(reg, req, e));
    }
    stream_chunk(reg, &id, offset, declared, req).await?;
    let size = reg.blocking(move |s| s.status(&id)).await?.offset;
    if let Err(e) = enforce::quota(reg, caller, &name, Some(&digest), size).await {
        // Refused whole: the session's bytes go, and nothing of the blob becomes visible.
        reg.blocking(move |s| s.abort(&id)).await?;
        return Err(e);
    }
    let d = digest.clone();
    reg.blocking(move |s| s.commit(&id, &d)).await?;
    Ok(blob_created(&name, &digest))
}

/// DELETE `/v2/<name>/blobs/uploads/<id>`.
pub async fn cancel(reg: &Registry, name: String, id_text: String) -> ApiResult<Reply> {
    let (id, _) = session(reg, &name, &id_text).await?;
    reg.blocking(move |s| s.abort(&id)).await?;
    Ok(Reply::new(StatusCode::NO_CONTENT))
}

/// Looks up a session that must belong to `name`; returns its id and current length, once
/// the records in flight are written (what a client resumes from).
async fn session(reg: &Registry, name: &str, id: &str) -> ApiResult<(UploadId, u64)> {
    let id = parse_session_id(id)?;
    let status = reg.blocking(move |s| s.status(&id)).await?;
    owned_by(name, id, status)
}

/// Like `session` for a request that appends: the length counts the records in flight (a
/// failed one is reported by the append), so it needs no disk. It still takes the session's
/// mutex, which an append of the same session holds while it waits for the disk: hence off
/// the async threads too.
async fn session_end(reg: &Registry, name: &str, id: &str) -> ApiResult<(UploadId, u64)> {
    let id = parse_session_id(id)?;
    let status = reg.blocking(move |s| s.status_now(&id)).await?;
    owned_by(name, id, status)
}

fn parse_session_id(id: &str) -> ApiResult<UploadId> {
    UploadId::from_str(id).map_err(|_| ApiError::not_found(ErrorCode::BlobUploadUnknown))
}

fn owned_by(name: &str, id: UploadId, status: UploadStatus) -> ApiResult<(UploadId, u64)> {
    if status.repo != name {
        return Err(ApiError::not_found(ErrorCode::BlobUploadUnknown));
    }
    Ok((id, status.offset))
}

/// Reads `Content-Range` (and `Content-Length`) of a chunk. Returns the chunk's declared
/// length, if any. A chunk that does not start at the session's end is a 416 that leaves the
/// session untouched and tells the client where to resume.
fn chunk_range(headers: &HeaderMap, offset: u64, name: &str, id: &str) -> ApiResult<Option<u64>> {
    let length = match headers.get(CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(ErrorCode::SizeInvalid, "bad Content-Length")
                })?,
        ),
    };
    let Some(range) = headers.get(CONTENT_RANGE) else {
        return Ok(None);
    };
    let (start, end) = range
        .to_str()
        .ok()
        .and_then(parse_content_range)
        .ok_or_else(|| ApiError::bad_request(ErrorCode::BlobUploadInvalid, "bad Content-Range"))?;
    if start != offset {
        let location = HeaderValue::from_str(&format!("/v2/{name}/blobs/uploads/{id}"))
            .map_err(ApiError::internal)?;
        return Err(ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::BlobUploadInvalid,
        )
        .with_detail(format!("chunk must start at offset {offset}"))
        .with_header(RANGE, range_value(offset))
        .with_header(http::header::LOCATION, location));
    }
    let declared = (end - start)
        .checked_add(1)
        .ok_or_else(|| ApiError::bad_request(ErrorCode::BlobUploadInvalid, "bad Content-Range"))?;
    if length.is_some_and(|l| l != declared) {
        return Err(ApiError::bad_request(
            ErrorCode::SizeInvalid,
            "Content-Length does not match Content-Range",
        ));
    }
    Ok(Some(declared))
}

/// `<start>-<end>` (inclusive), optionally as `bytes <start>-<end>/<total>` or `bytes=…`.
pub fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let v = value.trim();
    let v = v
        .strip_prefix("bytes=")
        .or_else(|| v.strip_prefix("bytes "))
        .unwrap_or(v);
    let v = v.split('/').next()?;
    let (a, b) = v.split_once('-')?;
    let (start, end) = (a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?);
    (end >= start).then_some((start, end))
}

/// Streams a request body into the session from `offset`; returns the new length. A body
/// longer than its declared `Content-Range` is cut off with an error.
async fn stream_chunk(
    reg: &Registry,
    id: &UploadId,
    offset: u64,
    declared: Option<u64>,
    req: Request<Incoming>,
) -> ApiResult<u64> {
    let limits = reg.limits();
    let framed = req.headers().contains_key(CONTENT_LENGTH);
    if let Some(declared) = declared.filter(|&d| !framed && d <= limits.checked_chunk_bytes()) {
        return buffered_chunk(reg, id, offset, declared, req).await;
    }
    // Frames go to the store as they arrive: the appender gathers what is waiting.
    let mut reader = BodyReader::new(reg, req, 1);
    let mut pipe = Appender::new(reg, *id, offset);
    let too_long = |appended: u64, more: u64| declared.is_some_and(|d| appended + more > d);
    let mut overrun = false;
    // Every frame is pushed as it arrives, so a body cut short (client gone, stalled) keeps
    // what arrived, and the client can resume from the offset a status request reports.
    let streamed = async {
        while let Some(batch) = reader.next_frames().await? {
            if too_long(pipe.planned - offset, batch_len(&batch)) {
                overrun = true;
                return Err(ApiError::bad_request(
                    ErrorCode::SizeInvalid,
                    "chunk longer than its Content-Range",
                ));
            }
            pipe.push(batch).await?;
        }
        Ok(())
    }
    .await;
    // Whatever happened, the append in flight must land before the reply goes out.
    let end = pipe.finish().await;
    let short = streamed.is_ok()
        && matches!(&end, Ok(e) if declared.is_some_and(|d| e.saturating_sub(offset) != d));
    if overrun || short {
        // A chunk that is not the one its Content-Range announced leaves the session as it
        // was before the request.
        let i = *id;
        reg.blocking(move |s| s.truncate_upload(&i, offset)).await?;
        let what = if overrun { "longer" } else { "shorter" };
        return Err(ApiError::bad_request(
            ErrorCode::SizeInvalid,
            format!("chunk {what} than its Content-Range"),
        ));
    }
    streamed?;
    end
}

/// A chunk with a `Content-Range` but no `Content-Length` (chunked transfer encoding, or h2
/// without the header) can only be checked against its range once it has ended. Small ones
/// are held until then, so one that is shorter or longer than declared leaves the session as
/// it was instead of half-appended.
async fn buffered_chunk(
    reg: &Registry,
    id: &UploadId,
    offset: u64,
    declared: u64,
    req: Request<Incoming>,
) -> ApiResult<u64> {
    let limits = reg.limits();
    let wrong = |what: &str| {
        ApiError::bad_request(
            ErrorCode::SizeInvalid,
            format!("chunk {what} than its Content-Range"),
        )
    };
    let limit = usize::try_from(declared).map_err(|_| wrong("longer"))?;
    let mut reader = BodyReader::new(reg, req, limits.append_batch_bytes);
    let body = reader
        .read_all(limit)
        .await?
        .ok_or_else(|| wrong("longer"))?;
    if body.len() != limit {
        return Err(wrong("shorter"));
    }
    let mut pipe = Appender::new(reg, *id, offset);
    let mut at = 0;
    while at < body.len() {
        let end = (at + limits.append_batch_bytes.max(1)).min(body.len());
        pipe.push(vec![body.slice(at..end)]).await?;
        at = end;
    }
    pipe.finish().await
}

fn range_value(length: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("0-{}", length.saturating_sub(1)))
        .unwrap_or(HeaderValue::from_static("0-0"))
}

/// The headers of every upload step: where to continue, the session id, and the bytes held
/// (`0-0` for an empty session, as distribution answers and docker expects).
fn session_reply(status: StatusCode, name: &str, id: &str, length: u64) -> Reply {
    Reply::new(status)
        .location(format!("/v2/{name}/blobs/uploads/{id}"))
        .header(UPLOAD_UUID, id)
        .header(RANGE, range_value(length).to_str().unwrap_or("0-0"))
}

fn blob_created(name: &str, digest: &Digest) -> Reply {
    Reply::new(StatusCode::CREATED)
        .location(format!("/v2/{name}/blobs/{digest}"))
        .header(CONTENT_DIGEST, digest)
}

#[cfg(test)]
mod tests {
    use super::parse_content_range;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-9"), Some((0, 9)));
        assert_eq!(parse_content_range("bytes 10-19/100"), Some((10, 19)));
        assert_eq!(parse_content_range("bytes=5-5"), Some((5, 5)));
        assert_eq!(parse_content_range("9-0"), None);
        assert_eq!(parse_content_range("x-1"), None);
        assert_eq!(parse_content_range(""), None);
    }
}
