//! The server loop: accepts connections on a bound listener (plain or rustls TLS with ALPN
//! h2/http1.1), serves each with hyper, and shuts down gracefully when told to.
//!
//! Timeouts: request heads must arrive within the header-read timeout; a connection with no
//! request in flight and no bytes moving for the idle timeout is closed; a request body is
//! never capped in duration, only in silence (see `api::stream`). HTTP/2 has no head-read
//! timer in hyper, and pings or window updates keep its bytes moving without a request: an
//! HTTP/2 connection must open its first stream within the header-read timeout, and with no
//! stream open (response bodies included) it is closed after the idle timeout, bytes or not.
//!
//! Open connections are capped (`admission`); HTTP/2 streams per connection are capped and
//! their flow-control windows fixed, so one connection can make the server buffer at most
//! `max_streams` times the request body credit of `api::appender`; bodies held whole, on
//! every connection together, share one budget (`api::held`).
//!
//! Each request carries its connection's peer address (for the admin endpoint's access rule).
//! Beside the connections runs the maintenance schedule (collections and scrubs, see
//! `maintenance::schedule`); abandoned upload sessions are reclaimed by the store itself.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::api::{ApiError, ErrorCode, Peer, Registry};
use crate::auth::access::AccessControl;
use crate::config::AuthMode;
use crate::config::{Config, ServerSettings};
use crate::maintenance::schedule::{self, Schedule};
use crate::maintenance::Maintenance;
use crate::metrics::Metrics;
use crate::mirror::Mirrors;
use crate::storage::{StorageError, Store};

mod activity;
mod admission;
mod notify;
mod requests;
pub mod tls;

use activity::{Activity, Clock};
use admission::Admission;
use requests::{Requests, Tracked};

/// HTTP/2 flow-control windows: how much request body a client may send ahead of what the
/// server has read, per stream and per connection. Fixed (not adaptive, which grows them up
/// to many MiB) so that memory per connection stays bounded; 1 MiB per stream still fills a
/// gigabit link at a few milliseconds of round trip.
const H2_STREAM_WINDOW: u32 = 1 << 20;
const H2_CONNECTION_WINDOW: u32 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("access control: {0}")]
    Auth(String),
    #[error("mirror: {0}")]
    Mirror(String),
    #[error("--listen {listen:?}: {source} (give an address such as 127.0.0.1:5000 or [::]:5000)")]
    Listen {
        listen: String,
        source: std::io::Error,
    },
    #[error("task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Opens the store named by `config`, serves `listener` until `shutdown` resolves, lets
/// in-flight requests finish within the grace period, then closes the store.
pub async fn run<F>(listener: TcpListener, shutdown: F, config: Config) -> Result<(), ServerError>
where
    F: Future<Output = ()>,
{
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let cert_expiry = config.tls.as_ref().and_then(tls::watch_expiry);
    let mirrors = Arc::new(Mirrors::new(&config.mirrors).map_err(ServerError::Mirror)?);
    let (data, options) = (config.data.clone(), config.store.clone());
    // Store::open creates the directory itself, syncing each new name into its parent.
    let store =
        tokio::task::spawn_blocking(move || Store::open(&data, options).map_err(ServerError::from))
            .await??;
    let maintenance = Maintenance::new(store.clone(), config.gc.options.clone(), config.scrub.rate);
    let access = open_access(&config).await?;
    let registry = Registry::assemble(
        store.clone(),
        Arc::new(Metrics::new()),
        config.limits.clone(),
        config.policy,
        maintenance.clone(),
    )
    .with_access(access.clone(), tls.is_some())
    .with_mirrors(mirrors);
    let robots = access.map(|a| tokio::spawn(warn_of_expiring_robots(a)));
    let evictor = config.mirrors.cache_size.map(|limit| {
        tokio::spawn(crate::mirror::evict::keep_under(
            registry.mirrors().clone(),
            maintenance.clone(),
            limit,
            config.mirrors.check_every,
        ))
    });
    let scheduled = tokio::spawn(schedule::run(
        maintenance.clone(),
        Schedule {
            gc_every: config.gc.interval,
            scrub_every: config.scrub.interval,
        },
    ));
    // Said only now: the store is open and locked, TLS and access control are loaded, and
    // connections waiting in the listener's backlog are about to be answered.
    tracing::info!(
        listen = %listener.local_addr()?,
        data = %config.data.display(),
        tls = tls.is_some(),
        "berth serving"
    );
    notify::ready();
    serve(listener, shutdown, registry, &config.server, tls).await;
    scheduled.abort();
    for task in [robots, evictor, cert_expiry].into_iter().flatten() {
        task.abort();
    }
    if let Some(job) = maintenance.running() {
        // Closing makes the job's next store call fail, which ends it.
        tracing::warn!(
            job = job.as_str(),
            "closing the store while a {job} runs; it stops"
        );
    }
    tokio::task::spawn_blocking(move || store.close()).await??;
    tracing::info!("store closed");
    Ok(())
}

