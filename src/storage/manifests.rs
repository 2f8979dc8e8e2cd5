//! Manifests, tags, referrers and repository listings on top of the blob store.

use redb::ReadableTable;

use super::error::StorageError;
use super::index::ops::{BlobCommit, ManifestCommit, Op, Out, ReferrerValue};
use super::index::schema::*;
use super::store::Store;
use super::types::{now_ms, ManifestHead, ManifestPut, Reference, Referrer, StoredManifest};
use crate::oci::digest::Digest;

fn expect_bool(out: Out) -> Result<bool, StorageError> {
    match out {
        Out::Bool(b) => Ok(b),
        _ => Err(StorageError::Index("unexpected outcome".into())),
    }
}

impl Store {
    /// Stores the body as a blob and publishes manifest, tags and referrer in one durable
    /// transaction, after checking that every reference is present in `repo`.
    pub fn put_manifest(&self, repo: &str, m: &ManifestPut) -> Result<(), StorageError> {
        self.put_manifest_checked(repo, m, true)
    }

    /// Like [`Store::put_manifest`] without requiring the references to be present: a
    /// pull-through cache stores a manifest it fetched before the blobs and child manifests
    /// it names, which clients fetch (and the cache stores) next.
    pub fn put_cached_manifest(&self, repo: &str, m: &ManifestPut) -> Result<(), StorageError> {
        self.put_manifest_checked(repo, m, false)
    }

    fn put_manifest_checked(
        &self,
        repo: &str,
        m: &ManifestPut,
        check_references: bool,
    ) -> Result<(), StorageError> {
        self.check_open()?;
        let actual = Digest::of(m.digest.algorithm(), &m.body);
        if actual != m.digest {
            return Err(StorageError::DigestMismatch {
                expected: m.digest.clone(),
                actual,
            });
        }
        // Cheap early refusal; the commit transaction checks again.
        for r in m.references.iter().filter(|_| check_references) {
            if *r != m.digest && !self.repo_has_blob(repo, r)? {
                return Err(StorageError::ManifestBlobUnknown(r.clone()));
            }
        }
        let _floor = self.inner.floors.hold(self.inner.log.active().0);
        let pending = !check_references;
        match self.put_manifest_once(repo, m, self.stat(&m.digest)?.is_none(), pending) {
            // The stored body was swept between the lookup and the commit: write it after all.
            Err(StorageError::BlobUnknown(d)) if d == m.digest => {
                self.put_manifest_once(repo, m, true, pending)
            }
            other => other,
        }
    }

    fn put_manifest_once(
        &self,
        repo: &str,
        m: &ManifestPut,
        write_body: bool,
        references_pending: bool,
    ) -> Result<(), StorageError> {
        let extents = if write_body {
            self.write_blob_records(&m.body)?
        } else {
            Vec::new()
        };
        let meta = ManifestMeta {
            media_type: m.media_type.clone(),
            size: m.body.len() as u64,
            subject: m.subject.as_ref().map(|d| d.to_string()),
            artifact_type: m.artifact_type.clone(),
            annotations: m.annotations.clone(),
            pushed_ms: now_ms(),
        };
        self.submit(Op::PutManifest(Box::new(ManifestCommit {
            blob: BlobCommit {
                session: None,
                repo: repo.to_string(),
                digest: m.digest.clone(),
                size: m.body.len() as u64,
                extents,
                at_ms: meta.pushed_ms,
            },
            meta,
            tags: m.tags.clone(),
            references: m.references.clone(),
            subject: m.subject.clone(),
            references_pending,
        })))
        .map(|_| ())
    }

    pub fn get_manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>, StorageError> {
        self.check_open()?;
        let Some((digest, meta)) = self.find_manifest(repo, reference)? else {
            return Ok(None);
        };
        let Some(blob) = self.get(&digest)? else {
            return Err(StorageError::Corrupt(format!(
                "manifest {digest} has no blob"
            )));
        };
        let body = blob.read_all()?;
        Ok(Some(StoredManifest {
            digest,
            media_type: meta.media_type,
            body,
        }))
    }

