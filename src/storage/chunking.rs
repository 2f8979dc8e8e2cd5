//! Turns the bytes appended to an upload session into chunk records, hashing each byte once by
//! sha256 (on the calling thread) and once by blake3 (on a writer thread that also writes the
//! record), so the two hashes and the write overlap.
//!
//! Small appends are gathered in the session's `Tail`; each full record is handed to a writer
//! thread (`writers`) and written while the caller goes on hashing the next appends (up to
//! `RECORDS_IN_FLIGHT` per session, written in order). Each record's job learns where the
//! record before it will end as soon as that one is placed, and stages its own page-aligned
//! copy for that offset while the other is written, so the log mutex covers little more than
//! the disk write. A failed write surfaces at the session's next call, which cuts the session
//! back to the records written before it.
//! Appends of a record or more are written straight from the caller's bytes instead, without
//! a copy.

use std::sync::mpsc;
use std::time::SystemTime;

use bytes::Bytes;

use super::error::StorageError;
use super::segment::log::{Extent, WriteMode};
use super::session::{trailer_of, InFlight, Session, Written};
use super::store::Store;
use super::types::UploadId;

/// Records a session may have queued for the writer threads at once: enough that hashing the
/// next one never waits for a write in progress, few enough to bound a session's memory.
const RECORDS_IN_FLIGHT: usize = 4;

impl Store {
    /// Appends borrowed bytes. Less than a record is copied into the tail (and written by a
    /// writer thread once the tail fills a record); a record or more is written from `data`.
    pub(crate) fn append_locked(
        &self,
        id: &UploadId,
        s: &mut Session,
        data: &[u8],
    ) -> Result<u64, StorageError> {
        let cap = self.inner.opts.chunk_record_bytes.max(1);
        if data.len() < cap {
            return self.take_in(id, s, data.len(), |s| {
                hash(s, data);
                s.tail.push_slice(data);
            });
        }
        self.settle(s)?;
        self.ensure_hasher(s)?;
        s.touched = SystemTime::now();
        self.append_direct(id, s, data, cap)
    }

    /// Appends owned pieces (request body frames) without copying them: full records are
    /// handed to a writer thread as slices of the pieces.
    pub(crate) fn append_owned_locked(
        &self,
        id: &UploadId,
        s: &mut Session,
        pieces: impl IntoIterator<Item = Bytes>,
    ) -> Result<u64, StorageError> {
        // Piece by piece, so each record goes to a writer as soon as it is complete.
        let mut len = s.len;
        for piece in pieces {
            len = self.take_in(id, s, piece.len(), |s| {
                hash(s, &piece);
                s.tail.push(piece);
            })?;
        }
        Ok(len)
    }

    /// Lets `feed` hash `n` new bytes and add them to the tail, then hands every full record
    /// the tail holds to a writer thread.
    fn take_in(
        &self,
        id: &UploadId,
        s: &mut Session,
        n: usize,
        feed: impl FnOnce(&mut Session),
    ) -> Result<u64, StorageError> {
        // A write that failed since the last call cuts the session back before anything new
        // is accepted.
        while s
            .in_flight
            .front_mut()
            .is_some_and(|f| f.pending.is_finished())
        {
            self.settle_oldest(s)?;
        }
        self.ensure_hasher(s)?;
        let room = self.reserve_tail(id, s, n)?;
        s.touched = SystemTime::now();
        let before = s.tail.len();
        feed(s);
        s.len += (s.tail.len() - before) as u64;
        let cap = self.inner.opts.chunk_record_bytes.max(1);
        while s.tail.len() >= cap {
            if s.in_flight.len() >= RECORDS_IN_FLIGHT {
                self.settle_oldest(s)?;
            }
            let at = s.len - s.tail.len() as u64;
            let record = s.tail.split_to(cap);
            self.hand_off(id, s, at, record)?;
        }
        drop(room);
        Ok(s.len)
    }

    /// Queues one full record for a writer thread to hash and write. Its trailer is hashed
    /// while the record before it may still be written; its write waits for that one, so a
    /// session's records enter the log in blob order.
    fn hand_off(
        &self,
        id: &UploadId,
        s: &mut Session,
        at: u64,
        record: Vec<Bytes>,
    ) -> Result<(), StorageError> {
        let log = self.inner.log.clone();
        let id = *id;
        let before = s.in_flight.back_mut().and_then(|f| f.progress.take());
        let (progress, progress_rx) = mpsc::sync_channel(2);
        let write = move || {
            let parts: Vec<&[u8]> = record.iter().map(|b| &b[..]).collect();
            let trailer = trailer_of(&parts);
            let mut staged = None;
            if let Some(before) = before {
                // The sender of a failed (or panicked) write is dropped without a word.
                loop {
                    match before.recv() {
                        Ok(Written::Placed(end)) => {
                            staged = log.stage_chunk(&id, at, &parts, trailer, end);
                        }
                        Ok(Written::Done) => break,
                        Err(_) => {
                            return Err(StorageError::Io(std::io::Error::other(
                                "an earlier chunk record of this upload failed",
                            )))
                        }
                    }
                }
            }
            // Up to four records queued per session hide the disk's latency.
            let mode = WriteMode::Uncached {
                staged,
                placed: &mut |end| {
                    let _ = progress.send(Written::Placed(end));
                },
            };
            let extent = log.append_chunk(&id, at, &parts, trailer, mode)?;
            let _ = progress.send(Written::Done);
            Ok(extent)
        };
        match self.inner.writers.submit(write) {
            Ok(pending) => {
                s.in_flight.push_back(InFlight {
                    at,
                    pending,
                    progress: Some(progress_rx),
                });
                Ok(())
            }
            Err(e) => {
                // Without a writer thread the bytes went with the job: cut back as for a
                // failed write (after the records before it).
                self.settle(s)?;
                self.cut_back(s, at);
                Err(StorageError::from_io(e))
            }
        }
    }