/// Access control for auth modes `basic` and `token` (`None` for `none`). On the first start
/// the system admin is created; a generated password is shown here, once.
async fn open_access(config: &Config) -> Result<Option<Arc<AccessControl>>, ServerError> {
    if config.auth.mode == AuthMode::None {
        return Ok(None);
    }
    let (data, settings) = (config.data.clone(), config.auth.clone());
    let (access, first_password) =
        tokio::task::spawn_blocking(move || AccessControl::open(&data, &settings))
            .await?
            .map_err(|e| ServerError::Auth(e.to_string()))?;
    if let Some(password) = first_password {
        // Straight to the terminal, never through the log.
        eprintln!(
            "berth: created the system administrator \"admin\" with password: {password}\n\
             berth: it is shown only now; change it with `berth user passwd admin`"
        );
    }
    tracing::info!(mode = ?config.auth.mode, service = %config.auth.service, "access control on");
    Ok(Some(Arc::new(access)))
}

/// Robots that expire silently break CI: say so in the log a few days ahead, once a day.
async fn warn_of_expiring_robots(access: Arc<AccessControl>) {
    let mut tick = tokio::time::interval(Duration::from_secs(86_400));
    loop {
        tick.tick().await;
        for (name, expires_ms) in access.db().expiring_within(ROBOT_WARNING_DAYS) {
            tracing::warn!(robot = %name, expires_at_ms = expires_ms, "robot account expires soon");
        }
    }
}

/// How many days before a robot account expires the log starts saying so.
const ROBOT_WARNING_DAYS: u64 = 7;

/// Serves connections until `shutdown` resolves, then stops accepting and waits up to the
/// grace period for open connections to finish their requests.
pub async fn serve<F>(
    listener: TcpListener,
    shutdown: F,
    registry: Registry,
    settings: &ServerSettings,
    tls: Option<TlsAcceptor>,
) where
    F: Future<Output = ()>,
{
    let (closing_tx, closing_rx) = watch::channel(false);
    let admission = Admission::new(settings.max_connections);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    let Some(slot) = admission.admit() else {
                        tracing::debug!(%peer, "connection refused: too many open");
                        admission.refuse(tcp, tls.is_some());
                        continue;
                    };
                    let (registry, settings) = (registry.clone(), settings.clone());
                    let (tls, closing) = (tls.clone(), closing_rx.clone());
                    connections.spawn(async move {
                        let _slot = slot;
                        match tls {
                            None => connection(tcp, peer, registry, settings, closing, false).await,
                            Some(acceptor) => {
                                let handshake = acceptor.accept(tcp);
                                match tokio::time::timeout(settings.header_read_timeout, handshake).await {
                                    Ok(Ok(stream)) => {
                                        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                                        connection(stream, peer, registry, settings, closing, h2).await
                                    }
                                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                                }
                            }
                        }
                    });
                }
                Err(e) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    tracing::info!(
        open = connections.len(),
        "shutting down: no longer accepting"
    );
    notify::stopping();
    let _ = closing_tx.send(true);
    let drained = tokio::time::timeout(settings.grace_period, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "grace period over: dropping remaining connections"
        );
        connections.shutdown().await;
    }
}

