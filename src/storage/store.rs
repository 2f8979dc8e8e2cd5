//! The `Store` handle: opening, closing, and the group-commit plumbing every write goes through.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use redb::Durability;

use super::budget::TailBudget;
use super::error::StorageError;
use super::floor::Floors;
use super::gate::{Gate, Marking};
use super::group::Group;
use super::index::db::IndexDb;
use super::index::ops::{apply_batch, Op, Out};
use super::recovery;
use super::segment::io::{create_dir_durable, sync_dir, LockGuard};
use super::segment::io::{FileIo, SegmentIo};
use super::segment::log::{Extent, Log};
use super::segment::record::{rec, seg, Kind, RecordHeader};
use super::segment::writers::Writers;
use super::session::Session;
use super::tail::Tail;
use super::types::GcStats;
use super::types::*;
use super::verified::VerifiedSet;
use crate::oci::digest::Digest;

/// A blob store in one directory. Cheap to clone; all clones share one engine.
///
/// Dropping the last clone is synchronous: the background checkpointer is stopped and joined,
/// and the index, the log and the lock are closed, before `drop` returns, so nothing of the
/// store touches the disk afterwards and a reopen right after is the only writer.
#[derive(Clone)]
pub struct Store {
    /// Declared before `inner` so that it is dropped first: the last user handle joins the
    /// checkpointer (which then lets go of its own reference) before the engine is dropped.
    /// `None` only in the checkpointer's own handle, so that thread never joins itself and
    /// never ends up holding the last reference.
    owner: Option<Arc<Owner>>,
    pub(crate) inner: Arc<Inner>,
}

/// Held by every user-facing [`Store`]: its drop, with the last handle, stops the checkpointer.
struct Owner {
    stop: Arc<Stop>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.stop.set();
        if let Some(h) = self.checkpointer.take() {
            // The checkpointer's handle has no owner, so this never runs on that thread; the
            // check only keeps a future change from turning that into a deadlock.
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

/// Tells the checkpointer to stop, waking it at once rather than at its next tick.
#[derive(Default)]
struct Stop {
    stopped: Mutex<bool>,
    cv: Condvar,
}

impl Stop {
    fn set(&self) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.cv.notify_all();
    }

    /// Waits up to `timeout` for a stop; true once one was asked for.
    fn wait(&self, timeout: std::time::Duration) -> bool {
        let guard = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .cv
            .wait_timeout_while(guard, timeout, |stopped| !*stopped)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }
}

pub(crate) struct Inner {
    pub opts: StoreOptions,
    /// Shared with the writer threads that write session chunk records.
    pub log: Arc<Log>,
    /// Threads that write the full chunk records of upload sessions.
    pub writers: Writers,
    pub db: IndexDb,
    pub group: Group<Op, Out>,
    pub sessions: RwLock<HashMap<UploadId, Arc<Mutex<Session>>>>,
    /// What the sessions' tails hold in memory together (see `budget`).
    pub tails: Arc<TailBudget>,
    /// Segment id -> (live, dead) bytes, mirrored from the `segments` table.
    pub space: Mutex<BTreeMap<u64, (u64, u64)>>,
    pub closed: AtomicBool,
    /// Index changes nobody waits for (session starts); they ride along with the next batch.
    pub deferred: Mutex<Vec<Op>>,
    /// Set while the index holds changes not yet made durable by an immediate commit.
    pub index_dirty: AtomicBool,
    /// Non-durable index commits since the last durable one.
    pub lazy_commits: AtomicU64,
    /// Chunk records already checked on a read (policy `Once`).
    pub verified: VerifiedSet,
    /// Chunk records that failed their checksum on a read.
    pub corrupt_reads: AtomicU64,
    /// Records what clients touch while a collection marks (see `gate`).
    pub gate: Gate,
    /// Where writers with unresolved records started (see `floor`).
    pub floors: Arc<Floors>,
    /// One collection or scrub at a time.
    pub gc_lock: Mutex<()>,
    pub gc_stats: Mutex<GcStats>,
    /// Wakes the background checkpointer to end it (on close, and when the store is dropped).
    stop: Arc<Stop>,
    /// The backend's lock: one writer per index. Last, so it is released only once everything
    /// above (the index in particular) is closed.
    _lock: LockGuard,
}

/// redb frees the pages of non-durable commits only at the next durable one, so its file grows
/// with every lazy commit in between: make every this-many-th batch durable.
const MAX_LAZY_COMMITS: u64 = 64;

/// The background thread also reclaims idle upload sessions this often, or every
/// `upload_max_idle` when that is shorter, so a session outlives its idle limit by at most
/// that limit again (counted in time, not ticks, so a short checkpoint interval does not make
/// it scan the sessions more often). This is the only reclaimer: a store embedded without the
/// server reclaims as well.
const RECLAIM_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("opts", &self.inner.opts)
            .finish()
    }
}

