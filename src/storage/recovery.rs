//! Opening after a crash: trust the index up to its checkpoint, replay the log after it (OP
//! records and session chunks, in log order), and cut a torn tail. With no index at all the
//! whole log is replayed into a fresh one, which rebuilds everything.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, UNIX_EPOCH};

use redb::{Database, ReadableTable};

use super::error::StorageError;
use super::index::base;
use super::index::ops::{apply, Op, SpaceDelta, Tables};
use super::index::schema::*;
use super::segment::io::segment_file_name;
use super::segment::io::SegmentIo;
use super::segment::log::SegmentInfo;
use super::segment::log::{Extent, Position, Progress};
use super::segment::record::{
    decode_segment_header, rec, seg, FrameError, Kind, RecordHeader, Scanner, Stream,
};
use super::session::Session;
use super::types::UploadId;

/// How many `<segment>.seg.tail-<unix ms>` copies an open keeps (storage-format.md section 2):
/// the newest ones, so a run of crashes cannot fill the disk with copies nobody looked at.
pub const KEPT_TAIL_FILES: usize = 8;

pub(crate) struct Recovered {
    pub segments: BTreeMap<u64, SegmentInfo>,
    pub sessions: Vec<(UploadId, Session)>,
    pub space: BTreeMap<u64, (u64, u64)>,
}

/// What the index says about itself.
enum IndexState {
    /// Written by this format version, reflecting the log up to the checkpoint (if any).
    Current(Option<Position>),
    /// Written by an older format version: rebuilt from the log.
    Older(u32),
}

fn read_version(db: &Database) -> Result<IndexState, StorageError> {
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
        return Err(StorageError::UnsupportedFormat(format!(
            "index format {version} is newer than this build understands ({INDEX_FORMAT_VERSION})"
        )));
    }
    if version < INDEX_FORMAT_VERSION {
        return Ok(IndexState::Older(version));
    }
    Ok(IndexState::Current(match meta.get(META_CHECKPOINT)? {
        Some(v) => Some(decode_position(v.value())?),
        None => None,
    }))
}

/// File changes recovery decided on; made only once the whole log was read without finding
/// anything this build must refuse, so a refused open changes nothing.
enum Repair {
    /// Keep a copy of the bytes from `at` on, then cut the segment there.
    CutTail { id: u64, at: u64, tail: Vec<u8> },
    /// A segment whose creation was torn (no valid header, no record): it held nothing.
    Remove { id: u64 },
}

fn unsupported(id: u64, at: u64, what: impl std::fmt::Display) -> StorageError {
    StorageError::UnsupportedFormat(format!(
        "segments/{} at offset {at}: {what}; open it with a newer berth",
        segment_file_name(id)
    ))
}

/// Whether a scan stopped at something a newer writer made, rather than at damage.
fn newer_record(e: &FrameError) -> bool {
    matches!(
        e,
        FrameError::Newer(_) | FrameError::BadKind(_) | FrameError::Reserved
    )
}