    /// Waits for every record in flight; on failure cuts the session back to the records
    /// written before the first that failed and returns its error.
    pub(crate) fn settle(&self, s: &mut Session) -> Result<(), StorageError> {
        while !s.in_flight.is_empty() {
            self.settle_oldest(s)?;
        }
        Ok(())
    }

    /// Waits for the oldest record in flight. If it failed, the records after it fail too
    /// without being written; the session is cut back to where it started.
    fn settle_oldest(&self, s: &mut Session) -> Result<(), StorageError> {
        let Some(f) = s.in_flight.pop_front() else {
            return Ok(());
        };
        let at = f.at;
        match f.pending.wait() {
            Ok(Ok(extent)) => {
                s.extents.push(extent);
                Ok(())
            }
            Ok(Err(e)) => {
                // Waiting on each later record (their `Pending` drop does) keeps any of them
                // from landing behind the cut.
                s.in_flight.clear();
                self.cut_back(s, at);
                Err(e)
            }
            Err(panic) => {
                s.in_flight.clear();
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// Drops everything from blob offset `at` on (nothing of it is in the log); sha256 is
    /// rebuilt from the written records at the next append or commit.
    fn cut_back(&self, s: &mut Session, at: u64) {
        s.len = at;
        s.tail.clear();
        s.hasher = None;
    }

    /// Writes every record `tail + data` completes straight from `data`, while sha256 of
    /// `data` runs here and blake3 plus the writes run on a scoped helper thread; the rest of
    /// `data` goes to the tail. On a write error the session keeps exactly the prefix that was
    /// written, sha256 state included, so `status()` says where a client can resume.
    fn append_direct(
        &self,
        id: &UploadId,
        s: &mut Session,
        data: &[u8],
        cap: usize,
    ) -> Result<u64, StorageError> {
        // Taken before anything is written, so a refusal changes nothing (making room may
        // write this session's tail, hence before `head`).
        let room = self.reserve_tail(id, s, data.len())?;
        // Records completed here: `tail + first` (when the tail holds anything), then `whole`
        // records of `data`; `rest` is the new tail.
        let head = if s.tail.is_empty() {
            0
        } else {
            cap - s.tail.len()
        };
        // `append_locked` sends a record or more here, so `data` covers what the tail lacks.
        let (first, after) = data.split_at(head);
        let (whole, rest) = after.split_at(after.len() / cap * cap);
        let before = s.hasher.clone();
        let (extents, accepted, failed) = {
            let Session {
                tail, hasher, len, ..
            } = &mut *s;
            let first_at = *len - tail.len() as u64;
            let tail: Vec<&[u8]> = tail.parts().collect();
            let write = || self.write_records(id, first_at, &tail, first, whole, cap);
            std::thread::scope(|scope| {
                let helper = scope.spawn(write);
                if let Some(h) = hasher.as_mut() {
                    h.update(data);
                }
                helper
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
        };
        if head > 0 && !extents.is_empty() {
            s.tail.clear();
        }
        s.extents.extend(extents);
        s.len += accepted as u64;
        if let Some(err) = failed {
            // sha256 already covers all of `data`: rebuild it for the part that was kept.
            let (kept, _) = data.split_at(accepted);
            s.hasher = before.map(|mut h| {
                h.update(kept);
                h
            });
            return Err(err);
        }
        s.tail.push_slice(rest);
        s.len += rest.len() as u64;
        drop(room);
        Ok(s.len)
    }

    /// Writes `tail + first` as one record (when `tail` holds anything), then `whole` as whole
    /// records, stopping at the first failure. Returns the records written, how many bytes of
    /// `first` and `whole` they hold, and the failure.
    fn write_records(
        &self,
        id: &UploadId,
        mut at: u64,
        tail: &[&[u8]],
        first: &[u8],
        whole: &[u8],
        cap: usize,
    ) -> (Vec<Extent>, usize, Option<StorageError>) {
        let mut out = Vec::with_capacity(whole.len() / cap + 1);
        let mut accepted = 0;
        if !tail.is_empty() {
            let mut parts = tail.to_vec();
            parts.push(first);
            let len: usize = parts.iter().map(|p| p.len()).sum();
            match self.inner.log.append_chunk(
                id,
                at,
                &parts,
                trailer_of(&parts),
                WriteMode::Buffered,
            ) {
                Ok(e) => {
                    out.push(e);
                    accepted = first.len();
                    at += len as u64;
                }
                Err(e) => return (out, 0, Some(e)),
            }
        }
        for record in whole.chunks_exact(cap) {
            match self.inner.log.append_chunk(
                id,
                at,
                &[record],
                trailer_of(&[record]),
                WriteMode::Buffered,
            ) {
                Ok(e) => {
                    out.push(e);
                    accepted += record.len();
                    at += record.len() as u64;
                }
                Err(e) => return (out, accepted, Some(e)),
            }
        }
        (out, accepted, None)
    }
}

fn hash(s: &mut Session, bytes: &[u8]) {
    if let Some(h) = s.hasher.as_mut() {
        h.update(bytes);
    }
}
