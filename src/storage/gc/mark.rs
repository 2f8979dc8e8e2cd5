//! The mark: one pass over a redb snapshot decides what no root reaches any more.
//!
//! Roots are every manifest without a subject (unless a retention rule lets an untagged one
//! go) and every tagged manifest. From them the mark follows an index's children and the
//! referrers whose subject is alive. Every repository link an alive manifest needs is live, and
//! every blob with a live link (or one younger than the grace period) is kept. Everything else
//! is a candidate for the sweep. Cost: one pass over manifests, tags, links and blobs.

use std::collections::{BTreeMap, HashMap, HashSet};

use redb::{ReadTransaction, ReadableTable, ReadableTableMetadata};

use super::retention::{expired_tags, rule_for};
use crate::oci::digest::Digest;
use crate::storage::error::StorageError;
use crate::storage::index::ops::{RepoDigest, RepoTag, SweepList};
use crate::storage::index::schema::*;
use crate::storage::types::GcOptions;

/// What the mark found.
pub(crate) struct Verdict {
    /// Everything that may go, before the sweep drops what clients touched meanwhile.
    pub candidates: SweepList,
    /// Sizes of the candidate blobs, for the report.
    pub blob_sizes: HashMap<Digest, u64>,
}

struct Manifest {
    digest: Digest,
    subject: Option<Digest>,
    pushed_ms: u64,
    refs: Vec<Digest>,
}

