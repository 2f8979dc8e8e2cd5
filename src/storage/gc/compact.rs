//! Compaction: sealed segments whose live bytes fell below a threshold are emptied by copying
//! their live chunk records into the compaction stream (segments of their own, so pushes never
//! interleave with relocations), switching each blob to the copies with one logged `relocate`
//! op per batch, writing a base of the index, and deleting the emptied segments. Pulls that
//! started before a switch keep reading the old segment through their pin.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use redb::ReadableTable;

use crate::storage::error::StorageError;
use crate::storage::index::base;
use crate::storage::index::ops::{Move, Op};
use crate::storage::index::schema::*;
use crate::storage::segment::io::{SegmentIo, SegmentPin};
use crate::storage::segment::log::{create_segment, Extent};
use crate::storage::segment::record::{decode_record, rec, seg, Decoded, Kind, Stream};
use crate::storage::store::Store;
use crate::storage::throttle::Throttle;
use crate::storage::types::{GcOptions, GcPhase, GcProgress, GcReport};

/// Relocations are committed in batches of about this many copied bytes (or blobs): large
/// enough that the sync and the commit are a small cost, small enough that a crash redoes
/// little.
const BATCH_BYTES: u64 = 64 << 20;
const BATCH_BLOBS: usize = 1024;
/// Start writeback of copied bytes every this many, so a batch's sync has little left to do.
const WRITEBACK_STEP: u64 = 8 << 20;
/// Ask the disk for the live records this far ahead of the copy, so reads overlap the copying.
const PREFETCH_AHEAD: u64 = 32 << 20;

/// The compaction stream's active segment.
struct Writer<'a> {
    store: &'a Store,
    io: Arc<dyn SegmentIo>,
    id: u64,
    end: u64,
    writeback_from: u64,
}

impl<'a> Writer<'a> {
    fn new(store: &'a Store) -> Result<Writer<'a>, StorageError> {
        let io = store.inner.log.io().clone();
        let id = store.inner.log.reserve_segment_id();
        create_segment(io.as_ref(), id, Stream::Compaction)?;
        let end = seg::LEN as u64;
        store.inner.log.note_segment(id, end, Stream::Compaction);
        Ok(Writer {
            store,
            io,
            id,
            end,
            writeback_from: end,
        })
    }

    /// Appends a copy of a verified chunk record (its header re-encoded in this version, its
    /// payload and trailer) and returns where its payload now lives.
    fn append(&mut self, d: &Decoded<'_>, sum: &[u8]) -> Result<Extent, StorageError> {
        let len = d.header.record_len();
        if self.end > seg::LEN as u64 && self.end + len > self.store.inner.opts.max_segment_bytes {
            self.roll()?;
        }
        let head = d.header.encode();
        if let Err(e) = self
            .io
            .write_at(self.id, self.end, &[&head, d.payload, sum])
        {
            // Cut the partial record so the segment still ends in a whole one.
            let _ = self.io.set_len(self.id, self.end);
            return Err(StorageError::from_io(e));
        }
        let extent = Extent {
            segment: self.id,
            offset: self.end + rec::HEADER_LEN as u64,
            len: d.header.payload_len,
        };
        self.end += len;
        self.store
            .inner
            .log
            .note_segment(self.id, self.end, Stream::Compaction);
        if self.end - self.writeback_from >= WRITEBACK_STEP {
            self.io
                .start_writeback(self.id, self.writeback_from, self.end - self.writeback_from);
            self.writeback_from = self.end;
        }
        Ok(extent)
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.io.sync_data(self.id).map_err(StorageError::from_io)
    }

    /// Seals the current segment (synced, like a log roll) and starts the next.
    fn roll(&mut self) -> Result<(), StorageError> {
        self.sync()?;
        let next = Writer::new(self.store)?;
        self.id = next.id;
        self.end = next.end;
        self.writeback_from = next.end;
        Ok(())
    }
}

/// The victims, held open for reading as the copy reaches them.
struct Pins<'a> {
    io: &'a dyn SegmentIo,
    open: BTreeMap<u64, Arc<dyn SegmentPin>>,
}

impl<'a> Pins<'a> {
    fn new(io: &'a dyn SegmentIo) -> Pins<'a> {
        Pins {
            io,
            open: BTreeMap::new(),
        }
    }

    fn get(&mut self, segment: u64) -> Result<&Arc<dyn SegmentPin>, StorageError> {
        Ok(match self.open.entry(segment) {
            Entry::Occupied(pin) => pin.into_mut(),
            Entry::Vacant(slot) => slot.insert(self.io.pin(segment)?),
        })
    }
}

/// Keeps the disk reading up to [`PREFETCH_AHEAD`] bytes of live records ahead of the copy
/// (only the live ones: reading dead bytes would spend the bandwidth compaction saves).
struct Prefetch {
    /// The victims' live extents, in copy order.
    extents: Vec<Extent>,
    /// `starts[i]`: payload bytes of the extents before `extents[i]`.
    starts: Vec<u64>,
    /// The first extent not yet asked for.
    next: usize,
}

impl Prefetch {
    fn new(extents: Vec<Extent>) -> Prefetch {
        let starts = extents
            .iter()
            .scan(0u64, |at, e| {
                let start = *at;
                *at += u64::from(e.len);
                Some(start)
            })
            .collect();
        Prefetch {
            extents,
            starts,
            next: 0,
        }
    }

