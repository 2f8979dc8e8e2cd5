//! Blob reads: a committed blob as a list of extents whose chunk records are checked one by
//! one, just before their bytes are handed out (storage-format.md section 8).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::error::StorageError;
use super::segment::io::SegmentPin;
use super::segment::log::Extent;
use super::segment::record::{rec, trailer};
use super::store::Store;
use super::types::ReadVerification;
use crate::oci::digest::Digest;

/// A committed blob: where its bytes are, not the bytes. Nothing is read or checked until a
/// [`BlobReader`] asks for an extent, so a large blob starts streaming at once.
#[derive(Clone, Debug)]
pub struct BlobData {
    pub digest: Digest,
    pub size: u64,
    extents: Arc<[Extent]>,
    /// The segments the extents are in, held open so a compaction that moves the blob and
    /// deletes them meanwhile never leaves this read with a hole.
    pins: Pins,
    store: Store,
}

/// Segment id -> pinned segment, for the few segments one blob spans.
pub(crate) type Pins = Arc<[(u64, Arc<dyn SegmentPin>)]>;

impl BlobData {
    pub(crate) fn new(
        store: Store,
        digest: Digest,
        size: u64,
        extents: Vec<Extent>,
        pins: Pins,
    ) -> BlobData {
        BlobData {
            digest,
            size,
            extents: extents.into(),
            pins,
            store,
        }
    }

    /// Number of chunk records the blob is made of.
    pub fn extent_count(&self) -> usize {
        self.extents.len()
    }

    /// The whole blob, extent by extent.
    pub fn reader(&self) -> BlobReader {
        self.range(0, self.size)
    }

    /// The bytes in `start..end_exclusive` (clamped to the blob). Only the extents this range
    /// touches are read, and each is checked whole (its trailer covers the whole payload).
    pub fn range(&self, start: u64, end_exclusive: u64) -> BlobReader {
        let end = end_exclusive.min(self.size);
        BlobReader {
            store: self.store.clone(),
            extents: self.extents.clone(),
            pins: self.pins.clone(),
            next: 0,
            pos: 0,
            start: start.min(end),
            end,
            failed: false,
        }
    }

    /// The whole blob in one buffer (manifests, tests); zero-copy when it is one extent.
    pub fn read_all(&self) -> Result<Bytes, StorageError> {
        let mut r = self.reader();
        let Some(first) = r.next().transpose()? else {
            return Ok(Bytes::new());
        };
        if r.remaining() == 0 {
            return Ok(first);
        }
        let mut b = BytesMut::with_capacity(self.size as usize);
        b.extend_from_slice(&first);
        for part in r {
            b.extend_from_slice(&part?);
        }
        Ok(b.freeze())
    }
}

/// Yields a blob's bytes as zero-copy slices of the segment maps, one extent at a time, each
/// checked (as the store's [`ReadVerification`] says) just before it is yielded. After an
/// error it yields nothing more: a consumer never gets a byte past a damaged one.
#[derive(Debug)]
pub struct BlobReader {
    store: Store,
    extents: Arc<[Extent]>,
    pins: Pins,
    /// Index of the next extent to look at, and the blob offset where it starts.
    next: usize,
    pos: u64,
    start: u64,
    end: u64,
    failed: bool,
}

impl BlobReader {
    /// Bytes still to be yielded (if nothing fails).
    pub fn remaining(&self) -> u64 {
        if self.failed {
            0
        } else {
            self.end - self.start
        }
    }
}

impl Iterator for BlobReader {
    type Item = Result<Bytes, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.remaining() > 0 {
            let e = *self.extents.get(self.next)?;
            let (lo, hi) = (self.pos, self.pos + u64::from(e.len));
            self.next += 1;
            self.pos = hi;
            if hi <= self.start {
                continue; // before the range: neither read nor checked
            }
            let Some(pin) = self.pins.iter().find(|p| p.0 == e.segment) else {
                self.failed = true;
                return Some(Err(StorageError::Corrupt(format!(
                    "segment {} of a blob is not pinned",
                    e.segment
                ))));
            };
            let data = match self.store.read_checked(pin.1.as_ref(), &e) {
                Ok(d) => d,
                Err(err) => {
                    self.failed = true;
                    return Some(Err(err));
                }
            };
            let take_hi = hi.min(self.end);
            let part = data.slice((self.start - lo) as usize..(take_hi - lo) as usize);
            self.start = take_hi;
            return Some(Ok(part));
        }
        None
    }
}

impl Store {
    /// Whether a read of `e` would hash it under the store's policy.
    fn needs_check(&self, e: &Extent) -> bool {
        match self.inner.opts.read_verification {
            ReadVerification::Always => true,
            ReadVerification::Once => !self.inner.verified.contains(e),
            ReadVerification::Off => false,
        }
    }

    /// Reads one chunk payload from its pinned segment, checking its trailer when the policy
    /// asks for it.
    pub(crate) fn read_checked(
        &self,
        pin: &dyn SegmentPin,
        e: &Extent,
    ) -> Result<Bytes, StorageError> {
        if self.needs_check(e) {
            let data =
                self.check_extent(e, pin.read(e.offset, e.len as usize + rec::TRAILER_LEN)?)?;
            if self.inner.opts.read_verification == ReadVerification::Once {
                self.inner.verified.insert(*e);
            }
            Ok(data)
        } else {
            Ok(pin.read(e.offset, e.len as usize)?)
        }
    }

    /// Reads one chunk payload and always checks its blake3 trailer. A mismatch is logged and
    /// counted, and fails the read.
    pub(crate) fn read_extent(&self, e: &Extent) -> Result<Bytes, StorageError> {
        // Payload and trailer are adjacent: one read (and one bounds check) for both.
        let rec =
            self.inner
                .log
                .io()
                .read(e.segment, e.offset, e.len as usize + rec::TRAILER_LEN)?;
        self.check_extent(e, rec)
    }

    /// Checks a payload read together with its trailer; returns the payload.
    fn check_extent(&self, e: &Extent, rec: Bytes) -> Result<Bytes, StorageError> {
        let len = e.len as usize;
        let Some((data, _)) = rec
            .split_at_checked(len)
            .filter(|(data, sum)| trailer(data) == **sum)
        else {
            let n = self.inner.corrupt_reads.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::error!(
                segment = e.segment,
                offset = e.offset,
                len = e.len,
                corrupt_reads = n,
                "chunk checksum mismatch: refusing to serve the damaged chunk"
            );
            return Err(StorageError::Corrupt(format!(
                "chunk checksum mismatch in segment {} at {}",
                e.segment, e.offset
            )));
        };
        Ok(rec.slice_ref(data))
    }

    /// Chunk records that failed their checksum on a read since the store was opened.
    pub fn corrupt_reads(&self) -> u64 {
        self.inner.corrupt_reads.load(Ordering::Relaxed)
    }

    /// Chunk records currently remembered as verified (policy `Once`).
    pub fn verified_extents(&self) -> usize {
        self.inner.verified.len()
    }
}
