//! Turns the bytes appended to an upload session into chunk records: the sha256 of the new
//! bytes runs on the calling thread while a second thread computes each record's blake3
//! trailer and writes it, from the caller's bytes (plus the session's buffered tail) without
//! first copying them into one buffer.

use std::time::SystemTime;

use super::error::StorageError;
use super::log::Extent;
use super::record::rec;
use super::store::Store;
use super::types::UploadId;
use super::uploads::Session;

/// Below this many bytes to hash in one call, starting a second thread costs more than the
/// overlap saves (small monolithic pushes, manifest-sized chunks).
const PARALLEL_MIN: usize = 256 << 10;

type Trailer = [u8; rec::TRAILER_LEN];

fn trailer_of(parts: &[&[u8]]) -> Trailer {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(p);
    }
    *h.finalize().as_bytes()
}

impl Store {
    /// Writes every record `data` completes and keeps the rest in the session's buffer. Each
    /// byte is hashed once by sha256 (here) and once by blake3 (on a scoped helper thread that
    /// also writes the records, concurrently), and written once. On a write error the session
    /// keeps exactly the prefix that was written, sha256 state included, so `status()` says
    /// where a client can resume.
    pub(crate) fn append_locked(
        &self,
        id: &UploadId,
        s: &mut Session,
        data: &[u8],
    ) -> Result<u64, StorageError> {
        self.ensure_hasher(s)?;
        s.touched = SystemTime::now();
        let cap = self.inner.opts.chunk_record_bytes.max(1);
        let head = if s.buf.is_empty() {
            0
        } else {
            (cap - s.buf.len()).min(data.len())
        };
        if !s.buf.is_empty() && s.buf.len() + head < cap {
            hash(s, data);
            self.keep(s, data);
            return Ok(s.len);
        }
        // Records completed here: `buf + data[..head]` (when something is buffered), then
        // whole records of `data`; `data[records_end..]` is the new buffered tail.
        let records_end = head + (data.len() - head) / cap * cap;
        let before = s.hasher.clone();
        let (extents, accepted, failed) = {
            let Session {
                buf, hasher, len, ..
            } = &mut *s;
            let buf: &[u8] = buf;
            let first_at = *len - buf.len() as u64;
            // blake3 and the writes do not depend on sha256: they run together with it.
            let write = || self.write_records(id, first_at, buf, &data[..records_end], head, cap);
            let mut sha = || {
                if let Some(h) = hasher.as_mut() {
                    h.update(data);
                }
            };
            if records_end + buf.len() >= PARALLEL_MIN {
                std::thread::scope(|scope| {
                    let helper = scope.spawn(write);
                    sha();
                    helper
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p))
                })
            } else {
                sha();
                write()
            }
        };
        if !s.buf.is_empty() && !extents.is_empty() {
            // A streaming session keeps its buffer instead of allocating one per record.
            s.buf.clear();
        }
        s.extents.extend(extents);
        s.len += accepted as u64;
        if let Some(err) = failed {
            // sha256 already covers all of `data`: rebuild it for the part that was kept.
            s.hasher = before.map(|mut h| {
                h.update(&data[..accepted]);
                h
            });
            return Err(err);
        }
        self.keep(s, &data[records_end..]);
        Ok(s.len)
    }

    /// Writes `buf + data[..head]` as one record (when `buf` holds anything), then `data[head..]`
    /// as whole records, stopping at the first failure. Returns the records written, how many
    /// bytes of `data` they hold, and the failure.
    fn write_records(
        &self,
        id: &UploadId,
        mut at: u64,
        buf: &[u8],
        data: &[u8],
        head: usize,
        cap: usize,
    ) -> (Vec<Extent>, usize, Option<StorageError>) {
        let mut out = Vec::with_capacity(data.len() / cap + 1);
        let mut accepted = 0;
        if !buf.is_empty() {
            let parts = [buf, &data[..head]];
            match self.write_chunk_parts(id, at, &parts, trailer_of(&parts)) {
                Ok(e) => {
                    out.push(e);
                    accepted = head;
                    at += (buf.len() + head) as u64;
                }
                Err(e) => return (out, 0, Some(e)),
            }
        }
        for record in data[head..].chunks(cap) {
            match self.write_chunk_parts(id, at, &[record], trailer_of(&[record])) {
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

    /// Buffers bytes (already hashed) that do not fill a record yet.
    fn keep(&self, s: &mut Session, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if s.buf.capacity() == 0 {
            s.buf
                .reserve_exact(self.inner.opts.chunk_record_bytes.min(1 << 20));
        }
        s.buf.extend_from_slice(bytes);
        s.len += bytes.len() as u64;
    }
}

fn hash(s: &mut Session, bytes: &[u8]) {
    if let Some(h) = s.hasher.as_mut() {
        h.update(bytes);
    }
}
