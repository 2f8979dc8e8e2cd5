//! Index mutations: their logged form (JSON in an OP record) and how they are applied to the
//! redb tables, both by a group-commit batch and by recovery replaying the log.

use std::collections::{BTreeMap, BTreeSet};

use redb::{ReadableTable, Table, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::schema::*;
use crate::oci::digest::Digest;
use crate::storage::error::StorageError;
use crate::storage::segment::log::{Extent, Position, Progress};
use crate::storage::types::{BlobInfo, Referrer, UploadId};

/// A blob whose bytes are in the log and whose digest was verified.
#[derive(Debug, Serialize, Deserialize)]
pub struct BlobCommit {
    /// The upload session to retire, if the blob came from one.
    pub session: Option<UploadId>,
    pub repo: String,
    pub digest: Digest,
    pub size: u64,
    pub extents: Vec<Extent>,
    /// When it was pushed (ms since the Unix epoch; absent before format version 2).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub at_ms: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// A (repository, digest) pair in a sweep.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RepoDigest {
    pub repo: String,
    pub digest: Digest,
}

/// What one sweep step takes out of the index (storage-format.md §3.4, `sweep`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepList {
    /// Manifests deleted as by `delete_manifest` (dead referrers, retention).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<RepoDigest>,
    /// Tags deleted by retention.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<RepoTag>,
    /// Repository links no live manifest needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<RepoDigest>,
    /// Blobs no repository needs: their extents become dead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blobs: Vec<Digest>,
}

impl SweepList {
    pub fn is_empty(&self) -> bool {
        self.manifests.is_empty()
            && self.tags.is_empty()
            && self.links.is_empty()
            && self.blobs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.manifests.len() + self.tags.len() + self.links.len() + self.blobs.len()
    }
}

/// A tag in a sweep, deleted only if it still names `digest`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RepoTag {
    pub repo: String,
    pub tag: String,
    pub digest: Digest,
}

/// A blob whose chunks compaction copied: `from` is its extent list when the copy began, `to`
/// the list with the copied extents in their new places.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub digest: Digest,
    pub from: Vec<Extent>,
    pub to: Vec<Extent>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ManifestCommit {
    pub blob: BlobCommit,
    pub meta: ManifestMeta,
    pub tags: Vec<String>,
    pub references: Vec<Digest>,
    pub subject: Option<Digest>,
    /// The references need not be in the repository yet: a pull-through cache stores a
    /// manifest before it has fetched what the manifest names (version 3).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub references_pending: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Begin {
        id: UploadId,
        repo: String,
        started_ms: u64,
    },
    Commit(BlobCommit),
    /// Bytes that will never be part of a blob; drops the session's rows too.
    Discard {
        session: Option<UploadId>,
        extents: Vec<Extent>,
    },
    /// Cuts a session back to `size` bytes: its chunks from `size` on (`extents`) are dead.
    Truncate {
        session: UploadId,
        size: u64,
        extents: Vec<Extent>,
    },
    Link {
        repo: String,
        digest: Digest,
        #[serde(default, skip_serializing_if = "is_zero")]
        at_ms: u64,
    },
    Unlink {
        repo: String,
        digest: Digest,
        /// Refuse (changing nothing) while a manifest of `repo` references the blob.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        unless_referenced: bool,
    },
    PutManifest(Box<ManifestCommit>),
    DeleteManifest {
        repo: String,
        digest: Digest,
    },
    DeleteTag {
        repo: String,
        tag: String,
    },
    /// Garbage collection's verdict (format version 2).
    Sweep(SweepList),
    /// Compaction switched these blobs to copies of their chunks (format version 2).
    Relocate {
        moves: Vec<Move>,
    },
    /// These segments were deleted: their space rows go (format version 2).
    DropSegments {
        ids: Vec<u64>,
    },
    /// A scrub found these blobs damaged: they leave the index, their repository links stay so
    /// a push of the same digest heals them (format version 2).
    Quarantine {
        digests: Vec<Digest>,
    },
    /// Only advances the checkpoint (persists session progress).
    Checkpoint,
}

impl Op {
    /// Begin is logged by `begin_upload` itself (before the session's chunks); Checkpoint
    /// changes nothing. Every other op is logged by the group-commit leader, in apply order.
    pub fn logged_by_leader(&self) -> bool {
        !matches!(self, Op::Begin { .. } | Op::Checkpoint)
    }