    /// What a `HEAD` of a manifest answers, from the index alone: a rollout resolves tags
    /// far more often than it fetches manifests, and the bytes are not needed for that.
    pub fn manifest_head(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<ManifestHead>, StorageError> {
        self.check_open()?;
        Ok(self
            .find_manifest(repo, reference)?
            .map(|(digest, meta)| ManifestHead {
                digest,
                media_type: meta.media_type,
                size: meta.size,
            }))
    }

    /// The digest and metadata of `reference` in `repo`, in one read transaction.
    fn find_manifest(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<(Digest, ManifestMeta)>, StorageError> {
        let txn = self.inner.db.begin_read()?;
        let dk = match reference {
            Reference::Digest(d) => digest_key(d),
            Reference::Tag(t) => {
                let tags = txn.open_table(TAGS)?;
                let v = tags.get(&repo_key(repo, t.as_bytes())[..])?;
                match v {
                    Some(v) => decode_tag(v.value())?.0.to_vec(),
                    None => return Ok(None),
                }
            }
        };
        let manifests = txn.open_table(MANIFESTS)?;
        let meta: ManifestMeta = match manifests.get(&repo_key(repo, &dk)[..])? {
            Some(v) => from_json(v.value())?,
            None => return Ok(None),
        };
        let (digest, _) = decode_digest_key(&dk)?;
        Ok(Some((digest, meta)))
    }

    pub fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<bool, StorageError> {
        self.check_open()?;
        expect_bool(self.submit(Op::DeleteManifest {
            repo: repo.to_string(),
            digest: digest.clone(),
        })?)
    }

    pub fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool, StorageError> {
        self.check_open()?;
        expect_bool(self.submit(Op::DeleteTag {
            repo: repo.to_string(),
            tag: tag.to_string(),
        })?)
    }

    pub fn list_tags(
        &self,
        repo: &str,
        last: Option<&str>,
        n: usize,
    ) -> Result<Option<Vec<String>>, StorageError> {
        self.check_open()?;
        let txn = self.inner.db.begin_read()?;
        if txn.open_table(REPOS)?.get(repo)?.is_none() {
            return Ok(None);
        }
        let tags = txn.open_table(TAGS)?;
        let (lo, hi) = prefix_range(repo, b"");
        let mut out = Vec::new();
        let after = last.map(|l| repo_key(repo, l.as_bytes()));
        let iter = match &after {
            Some(a) => tags.range::<&[u8]>((
                std::ops::Bound::Excluded(&a[..]),
                std::ops::Bound::Excluded(&hi[..]),
            ))?,
            None => tags.range(&lo[..]..&hi[..])?,
        };
        for r in iter {
            if out.len() >= n {
                break;
            }
            let (k, _) = r?;
            let name = String::from_utf8(key_after(k.value(), &lo)?.to_vec())
                .map_err(|_| StorageError::Corrupt("tag not utf-8".into()))?;
            out.push(name);
        }
        Ok(Some(out))
    }

    /// The tags of `repo` that name the manifest `digest`.
    pub fn tags_of(&self, repo: &str, digest: &Digest) -> Result<Vec<String>, StorageError> {
        self.check_open()?;
        let txn = self.inner.db.begin_read()?;
        let tags = txn.open_table(TAGS)?;
        let (lo, hi) = prefix_range(repo, b"");
        let want = digest_key(digest);
        let mut out = Vec::new();
        for r in tags.range(&lo[..]..&hi[..])? {
            let (k, v) = r?;
            if decode_tag(v.value())?.0 == &want[..] {
                out.push(
                    String::from_utf8(key_after(k.value(), &lo)?.to_vec())
                        .map_err(|_| StorageError::Corrupt("tag not utf-8".into()))?,
                );
            }
        }
        Ok(out)
    }

    pub fn list_repositories(
        &self,
        last: Option<&str>,
        n: usize,
    ) -> Result<Vec<String>, StorageError> {
        self.check_open()?;
        let txn = self.inner.db.begin_read()?;
        let repos = txn.open_table(REPOS)?;
        let iter = match last {
            Some(l) => {
                repos.range::<&str>((std::ops::Bound::Excluded(l), std::ops::Bound::Unbounded))?
            }
            None => repos.iter()?,
        };
        let mut out = Vec::new();
        for r in iter.take(n) {
            out.push(r?.0.value().to_string());
        }
        Ok(out)
    }

    pub fn repository_exists(&self, repo: &str) -> Result<bool, StorageError> {
        self.check_open()?;
        let txn = self.inner.db.begin_read()?;
        Ok(txn.open_table(REPOS)?.get(repo)?.is_some())
    }

    pub fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Referrer>, StorageError> {
        self.check_open()?;
        let txn = self.inner.db.begin_read()?;
        let t = txn.open_table(REFERRERS)?;
        let sk = digest_key(subject);
        let (lo, hi) = prefix_range(repo, &sk);
        let mut out = Vec::new();
        for r in t.range(&lo[..]..&hi[..])? {
            let (k, v) = r?;
            let (digest, _) = decode_digest_key(key_after(k.value(), &lo)?)?;
            let rv: ReferrerValue = from_json(v.value())?;
            out.push(rv.into_referrer(digest));
        }
        Ok(out)
    }
}

/// One manifest of a repository, with what a caller choosing what to drop needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRow {
    pub repo: String,
    pub digest: Digest,
    /// When it was stored (ms since the epoch; 0 for manifests of format version 1).
    pub pushed_ms: u64,
    /// Its own size plus the sizes of the stored blobs it references.
    pub bytes: u64,
    /// Blobs and child manifests it names (not itself).
    pub references: Vec<Digest>,
    pub tags: Vec<String>,
}

impl Store {
    /// Every manifest of the repositories whose names start with `<prefix>/` (the pull-through
    /// cache's eviction picks among them), from one snapshot.
    pub fn manifests_under(&self, prefix: &str) -> Result<Vec<ManifestRow>, StorageError> {
        self.check_open()?;
        let txn = self.inner.db.begin_read()?;
        // '0' follows '/': the range holds exactly the keys of repositories under `prefix/`.
        let (lo, hi) = (format!("{prefix}/"), format!("{prefix}0"));
        let (lo, hi) = (lo.as_bytes(), hi.as_bytes());
        let mut tags: std::collections::HashMap<(String, Vec<u8>), Vec<String>> =
            std::collections::HashMap::new();
        for r in txn.open_table(TAGS)?.range(lo..hi)? {
            let (k, v) = r?;
            let (repo, tag) = split_repo_key(k.value())?;
            let tag = String::from_utf8(tag.to_vec())
                .map_err(|_| StorageError::Corrupt("tag not utf-8".into()))?;
            let dk = decode_tag(v.value())?.0.to_vec();
            tags.entry((repo.to_owned(), dk)).or_default().push(tag);
        }
        let refs_t = txn.open_table(MANIFEST_REFS)?;
        let blobs = txn.open_table(BLOBS)?;
        let mut out = Vec::new();
        for r in txn.open_table(MANIFESTS)?.range(lo..hi)? {
            let (k, v) = r?;
            let (repo, dk) = split_repo_key(k.value())?;
            let meta: ManifestMeta = from_json(v.value())?;
            let references = match refs_t.get(k.value())? {
                Some(v) => decode_digest_keys(v.value())?,
                None => Vec::new(),
            };
            let mut bytes = meta.size;
            for d in &references {
                if let Some(b) = blobs.get(&digest_key(d)[..])? {
                    bytes += decode_blob(b.value())?.0;
                }
            }
            out.push(ManifestRow {
                repo: repo.to_owned(),
                digest: decode_digest_key(dk)?.0,
                pushed_ms: meta.pushed_ms,
                bytes,
                references,
                tags: tags
                    .remove(&(repo.to_owned(), dk.to_vec()))
                    .unwrap_or_default(),
            });
        }
        Ok(out)
    }
}
