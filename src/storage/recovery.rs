//! Opening after a crash: trust the index up to its checkpoint, scan the log after it, cut a
//! torn tail, and rebuild the blob index from the segments alone when the index file is gone.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, UNIX_EPOCH};

use redb::{Database, ReadableTable};

use super::error::StorageError;
use super::io::SegmentIo;
use super::log::{Extent, Position, Progress};
use super::record::{
    decode_segment_header, encode_segment_header, rec, seg, CommitPayload, Kind, Scanner,
};
use super::schema::*;
use super::types::UploadId;
use super::uploads::Session;

pub(crate) struct Recovered {
    pub ends: BTreeMap<u64, u64>,
    pub sessions: Vec<(UploadId, Session)>,
    pub progress: Vec<Progress>,
    pub space: BTreeMap<u64, (u64, u64)>,
}

pub(crate) fn recover(
    io: &dyn SegmentIo,
    db: &Database,
    fresh: bool,
) -> Result<Recovered, StorageError> {
    let ids = io.list()?;
    if fresh {
        return rebuild(io, db, &ids);
    }
    let txn = db.begin_read()?;
    let meta = txn.open_table(META)?;
    let version = match meta.get(META_FORMAT)? {
        Some(v) => {
            let mut b = [0u8; 4];
            b.copy_from_slice(
                v.value()
                    .get(..4)
                    .ok_or_else(|| StorageError::Corrupt("format version".into()))?,
            );
            u32::from_le_bytes(b)
        }
        None => return Err(StorageError::Corrupt("index has no format version".into())),
    };
    if version > INDEX_FORMAT_VERSION {
        return Err(StorageError::Corrupt(format!(
            "index format {version} is newer than this build"
        )));
    }
    let ckpt = match meta.get(META_CHECKPOINT)? {
        Some(v) => decode_position(v.value())?,
        None => Position {
            segment: 0,
            offset: 0,
        },
    };
    let mut sessions = load_sessions(&txn)?;
    let mut space = BTreeMap::new();
    for r in txn.open_table(SEGMENTS)?.iter()? {
        let (k, v) = r?;
        space.insert(k.value(), decode_space(v.value())?);
    }
    drop(meta);
    drop(txn);

    let mut ends = BTreeMap::new();
    let mut progress = Vec::new();
    let last = ids.last().copied();
    for &id in &ids {
        let len = io.len(id)?;
        if id < ckpt.segment {
            ends.insert(id, len);
            continue;
        }
        let start = if id == ckpt.segment {
            ckpt.offset.max(seg::LEN as u64)
        } else {
            seg::LEN as u64
        };
        if len < start && id == ckpt.segment {
            return Err(StorageError::Corrupt(format!(
                "segment {id} is shorter ({len}) than the index checkpoint ({start})"
            )));
        }
        if id > ckpt.segment && !header_ok(io, id, len)? {
            // Created after the checkpoint, so the index refers to nothing in it: its creation
            // was torn by the crash. Start it over.
            reset_segment(io, id)?;
            ends.insert(id, seg::LEN as u64);
            continue;
        }
        let body = io.read(id, start, (len - start) as usize)?;
        let mut scan = Scanner::new(&body, start);
        for (at, d) in scan.by_ref() {
            if d.header.kind != Kind::Chunk {
                continue;
            }
            let sid = UploadId(d.header.session);
            if let Some(s) = sessions.get_mut(&sid) {
                if d.header.blob_offset == s.len {
                    let extent = Extent {
                        segment: id,
                        offset: at + rec::HEADER_LEN as u64,
                        len: d.header.payload_len,
                    };
                    s.extents.push(extent);
                    s.len += u64::from(extent.len);
                    progress.push(Progress {
                        session: sid,
                        blob_offset: d.header.blob_offset,
                        extent,
                    });
                }
            }
        }
        let valid = scan.valid_end();
        if valid < len {
            if Some(id) == last {
                // A torn tail: nothing after the checkpoint was ever acknowledged as committed.
                io.set_len(id, valid)?;
                io.sync_data(id)?;
            } else {
                tracing::warn!(
                    segment = id,
                    at = valid,
                    "undecodable record in a sealed segment"
                );
            }
        }
        ends.insert(id, valid);
    }
    Ok(Recovered {
        ends,
        sessions: sessions.into_iter().collect(),
        progress,
        space,
    })
}

