//! What an import will put, decided once the whole input was read: for a berth bundle its
//! contents manifest, for an OCI layout the named entries of `index.json` (children first), for
//! a docker-archive one built manifest per image. Checks the input's own claims; changes nothing.

use std::collections::BTreeMap;

use crate::oci::digest::Digest;
use crate::oci::manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX};
use crate::oci::name::{is_valid_name, is_valid_tag};
use crate::storage::Store;

use super::check;
use super::contents::Contents;
use super::docker::{self, Files};
use super::error::BundleError;
use super::layout::{blob_path, Index, INDEX_FILE};
use super::names::{target, RepoOverride};
use super::publish::Planned;

/// A berth bundle's manifests, as its contents manifest lists them, once every file it lists
/// was read (`blobs`) or is stored, and `index.json` agrees with it.
pub fn bundle(
    store: &Store,
    c: &Contents,
    blobs: &BTreeMap<Digest, u64>,
    index: Option<&[u8]>,
    over: Option<&RepoOverride>,
) -> Result<Vec<Planned>, BundleError> {
    check::complete(c, blobs, index)?;
    for (d, size) in c.assumed() {
        if store.stat(&d)?.map(|i| i.size) != Some(size) {
            return Err(BundleError::Missing(format!(
                "the bundle leaves out {d} ({size} bytes), made for a receiver that holds \
                 it, and this data directory does not: import the earlier bundle first"
            )));
        }
    }
    let single = c.refs.len() == 1;
    if over.is_some() {
        // Checked once: every manifest of a one-image bundle moves along with it.
        target(c.refs.keys().next().map(String::as_str), over, single)?;
    }
    let mut plan = Vec::with_capacity(c.manifests.len());
    for m in &c.manifests {
        let (repo, tags) = match over {
            Some(o) => {
                let tags = match (&o.tag, m.tags.is_empty()) {
                    (Some(t), false) => vec![t.clone()],
                    _ => m.tags.clone(),
                };
                (o.repo.clone(), tags)
            }
            None => (m.repository.clone(), m.tags.clone()),
        };
        if !is_valid_name(&repo) || !m.tags.iter().all(|t| is_valid_tag(t)) {
            return Err(BundleError::ContentsMismatch(format!(
                "{repo:?} {:?}: not a valid repository name and tags",
                m.tags
            )));
        }
        plan.push(Planned {
            repo,
            digest: m.digest.clone(),
            media_type: Some(m.media_type.clone()),
            tags,
            body: None,
        });
    }
    Ok(plan)
}

/// A docker-archive's images, each with a manifest built for it, under its `RepoTags`.
pub fn docker(
    store: &Store,
    list: &[u8],
    files: &Files<'_>,
    over: Option<&RepoOverride>,
) -> Result<Vec<Planned>, BundleError> {
    let config = |d: &Digest| -> Result<Vec<u8>, BundleError> {
        let blob = store
            .get(d)?
            .ok_or_else(|| BundleError::Missing(format!("config {d} was not stored")))?;
        Ok(blob.read_all()?.to_vec())
    };
    let images = docker::images(list, files, &config)?;
    let single = images.len() == 1;
    let mut plan = Vec::new();
    for img in images {
        let mut tags: Vec<(String, Option<String>)> = Vec::new();
        if img.names.is_empty() || over.is_some() {
            let t = target(img.names.first().map(String::as_str), over, single)?;
            tags.push((t.repo, t.tag));
        } else {
            for n in &img.names {
                let t = target(Some(n), None, single)?;
                tags.push((t.repo, t.tag));
            }
        }
        for (repo, tag) in tags {
            plan.push(Planned {
                repo,
                digest: img.digest.clone(),
                media_type: Some(DOCKER_MANIFEST.to_owned()),
                tags: tag.into_iter().collect(),
                body: Some(img.body.clone()),
            });
        }
    }
    Ok(plan)
}

/// The manifests of an OCI layout: each named `index.json` entry, its children first.
pub fn layout(
    store: &Store,
    index: &Index,
    over: Option<&RepoOverride>,
) -> Result<Vec<Planned>, BundleError> {
    let single = index.manifests.len() == 1;
    let mut plan = Vec::new();
    let mut skipped = 0;
    for e in &index.manifests {
        if e.name().is_none() && !single && over.is_none() {
            skipped += 1;
            continue;
        }
        let t = target(e.name(), over, single)?;
        let media_type = (!e.media_type.is_empty()).then(|| e.media_type.clone());
        children_first(store, &t.repo, &e.digest, media_type, &mut plan, 0)?;
        if let (Some(tag), Some(last)) = (t.tag, plan.last_mut()) {
            last.tags.push(tag);
        }
    }
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "index.json entries without an image name were left out"
        );
    }
    if plan.is_empty() {
        return Err(BundleError::Names("index.json names no image".into()));
    }
    Ok(plan)
}

/// Indexes nest a level or two in practice; deeper is refused rather than followed forever.
const MAX_DEPTH: usize = 8;

fn children_first(
    store: &Store,
    repo: &str,
    digest: &Digest,
    media_type: Option<String>,
    plan: &mut Vec<Planned>,
    depth: usize,
) -> Result<(), BundleError> {
    if depth > MAX_DEPTH {
        return Err(BundleError::format(format!(
            "{digest}: indexes nested deeper than {MAX_DEPTH}"
        )));
    }
    let body = store
        .get(digest)?
        .ok_or_else(|| {
            BundleError::Missing(format!(
                "{INDEX_FILE} names {digest}, which is not in {} nor stored",
                blob_path(digest)
            ))
        })?
        .read_all()?;
    let parsed = crate::oci::manifest::parse(&body, media_type.as_deref())
        .map_err(|e| BundleError::format(format!("manifest {digest}: {e}")))?;
    if parsed.media_type == OCI_INDEX || parsed.media_type == DOCKER_MANIFEST_LIST {
        for child in &parsed.references {
            children_first(store, repo, child, None, plan, depth + 1)?;
        }
    }
    plan.push(Planned {
        repo: repo.to_owned(),
        digest: digest.clone(),
        media_type: Some(parsed.media_type),
        tags: Vec::new(),
        body: None,
    });
    Ok(())
}
