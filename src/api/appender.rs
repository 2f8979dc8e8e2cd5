//! Feeds request body frames to an upload session. A blocking task drains whatever frames
//! have arrived and ends once none are waiting: while frames keep coming it goes straight on
//! to them, with no hand-over per batch, and a client that goes quiet holds no thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::api::error::{ApiError, ApiResult};
use crate::api::Registry;
use crate::storage::{StorageError, Store, UploadId};

/// Bytes read from the socket but not yet taken in by the store, in KiB: the memory an upload
/// holds here besides what its session holds.
const CREDIT_KIB: usize = 1024;

/// The most one append takes at once, so records are handed to the writers as they fill.
const MAX_APPEND: usize = 1 << 20;

/// A frame and the credit it holds until the store has taken it in.
type Frame = (Bytes, OwnedSemaphorePermit);

/// Appends the frames of one request to a session, in order.
pub struct Appender<'a> {
    reg: &'a Registry,
    id: UploadId,
    /// Session length once every pushed frame has landed.
    pub planned: u64,
    credit: Arc<Semaphore>,
    feed: mpsc::UnboundedSender<Frame>,
    drain: Arc<Drain>,
    /// Drain tasks that may still run.
    tasks: Vec<JoinHandle<()>>,
}

/// What the request side shares with the drain tasks.
struct Drain {
    frames: Mutex<mpsc::UnboundedReceiver<Frame>>,
    /// Set while a task drains `frames` or is about to; whoever sets it starts the task.
    active: AtomicBool,
    /// Set by the first failed append, never cleared.
    failed: AtomicBool,
    /// The session's length after the frames taken in so far, and the first failure.
    outcome: Mutex<(u64, Option<StorageError>)>,
}

impl<'a> Appender<'a> {
    pub fn new(reg: &'a Registry, id: UploadId, offset: u64) -> Appender<'a> {
        let (feed, frames) = mpsc::unbounded_channel();
        Appender {
            reg,
            id,
            planned: offset,
            credit: Arc::new(Semaphore::new(CREDIT_KIB)),
            feed,
            drain: Arc::new(Drain {
                frames: Mutex::new(frames),
                active: AtomicBool::new(false),
                failed: AtomicBool::new(false),
                outcome: Mutex::new((offset, None)),
            }),
            tasks: Vec::new(),
        }
    }

    /// Queues `frames` (request body frames, kept by the store without a copy); waits only
    /// while more than `CREDIT_KIB` are queued. Reports an append that failed earlier.
    pub async fn push(&mut self, frames: Vec<Bytes>) -> ApiResult<()> {
        for frame in frames {
            if frame.is_empty() {
                continue;
            }
            if self.drain.failed.load(Ordering::Acquire) {
                return self.finish().await.map(|_| ());
            }
            // Queued frames always have a task draining them, so the credit comes back.
            let kib = frame.len().div_ceil(1024).min(CREDIT_KIB) as u32;
            let permit =
                (self.credit.clone().acquire_many_owned(kib).await).map_err(ApiError::internal)?;
            self.planned += frame.len() as u64;
            // The receiver lives in `self.drain`, so the send cannot fail.
            let _ = self.feed.send((frame, permit));
            if !self.drain.active.swap(true, Ordering::SeqCst) {
                self.tasks.retain(|t| !t.is_finished());
                let (store, id, drain) = (self.reg.store().clone(), self.id, self.drain.clone());
                self.tasks
                    .push(tokio::task::spawn_blocking(move || drain.run(&store, &id)));
            }
        }
        Ok(())
    }

    /// Waits for every queued frame to land; returns the session's length.
    pub async fn finish(&mut self) -> ApiResult<u64> {
        for task in self.tasks.drain(..) {
            task.await?;
        }
        let mut outcome = lock(&self.drain.outcome);
        if !self.drain.failed.load(Ordering::Acquire) {
            return Ok(outcome.0);
        }
        // The failure is reported once; the appender stays failed, so no later frame can land
        // behind the bytes that were refused.
        Err(match outcome.1.take() {
            Some(e) => e.into(),
            None => ApiError::internal("an earlier append of this request failed"),
        })
    }
}

impl Drain {
    /// Appends whatever frames are waiting, up to `MAX_APPEND` at once, until none are left.
    /// After the first failure, frames are dropped (their credit returned) without appending,
    /// for good.
    fn run(&self, store: &Store, id: &UploadId) {
        let mut frames = lock(&self.frames);
        loop {
            while let Ok(first) = frames.try_recv() {
                let mut size = first.0.len();
                let mut batch = vec![first];
                while size < MAX_APPEND {
                    let Ok(frame) = frames.try_recv() else { break };
                    size += frame.0.len();
                    batch.push(frame);
                }
                let (pieces, credit): (Vec<Bytes>, Vec<OwnedSemaphorePermit>) =
                    batch.into_iter().unzip();
                let mut outcome = lock(&self.outcome);
                if !self.failed.load(Ordering::Acquire) {
                    match store.append_owned(id, outcome.0, pieces) {
                        Ok(len) => outcome.0 = len,
                        Err(e) => {
                            outcome.1 = Some(e);
                            self.failed.store(true, Ordering::Release);
                        }
                    }
                }
                drop(credit);
            }
            self.active.store(false, Ordering::SeqCst);
            // A frame sent after the last `try_recv` found `active` still set: take it on,
            // unless its sender has already started another task.
            if frames.is_empty() || self.active.swap(true, Ordering::SeqCst) {
                return;
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn batch_len(batch: &[Bytes]) -> u64 {
    batch.iter().map(|b| b.len() as u64).sum()
}