/// Serves one connection over HTTP/1.1, or HTTP/2 when ALPN chose it.
async fn connection<IO>(
    io: IO,
    peer: SocketAddr,
    registry: Registry,
    settings: ServerSettings,
    mut closing: watch::Receiver<bool>,
    h2: bool,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let clock = Clock::new();
    let requests = Requests::default();
    let io = TokioIo::new(Activity::new(io, clock.clone()));
    let counter = requests.clone();
    let max_head = settings.max_header_bytes;
    let service = service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(Peer(peer));
        let registry = registry.clone();
        let (guard, open) = counter.start();
        async move {
            let response = if head_size(&req) > max_head {
                let err = ApiError::new(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    ErrorCode::Unknown,
                )
                .with_detail(format!("request head larger than {max_head} bytes"));
                registry.refuse(&req, err)
            } else {
                registry.handle(req).await
            };
            drop(guard);
            Ok::<_, Infallible>(response.map(|body| Tracked::new(body, open)))
        }
    });
    let idle = settings.idle_timeout;
    let first_request = settings.header_read_timeout;
    let watchdog = async {
        loop {
            let quiet = clock.quiet_for();
            if quiet >= idle && requests.handling() == 0 {
                return;
            }
            let mut wait = idle.saturating_sub(quiet);
            if h2 && requests.open() == 0 {
                let limit = if requests.seen() { idle } else { first_request };
                let unused = requests.quiet_for();
                if unused >= limit {
                    return;
                }
                wait = wait.min(limit - unused);
            }
            tokio::time::sleep(wait.max(Duration::from_millis(100))).await;
        }
    };
    tokio::pin!(watchdog);
    if h2 {
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(parser_head_cap(max_head)).unwrap_or(u32::MAX))
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .max_concurrent_streams(settings.max_streams);
        // No keep-alive pings: their answers would keep a stalled download's bytes moving,
        // hiding it from the watchdog (a dead peer is found by its silence instead).
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        drive(conn.as_mut(), &mut closing, watchdog, |c| {
            c.graceful_shutdown()
        })
        .await;
    } else {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_read_timeout)
            .max_header_size(parser_head_cap(max_head))
            .keep_alive(true);
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        drive(conn.as_mut(), &mut closing, watchdog, |c| {
            c.graceful_shutdown()
        })
        .await;
    }
}

/// What hyper itself accepts. Its own refusals (a bare 431 or 400) carry none of the
/// registry's headers, so it is given room above the configured limit and the limit is
/// enforced in the service, where the refusal is a proper registry error; only heads past
/// this larger cap, or ones that do not parse, still get hyper's bare answer.
fn parser_head_cap(max_head: usize) -> usize {
    max_head.saturating_mul(4).max(64 << 10)
}

/// Size of a request head as it came over HTTP/1.1: request line and header lines.
fn head_size<B>(req: &hyper::Request<B>) -> usize {
    let line = req.method().as_str().len() + req.uri().to_string().len() + 11;
    req.headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .fold(line, usize::saturating_add)
}

/// Polls a connection to completion, asking it to finish gracefully once the server closes
/// and dropping it when the idle watchdog fires.
async fn drive<C, W, G>(
    mut conn: std::pin::Pin<&mut C>,
    closing: &mut watch::Receiver<bool>,
    mut watchdog: std::pin::Pin<&mut W>,
    graceful: G,
) where
    C: Future<Output = Result<(), hyper::Error>>,
    W: Future<Output = ()>,
    G: Fn(std::pin::Pin<&mut C>),
{
    let mut asked = *closing.borrow();
    if asked {
        graceful(conn.as_mut());
    }
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            changed = closing.changed(), if !asked => {
                asked = true;
                if changed.is_ok() {
                    graceful(conn.as_mut());
                }
            }
            () = watchdog.as_mut() => {
                tracing::debug!("closing idle connection");
                return;
            }
        }
    }
}
