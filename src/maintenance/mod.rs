//! Garbage collection and scrubs of a serving registry. The scheduler (`schedule`) and the
//! admin endpoint share one [`Maintenance`], which runs one job at a time, each on a blocking
//! thread so the async workers keep serving, and logs its start, its progress and its report.
//!
//! Layout: `progress` (throttled progress lines), `scrub` (scrub, then quarantine what it
//! found damaged), `schedule` (the periodic task), `wire` (the JSON of reports and requests
//! shared by the admin endpoint and the command line).

pub mod progress;
pub mod schedule;
pub mod scrub;
pub mod wire;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::storage::{GcOptions, GcReport, StorageError, Store};
use progress::ProgressLog;
pub use scrub::{scrub_and_quarantine, ScrubOutcome};

/// How often a running collection logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The kinds of job that take the maintenance slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Gc,
    Scrub,
}

impl Job {
    pub fn as_str(self) -> &'static str {
        match self {
            Job::Gc => "gc",
            Job::Scrub => "scrub",
        }
    }
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Job::Gc => "garbage collection",
            Job::Scrub => "scrub",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("a {0} is already running")]
    Busy(Job),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("maintenance task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The one-job-at-a-time runner of a serving registry; cheap to clone.
#[derive(Clone)]
pub struct Maintenance {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    gc: GcOptions,
    scrub_rate: Option<u64>,
    running: Mutex<Option<Job>>,
}

/// The claim on the maintenance slot; dropping it frees the slot.
pub struct Slot {
    inner: Arc<Inner>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        *self.inner.running.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl Maintenance {
    /// `gc` is what a collection does unless a caller overrides it; `scrub_rate` the read
    /// budget of scrubs.
    pub fn new(store: Store, gc: GcOptions, scrub_rate: Option<u64>) -> Maintenance {
        Maintenance {
            inner: Arc::new(Inner {
                store,
                gc,
                scrub_rate,
                running: Mutex::new(None),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The configured collection settings.
    pub fn gc_defaults(&self) -> &GcOptions {
        &self.inner.gc
    }

    /// The configured scrub read budget.
    pub fn scrub_rate(&self) -> Option<u64> {
        self.inner.scrub_rate
    }

    /// The job holding the slot, if any.
    pub fn running(&self) -> Option<Job> {
        *self.inner.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims the slot for `job`, or says which job holds it.
    pub fn begin(&self, job: Job) -> Result<Slot, MaintenanceError> {
        let mut running = self.inner.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(other) = *running {
            return Err(MaintenanceError::Busy(other));
        }
        *running = Some(job);
        Ok(Slot {
            inner: self.inner.clone(),
        })
    }

    /// Runs one collection with `opts` on a blocking thread. The slot is held until the
    /// collection ends, even when the caller stops waiting for it.
    pub async fn gc(&self, opts: GcOptions) -> Result<GcReport, MaintenanceError> {
        let slot = self.begin(Job::Gc)?;
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            run_gc(&store, &opts)
        })
        .await?
        .map_err(MaintenanceError::from)
    }

    /// Scrubs every record at `rate` bytes per second on a blocking thread and, with
    /// `quarantine`, takes the damaged blobs it finds out of service.
    pub async fn scrub(
        &self,
        rate: Option<u64>,
        quarantine: bool,
    ) -> Result<ScrubOutcome, MaintenanceError> {
        let slot = self.begin(Job::Scrub)?;
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            run_scrub(&store, rate, quarantine)
        })
        .await?
        .map_err(MaintenanceError::from)
    }
}

fn run_gc(store: &Store, opts: &GcOptions) -> Result<GcReport, StorageError> {
    tracing::info!(
        dry_run = opts.dry_run,
        grace_s = opts.grace.as_secs(),
        compact = opts.compact,
        compact_threshold = opts.compact_threshold,
        rate = opts.compact_rate,
        retention_rules = opts.retention.len(),
        "garbage collection started"
    );
    let mut log = ProgressLog::new(PROGRESS_EVERY);
    match store.gc(opts, &mut |p| log.update(p)) {
        Ok(report) => {
            log_gc_report(&report);
            Ok(report)
        }
        Err(e) => {
            tracing::error!(error = %e, "garbage collection failed");
            Err(e)
        }
    }
}

/// One line per deleted manifest and tag (an audit trail of what retention removed), then the
/// totals.
fn log_gc_report(r: &GcReport) {
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    for (repo, digest) in &r.manifests_deleted {
        tracing::info!(repository = %repo, %digest, dry_run = r.dry_run, "gc {verb} manifest");
    }
    for (repo, tag) in &r.tags_deleted {
        tracing::info!(repository = %repo, %tag, dry_run = r.dry_run, "gc {verb} tag");
    }
    tracing::info!(
        dry_run = r.dry_run,
        manifests_deleted = r.manifests_deleted.len(),
        tags_deleted = r.tags_deleted.len(),
        links_removed = r.links_removed,
        blobs_removed = r.blobs_removed,
        bytes_swept = r.bytes_swept,
        kept_touched = r.kept_touched,
        segments_compacted = r.segments_compacted,
        bytes_relocated = r.bytes_relocated,
        bytes_reclaimed = r.bytes_reclaimed,
        mark_ms = r.mark_time.as_millis() as u64,
        sweep_ms = r.sweep_time.as_millis() as u64,
        compact_ms = r.compact_time.as_millis() as u64,
        "garbage collection finished"
    );
}

fn run_scrub(
    store: &Store,
    rate: Option<u64>,
    quarantine: bool,
) -> Result<ScrubOutcome, StorageError> {
    tracing::info!(rate, quarantine, "scrub started");
    let outcome = match scrub_and_quarantine(store, rate, quarantine) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "scrub failed");
            return Err(e);
        }
    };
    let r = &outcome.report;
    for c in &r.corrupt {
        tracing::warn!(
            segment = c.segment,
            offset = c.offset,
            reason = %c.reason,
            "scrub found a damaged record"
        );
    }
    for digest in &r.damaged_blobs {
        if quarantine {
            tracing::warn!(%digest, "scrub quarantined a damaged blob; pushing it again heals it");
        } else {
            tracing::warn!(%digest, "scrub found a damaged blob (left in service)");
        }
    }
    tracing::info!(
        segments = r.segments,
        records = r.records,
        bytes = r.bytes,
        damaged_records = r.corrupt.len(),
        damaged_blobs = r.damaged_blobs.len(),
        quarantined = outcome.quarantined,
        "scrub finished"
    );
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memdisk::MemDisk;
    use crate::storage::StoreOptions;

    fn maintenance() -> Maintenance {
        let disk = MemDisk::new();
        let store =
            Store::open_with(disk.segments(), disk.index(), StoreOptions::default()).unwrap();
        Maintenance::new(store, GcOptions::default(), None)
    }

    #[test]
    fn one_job_at_a_time() {
        let m = maintenance();
        let slot = m.begin(Job::Gc).unwrap();
        assert_eq!(m.running(), Some(Job::Gc));
        assert!(matches!(
            m.begin(Job::Scrub),
            Err(MaintenanceError::Busy(Job::Gc))
        ));
        drop(slot);
        assert_eq!(m.running(), None);
        let _slot = m.begin(Job::Scrub).unwrap();
        assert!(matches!(
            m.begin(Job::Gc),
            Err(MaintenanceError::Busy(Job::Scrub))
        ));
    }

    #[tokio::test]
    async fn jobs_take_the_slot_and_give_it_back() {
        let m = maintenance();
        let held = m.begin(Job::Gc).unwrap();
        assert!(matches!(
            m.scrub(None, true).await,
            Err(MaintenanceError::Busy(Job::Gc))
        ));
        drop(held);
        let outcome = m.scrub(None, true).await.unwrap();
        assert!(outcome.is_clean() && outcome.quarantine);
        assert_eq!(m.running(), None);
        // A failed collection frees the slot too.
        let _ = m.gc(GcOptions::default()).await;
        assert_eq!(m.running(), None);
    }
}
