//! Upload sessions: chunked appends hashed once as they are written, commit, abort, reclaim.
//!
//! A session holds at most five chunk records of bytes in memory (up to four queued for or
//! being written by the writer threads, one filling up); everything else is already in the
//! shared active segment. What all sessions' tails hold together is bounded (see `budget`). The index learns a session's chunks at the next group commit (or
//! from the recovery scan), which is what `status()` reports after a restart.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::error::StorageError;
use super::index::ops::{BlobCommit, Op};
use super::segment::log::WriteMode;
use super::session::{lock, lock_live, Session};
use super::store::Store;
use super::tail::Tail;
use super::types::{now_ms, BlobInfo, UploadId, UploadStatus};
use crate::oci::digest::{Algorithm, Digest, Hasher};

impl Store {
    fn session(&self, id: &UploadId) -> Result<Arc<Mutex<Session>>, StorageError> {
        self.check_open()?;
        self.inner
            .sessions_read()
            .get(id)
            .cloned()
            .ok_or(StorageError::UploadUnknown)
    }

    pub fn begin_upload(&self, repo: &str) -> Result<UploadId, StorageError> {
        self.check_open()?;
        if self.inner.sessions_read().len() >= self.inner.opts.max_open_uploads {
            return Err(StorageError::TooManyUploads);
        }
        let id = UploadId::random()?;
        let floor = self.inner.floors.hold(self.inner.log.active().0);
        let started = SystemTime::now();
        let started_ms = started
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        // Logged now, ahead of the session's chunks; the index row rides along with the next
        // group commit instead of costing one (storage-format.md, "Upload sessions").
        let op = Op::Begin {
            id,
            repo: repo.to_string(),
            started_ms,
        };
        {
            // Held across the append: a group commit takes the deferred ops only after its
            // snapshot of the log, so every `begin` record before a checkpoint (or a base's
            // position) is applied by the batch that moves the checkpoint past it.
            let mut deferred = self
                .inner
                .deferred
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            self.write_begin(&op)?;
            deferred.push(op);
        }
        let s = Session {
            repo: repo.to_string(),
            started,
            touched: started,
            len: 0,
            extents: Vec::new(),
            in_flight: VecDeque::new(),
            tail: Tail::new(self.inner.tails.clone()),
            hasher: Some(Hasher::new(Algorithm::Sha256)),
            gone: false,
            floor: Some(floor),
        };
        self.inner
            .sessions_write()
            .insert(id, Arc::new(Mutex::new(s)));
        Ok(id)
    }

    pub fn append(&self, id: &UploadId, offset: u64, data: &[u8]) -> Result<u64, StorageError> {
        let s = self.session(id)?;
        let mut s = lock_live(&s)?;
        if offset != s.len {
            return Err(StorageError::UploadOffset { expected: s.len });
        }
        self.append_locked(id, &mut s, data)
    }

    /// Like [`Store::append`] for owned pieces (request body frames), which the store keeps
    /// and writes without copying them.
    pub fn append_owned(
        &self,
        id: &UploadId,
        offset: u64,
        pieces: impl IntoIterator<Item = Bytes>,
    ) -> Result<u64, StorageError> {
        let s = self.session(id)?;
        let mut s = lock_live(&s)?;
        if offset != s.len {
            return Err(StorageError::UploadOffset { expected: s.len });
        }
        self.append_owned_locked(id, &mut s, pieces)
    }

    pub fn append_at_end(&self, id: &UploadId, data: &[u8]) -> Result<u64, StorageError> {
        let s = self.session(id)?;
        let mut s = lock_live(&s)?;
        self.append_locked(id, &mut s, data)
    }

    /// After a restart the sha256 state is rebuilt once from the durable, trailer-checked bytes.
    pub(crate) fn ensure_hasher(&self, s: &mut Session) -> Result<(), StorageError> {
        if s.hasher.is_none() {
            self.settle(s)?;
            let mut h = self.rehash(Hasher::new(Algorithm::Sha256), &s.extents)?;
            for part in s.tail.parts() {
                h.update(part);
            }
            s.hasher = Some(h);
        }
        Ok(())
    }

    /// Cuts the session back to `offset` bytes (at most its length), as if the bytes after it
    /// had never been appended: a chunk whose body did not match its `Content-Range`. Buffered
    /// bytes are simply dropped; written records from the cut on are declared dead by a
    /// `truncate` op (storage-format.md, section 5), and the kept part of a record the cut falls
    /// into is buffered again. The sha256 state is rebuilt from the kept bytes when the session
    /// is next appended to or committed.
    pub fn truncate_upload(&self, id: &UploadId, offset: u64) -> Result<u64, StorageError> {
        let arc = self.session(id)?;
        let mut s = lock_live(&arc)?;
        self.settle(&mut s)?;
        if offset > s.len {
            return Err(StorageError::UploadOffset { expected: s.len });
        }
        if offset == s.len {
            return Ok(s.len);
        }
        let written = s.len - s.tail.len() as u64;
        if offset >= written {
            s.tail.truncate((offset - written) as usize);
        } else {
            let mut start = 0u64;
            let mut keep = 0;
            for e in &s.extents {
                if start + u64::from(e.len) > offset {
                    break;
                }
                start += u64::from(e.len);
                keep += 1;
            }
            let dropped = s.extents.get(keep..).unwrap_or_default().to_vec();
            let refill = match dropped.first() {
                Some(e) if offset > start => {
                    let io = self.inner.log.io();
                    io.read(e.segment, e.offset, (offset - start) as usize)
                        .map_err(StorageError::from_io)?
                }
                _ => bytes::Bytes::new(),
            };
            self.submit(Op::Truncate {
                session: *id,
                size: start,
                extents: dropped,
            })?;
            s.extents.truncate(keep);
            s.tail.clear();
            s.tail.push(refill);
        }
        s.len = offset;
        s.hasher = None;
        s.touched = SystemTime::now();
        Ok(s.len)
    }

