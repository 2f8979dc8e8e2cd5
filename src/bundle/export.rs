//! Writes a selection as one bundle: a tar streamed to any writer, never assembled in memory or
//! on disk first. The contents manifest (and its signature) come first, then `oci-layout`, the
//! blobs, the manifests, and `index.json` last. Headers carry no time or owner, so the same
//! selection always makes the same bytes.

use std::collections::HashSet;
use std::io::{self, Read, Write};

use bytes::Bytes;

use crate::oci::digest::Digest;
use crate::storage::{BlobReader, Reference, StorageError};

use super::contents::{
    BlobEntry, Contents, ManifestEntry, CONTENTS_FILE, FORMAT_VERSION, SIGNATURE_FILE,
};
use super::error::BundleError;
use super::layout::{blob_path, Index, IndexEntry, INDEX_FILE, OCI_LAYOUT_BODY, OCI_LAYOUT_FILE};
use super::origin::Origin;
use super::select::Selection;
use super::sign::Signer;

/// The contents manifest of `sel`, leaving out what the receiver already has (`have`).
pub fn contents(sel: &Selection, have: &HashSet<Digest>) -> Contents {
    let mut shipped: HashSet<Digest> = HashSet::new();
    let mut ship = |d: &Digest| -> bool { !have.contains(d) && shipped.insert(d.clone()) };
    // Only `ship` decides: a manifest in two repositories is in the tar once.
    let mut manifests = Vec::with_capacity(sel.manifests.len());
    let mut blobs = Vec::with_capacity(sel.blobs.len());
    for b in &sel.blobs {
        blobs.push(BlobEntry {
            digest: b.digest.clone(),
            size: b.size,
            shipped: ship(&b.digest),
            repository: b.repo.clone(),
        });
    }
    for m in &sel.manifests {
        manifests.push(ManifestEntry {
            repository: m.repo.clone(),
            digest: m.digest.clone(),
            media_type: m.media_type.clone(),
            size: m.size,
            tags: m.tags.clone(),
            shipped: ship(&m.digest),
        });
    }
    Contents {
        format: FORMAT_VERSION,
        refs: sel.refs.clone(),
        manifests,
        blobs,
    }
}

/// `index.json`: one entry per exported reference.
pub fn index(sel: &Selection) -> Index {
    let by_digest: std::collections::HashMap<&Digest, &super::select::SelectedManifest> =
        sel.manifests.iter().map(|m| (&m.digest, m)).collect();
    let entries = sel
        .refs
        .iter()
        .filter_map(|(name, digest)| {
            let m = by_digest.get(digest)?;
            Some(IndexEntry::named(&m.media_type, digest, m.size, name))
        })
        .collect();
    Index::new(entries)
}

/// Streams the bundle of `sel` into `out`; `progress` hears the blob bytes written so far.
pub fn write<W: Write>(
    store: &dyn Origin,
    sel: &Selection,
    have: &HashSet<Digest>,
    signer: Option<&Signer>,
    out: W,
    progress: &mut dyn FnMut(u64),
) -> Result<(Contents, W), BundleError> {
    let contents = contents(sel, have);
    let contents_json = serde_json::to_vec_pretty(&contents)
        .map_err(|e| BundleError::format(format!("contents manifest: {e}")))?;
    let mut tar = tar::Builder::new(out);
    put(&mut tar, CONTENTS_FILE, &contents_json)?;
    if let Some(signer) = signer {
        put(
            &mut tar,
            SIGNATURE_FILE,
            signer.sign(&contents_json)?.as_bytes(),
        )?;
    }
    put(&mut tar, OCI_LAYOUT_FILE, OCI_LAYOUT_BODY)?;
    let mut written = 0u64;
    let homes: std::collections::HashMap<&Digest, &str> = sel
        .blobs
        .iter()
        .map(|b| (&b.digest, b.repo.as_str()))
        .collect();
    for b in contents.blobs.iter().filter(|b| b.shipped) {
        let repo = homes.get(&b.digest).copied().unwrap_or_default();
        let reader = Exact {
            inner: store.open_blob(repo, &b.digest)?,
            left: b.size,
        };
        tar.append_data(&mut header(b.size), blob_path(&b.digest), reader)?;
        written += b.size;
        progress(written);
    }
    for m in contents.manifests.iter().filter(|m| m.shipped) {
        let body = store
            .manifest(&m.repository, &Reference::Digest(m.digest.clone()))?
            .ok_or_else(|| BundleError::Missing(format!("manifest {} went away", m.digest)))?
            .body;
        if body.len() as u64 != m.size {
            return Err(BundleError::Missing(format!(
                "manifest {} changed size",
                m.digest
            )));
        }
        put(&mut tar, &blob_path(&m.digest), &body)?;
        written += m.size;
        progress(written);
    }
    let index_json = serde_json::to_vec_pretty(&index(sel))
        .map_err(|e| BundleError::format(format!("index.json: {e}")))?;
    put(&mut tar, INDEX_FILE, &index_json)?;
    let out = tar.into_inner()?;
    Ok((contents, out))
}

fn header(size: u64) -> tar::Header {
    // GNU headers: sizes past 8 GiB, which ustar cannot say, are common for model layers.
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn put<W: Write>(tar: &mut tar::Builder<W>, path: &str, body: &[u8]) -> Result<(), BundleError> {
    let mut h = header(body.len() as u64);
    tar.append_data(&mut h, path, body)?;
    Ok(())
}

/// A blob's chunks as `Read`, straight from the segment maps (checked by the store's read
/// verification, never hashed again).
pub struct BlobRead {
    chunks: BlobReader,
    current: Bytes,
}

impl BlobRead {
    pub fn new(chunks: BlobReader) -> BlobRead {
        BlobRead {
            chunks,
            current: Bytes::new(),
        }
    }
}

impl Read for BlobRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.next() {
                None => return Ok(0),
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(storage_io(e)),
            }
        }
        let n = (&*self.current).read(buf)?;
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

fn storage_io(e: StorageError) -> io::Error {
    match e {
        StorageError::Io(io) => io,
        other => io::Error::other(other.to_string()),
    }
}

/// Fails instead of ending early: the tar writer pads a short entry silently, which would
/// shift every later header.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let (buf, _) = buf.split_at_mut(max);
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "blob ended before its size",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}