    /// Called before the copy reads `extents[at]`.
    fn ahead(&mut self, pins: &mut Pins<'_>, at: usize) -> Result<(), StorageError> {
        let Some(&from) = self.starts.get(at) else {
            return Ok(());
        };
        self.next = self.next.max(at);
        while let (Some(&e), Some(&at)) = (self.extents.get(self.next), self.starts.get(self.next))
        {
            if at >= from + PREFETCH_AHEAD {
                break;
            }
            let start = e.offset - rec::HEADER_LEN as u64;
            pins.get(e.segment)?
                .prefetch(start, rec::OVERHEAD as u64 + u64::from(e.len));
            self.next += 1;
        }
        Ok(())
    }
}

/// Segments that hold chunks of open upload sessions (in the index or only in memory yet):
/// their chunks are not blobs, so such a segment waits for a later run.
fn busy_segments(store: &Store) -> Result<HashSet<u64>, StorageError> {
    let mut busy = HashSet::new();
    let txn = store.inner.db.begin_read()?;
    for r in txn.open_table(UPLOAD_CHUNKS)?.iter()? {
        busy.insert(decode_extent(r?.1.value())?.segment);
    }
    let sessions: Vec<_> = store.inner.sessions_read().values().cloned().collect();
    for s in sessions {
        let s = s.lock().unwrap_or_else(|p| p.into_inner());
        busy.extend(s.extents.iter().map(|e| e.segment));
    }
    Ok(busy)
}

/// Seals the active log segment when it is below the live threshold and at least an eighth of
/// the segment size, so that it can be compacted in this run (smaller ones are not worth a roll).
fn seal_sparse_active(store: &Store, threshold: f64) -> Result<(), StorageError> {
    let log = &store.inner.log;
    let (active, end) = log.active();
    let live = store
        .inner
        .space
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&active)
        .map_or(0, |s| s.0);
    let min_len = store.inner.opts.max_segment_bytes / 8;
    if end >= min_len && (live as f64) < threshold * end as f64 {
        log.seal_active(min_len)?;
    }
    Ok(())
}

/// Sealed segments worth rewriting: below the live threshold, not the newest segment (ids are
/// never reused), not holding session chunks.
pub(crate) fn victims(store: &Store, threshold: f64) -> Result<BTreeMap<u64, u64>, StorageError> {
    let log = &store.inner.log;
    seal_sparse_active(store, threshold)?;
    let (active, _) = log.active();
    let segments = log.segments();
    let newest = segments.last().map(|s| s.0);
    let busy = busy_segments(store)?;
    let floor = store.inner.floors.lowest().unwrap_or(u64::MAX);
    let space = store
        .inner
        .space
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(segments
        .into_iter()
        .filter(|&(id, end, stream)| {
            let live = space.get(&id).map_or(0, |s| s.0);
            // Only log segments receive client writes; compaction segments are ours.
            id != active
                && (stream == Stream::Compaction || id < floor)
                && Some(id) != newest
                && !busy.contains(&id)
                && (live as f64) < threshold * end as f64
        })
        .map(|(id, end, _)| (id, end))
        .collect())
}

