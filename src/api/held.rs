//! The request-body bytes all requests together may hold in memory while they wait for the
//! rest of their bodies (`--max-body-buffer-bytes`).
//!
//! Some handlers need a whole body before they can act: a manifest, a chunk that can only be
//! checked against its `Content-Range` once it has ended, a small `POST ?digest=`. Each is
//! capped per request; this caps them together. Without it, a client that sends most of a body
//! and goes silent pins that memory until the body idle timeout, on every connection and
//! HTTP/2 stream it can open.
//!
//! A reader charges what it holds only when it is about to wait for its client (bytes handed
//! on at once are never charged): one atomic add on the shared counter. Past the limit, the
//! reader that needs room cuts off the holders silent the longest (no progress for
//! [`MIN_IDLE`]); their requests end 408, as the idle timeout would end them, and the reader
//! goes on once they have let go. Only when no holder is silent does it wait, up to
//! [`PATIENCE`], for one to finish or fall silent, and is then refused (503). Waiting readers
//! keep what they have read, so they may take the budget an eighth over, no further: past
//! that a reader that needs room is refused at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::header::RETRY_AFTER;
use http::{HeaderValue, StatusCode};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::metrics::{counter, gauge};

/// A holder makes progress only with this many bytes: a client trickling a byte now and then
/// is never quite silent, yet pins everything it sent before.
pub const PROGRESS_BYTES: usize = 16 << 10;

/// Silence after which a holder may be cut off to make room. Long enough that a client
/// sending at any usable rate is never taken for silent.
pub const MIN_IDLE: Duration = Duration::from_secs(1);

/// How long a reader waits for room when no holder is silent, before it is refused. Longer
/// than [`MIN_IDLE`], so a holder that went silent just before is still cut in time.
pub const PATIENCE: Duration = Duration::from_secs(2);

/// The answer to a request cut off for silence, the same as the body idle timeout's.
pub fn stalled() -> ApiError {
    ApiError::new(StatusCode::REQUEST_TIMEOUT, ErrorCode::BlobUploadInvalid)
        .with_detail("request body stalled")
}

fn full() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::TooManyRequests)
        .with_detail("request body buffers full; retry shortly")
        .with_header(RETRY_AFTER, HeaderValue::from_static("1"))
}

/// Body bytes held by all requests, against a limit, and who holds them.
pub struct BodyBudget {
    limit: usize,
    held: AtomicUsize,
    epoch: Instant,
    /// Requests that have held bytes while waiting for their clients; looked at only when
    /// room must be made.
    holders: Mutex<HashMap<u64, Arc<Holder>>>,
    next_id: AtomicU64,
    /// Readers waiting for room: a release wakes them only when there are some.
    askers: AtomicUsize,
    freed: Notify,
    cuts: AtomicU64,
    refusals: AtomicU64,
}

#[derive(Default)]
struct Holder {
    held: AtomicUsize,
    /// When it last made progress, in milliseconds since the budget's epoch.
    progress_at: AtomicU64,
    /// Waiting for room itself: that wait is the server's, not the client's silence.
    asking: AtomicBool,
    cut: AtomicBool,
    wake: Notify,
}

impl BodyBudget {
    pub fn new(limit: usize) -> BodyBudget {
        BodyBudget {
            limit,
            held: AtomicUsize::new(0),
            epoch: Instant::now(),
            holders: Mutex::default(),
            next_id: AtomicU64::new(0),
            askers: AtomicUsize::new(0),
            freed: Notify::new(),
            cuts: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
        }
    }

