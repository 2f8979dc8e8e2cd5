//! Access control in front of the handlers: the credentials a request carries become a
//! [`Caller`], the route says what it needs, and a refusal becomes the spec's answer: 401
//! with the challenge a client follows (Basic, or Bearer with realm, service and scope), 403
//! `DENIED`, or 429 `TOOMANYREQUESTS` with `Retry-After` after too many failed logins.

use std::net::IpAddr;

use http::{header, HeaderMap, HeaderValue, Method, StatusCode};

use crate::api::error::{ApiError, ErrorCode};
use crate::api::route::Route;
use crate::auth::access::{AccessControl, Caller, CredentialError, Verdict};
use crate::auth::b64;
use crate::auth::claims::ResourceActions;
use crate::auth::login::LoginError;
use crate::auth::model::Action;
use crate::auth::scope;
use crate::config::access::AuthMode;

/// What a route needs before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'r> {
    /// Anyone (`/healthz`, the token endpoint, which checks credentials itself).
    Open,
    /// Any valid credentials (`/v2/`, which clients use to find out how to log in).
    Login,
    /// `/v2/_catalog`: signed in; the list is filtered per caller.
    Catalog,
    Repo(&'r str, Action),
    /// `/metrics`, `/admin/`, `/api/v1/`: system administrators.
    Admin,
}

/// What `route` needs for `method`.
pub fn need<'r>(route: &'r Route, method: &Method) -> Need<'r> {
    let write = |name: &'r str| match *method {
        Method::GET | Method::HEAD => Need::Repo(name, Action::Pull),
        Method::DELETE => Need::Repo(name, Action::Delete),
        _ => Need::Repo(name, Action::Push),
    };
    match route {
        Route::Health | Route::Token | Route::TokenKeys => Need::Open,
        Route::Base => Need::Login,
        Route::Catalog => Need::Catalog,
        Route::Metrics | Route::AdminGc | Route::AdminVerify | Route::Manage { .. } => Need::Admin,
        Route::Tags { name } => Need::Repo(name, Action::List),
        Route::Referrers { name, .. } => Need::Repo(name, Action::Pull),
        Route::Manifest { name, .. } | Route::Blob { name, .. } => write(name),
        // Cancelling an upload is part of pushing, not a delete of content.
        Route::UploadStart { name } | Route::Upload { name, .. } => Need::Repo(name, Action::Push),
    }
}

/// The caller of a request, from its `Authorization` header (none: anonymous).
pub fn caller(
    access: &AccessControl,
    headers: &HeaderMap,
    client: IpAddr,
    scheme: &str,
) -> Result<Caller, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Caller::anonymous(client));
    };
    let value = value.to_str().unwrap_or("");
    let (kind, rest) = value.split_once(' ').unwrap_or((value, ""));
    let result = if kind.eq_ignore_ascii_case("basic") {
        match basic_credentials(rest) {
            // containers/image (podman, skopeo, buildah) answers a Basic challenge with an empty
            // user and password when it has no credentials: that is an anonymous request, not a
            // failed login, or no such client could pull from a public project.
            Some((user, password)) if user.is_empty() && password.is_empty() => {
                return Ok(Caller::anonymous(client));
            }
            Some((user, password)) => access.basic(&user, &password, client),
            None => Err(CredentialError::Login(LoginError::Invalid)),
        }
    } else if kind.eq_ignore_ascii_case("bearer") && access.settings().mode == AuthMode::Token {
        access.bearer(rest.trim(), client)
    } else {
        Err(CredentialError::BearerInBasicMode)
    };
    result.map_err(|e| caller_error(access, headers, scheme, e))
}

/// `user:password` of a Basic header value.
pub fn basic_credentials(encoded: &str) -> Option<(String, String)> {
    let raw = b64::decode_std(encoded.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The answer to refused credentials: 429 after too many failures, else 401 with a challenge.
pub fn caller_error(
    access: &AccessControl,
    headers: &HeaderMap,
    scheme: &str,
    e: CredentialError,
) -> ApiError {
    match e {
        CredentialError::Login(LoginError::RateLimited { retry_after }) => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::TooManyRequests)
                .with_detail(format!(
                    "too many failed logins; retry in {} s",
                    retry_after.as_secs().max(1)
                ))
                .with_header(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after.as_secs().max(1)),
                )
        }
        CredentialError::Token(t) => challenge(access, headers, scheme, &[], Some("invalid_token"))
            .with_detail(t.to_string()),
        other => challenge(access, headers, scheme, &[], None).with_detail(other.to_string()),
    }
}

