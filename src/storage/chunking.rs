//! Turns the bytes appended to an upload session into chunk records: the sha256 of the new
//! bytes and the blake3 trailers of the records are computed on two threads at once, and each
//! record is written from the caller's bytes (plus the session's buffered tail) without first
//! being copied into one buffer.

use std::time::SystemTime;

use super::error::StorageError;
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
    /// byte is hashed once by sha256 (here) and once by blake3 (on a scoped helper thread,
    /// concurrently), and written once. On a write error the session keeps exactly the prefix
    /// that was written, sha256 state included, so `status()` says where a client can resume.
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
        let trailers = {
            let Session { buf, hasher, .. } = &mut *s;
            let buf: &[u8] = buf;
            let blake = || {
                let mut out = Vec::with_capacity(records_end / cap + 1);
                if !buf.is_empty() {
                    out.push(trailer_of(&[buf, &data[..head]]));
                }
                out.extend(
                    data[head..records_end]
                        .chunks(cap)
                        .map(|r| trailer_of(&[r])),
                );
                out
            };
            let mut sha = || {
                if let Some(h) = hasher.as_mut() {
                    h.update(data);
                }
            };
            if records_end + buf.len() >= PARALLEL_MIN {
                std::thread::scope(|scope| {
                    let helper = scope.spawn(blake);
                    sha();
                    helper
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p))
                })
            } else {
                sha();
                blake()
            }
        };
        let mut trailers = trailers.into_iter();
        let mut accepted = 0;
        let mut failed = None;
        if !s.buf.is_empty() {
            let at = s.len - s.buf.len() as u64;
            let t = trailers.next().unwrap_or_default();
            match self.write_chunk_parts(id, at, &[&s.buf, &data[..head]], t) {
                Ok(e) => {
                    s.extents.push(e);
                    // A streaming session keeps its buffer instead of allocating one per record.
                    s.buf.clear();
                    s.len += head as u64;
                    accepted = head;
                }
                Err(e) => failed = Some(e),
            }
        }
        if failed.is_none() {
            for (record, t) in data[head..records_end].chunks(cap).zip(trailers) {
                match self.write_chunk_parts(id, s.len, &[record], t) {
                    Ok(e) => {
                        s.extents.push(e);
                        s.len += record.len() as u64;
                        accepted += record.len();
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
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
