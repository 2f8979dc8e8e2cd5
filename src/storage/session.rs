//! An upload session's state: what it has written, what is in flight to the writer threads,
//! the tail not yet a record, and its running digest. `uploads` opens and commits sessions,
//! `chunking` turns their appends into records, recovery restores them.

use std::collections::VecDeque;
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::SystemTime;

use super::error::StorageError;
use super::floor::FloorGuard;
use super::segment::log::Extent;
use super::segment::record::rec;
use super::segment::writers::Pending;
use super::tail::Tail;
use crate::oci::digest::Hasher;

pub(crate) struct Session {
    pub repo: String,
    pub started: SystemTime,
    pub touched: SystemTime,
    /// Bytes appended so far, including those in flight and in the tail.
    pub len: u64,
    /// Chunk records written, in blob order and contiguous from offset 0.
    pub extents: Vec<Extent>,
    /// The records after `extents`, queued for or being written by the writer threads.
    pub in_flight: VecDeque<InFlight>,
    /// Bytes after that, not yet handed to the log (shorter than one record).
    pub tail: Tail,
    /// sha256 of bytes `0..len`; `None` after a restart until rebuilt from the segments.
    pub hasher: Option<Hasher>,
    /// Set once committed or aborted, for callers that raced with that.
    pub gone: bool,
    /// Keeps the segments this session writes to from being compacted until it ends.
    pub floor: Option<FloorGuard>,
}

impl Session {
    pub fn restored(repo: String, started: SystemTime, extents: Vec<Extent>) -> Session {
        let len = extents.iter().map(|e| u64::from(e.len)).sum();
        Session {
            repo,
            started,
            // The last activity before a restart is unknown: give the client a full idle window.
            touched: SystemTime::now(),
            len,
            extents,
            in_flight: VecDeque::new(),
            tail: Tail::default(),
            hasher: None,
            gone: false,
            floor: None,
        }
    }
}

pub(crate) fn lock(s: &Mutex<Session>) -> MutexGuard<'_, Session> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Locks a session that is still open (not committed or aborted by a racing caller).
pub(crate) fn lock_live(s: &Mutex<Session>) -> Result<MutexGuard<'_, Session>, StorageError> {
    let s = lock(s);
    if s.gone {
        return Err(StorageError::UploadUnknown);
    }
    Ok(s)
}

pub(crate) type Trailer = [u8; rec::TRAILER_LEN];

pub(crate) fn trailer_of(parts: &[&[u8]]) -> Trailer {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(p);
    }
    *h.finalize().as_bytes()
}

/// A chunk record a writer thread is hashing and writing.
pub(crate) struct InFlight {
    /// Where the record starts in the blob: the session goes back here if the write fails.
    pub at: u64,
    pub pending: Pending<Result<Extent, StorageError>>,
    /// Tells the next record's job where this record will end, then that it is written (the
    /// next record must follow it in the log); taken by that job.
    pub progress: Option<mpsc::Receiver<Written>>,
}

/// What a record's job tells the job of the session's next record.
pub(crate) enum Written {
    /// The record is placed in the log and will end at this offset: most likely where the
    /// next record goes, so that one can be staged while this one is written.
    Placed(u64),
    /// The record is written.
    Done,
}
