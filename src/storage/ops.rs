//! Index mutations: their logged form (JSON in an OP record) and how they are applied to the
//! redb tables, both by a group-commit batch and by recovery replaying the log.

use std::collections::{BTreeMap, BTreeSet};

use redb::{ReadableTable, Table, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::error::StorageError;
use super::log::{Extent, Position, Progress};
use super::schema::*;
use super::types::{BlobInfo, Referrer, UploadId};
use crate::oci::digest::Digest;

/// A blob whose bytes are in the log and whose digest was verified.
#[derive(Debug, Serialize, Deserialize)]
pub struct BlobCommit {
    /// The upload session to retire, if the blob came from one.
    pub session: Option<UploadId>,
    pub repo: String,
    pub digest: Digest,
    pub size: u64,
    pub extents: Vec<Extent>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ManifestCommit {
    pub blob: BlobCommit,
    pub meta: ManifestMeta,
    pub tags: Vec<String>,
    pub references: Vec<Digest>,
    pub subject: Option<Digest>,
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
    },
    Unlink {
        repo: String,
        digest: Digest,
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
    /// Only advances the checkpoint (persists session progress).
    Checkpoint,
}

impl Op {
    /// Begin is logged by `begin_upload` itself (before the session's chunks); Checkpoint
    /// changes nothing. Every other op is logged by the group-commit leader, in apply order.
    pub fn logged_by_leader(&self) -> bool {
        !matches!(self, Op::Begin { .. } | Op::Checkpoint)
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
    Blob(BlobInfo),
}

/// Per-segment (live, dead) byte changes made by one batch.
pub type SpaceDelta = BTreeMap<u64, (i64, i64)>;

pub struct Tables<'t> {
    blobs: Table<'t, &'static [u8], &'static [u8]>,
    repo_blobs: Table<'t, &'static [u8], ()>,
    repos: Table<'t, &'static str, ()>,
    manifests: Table<'t, &'static [u8], &'static [u8]>,
    tags: Table<'t, &'static [u8], &'static [u8]>,
    referrers: Table<'t, &'static [u8], &'static [u8]>,
    uploads: Table<'t, &'static [u8], &'static [u8]>,
    chunks: Table<'t, &'static [u8], &'static [u8]>,
}

impl<'t> Tables<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>, StorageError> {
        Ok(Tables {
            blobs: txn.open_table(BLOBS)?,
            repo_blobs: txn.open_table(REPO_BLOBS)?,
            repos: txn.open_table(REPOS)?,
            manifests: txn.open_table(MANIFESTS)?,
            tags: txn.open_table(TAGS)?,
            referrers: txn.open_table(REFERRERS)?,
            uploads: txn.open_table(UPLOADS)?,
            chunks: txn.open_table(UPLOAD_CHUNKS)?,
        })
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
            Some((k, v)) => {
                let mut off = [0u8; 8];
                off.copy_from_slice(&k.value()[16..24]);
                u64::from_be_bytes(off).saturating_add(u64::from(decode_extent(v.value())?.len))
            }
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
    drop(t);
    finish_txn(txn, &delta, end)?;
    Ok((outs, delta))
}

/// Adds the batch's space changes and moves the checkpoint to `end`.
pub fn finish_txn(
    txn: &WriteTransaction,
    delta: &SpaceDelta,
    end: Position,
) -> Result<(), StorageError> {
    let mut segs = txn.open_table(SEGMENTS)?;
    for (&id, &(dl, dd)) in delta {
        let (live, dead) = match segs.get(id)? {
            Some(v) => decode_space(v.value())?,
            None => (0, 0),
        };
        let v = encode_space(
            live.saturating_add_signed(dl),
            dead.saturating_add_signed(dd),
        );
        segs.insert(id, &v[..])?;
    }
    let mut meta = txn.open_table(META)?;
    meta.insert(META_CHECKPOINT, &encode_position(end)[..])?;
    Ok(())
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
        Op::Commit(c) => Out::Blob(commit_blob(t, c, delta)?),
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
        Op::Link { repo, digest } => {
            let dk = digest_key(digest);
            if t.blobs.get(&dk[..])?.is_some() {
                link(t, repo, &dk)?;
                Out::Bool(true)
            } else {
                Out::Bool(false)
            }
        }
        Op::Unlink { repo, digest } => Out::Bool(
            t.repo_blobs
                .remove(&repo_key(repo, &digest_key(digest))[..])?
                .is_some(),
        ),
        Op::PutManifest(m) => {
            for r in &m.references {
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
        Op::DeleteManifest { repo, digest } => Out::Bool(delete_manifest(t, repo, digest)?),
        Op::DeleteTag { repo, tag } => Out::Bool(
            t.tags
                .remove(&repo_key(repo, tag.as_bytes())[..])?
                .is_some(),
        ),
        Op::Checkpoint => Out::Unit,
    }))
}

fn link(t: &mut Tables<'_>, repo: &str, dk: &[u8]) -> Result<(), StorageError> {
    t.repo_blobs.insert(&repo_key(repo, dk)[..], ())?;
    t.repos.insert(repo, ())?;
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
    link(t, &c.repo, &dk)?;
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
    t.manifests
        .insert(&repo_key(repo, &dk)[..], &to_json(&m.meta)?[..])?;
    for tag in &m.tags {
        t.tags
            .insert(&repo_key(repo, tag.as_bytes())[..], &dk[..])?;
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
        if v.value() == &dk[..] {
            dead_tags.insert(k.value().to_vec());
        }
    }
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
        });
        let json = String::from_utf8(op.encode().unwrap()).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"op":"commit","session":"{}","repo":"lib/a","digest":"{d}","size":5,"extents":[{{"segment":1,"offset":112,"len":5}}]}}"#,
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
}
