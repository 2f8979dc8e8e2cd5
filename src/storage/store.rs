//! The `Store` handle: opening, group-commit plumbing, blob reads and repository links.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use redb::{Database, Durability, ReadableTable};

use super::error::StorageError;
use super::group::Group;
use super::io::{FileIo, SegmentIo};
use super::log::{Extent, Log};
use super::ops::{apply_batch, Op, Out};
use super::record::{rec, seg, trailer, Kind, RecordHeader};
use super::recovery;
use super::schema::*;
use super::types::*;
use super::uploads::Session;
use crate::oci::digest::{Digest, Hasher};

/// A blob store in one directory. Cheap to clone; all clones share one engine.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub opts: StoreOptions,
    pub log: Log,
    pub db: Database,
    pub group: Group<Op, Out>,
    pub sessions: RwLock<HashMap<UploadId, Arc<Mutex<Session>>>>,
    /// Segment id -> (live, dead) bytes, mirrored from the `segments` table.
    pub space: Mutex<BTreeMap<u64, (u64, u64)>>,
    pub closed: AtomicBool,
    /// Index changes nobody waits for (session starts); they ride along with the next batch.
    pub deferred: Mutex<Vec<Op>>,
    /// Set while the index holds changes not yet made durable by an immediate commit.
    pub index_dirty: AtomicBool,
    /// Non-durable index commits since the last durable one.
    pub lazy_commits: AtomicU64,
    _lock: Option<File>,
}

/// redb frees the pages of non-durable commits only at the next durable one, so its file grows
/// with every lazy commit in between: make every this-many-th batch durable.
const MAX_LAZY_COMMITS: u64 = 64;

/// How often the background checkpointer persists session progress nobody committed yet.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("opts", &self.inner.opts)
            .finish()
    }
}