    /// The first record format version that may carry this op: an op in an older record was
    /// not written by any berth, so replay refuses it rather than guess.
    pub fn since_version(&self) -> u8 {
        match self {
            Op::Sweep(_)
            | Op::Relocate { .. }
            | Op::DropSegments { .. }
            | Op::Quarantine { .. } => 2,
            // Ignoring the flag would refuse, on replay, a manifest that was accepted.
            Op::PutManifest(m) if m.references_pending => 3,
            _ => 1,
        }
    }

    /// Calls `f` with every digest this op makes reachable or fresh, which protects it from a
    /// collection that is marking right now.
    pub fn touches(&self, mut f: impl FnMut(&Digest)) {
        match self {
            Op::Commit(c) => f(&c.digest),
            Op::Link { digest, .. } => f(digest),
            Op::PutManifest(m) => {
                f(&m.blob.digest);
                m.references.iter().for_each(&mut f);
                if let Some(s) = &m.subject {
                    f(s);
                }
            }
            _ => {}
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, StorageError> {
        to_json(self)
    }

    pub fn decode(b: &[u8]) -> Result<Op, StorageError> {
        from_json(b)
    }
}

#[derive(Debug)]
pub enum Out {
    Unit,
    Bool(bool),
    Count(u64),
    Blob(BlobInfo),
    /// What a sweep op removed (after the leader dropped what clients touched).
    Swept(SweepList),
}

impl Out {
    /// The blob a commit produced; any other outcome is a bug.
    pub fn blob(self) -> Result<BlobInfo, StorageError> {
        match self {
            Out::Blob(b) => Ok(b),
            other => Err(StorageError::Index(format!("unexpected outcome {other:?}"))),
        }
    }
}

/// Per-segment (live, dead) byte changes made by one batch.
pub type SpaceDelta = BTreeMap<u64, (i64, i64)>;

pub struct Tables<'t> {
    pub(crate) blobs: Table<'t, &'static [u8], &'static [u8]>,
    pub(crate) repo_blobs: Table<'t, &'static [u8], &'static [u8]>,
    pub(crate) repos: Table<'t, &'static str, ()>,
    pub(crate) manifests: Table<'t, &'static [u8], &'static [u8]>,
    pub(crate) refs: Table<'t, &'static [u8], &'static [u8]>,
    pub(crate) tags: Table<'t, &'static [u8], &'static [u8]>,
    pub(crate) referrers: Table<'t, &'static [u8], &'static [u8]>,
    pub(crate) uploads: Table<'t, &'static [u8], &'static [u8]>,
    pub(crate) chunks: Table<'t, &'static [u8], &'static [u8]>,
    pub(crate) segments: Table<'t, u64, &'static [u8]>,
    pub(crate) meta: Table<'t, &'static str, &'static [u8]>,
}

impl<'t> Tables<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>, StorageError> {
        Ok(Tables {
            blobs: txn.open_table(BLOBS)?,
            repo_blobs: txn.open_table(REPO_BLOBS)?,
            repos: txn.open_table(REPOS)?,
            manifests: txn.open_table(MANIFESTS)?,
            refs: txn.open_table(MANIFEST_REFS)?,
            tags: txn.open_table(TAGS)?,
            referrers: txn.open_table(REFERRERS)?,
            uploads: txn.open_table(UPLOADS)?,
            chunks: txn.open_table(UPLOAD_CHUNKS)?,
            segments: txn.open_table(SEGMENTS)?,
            meta: txn.open_table(META)?,
        })
    }

    /// Adds a batch's space changes and moves the checkpoint to `end`.
    pub fn finish(&mut self, delta: &SpaceDelta, end: Position) -> Result<(), StorageError> {
        for (&id, &(dl, dd)) in delta {
            let (live, dead) = match self.segments.get(id)? {
                Some(v) => decode_space(v.value())?,
                None => (0, 0),
            };
            let v = encode_space(
                live.saturating_add_signed(dl),
                dead.saturating_add_signed(dd),
            );
            self.segments.insert(id, &v[..])?;
        }
        self.meta
            .insert(META_CHECKPOINT, &encode_position(end)[..])?;
        Ok(())
    }

    /// Records a session chunk; chunks of sessions the index does not know are ignored.
    pub fn add_progress(&mut self, p: &Progress) -> Result<(), StorageError> {
        if self.uploads.get(&p.session.0[..])?.is_some() {
            let mut v = Vec::with_capacity(20);
            encode_extent(&p.extent, &mut v);
            self.chunks
                .insert(&upload_chunk_key(&p.session.0, p.blob_offset)[..], &v[..])?;
        }
        Ok(())
    }

    /// Where the next chunk of `session` must start, or None if the session is unknown.
    pub fn session_end(&self, session: &UploadId) -> Result<Option<u64>, StorageError> {
        if self.uploads.get(&session.0[..])?.is_none() {
            return Ok(None);
        }
        let lo = upload_chunk_key(&session.0, 0);
        let hi = upload_chunk_key(&session.0, u64::MAX);
        let last = self
            .chunks
            .range(&lo[..]..=&hi[..])?
            .next_back()
            .transpose()?;
        Ok(Some(match last {
            Some((k, v)) => decode_upload_chunk_key(k.value())?
                .saturating_add(u64::from(decode_extent(v.value())?.len)),
            None => 0,
        }))
    }
}

