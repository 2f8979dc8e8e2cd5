//! Refusals decided from a request's headers alone, answered before its body is touched.
//!
//! hyper sends `100 Continue` to a client that asked for it only when the handler first
//! polls the body. These checks need the headers only, and their refusals go out through
//! `stream::refuse`, which answers at once and never polls the body of such a client: it
//! gets its final status without being invited to send a byte.

use http::header::CONTENT_LENGTH;
use http::{HeaderMap, StatusCode};

use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::api::Registry;

/// Free space kept beyond a declared body, for the record headers and checksums written
/// around it and the index's growth. Small on purpose: an edge box's disk may be small, and a
/// disk that fills up anyway is reported by the write that fails (also 507), with nothing of
/// the blob made visible.
pub const HEADROOM: u64 = 1 << 20;

/// The body length a request declares, if it declares a valid one.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Refuses a blob body the data disk cannot hold (507), judged by its `Content-Length` against
/// the space free on the store's file system. A body without a declared length, or a store
/// that cannot tell its free space, passes; a disk that fills up anyway is still reported by
/// the write that fails.
pub fn check_blob_fits(reg: &Registry, headers: &HeaderMap) -> ApiResult<()> {
    let Some(declared) = declared_length(headers).filter(|&n| n > 0) else {
        return Ok(());
    };
    let free = match reg.store().free_bytes() {
        Ok(Some(free)) => free,
        Ok(None) => return Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the data disk's free space");
            return Ok(());
        }
    };
    if declared.saturating_add(HEADROOM) <= free {
        return Ok(());
    }
    tracing::warn!(
        declared,
        free,
        headroom = HEADROOM,
        "refused a blob body larger than the free space of the data disk"
    );
    Err(
        ApiError::new(StatusCode::INSUFFICIENT_STORAGE, ErrorCode::Unknown).with_detail(format!(
            "insufficient storage: no room for a body of {declared} bytes ({free} bytes free on the data disk)"
        )),
    )
}
