//! The distribution API: one `Registry` value answers every request by parsing it into a
//! `Route`, calling the store off the async threads, and shaping the OCI response.
//!
//! Layout: `route` (path → `Route`), `query`, `error` (the only storage → OCI mapping),
//! `reply` (response builder), `body` (zero-copy response body), `stream` (request bodies read
//! frame by frame), `held` (the budget of body bytes all requests hold together), `room`
//! (refusals decided from headers, before the body is touched), `appender` (pipelined session
//! appends), `mirrored` (reads under a mirror: `?ns=` names and the pull-through cache's
//! answers), and one handler module per area:
//! `blobs`, `uploads`, `manifests`, `listing` (tags and catalog), `referrers`, `admin`
//! (garbage collection and scrubs on request, outside `/v2/`).

pub mod admin;
mod appender;
mod blobs;
pub mod body;
pub mod enforce;
pub mod error;
pub mod guard;
mod held;
mod listing;
pub mod manage;
mod manifests;
mod mirrored;
pub mod query;
mod referrers;
mod reply;
mod room;
pub mod route;
mod stream;
mod token;
mod uploads;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::auth::access::{AccessControl, Caller};
use crate::maintenance::Maintenance;
use crate::metrics::Metrics;
use crate::mirror::Mirrors;
use crate::storage::{GcOptions, StorageError, Store};
pub use admin::AdminAccess;
pub use blobs::parse_range;
pub use body::ResponseBody;
pub use error::{ApiError, ApiResult, ErrorCode};
use query::Query;
use reply::Reply;
use route::Route;
pub use uploads::parse_content_range;

/// Largest manifest accepted, as distribution and containers/image agree.
pub const DEFAULT_MAX_MANIFEST_BYTES: usize = 4 << 20;

/// Tunables of the HTTP layer.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_manifest_bytes: usize,
    /// A request body that sends nothing for this long is abandoned; a body that keeps flowing
    /// may take as long as it needs.
    pub body_idle_timeout: Duration,
    /// Request bytes gathered before one store append (bounds memory per upload).
    pub append_batch_bytes: usize,
    /// Bodies up to this size with `?digest=` are buffered and stored in one call.
    pub monolithic_buffer_bytes: usize,
    /// Request body bytes all requests together may hold in memory while they wait for the
    /// rest of their bodies (see `held`). The process pays up to about twice that: hyper's
    /// read buffers around the frames, and the allocator's slack as holders come and go.
    pub max_body_buffer_bytes: usize,
    /// Page size of `/v2/_catalog` when the client gives no `n`, and the largest `n` honoured.
    pub max_page: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_manifest_bytes: DEFAULT_MAX_MANIFEST_BYTES,
            body_idle_timeout: Duration::from_secs(120),
            append_batch_bytes: 1 << 20,
            monolithic_buffer_bytes: 1 << 20,
            max_body_buffer_bytes: 32 << 20,
            max_page: 10_000,
        }
    }
}

impl Limits {
    /// Largest chunk without `Content-Length` held in memory until its length can be checked
    /// against its `Content-Range`: the same bound as a buffered monolithic push.
    pub fn checked_chunk_bytes(&self) -> u64 {
        self.monolithic_buffer_bytes.max(self.append_batch_bytes) as u64
    }

    /// The body budget in force: never less than one request may have to hold alone (the
    /// largest manifest, a checked chunk), or such a request could never be served.
    pub fn body_buffer_bytes(&self) -> usize {
        self.max_body_buffer_bytes
            .max(self.max_manifest_bytes)
            .max(self.checked_chunk_bytes() as usize)
    }
}

/// What the registry lets clients do beyond reading and pushing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Whether manifests, tags and blobs may be deleted; when not, every such DELETE is 405
    /// `UNSUPPORTED`, as CNCF distribution answers with deletes disabled. Cancelling an
    /// upload session stays allowed.
    pub deletes: bool,
    /// Who may use `/admin/…`.
    pub admin: AdminAccess,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            deletes: true,
            admin: AdminAccess::Loopback,
        }
    }
}

