//! Appends request batches to an upload session, one append in flight at a time, so the
//! socket is read while the previous batch is written.

use bytes::Bytes;

use crate::api::error::ApiResult;
use crate::api::Registry;
use crate::storage::{StorageError, UploadId};

/// Appends batches to a session with at most one append in flight, so reading the next batch
/// overlaps with writing the previous one.
pub struct Appender<'a> {
    reg: &'a Registry,
    id: UploadId,
    /// Session length once every pushed batch has landed.
    pub planned: u64,
    done: u64,
    in_flight: Option<tokio::task::JoinHandle<Result<u64, StorageError>>>,
}

impl<'a> Appender<'a> {
    pub fn new(reg: &'a Registry, id: UploadId, offset: u64) -> Appender<'a> {
        Appender {
            reg,
            id,
            planned: offset,
            done: offset,
            in_flight: None,
        }
    }

    /// Appends `batch` (request body frames, kept by the store without a copy).
    pub async fn push(&mut self, batch: Vec<Bytes>) -> ApiResult<()> {
        self.wait().await?;
        let store = self.reg.store().clone();
        let (id, at) = (self.id, self.planned);
        self.planned += batch_len(&batch);
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            store.append_owned(&id, at, batch)
        }));
        Ok(())
    }

    async fn wait(&mut self) -> ApiResult<()> {
        if let Some(handle) = self.in_flight.take() {
            self.done = handle.await??;
        }
        Ok(())
    }

    /// Waits for the last append; returns the session's length.
    pub async fn finish(&mut self) -> ApiResult<u64> {
        self.wait().await?;
        Ok(self.done)
    }
}

pub fn batch_len(batch: &[Bytes]) -> u64 {
    batch.iter().map(|b| b.len() as u64).sum()
}