/// Rewrites and deletes the victims; adds what it did to `report`.
pub(crate) fn compact(
    store: &Store,
    opts: &GcOptions,
    progress: &mut dyn FnMut(GcProgress),
    report: &mut GcReport,
) -> Result<(), StorageError> {
    let victims = victims(store, opts.compact_threshold)?;
    if victims.is_empty() {
        return Ok(());
    }
    let io = store.inner.log.io().clone();
    let mut moving: Vec<(Digest, Vec<Extent>)> = Vec::new();
    {
        let txn = store.inner.db.begin_read()?;
        for r in txn.open_table(BLOBS)?.iter()? {
            let (k, v) = r?;
            let (_, extents) = decode_blob(v.value())?;
            if extents.iter().any(|e| victims.contains_key(&e.segment)) {
                moving.push((decode_digest_key(k.value())?.0, extents));
            }
        }
    }
    let total: u64 = moving
        .iter()
        .flat_map(|(_, ex)| ex.iter())
        .filter(|e| victims.contains_key(&e.segment))
        .map(|e| u64::from(e.len))
        .sum();
    let mut done = 0u64;
    progress(GcProgress {
        phase: GcPhase::Compact,
        done,
        total,
    });
    // Copy in the victims' order, so each segment is read front to back.
    let first_victim_extent = |extents: &[Extent]| {
        extents
            .iter()
            .filter(|e| victims.contains_key(&e.segment))
            .map(|e| (e.segment, e.offset))
            .min()
    };
    moving.sort_by_cached_key(|(_, extents)| first_victim_extent(extents));
    let is_victim = |e: &&Extent| victims.contains_key(&e.segment);
    let mut prefetch = Prefetch::new(
        moving
            .iter()
            .flat_map(|(_, extents)| extents.iter().filter(is_victim))
            .copied()
            .collect(),
    );
    let mut pins = Pins::new(io.as_ref());
    let mut throttle = Throttle::new(opts.compact_rate);
    let mut writer: Option<Writer<'_>> = None;
    let mut batch: Vec<Move> = Vec::new();
    let mut batch_bytes = 0u64;
    let mut damaged: BTreeSet<u64> = BTreeSet::new();
    let flush = |writer: &Option<Writer<'_>>, batch: &mut Vec<Move>| -> Result<(), StorageError> {
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(w) = writer {
            w.sync()?;
        }
        store.submit(Op::Relocate {
            moves: std::mem::take(batch),
        })?;
        Ok(())
    };
    // The index, in copy order, of the next victim extent read.
    let mut read_index = 0usize;
    'blobs: for (digest, from) in moving {
        let next_blob = read_index + from.iter().filter(is_victim).count();
        let mut to = Vec::with_capacity(from.len());
        for e in &from {
            if !victims.contains_key(&e.segment) {
                to.push(*e);
                continue;
            }
            prefetch.ahead(&mut pins, read_index)?;
            read_index += 1;
            let record = pins.get(e.segment)?.read(
                e.offset - rec::HEADER_LEN as u64,
                rec::OVERHEAD + e.len as usize,
            )?;
            let decoded = decode_record(&record)
                .ok()
                .filter(|d| d.header.kind == Kind::Chunk && d.header.payload_len == e.len);
            let (Some(decoded), Some(sum)) = (decoded, record.last_chunk::<{ rec::TRAILER_LEN }>())
            else {
                // Never copy damage forward; the scrub reports the blob, and its segment stays.
                tracing::error!(%digest, segment = e.segment, offset = e.offset,
                    "damaged chunk found while compacting; blob left in place");
                damaged.insert(e.segment);
                read_index = next_blob;
                continue 'blobs;
            };
            let w = match writer.as_mut() {
                Some(w) => w,
                None => writer.insert(Writer::new(store)?),
            };
            to.push(w.append(&decoded, sum)?);
            done += u64::from(e.len);
            batch_bytes += u64::from(e.len);
            throttle.spend(u64::from(e.len));
        }
        batch.push(Move { digest, from, to });
        if batch_bytes >= BATCH_BYTES || batch.len() >= BATCH_BLOBS {
            flush(&writer, &mut batch)?;
            batch_bytes = 0;
            progress(GcProgress {
                phase: GcPhase::Compact,
                done,
                total,
            });
        }
    }
    flush(&writer, &mut batch)?;
    if let Some(w) = &writer {
        w.sync()?;
    }
    report.bytes_relocated += done;
    progress(GcProgress {
        phase: GcPhase::Compact,
        done,
        total,
    });

    // Only segments nothing names any more go (a blob swept, quarantined or pushed meanwhile
    // is fine; a damaged one keeps its segment).
    let mut deletable: BTreeSet<u64> = victims.keys().copied().collect();
    for id in &damaged {
        deletable.remove(id);
    }
    {
        let txn = store.inner.db.begin_read()?;
        for r in txn.open_table(BLOBS)?.iter()? {
            for e in decode_blob(r?.1.value())?.1 {
                deletable.remove(&e.segment);
            }
        }
    }
    for id in busy_segments(store)? {
        deletable.remove(&id);
    }
    if deletable.is_empty() {
        return Ok(());
    }
    // The ops in the deleted log segments live on in a base taken after them, and the durable
    // index is past them, so neither a reopen nor a rebuild needs them.
    store.submit(Op::Checkpoint)?;
    let position = {
        let txn = store.inner.db.begin_read()?;
        base::write(io.as_ref(), &txn)?
    };
    let compaction_stream: HashSet<u64> = store
        .inner
        .log
        .segments()
        .into_iter()
        .filter(|s| s.2 == Stream::Compaction)
        .map(|s| s.0)
        .collect();
    let ids: Vec<u64> = deletable
        .into_iter()
        .filter(|id| *id < position.segment || compaction_stream.contains(id))
        .collect();
    store.submit(Op::DropSegments { ids: ids.clone() })?;
    let mut reclaimed = 0u64;
    for id in ids {
        reclaimed += victims.get(&id).copied().unwrap_or(0);
        store.inner.log.remove_segment(id)?;
        store
            .inner
            .space
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        report.segments_compacted += 1;
    }
    report.bytes_reclaimed += reclaimed;
    base::prune(io.as_ref(), position)?;
    Ok(())
}

use crate::oci::digest::Digest;