/// The peer address of the connection a request came on, put into the request's extensions
/// by the server loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// The registry service; cheap to clone (one per connection).
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    metrics: Arc<Metrics>,
    limits: Limits,
    policy: Policy,
    maintenance: Maintenance,
    /// `None`: auth mode `none`, everyone may do everything.
    access: Option<Arc<AccessControl>>,
    /// `https` when the server terminates TLS (the default scheme of the token realm).
    scheme: &'static str,
    /// Upstreams served under `<ns>/` (empty: no mirroring).
    mirrors: Arc<Mirrors>,
    /// Request body bytes held by all requests together.
    bodies: Arc<held::BodyBudget>,
}

impl Registry {
    /// A registry with the default policy and collection settings.
    pub fn new(store: Store, metrics: Arc<Metrics>, limits: Limits) -> Registry {
        let maintenance = Maintenance::new(store.clone(), GcOptions::default(), None);
        Registry::assemble(store, metrics, limits, Policy::default(), maintenance)
    }

    /// A registry whose admin endpoint runs jobs through `maintenance` (shared with the
    /// scheduler, so one job runs at a time).
    pub fn assemble(
        store: Store,
        metrics: Arc<Metrics>,
        limits: Limits,
        policy: Policy,
        maintenance: Maintenance,
    ) -> Registry {
        let bodies = Arc::new(held::BodyBudget::new(limits.body_buffer_bytes()));
        Registry {
            inner: Arc::new(Inner {
                store,
                metrics,
                bodies,
                limits,
                policy,
                maintenance,
                access: None,
                scheme: "http",
                mirrors: Arc::default(),
            }),
        }
    }