/// How long `open` waits for the lock: another process handing the store over (a restart)
/// may still be closing it for a moment.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Takes the backend's lock, retrying for up to [`LOCK_WAIT`].
fn take_lock(io: &dyn SegmentIo) -> Result<LockGuard, StorageError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match io.lock() {
            Ok(guard) => return Ok(guard),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() >= deadline {
                    return Err(StorageError::Locked);
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
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
        // Every directory this creates (the data directory, `segments/`) has its name synced
        // into its parent: segments synced into a directory whose name was lost are lost too.
        create_dir_durable(dir)?;
        let index = dir.join("index.redb");
        let map_len = opts
            .max_segment_bytes
            .max((seg::LEN + rec::OVERHEAD + opts.chunk_record_bytes) as u64 + 4096);
        let io: Arc<dyn SegmentIo> = Arc::new(FileIo::new(
            &dir.join("segments"),
            &dir.join("LOCK"),
            map_len,
        )?);
        let lock = take_lock(io.as_ref())?;
        // Segment 1 is only created once the new index is durable, so with no segment an index
        // file can only be a creation torn by a crash (redb's is not atomic): start it over.
        if io.list()?.is_empty() && index.exists() {
            std::fs::remove_file(&index)?;
        }
        let mut fresh = !index.exists();
        let db = match IndexDb::create(&index) {
            Ok(db) => db,
            Err(redb::DatabaseError::Storage(e)) if is_index_corruption(&e) => {
                let msg = e.to_string();
                // The index is only a cache of the log: keep the damaged file for inspection
                // and rebuild from the segments.
                let aside = dir.join("index.redb.corrupt");
                tracing::warn!(%msg, aside = %aside.display(), "index corrupted; rebuilding it from the segments");
                std::fs::rename(&index, &aside)?;
                fresh = true;
                IndexDb::create(&index)?
            }
            Err(e) => return Err(e.into()),
        };
        if fresh {
            // The new index's name must be durable before segment 1 is created (section 9.2).
            sync_dir(dir)?;
        }
        let opened = Store::assemble(io, db, fresh, opts, lock);
        if opened.is_err() && fresh {
            // A refused open leaves no empty index behind to fail the next open.
            let _ = std::fs::remove_file(&index);
        }
        opened
    }

    /// Opens a store over any segment and index backends (tests use the in-memory disk). The
    /// segment backend's lock guards the index too: `index` must belong to `segments`.
    pub fn open_with(
        segments: Arc<dyn SegmentIo>,
        index: impl redb::StorageBackend,
        opts: StoreOptions,
    ) -> Result<Store, StorageError> {
        let lock = take_lock(segments.as_ref())?;
        if segments.list()?.is_empty() {
            index.set_len(0)?;
        }
        let fresh = index.len()? == 0;
        let db = IndexDb::with_backend(redb::Builder::new().create_with_backend(index)?);
        Store::assemble(segments, db, fresh, opts, lock)
    }

    fn assemble(
        io: Arc<dyn SegmentIo>,
        db: IndexDb,
        fresh: bool,
        mut opts: StoreOptions,
        lock: LockGuard,
    ) -> Result<Store, StorageError> {
        opts.chunk_record_bytes = opts.chunk_record_bytes.clamp(1, u32::MAX as usize);
        let rec = recovery::recover(io.as_ref(), &db, fresh)?;
        let log = Arc::new(Log::open(io, opts.max_segment_bytes, &rec.segments)?);
        let floors = Arc::new(Floors::default());
        let active = log.active().0;
        let tails = Arc::new(TailBudget::new(opts.max_upload_buffer_bytes));
        let sessions = rec
            .sessions
            .into_iter()
            .map(|(id, mut s)| {
                let lowest = s.extents.iter().map(|e| e.segment).min().unwrap_or(active);
                s.floor = Some(floors.hold(lowest));
                s.tail = Tail::new(tails.clone());
                (id, Arc::new(Mutex::new(s)))
            })
            .collect();
        let verified = VerifiedSet::new(opts.verified_cache_entries);
        let stop = Arc::new(Stop::default());
        let inner = Arc::new(Inner {
            opts,
            log,
            writers: Writers::new(),
            db,
            group: Group::new(),
            sessions: RwLock::new(sessions),
            tails,
            space: Mutex::new(rec.space),
            closed: AtomicBool::new(false),
            deferred: Mutex::new(Vec::new()),
            index_dirty: AtomicBool::new(false),
            lazy_commits: AtomicU64::new(0),
            verified,
            corrupt_reads: AtomicU64::new(0),
            gate: Gate::default(),
            floors,
            gc_lock: Mutex::new(()),
            gc_stats: Mutex::new(GcStats::default()),
            stop: stop.clone(),
            _lock: lock,
        });
        let checkpointer = Store::spawn_checkpointer(inner.clone())?;
        Ok(Store {
            owner: Some(Arc::new(Owner {
                stop,
                checkpointer: Some(checkpointer),
            })),
            inner,
        })
    }

    /// Every `checkpoint_interval` (a second by default), makes the index durable (an
    /// immediate redb commit) and records upload progress nobody committed yet, which bounds how
    /// much log a reopen replays; once a minute (see [`RECLAIM_EVERY`]), reclaims idle upload
    /// sessions. Ends when the
    /// last user handle is dropped (which joins it), when the store is closed, or on a poison
    /// (every later commit would fail until a reopen). Its own handle has no [`Owner`], so it
    /// never keeps the store alive past the user's drop.
    fn spawn_checkpointer(inner: Arc<Inner>) -> Result<std::thread::JoinHandle<()>, StorageError> {
        let store = Store { owner: None, inner };
        let handle = std::thread::Builder::new()
            .name("berth-checkpoint".into())
            .spawn(move || {
                let interval = store.inner.opts.checkpoint_interval;
                let reclaim_every = RECLAIM_EVERY.min(store.inner.opts.upload_max_idle);
                let mut last_reclaim = std::time::Instant::now();
                while !store.inner.stop.wait(interval) {
                    if store.inner.closed.load(Ordering::SeqCst) {
                        break;
                    }
                    if store.is_poisoned() {
                        tracing::warn!(
                            "store poisoned; background checkpoints stop until it is reopened"
                        );
                        break;
                    }
                    if last_reclaim.elapsed() >= reclaim_every {
                        last_reclaim = std::time::Instant::now();
                        match store.reclaim_idle_uploads() {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(sessions = n, "reclaimed idle upload sessions"),
                            Err(e) => tracing::warn!(error = %e, "reclaiming idle uploads failed"),
                        }
                    }
                    let inner = &store.inner;
                    let pending = inner.index_dirty.load(Ordering::SeqCst)
                        || inner.log.has_progress()
                        || !inner
                            .deferred
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .is_empty();
                    if pending {
                        match store.submit(Op::Checkpoint) {
                            // Logged by the next tick, which stops.
                            Ok(_) | Err(StorageError::Poisoned) => {}
                            Err(e) => tracing::warn!(error = %e, "background checkpoint failed"),
                        }
                    }
                }
            })?;
        Ok(handle)
    }

    /// Every row of the index (all tables but `meta`), table by table in key order: two stores
    /// whose dumps are equal serve the same content (tests compare a rebuilt index with this).
    pub fn dump_index(&self) -> Result<Vec<IndexRow>, StorageError> {
        let txn = self.inner.db.begin_read()?;
        Ok(super::index::base::dump(&txn)?
            .into_iter()
            .map(|(t, key, value)| IndexRow {
                table: super::index::base::table_name(t),
                key,
                value,
            })
            .collect())
    }

    /// Whether a collection is marking or sweeping: a read then records its digest in the touch
    /// gate and may wait there for a sweep's commit.
    pub fn collecting(&self) -> bool {
        self.inner.gate.current().is_some()
    }

    /// Whether the background checkpointer still runs (for health checks and tests).
    pub fn checkpointer_running(&self) -> bool {
        self.owner
            .as_ref()
            .and_then(|o| o.checkpointer.as_ref())
            .is_some_and(|h| !h.is_finished())
    }

    /// Waits up to `timeout` until `n` commits are queued behind the batch in flight; whether
    /// they are. Lets a test put a commit exactly behind another without sleeping.
    #[doc(hidden)]
    pub fn wait_for_queued_commits(&self, n: usize, timeout: std::time::Duration) -> bool {
        self.inner.group.wait_queued(n, timeout)
    }

    /// Waits up to `timeout` until a client's touch waits for a sweep's commit to be visible;
    /// whether one does. Lets a test put a request exactly behind a sweep without sleeping.
    #[doc(hidden)]
    pub fn wait_for_blocked_touch(&self, timeout: std::time::Duration) -> bool {
        (self.inner.gate.current()).is_some_and(|m| m.wait_for_blocked_touch(timeout))
    }

    /// Bytes still free for the store on its file system (`None` for backends that cannot
    /// tell), so a request can be refused from its declared length before its body is read.
    pub fn free_bytes(&self) -> Result<Option<u64>, StorageError> {
        Ok(self.inner.log.io().available()?)
    }

    /// Whether an earlier failure (a failed sync, a failed index commit, a panic inside a
    /// commit) left the store refusing writes until it is reopened.
    pub fn is_poisoned(&self) -> bool {
        self.inner.log.is_poisoned() || self.inner.group.is_poisoned()
    }

    /// Writes out buffered session bytes and makes everything durable; later calls fail.
    pub fn close(&self) -> Result<(), StorageError> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Err(StorageError::Closed);
        }
        // Nothing is left for the checkpointer to do: this call makes everything durable.
        self.inner.stop.set();
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
    /// Records still being written by a writer thread are waited for first, so every full
    /// record appended before the call is covered.
    pub fn checkpoint(&self) -> Result<(), StorageError> {
        self.check_open()?;
        let sessions: Vec<Arc<Mutex<Session>>> =
            self.inner.sessions_read().values().cloned().collect();
        for s in sessions {
            let mut s = s.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = self.settle(&mut s) {
                tracing::warn!(error = %e, "upload chunk write failed; session cut back");
            }
        }
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
        self.inner.group.submit(
            op,
            |ops| self.log_batch(ops),
            |logged| self.apply_logged(logged),
        )
    }

    /// The group-commit leader's log stage: log the batch's OP records and sync the log. The
    /// log is the durability point: an index transaction is made durable only by the periodic
    /// checkpoint (or close), and a reopen replays the log after the last durable checkpoint,
    /// so an index entry never outlives the bytes it names. The next batch's log stage may run
    /// while this one is applied ([`Store::apply_logged`]): its records lie after this batch's
    /// snapshot, so a reopen replays them whatever this batch's index commit reached.
    pub(super) fn log_batch(&self, ops: Vec<Op>) -> Logged {
        let (ops, claims) = match self.inner.gate.current() {
            Some(marking) => {
                let (ops, digests) = claim_sweeps(&marking, ops);
                (ops, Some(Claims { marking, digests }))
            }
            None => (ops, None),
        };
        let n = ops.len();
        let logged = |synced| Logged {
            synced,
            n,
            _claims: claims,
        };
        let payloads = match ops
            .iter()
            .filter(|o| o.logged_by_leader())
            .map(Op::encode)
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(p) => p,
            Err(e) => return logged(Err(e)),
        };
        let log = &self.inner.log;
        let snap = match log.append_ops_and_snapshot(&payloads) {
            Ok(s) => s,
            Err(e) => return logged(Err(e)),
        };
        // Deferred session starts are taken only after the snapshot: a session begun before
        // it has its start here, so none of the snapshot's chunks is dropped as belonging to an
        // unknown session. (Deferred ops are never logged by the leader: their records are
        // already in the log.)
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
        if let Err(e) = log.sync(&snap) {
            log.restore(snap);
            self.requeue(all, skip);
            return logged(Err(e));
        }
        logged(Ok((all, skip, snap)))
    }

    /// The group-commit leader's apply stage (batches in log order): apply the synced batch
    /// to the index in one transaction, durable every [`MAX_LAZY_COMMITS`]th time or when the
    /// batch holds a checkpoint. Sweep claims end (with `logged`) once it is visible.
    pub(super) fn apply_logged(&self, logged: Logged) -> Vec<Result<Out, StorageError>> {
        let fail = |e: StorageError, n: usize| (0..n).map(|_| Err(e.duplicate())).collect();
        let n = logged.n;
        let (ops, skip, snap) = match logged.synced {
            Ok(synced) => synced,
            Err(e) => return fail(e, n),
        };
        if self.inner.log.is_poisoned() {
            // An earlier batch's index commit failed (or a sync since): the live index lacks
            // its ops, so this batch must not become visible on top of it. Its records are
            // durable; a reopen replays both.
            return fail(StorageError::Poisoned, n);
        }
        let immediate = ops.iter().any(|o| matches!(o, Op::Checkpoint))
            || self.inner.lazy_commits.load(Ordering::SeqCst) >= MAX_LAZY_COMMITS;
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
                self.inner.log.poison();
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
}

