//! Request bodies read frame by frame into bounded batches, so an upload of any size holds at
//! most one batch here (plus what the appender has queued, bounded by its credit, and the
//! records the store's session may hold). A body may take as long as it likes while bytes keep
//! arriving; only silence longer than the idle timeout ends it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::api::error::{ApiError, ApiResult, ErrorCode};
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
    buf: BytesMut,
    /// The part of the last frame that did not fit into the previous batch.
    carry: Option<Bytes>,
    /// Frames gathered for the next `next_frames` batch.
    pending: Vec<Bytes>,
    pending_len: usize,
    done: bool,
}

impl BodyReader {
    /// `batch` is the size of the batches `next_batch` returns.
    pub fn new(reg: &Registry, req: Request<Incoming>, batch: usize) -> BodyReader {
        let counted = req.extensions().get::<BytesIn>().cloned();
        BodyReader {
            body: req.into_body(),
            metrics: reg.metrics().clone(),
            counted,
            idle: reg.limits().body_idle_timeout,
            batch: batch.max(1),
            buf: BytesMut::new(),
            carry: None,
            pending: Vec::new(),
            pending_len: 0,
            done: false,
        }
    }

    /// The next batch of exactly `batch` bytes (fewer only at the end), or `None` once the
    /// body is exhausted. Batches line up with the store's chunk records, so the store writes
    /// them without re-buffering; a frame that covers a whole batch is passed on uncopied.
    pub async fn next_batch(&mut self) -> ApiResult<Option<Bytes>> {
        while self.buf.len() < self.batch {
            let mut data = match self.carry.take() {
                Some(data) => data,
                None if self.done => break,
                None => match self.next_data().await? {
                    Some(data) => data,
                    None => {
                        self.done = true;
                        break;
                    }
                },
            };
            if self.buf.is_empty() && data.len() >= self.batch {
                let batch = data.split_to(self.batch);
                self.carry = (!data.is_empty()).then_some(data);
                return Ok(Some(batch));
            }
            let take = (self.batch - self.buf.len()).min(data.len());
            if self.buf.capacity() == 0 {
                self.buf.reserve(self.batch);
            }
            self.buf.extend_from_slice(&data[..take]);
            if take < data.len() {
                self.carry = Some(data.slice(take..));
            }
        }
        if self.buf.is_empty() {
            Ok(None)
        } else {
            Ok(Some(self.buf.split().freeze()))
        }
    }

    /// The next frames as they arrived, at least `batch` bytes together (fewer only at the
    /// end), or `None` once the body is exhausted. Nothing is copied: the store keeps the
    /// frames themselves until it has written them.
    pub async fn next_frames(&mut self) -> ApiResult<Option<Vec<Bytes>>> {
        if let Some(carry) = self.carry.take() {
            self.pend(carry);
        }
        if !self.buf.is_empty() {
            let rest = self.buf.split().freeze();
            self.pend(rest);
        }
        while self.pending_len < self.batch && !self.done {
            match self.next_data().await? {
                Some(data) => self.pend(data),
                None => self.done = true,
            }
        }
        self.pending_len = 0;
        let frames = std::mem::take(&mut self.pending);
        Ok((!frames.is_empty()).then_some(frames))
    }

    fn pend(&mut self, data: Bytes) {
        self.pending_len += data.len();
        self.pending.push(data);
    }

    /// Bytes read but not yet handed out (what arrived before a failure).
    pub fn take_buffered(&mut self) -> Vec<Bytes> {
        let mut out = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        if !self.buf.is_empty() {
            out.push(self.buf.split().freeze());
        }
        out.extend(self.carry.take());
        out
    }

    /// Reads the whole body, refusing it as soon as it grows past `limit`.
    pub async fn read_all(&mut self, limit: usize) -> ApiResult<Option<Bytes>> {
        let mut all = BytesMut::new();
        while let Some(data) = self.next_data().await? {
            if all.len() + data.len() > limit {
                return Ok(None);
            }
            all.extend_from_slice(&data);
        }
        self.done = true;
        Ok(Some(all.freeze()))
    }

    async fn next_data(&mut self) -> ApiResult<Option<Bytes>> {
        loop {
            let frame = match tokio::time::timeout(self.idle, self.body.frame()).await {
                Err(_) => {
                    return Err(ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        ErrorCode::BlobUploadInvalid,
                    )
                    .with_detail("request body stalled"))
                }
                Ok(None) => return Ok(None),
                Ok(Some(Err(e))) => {
                    return Err(ApiError::bad_request(
                        ErrorCode::BlobUploadInvalid,
                        format!("reading request body: {e}"),
                    ))
                }
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                if !data.is_empty() {
                    self.metrics.add_bytes_in(data.len() as u64);
                    if let Some(c) = &self.counted {
                        c.0.fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    return Ok(Some(data));
                }
            }
        }
    }
}