/// Applies a batch inside `txn`. The outer error aborts the transaction; inner errors belong
/// to single ops, which then changed nothing.
pub fn apply_batch(
    txn: &WriteTransaction,
    ops: &[Op],
    progress: &[Progress],
    end: Position,
) -> Result<(Vec<Result<Out, StorageError>>, SpaceDelta), StorageError> {
    let mut t = Tables::open(txn)?;
    let mut delta = SpaceDelta::new();
    // Session rows first, so chunks written by a session begun in this very batch are kept.
    let mut outs: Vec<Option<Result<Out, StorageError>>> = Vec::with_capacity(ops.len());
    for op in ops {
        outs.push(match op {
            Op::Begin { .. } => Some(apply(&mut t, op, &mut delta)?),
            _ => None,
        });
    }
    for p in progress {
        t.add_progress(p)?;
    }
    for (op, out) in ops.iter().zip(outs.iter_mut()) {
        if out.is_none() {
            *out = Some(apply(&mut t, op, &mut delta)?);
        }
    }
    let outs = outs.into_iter().flatten().collect();
    t.finish(&delta, end)?;
    Ok((outs, delta))
}

/// Moves extents' bytes from live to dead (a swept, quarantined or relocated blob).
fn kill(delta: &mut SpaceDelta, extents: &[Extent]) {
    for e in extents {
        let slot = delta.entry(e.segment).or_default();
        slot.0 -= i64::from(e.len);
        slot.1 += i64::from(e.len);
    }
}

fn add(delta: &mut SpaceDelta, extents: &[Extent], live: bool) {
    for e in extents {
        let slot = delta.entry(e.segment).or_default();
        if live {
            slot.0 += i64::from(e.len);
        } else {
            slot.1 += i64::from(e.len);
        }
    }
}