/// A batch between its log stage and its apply stage.
pub(super) struct Logged {
    /// The ops to apply (the deferred ones first), how many of them were deferred, and the
    /// synced snapshot; or why the log stage failed.
    synced: Result<(Vec<Op>, usize, super::segment::log::Snapshot), StorageError>,
    /// The batch's own ops (outcomes are owed for these).
    n: usize,
    _claims: Option<Claims>,
}

/// Sweep claims of a batch, ended when the batch is dropped: after its apply stage, or
/// unapplied after a poison (touches waiting on them must not wait forever).
struct Claims {
    marking: Arc<Marking>,
    digests: Vec<Digest>,
}

impl Drop for Claims {
    fn drop(&mut self) {
        self.marking.release(&self.digests);
    }
}

/// While a collection marks: records what the batch's ops touch, then keeps in its sweep ops
/// only what nobody touched since the mark began. The kept digests stay claimed (touches of
/// them wait) until the batch is committed and visible.
fn claim_sweeps(m: &Marking, ops: Vec<Op>) -> (Vec<Op>, Vec<Digest>) {
    let mut touched = Vec::new();
    for op in &ops {
        op.touches(|d| touched.push(d.clone()));
    }
    m.touch_all(&touched);
    let mut claimed = Vec::new();
    let ops = ops
        .into_iter()
        .map(|op| match op {
            Op::Sweep(mut list) => {
                // A tag whose manifest was touched (say, tagged again) since the mark stays.
                list.tags = m.claim(list.tags, |x| &x.digest).0;
                list.manifests = m.claim(list.manifests, |x| &x.digest).0;
                list.links = m.claim(list.links, |x| &x.digest).0;
                list.blobs = m.claim(list.blobs, |x| x).0;
                claimed.extend(list.tags.iter().map(|x| x.digest.clone()));
                claimed.extend(list.manifests.iter().map(|x| x.digest.clone()));
                claimed.extend(list.links.iter().map(|x| x.digest.clone()));
                claimed.extend(list.blobs.iter().cloned());
                Op::Sweep(list)
            }
            other => other,
        })
        .collect();
    (ops, claimed)
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.group.is_poisoned() {
            // A panic may have left a redb write transaction half done, and redb's shutdown
            // would commit over it.
            self.db.abandon();
        }
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
