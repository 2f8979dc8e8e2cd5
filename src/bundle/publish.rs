//! The end of an import: every manifest read and parsed, everything it names checked present,
//! and only then, all of it at once, manifests put into their real repositories and tags set.

use std::collections::HashMap;

use crate::oci::digest::Digest;
use crate::oci::manifest;
use crate::storage::{ManifestPut, Store};

use super::error::BundleError;

/// A manifest an import will put: where, under which tags, and (for manifests built from a
/// docker-archive) its body, which is not among the staged blobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub repo: String,
    pub digest: Digest,
    /// The media type the input gives (an index.json descriptor); the body's own otherwise.
    pub media_type: Option<String>,
    pub tags: Vec<String>,
    pub body: Option<Vec<u8>>,
}

/// Merges entries for one repository and digest (their tags add up), keeping the first place.
pub fn merge(plan: Vec<Planned>) -> Vec<Planned> {
    let mut at: HashMap<(String, Digest), usize> = HashMap::new();
    let mut out: Vec<Planned> = Vec::with_capacity(plan.len());
    for p in plan {
        match at.get(&(p.repo.clone(), p.digest.clone())) {
            Some(&i) => {
                let Some(first) = out.get_mut(i) else {
                    continue;
                };
                for t in p.tags {
                    if !first.tags.contains(&t) {
                        first.tags.push(t);
                    }
                }
            }
            None => {
                at.insert((p.repo.clone(), p.digest.clone()), out.len());
                out.push(p);
            }
        }
    }
    out
}

/// A manifest an import put, as a later push to a registry needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub repo: String,
    pub digest: Digest,
    pub media_type: String,
    pub tags: Vec<String>,
    /// The blobs and child manifests it names.
    pub references: Vec<Digest>,
}

/// A manifest checked and ready to put.
pub struct Ready {
    repo: String,
    put: ManifestPut,
}

impl Ready {
    /// `repo:tag` for each tag, or `repo@digest` when untagged.
    pub fn names(&self) -> Vec<String> {
        if self.put.tags.is_empty() {
            vec![format!("{}@{}", self.repo, self.put.digest)]
        } else {
            let tags = self.put.tags.iter();
            tags.map(|t| format!("{}:{t}", self.repo)).collect()
        }
    }

    pub fn published(&self) -> Published {
        Published {
            repo: self.repo.clone(),
            digest: self.put.digest.clone(),
            media_type: self.put.media_type.clone(),
            tags: self.put.tags.clone(),
            references: self.put.references.clone(),
        }
    }

    pub fn is_tagged(&self) -> bool {
        !self.put.tags.is_empty()
    }
}

/// Reads and parses every planned manifest and checks that every blob and child it names is
/// stored. Changes nothing.
pub fn check(store: &Store, plan: Vec<Planned>) -> Result<Vec<Ready>, BundleError> {
    let mut out = Vec::with_capacity(plan.len());
    for p in plan {
        let body = match p.body {
            Some(b) => b,
            None => store
                .get(&p.digest)?
                .ok_or_else(|| {
                    BundleError::Missing(format!(
                        "manifest {} (for {}) is neither in the input nor stored",
                        p.digest, p.repo
                    ))
                })?
                .read_all()?
                .to_vec(),
        };
        let parsed = manifest::parse(&body, p.media_type.as_deref())
            .map_err(|e| BundleError::format(format!("manifest {}: {e}", p.digest)))?;
        for r in &parsed.references {
            if store.stat(r)?.is_none() {
                return Err(BundleError::Missing(format!(
                    "{}@{} names {r}, which is neither in the input nor stored",
                    p.repo, p.digest
                )));
            }
        }
        out.push(Ready {
            repo: p.repo,
            put: ManifestPut {
                digest: p.digest,
                media_type: parsed.media_type,
                body,
                tags: p.tags,
                references: parsed.references,
                subject: parsed.subject,
                artifact_type: parsed.artifact_type,
                annotations: parsed.annotations,
            },
        });
    }
    Ok(out)
}

/// Links every blob a manifest names into its repository, then puts it untagged; children
/// come before the indexes that list them, so each index finds its children in place. Tags
/// are set last, once every manifest is in: an import cut short there leaves no tag naming
/// an incomplete image.
pub fn publish(store: &Store, ready: &[Ready]) -> Result<(), BundleError> {
    for r in ready {
        for d in &r.put.references {
            store.link_blob(&r.repo, d)?;
        }
        let untagged = ManifestPut {
            tags: Vec::new(),
            ..r.put.clone()
        };
        store.put_manifest(&r.repo, &untagged)?;
    }
    for r in ready.iter().filter(|r| r.is_tagged()) {
        store.put_manifest(&r.repo, &r.put)?;
    }
    Ok(())
}
