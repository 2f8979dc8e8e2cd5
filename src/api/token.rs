//! The docker token endpoint: `GET /token` with Basic credentials (or none, for anonymous pulls
//! of public projects) and `POST /token` with the OAuth2 `password` and `refresh_token` grants,
//! which containerd tries first whenever it has credentials. The token grants the part of the
//! requested scopes the caller may have; asking for too much is never an error.

use std::time::UNIX_EPOCH;

use http::{header, HeaderMap, Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::api::guard;
use crate::api::query::Query;
use crate::api::reply::Reply;
use crate::api::stream::BodyReader;
use crate::api::Registry;
use crate::auth::access::{AccessControl, Caller, CredentialError, Issued};
use crate::auth::audit::{Actor, AuditAction, AuditEvent};
use crate::auth::login::LoginError;
use crate::auth::policy::Principal;
use crate::auth::scope::parse_scopes;
use crate::config::units::civil_from_days;
use crate::config::AuthMode;

/// A token request's form body is a few hundred bytes.
const MAX_FORM_BYTES: usize = 16 << 10;

pub async fn handle(
    reg: &Registry,
    access: &AccessControl,
    query: &Query,
    req: Request<Incoming>,
    client: std::net::IpAddr,
    scheme: &str,
) -> ApiResult<Reply> {
    if access.settings().mode != AuthMode::Token {
        return Err(ApiError::not_found(ErrorCode::Unsupported)
            .with_detail("this registry takes Basic credentials, not tokens (auth mode basic)"));
    }
    let headers = req.headers().clone();
    match *req.method() {
        Method::GET => {
            let caller = guard::caller(access, &headers, client, scheme)?;
            if caller.token.is_some() {
                return Err(invalid_request(
                    "use Basic credentials or none, not a token",
                ));
            }
            check_service(access, query.get("service"))?;
            let offline = query.get("offline_token") == Some("true");
            respond(access, &caller, query.all("scope"), offline)
        }
        Method::POST => {
            let body = BodyReader::new(reg, req, MAX_FORM_BYTES)
                .read_all(MAX_FORM_BYTES)
                .await?
                .ok_or_else(|| invalid_request("form body too large"))?;
            let form = Query::parse(Some(&String::from_utf8_lossy(&body)));
            check_service(access, form.get("service"))?;
            let offline = form.get("access_type") == Some("offline");
            let principal = match form.get("grant_type") {
                Some("password") => {
                    let user = form.get("username").unwrap_or("");
                    let password = form.get("password").unwrap_or("");
                    access
                        .basic(user, password, client)
                        .map_err(|e| refused(access, &headers, scheme, e))?
                        .principal
                }
                Some("refresh_token") => access
                    .refresh(form.get("refresh_token").unwrap_or(""))
                    .map_err(|e| refused(access, &headers, scheme, e))?,
                Some(other) => {
                    return Err(invalid_request(format!("unsupported grant_type {other:?}")))
                }
                None => return Err(invalid_request("missing grant_type")),
            };
            let caller = Caller {
                principal,
                client,
                token: None,
                external: false,
            };
            respond(access, &caller, form.all("scope"), offline)
        }
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Unsupported,
        )),
    }
}

/// `GET /token/jwks.json`.
pub fn keys(access: &AccessControl) -> ApiResult<Reply> {
    let jwks = access
        .jwks()
        .ok_or_else(|| ApiError::not_found(ErrorCode::Unsupported))?;
    Ok(Reply::new(StatusCode::OK).json(serde_json::to_vec(&jwks).map_err(ApiError::internal)?))
}

fn respond<'a>(
    access: &AccessControl,
    caller: &Caller,
    scopes: impl Iterator<Item = &'a str>,
    offline: bool,
) -> ApiResult<Reply> {
    let requested = parse_scopes(scopes).map_err(|e| invalid_request(e.to_string()))?;
    let issued = access
        .issue(&caller.principal, &requested, offline)
        .map_err(ApiError::internal)?;
    if caller.principal != Principal::Anonymous {
        let event = AuditEvent::new(
            access.db().now_ms(),
            Actor::of(&caller.principal),
            AuditAction::Login,
        )
        .client(caller.client);
        access.record(event);
    }
    Ok(Reply::new(StatusCode::OK)
        .header(header::CACHE_CONTROL, "no-store")
        .json(body(&issued)))
}

fn body(issued: &Issued) -> Vec<u8> {
    let issued_at = issued
        .issued_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let mut v = json!({
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in.as_secs(),
        "issued_at": rfc3339(issued_at),
    });
    if let (Some(r), Some(v)) = (&issued.refresh_token, v.as_object_mut()) {
        v.insert("refresh_token".into(), json!(r));
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

fn check_service(access: &AccessControl, service: Option<&str>) -> ApiResult<()> {
    match service {
        Some(s) if s != access.settings().service => {
            Err(invalid_request(format!("unknown service {s:?}")))
        }
        _ => Ok(()),
    }
}

fn refused(
    access: &AccessControl,
    headers: &HeaderMap,
    scheme: &str,
    e: CredentialError,
) -> ApiError {
    match e {
        CredentialError::Login(LoginError::RateLimited { .. }) => {
            guard::caller_error(access, headers, scheme, e)
        }
        other => ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized)
            .with_detail(other.to_string()),
    }
}

fn invalid_request(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::Unsupported, detail)
}

/// `2026-11-28T06:00:00Z` from seconds since the epoch.
pub fn rfc3339(secs: u64) -> String {
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_824_000), "2026-11-28T00:00:00Z");
    }
}