pub(crate) fn recover(
    io: &dyn SegmentIo,
    db: &Database,
    fresh: bool,
) -> Result<Recovered, StorageError> {
    let state = if fresh {
        IndexState::Older(0)
    } else {
        read_version(db)?
    };
    let ids = io.list()?;
    // Headers first: a segment of a newer format stops the open before anything is touched.
    let mut headers = BTreeMap::new();
    for &id in &ids {
        let len = io.len(id)?;
        let h = if len >= seg::LEN as u64 {
            match decode_segment_header(&io.read(id, 0, seg::LEN)?) {
                Ok(h) if h.id == id => Some(h),
                // A good crc over a newer version, an unknown stream or reserved bytes set: a
                // newer writer made it, so it is refused like a newer record.
                Err(e @ (FrameError::Newer(_) | FrameError::Reserved)) => {
                    return Err(unsupported(id, 0, e))
                }
                _ => None,
            }
        } else {
            None
        };
        headers.insert(id, (len, h));
    }
    let last_of = |stream: Stream| {
        headers
            .iter()
            .rev()
            .find(|(_, (_, h))| h.is_some_and(|h| h.stream == stream))
            .map(|(&id, _)| id)
    };
    let (last_log, last_compaction) = (last_of(Stream::Log), last_of(Stream::Compaction));
    let last_id = ids.last().copied();

    let mut segments = BTreeMap::new();
    let mut repairs = Vec::new();
    let txn = db.begin_write()?;
    {
        let mut t = Tables::open(&txn)?;
        let mut ckpt = Position {
            segment: 0,
            offset: 0,
        };
        match state {
            IndexState::Current(c) => ckpt = c.unwrap_or(ckpt),
            IndexState::Older(version) => {
                drop(t);
                if version > 0 {
                    tracing::warn!(
                        from = version,
                        to = INDEX_FORMAT_VERSION,
                        "index written by an older format version; rebuilding it from the log"
                    );
                }
                for table in txn.list_tables()?.collect::<Vec<_>>() {
                    txn.delete_table(table)?;
                }
                t = Tables::open(&txn)?;
                t.meta
                    .insert(META_FORMAT, &INDEX_FORMAT_VERSION.to_le_bytes()[..])?;
                if let Some(b) = base::load_newest(io)? {
                    tracing::info!(base = %b.name, rows = b.rows.len(), "rebuilding from a base");
                    base::restore(&mut t, &b.rows)?;
                    ckpt = b.position;
                }
            }
        }
        let mut delta = SpaceDelta::new();
        let mut replay = Replay {
            t: &mut t,
            delta: &mut delta,
            session_ends: HashMap::new(),
        };
        for (&id, &(len, header)) in &headers {
            let Some(header) = header else {
                let after = if len > seg::LEN as u64 {
                    io.read(id, seg::LEN as u64, (len - seg::LEN as u64) as usize)?
                } else {
                    Default::default()
                };
                if let Some(at) = next_record_header(&after, seg::LEN as u64) {
                    // The header is synced before any record is written (section 4.5), so this
                    // is damage over records that may have been acknowledged: resetting the
                    // file would wipe them.
                    return Err(StorageError::Corrupt(format!(
                        "segments/{} has a damaged header over records (first at offset {at}); \
                         move the file aside to open the store without it",
                        segment_file_name(id)
                    )));
                }
                if len <= seg::LEN as u64 || Some(id) == last_id {
                    // A creation torn by the crash; nothing in it was ever acknowledged.
                    repairs.push(Repair::Remove { id });
                } else {
                    tracing::warn!(
                        segment = id,
                        "segment header damaged and no record readable; segment skipped"
                    );
                    segments.insert(
                        id,
                        SegmentInfo {
                            end: len,
                            stream: Stream::Log,
                            version: 1,
                        },
                    );
                }
                continue;
            };
            let is_last = match header.stream {
                Stream::Log => Some(id) == last_log,
                Stream::Compaction => Some(id) == last_compaction,
            };
            let info = |end| SegmentInfo {
                end,
                stream: header.stream,
                version: header.version,
            };
            // Log segments before the checkpoint are reflected in the index; sealed compaction
            // segments hold only chunks that ops in the log name, and were synced when sealed.
            let settled = match header.stream {
                Stream::Log => id < ckpt.segment,
                Stream::Compaction => !is_last,
            };
            if settled {
                segments.insert(id, info(len));
                continue;
            }
            let start = if header.stream == Stream::Log && id == ckpt.segment {
                ckpt.offset.max(seg::LEN as u64)
            } else {
                seg::LEN as u64
            };
            if len < start {
                return Err(StorageError::Corrupt(format!(
                    "segment {id} is shorter ({len}) than the index checkpoint ({start})"
                )));
            }
            let body = io.read(id, start, (len - start) as usize)?;
            let mut scan = Scanner::new(&body, start);
            for (at, d) in scan.by_ref() {
                if header.stream == Stream::Compaction {
                    continue;
                }
                match d.header.kind {
                    Kind::Chunk => {
                        let extent = Extent {
                            segment: id,
                            offset: at + rec::HEADER_LEN as u64,
                            len: d.header.payload_len,
                        };
                        replay.chunk(UploadId(d.header.session), d.header.blob_offset, extent)?;
                    }
                    Kind::Op => {
                        let op = Op::decode(d.payload)
                            .map_err(|e| unsupported(id, at, format!("unknown operation ({e})")))?;
                        if op.since_version() > d.version {
                            return Err(unsupported(
                                id,
                                at,
                                "an operation its record version does not allow",
                            ));
                        }
                        replay.op(&op)?;
                    }
                }
            }
            let valid = scan.valid_end();
            if let Some((at, e)) = &scan.error {
                if newer_record(e) {
                    return Err(unsupported(id, *at, e));
                }
            }
            if valid < len {
                if is_last {
                    // Normally a torn tail (nothing after the last durable sync was
                    // acknowledged), but a damaged byte in a synced record looks the same: keep
                    // the bytes before cutting them.
                    let tail = scan.rest().to_vec();
                    repairs.push(Repair::CutTail {
                        id,
                        at: valid,
                        tail,
                    });
                } else {
                    tracing::warn!(
                        segment = id,
                        at = valid,
                        "undecodable record in a sealed segment"
                    );
                }
            }
            segments.insert(id, info(valid));
        }
        drop(replay);
        let end = segments
            .iter()
            .rev()
            .find(|(_, s)| s.stream == Stream::Log)
            .map(|(&s, i)| Position {
                segment: s,
                offset: i.end,
            })
            .unwrap_or(ckpt);
        t.finish(&delta, end)?;
    }
    for r in repairs {
        match r {
            Repair::CutTail { id, at, tail } => {
                keep_tail(io, id, at, &tail)?;
                io.set_len(id, at)?;
                io.sync_data(id)?;
            }
            Repair::Remove { id } => {
                io.remove(id)?;
                io.sync_dir()?;
            }
        }
    }
    txn.commit()?;
    prune_tails(io, KEPT_TAIL_FILES);
    let rtxn = db.begin_read()?;
    let sessions = load_sessions(&rtxn)?;
    let mut space = BTreeMap::new();
    for r in rtxn.open_table(SEGMENTS)?.iter()? {
        let (k, v) = r?;
        space.insert(k.value(), decode_space(v.value())?);
    }
    Ok(Recovered {
        segments,
        sessions,
        space,
    })
}