pub fn apply(
    t: &mut Tables<'_>,
    op: &Op,
    delta: &mut SpaceDelta,
) -> Result<Result<Out, StorageError>, StorageError> {
    Ok(Ok(match op {
        Op::Begin {
            id,
            repo,
            started_ms,
        } => {
            t.uploads
                .insert(&id.0[..], &encode_upload(*started_ms, repo)[..])?;
            Out::Unit
        }
        Op::Commit(c) => {
            if lacks_bytes(t, c)? {
                add(delta, &c.extents, false);
                return Ok(Err(StorageError::BlobUnknown(c.digest.clone())));
            }
            Out::Blob(commit_blob(t, c, delta)?)
        }
        Op::Discard { session, extents } => {
            add(delta, extents, false);
            if let Some(id) = session {
                drop_session(t, id)?;
            }
            Out::Unit
        }
        Op::Truncate {
            session,
            size,
            extents,
        } => {
            add(delta, extents, false);
            drop_chunks_from(t, session, *size)?;
            Out::Unit
        }
        Op::Link {
            repo,
            digest,
            at_ms,
        } => {
            let dk = digest_key(digest);
            if t.blobs.get(&dk[..])?.is_some() {
                link(t, repo, &dk, *at_ms)?;
                Out::Bool(true)
            } else {
                Out::Bool(false)
            }
        }
        Op::Unlink {
            repo,
            digest,
            unless_referenced,
        } => {
            if *unless_referenced {
                let by = referencing(&t.refs, repo, digest)?;
                if !by.is_empty() {
                    return Ok(Err(StorageError::BlobReferenced(by)));
                }
            }
            let removed = t
                .repo_blobs
                .remove(&repo_key(repo, &digest_key(digest))[..])?
                .is_some();
            drop_repo_if_empty(t, repo)?;
            Out::Bool(removed)
        }
        Op::PutManifest(m) => {
            if lacks_bytes(t, &m.blob)? {
                // The body was found stored when the PUT began, and swept since.
                add(delta, &m.blob.extents, false);
                return Ok(Err(StorageError::BlobUnknown(m.blob.digest.clone())));
            }
            for r in m.references.iter().filter(|_| !m.references_pending) {
                if *r != m.blob.digest
                    && t.repo_blobs
                        .get(&repo_key(&m.blob.repo, &digest_key(r))[..])?
                        .is_none()
                {
                    add(delta, &m.blob.extents, false);
                    return Ok(Err(StorageError::ManifestBlobUnknown(r.clone())));
                }
            }
            put_manifest(t, m, delta)?;
            Out::Unit
        }
        Op::DeleteManifest { repo, digest } => {
            let deleted = delete_manifest(t, repo, digest)?;
            drop_repo_if_empty(t, repo)?;
            Out::Bool(deleted)
        }
        Op::DeleteTag { repo, tag } => Out::Bool(
            t.tags
                .remove(&repo_key(repo, tag.as_bytes())[..])?
                .is_some(),
        ),
        Op::Sweep(list) => {
            sweep(t, list, delta)?;
            Out::Swept(list.clone())
        }
        Op::Relocate { moves } => {
            for m in moves {
                relocate(t, m, delta)?;
            }
            Out::Unit
        }
        Op::DropSegments { ids } => {
            for id in ids {
                t.segments.remove(*id)?;
                delta.remove(id);
            }
            Out::Unit
        }
        Op::Quarantine { digests } => {
            let mut n = 0u64;
            for d in digests {
                if let Some(v) = t.blobs.remove(&digest_key(d)[..])? {
                    kill(delta, &decode_blob(v.value())?.1);
                    n += 1;
                }
            }
            Out::Count(n)
        }
        Op::Checkpoint => Out::Unit,
    }))
}

fn link(t: &mut Tables<'_>, repo: &str, dk: &[u8], at_ms: u64) -> Result<(), StorageError> {
    t.repo_blobs
        .insert(&repo_key(repo, dk)[..], &encode_time(at_ms)[..])?;
    t.repos.insert(repo, ())?;
    Ok(())
}

/// Manifests of `repo` that reference `digest` (one pass over the repository's manifests).
pub(crate) fn referencing(
    refs: &impl ReadableTable<&'static [u8], &'static [u8]>,
    repo: &str,
    digest: &Digest,
) -> Result<Vec<Digest>, StorageError> {
    let (lo, hi) = prefix_range(repo, b"");
    let mut out = Vec::new();
    for r in refs.range(&lo[..]..&hi[..])? {
        let (k, v) = r?;
        if decode_digest_keys(v.value())?.contains(digest) {
            out.push(decode_digest_key(key_after(k.value(), &lo)?)?.0);
        }
    }
    Ok(out)
}

/// A repository with no tag, manifest or blob link left leaves the catalog.
fn drop_repo_if_empty(t: &mut Tables<'_>, repo: &str) -> Result<(), StorageError> {
    let (lo, hi) = prefix_range(repo, b"");
    let r = &lo[..]..&hi[..];
    if t.repo_blobs.range(r.clone())?.next().is_none()
        && t.manifests.range(r.clone())?.next().is_none()
        && t.tags.range(r)?.next().is_none()
    {
        t.repos.remove(repo)?;
    }
    Ok(())
}

