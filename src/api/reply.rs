//! A response under construction, and the headers every response carries.

use std::fmt::Display;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};

use crate::api::body::ResponseBody;
use crate::api::error::ApiError;

pub const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
pub const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
pub const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
pub const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
pub const OCI_TAG: HeaderName = HeaderName::from_static("oci-tag");
pub const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");
pub const OCI_CHUNK_MIN_LENGTH: HeaderName = HeaderName::from_static("oci-chunk-min-length");

pub struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: ResponseBody,
}

impl Reply {
    pub fn new(status: StatusCode) -> Reply {
        Reply {
            status,
            headers: HeaderMap::new(),
            body: ResponseBody::empty(),
        }
    }

    /// Sets a header. Values come from validated names, digests and numbers; one that still is
    /// not a legal header value is dropped rather than sent mangled.
    pub fn header(mut self, name: HeaderName, value: impl Display) -> Reply {
        // From the formatted `String` itself: no second copy.
        match HeaderValue::try_from(value.to_string()) {
            Ok(v) => {
                self.headers.insert(name, v);
            }
            Err(_) => tracing::warn!(header = %name, "dropped an illegal header value"),
        }
        self
    }

    pub fn status(mut self, status: StatusCode) -> Reply {
        self.status = status;
        self
    }

    pub fn location(self, path: impl Display) -> Reply {
        self.header(LOCATION, path)
    }

    pub fn body(mut self, body: impl Into<ResponseBody>) -> Reply {
        self.body = body.into();
        self
    }

    pub fn json(self, body: Vec<u8>) -> Reply {
        self.header(CONTENT_TYPE, "application/json").body(body)
    }

    /// Sets `Content-Length` explicitly, for HEAD replies that describe a body they do not send.
    pub fn content_length(self, len: u64) -> Reply {
        self.header(CONTENT_LENGTH, len)
    }

    pub fn error(err: ApiError) -> Reply {
        let body = err.body();
        let mut reply = Reply::new(err.status).json(body);
        for (name, value) in err.headers {
            reply.headers.insert(name, value);
        }
        reply
    }

    pub fn into_response(self, method: &Method) -> Response<ResponseBody> {
        let Reply {
            status,
            mut headers,
            body,
        } = self;
        headers.insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
        let bodiless = status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
        if bodiless {
            headers.remove(CONTENT_LENGTH);
        } else if !headers.contains_key(CONTENT_LENGTH) {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let body = if method == Method::HEAD || bodiless {
            ResponseBody::empty()
        } else {
            body
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }
}