pub(crate) fn mark(
    txn: &ReadTransaction,
    opts: &GcOptions,
    now_ms: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Verdict, StorageError> {
    let manifests_t = txn.open_table(MANIFESTS)?;
    let refs_t = txn.open_table(MANIFEST_REFS)?;
    let total = manifests_t.len()?;
    // repo -> manifests, in one pass over `manifests` and `manifest_refs` (same keys).
    let mut repos: BTreeMap<String, Vec<Manifest>> = BTreeMap::new();
    let mut seen = 0u64;
    let mut refs_iter = refs_t.iter()?.peekable();
    for r in manifests_t.iter()? {
        let (k, v) = r?;
        let key = k.value();
        let (repo, dk) = split_repo_key(key)?;
        let (digest, _) = decode_digest_key(dk)?;
        let meta: ManifestMeta = from_json(v.value())?;
        let mut refs = Vec::new();
        while let Some(next) = refs_iter.peek() {
            let next_key = match next {
                Ok((rk, _)) => rk.value().to_vec(),
                Err(_) => break,
            };
            if next_key.as_slice() > key {
                break;
            }
            let (rk, rv) = refs_iter.next().transpose()?.expect("peeked");
            if rk.value() == key {
                refs = decode_digest_keys(rv.value())?;
            }
        }
        repos.entry(repo.to_string()).or_default().push(Manifest {
            digest,
            subject: meta.subject.as_deref().and_then(|s| Digest::parse(s).ok()),
            pushed_ms: meta.pushed_ms,
            refs,
        });
        seen += 1;
        if seen % 4096 == 0 {
            progress(seen, total);
        }
    }
    progress(seen, total);

    // repo -> tags (name, manifest, tagged at).
    let mut tags: BTreeMap<String, Vec<(String, Digest, u64)>> = BTreeMap::new();
    for r in txn.open_table(TAGS)?.iter()? {
        let (k, v) = r?;
        let (repo, name) = split_repo_key(k.value())?;
        let (dk, at) = decode_tag(v.value())?;
        let name = String::from_utf8(name.to_vec())
            .map_err(|_| StorageError::Corrupt("tag not utf-8".into()))?;
        tags.entry(repo.to_string())
            .or_default()
            .push((name, decode_digest_key(dk)?.0, at));
    }

    let mut candidates = SweepList::default();
    // Links alive manifests need: (repo, digest).
    let mut live: HashSet<(String, Digest)> = HashSet::new();
    let empty = Vec::new();
    let repo_names: std::collections::BTreeSet<String> =
        repos.keys().chain(tags.keys()).cloned().collect();
    for repo in repo_names {
        let ms = repos.get(&repo).unwrap_or(&empty);
        let repo_tags = tags.remove(&repo).unwrap_or_default();
        let rule = rule_for(&opts.retention, &repo);
        let expired: HashSet<&str> = match rule {
            Some(rule) => {
                let pairs: Vec<(String, u64)> =
                    repo_tags.iter().map(|(n, _, t)| (n.clone(), *t)).collect();
                expired_tags(rule, &pairs)
                    .into_iter()
                    .filter_map(|n| repo_tags.iter().find(|t| t.0 == n).map(|t| t.0.as_str()))
                    .collect()
            }
            None => HashSet::new(),
        };
        let mut tagged: HashSet<&Digest> = HashSet::new();
        for (name, digest, _) in &repo_tags {
            if expired.contains(name.as_str()) {
                candidates.tags.push(RepoTag {
                    repo: repo.clone(),
                    tag: name.clone(),
                    digest: digest.clone(),
                });
            } else {
                tagged.insert(digest);
            }
        }
        let untagged_cutoff = rule
            .and_then(|r| r.delete_untagged_after)
            .map(|d| now_ms.saturating_sub(d.as_millis() as u64));
        let by_digest: HashMap<&Digest, &Manifest> = ms.iter().map(|m| (&m.digest, m)).collect();
        let mut referrers: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
        for m in ms {
            if let Some(s) = &m.subject {
                referrers.entry(s).or_default().push(&m.digest);
            }
        }
        let mut alive: HashSet<&Digest> = HashSet::new();
        let mut queue: Vec<&Digest> = Vec::new();
        for m in ms {
            let root = tagged.contains(&m.digest)
                || (m.subject.is_none() && untagged_cutoff.is_none_or(|cut| m.pushed_ms >= cut));
            if root && alive.insert(&m.digest) {
                queue.push(&m.digest);
            }
        }
        while let Some(d) = queue.pop() {
            let children = by_digest
                .get(d)
                .map(|m| m.refs.iter())
                .into_iter()
                .flatten();
            let refs = referrers.get(d).into_iter().flatten().copied();
            for next in children.chain(refs) {
                if by_digest.contains_key(next) && alive.insert(next) {
                    queue.push(next);
                }
            }
        }
        for m in ms {
            if alive.contains(&m.digest) {
                live.insert((repo.clone(), m.digest.clone()));
                for r in &m.refs {
                    live.insert((repo.clone(), r.clone()));
                }
            } else {
                candidates.manifests.push(RepoDigest {
                    repo: repo.clone(),
                    digest: m.digest.clone(),
                });
            }
        }
    }

    let grace_cutoff = now_ms.saturating_sub(opts.grace.as_millis() as u64);
    let mut needed: HashSet<Digest> = HashSet::new();
    for r in txn.open_table(REPO_BLOBS)?.iter()? {
        let (k, v) = r?;
        let (repo, dk) = split_repo_key(k.value())?;
        let (digest, _) = decode_digest_key(dk)?;
        let at = decode_time(v.value())?;
        let pair = (repo.to_string(), digest);
        if live.contains(&pair) || (!opts.grace.is_zero() && at >= grace_cutoff) {
            needed.insert(pair.1);
        } else {
            candidates.links.push(RepoDigest {
                repo: pair.0,
                digest: pair.1,
            });
        }
    }
    let mut blob_sizes = HashMap::new();
    for r in txn.open_table(BLOBS)?.iter()? {
        let (k, v) = r?;
        let (digest, _) = decode_digest_key(k.value())?;
        if !needed.contains(&digest) {
            let (size, _) = decode_blob(v.value())?;
            blob_sizes.insert(digest.clone(), size);
            candidates.blobs.push(digest);
        }
    }
    Ok(Verdict {
        candidates,
        blob_sizes,
    })
}
