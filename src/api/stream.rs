//! Request bodies read frame by frame into bounded batches, so an upload of any size holds at
//! most one batch here (plus what the appender has queued, bounded by its credit, and the
//! records the store's session may hold). A body may take as long as it likes while bytes keep
//! arriving; only silence longer than the idle timeout ends it, or, when the bodies held by
//! all requests fill their shared budget (`held`), silence of a second or more.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Request;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::api::held::{stalled, Hold};
use crate::api::Registry;
use crate::metrics::Metrics;

/// At most this much of a refused request's body is read and dropped before the error goes out
/// (a usual chunk size; the conformance suite sends 1 MiB chunks).
const DISCARD_LIMIT: u64 = 16 << 20;

/// Refuses a request before its body was read: returns `err` to be answered at once, and
/// leaves the body to a background task that reads and drops up to 16 MiB of it. A client that
/// writes its whole body before reading the answer (as Go's does) then finds the error waiting,
/// instead of a broken pipe when hyper closes a connection whose request body was left unread;
/// longer bodies are cut off (the connection closes), as Go's server does past 256 KiB.
///
/// A client that sent `Expect: 100-continue` has sent no body and sends none once it sees a
/// final status, so nothing is read: reading would only make hyper invite the body with
/// `100 Continue`. (hyper sends that only when a body is first polled before the response.)
pub fn refuse(reg: &Registry, req: Request<Incoming>, err: ApiError) -> ApiError {
    if expects_continue(&req) {
        return err;
    }
    let mut reader = BodyReader::new(reg, req, 1);
    tokio::spawn(async move {
        let mut seen = 0u64;
        while seen <= DISCARD_LIMIT {
            match reader.next_data().await {
                Ok(Some(data)) => seen += data.len() as u64,
                _ => break,
            }
        }
    });
    err
}

fn expects_continue(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Request body bytes read so far, kept in the request's extensions for the access log.
#[derive(Clone, Default)]
pub struct BytesIn(pub Arc<AtomicU64>);

pub struct BodyReader {
    body: Incoming,
    metrics: Arc<Metrics>,
    counted: Option<BytesIn>,
    idle: Duration,
    batch: usize,
    /// Frames gathered and not yet handed on: charged to the shared body budget whenever the
    /// reader waits for its client with them in hand.
    pending: Vec<Bytes>,
    pending_len: usize,
    hold: Hold,
    done: bool,
}

impl BodyReader {
    /// `batch` is how many bytes `next_frames` gathers before it hands them on.
    pub fn new(reg: &Registry, req: Request<Incoming>, batch: usize) -> BodyReader {
        let counted = req.extensions().get::<BytesIn>().cloned();
        BodyReader {
            body: req.into_body(),
            metrics: reg.metrics().clone(),
            counted,
            idle: reg.limits().body_idle_timeout,
            batch: batch.max(1),
            pending: Vec::new(),
            pending_len: 0,
            hold: Hold::new(reg.bodies()),
            done: false,
        }
    }

    /// The next frames as they arrived, at least `batch` bytes together (fewer only at the
    /// end), or `None` once the body is exhausted. Nothing is copied: the store keeps the
    /// frames themselves until it has written them.
    pub async fn next_frames(&mut self) -> ApiResult<Option<Vec<Bytes>>> {
        while self.pending_len < self.batch && !self.done {
            match self.next_data().await? {
                Some(data) => self.pend(data),
                None => self.done = true,
            }
        }
        let frames = self.take_pending();
        Ok((!frames.is_empty()).then_some(frames))
    }

    /// Whether the whole body has been read: known without waiting when it declared its
    /// length, or once a read found its end.
    pub fn ended(&self) -> bool {
        self.done || self.body.is_end_stream()
    }

    /// Reads the whole body, refusing it as soon as it grows past `limit`. The frames are
    /// gathered as they come and copied once, into a buffer of exactly the body's length.
    pub async fn read_all(&mut self, limit: usize) -> ApiResult<Option<Bytes>> {
        while let Some(data) = self.next_data().await? {
            if self.pending_len + data.len() > limit {
                self.drop_pending();
                return Ok(None);
            }
            self.pend(data);
        }
        self.done = true;
        Ok(Some(concat(self.take_pending())))
    }

    fn pend(&mut self, data: Bytes) {
        self.pending_len += data.len();
        self.pending.push(data);
    }

    /// Hands the gathered frames on; the budget no longer counts them.
    fn take_pending(&mut self) -> Vec<Bytes> {
        self.pending_len = 0;
        self.hold.release();
        std::mem::take(&mut self.pending)
    }

    fn drop_pending(&mut self) {
        drop(self.take_pending());
    }

    async fn next_data(&mut self) -> ApiResult<Option<Bytes>> {
        loop {
            if self.body.is_end_stream() {
                return Ok(None);
            }
            // A frame hyper already has is taken without waiting, and without the budget.
            let polled =
                std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut self.body).poll_frame(cx)))
                    .await;
            let frame = match polled {
                Poll::Ready(frame) => frame,
                Poll::Pending => self.wait().await?,
            };
            let frame = match frame {
                None => return Ok(None),
                Some(Err(e)) => {
                    return Err(ApiError::bad_request(
                        ErrorCode::BlobUploadInvalid,
                        format!("reading request body: {e}"),
                    ))
                }
                Some(Ok(frame)) => frame,
            };
            if let Ok(data) = frame.into_data() {
                if !data.is_empty() {
                    self.metrics.add_bytes_in(data.len() as u64);
                    if let Some(c) = &self.counted {
                        c.0.fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    self.hold.received(data.len());
                    return Ok(Some(data));
                }
            }
        }
    }

    /// Waits for the client's next frame. What the reader holds meanwhile is charged to the
    /// body budget first; silence past the idle timeout, or being cut off to make room for
    /// others, ends the request and drops what it held.
    async fn wait(&mut self) -> ApiResult<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Err(e) = self.hold.settle(self.pending_len).await {
            self.drop_pending();
            return Err(e);
        }
        let outcome = tokio::select! {
            frame = self.body.frame() => Ok(frame),
            () = tokio::time::sleep(self.idle) => Err(stalled()),
            () = self.hold.cut() => Err(stalled()),
        };
        if outcome.is_err() {
            self.drop_pending();
        }
        outcome
    }
}

/// The frames as one buffer of exactly their length: copied once, or not at all if there is
/// only one.
pub fn concat(mut frames: Vec<Bytes>) -> Bytes {
    if frames.len() <= 1 {
        return frames.pop().unwrap_or_default();
    }
    let mut all = BytesMut::with_capacity(frames.iter().map(Bytes::len).sum());
    for frame in &frames {
        all.extend_from_slice(frame);
    }
    all.freeze()
}
