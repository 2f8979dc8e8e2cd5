//! Where an export reads images from: a [`Store`], or (in `cli`) a running registry through the
//! distribution API. Only what selecting and writing a bundle needs.

use std::io::Read;

use crate::oci::digest::Digest;
use crate::storage::{Reference, Store, StoredManifest};

use super::error::BundleError;
use super::export::BlobRead;

pub trait Origin {
    fn repositories(&self) -> Result<Vec<String>, BundleError>;
    /// Every tag of `repo` (none for a repository that does not exist).
    fn tags(&self, repo: &str) -> Result<Vec<String>, BundleError>;
    fn manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>, BundleError>;
    /// The size of a blob `repo` serves.
    fn blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, BundleError>;
    /// The manifests whose subject is `digest`.
    fn referrers(&self, repo: &str, digest: &Digest) -> Result<Vec<Digest>, BundleError>;
    /// A blob's bytes, streamed.
    fn open_blob<'a>(
        &'a self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Box<dyn Read + 'a>, BundleError>;
    /// Every blob held, where the origin can list them (a store can; the API cannot).
    fn all_blobs(&self) -> Result<Option<Vec<Digest>>, BundleError> {
        Ok(None)
    }
}

/// Repositories, tags and blobs are listed this many at a time.
const PAGE: usize = 1000;

impl Origin for Store {
    fn repositories(&self) -> Result<Vec<String>, BundleError> {
        let mut out: Vec<String> = Vec::new();
        loop {
            let page = self.list_repositories(out.last().map(String::as_str), PAGE)?;
            let done = page.len() < PAGE;
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    fn tags(&self, repo: &str) -> Result<Vec<String>, BundleError> {
        let mut out: Vec<String> = Vec::new();
        loop {
            let Some(page) = self.list_tags(repo, out.last().map(String::as_str), PAGE)? else {
                return Ok(out);
            };
            let done = page.len() < PAGE;
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    fn manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>, BundleError> {
        Ok(self.get_manifest(repo, reference)?)
    }

    fn blob_size(&self, _repo: &str, digest: &Digest) -> Result<Option<u64>, BundleError> {
        Ok(self.stat(digest)?.map(|i| i.size))
    }

    fn referrers(&self, repo: &str, digest: &Digest) -> Result<Vec<Digest>, BundleError> {
        let list = Store::referrers(self, repo, digest)?;
        Ok(list.into_iter().map(|r| r.digest).collect())
    }

    fn open_blob<'a>(
        &'a self,
        _repo: &str,
        digest: &Digest,
    ) -> Result<Box<dyn Read + 'a>, BundleError> {
        let blob = self
            .get(digest)?
            .ok_or_else(|| BundleError::Missing(format!("blob {digest} left the store")))?;
        Ok(Box::new(BlobRead::new(blob.reader())))
    }

    fn all_blobs(&self) -> Result<Option<Vec<Digest>>, BundleError> {
        let mut out: Vec<Digest> = Vec::new();
        loop {
            let page = self.list_blobs(out.last(), PAGE)?;
            let done = page.len() < PAGE;
            out.extend(page.into_iter().map(|b| b.digest));
            if done {
                return Ok(Some(out));
            }
        }
    }
}