/// Replays log records into the index, exactly as the live store applied them.
struct Replay<'a, 't> {
    t: &'a mut Tables<'t>,
    delta: &'a mut SpaceDelta,
    /// Where each session's next chunk must start (None: session unknown).
    session_ends: HashMap<UploadId, Option<u64>>,
}

impl Replay<'_, '_> {
    fn chunk(
        &mut self,
        session: UploadId,
        blob_offset: u64,
        extent: Extent,
    ) -> Result<(), StorageError> {
        let end = match self.session_ends.get(&session) {
            Some(e) => *e,
            None => {
                let e = self.t.session_end(&session)?;
                self.session_ends.insert(session, e);
                e
            }
        };
        if end == Some(blob_offset) {
            self.t.add_progress(&Progress {
                session,
                blob_offset,
                extent,
            })?;
            self.session_ends.insert(
                session,
                Some(blob_offset.saturating_add(u64::from(extent.len))),
            );
        }
        Ok(())
    }

    fn op(&mut self, op: &Op) -> Result<(), StorageError> {
        match op {
            Op::Begin { id, .. } => {
                self.session_ends.insert(*id, Some(0));
            }
            Op::Commit(c) => {
                if let Some(s) = c.session {
                    self.session_ends.insert(s, None);
                }
            }
            Op::Discard {
                session: Some(s), ..
            } => {
                self.session_ends.insert(*s, None);
            }
            // Looked up again from the index once the op has cut the session's rows.
            Op::Truncate { session, .. } => {
                self.session_ends.remove(session);
            }
            _ => {}
        }
        // An op that failed live (say, a manifest with a missing reference) fails the same way
        // here, against the same index state, and changes nothing.
        apply(self.t, op, self.delta)?.ok();
        Ok(())
    }
}

