//! Blob lookups, monolithic pushes, repository links and space reports.

use redb::ReadableTable;

use super::error::StorageError;
use super::index::ops::{BlobCommit, Op, Out};
use super::index::schema::*;
use super::read::{BlobData, Pins};
use super::segment::io::SegmentPin;
use super::segment::log::Extent;
use super::store::Store;
use super::types::*;
use crate::oci::digest::{Digest, Hasher};
use std::sync::Arc;

impl Store {
    /// Hashes the bytes of `extents` (after a restart, or for a non-sha256 digest).
    pub(crate) fn rehash(&self, mut h: Hasher, extents: &[Extent]) -> Result<Hasher, StorageError> {
        for e in extents {
            h.update(&self.read_extent(e)?);
        }
        Ok(h)
    }

    fn blob_entry(&self, digest: &Digest) -> Result<Option<(u64, Vec<Extent>)>, StorageError> {
        let txn = self.inner.db.begin_read()?;
        let t = txn.open_table(BLOBS)?;
        let v = t.get(&digest_key(digest)[..])?;
        v.map(|v| decode_blob(v.value())).transpose()
    }

    pub fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>, StorageError> {
        self.check_open()?;
        let _touch = self.inner.gate.touch(digest);
        Ok(self.blob_entry(digest)?.map(|(size, _)| BlobInfo {
            digest: digest.clone(),
            size,
        }))
    }