fn sweep(t: &mut Tables<'_>, list: &SweepList, delta: &mut SpaceDelta) -> Result<(), StorageError> {
    let mut repos = BTreeSet::new();
    for RepoTag { repo, tag, digest } in &list.tags {
        let key = repo_key(repo, tag.as_bytes());
        let names = match t.tags.get(&key[..])? {
            Some(v) => decode_tag(v.value())?.0 == &digest_key(digest)[..],
            None => false,
        };
        if names {
            t.tags.remove(&key[..])?;
        }
        repos.insert(repo.as_str());
    }
    for RepoDigest { repo, digest } in &list.manifests {
        delete_manifest(t, repo, digest)?;
        repos.insert(repo.as_str());
    }
    for RepoDigest { repo, digest } in &list.links {
        t.repo_blobs
            .remove(&repo_key(repo, &digest_key(digest))[..])?;
        repos.insert(repo.as_str());
    }
    for d in &list.blobs {
        if let Some(v) = t.blobs.remove(&digest_key(d)[..])? {
            kill(delta, &decode_blob(v.value())?.1);
        }
    }
    for repo in repos {
        drop_repo_if_empty(t, repo)?;
    }
    Ok(())
}

/// Points a blob at the copies of its chunks, if it still has the extents the copy was made
/// from; otherwise (swept or quarantined meanwhile) the copies are dead.
fn relocate(t: &mut Tables<'_>, m: &Move, delta: &mut SpaceDelta) -> Result<(), StorageError> {
    let dk = digest_key(&m.digest);
    let current = t
        .blobs
        .get(&dk[..])?
        .map(|v| decode_blob(v.value()))
        .transpose()?;
    let fresh: Vec<Extent> =
        m.to.iter()
            .filter(|e| !m.from.contains(e))
            .copied()
            .collect();
    match current {
        Some((size, extents)) if extents == m.from => {
            let gone: Vec<Extent> = m
                .from
                .iter()
                .filter(|e| !m.to.contains(e))
                .copied()
                .collect();
            t.blobs.insert(&dk[..], &encode_blob(size, &m.to)[..])?;
            kill(delta, &gone);
            add(delta, &fresh, true);
        }
        _ => add(delta, &fresh, false),
    }
    Ok(())
}

fn drop_session(t: &mut Tables<'_>, id: &UploadId) -> Result<(), StorageError> {
    t.uploads.remove(&id.0[..])?;
    drop_chunks_from(t, id, 0)
}

/// Removes the session's chunk rows at blob offsets `from` and later.
fn drop_chunks_from(t: &mut Tables<'_>, id: &UploadId, from: u64) -> Result<(), StorageError> {
    let lo = upload_chunk_key(&id.0, from);
    let hi = upload_chunk_key(&id.0, u64::MAX);
    let keys: Vec<Vec<u8>> = t
        .chunks
        .range(&lo[..]..=&hi[..])?
        .map(|r| r.map(|(k, _)| k.value().to_vec()))
        .collect::<Result<_, _>>()?;
    for k in keys {
        t.chunks.remove(&k[..])?;
    }
    Ok(())
}

/// Whether a commit names a blob that is not stored and brings too few bytes for it (a caller
/// that found it stored and wrote nothing, racing with a sweep): refused, never a hole.
fn lacks_bytes(t: &Tables<'_>, c: &BlobCommit) -> Result<bool, StorageError> {
    let brought: u64 = c.extents.iter().map(|e| u64::from(e.len)).sum();
    Ok(brought != c.size && t.blobs.get(&digest_key(&c.digest)[..])?.is_none())
}

fn commit_blob(
    t: &mut Tables<'_>,
    c: &BlobCommit,
    delta: &mut SpaceDelta,
) -> Result<BlobInfo, StorageError> {
    let dk = digest_key(&c.digest);
    let existing = t
        .blobs
        .get(&dk[..])?
        .map(|v| decode_blob(v.value()))
        .transpose()?;
    let size = match existing {
        Some((size, _)) => {
            add(delta, &c.extents, false);
            size
        }
        None => {
            t.blobs
                .insert(&dk[..], &encode_blob(c.size, &c.extents)[..])?;
            add(delta, &c.extents, true);
            c.size
        }
    };
    link(t, &c.repo, &dk, c.at_ms)?;
    if let Some(id) = &c.session {
        drop_session(t, id)?;
    }
    Ok(BlobInfo {
        digest: c.digest.clone(),
        size,
    })
}