    /// Bytes held right now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// `/metrics` lines: the bytes held, requests cut off and requests refused.
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        let _ = self.render(&mut out);
        out
    }

    fn render(&self, out: &mut String) -> std::fmt::Result {
        gauge(
            out,
            "berth_body_buffer_bytes",
            "Request body bytes held in memory while their requests wait for the rest.",
            self.held() as u64,
        )?;
        counter(
            out,
            "berth_body_buffer_cuts_total",
            "Requests cut off (408) for silence to make room for other request bodies.",
            self.cuts.load(Ordering::Relaxed),
        )?;
        counter(
            out,
            "berth_body_buffer_refusals_total",
            "Requests refused (503) because request bodies being sent filled the budget.",
            self.refusals.load(Ordering::Relaxed),
        )
    }

    fn now_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn release(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::SeqCst);
        if self.askers.load(Ordering::SeqCst) > 0 {
            self.freed.notify_waiters();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Holder>>> {
        self.holders.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the bytes `me` has just charged fit. Err: `me` was the one cut off (408),
    /// or nobody was silent in time (503).
    async fn make_room(&self, me: &Holder) -> ApiResult<()> {
        let deadline = Instant::now() + PATIENCE;
        self.askers.fetch_add(1, Ordering::SeqCst);
        let _asking = Asking { budget: self, me };
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a release in between is not missed.
            freed.as_mut().enable();
            if me.cut.load(Ordering::SeqCst) {
                return Err(stalled());
            }
            let now = Instant::now();
            if self.held() <= self.limit {
                // The time spent here was the server's: silence counts from now.
                me.progress_at.store(self.now_ms(now), Ordering::Relaxed);
                return Ok(());
            }
            let plan = self.cut_silent(now);
            if me.cut.load(Ordering::SeqCst) {
                return Err(stalled());
            }
            let first = !me.asking.swap(true, Ordering::SeqCst);
            // Readers waiting for room keep what they have read: once they are an eighth over
            // the budget, a newcomer is refused at once instead of joining them.
            let crowded = first && self.held() > self.limit + self.limit / 8;
            let wake = match plan {
                // Those cut off let go as soon as they run; this only guards the wait.
                Plan::Coming => now + PATIENCE,
                _ if crowded || now >= deadline => {
                    self.refusals.fetch_add(1, Ordering::Relaxed);
                    return Err(full());
                }
                Plan::NextSilent(at) => at.min(deadline),
                Plan::Nobody => deadline,
            };
            tokio::select! {
                () = &mut freed => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Cuts off silent holders, longest silent first, until what stays held fits with an
    /// eighth of the budget to spare (so the next readers do not each come back here).
    fn cut_silent(&self, now: Instant) -> Plan {
        let now_ms = self.now_ms(now);
        let idle_ms = MIN_IDLE.as_millis() as u64;
        let holders = self.lock();
        let mut staying = self.held();
        let mut silent = Vec::new();
        let mut next: Option<u64> = None;
        for h in holders.values() {
            let held = h.held.load(Ordering::SeqCst);
            if held == 0 {
                continue;
            }
            if h.cut.load(Ordering::SeqCst) {
                // Already on its way out.
                staying = staying.saturating_sub(held);
                continue;
            }
            if h.asking.load(Ordering::SeqCst) {
                continue;
            }
            let since = h.progress_at.load(Ordering::Relaxed);
            if now_ms.saturating_sub(since) >= idle_ms {
                silent.push((since, held, h.clone()));
            } else {
                next = Some(next.map_or(since + idle_ms, |n| n.min(since + idle_ms)));
            }
        }
        silent.sort_by_key(|(since, ..)| *since);
        let target = self.limit - self.limit / 8;
        let (mut count, mut bytes) = (0u64, 0usize);
        for (_, held, h) in silent {
            if staying <= target {
                break;
            }
            h.cut.store(true, Ordering::SeqCst);
            h.wake.notify_one();
            staying = staying.saturating_sub(held);
            count += 1;
            bytes += held;
        }
        drop(holders);
        if count > 0 {
            self.cuts.fetch_add(count, Ordering::Relaxed);
            tracing::warn!(
                requests = count,
                bytes,
                limit = self.limit,
                "request bodies silent for a second or more were cut off to make room"
            );
        }
        if staying <= self.limit {
            Plan::Coming
        } else if let Some(ms) = next {
            Plan::NextSilent(self.epoch + Duration::from_millis(ms))
        } else {
            Plan::Nobody
        }
    }
}

/// What a reader that needs room can expect.
enum Plan {
    /// Holders being cut off will free enough.
    Coming,
    /// Not enough is silent yet; the first holder that may fall silent does so at this time.
    NextSilent(Instant),
    /// Nothing else held can be cut (every holder is waiting for room too).
    Nobody,
}

/// Marks a reader as waiting for room for as long as it does.
struct Asking<'a> {
    budget: &'a BodyBudget,
    me: &'a Holder,
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        self.me.asking.store(false, Ordering::SeqCst);
        self.budget.askers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One request's share of the budget: what it holds while it waits for its client. Given back
/// when the bytes are handed on, and on drop.
pub struct Hold {
    budget: Arc<BodyBudget>,
    /// Registered the first time it holds bytes across a wait.
    me: Option<(u64, Arc<Holder>)>,
    charged: usize,
    /// Bytes received since it last counted as progressing.
    unmarked: usize,
}

impl Hold {
    pub fn new(budget: &Arc<BodyBudget>) -> Hold {
        Hold {
            budget: budget.clone(),
            me: None,
            charged: 0,
            unmarked: 0,
        }
    }

    /// Bytes that arrived, whether kept or handed on.
    pub fn received(&mut self, n: usize) {
        self.unmarked += n;
        if self.unmarked >= PROGRESS_BYTES {
            self.unmarked = 0;
            if let Some((_, me)) = &self.me {
                let now = self.budget.now_ms(Instant::now());
                me.progress_at.store(now, Ordering::Relaxed);
            }
        }
    }

    /// Makes the charge `holding`: the bytes about to be held while the reader waits for its
    /// client. On an error this request holds nothing any more.
    pub async fn settle(&mut self, holding: usize) -> ApiResult<()> {
        if holding <= self.charged {
            self.release_to(holding);
            return Ok(());
        }
        let more = holding - self.charged;
        let me = self.register();
        me.held.fetch_add(more, Ordering::SeqCst);
        self.charged = holding;
        let after = self.budget.held.fetch_add(more, Ordering::SeqCst) + more;
        if after <= self.budget.limit && !me.cut.load(Ordering::SeqCst) {
            return Ok(());
        }
        let result = self.budget.make_room(&me).await;
        if result.is_err() {
            self.release();
        }
        result
    }

    /// Gives back everything charged (the bytes were handed on or dropped).
    pub fn release(&mut self) {
        self.release_to(0);
    }

    fn release_to(&mut self, holding: usize) {
        let less = self.charged.saturating_sub(holding);
        if less == 0 {
            return;
        }
        if let Some((_, me)) = &self.me {
            me.held.fetch_sub(less, Ordering::SeqCst);
        }
        self.charged = holding;
        self.budget.release(less);
    }

    /// Resolves once this request has been cut off to make room (never before it holds bytes).
    pub async fn cut(&self) {
        match &self.me {
            Some((_, me)) => {
                if !me.cut.load(Ordering::SeqCst) {
                    me.wake.notified().await;
                }
            }
            None => std::future::pending().await,
        }
    }

    fn register(&mut self) -> Arc<Holder> {
        if let Some((_, me)) = &self.me {
            return me.clone();
        }
        let budget = &self.budget;
        let me = Arc::new(Holder::default());
        me.progress_at
            .store(budget.now_ms(Instant::now()), Ordering::Relaxed);
        let id = budget.next_id.fetch_add(1, Ordering::Relaxed);
        budget.lock().insert(id, me.clone());
        self.me = Some((id, me.clone()));
        me
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.release();
        if let Some((id, _)) = self.me.take() {
            self.budget.lock().remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: usize = 1 << 10;

    fn budget(limit: usize) -> Arc<BodyBudget> {
        Arc::new(BodyBudget::new(limit))
    }

    fn is_cut(h: &Hold) -> bool {
        h.me.as_ref()
            .is_some_and(|(_, me)| me.cut.load(Ordering::SeqCst))
    }

    #[tokio::test(start_paused = true)]
    async fn charges_and_releases() {
        let b = budget(100 * KIB);
        let mut h = Hold::new(&b);
        h.settle(40 * KIB).await.unwrap();
        h.settle(60 * KIB).await.unwrap();
        assert_eq!(b.held(), 60 * KIB);
        h.settle(10 * KIB).await.unwrap();
        assert_eq!(b.held(), 10 * KIB);
        let mut other = Hold::new(&b);
        other.settle(30 * KIB).await.unwrap();
        assert_eq!(b.held(), 40 * KIB);
        h.release();
        assert_eq!(b.held(), 30 * KIB);
        drop(other);
        assert_eq!(b.held(), 0);
        assert_eq!(b.lock().len(), 1);
        drop(h);
        assert!(b.lock().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn the_longest_silent_holders_are_cut_first() {
        let b = budget(100 * KIB);
        let mut oldest = Hold::new(&b);
        oldest.settle(30 * KIB).await.unwrap();
        tokio::time::advance(Duration::from_millis(500)).await;
        let mut older = Hold::new(&b);
        older.settle(30 * KIB).await.unwrap();
        tokio::time::advance(Duration::from_millis(500)).await;
        let mut recent = Hold::new(&b);
        recent.settle(30 * KIB).await.unwrap();
        tokio::time::advance(Duration::from_millis(600)).await;
        // `recent` is not silent long enough; `older` has kept sending.
        older.received(PROGRESS_BYTES);

        let b2 = b.clone();
        let asker = tokio::spawn(async move {
            let mut h = Hold::new(&b2);
            let r = h.settle(20 * KIB).await;
            (r.map_err(|e| e.status), h)
        });
        // 110 KiB held; cutting `oldest` leaves 80, within the limit less an eighth: only it goes.
        oldest.cut().await;
        assert!(is_cut(&oldest));
        assert!(!is_cut(&older) && !is_cut(&recent));
        oldest.release();
        let (r, asker) = asker.await.unwrap();
        assert_eq!(r, Ok(()));
        assert_eq!(b.held(), 80 * KIB);
        drop((asker, oldest, older, recent));
        assert_eq!(b.held(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_holder_counts_as_silent() {
        let b = budget(64 * KIB);
        let mut trickler = Hold::new(&b);
        trickler.settle(60 * KIB).await.unwrap();
        for _ in 0..20 {
            tokio::time::advance(Duration::from_millis(100)).await;
            trickler.received(1);
        }
        let mut asker = Hold::new(&b);
        let (r, ()) = tokio::join!(asker.settle(16 * KIB), async {
            trickler.cut().await;
            trickler.release();
        });
        assert!(r.is_ok());
        assert_eq!(b.held(), 16 * KIB);
    }

    #[tokio::test(start_paused = true)]
    async fn nobody_silent_means_a_wait_then_a_refusal() {
        let b = budget(64 * KIB);
        let mut busy = Hold::new(&b);
        busy.settle(60 * KIB).await.unwrap();
        let mut asker = Hold::new(&b);
        // `busy` keeps sending throughout the asker's wait (70 KiB held: within the eighth
        // over the budget that waiting readers may take).
        let keep_sending = async {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                busy.received(PROGRESS_BYTES);
            }
        };
        let r = tokio::select! {
            r = asker.settle(10 * KIB) => r,
            () = keep_sending => unreachable!(),
        };
        let e = r.unwrap_err();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code, ErrorCode::TooManyRequests);
        assert!(!is_cut(&busy));
        // The refused reader holds nothing.
        assert_eq!(b.held(), 60 * KIB);
        assert_eq!(b.refusals.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_that_falls_silent_while_a_reader_waits_is_cut() {
        let b = budget(64 * KIB);
        let mut holder = Hold::new(&b);
        holder.settle(60 * KIB).await.unwrap();
        tokio::time::advance(Duration::from_millis(300)).await;
        let mut asker = Hold::new(&b);
        let (r, ()) = tokio::join!(asker.settle(8 * KIB), async {
            holder.cut().await;
            holder.release();
        });
        assert!(r.is_ok());
        assert_eq!(b.cuts.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn past_an_eighth_over_the_budget_a_reader_is_refused_at_once() {
        let b = budget(64 * KIB);
        let mut holder = Hold::new(&b);
        holder.settle(60 * KIB).await.unwrap();
        let mut asker = Hold::new(&b);
        // 76 KiB would be held, more than 72: refused on its first poll, without a wait.
        let r = tokio::select! {
            biased;
            r = asker.settle(16 * KIB) => r,
            () = std::future::ready(()) => panic!("the reader waits"),
        };
        assert_eq!(r.unwrap_err().status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!is_cut(&holder));
        assert_eq!(b.held(), 60 * KIB);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_asker_is_cut_itself() {
        let b = budget(64 * KIB);
        let mut sender = Hold::new(&b);
        sender.settle(40 * KIB).await.unwrap();
        let mut silent = Hold::new(&b);
        silent.settle(20 * KIB).await.unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        sender.received(PROGRESS_BYTES);
        // The silent one trickles a few more bytes and asks for room: it is the one to go.
        silent.received(10);
        let e = silent.settle(30 * KIB).await.unwrap_err();
        assert_eq!(e.status, StatusCode::REQUEST_TIMEOUT);
        assert!(!is_cut(&sender));
        assert_eq!(b.held(), 40 * KIB);
    }
}