    /// A committed blob, never a partial one. Returns at once: each chunk is checked when a
    /// `BlobReader` reaches it, so a damaged chunk ends the read there with `Corrupt`. The
    /// blob's segments are pinned, so it stays readable whatever a compaction does meanwhile.
    pub fn get(&self, digest: &Digest) -> Result<Option<BlobData>, StorageError> {
        self.check_open()?;
        let _touch = self.inner.gate.touch(digest);
        // A compaction may delete a segment between the lookup and the pin; by then the index
        // names the blob's new place, so look again.
        let mut tries = 0;
        loop {
            let Some((size, extents)) = self.blob_entry(digest)? else {
                return Ok(None);
            };
            if extents.iter().map(|e| u64::from(e.len)).sum::<u64>() != size {
                return Err(StorageError::Corrupt(format!(
                    "blob {digest} extents do not add up"
                )));
            }
            match self.pin_all(&extents) {
                Ok(pins) => {
                    return Ok(Some(BlobData::new(
                        self.clone(),
                        digest.clone(),
                        size,
                        extents,
                        pins,
                    )))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 3 => tries += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn pin_all(&self, extents: &[Extent]) -> std::io::Result<Pins> {
        let io = self.inner.log.io();
        let mut pins: Vec<(u64, Arc<dyn SegmentPin>)> = Vec::new();
        for e in extents {
            if !pins.iter().any(|p| p.0 == e.segment) {
                pins.push((e.segment, io.pin(e.segment)?));
            }
        }
        Ok(pins.into())
    }

    /// Whether `digest` may be served from `repo`: linked there and present (a quarantined
    /// blob keeps its links until it is pushed again).
    pub fn repo_has_blob(&self, repo: &str, digest: &Digest) -> Result<bool, StorageError> {
        self.check_open()?;
        let _touch = self.inner.gate.touch(digest);
        let txn = self.inner.db.begin_read()?;
        let dk = digest_key(digest);
        Ok(txn
            .open_table(REPO_BLOBS)?
            .get(&repo_key(repo, &dk)[..])?
            .is_some()
            && txn.open_table(BLOBS)?.get(&dk[..])?.is_some())
    }

    pub fn link_blob(&self, repo: &str, digest: &Digest) -> Result<bool, StorageError> {
        self.check_open()?;
        match self.submit(Op::Link {
            repo: repo.to_string(),
            digest: digest.clone(),
            at_ms: now_ms(),
        })? {
            Out::Bool(b) => Ok(b),
            _ => Err(StorageError::Index("unexpected outcome".into())),
        }
    }

    pub fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool, StorageError> {
        self.check_open()?;
        match self.submit(Op::Unlink {
            repo: repo.to_string(),
            digest: digest.clone(),
            unless_referenced: false,
        })? {
            Out::Bool(b) => Ok(b),
            _ => Err(StorageError::Index("unexpected outcome".into())),
        }
    }

    /// Like [`Store::unlink_blob`], but refused with [`StorageError::BlobReferenced`] while a
    /// manifest of `repo` still references the blob (checked in the same transaction, so a
    /// manifest pushed meanwhile cannot lose its layer).
    pub fn unlink_unreferenced_blob(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<bool, StorageError> {
        self.check_open()?;
        match self.submit(Op::Unlink {
            repo: repo.to_string(),
            digest: digest.clone(),
            unless_referenced: true,
        })? {
            Out::Bool(b) => Ok(b),
            _ => Err(StorageError::Index("unexpected outcome".into())),
        }
    }

    /// Monolithic push: hash, write, commit in one call with the same guarantees as `commit`.
    pub fn put_blob(
        &self,
        repo: &str,
        expected: &Digest,
        data: &[u8],
    ) -> Result<BlobInfo, StorageError> {
        self.check_open()?;
        let actual = Digest::of(expected.algorithm(), data);
        if actual != *expected {
            return Err(StorageError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        // Already stored: link it, unless a collection swept it meanwhile (then write it).
        if self.blob_entry(expected)?.is_some() && self.link_blob(repo, expected)? {
            return Ok(BlobInfo {
                digest: expected.clone(),
                size: data.len() as u64,
            });
        }
        let _floor = self.inner.floors.hold(self.inner.log.active().0);
        let extents = self.write_blob_records(data)?;
        let op = Op::Commit(BlobCommit {
            session: None,
            repo: repo.to_string(),
            digest: expected.clone(),
            size: data.len() as u64,
            extents,
            at_ms: now_ms(),
        });
        self.submit(op)?.blob()
    }

    /// Writes `data` as chunk records under a fresh session id; the commit op that follows
    /// names the extents.
    pub(crate) fn write_blob_records(&self, data: &[u8]) -> Result<Vec<Extent>, StorageError> {
        let sid = UploadId::random()?;
        let mut extents = Vec::with_capacity(data.len() / self.inner.opts.chunk_record_bytes + 1);
        let mut off = 0u64;
        for chunk in data.chunks(self.inner.opts.chunk_record_bytes) {
            match self.write_chunk(&sid, off, chunk, false) {
                Ok(e) => extents.push(e),
                Err(e) => {
                    if !extents.is_empty() {
                        // The records that did land will never be part of a blob.
                        let _ = self.submit(Op::Discard {
                            session: None,
                            extents,
                        });
                    }
                    return Err(e);
                }
            }
            off += chunk.len() as u64;
        }
        Ok(extents)
    }

    /// Committed blobs in digest-key order after `last`, at most `n` (GC, scrub tools, tests).
    pub fn list_blobs(
        &self,
        last: Option<&Digest>,
        n: usize,
    ) -> Result<Vec<BlobInfo>, StorageError> {
        self.check_open()?;
        let txn = self.inner.db.begin_read()?;
        let t = txn.open_table(BLOBS)?;
        let after = last.map(digest_key);
        let iter = match &after {
            Some(a) => t.range::<&[u8]>((
                std::ops::Bound::Excluded(&a[..]),
                std::ops::Bound::Unbounded,
            ))?,
            None => t.iter()?,
        };
        let mut out = Vec::new();
        for r in iter.take(n) {
            let (k, v) = r?;
            let (digest, _) = decode_digest_key(k.value())?;
            let (size, _) = decode_blob(v.value())?;
            out.push(BlobInfo { digest, size });
        }
        Ok(out)
    }

    pub fn space(&self) -> SpaceStats {
        let ends = self.inner.log.ends();
        let space = self.inner.space.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = SpaceStats::default();
        for (&id, &size) in &ends {
            let (live, dead) = space.get(&id).copied().unwrap_or((0, 0));
            out.live_bytes += live;
            out.dead_bytes += dead;
            out.segments.push(SegmentSpace {
                id,
                size,
                live_bytes: live,
                dead_bytes: dead,
            });
        }
        out
    }

    pub fn open_uploads(&self) -> usize {
        self.inner.sessions_read().len()
    }
}