/// Checks `need` for `caller`; `Ok` lets the handler run.
pub fn check(
    access: &AccessControl,
    caller: &Caller,
    need: Need<'_>,
    headers: &HeaderMap,
    scheme: &str,
) -> Result<(), ApiError> {
    let (verdict, scopes) = match need {
        Need::Open => return Ok(()),
        Need::Login => {
            if caller.is_anonymous() && caller.token.is_none() {
                (
                    Verdict::Challenge {
                        insufficient_scope: false,
                    },
                    Vec::new(),
                )
            } else {
                return Ok(());
            }
        }
        Need::Catalog => (
            access.decide_catalog(caller),
            vec![resource("registry", "catalog", &["*"])],
        ),
        Need::Admin => {
            if access.is_admin(caller) {
                return Ok(());
            }
            let verdict = if caller.is_anonymous() {
                Verdict::Challenge {
                    insufficient_scope: false,
                }
            } else {
                Verdict::Deny
            };
            (verdict, Vec::new())
        }
        Need::Repo(name, action) => {
            let actions: &[&str] = match action {
                Action::Pull | Action::List => &["pull"],
                Action::Push => &["pull", "push"],
                Action::Delete => &["delete"],
            };
            (
                access.decide(caller, name, action),
                vec![resource("repository", name, actions)],
            )
        }
    };
    match verdict {
        Verdict::Allow => Ok(()),
        Verdict::Challenge { insufficient_scope } => Err(challenge(
            access,
            headers,
            scheme,
            &scopes,
            insufficient_scope.then_some("insufficient_scope"),
        )),
        Verdict::Deny => Err(denied(need)),
    }
}

fn resource(kind: &str, name: &str, actions: &[&str]) -> ResourceActions {
    ResourceActions {
        kind: kind.to_owned(),
        class: None,
        name: name.to_owned(),
        actions: actions.iter().map(|a| a.to_string()).collect(),
    }
}

fn denied(need: Need<'_>) -> ApiError {
    let detail = match need {
        Need::Repo(name, action) => {
            format!("{} access to repository {name} is denied", action.name())
        }
        Need::Admin => "only system administrators may do this".to_owned(),
        _ => "access denied".to_owned(),
    };
    ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Denied).with_detail(detail)
}

/// A 401 `UNAUTHORIZED` with the challenge of the configured mode.
pub fn challenge(
    access: &AccessControl,
    headers: &HeaderMap,
    scheme: &str,
    scopes: &[ResourceActions],
    error: Option<&str>,
) -> ApiError {
    let settings = access.settings();
    let value = match settings.mode {
        AuthMode::Token => scope::challenge(
            &realm(access, headers, scheme),
            &settings.service,
            scopes,
            error,
        ),
        _ => format!("Basic realm=\"{}\"", settings.service.replace('"', "")),
    };
    let err = ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized);
    match HeaderValue::from_str(&value) {
        Ok(v) => err.with_header(header::WWW_AUTHENTICATE, v),
        Err(_) => err,
    }
}

/// The token endpoint's URL: configured, or as the client reached this registry (through a
/// proxy: its `X-Forwarded-Proto` and `X-Forwarded-Host`), path `/token`.
pub fn realm(access: &AccessControl, headers: &HeaderMap, scheme: &str) -> String {
    if let Some(realm) = &access.settings().realm {
        return realm.clone();
    }
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let proto = first("x-forwarded-proto")
        .filter(|p| matches!(*p, "http" | "https"))
        .unwrap_or(scheme);
    let host = first("x-forwarded-host")
        .or_else(|| first("host"))
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'/')
        })
        .unwrap_or("localhost");
    format!("{proto}://{host}/token")
}
