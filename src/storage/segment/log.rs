//! The shared active segment every session appends to: record writes, rolling, syncing, and
//! the bookkeeping a group commit needs (where the durable end is, which chunk records still
//! have to be noted in the index).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use super::io::{SegmentIo, Staged};
use super::record::{
    encode_segment_header, rec, seg, trailer, Kind, RecordHeader, Stream, FORMAT_VERSION,
};
use crate::storage::error::StorageError;
use crate::storage::types::UploadId;

/// Where a chunk's payload lives: segment, offset of the payload, payload length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Extent {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

/// A position in the log: everything before it is complete records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// A chunk record of an upload session that the index does not list yet.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub session: UploadId,
    pub blob_offset: u64,
    pub extent: Extent,
}

/// How a record reaches its segment.
pub enum WriteMode<'a> {
    /// Through the page cache.
    Buffered,
    /// Its bulk around the page cache (`SegmentIo::write_at_uncached`), from `staged` when
    /// that was staged for where the record lands. `placed` learns where the record will end
    /// before it is written, so that the next record can be staged meanwhile.
    Uncached {
        staged: Option<Staged>,
        placed: &'a mut dyn FnMut(u64),
    },
}

/// Start writeback once this many bytes are written and not yet handed to the kernel.
const WRITEBACK_STEP: u64 = 1 << 20;

/// What recovery found out about one segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// End of its complete records.
    pub end: u64,
    pub stream: Stream,
    /// Format version of its header: new records go only into segments of the current version.
    pub version: u8,
}

struct LogState {
    active: u64,
    end: u64,
    /// Every segment's end (complete records only), of both streams; the active one is `end`.
    ends: BTreeMap<u64, u64>,
    /// The stream of every segment.
    streams: BTreeMap<u64, Stream>,
    /// The id the next created segment gets, whatever its stream: ids are never reused.
    next_id: u64,
    dirty: BTreeSet<u64>,
    writeback_from: u64,
    progress: Vec<Progress>,
    /// Set when a failed write could not be undone: nothing more may be appended.
    poisoned: bool,
}

pub struct Log {
    io: Arc<dyn SegmentIo>,
    max_segment_bytes: u64,
    state: Mutex<LogState>,
    /// A copy of `LogState::ends`, see `ends()`.
    ends_view: Mutex<BTreeMap<u64, u64>>,
}

