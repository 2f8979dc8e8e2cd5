//! Keeps what mirrors with an upstream have cached under `mirror-cache-size`: when their
//! repositories hold more, the least recently pulled images are deleted and a collection
//! reclaims their bytes. An image is a manifest that no other manifest of its repository
//! names, together with the child manifests it names (a multi-platform index and its
//! platforms go together); its last use is its last pull since start, or when it was cached.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::maintenance::Maintenance;
use crate::mirror::{blocking, Mirrors};
use crate::oci::digest::Digest;
use crate::storage::{ManifestRow, RepoGroup};

/// Collections per check at most: each frees what its deletions unlinked.
const ROUNDS: usize = 3;

/// What one check did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Evicted {
    /// (repository, manifest) deleted, images first.
    pub manifests: Vec<(String, Digest)>,
    /// Cached bytes before and after.
    pub before: u64,
    pub after: u64,
}

/// Checks every `every` whether anything was fetched, and if so keeps the cache under `limit`.
pub async fn keep_under(
    mirrors: Arc<Mirrors>,
    maintenance: Maintenance,
    limit: u64,
    every: Duration,
) {
    let mut seen = u64::MAX;
    loop {
        tokio::time::sleep(every).await;
        let fetched: u64 = mirrors
            .all()
            .map(|m| m.stats.fetched_bytes.load(Ordering::Relaxed))
            .sum::<u64>()
            + mirrors.manifests_stored.load(Ordering::Relaxed);
        if fetched == seen {
            continue;
        }
        match evict(&mirrors, &maintenance, limit).await {
            Ok(e) => {
                seen = fetched;
                if !e.manifests.is_empty() {
                    tracing::info!(
                        target: "berth::mirror",
                        images = e.manifests.len(),
                        before = e.before,
                        after = e.after,
                        limit,
                        "cache over its size: least recently pulled images dropped"
                    );
                }
            }
            // A collection already running (or a store error): try again next time.
            Err(e) => tracing::warn!(target: "berth::mirror", "cache eviction: {e}"),
        }
    }
}