fn header_ok(io: &dyn SegmentIo, id: u64, len: u64) -> Result<bool, StorageError> {
    if len < seg::LEN as u64 {
        return Ok(false);
    }
    let h = io.read(id, 0, seg::LEN)?;
    Ok(decode_segment_header(&h) == Ok(id))
}

/// A segment whose creation was torn: start it over with a fresh header.
fn reset_segment(io: &dyn SegmentIo, id: u64) -> Result<(), StorageError> {
    io.set_len(id, 0)?;
    io.write_at(id, 0, &[&encode_segment_header(id, 0)])?;
    io.sync_data(id)?;
    Ok(())
}

fn load_sessions(txn: &redb::ReadTransaction) -> Result<HashMap<UploadId, Session>, StorageError> {
    let uploads = txn.open_table(UPLOADS)?;
    let chunks = txn.open_table(UPLOAD_CHUNKS)?;
    let mut out = HashMap::new();
    for r in uploads.iter()? {
        let (k, v) = r?;
        let mut id = [0u8; 16];
        if k.value().len() != 16 {
            return Err(StorageError::Corrupt("upload key length".into()));
        }
        id.copy_from_slice(k.value());
        let (started_ms, repo) = decode_upload(v.value())?;
        let lo = upload_chunk_key(&id, 0);
        let hi = upload_chunk_key(&id, u64::MAX);
        let mut extents = Vec::new();
        let mut next = 0u64;
        for c in chunks.range(&lo[..]..=&hi[..])? {
            let (ck, cv) = c?;
            let mut off = [0u8; 8];
            off.copy_from_slice(&ck.value()[16..24]);
            let e = decode_extent(cv.value())?;
            // Only a contiguous prefix counts; a gap would make later bytes unusable.
            if u64::from_be_bytes(off) != next {
                break;
            }
            next += u64::from(e.len);
            extents.push(e);
        }
        let started = UNIX_EPOCH + Duration::from_millis(started_ms);
        out.insert(UploadId(id), Session::restored(repo, started, extents));
    }
    Ok(out)
}