/// What a group commit must make durable before it publishes index changes.
pub struct Snapshot {
    pub end: Position,
    pub dirty: Vec<u64>,
    pub progress: Vec<Progress>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Log {
    /// Opens the log over the segments recovery found, appending to the last segment of the
    /// log stream. A new segment is started when there is none, or when the last one was
    /// written by an older format version (new records only go into segments of this version).
    pub fn open(
        io: Arc<dyn SegmentIo>,
        max_segment_bytes: u64,
        segments: &BTreeMap<u64, SegmentInfo>,
    ) -> Result<Log, StorageError> {
        let mut ends: BTreeMap<u64, u64> = segments.iter().map(|(&id, s)| (id, s.end)).collect();
        let mut streams: BTreeMap<u64, Stream> =
            segments.iter().map(|(&id, s)| (id, s.stream)).collect();
        let next_id = segments.keys().next_back().map_or(1, |&id| id + 1);
        let last_log = segments
            .iter()
            .rev()
            .find(|(_, s)| s.stream == Stream::Log)
            .map(|(&id, s)| (id, *s));
        let (active, end, next_id) = match last_log {
            Some((id, s)) if s.version == FORMAT_VERSION => (id, s.end, next_id),
            Some((id, _)) => {
                // Sealed as it is: it was written (and synced) by the older version.
                io.sync_data(id).map_err(StorageError::from_io)?;
                create_segment(io.as_ref(), next_id, Stream::Log)?;
                ends.insert(next_id, seg::LEN as u64);
                (next_id, seg::LEN as u64, next_id + 1)
            }
            None => {
                create_segment(io.as_ref(), next_id, Stream::Log)?;
                ends.insert(next_id, seg::LEN as u64);
                (next_id, seg::LEN as u64, next_id + 1)
            }
        };
        streams.insert(active, Stream::Log);
        Ok(Log {
            io,
            max_segment_bytes,
            ends_view: Mutex::new(ends.clone()),
            state: Mutex::new(LogState {
                active,
                end,
                ends,
                streams,
                next_id,
                dirty: BTreeSet::from([active]),
                writeback_from: end,
                progress: Vec::new(),
                poisoned: false,
            }),
        })
    }

    /// Reserves a fresh segment id for another stream (compaction); the caller creates it.
    pub fn reserve_segment_id(&self) -> u64 {
        let mut st = self.lock();
        let id = st.next_id;
        st.next_id += 1;
        id
    }

    /// Records where a segment of another stream now ends, for scrubs, space reports and
    /// `ends()`; such segments are written outside the log's mutex.
    pub fn note_segment(&self, id: u64, end: u64, stream: Stream) {
        let mut st = self.lock();
        self.set_end(&mut st.ends, id, end);
        st.streams.insert(id, stream);
    }

    /// Every segment: id, end of its complete records, stream.
    pub fn segments(&self) -> Vec<(u64, u64, Stream)> {
        let st = self.lock();
        st.ends
            .iter()
            .map(|(&id, &end)| (id, end, st.streams.get(&id).copied().unwrap_or(Stream::Log)))
            .collect()
    }

    /// The active log segment and where it ends.
    pub fn active(&self) -> (u64, u64) {
        let st = self.lock();
        (st.active, st.end)
    }

    /// Deletes a sealed segment that nothing in the index names any more. Readers that pinned
    /// it keep reading it until they let go (the backend keeps it open).
    pub fn remove_segment(&self, id: u64) -> Result<(), StorageError> {
        {
            let mut st = self.lock();
            if id == st.active {
                return Err(StorageError::Index(format!(
                    "segment {id} is the active log segment"
                )));
            }
            st.ends.remove(&id);
            self.view().remove(&id);
            st.streams.remove(&id);
        }
        self.io
            .remove(id)
            .and_then(|()| self.io.sync_dir())
            .map_err(StorageError::from_io)
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn io(&self) -> &Arc<dyn SegmentIo> {
        &self.io
    }

    /// Appends one record; `track` notes a chunk of an upload session for the next checkpoint.
    /// On failure the partial record is cut off again, so the segment still ends in a whole
    /// record.
    pub fn append(
        &self,
        header: RecordHeader,
        payload: &[u8],
        track: bool,
    ) -> Result<Extent, StorageError> {
        // Hashed before taking the mutex, so other sessions can append meanwhile.
        let t = trailer(payload);
        self.append_parts(header, &[payload], t, track, WriteMode::Buffered)
    }

    /// Appends a chunk record whose payload is the concatenation of `parts` and whose blake3
    /// trailer the caller already computed (off this thread, while it ran sha256), so the
    /// payload needs neither a copy into one buffer nor hashing under the log mutex.
    pub fn append_parts(
        &self,
        header: RecordHeader,
        parts: &[&[u8]],
        trailer: [u8; rec::TRAILER_LEN],
        track: bool,
        mut mode: WriteMode<'_>,
    ) -> Result<Extent, StorageError> {
        let mut st = self.lock();
        if st.poisoned {
            return Err(StorageError::Poisoned);
        }
        self.make_room(&mut st, header.record_len())?;
        if let WriteMode::Uncached { placed, .. } = &mut mode {
            placed(st.end + header.record_len());
        }
        let extent = self.write_locked(&mut st, &header, parts, trailer, mode)?;
        self.note(&mut st, &header, extent, track);
        Ok(extent)
    }

    /// Appends a chunk record of an upload session from payload pieces with a precomputed
    /// trailer, noted for the next checkpoint.
    pub fn append_chunk(
        &self,
        session: &UploadId,
        blob_offset: u64,
        parts: &[&[u8]],
        trailer: [u8; rec::TRAILER_LEN],
        mode: WriteMode<'_>,
    ) -> Result<Extent, StorageError> {
        let h = chunk_header(session, blob_offset, parts);
        self.append_parts(h, parts, trailer, true, mode)
    }

    /// Stages the chunk record `append_chunk` would write for an uncached write at `at`.
    pub fn stage_chunk(
        &self,
        session: &UploadId,
        blob_offset: u64,
        parts: &[&[u8]],
        trailer: [u8; rec::TRAILER_LEN],
        at: u64,
    ) -> Option<Staged> {
        let head = chunk_header(session, blob_offset, parts).encode();
        self.io
            .stage_uncached(at, &record_bufs(&head, parts, &trailer))
    }

    fn note(&self, st: &mut LogState, header: &RecordHeader, extent: Extent, track: bool) {
        if track && header.kind == Kind::Chunk {
            st.progress.push(Progress {
                session: UploadId(header.session),
                blob_offset: header.blob_offset,
                extent,
            });
        }
    }

    /// The group-commit leader's step: appends the batch's OP records all together (in one
    /// segment, all or nothing) and takes the snapshot covering them.
    pub fn append_ops_and_snapshot(&self, payloads: &[Vec<u8>]) -> Result<Snapshot, StorageError> {
        let mut st = self.lock();
        if st.poisoned {
            return Err(StorageError::Poisoned);
        }
        let headers: Vec<RecordHeader> = payloads
            .iter()
            .map(|p| RecordHeader {
                kind: Kind::Op,
                flags: 0,
                payload_len: p.len() as u32,
                session: [0; 16],
                blob_offset: 0,
            })
            .collect();
        let total: u64 = headers.iter().map(|h| h.record_len()).sum();
        if total > 0 {
            self.make_room(&mut st, total)?;
        }
        let start = st.end;
        for (h, p) in headers.iter().zip(payloads) {
            if let Err(e) = self.write_locked(&mut st, h, &[p], trailer(p), WriteMode::Buffered) {
                // Records nobody will be told about must not be replayed after a crash.
                let id = st.active;
                if self.io.set_len(id, start).is_err() {
                    st.poisoned = true;
                }
                st.end = start;
                self.set_end(&mut st.ends, id, start);
                return Err(e);
            }
        }
        Ok(Snapshot {
            end: Position {
                segment: st.active,
                offset: st.end,
            },
            dirty: std::mem::take(&mut st.dirty).into_iter().collect(),
            progress: std::mem::take(&mut st.progress),
        })
    }

    fn make_room(&self, st: &mut LogState, len: u64) -> Result<(), StorageError> {
        if st.end > seg::LEN as u64 && st.end + len > self.max_segment_bytes {
            self.roll(st)?;
        }
        Ok(())
    }

    fn write_locked(
        &self,
        st: &mut LogState,
        header: &RecordHeader,
        parts: &[&[u8]],
        trailer: [u8; rec::TRAILER_LEN],
        mode: WriteMode<'_>,
    ) -> Result<Extent, StorageError> {
        debug_assert_eq!(
            parts.iter().map(|p| p.len()).sum::<usize>(),
            header.payload_len as usize
        );
        let head = header.encode();
        let (id, at) = (st.active, st.end);
        let bufs = record_bufs(&head, parts, &trailer);
        let written = match mode {
            WriteMode::Uncached { mut staged, .. } => {
                self.io.write_at_uncached(id, at, &bufs, staged.as_mut())
            }
            WriteMode::Buffered => self.io.write_at(id, at, &bufs),
        };
        if let Err(e) = written {
            if self.io.set_len(id, at).is_err() {
                st.poisoned = true;
            }
            return Err(StorageError::from_io(e));
        }
        st.end = at + header.record_len();
        let end = st.end;
        self.set_end(&mut st.ends, id, end);
        st.dirty.insert(id);
        if st.end - st.writeback_from >= WRITEBACK_STEP {
            self.io
                .start_writeback(id, st.writeback_from, st.end - st.writeback_from);
            st.writeback_from = st.end;
        }
        Ok(Extent {
            segment: id,
            offset: at + rec::HEADER_LEN as u64,
            len: header.payload_len,
        })
    }

    /// Seals the active segment now, as a roll does, if it holds at least `min_len` bytes: a
    /// segment can only be compacted once sealed, and with large segments a small registry's
    /// dead bytes would otherwise wait for the log to fill one.
    pub fn seal_active(&self, min_len: u64) -> Result<bool, StorageError> {
        let mut st = self.lock();
        if st.poisoned {
            return Err(StorageError::Poisoned);
        }
        if st.end <= seg::LEN as u64 || st.end < min_len {
            return Ok(false);
        }
        self.roll(&mut st)?;
        Ok(true)
    }

    /// Seals the active segment (synced, so a later segment implies a complete earlier one)
    /// and starts the next.
    fn roll(&self, st: &mut LogState) -> Result<(), StorageError> {
        if let Err(e) = self.io.sync_data(st.active) {
            // The kernel may have dropped the dirty pages; a retried sync would succeed and seal
            // a segment with holes under later acknowledged commits.
            st.poisoned = true;
            return Err(StorageError::from_io(e));
        }
        st.dirty.remove(&st.active);
        let next = st.next_id;
        create_segment(self.io.as_ref(), next, Stream::Log)?;
        st.next_id += 1;
        st.active = next;
        st.streams.insert(next, Stream::Log);
        st.end = seg::LEN as u64;
        st.writeback_from = st.end;
        self.set_end(&mut st.ends, next, st.end);
        st.dirty.insert(next);
        Ok(())
    }

    /// Makes every record before the snapshot's end durable.
    pub fn sync(&self, snap: &Snapshot) -> Result<(), StorageError> {
        for &id in &snap.dirty {
            if let Err(e) = self.io.sync_data(id) {
                // After a failed fdatasync the kernel may have dropped the dirty pages; only a
                // reopen with its recovery scan can tell what is on disk.
                self.lock().poisoned = true;
                return Err(StorageError::from_io(e));
            }
        }
        Ok(())
    }

    /// Puts progress back after a failed group commit so a retry still records it.
    pub fn restore(&self, snap: Snapshot) {
        let mut st = self.lock();
        st.dirty.extend(snap.dirty);
        let mut p = snap.progress;
        p.append(&mut st.progress);
        st.progress = p;
    }

    /// Refuses all further appends (until a reopen).
    pub fn poison(&self) {
        self.lock().poisoned = true;
    }

    pub fn is_poisoned(&self) -> bool {
        self.lock().poisoned
    }

    /// Whether session chunks are waiting to be recorded in the index.
    pub fn has_progress(&self) -> bool {
        !self.lock().progress.is_empty()
    }

    /// Segment id -> end of complete records, for scrubbing and space reports.
    /// Read from a copy kept beside the log's state, whose mutex is held across writes and
    /// the `fdatasync` of a roll: space reports (`/metrics`) must not wait for the disk.
    pub fn ends(&self) -> BTreeMap<u64, u64> {
        self.view().clone()
    }

    /// Records where a segment ends, in the state and in the copy `ends()` reads (always
    /// taken after the state's mutex, and never held across I/O).
    fn set_end(&self, ends: &mut BTreeMap<u64, u64>, id: u64, end: u64) {
        ends.insert(id, end);
        self.view().insert(id, end);
    }

    fn view(&self) -> MutexGuard<'_, BTreeMap<u64, u64>> {
        self.ends_view.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn chunk_header(session: &UploadId, blob_offset: u64, parts: &[&[u8]]) -> RecordHeader {
    RecordHeader {
        kind: Kind::Chunk,
        flags: 0,
        payload_len: parts.iter().map(|p| p.len()).sum::<usize>() as u32,
        session: session.0,
        blob_offset,
    }
}

/// A record's bytes in order: header, payload pieces, trailer.
fn record_bufs<'a>(
    head: &'a [u8; rec::HEADER_LEN],
    parts: &[&'a [u8]],
    trailer: &'a [u8; rec::TRAILER_LEN],
) -> Vec<&'a [u8]> {
    let mut bufs: Vec<&[u8]> = Vec::with_capacity(parts.len() + 2);
    bufs.push(head);
    bufs.extend_from_slice(parts);
    bufs.push(trailer);
    bufs
}

pub(crate) fn create_segment(
    io: &dyn SegmentIo,
    id: u64,
    stream: Stream,
) -> Result<(), StorageError> {
    io.create(id).map_err(StorageError::from_io)?;
    // The name must be durable before anything synced into the file is acknowledged: a power
    // cut would otherwise lose the whole segment with every commit in it.
    if let Err(e) = io.sync_dir() {
        let _ = io.remove(id);
        return Err(StorageError::from_io(e));
    }
    let h = encode_segment_header(id, now_ms(), stream);
    // The header is durable before any record follows it, so recovery can tell a torn
    // creation (nothing past the header) from a damaged header over synced records.
    if let Err(e) = io.write_at(id, 0, &[&h]).and_then(|()| io.sync_data(id)) {
        let _ = io.remove(id);
        return Err(StorageError::from_io(e));
    }
    Ok(())
}