/// Segment offset of the first place in `buf` (which starts at segment offset `base`) holding a
/// record header with a good crc, whether or not its payload is whole.
fn next_record_header(buf: &[u8], base: u64) -> Option<u64> {
    (0..buf.len())
        .find(|&i| {
            buf.get(i..).is_some_and(|rest| {
                rest.starts_with(rec::MAGIC) && RecordHeader::decode(rest).is_ok()
            })
        })
        .map(|i| base + i as u64)
}

/// Copies the bytes from `at` to the end of the last segment into `<segment>.tail-<unix ms>`
/// before recovery cuts them. A good record header past the first bad record points at media
/// damage (acknowledged commits may be in the cut); none points at a write torn by the crash.
fn keep_tail(io: &dyn SegmentIo, id: u64, at: u64, tail: &[u8]) -> Result<(), StorageError> {
    let later = tail
        .get(1..)
        .and_then(|rest| next_record_header(rest, at + 1));
    let tag = format!("tail-{}", now_ms());
    let saved = io.keep_aside(id, &tag, tail);
    let file = format!("segments/{}.{tag}", segment_file_name(id));
    match (&saved, later) {
        (Ok(()), Some(next)) => tracing::warn!(
            segment = id, at, bytes = tail.len(), next_record = next, kept = %file,
            "damaged record before later records (media damage?): cutting the tail, a copy is kept"
        ),
        (Ok(()), None) => tracing::warn!(
            segment = id, at, bytes = tail.len(), kept = %file,
            "torn tail cut, a copy is kept"
        ),
        (Err(e), None) => tracing::warn!(
            segment = id, at, bytes = tail.len(), error = %e,
            "torn tail cut; keeping a copy failed"
        ),
        (Err(e), Some(next)) => {
            // Acknowledged commits may follow the damage: never cut them without a copy.
            return Err(StorageError::Corrupt(format!(
                "segments/{} has a damaged record at offset {at} before a later record at \
                 {next}; keeping a copy of the {} bytes after it failed ({e})",
                segment_file_name(id),
                tail.len()
            )));
        }
    }
    Ok(())
}

/// Deletes all but the newest `keep` torn-tail copies (by the time in their names; ties by name).
/// Failures are only logged: the store never reads these files, they are for operators.
fn prune_tails(io: &dyn SegmentIo, keep: usize) {
    let names = match io.list_aside() {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "listing torn-tail copies failed; none removed");
            return;
        }
    };
    let mut tails: Vec<(u128, String)> = names
        .into_iter()
        .filter_map(|n| Some((n.rsplit_once(".seg.tail-")?.1.parse().ok()?, n)))
        .collect();
    tails.sort_unstable_by(|a, b| b.cmp(a));
    for (_, name) in tails.into_iter().skip(keep) {
        let file = format!("segments/{name}");
        match io.remove_aside(&name) {
            Ok(()) => tracing::info!(%file, kept = keep, "old torn-tail copy removed"),
            Err(e) => tracing::warn!(%file, error = %e, "removing an old torn-tail copy failed"),
        }
    }
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn load_sessions(txn: &redb::ReadTransaction) -> Result<Vec<(UploadId, Session)>, StorageError> {
    let uploads = txn.open_table(UPLOADS)?;
    let chunks = txn.open_table(UPLOAD_CHUNKS)?;
    let mut out = Vec::new();
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
            let off = decode_upload_chunk_key(ck.value())?;
            let e = decode_extent(cv.value())?;
            // Only a contiguous prefix counts; a gap would make later bytes unusable.
            if off != next {
                break;
            }
            next += u64::from(e.len);
            extents.push(e);
        }
        let started = UNIX_EPOCH + Duration::from_millis(started_ms);
        out.push((UploadId(id), Session::restored(repo, started, extents)));
    }
    Ok(out)
}