/// Deletes least recently used images until the cached bytes are under `limit`, collecting
/// after each round of deletions.
pub async fn evict(
    mirrors: &Mirrors,
    maintenance: &Maintenance,
    limit: u64,
) -> Result<Evicted, String> {
    let prefixes: Vec<String> = mirrors
        .all()
        .filter(|m| m.upstream.is_some())
        .map(|m| m.config.ns.clone())
        .collect();
    let mut report = Evicted::default();
    if prefixes.is_empty() {
        return Ok(report);
    }
    let store = maintenance.store().clone();
    for round in 0..ROUNDS {
        let (s, p) = (store.clone(), prefixes.clone());
        let (total, rows) = blocking(move || {
            let groups: Vec<RepoGroup<'_>> = p.iter().map(|ns| RepoGroup::Under(ns)).collect();
            let total = s.linked_bytes(&groups)?;
            let mut rows = Vec::new();
            if total > limit {
                for ns in &p {
                    rows.extend(s.manifests_under(ns)?);
                }
            }
            Ok((total, rows))
        })
        .await
        .map_err(|e| e.to_string())?;
        if round == 0 {
            report.before = total;
        }
        report.after = total;
        if total <= limit {
            break;
        }
        let victims = least_recent(images(rows, &mirrors.recency()), total - limit);
        if victims.is_empty() {
            break;
        }
        let s = store.clone();
        let doomed = victims.clone();
        blocking(move || {
            for (repo, digest) in &doomed {
                s.delete_manifest(repo, digest)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?;
        mirrors.forget(&victims);
        report.manifests.extend(victims);
        maintenance
            .gc(maintenance.gc_defaults().clone())
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(report)
}

/// One image: the manifests deleted together, their bytes, and when it was last used.
#[derive(Debug)]
struct Image {
    repo: String,
    manifests: Vec<Digest>,
    bytes: u64,
    last_used_ms: u64,
}

/// Groups manifests into images: each manifest no other manifest of its repository names
/// heads one, with the children it names that no other head needs.
fn images(rows: Vec<ManifestRow>, pulled: &HashMap<(String, Digest), u64>) -> Vec<Image> {
    let mut by_repo: HashMap<String, Vec<ManifestRow>> = HashMap::new();
    for row in rows {
        by_repo.entry(row.repo.clone()).or_default().push(row);
    }
    let mut out = Vec::new();
    for (repo, rows) in by_repo {
        let digests: HashSet<&Digest> = rows.iter().map(|r| &r.digest).collect();
        let named: HashMap<&Digest, usize> = rows
            .iter()
            .flat_map(|r| r.references.iter().filter(|d| digests.contains(d)))
            .fold(HashMap::new(), |mut m, d| {
                *m.entry(d).or_default() += 1;
                m
            });
        let by_digest: HashMap<&Digest, &ManifestRow> =
            rows.iter().map(|r| (&r.digest, r)).collect();
        let used = |r: &ManifestRow| {
            let pull = pulled
                .get(&(repo.clone(), r.digest.clone()))
                .copied()
                .unwrap_or(0);
            pull.max(r.pushed_ms)
        };
        for head in rows.iter().filter(|r| !named.contains_key(&r.digest)) {
            let mut image = Image {
                repo: repo.clone(),
                manifests: vec![head.digest.clone()],
                bytes: head.bytes,
                last_used_ms: used(head),
            };
            for child in head.references.iter().filter_map(|d| by_digest.get(d)) {
                // A child two heads name stays until both go (a later round takes it).
                if named.get(&child.digest) == Some(&1) {
                    image.manifests.push(child.digest.clone());
                    image.bytes += child.bytes;
                    image.last_used_ms = image.last_used_ms.max(used(child));
                }
            }
            out.push(image);
        }
    }
    out
}

/// The least recently used images whose bytes add up to `excess` (at least one image).
fn least_recent(mut images: Vec<Image>, excess: u64) -> Vec<(String, Digest)> {
    images.sort_by(|a, b| {
        a.last_used_ms
            .cmp(&b.last_used_ms)
            .then_with(|| a.repo.cmp(&b.repo))
    });
    let mut freed = 0u64;
    let mut out = Vec::new();
    for image in images {
        if freed >= excess {
            break;
        }
        freed += image.bytes;
        out.extend(image.manifests.into_iter().map(|d| (image.repo.clone(), d)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::digest::Algorithm;

    fn d(s: &str) -> Digest {
        Digest::of(Algorithm::Sha256, s.as_bytes())
    }

    fn row(repo: &str, name: &str, pushed: u64, bytes: u64, refs: &[&str]) -> ManifestRow {
        ManifestRow {
            repo: repo.into(),
            digest: d(name),
            pushed_ms: pushed,
            bytes,
            references: refs.iter().map(|r| d(r)).collect(),
            tags: Vec::new(),
        }
    }

    #[test]
    fn an_index_goes_with_its_platforms_and_pulls_count_as_use() {
        let rows = vec![
            row("r/a", "index", 10, 1, &["amd64", "arm64"]),
            row("r/a", "amd64", 10, 100, &["layer"]),
            row("r/a", "arm64", 10, 100, &[]),
            row("r/b", "single", 20, 50, &[]),
            row("r/c", "old-but-pulled", 5, 70, &[]),
        ];
        let mut pulled = HashMap::new();
        pulled.insert(("r/c".to_owned(), d("old-but-pulled")), 30);
        let imgs = images(rows, &pulled);
        assert_eq!(imgs.len(), 3);
        let victims = least_recent(imgs, 150);
        // r/a (used at 10) goes whole; r/b (20) and r/c (pulled at 30) stay.
        assert_eq!(victims.len(), 3);
        assert!(victims.iter().all(|(repo, _)| repo == "r/a"));
    }

    #[test]
    fn at_least_one_image_and_no_more_than_needed() {
        let rows = vec![
            row("r/a", "a", 1, 10, &[]),
            row("r/b", "b", 2, 10, &[]),
            row("r/c", "c", 3, 10, &[]),
        ];
        let victims = least_recent(images(rows.clone(), &HashMap::new()), 1);
        assert_eq!(victims, vec![("r/a".to_owned(), d("a"))]);
        let victims = least_recent(images(rows, &HashMap::new()), 15);
        assert_eq!(victims.len(), 2);
    }
}
