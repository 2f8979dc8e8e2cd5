//! What one connection's requests are doing, for its watchdog: how many are being handled,
//! how many are open until their response body has been sent, and when one last started or
//! ended. Bytes moving say little on HTTP/2, where a client can keep a connection busy with
//! pings and window updates without ever asking for anything.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::activity::Clock;

#[derive(Clone, Default)]
pub struct Requests(Arc<Counts>);

#[derive(Default)]
struct Counts {
    /// Requests whose handler has not returned its response yet.
    handling: AtomicUsize,
    /// Requests whose response body has not been sent (or dropped) yet.
    open: AtomicUsize,
    /// Set by the first request.
    seen: AtomicBool,
    /// When a request last started or its response body ended.
    last: Clock,
}

impl Requests {
    /// Counts a request from its start; returns the guards for its handler and its response.
    pub fn start(&self) -> (Guard, Guard) {
        self.0.seen.store(true, Ordering::Release);
        self.0.last.touch();
        (
            Guard::enter(self.clone(), Which::Handling),
            Guard::enter(self.clone(), Which::Open),
        )
    }

    pub fn handling(&self) -> usize {
        self.0.handling.load(Ordering::Acquire)
    }

    pub fn open(&self) -> usize {
        self.0.open.load(Ordering::Acquire)
    }

    pub fn seen(&self) -> bool {
        self.0.seen.load(Ordering::Acquire)
    }

    /// Time since a request last started or ended (or since the connection began).
    pub fn quiet_for(&self) -> std::time::Duration {
        self.0.last.quiet_for()
    }
}

#[derive(Clone, Copy)]
enum Which {
    Handling,
    Open,
}

/// Counts a request in one of the two counts for as long as it lives.
pub struct Guard {
    requests: Requests,
    which: Which,
}

impl Guard {
    fn enter(requests: Requests, which: Which) -> Guard {
        requests.count(which).fetch_add(1, Ordering::AcqRel);
        Guard { requests, which }
    }
}

impl Requests {
    fn count(&self, which: Which) -> &AtomicUsize {
        match which {
            Which::Handling => &self.0.handling,
            Which::Open => &self.0.open,
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.which, Which::Open) {
            self.requests.0.last.touch();
        }
        self.requests
            .count(self.which)
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as open until hyper drops it.
pub struct Tracked<B> {
    body: B,
    _open: Guard,
}

impl<B> Tracked<B> {
    pub fn new(body: B, open: Guard) -> Tracked<B> {
        Tracked { body, _open: open }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
