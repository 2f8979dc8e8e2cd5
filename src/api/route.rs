//! Turns a request path into a `Route`, once, validating the repository name and the digest,
//! tag or session id it carries. Handlers receive typed values only.

use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::oci::digest::Digest;
use crate::oci::name::{is_valid_name, parse_digest, ManifestRef, NameError};

/// Every path the registry answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`: API version check.
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/healthz`
    Health,
    /// `/metrics`
    Metrics,
    /// `/v2/<name>/tags/list`
    Tags { name: String },
    /// `/v2/<name>/manifests/<reference>`
    Manifest {
        name: String,
        reference: ManifestRef,
    },
    /// `/v2/<name>/blobs/<digest>`
    Blob { name: String, digest: Digest },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart { name: String },
    /// `/v2/<name>/blobs/uploads/<id>`; the id is kept as text because an unknown or malformed
    /// id is the same failure (`BLOB_UPLOAD_UNKNOWN`) and the store decides.
    Upload { name: String, id: String },
    /// `/v2/<name>/referrers/<digest>`
    Referrers { name: String, digest: Digest },
    /// `/admin/gc`: run a collection (POST) or read its statistics (GET).
    AdminGc,
    /// `/admin/verify`: run a scrub (POST).
    AdminVerify,
    /// `/token`: the docker token endpoint (GET with Basic or anonymous, POST OAuth2 grants).
    Token,
    /// `/token/jwks.json`: the public keys tokens are signed with.
    TokenKeys,
    /// `/api/v1/<path>`: users, projects, members, robots, immutable rules and the audit log.
    Manage { path: String },
}

impl Route {
    /// Parses a request path (without the query). `Ok(None)` is a path the registry does not
    /// serve (404); `Err` is a served path with a malformed name or digest.
    pub fn parse(path: &str) -> ApiResult<Option<Route>> {
        match path {
            "/v2" | "/v2/" => return Ok(Some(Route::Base)),
            "/v2/_catalog" => return Ok(Some(Route::Catalog)),
            "/healthz" => return Ok(Some(Route::Health)),
            "/metrics" => return Ok(Some(Route::Metrics)),
            "/admin/gc" => return Ok(Some(Route::AdminGc)),
            "/admin/verify" => return Ok(Some(Route::AdminVerify)),
            "/token" => return Ok(Some(Route::Token)),
            "/token/jwks.json" => return Ok(Some(Route::TokenKeys)),
            _ => {}
        }
        if let Some(rest) = path.strip_prefix("/api/v1/") {
            return Ok(Some(Route::Manage {
                path: rest.trim_end_matches('/').to_owned(),
            }));
        }
        let Some(rest) = path.strip_prefix("/v2/") else {
            return Ok(None);
        };
        let segments: Vec<&str> = rest.split('/').collect();
        // Trailing patterns, longest first; the name is everything before them (and no name is
        // no route).
        if let [head @ .., "blobs", "uploads", id] = segments.as_slice() {
            if head.is_empty() {
                return Ok(None);
            }
            let name = name_of(head)?;
            return Ok(Some(if id.is_empty() {
                Route::UploadStart { name }
            } else {
                Route::Upload {
                    name,
                    id: (*id).to_owned(),
                }
            }));
        }
        if let [head @ .., "blobs", "uploads"] = segments.as_slice() {
            if head.is_empty() {
                return Ok(None);
            }
            let name = name_of(head)?;
            return Ok(Some(Route::UploadStart { name }));
        }
        let [head @ .., kind, last] = segments.as_slice() else {
            return Ok(None);
        };
        if head.is_empty() {
            return Ok(None);
        }
        let route = match *kind {
            "tags" if *last == "list" => Route::Tags {
                name: name_of(head)?,
            },
            "manifests" => {
                let name = name_of(head)?;
                Route::Manifest {
                    name,
                    reference: ManifestRef::parse(last).map_err(reference_error)?,
                }
            }
            "blobs" => {
                let name = name_of(head)?;
                Route::Blob {
                    name,
                    digest: parse_digest(last)?,
                }
            }
            "referrers" => {
                let name = name_of(head)?;
                Route::Referrers {
                    name,
                    digest: parse_digest(last)?,
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(route))
    }

    /// Low-cardinality label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Health => "healthz",
            Route::Metrics => "metrics",
            Route::Tags { .. } => "tags",
            Route::Manifest { .. } => "manifest",
            Route::Blob { .. } => "blob",
            Route::UploadStart { .. } => "upload_start",
            Route::Upload { .. } => "upload",
            Route::Referrers { .. } => "referrers",
            Route::AdminGc => "admin_gc",
            Route::AdminVerify => "admin_verify",
            Route::Token => "token",
            Route::TokenKeys => "token_keys",
            Route::Manage { .. } => "manage",
        }
    }
}

/// The repository name of a path whose `%2F` escapes were left in place (see
/// `query::decode_path`): a name is split on real separators only.
fn name_of(segments: &[&str]) -> ApiResult<String> {
    let name = segments.join("/");
    if is_valid_name(&name) {
        Ok(name)
    } else if name.to_ascii_lowercase().contains("%2f") {
        Err(ApiError::from(NameError::InvalidName)
            .with_detail(format!("{name:?}: an encoded '/' is not a name separator")))
    } else {
        Err(ApiError::from(NameError::InvalidName).with_detail(format!("{name:?}")))
    }
}

/// A bad tag in a manifest path is `MANIFEST_INVALID` for a PUT and `MANIFEST_UNKNOWN` would
/// suit a GET, but the path is parsed before the method is looked at; distribution answers
/// 400 for both, as we do.
fn reference_error(err: NameError) -> ApiError {
    match err {
        NameError::InvalidTag => ApiError::bad_request(ErrorCode::ManifestInvalid, "invalid tag"),
        other => ApiError::from(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> String {
        format!("sha256:{}", "0".repeat(64))
    }

    #[test]
    fn fixed_paths() {
        assert_eq!(Route::parse("/v2/").unwrap(), Some(Route::Base));
        assert_eq!(Route::parse("/v2").unwrap(), Some(Route::Base));
        assert_eq!(Route::parse("/v2/_catalog").unwrap(), Some(Route::Catalog));
        assert_eq!(Route::parse("/healthz").unwrap(), Some(Route::Health));
        assert_eq!(Route::parse("/admin/gc").unwrap(), Some(Route::AdminGc));
        assert_eq!(
            Route::parse("/admin/verify").unwrap(),
            Some(Route::AdminVerify)
        );
        assert_eq!(Route::parse("/admin/").unwrap(), None);
        assert_eq!(Route::parse("/v2/admin/gc").unwrap(), None);
        assert_eq!(Route::parse("/nope").unwrap(), None);
        assert_eq!(Route::parse("/v2/a").unwrap(), None);
        assert_eq!(Route::parse("/v2/a/b/c").unwrap(), None);
    }

    #[test]
    fn names_may_contain_slashes_and_reserved_words() {
        let r = Route::parse("/v2/a/blobs/b/tags/list").unwrap();
        assert_eq!(
            r,
            Some(Route::Tags {
                name: "a/blobs/b".into()
            })
        );
        let r = Route::parse("/v2/x/manifests/y/manifests/latest").unwrap();
        assert_eq!(
            r,
            Some(Route::Manifest {
                name: "x/manifests/y".into(),
                reference: ManifestRef::Tag("latest".into())
            })
        );
    }

    #[test]
    fn uploads() {
        assert_eq!(
            Route::parse("/v2/lib/app/blobs/uploads/").unwrap(),
            Some(Route::UploadStart {
                name: "lib/app".into()
            })
        );
        assert_eq!(
            Route::parse("/v2/lib/app/blobs/uploads").unwrap(),
            Some(Route::UploadStart {
                name: "lib/app".into()
            })
        );
        assert_eq!(
            Route::parse("/v2/app/blobs/uploads/abc").unwrap(),
            Some(Route::Upload {
                name: "app".into(),
                id: "abc".into()
            })
        );
    }

    #[test]
    fn malformed_parts_are_errors() {
        let e = Route::parse("/v2/Bad/tags/list").unwrap_err();
        assert_eq!(e.code, ErrorCode::NameInvalid);
        let e = Route::parse("/v2/a/blobs/sha256:zz").unwrap_err();
        assert_eq!(e.code, ErrorCode::DigestInvalid);
        let e = Route::parse("/v2/a/manifests/-x").unwrap_err();
        assert_eq!(e.code, ErrorCode::ManifestInvalid);
        assert!(Route::parse(&format!("/v2/a/blobs/{}", digest())).is_ok());
        let e = Route::parse(&format!("/v2//blobs/{}", digest())).unwrap_err();
        assert_eq!(e.code, ErrorCode::NameInvalid);
    }
}