fn put_manifest(
    t: &mut Tables<'_>,
    m: &ManifestCommit,
    delta: &mut SpaceDelta,
) -> Result<(), StorageError> {
    let repo = &m.blob.repo;
    commit_blob(t, &m.blob, delta)?;
    let dk = digest_key(&m.blob.digest);
    let key = repo_key(repo, &dk);
    t.manifests.insert(&key[..], &to_json(&m.meta)?[..])?;
    let refs: Vec<u8> = m
        .references
        .iter()
        .filter(|r| **r != m.blob.digest)
        .flat_map(digest_key)
        .collect();
    t.refs.insert(&key[..], &refs[..])?;
    let tag_value = encode_tag(&dk, m.meta.pushed_ms);
    for tag in &m.tags {
        t.tags
            .insert(&repo_key(repo, tag.as_bytes())[..], &tag_value[..])?;
    }
    if let Some(subject) = &m.subject {
        let mut rest = digest_key(subject);
        rest.extend_from_slice(&dk);
        let r = ReferrerValue {
            media_type: m.meta.media_type.clone(),
            size: m.meta.size,
            artifact_type: m.meta.artifact_type.clone(),
            annotations: m.meta.annotations.clone(),
        };
        t.referrers
            .insert(&repo_key(repo, &rest)[..], &to_json(&r)?[..])?;
    }
    Ok(())
}

fn delete_manifest(t: &mut Tables<'_>, repo: &str, digest: &Digest) -> Result<bool, StorageError> {
    let dk = digest_key(digest);
    let key = repo_key(repo, &dk);
    let meta: ManifestMeta = match t.manifests.remove(&key[..])? {
        Some(v) => from_json(v.value())?,
        None => return Ok(false),
    };
    let (lo, hi) = prefix_range(repo, b"");
    let mut dead_tags = BTreeSet::new();
    for r in t.tags.range(&lo[..]..&hi[..])? {
        let (k, v) = r?;
        if decode_tag(v.value())?.0 == &dk[..] {
            dead_tags.insert(k.value().to_vec());
        }
    }
    t.refs.remove(&key[..])?;
    for k in dead_tags {
        t.tags.remove(&k[..])?;
    }
    if let Some(subject) = meta.subject.as_deref().and_then(|s| Digest::parse(s).ok()) {
        let mut rest = digest_key(&subject);
        rest.extend_from_slice(&dk);
        t.referrers.remove(&repo_key(repo, &rest)[..])?;
    }
    t.repo_blobs.remove(&key[..])?;
    Ok(true)
}

/// Referrer descriptor fields kept in the `referrers` table (JSON).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ReferrerValue {
    pub media_type: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ReferrerValue {
    pub fn into_referrer(self, digest: Digest) -> Referrer {
        Referrer {
            digest,
            media_type: self.media_type,
            size: self.size,
            artifact_type: self.artifact_type,
            annotations: self.annotations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::digest::Algorithm;

    /// The logged form is part of the on-disk format (storage-format.md, "OP records").
    #[test]
    fn logged_form_is_stable() {
        let d = Digest::of(Algorithm::Sha256, b"");
        let op = Op::Commit(BlobCommit {
            session: Some(UploadId([0xab; 16])),
            repo: "lib/a".into(),
            digest: d.clone(),
            size: 5,
            extents: vec![Extent {
                segment: 1,
                offset: 112,
                len: 5,
            }],
            at_ms: 7,
        });
        let json = String::from_utf8(op.encode().unwrap()).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"op":"commit","session":"{}","repo":"lib/a","digest":"{d}","size":5,"extents":[{{"segment":1,"offset":112,"len":5}}],"at_ms":7}}"#,
                "ab".repeat(16)
            )
        );
        let tag = Op::DeleteTag {
            repo: "r".into(),
            tag: "v1".into(),
        };
        assert_eq!(
            String::from_utf8(tag.encode().unwrap()).unwrap(),
            r#"{"op":"delete_tag","repo":"r","tag":"v1"}"#
        );
        assert!(matches!(Op::decode(json.as_bytes()).unwrap(), Op::Commit(c) if c.size == 5));
    }

    /// An `upload_chunks` key too short to hold a blob offset is a corrupt index, not a panic.
    #[test]
    fn short_upload_chunk_key_is_corrupt() {
        let db = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .unwrap();
        let txn = db.begin_write().unwrap();
        let mut t = Tables::open(&txn).unwrap();
        let session = UploadId([7; 16]);
        t.uploads
            .insert(&session.0[..], &encode_upload(0, "r")[..])
            .unwrap();
        let mut short = session.0.to_vec();
        short.push(1);
        t.chunks.insert(&short[..], &[0u8; 20][..]).unwrap();
        assert!(matches!(
            t.session_end(&session),
            Err(StorageError::Corrupt(_))
        ));
    }
}