    /// This registry with access control in front of every route; `tls` when the server
    /// terminates TLS itself.
    pub fn with_access(self, access: Option<Arc<AccessControl>>, tls: bool) -> Registry {
        let inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| panic!("with_access is called while the registry is being built"));
        Registry {
            inner: Arc::new(Inner {
                access,
                scheme: if tls { "https" } else { "http" },
                ..inner
            }),
        }
    }

    /// This registry serving `mirrors` (reads with `?ns=`, and pull-through of their upstreams).
    pub fn with_mirrors(self, mirrors: Arc<Mirrors>) -> Registry {
        let inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| panic!("with_mirrors is called while the registry is being built"));
        Registry {
            inner: Arc::new(Inner { mirrors, ..inner }),
        }
    }

    pub fn mirrors(&self) -> &Arc<Mirrors> {
        &self.inner.mirrors
    }

    pub fn access(&self) -> Option<&Arc<AccessControl>> {
        self.inner.access.as_ref()
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    pub(crate) fn bodies(&self) -> &Arc<held::BodyBudget> {
        &self.inner.bodies
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    pub fn maintenance(&self) -> &Maintenance {
        &self.inner.maintenance
    }

    /// Runs a blocking store call without stalling the async worker threads.
    pub(crate) async fn blocking<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StorageError> + Send + 'static,
    {
        let store = self.inner.store.clone();
        if tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread
        {
            Ok(tokio::task::block_in_place(|| f(&store))?)
        } else {
            Ok(tokio::task::spawn_blocking(move || f(&store)).await??)
        }
    }

    /// Runs a store read of microseconds (index lookups, a manifest from the segment maps) on
    /// the async thread itself: handing the thread's other work to a new one around it, as
    /// [`Registry::blocking`] does, costs a thread wake-up, more than the read. Blob bodies are
    /// read from the same maps on these threads already. While a collection runs, a read may
    /// wait in the touch gate for a sweep's commit, so it goes through `blocking` then.
    pub(crate) async fn read<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StorageError> + Send + 'static,
    {
        if self.inner.store.collecting() {
            return self.blocking(f).await;
        }
        Ok(f(&self.inner.store)?)
    }

    /// Answers one request; never fails and never panics on client input.
    pub async fn handle(&self, mut req: Request<Incoming>) -> Response<ResponseBody> {
        let started = Instant::now();
        let bytes_in = stream::BytesIn::default();
        req.extensions_mut().insert(bytes_in.clone());
        let method = req.method().clone();
        let path = query::decode_path(req.uri().path());
        let parsed = match Route::parse(&path) {
            Ok(Some(route)) => mirrored::route(self, route, &req).await.map(Some),
            other => other,
        };
        let (kind, result) = match parsed {
            Ok(Some(route)) => {
                let kind = route.kind();
                let result = match self.authorize(&route, &req) {
                    Ok(caller) => self.dispatch(route, req, caller).await,
                    Err(e) => Err(e),
                };
                (kind, result)
            }
            Ok(None) => ("unknown", Err(ApiError::not_found(ErrorCode::Unsupported))),
            Err(e) => ("invalid", Err(e)),
        };
        let reply = result.unwrap_or_else(Reply::error);
        self.answer(kind, &method, &path, reply, started, bytes_in)
    }

    /// Refuses a request before it is routed (the connection layer's checks), with the same
    /// error body, headers, metrics and access log line as any other refusal.
    pub fn refuse(&self, req: &Request<Incoming>, err: ApiError) -> Response<ResponseBody> {
        let path = query::decode_path(req.uri().path());
        let reply = Reply::error(err);
        let bytes_in = stream::BytesIn::default();
        self.answer(
            "invalid",
            req.method(),
            &path,
            reply,
            Instant::now(),
            bytes_in,
        )
    }

    fn answer(
        &self,
        kind: &'static str,
        method: &Method,
        path: &str,
        reply: Reply,
        started: Instant,
        bytes_in: stream::BytesIn,
    ) -> Response<ResponseBody> {
        let response = reply.into_response(method);
        let status = response.status();
        let bytes_out = http_body::Body::size_hint(response.body())
            .exact()
            .unwrap_or(0);
        let elapsed = started.elapsed();
        self.inner
            .metrics
            .record(kind, status.as_u16(), bytes_out, elapsed);
        tracing::info!(
            target: "berth::access",
            method = %method,
            path = %path,
            status = status.as_u16(),
            bytes_in = bytes_in.0.load(std::sync::atomic::Ordering::Relaxed),
            bytes_out,
            duration_ms = elapsed.as_micros() as f64 / 1000.0,
            "request"
        );
        response
    }

    /// Who is asking and whether they may: `Ok(None)` in auth mode `none`.
    fn authorize(&self, route: &Route, req: &Request<Incoming>) -> ApiResult<Option<Caller>> {
        let Some(access) = &self.inner.access else {
            return Ok(None);
        };
        let client = peer_ip(req);
        let need = guard::need(route, req.method());
        if need == guard::Need::Open {
            // `/healthz` never looks at credentials; `/token` checks its own.
            return Ok(Some(Caller::anonymous(client)));
        }
        let caller = guard::caller(access, req.headers(), client, self.inner.scheme)?;
        guard::check(access, &caller, need, req.headers(), self.inner.scheme)?;
        Ok(Some(caller))
    }

    async fn dispatch(
        &self,
        route: Route,
        req: Request<Incoming>,
        caller: Option<Caller>,
    ) -> ApiResult<Reply> {
        let query = Query::parse(req.uri().query());
        let method = req.method().clone();
        if method == Method::DELETE
            && matches!(route, Route::Manifest { .. } | Route::Blob { .. })
            && !self.inner.policy.deletes
        {
            return Err(
                ApiError::new(StatusCode::METHOD_NOT_ALLOWED, ErrorCode::Unsupported)
                    .with_detail("deletes are disabled on this registry"),
            );
        }
        match (route, method) {
            (Route::Base, Method::GET | Method::HEAD) => {
                Ok(Reply::new(StatusCode::OK).json(b"{}".to_vec()))
            }
            (Route::Health, Method::GET | Method::HEAD) => Ok(Reply::new(StatusCode::OK)
                .header(http::header::CONTENT_TYPE, "text/plain")
                .body(b"ok\n".to_vec())),
            (Route::Metrics, Method::GET) => {
                let mut text = self.inner.metrics.render(&self.inner.store);
                text.push_str(&self.inner.bodies.metrics());
                if let Some(access) = &self.inner.access {
                    text.push_str(&access.metrics());
                }
                if !self.inner.mirrors.is_empty() {
                    text.push_str(&self.inner.mirrors.metrics());
                }
                Ok(Reply::new(StatusCode::OK)
                    .header(
                        http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )
                    .body(text.into_bytes()))
            }
            (Route::Catalog, Method::GET) => listing::catalog(self, &query, caller.as_ref()).await,
            (Route::Tags { name }, Method::GET) => listing::tags(self, name, &query).await,
            (Route::Manifest { name, reference }, Method::GET) => {
                manifests::get(self, name, reference, false, caller.as_ref()).await
            }
            (Route::Manifest { name, reference }, Method::HEAD) => {
                manifests::get(self, name, reference, true, caller.as_ref()).await
            }
            (Route::Manifest { name, reference }, Method::PUT) => {
                manifests::put(self, name, reference, &query, req, caller.as_ref()).await
            }
            (Route::Manifest { name, reference }, Method::DELETE) => {
                manifests::delete(self, name, reference, caller.as_ref()).await
            }
            (Route::Blob { name, digest }, Method::GET) => {
                blobs::get(self, name, digest, req.headers(), false).await
            }
            (Route::Blob { name, digest }, Method::HEAD) => {
                blobs::get(self, name, digest, req.headers(), true).await
            }
            (Route::Blob { name, digest }, Method::DELETE) => {
                blobs::delete(self, name, digest, caller.as_ref()).await
            }
            (Route::UploadStart { name }, Method::POST) => {
                uploads::start(self, name, &query, req, caller.as_ref()).await
            }
            (Route::Upload { name, id }, Method::GET) => uploads::status(self, name, id).await,
            (Route::Upload { name, id }, Method::PATCH) => {
                uploads::patch(self, name, id, req).await
            }
            (Route::Upload { name, id }, Method::PUT) => {
                uploads::finish(self, name, id, &query, req, caller.as_ref()).await
            }
            (Route::Upload { name, id }, Method::DELETE) => uploads::cancel(self, name, id).await,
            (Route::Referrers { name, digest }, Method::GET) => {
                referrers::list(self, name, digest, &query).await
            }
            (route @ (Route::AdminGc | Route::AdminVerify), _) => {
                admin::handle(self, route, &query, req).await
            }
            (Route::Token, _) => match &self.inner.access {
                Some(access) => {
                    let client = peer_ip(&req);
                    token::handle(self, access, &query, req, client, self.inner.scheme).await
                }
                None => Err(ApiError::not_found(ErrorCode::Unsupported)
                    .with_detail("access control is off (auth mode none)")),
            },
            (Route::TokenKeys, Method::GET) => match &self.inner.access {
                Some(access) => token::keys(access),
                None => Err(ApiError::not_found(ErrorCode::Unsupported)),
            },
            (Route::Manage { path }, _) => match &self.inner.access {
                Some(access) => manage::handle(self, access, &path, &query, req, caller).await,
                None => Err(ApiError::not_found(ErrorCode::Unsupported)
                    .with_detail("access control is off (auth mode none)")),
            },
            (_, _) => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::Unsupported,
            )),
        }
    }
}

/// The client's address (unspecified when the server loop did not say, as in unit tests).
fn peer_ip(req: &Request<Incoming>) -> std::net::IpAddr {
    req.extensions()
        .get::<Peer>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |p| p.0.ip())
}
