//! Blobs of an import on their way in: each streamed into an upload session of a repository no
//! client can name (the name grammar refuses a leading `_`), so the store hashes the bytes as
//! they are written and refuses a wrong digest at commit, while nothing is visible under a real
//! name yet. Blobs the store already holds are skipped, their bytes read past unwritten.

use std::io::{self, Read};
use std::sync::mpsc;

use bytes::Bytes;

use crate::oci::digest::{Algorithm, Digest, Hasher};
use crate::storage::{StorageError, Store, UploadId};

use super::error::BundleError;

/// What became of one file of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    pub digest: Digest,
    pub size: u64,
    /// Its first bytes (to tell a gzip layer from a plain tar).
    pub head: Vec<u8>,
    /// False when the store already held it and the bytes were skipped.
    pub written: bool,
}

/// Bytes read from the input per append: whole chunk records of the store, several at once.
const CHUNK: usize = 4 << 20;
/// Buffers read ahead of the one being stored.
const BUFFERS: usize = 3;
/// How many leading bytes [`Staged::head`] keeps.
const HEAD: usize = 8;

pub struct Staging<'s> {
    store: &'s Store,
    pub repo: String,
    /// Blobs linked into the staging repository, to unlink at the end.
    linked: Vec<Digest>,
    open: Option<UploadId>,
}

impl<'s> Staging<'s> {
    pub fn new(store: &'s Store) -> Result<Staging<'s>, BundleError> {
        let mut salt = [0u8; 8];
        getrandom::getrandom(&mut salt)
            .map_err(|e| BundleError::Storage(StorageError::Random(e.to_string())))?;
        Ok(Staging {
            store,
            repo: format!("_import/{}", hex::encode(salt)),
            linked: Vec::new(),
            open: None,
        })
    }

    /// Streams `size` bytes of `data` into the store. With `expected`, the store checks the
    /// digest at commit; without (docker-archive files are not named by digest), the digest is
    /// what the bytes hash to.
    pub fn stage(
        &mut self,
        path: &str,
        expected: Option<&Digest>,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<Staged, BundleError> {
        if let Some(d) = expected {
            if self.store.stat(d)?.is_some_and(|i| i.size == size) {
                let got = io::copy(&mut (&mut *data).take(size), &mut io::sink())?;
                if got != size {
                    return Err(truncated(path, size, got));
                }
                return Ok(Staged {
                    digest: d.clone(),
                    size,
                    head: self.stored_head(d)?,
                    written: false,
                });
            }
        }
        let id = self.store.begin_upload(&self.repo)?;
        self.open = Some(id);
        let mut hasher = expected.is_none().then(|| Hasher::new(Algorithm::Sha256));
        let (got, head) =
            self.write_while_reading(&id, &mut (&mut *data).take(size), &mut hasher)?;
        if got != size {
            return Err(truncated(path, size, got));
        }
        let digest = match (expected, hasher) {
            (Some(d), _) => d.clone(),
            (None, Some(h)) => h.finish(),
            (None, None) => return Err(BundleError::format("no digest")),
        };
        let committed = self.store.commit(&id, &digest);
        self.open = None;
        match committed {
            Ok(_) => {}
            Err(StorageError::DigestMismatch { expected, actual }) => {
                return Err(BundleError::DigestMismatch {
                    path: path.to_owned(),
                    expected,
                    actual,
                })
            }
            Err(e) => return Err(e.into()),
        }
        self.linked.push(digest.clone());
        Ok(Staged {
            digest,
            size,
            head,
            written: true,
        })
    }

    /// Appends everything `data` yields to upload `id` on a second thread while this one reads
    /// (and decompresses) the next buffer. The store hashes each buffer as it takes it and
    /// hands its records to its writer threads, as it does a pushed request body, so reading,
    /// sha256 and the writes all overlap. Returns the bytes read and the first [`HEAD`].
    fn write_while_reading(
        &self,
        id: &UploadId,
        data: &mut dyn Read,
        hasher: &mut Option<Hasher>,
    ) -> Result<(u64, Vec<u8>), BundleError> {
        let store = self.store;
        std::thread::scope(|scope| {
            let (full_tx, full_rx) = mpsc::sync_channel::<Bytes>(BUFFERS);
            let writer = scope.spawn(move || -> Result<(), StorageError> {
                let mut at = 0;
                for buf in full_rx {
                    at = store.append_owned(id, at, [buf])?;
                }
                Ok(())
            });
            let read = (|| -> Result<(u64, Vec<u8>), BundleError> {
                let (mut got, mut head) = (0u64, Vec::new());
                loop {
                    let mut buf = Vec::with_capacity(CHUNK);
                    let n = (&mut *data).take(CHUNK as u64).read_to_end(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    if head.len() < HEAD {
                        head.extend(buf.iter().take(HEAD - head.len()));
                    }
                    if let Some(h) = hasher.as_mut() {
                        h.update(&buf);
                    }
                    got += n as u64;
                    // A closed channel: the writer stopped, and says why below.
                    if full_tx.send(Bytes::from(buf)).is_err() {
                        break;
                    }
                }
                Ok((got, head))
            })();
            drop(full_tx);
            let written = writer
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            written?;
            read
        })
    }

    /// The first bytes of a stored blob.
    fn stored_head(&self, d: &Digest) -> Result<Vec<u8>, BundleError> {
        let Some(blob) = self.store.get(d)? else {
            return Ok(Vec::new());
        };
        let mut head = Vec::with_capacity(HEAD);
        for part in blob.range(0, HEAD as u64) {
            head.extend_from_slice(&part?);
        }
        Ok(head)
    }

    /// Drops the staging links: after a publish the real repositories link the blobs; after a
    /// refusal nothing does, and the next collection reclaims the bytes.
    pub fn finish(mut self) -> Result<(), BundleError> {
        self.release()
    }

    fn release(&mut self) -> Result<(), BundleError> {
        if let Some(id) = self.open.take() {
            // The session may be gone already (a refused commit ends it).
            let _ = self.store.abort(&id);
        }
        for d in std::mem::take(&mut self.linked) {
            self.store.unlink_blob(&self.repo, &d)?;
        }
        Ok(())
    }
}

impl Drop for Staging<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::warn!(error = %e, repo = %self.repo, "could not drop an import's staging links");
        }
    }
}

fn truncated(path: &str, expected: u64, got: u64) -> BundleError {
    BundleError::Truncated {
        path: path.to_owned(),
        expected,
        got,
    }
}
