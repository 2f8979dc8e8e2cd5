//! The parameters of `POST /admin/gc` and `POST /admin/verify`, from the query string, a JSON
//! body, or both (the body wins). Unknown parameters are refused rather than ignored: a
//! misspelt `dry_run` must not turn a rehearsal into a real collection.

use std::str::FromStr;

use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::api::query::Query;
use crate::maintenance::wire::{GcRequest, VerifyRequest};

const GC_KEYS: [&str; 5] = ["dry_run", "grace", "compact", "compact_threshold", "rate"];
const VERIFY_KEYS: [&str; 2] = ["quarantine", "rate"];

pub fn gc_request(query: &Query, body: &[u8]) -> ApiResult<GcRequest> {
    check_keys(query, &GC_KEYS)?;
    let from_query = GcRequest {
        dry_run: flag(query, "dry_run")?,
        grace: value(query, "grace")?,
        compact: flag(query, "compact")?,
        compact_threshold: value(query, "compact_threshold")?,
        rate: value(query, "rate")?,
    };
    Ok(json_body::<GcRequest>(body)?.or(from_query))
}

pub fn verify_request(query: &Query, body: &[u8]) -> ApiResult<VerifyRequest> {
    check_keys(query, &VERIFY_KEYS)?;
    let from_query = VerifyRequest {
        quarantine: flag(query, "quarantine")?,
        rate: value(query, "rate")?,
    };
    Ok(json_body::<VerifyRequest>(body)?.or(from_query))
}

pub fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::Unsupported, detail)
}

fn check_keys(query: &Query, known: &[&str]) -> ApiResult<()> {
    match query.keys().find(|k| !known.contains(k)) {
        Some(k) => Err(invalid(format!(
            "unknown parameter {k:?} (known: {})",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// `?dry_run`, `?dry_run=true|false|1|0`.
fn flag(query: &Query, key: &str) -> ApiResult<Option<bool>> {
    match query.get(key) {
        None => Ok(None),
        Some("" | "true" | "1") => Ok(Some(true)),
        Some("false" | "0") => Ok(Some(false)),
        Some(other) => Err(invalid(format!("{key}={other:?} is not true or false"))),
    }
}

fn value<T: FromStr>(query: &Query, key: &str) -> ApiResult<Option<T>>
where
    T::Err: std::fmt::Display,
{
    query
        .get(key)
        .map(|v| v.parse().map_err(|e| invalid(format!("{key}: {e}"))))
        .transpose()
}

fn json_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| invalid(format!("request body: {e}")))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn query_and_body_combine() {
        let q = Query::parse(Some("dry_run&grace=10m&rate=20MB"));
        let r = gc_request(&q, b"").unwrap();
        assert_eq!(r.dry_run, Some(true));
        assert_eq!(r.grace.map(|g| g.0), Some(Duration::from_secs(600)));
        assert_eq!(r.rate.map(|r| r.0), Some(Some(20_000_000)));
        let r = gc_request(&q, br#"{"dry_run":false,"compact":false}"#).unwrap();
        assert_eq!(r.dry_run, Some(false));
        assert_eq!(r.compact, Some(false));
        assert_eq!(r.grace.map(|g| g.0), Some(Duration::from_secs(600)));
        let v = verify_request(&Query::parse(Some("quarantine=0")), b"\n").unwrap();
        assert_eq!(v.quarantine, Some(false));
    }

    #[test]
    fn unknown_or_malformed_parameters_are_refused() {
        for (query, body) in [
            ("dryrun=true", ""),
            ("dry_run=maybe", ""),
            ("grace=10", ""),
            ("rate=fast", ""),
            ("", r#"{"dryrun":true}"#),
            ("", "not json"),
        ] {
            let e = gc_request(&Query::parse(Some(query)), body.as_bytes()).unwrap_err();
            assert_eq!(e.status, http::StatusCode::BAD_REQUEST, "{query} {body}");
        }
        assert!(verify_request(&Query::parse(Some("dry_run")), b"").is_err());
    }
}