    /// Writes the record in flight and the tail (commit and close need every byte in the log).
    pub(crate) fn flush_buffer(&self, id: &UploadId, s: &mut Session) -> Result<(), StorageError> {
        self.settle(s)?;
        if s.tail.is_empty() || s.gone {
            return Ok(());
        }
        let at = s.len - s.tail.len() as u64;
        let parts: Vec<&[u8]> = s.tail.parts().collect();
        let e = self.inner.log.append_chunk(
            id,
            at,
            &parts,
            super::session::trailer_of(&parts),
            WriteMode::Buffered,
        )?;
        s.extents.push(e);
        s.tail.clear();
        Ok(())
    }

    pub fn status(&self, id: &UploadId) -> Result<UploadStatus, StorageError> {
        self.status_after(id, true)
    }

    /// Like [`Store::status`] without waiting for the records in flight: the offset counts
    /// them as written. Where the next append must start, cheaply; a write that fails later
    /// is reported by that append.
    pub fn status_now(&self, id: &UploadId) -> Result<UploadStatus, StorageError> {
        self.status_after(id, false)
    }

    fn status_after(&self, id: &UploadId, settle: bool) -> Result<UploadStatus, StorageError> {
        let s = self.session(id)?;
        let mut s = lock_live(&s)?;
        // A failed write in flight cuts the session back: report where a client can resume.
        if settle {
            if let Err(e) = self.settle(&mut s) {
                tracing::warn!(error = %e, "upload chunk write failed; session cut back");
            }
        }
        Ok(UploadStatus {
            repo: s.repo.clone(),
            offset: s.len,
            started_at: s.started,
        })
    }

    pub fn commit(&self, id: &UploadId, expected: &Digest) -> Result<BlobInfo, StorageError> {
        let arc = self.session(id)?;
        let mut s = lock_live(&arc)?;
        self.flush_buffer(id, &mut s)?;
        let actual = match (expected.algorithm(), s.hasher.clone()) {
            (Algorithm::Sha256, Some(h)) => h.finish(),
            (alg, _) => self.rehash(Hasher::new(alg), &s.extents)?.finish(),
        };
        if actual != *expected {
            // The session is gone either way; failing to account its bytes as dead only leaves
            // them uncounted until a reopen replays the log.
            // Its write floor is held until the discard is applied: until then no batch may
            // have noted its chunks, and compaction must not delete a segment holding them.
            let floor = s.floor.take();
            self.retire(id, &mut s);
            let extents = std::mem::take(&mut s.extents);
            if let Err(e) = self.submit(Op::Discard {
                session: Some(*id),
                extents,
            }) {
                tracing::warn!(error = %e, "could not record a mismatched upload as dead");
            }
            drop(floor);
            return Err(StorageError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        // Retired only once the commit is durable, so a failed commit can be retried.
        let op = Op::Commit(BlobCommit {
            session: Some(*id),
            repo: s.repo.clone(),
            digest: actual,
            size: s.len,
            extents: s.extents.clone(),
            at_ms: now_ms(),
        });
        let info = self.submit(op)?.blob()?;
        self.retire(id, &mut s);
        s.extents = Vec::new();
        Ok(info)
    }

    fn retire(&self, id: &UploadId, s: &mut Session) {
        s.gone = true;
        s.tail.clear();
        s.floor = None;
        self.inner.sessions_write().remove(id);
    }

    pub fn abort(&self, id: &UploadId) -> Result<(), StorageError> {
        let arc = self.session(id)?;
        let mut s = lock_live(&arc)?;
        self.discard_locked(id, &mut s)
    }

    fn discard_locked(&self, id: &UploadId, s: &mut Session) -> Result<(), StorageError> {
        // A failed write has nothing to discard; the records before it do.
        let _ = self.settle(s);
        self.submit(Op::Discard {
            session: Some(*id),
            extents: s.extents.clone(),
        })?;
        self.retire(id, s);
        s.extents = Vec::new();
        Ok(())
    }

    /// Aborts every session idle for longer than `upload_max_idle`; returns how many.
    pub fn reclaim_idle_uploads(&self) -> Result<usize, StorageError> {
        self.check_open()?;
        let now = SystemTime::now();
        let all: Vec<(UploadId, Arc<Mutex<Session>>)> = self
            .inner
            .sessions_read()
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let mut n = 0;
        for (id, arc) in all {
            let mut s = lock(&arc);
            let idle = now.duration_since(s.touched).unwrap_or_default();
            if !s.gone && idle > self.inner.opts.upload_max_idle {
                self.discard_locked(&id, &mut s)?;
                n += 1;
            }
        }
        Ok(n)
    }
}
