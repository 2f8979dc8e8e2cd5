//! What a list of references means in a store: the manifests (each index with every child, each
//! manifest with its referrers: signatures, SBOMs) and the blobs they name, each once, children
//! before the indexes that list them. Only the index is read; no blob byte is.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::oci::digest::Digest;
use crate::oci::manifest::{self, DOCKER_MANIFEST_LIST, OCI_INDEX};
use crate::storage::gc::glob_match;
use crate::storage::Reference;

use super::error::BundleError;
use super::origin::Origin;
use super::refs::RefSpec;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedManifest {
    pub repo: String,
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `repo:tag` / `repo@digest` -> manifest.
    pub refs: BTreeMap<String, Digest>,
    /// Children before parents; one entry per repository and digest.
    pub manifests: Vec<SelectedManifest>,
    /// Configs and layers in the order first met, each once.
    pub blobs: Vec<SelectedBlob>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedBlob {
    pub digest: Digest,
    pub size: u64,
    /// A repository that serves it (the first met).
    pub repo: String,
}

impl Selection {
    /// Every digest the selection names (manifests and blobs).
    pub fn digests(&self) -> HashSet<Digest> {
        let m = self.manifests.iter().map(|m| m.digest.clone());
        m.chain(self.blobs.iter().map(|b| b.digest.clone()))
            .collect()
    }
}

/// Resolves `specs` against `store`. A reference that names nothing is an error: an export
/// that silently leaves out an image would be found missing only on the far side of the gap.
pub fn select(store: &dyn Origin, specs: &[RefSpec]) -> Result<Selection, BundleError> {
    let mut walk = Walk {
        store,
        sel: Selection::default(),
        seen: HashSet::new(),
        blobs_seen: HashSet::new(),
        at: HashMap::new(),
    };
    for spec in specs {
        match spec {
            RefSpec::Tag { repo, tag } => walk.tag(repo, tag)?,
            RefSpec::Digest { repo, digest } => {
                let name = format!("{repo}@{digest}");
                walk.root(repo, digest, &name)?;
                walk.sel.refs.insert(name, digest.clone());
            }
            RefSpec::Repo(repo) => {
                if walk.all_tags(repo)? == 0 {
                    return Err(BundleError::UnknownRef(format!("{repo} (no tags)")));
                }
            }
            RefSpec::Glob(pattern) => {
                let mut n = 0;
                for repo in store.repositories()? {
                    if glob_match(pattern, &repo) {
                        n += walk.all_tags(&repo)?;
                    }
                }
                if n == 0 {
                    return Err(BundleError::UnknownRef(format!(
                        "{pattern} (no tagged repository matches)"
                    )));
                }
            }
        }
    }
    Ok(walk.sel)
}

struct Walk<'s> {
    store: &'s dyn Origin,
    sel: Selection,
    seen: HashSet<(String, Digest)>,
    blobs_seen: HashSet<Digest>,
    /// Where each (repository, manifest) is in `sel.manifests`.
    at: HashMap<(String, Digest), usize>,
}

impl Walk<'_> {
    fn tag(&mut self, repo: &str, tag: &str) -> Result<(), BundleError> {
        let name = format!("{repo}:{tag}");
        let m = self
            .store
            .manifest(repo, &Reference::Tag(tag.to_owned()))?
            .ok_or_else(|| BundleError::UnknownRef(name.clone()))?;
        self.root(repo, &m.digest, &name)?;
        let at = self.at.get(&(repo.to_owned(), m.digest.clone())).copied();
        if let Some(e) = at.and_then(|i| self.sel.manifests.get_mut(i)) {
            if !e.tags.iter().any(|t| t == tag) {
                e.tags.push(tag.to_owned());
            }
        }
        self.sel.refs.insert(name, m.digest);
        Ok(())
    }

    fn all_tags(&mut self, repo: &str) -> Result<usize, BundleError> {
        let tags = self.store.tags(repo)?;
        for t in &tags {
            self.tag(repo, t)?;
        }
        Ok(tags.len())
    }

    fn root(&mut self, repo: &str, digest: &Digest, name: &str) -> Result<(), BundleError> {
        if self
            .store
            .manifest(repo, &Reference::Digest(digest.clone()))?
            .is_none()
        {
            return Err(BundleError::UnknownRef(name.to_owned()));
        }
        self.manifest(repo, digest)
    }

    /// Post-order: children first, then the manifest, then its referrers.
    fn manifest(&mut self, repo: &str, digest: &Digest) -> Result<(), BundleError> {
        if !self.seen.insert((repo.to_owned(), digest.clone())) {
            return Ok(());
        }
        let stored = self
            .store
            .manifest(repo, &Reference::Digest(digest.clone()))?
            .ok_or_else(|| BundleError::Missing(format!("{repo}@{digest}: not in the store")))?;
        let parsed = manifest::parse(&stored.body, Some(&stored.media_type))
            .map_err(|e| BundleError::format(format!("{repo}@{digest}: {e}")))?;
        let is_index = parsed.media_type == OCI_INDEX || parsed.media_type == DOCKER_MANIFEST_LIST;
        for r in &parsed.references {
            if is_index {
                self.manifest(repo, r)?;
            } else if self.blobs_seen.insert(r.clone()) {
                let size = self.store.blob_size(repo, r)?.ok_or_else(|| {
                    BundleError::Missing(format!(
                        "{repo}@{digest} names blob {r}, not in the store"
                    ))
                })?;
                self.sel.blobs.push(SelectedBlob {
                    digest: r.clone(),
                    size,
                    repo: repo.to_owned(),
                });
            }
        }
        self.at
            .insert((repo.to_owned(), digest.clone()), self.sel.manifests.len());
        self.sel.manifests.push(SelectedManifest {
            repo: repo.to_owned(),
            digest: digest.clone(),
            media_type: stored.media_type,
            size: stored.body.len() as u64,
            tags: Vec::new(),
        });
        for referrer in self.store.referrers(repo, digest)? {
            self.manifest(repo, &referrer)?;
        }
        Ok(())
    }
}
