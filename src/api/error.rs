//! The one error type of the HTTP layer, and the only place where storage failures become OCI
//! error codes and HTTP statuses.

use http::header::RETRY_AFTER;
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::json;

use crate::oci::manifest::ManifestError;
use crate::oci::name::NameError;
use crate::storage::StorageError;

/// Error codes of the OCI distribution spec (plus `UNKNOWN` for server faults, as distribution
/// does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    Unknown,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::Unknown => "UNKNOWN",
        }
    }

    /// The spec's message for the code.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "blob unknown to registry",
            ErrorCode::BlobUploadInvalid => "blob upload invalid",
            ErrorCode::BlobUploadUnknown => "blob upload unknown to registry",
            ErrorCode::DigestInvalid => "provided digest did not match uploaded content",
            ErrorCode::ManifestBlobUnknown => {
                "manifest references a manifest or blob unknown to registry"
            }
            ErrorCode::ManifestInvalid => "manifest invalid",
            ErrorCode::ManifestUnknown => "manifest unknown to registry",
            ErrorCode::NameInvalid => "invalid repository name",
            ErrorCode::NameUnknown => "repository name not known to registry",
            ErrorCode::SizeInvalid => "provided length did not match content length",
            ErrorCode::Unauthorized => "authentication required",
            ErrorCode::Denied => "requested access to the resource is denied",
            ErrorCode::Unsupported => "the operation is unsupported",
            ErrorCode::TooManyRequests => "too many requests",
            ErrorCode::Unknown => "unknown error",
        }
    }
}

/// A failed request: status, OCI code, an optional detail, and headers the client needs to
/// recover (e.g. `Range` and `Location` on an out-of-order chunk).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub detail: Option<String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode) -> ApiError {
        ApiError {
            status,
            code,
            detail: None,
            headers: Vec::new(),
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> ApiError {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }

    pub fn bad_request(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code).with_detail(detail)
    }

    pub fn not_found(code: ErrorCode) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code)
    }

    /// A server fault: logged here once, reported to the client without internals.
    pub fn internal(what: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %what, "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unknown)
    }

    /// The `{"errors":[…]}` body of the spec.
    pub fn body(&self) -> Vec<u8> {
        let mut entry = json!({ "code": self.code.as_str(), "message": self.code.message() });
        if let (Some(detail), Some(entry)) = (&self.detail, entry.as_object_mut()) {
            entry.insert("detail".into(), json!(detail));
        }
        serde_json::to_vec(&json!({ "errors": [entry] })).unwrap_or_default()
    }
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> ApiError {
        match err {
            StorageError::UploadUnknown => ApiError::not_found(ErrorCode::BlobUploadUnknown),
            StorageError::UploadOffset { expected } => ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorCode::BlobUploadInvalid,
            )
            .with_detail(format!("chunk must start at offset {expected}")),
            StorageError::DigestMismatch { expected, actual } => ApiError::bad_request(
                ErrorCode::DigestInvalid,
                format!("expected {expected}, content is {actual}"),
            ),
            StorageError::BlobUnknown(d) => {
                ApiError::not_found(ErrorCode::BlobUnknown).with_detail(d.to_string())
            }
            StorageError::ManifestBlobUnknown(d) => {
                ApiError::bad_request(ErrorCode::ManifestBlobUnknown, d.to_string())
            }
            StorageError::ManifestUnknown => ApiError::not_found(ErrorCode::ManifestUnknown),
            StorageError::TooManyUploads => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::TooManyRequests)
                    .with_detail("too many upload sessions open")
            }
            StorageError::UploadMemory => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::TooManyRequests)
                    .with_detail("upload buffers full; retry shortly")
                    .with_header(RETRY_AFTER, HeaderValue::from_static("1"))
            }
            StorageError::DiskFull => {
                tracing::error!("data disk is full");
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, ErrorCode::Unknown)
                    .with_detail("insufficient storage")
            }
            StorageError::Closed => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unknown)
                    .with_detail("registry is shutting down")
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<NameError> for ApiError {
    fn from(err: NameError) -> ApiError {
        match err {
            NameError::InvalidName => {
                ApiError::bad_request(ErrorCode::NameInvalid, err.to_string())
            }
            NameError::InvalidTag => {
                ApiError::bad_request(ErrorCode::ManifestInvalid, err.to_string())
            }
            NameError::InvalidDigest => {
                ApiError::bad_request(ErrorCode::DigestInvalid, err.to_string())
            }
            // The spec answers an unsupported algorithm like an invalid digest (400), and
            // distribution sends DIGEST_INVALID for both; clients key on that code.
            NameError::UnsupportedDigest(_) => {
                ApiError::bad_request(ErrorCode::DigestInvalid, err.to_string())
            }
        }
    }
}

impl From<ManifestError> for ApiError {
    fn from(err: ManifestError) -> ApiError {
        ApiError::bad_request(ErrorCode::ManifestInvalid, err.to_string())
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(err: tokio::task::JoinError) -> ApiError {
        ApiError::internal(err)
    }
}
