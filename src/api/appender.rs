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
/// holds here besides what its session holds. Several frames' worth, so the socket is read
/// on while the store hashes.
const CREDIT_KIB: usize = 2048;

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
    /// Appends whatever frames are waiting, until none are left.
    /// After the first failure, frames are dropped (their credit returned) without appending,
    /// for good.
    fn run(&self, store: &Store, id: &UploadId) {
        let mut frames = lock(&self.frames);
        loop {
            // One frame at a time, its credit returned as soon as it is taken in: the request
            // side reads the next frames while this one is hashed, so the queue seldom runs dry
            // and this task seldom ends only to be started again.
            while let Ok((frame, credit)) = frames.try_recv() {
                let mut outcome = lock(&self.outcome);
                if !self.failed.load(Ordering::Acquire) {
                    match store.append_owned(id, outcome.0, [frame]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Limits;
    use crate::metrics::Metrics;
    use crate::oci::digest::{Algorithm, Digest};
    use crate::storage::memdisk::MemDisk;
    use crate::storage::StoreOptions;

    const RECORD: usize = 4096;

    /// Frame `i` of the test body: 3000 bytes of `i`, so a frame landing anywhere but right
    /// after frame `i - 1` changes the blob's digest.
    fn frame(i: usize) -> Bytes {
        Bytes::from(vec![i as u8; 3000])
    }

    /// Once the disk refuses a record, no later frame of the same request lands, even after
    /// space comes back: the session keeps whole records written before the failure, and
    /// resuming from its offset gives exactly the body that was sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_append_lets_no_later_frame_land() {
        let disk = MemDisk::new();
        let opts = StoreOptions {
            chunk_record_bytes: RECORD,
            max_segment_bytes: 64 * 1024,
            ..Default::default()
        };
        let store = Store::open_with(disk.segments(), disk.index(), opts).unwrap();
        let reg = Registry::new(store, Arc::new(Metrics::new()), Limits::default());
        let id = reg.store().begin_upload("r").unwrap();
        disk.set_segment_space(Some(20_000));

        let frames = 40;
        let mut appender = Appender::new(&reg, id, 0);
        let mut first_error = None;
        for i in 0..frames {
            if let Err(e) = appender.push(vec![frame(i)]).await {
                first_error = Some(e);
                break;
            }
        }
        if first_error.is_none() {
            first_error = appender.finish().await.err();
        }
        assert!(first_error.is_some(), "the space limit was never hit");

        disk.set_segment_space(None);
        assert!(appender.push(vec![frame(frames)]).await.is_err());
        assert!(appender.finish().await.is_err());
        drop(appender);

        let offset = reg.store().status(&id).unwrap().offset as usize;
        assert_eq!(offset % RECORD, 0, "only whole records are kept");
        let body: Vec<u8> = (0..frames).flat_map(|i| frame(i).to_vec()).collect();
        assert!(offset < body.len());
        reg.store()
            .append(&id, offset as u64, &body[offset..])
            .unwrap();
        reg.store()
            .commit(&id, &Digest::of(Algorithm::Sha256, &body))
            .unwrap();
    }
}
