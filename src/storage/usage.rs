//! Bytes a group of repositories holds, each blob counted once: a project's quota counts a
//! layer shared by two of its repositories once, as Harbor does (and a layer shared with
//! another project in both).

use std::collections::HashSet;

use redb::ReadableTable;

use crate::oci::digest::Digest;
use crate::storage::error::StorageError;
use crate::storage::index::schema::{decode_blob, digest_key, repo_key, BLOBS, REPOS, REPO_BLOBS};
use crate::storage::store::Store;

/// Repositories counted together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoGroup<'a> {
    /// Every repository whose name starts with `<project>/`.
    Under(&'a str),
    /// Every repository whose name has no `/`.
    TopLevel,
}

impl Store {
    /// Whether any repository of `groups` links `digest` (one lookup per repository).
    pub fn project_holds(
        &self,
        groups: &[RepoGroup<'_>],
        digest: &Digest,
    ) -> Result<bool, StorageError> {
        self.check_open()?;
        let txn = self.inner.db.begin_read()?;
        let repos = txn.open_table(REPOS)?;
        let links = txn.open_table(REPO_BLOBS)?;
        let dk = digest_key(digest);
        let links_it = |repo: &str| -> Result<bool, StorageError> {
            Ok(links.get(&repo_key(repo, &dk)[..])?.is_some())
        };
        for group in groups {
            match group {
                RepoGroup::Under(project) => {
                    let (start, end) = (format!("{project}/"), format!("{project}0"));
                    for row in repos.range(start.as_str()..end.as_str())? {
                        if links_it(row?.0.value())? {
                            return Ok(true);
                        }
                    }
                }
                RepoGroup::TopLevel => {
                    for row in repos.iter()? {
                        let (name, _) = row?;
                        if !name.value().contains('/') && links_it(name.value())? {
                            return Ok(true);
                        }
                    }
                }
            }
        }
        Ok(false)
    }

    /// Bytes of the distinct blobs (layers, configs and manifests) linked into any repository
    /// of `groups`.
    pub fn linked_bytes(&self, groups: &[RepoGroup<'_>]) -> Result<u64, StorageError> {
        self.check_open()?;
        let txn = self.inner.db.begin_read()?;
        let links = txn.open_table(REPO_BLOBS)?;
        let mut digests: HashSet<Vec<u8>> = HashSet::new();
        let mut add = |key: &[u8]| {
            if let Some(digest) = key
                .iter()
                .position(|b| *b == 0)
                .and_then(|sep| key.get(sep + 1..))
            {
                digests.insert(digest.to_vec());
            }
        };
        for group in groups {
            match group {
                RepoGroup::Under(project) => {
                    let start = format!("{project}/");
                    // '0' follows '/': the range holds exactly the names starting with `start`.
                    let end = format!("{project}0");
                    for row in links.range(start.as_bytes()..end.as_bytes())? {
                        add(row?.0.value());
                    }
                }
                RepoGroup::TopLevel => {
                    for row in links.iter()? {
                        let (k, _) = row?;
                        let key = k.value();
                        let repo = key.split(|b| *b == 0).next().unwrap_or_default();
                        if !repo.contains(&b'/') {
                            add(key);
                        }
                    }
                }
            }
        }
        let blobs = txn.open_table(BLOBS)?;
        let mut total = 0u64;
        for d in &digests {
            if let Some(v) = blobs.get(&d[..])? {
                total += decode_blob(v.value())?.0;
            }
        }
        Ok(total)
    }
}