/// How long `open` waits for the directory lock: a store dropped in this process may still be
/// finishing a background checkpoint for a moment.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn lock_dir(dir: &Path) -> Result<File, StorageError> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        // SAFETY: flock on a descriptor we own; the lock lives as long as the File.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(f);
        }
        if std::time::Instant::now() >= deadline {
            return Err(StorageError::Locked);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// redb reports a damaged file either as corruption or, for a bad header, as invalid data.
fn is_index_corruption(e: &redb::StorageError) -> bool {
    match e {
        redb::StorageError::Corrupted(_) => true,
        redb::StorageError::Io(io) => io.kind() == std::io::ErrorKind::InvalidData,
        _ => false,
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, running crash recovery first.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Store, StorageError> {
        std::fs::create_dir_all(dir)?;
        let lock = lock_dir(dir)?;
        let index = dir.join("index.redb");
        let map_len = opts
            .max_segment_bytes
            .max((seg::LEN + rec::OVERHEAD + opts.chunk_record_bytes) as u64 + 4096);
        let io: Arc<dyn SegmentIo> = Arc::new(FileIo::new(&dir.join("segments"), map_len)?);
        // Segment 1 is only created once the new index is durable, so with no segment an index
        // file can only be a creation torn by a crash (redb's is not atomic): start it over.
        if io.list()?.is_empty() && index.exists() {
            std::fs::remove_file(&index)?;
        }
        let mut fresh = !index.exists();
        let db = match Database::create(&index) {
            Ok(db) => db,
            Err(redb::DatabaseError::Storage(e)) if is_index_corruption(&e) => {
                let msg = e.to_string();
                // The index is only a cache of the log: keep the damaged file for inspection
                // and rebuild from the segments.
                let aside = dir.join("index.redb.corrupt");
                tracing::warn!(%msg, aside = %aside.display(), "index corrupted; rebuilding it from the segments");
                std::fs::rename(&index, &aside)?;
                fresh = true;
                Database::create(&index)?
            }
            Err(e) => return Err(e.into()),
        };
        Store::assemble(io, db, fresh, opts, Some(lock))
    }

    /// Opens a store over any segment and index backends (tests use the in-memory disk).
    pub fn open_with(
        segments: Arc<dyn SegmentIo>,
        index: impl redb::StorageBackend,
        opts: StoreOptions,
    ) -> Result<Store, StorageError> {
        if segments.list()?.is_empty() {
            index.set_len(0)?;
        }
        let fresh = index.len()? == 0;
        let db = redb::Builder::new().create_with_backend(index)?;
        Store::assemble(segments, db, fresh, opts, None)
    }

    fn assemble(
        io: Arc<dyn SegmentIo>,
        db: Database,
        fresh: bool,
        mut opts: StoreOptions,
        lock: Option<File>,
    ) -> Result<Store, StorageError> {
        opts.chunk_record_bytes = opts.chunk_record_bytes.clamp(1, u32::MAX as usize);
        let rec = recovery::recover(io.as_ref(), &db, fresh)?;
        let log = Log::open(io, opts.max_segment_bytes, rec.ends)?;
        let sessions = rec
            .sessions
            .into_iter()
            .map(|(id, s)| (id, Arc::new(Mutex::new(s))))
            .collect();
        let store = Store {
            inner: Arc::new(Inner {
                opts,
                log,
                db,
                group: Group::new(),
                sessions: RwLock::new(sessions),
                space: Mutex::new(rec.space),
                closed: AtomicBool::new(false),
                deferred: Mutex::new(Vec::new()),
                index_dirty: AtomicBool::new(false),
                lazy_commits: AtomicU64::new(0),
                _lock: lock,
            }),
        };
        store.spawn_checkpointer()?;
        Ok(store)
    }

    /// Once a second, makes the index durable (an immediate redb commit) and records upload
    /// progress nobody committed yet; this bounds how much log a reopen replays. Holds only a weak reference: dropping the store ends it.
    fn spawn_checkpointer(&self) -> Result<(), StorageError> {
        let weak = Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name("berth-checkpoint".into())
            .spawn(move || loop {
                std::thread::sleep(CHECKPOINT_INTERVAL);
                let Some(inner) = weak.upgrade() else { break };
                if inner.closed.load(Ordering::SeqCst) || inner.log.is_poisoned() {
                    break;
                }
                let pending = inner.log.has_progress()
                    || !inner
                        .deferred
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .is_empty();
                if pending {
                    if let Err(e) = (Store { inner }).submit(Op::Checkpoint) {
                        tracing::warn!(error = %e, "background checkpoint failed");
                    }
                }
            })?;
        Ok(())
    }

    /// Queues an index change that needs no waiting caller; the next batch applies it.
    pub(crate) fn defer(&self, op: Op) {
        self.inner
            .deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(op);
    }

    /// Writes out buffered session bytes and makes everything durable; later calls fail.
    pub fn close(&self) -> Result<(), StorageError> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Err(StorageError::Closed);
        }
        let sessions: Vec<(UploadId, Arc<Mutex<Session>>)> = self
            .inner
            .sessions_read()
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for (id, s) in sessions {
            let mut s = s.lock().unwrap_or_else(|p| p.into_inner());
            self.flush_buffer(&id, &mut s)?;
        }
        self.submit(Op::Checkpoint).map(|_| ())
    }

    /// Makes the index durable now (an immediate redb commit), so a reopen has no log to
    /// replay. Commits are durable without it; this only shortens recovery.
    pub fn checkpoint(&self) -> Result<(), StorageError> {
        self.check_open()?;
        self.submit(Op::Checkpoint).map(|_| ())
    }

    pub(crate) fn check_open(&self) -> Result<(), StorageError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            Err(StorageError::Closed)
        } else {
            Ok(())
        }
    }

    /// Queues an index change and returns once it (and every byte it refers to) is durable.
    pub(crate) fn submit(&self, op: Op) -> Result<Out, StorageError> {
        self.inner.group.submit(op, None, |ops| self.run_batch(ops))
    }

    /// Like [`Store::submit`] for a caller that announced itself with `group.prepare()`.
    pub(crate) fn submit_announced(
        &self,
        op: Op,
        announced: super::group::Preparing<'_, Op, Out>,
    ) -> Result<Out, StorageError> {
        self.inner
            .group
            .submit(op, Some(announced), |ops| self.run_batch(ops))
    }

    /// The group-commit leader's work: log the batch's OP records, sync the log, then apply
    /// the batch to the index. The log is the durability point: an index transaction is made
    /// durable only by the periodic checkpoint (or close), and a reopen replays the log after
    /// the last durable checkpoint, so an index entry never outlives the bytes it names.
    fn run_batch(&self, ops: Vec<Op>) -> Vec<Result<Out, StorageError>> {
        let fail = |e: StorageError, n: usize| (0..n).map(|_| Err(e.duplicate())).collect();
        let n = ops.len();
        let deferred = std::mem::take(
            &mut *self
                .inner
                .deferred
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        let skip = deferred.len();
        let mut all = deferred;
        all.extend(ops);
        let ops = all;
        let immediate = ops.iter().any(|o| matches!(o, Op::Checkpoint))
            || self.inner.lazy_commits.load(Ordering::SeqCst) >= MAX_LAZY_COMMITS;
        let payloads = match ops
            .iter()
            .filter(|o| o.logged_by_leader())
            .map(Op::encode)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(p) => p,
            Err(e) => {
                self.requeue(ops, skip);
                return fail(e, n);
            }
        };
        let log = &self.inner.log;
        let snap = match log.append_ops_and_snapshot(&payloads) {
            Ok(s) => s,
            Err(e) => {
                self.requeue(ops, skip);
                return fail(e, n);
            }
        };
        if let Err(e) = log.sync(&snap) {
            log.restore(snap);
            self.requeue(ops, skip);
            return fail(e, n);
        }
        let result = (|| {
            let mut txn = self.inner.db.begin_write()?;
            txn.set_durability(if immediate {
                Durability::Immediate
            } else {
                Durability::None
            });
            let (outs, delta) = apply_batch(&txn, &ops, &snap.progress, snap.end)?;
            txn.commit()?;
            Ok::<_, StorageError>((outs, delta))
        })();
        match result {
            Ok((outs, delta)) => {
                self.inner.index_dirty.store(!immediate, Ordering::SeqCst);
                if immediate {
                    self.inner.lazy_commits.store(0, Ordering::SeqCst);
                } else {
                    self.inner.lazy_commits.fetch_add(1, Ordering::SeqCst);
                }
                let mut space = self.inner.space.lock().unwrap_or_else(|p| p.into_inner());
                for (id, (dl, dd)) in delta {
                    let slot = space.entry(id).or_default();
                    slot.0 = slot.0.saturating_add_signed(dl);
                    slot.1 = slot.1.saturating_add_signed(dd);
                }
                outs.into_iter().skip(skip).collect()
            }
            Err(e) => {
                // The ops are durable in the log but not in the live index: only a reopen,
                // which replays them, can bring the two together again.
                log.poison();
                fail(e, n)
            }
        }
    }

    /// Puts the deferred head of a failed batch back so a later batch applies it.
    fn requeue(&self, ops: Vec<Op>, skip: usize) {
        let mut d = self
            .inner
            .deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut back: Vec<Op> = ops.into_iter().take(skip).collect();
        back.append(&mut d);
        *d = back;
    }

    /// Appends one chunk record for `session` and returns where its payload landed.
    pub(crate) fn write_chunk(
        &self,
        session: &UploadId,
        blob_offset: u64,
        payload: &[u8],
        track: bool,
    ) -> Result<Extent, StorageError> {
        let h = RecordHeader {
            kind: Kind::Chunk,
            flags: 0,
            payload_len: payload.len() as u32,
            session: session.0,
            blob_offset,
        };
        self.inner.log.append(h, payload, track)
    }

    /// Logs a session start ahead of the session's chunks (replay needs it first).
    pub(crate) fn write_begin(&self, op: &Op) -> Result<(), StorageError> {
        let payload = op.encode()?;
        let h = RecordHeader {
            kind: Kind::Op,
            flags: 0,
            payload_len: payload.len() as u32,
            session: [0; 16],
            blob_offset: 0,
        };
        self.inner.log.append(h, &payload, false).map(|_| ())
    }

    /// Reads one chunk payload, checking its blake3 trailer when asked to.
    pub(crate) fn read_extent(&self, e: &Extent, verify: bool) -> Result<Bytes, StorageError> {
        let io = self.inner.log.io();
        let data = io.read(e.segment, e.offset, e.len as usize)?;
        if verify {
            let t = io.read(
                e.segment,
                e.offset.saturating_add(u64::from(e.len)),
                rec::TRAILER_LEN,
            )?;
            if trailer(&data)[..] != t[..] {
                return Err(StorageError::Corrupt(format!(
                    "chunk checksum mismatch in segment {} at {}",
                    e.segment, e.offset
                )));
            }
        }
        Ok(data)
    }

    /// Hashes the bytes of `extents` (after a restart, or for a non-sha256 digest).
    pub(crate) fn rehash(&self, mut h: Hasher, extents: &[Extent]) -> Result<Hasher, StorageError> {
        for e in extents {
            h.update(&self.read_extent(e, true)?);
        }
        Ok(h)
    }

    fn blob_entry(&self, digest: &Digest) -> Result<Option<(u64, Vec<Extent>)>, StorageError> {
        let txn = self.inner.db.begin_read()?;
        let t = txn.open_table(BLOBS)?;
        let v = t.get(&digest_key(digest)[..])?;
        v.map(|v| decode_blob(v.value())).transpose()
    }

    pub fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>, StorageError> {
        self.check_open()?;
        Ok(self.blob_entry(digest)?.map(|(size, _)| BlobInfo {
            digest: digest.clone(),
            size,
        }))
    }

    /// Zero-copy view of a committed blob. With `verify_reads`, a damaged chunk turns the whole
    /// read into `Corrupt` rather than serving wrong bytes.
    pub fn get(&self, digest: &Digest) -> Result<Option<BlobData>, StorageError> {
        self.check_open()?;
        let Some((size, extents)) = self.blob_entry(digest)? else {
            return Ok(None);
        };
        let parts = extents
            .iter()
            .map(|e| self.read_extent(e, self.inner.opts.verify_reads))
            .collect::<Result<Vec<_>, _>>()?;
        if parts.iter().map(|b| b.len() as u64).sum::<u64>() != size {
            return Err(StorageError::Corrupt(format!(
                "blob {digest} extents do not add up"
            )));
        }
        Ok(Some(BlobData {
            digest: digest.clone(),
            size,
            extents: parts,
        }))
    }

    pub fn repo_has_blob(&self, repo: &str, digest: &Digest) -> Result<bool, StorageError> {
        self.check_open()?;
        let txn = self.inner.db.begin_read()?;
        let t = txn.open_table(REPO_BLOBS)?;
        Ok(t.get(&repo_key(repo, &digest_key(digest))[..])?.is_some())
    }

    pub fn link_blob(&self, repo: &str, digest: &Digest) -> Result<bool, StorageError> {
        self.check_open()?;
        match self.submit(Op::Link {
            repo: repo.to_string(),
            digest: digest.clone(),
        })? {
            Out::Bool(b) => Ok(b),
            _ => Err(StorageError::Index("unexpected outcome".into())),
        }
    }

    pub fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool, StorageError> {
        self.check_open()?;
        match self.submit(Op::Unlink {
            repo: repo.to_string(),
            digest: digest.clone(),
        })? {
            Out::Bool(b) => Ok(b),
            _ => Err(StorageError::Index("unexpected outcome".into())),
        }
    }

    /// Monolithic push: hash, write, commit in one call with the same guarantees as `commit`.
    pub fn put_blob(
        &self,
        repo: &str,
        expected: &Digest,
        data: &[u8],
    ) -> Result<BlobInfo, StorageError> {
        self.check_open()?;
        let actual = Digest::of(expected.algorithm(), data);
        if actual != *expected {
            return Err(StorageError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        if self.blob_entry(expected)?.is_some() {
            self.submit(Op::Link {
                repo: repo.to_string(),
                digest: expected.clone(),
            })?;
            return Ok(BlobInfo {
                digest: expected.clone(),
                size: data.len() as u64,
            });
        }
        // Small pushes are quick to write: tell a commit leader to wait for this one.
        let announced =
            (data.len() <= self.inner.opts.chunk_record_bytes).then(|| self.inner.group.prepare());
        let extents = self.write_blob_records(data)?;
        let op = Op::Commit(super::ops::BlobCommit {
            session: None,
            repo: repo.to_string(),
            digest: expected.clone(),
            size: data.len() as u64,
            extents,
        });
        expect_blob(match announced {
            Some(a) => self.submit_announced(op, a)?,
            None => self.submit(op)?,
        })
    }

    /// Writes `data` as chunk records under a fresh session id; the commit op that follows
    /// names the extents.
    pub(crate) fn write_blob_records(&self, data: &[u8]) -> Result<Vec<Extent>, StorageError> {
        let sid = UploadId::random();
        let mut extents = Vec::with_capacity(data.len() / self.inner.opts.chunk_record_bytes + 1);
        let mut off = 0u64;
        for chunk in data.chunks(self.inner.opts.chunk_record_bytes) {
            match self.write_chunk(&sid, off, chunk, false) {
                Ok(e) => extents.push(e),
                Err(e) => {
                    if !extents.is_empty() {
                        // The records that did land will never be part of a blob.
                        let _ = self.submit(Op::Discard {
                            session: None,
                            extents,
                        });
                    }
                    return Err(e);
                }
            }
            off += chunk.len() as u64;
        }
        Ok(extents)
    }

    /// Committed blobs in digest-key order after `last`, at most `n` (GC, scrub tools, tests).
    pub fn list_blobs(
        &self,
        last: Option<&Digest>,
        n: usize,
    ) -> Result<Vec<BlobInfo>, StorageError> {
        self.check_open()?;
        let txn = self.inner.db.begin_read()?;
        let t = txn.open_table(BLOBS)?;
        let after = last.map(digest_key);
        let iter = match &after {
            Some(a) => t.range::<&[u8]>((
                std::ops::Bound::Excluded(&a[..]),
                std::ops::Bound::Unbounded,
            ))?,
            None => t.iter()?,
        };
        let mut out = Vec::new();
        for r in iter.take(n) {
            let (k, v) = r?;
            let (digest, _) = decode_digest_key(k.value())?;
            let (size, _) = decode_blob(v.value())?;
            out.push(BlobInfo { digest, size });
        }
        Ok(out)
    }

    pub fn space(&self) -> SpaceStats {
        let ends = self.inner.log.ends();
        let space = self.inner.space.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = SpaceStats::default();
        for (&id, &size) in &ends {
            let (live, dead) = space.get(&id).copied().unwrap_or((0, 0));
            out.live_bytes += live;
            out.dead_bytes += dead;
            out.segments.push(SegmentSpace {
                id,
                size,
                live_bytes: live,
                dead_bytes: dead,
            });
        }
        out
    }

    pub fn open_uploads(&self) -> usize {
        self.inner.sessions_read().len()
    }
}

pub(crate) fn expect_blob(out: Out) -> Result<BlobInfo, StorageError> {
    match out {
        Out::Blob(b) => Ok(b),
        _ => Err(StorageError::Index("unexpected outcome".into())),
    }
}

impl Inner {
    pub(crate) fn sessions_read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<UploadId, Arc<Mutex<Session>>>> {
        self.sessions.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn sessions_write(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<UploadId, Arc<Mutex<Session>>>> {
        self.sessions.write().unwrap_or_else(|p| p.into_inner())
    }
}
