//! Feeds request body frames to an upload session through one blocking task per request, so
//! the socket is read while earlier frames are hashed and written, and the hashing thread
//! goes straight on to the frames that arrived meanwhile instead of waiting to be handed each
//! batch.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::api::error::ApiResult;
use crate::api::Registry;
use crate::storage::{StorageError, UploadId};

/// Bytes read from the socket but not yet taken in by the store, in KiB: the memory an upload
/// holds here besides what its session holds.
const CREDIT_KIB: usize = 1024;

/// The most one append takes at once, so records are handed to the writers as they fill.
const MAX_APPEND: usize = 1 << 20;

type Frame = (Bytes, OwnedSemaphorePermit);

/// Appends the frames of one request to a session, in order, on a blocking task.
pub struct Appender<'a> {
    reg: &'a Registry,
    id: UploadId,
    /// Session length once every pushed frame has landed.
    pub planned: u64,
    credit: Arc<Semaphore>,
    feed: Option<mpsc::UnboundedSender<Frame>>,
    task: Option<JoinHandle<Result<u64, StorageError>>>,
}

impl<'a> Appender<'a> {
    pub fn new(reg: &'a Registry, id: UploadId, offset: u64) -> Appender<'a> {
        Appender {
            reg,
            id,
            planned: offset,
            credit: Arc::new(Semaphore::new(CREDIT_KIB)),
            feed: None,
            task: None,
        }
    }

    /// Queues `frames` (request body frames, kept by the store without a copy); waits only
    /// while more than `CREDIT_KIB` are queued.
    pub async fn push(&mut self, frames: Vec<Bytes>) -> ApiResult<()> {
        for frame in frames {
            if frame.is_empty() {
                continue;
            }
            let kib = frame.len().div_ceil(1024).min(CREDIT_KIB) as u32;
            let permit = self
                .credit
                .clone()
                .acquire_many_owned(kib)
                .await
                .expect("the credit semaphore is never closed");
            let len = frame.len() as u64;
            let feed = self.start_task();
            if feed.send((frame, permit)).is_err() {
                // The task stopped on an error: report it.
                return self.finish().await.map(|_| ());
            }
            self.planned += len;
        }
        Ok(())
    }

    fn start_task(&mut self) -> &mpsc::UnboundedSender<Frame> {
        if self.feed.is_none() {
            let (tx, rx) = mpsc::unbounded_channel();
            let store = self.reg.store().clone();
            let (id, at) = (self.id, self.planned);
            self.task = Some(tokio::task::spawn_blocking(move || {
                take_in_frames(&store, &id, at, rx)
            }));
            self.feed = Some(tx);
        }
        self.feed.as_ref().expect("just set")
    }

    /// Waits for every queued frame to land; returns the session's length.
    pub async fn finish(&mut self) -> ApiResult<u64> {
        self.feed = None;
        let Some(task) = self.task.take() else {
            return Ok(self.planned);
        };
        Ok(task.await??)
    }
}

/// The blocking side: appends whatever frames have arrived, up to `MAX_APPEND` at once, until
/// the request side hangs up.
fn take_in_frames(
    store: &crate::storage::Store,
    id: &UploadId,
    mut at: u64,
    mut rx: mpsc::UnboundedReceiver<Frame>,
) -> Result<u64, StorageError> {
    while let Some(first) = rx.blocking_recv() {
        let mut size = first.0.len();
        let mut frames = vec![first];
        while size < MAX_APPEND {
            match rx.try_recv() {
                Ok(frame) => {
                    size += frame.0.len();
                    frames.push(frame);
                }
                Err(_) => break,
            }
        }
        let (pieces, credit): (Vec<Bytes>, Vec<OwnedSemaphorePermit>) = frames.into_iter().unzip();
        at = store.append_owned(id, at, pieces)?;
        drop(credit);
    }
    Ok(at)
}

pub fn batch_len(batch: &[Bytes]) -> u64 {
    batch.iter().map(|b| b.len() as u64).sum()
}