/// Builds a new index from the segments alone. Restores blobs, repository links as first
/// pushed, and manifests with their media type; tags, referrers, deletions and upload
/// sessions are not in the log and are lost (storage-format.md §Rebuild).
fn rebuild(io: &dyn SegmentIo, db: &Database, ids: &[u64]) -> Result<Recovered, StorageError> {
    let mut ends = BTreeMap::new();
    let mut pending: HashMap<[u8; 16], Vec<(u64, Extent)>> = HashMap::new();
    let mut blobs: BTreeMap<Vec<u8>, (u64, Vec<Extent>)> = BTreeMap::new();
    let mut links: Vec<(String, Vec<u8>)> = Vec::new();
    let mut manifests: Vec<(String, Vec<u8>, ManifestMeta)> = Vec::new();
    let mut space: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let dead = |space: &mut BTreeMap<u64, (u64, u64)>, ex: &[Extent]| {
        for e in ex {
            space.entry(e.segment).or_default().1 += u64::from(e.len);
        }
    };
    let last = ids.last().copied();
    for &id in ids {
        let len = io.len(id)?;
        if !header_ok(io, id, len)? {
            // Too short to hold a record: a creation torn by a crash. Anything longer is kept
            // for scrub to report rather than overwritten.
            if len <= seg::LEN as u64 || Some(id) == last {
                reset_segment(io, id)?;
                ends.insert(id, seg::LEN as u64);
            } else {
                tracing::warn!(
                    segment = id,
                    "segment header damaged; its records are skipped"
                );
                ends.insert(id, len);
            }
            continue;
        }
        let start = seg::LEN as u64;
        let body = io.read(id, start, (len - start) as usize)?;
        let mut scan = Scanner::new(&body, start);
        for (at, d) in scan.by_ref() {
            let sid = d.header.session;
            match d.header.kind {
                Kind::Chunk => {
                    let extent = Extent {
                        segment: id,
                        offset: at + rec::HEADER_LEN as u64,
                        len: d.header.payload_len,
                    };
                    pending
                        .entry(sid)
                        .or_default()
                        .push((d.header.blob_offset, extent));
                }
                Kind::Abort => {
                    let ex: Vec<Extent> = pending
                        .remove(&sid)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|x| x.1)
                        .collect();
                    dead(&mut space, &ex);
                }
                Kind::Commit => {
                    let mut chunks = pending.remove(&sid).unwrap_or_default();
                    chunks.sort_by_key(|c| c.0);
                    let ex: Vec<Extent> = chunks.iter().map(|c| c.1).collect();
                    let Ok(p) = CommitPayload::decode(d.payload) else {
                        dead(&mut space, &ex);
                        continue;
                    };
                    let mut next = 0u64;
                    let contiguous = chunks.iter().all(|(off, e)| {
                        let ok = *off == next;
                        next += u64::from(e.len);
                        ok
                    }) && next == p.size;
                    let dk = digest_key(&p.digest);
                    if !contiguous || blobs.contains_key(&dk) {
                        dead(&mut space, &ex);
                    } else {
                        for e in &ex {
                            space.entry(e.segment).or_default().0 += u64::from(e.len);
                        }
                        blobs.insert(dk.clone(), (p.size, ex));
                    }
                    if contiguous || blobs.contains_key(&dk) {
                        if !p.media_type.is_empty() {
                            let meta = ManifestMeta {
                                media_type: p.media_type.clone(),
                                size: p.size,
                                ..Default::default()
                            };
                            manifests.push((p.repo.clone(), dk.clone(), meta));
                        }
                        links.push((p.repo, dk));
                    }
                }
            }
        }
        let valid = scan.valid_end();
        if valid < len && Some(id) == last {
            io.set_len(id, valid)?;
            io.sync_data(id)?;
        }
        ends.insert(id, valid);
    }
    for (_, chunks) in pending {
        let ex: Vec<Extent> = chunks.into_iter().map(|c| c.1).collect();
        dead(&mut space, &ex);
    }
    let checkpoint = ends.iter().next_back().map(|(&s, &o)| Position {
        segment: s,
        offset: o,
    });
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        meta.insert(META_FORMAT, &INDEX_FORMAT_VERSION.to_le_bytes()[..])?;
        if let Some(c) = checkpoint {
            meta.insert(META_CHECKPOINT, &encode_position(c)[..])?;
        }
        let mut bt = txn.open_table(BLOBS)?;
        for (k, (size, ex)) in &blobs {
            bt.insert(&k[..], &encode_blob(*size, ex)[..])?;
        }
        let mut rb = txn.open_table(REPO_BLOBS)?;
        let mut repos = txn.open_table(REPOS)?;
        for (repo, dk) in &links {
            rb.insert(&repo_key(repo, dk)[..], ())?;
            repos.insert(repo.as_str(), ())?;
        }
        let mut mt = txn.open_table(MANIFESTS)?;
        for (repo, dk, meta) in &manifests {
            mt.insert(&repo_key(repo, dk)[..], &to_json(meta)?[..])?;
        }
        let mut st = txn.open_table(SEGMENTS)?;
        for (&id, &(l, d)) in &space {
            st.insert(id, &encode_space(l, d)[..])?;
        }
        for t in [TAGS, REFERRERS, UPLOADS, UPLOAD_CHUNKS] {
            txn.open_table(t)?;
        }
    }
    txn.commit()?;
    Ok(Recovered {
        ends,
        sessions: Vec::new(),
        progress: Vec::new(),
        space,
    })
}
