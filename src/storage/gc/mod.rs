//! Online garbage collection: mark what the registry can still reach, sweep the rest out of the
//! index through logged ops, and compact sealed segments whose live bytes fell below a threshold.
//! Nothing here stops pushes or pulls: the mark reads one redb snapshot, the sweep and the
//! relocations go through the group commit like any other change, and readers pin the segments
//! they stream from.

mod compact;
mod mark;
mod retention;

pub use retention::glob_match;

use std::collections::HashMap;
use std::time::Instant;

use super::error::StorageError;
use super::store::Store;
use super::types::*;
use crate::oci::digest::Digest;
use crate::storage::index::ops::{referencing, Op, Out, SweepList};
use crate::storage::index::schema::*;

/// Sweep ops carry at most this many items, so one batch never holds the leader for long.
const SWEEP_STEP: usize = 1000;

/// Splits a verdict into sweep steps: tags first, then manifests, links and blobs, so that a
/// crash between steps never leaves a tag naming a deleted manifest.
fn steps(list: SweepList) -> Vec<SweepList> {
    let mut out = Vec::new();
    let mut cur = SweepList::default();
    let push = |cur: &mut SweepList, out: &mut Vec<SweepList>| {
        if cur.len() >= SWEEP_STEP {
            out.push(std::mem::take(cur));
        }
    };
    for t in list.tags {
        cur.tags.push(t);
        push(&mut cur, &mut out);
    }
    for m in list.manifests {
        cur.manifests.push(m);
        push(&mut cur, &mut out);
    }
    for l in list.links {
        cur.links.push(l);
        push(&mut cur, &mut out);
    }
    for b in list.blobs {
        cur.blobs.push(b);
        push(&mut cur, &mut out);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl Store {
    /// Runs one collection: retention, mark, sweep, then (unless disabled) compaction. One
    /// collection (or scrub) runs at a time; a second caller waits for the first to finish.
    pub fn gc(
        &self,
        opts: &GcOptions,
        progress: &mut dyn FnMut(GcProgress),
    ) -> Result<GcReport, StorageError> {
        self.check_open()?;
        let _one = self.inner.gc_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut report = GcReport {
            dry_run: opts.dry_run,
            ..Default::default()
        };
        let started = Instant::now();
        let marking = (!opts.dry_run).then(|| self.inner.gate.begin());
        let swept = self.mark_and_sweep(opts, progress, &mut report, started);
        if marking.is_some() {
            self.inner.gate.end();
        }
        swept?;
        let compact_started = Instant::now();
        if opts.compact && !opts.dry_run {
            compact::compact(self, opts, progress, &mut report)?;
        } else if opts.compact {
            self.estimate_compaction(opts, &mut report)?;
        }
        report.compact_time = compact_started.elapsed();
        if !opts.dry_run {
            let mut st = self
                .inner
                .gc_stats
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            st.runs += 1;
            st.last_run_unix_ms = Some(now_ms());
            st.total_bytes_reclaimed += report.bytes_reclaimed;
            st.total_blobs_removed += report.blobs_removed;
            st.total_manifests_deleted += report.manifests_deleted.len() as u64;
            st.total_segments_compacted += report.segments_compacted;
            st.last = Some(report.clone());
        }
        tracing::info!(
            dry_run = report.dry_run,
            manifests = report.manifests_deleted.len(),
            tags = report.tags_deleted.len(),
            links = report.links_removed,
            blobs = report.blobs_removed,
            bytes_swept = report.bytes_swept,
            kept_touched = report.kept_touched,
            segments = report.segments_compacted,
            bytes_relocated = report.bytes_relocated,
            bytes_reclaimed = report.bytes_reclaimed,
            mark_ms = report.mark_time.as_millis() as u64,
            sweep_ms = report.sweep_time.as_millis() as u64,
            compact_ms = report.compact_time.as_millis() as u64,
            "garbage collection done"
        );
        Ok(report)
    }

    fn mark_and_sweep(
        &self,
        opts: &GcOptions,
        progress: &mut dyn FnMut(GcProgress),
        report: &mut GcReport,
        started: Instant,
    ) -> Result<(), StorageError> {
        if !opts.dry_run {
            // Batches that began before the gate opened did not record their touches: let them
            // commit (this op's batch runs after them) so the snapshot below has their effects.
            self.submit(Op::Checkpoint)?;
        }
        let verdict = {
            let txn = self.inner.db.begin_read()?;
            mark::mark(&txn, opts, now_ms(), &mut |done, total| {
                progress(GcProgress {
                    phase: GcPhase::Mark,
                    done,
                    total,
                })
            })?
        };
        report.mark_time = started.elapsed();
        let sizes = verdict.blob_sizes;
        let candidates = verdict.candidates;
        let sweep_started = Instant::now();
        if opts.dry_run {
            report.account(&candidates, &sizes);
            report.sweep_time = sweep_started.elapsed();
            return Ok(());
        }
        let total = candidates.len() as u64;
        let mut done = 0u64;
        let mut swept_items = 0u64;
        for step in steps(candidates) {
            done += step.len() as u64;
            match self.submit(Op::Sweep(step))? {
                Out::Swept(list) => {
                    swept_items += list.len() as u64;
                    report.account(&list, &sizes);
                }
                other => return Err(StorageError::Index(format!("unexpected outcome {other:?}"))),
            }
            progress(GcProgress {
                phase: GcPhase::Sweep,
                done,
                total,
            });
        }
        report.kept_touched = total - swept_items;
        report.sweep_time = sweep_started.elapsed();
        Ok(())
    }

    /// A dry run's guess at compaction: the segments that would be below the threshold once the
    /// swept blobs' bytes are dead.
    fn estimate_compaction(
        &self,
        opts: &GcOptions,
        report: &mut GcReport,
    ) -> Result<(), StorageError> {
        let mut live: HashMap<u64, u64> = self
            .inner
            .space
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(&id, &(l, _))| (id, l))
            .collect();
        {
            let txn = self.inner.db.begin_read()?;
            let blobs = txn.open_table(BLOBS)?;
            for (_, d) in &report.swept_blobs {
                if let Some(v) = blobs.get(&digest_key(d)[..])? {
                    for e in decode_blob(v.value())?.1 {
                        if let Some(l) = live.get_mut(&e.segment) {
                            *l = l.saturating_sub(u64::from(e.len));
                        }
                    }
                }
            }
        }
        let (active, _) = self.inner.log.active();
        let segments = self.inner.log.segments();
        let newest = segments.last().map(|s| s.0);
        for (id, end, _) in segments {
            let l = live.get(&id).copied().unwrap_or(0);
            if id != active
                && Some(id) != newest
                && (l as f64) < opts.compact_threshold * end as f64
            {
                report.segments_compacted += 1;
                report.bytes_relocated += l;
                report.bytes_reclaimed += end;
            }
        }
        Ok(())
    }

    /// Totals and last outcomes of collections and scrubs since the store was opened.
    pub fn gc_stats(&self) -> GcStats {
        self.inner
            .gc_stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Manifests of `repo` that reference `digest` (as config, layer or index child).
    pub fn manifests_referencing(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Vec<Digest>, StorageError> {
        self.check_open()?;
        let txn = self.inner.db.begin_read()?;
        referencing(&txn.open_table(MANIFEST_REFS)?, repo, digest)
    }

    /// Like [`Store::verify`], reading at most `rate` bytes per second (an online scrub that
    /// leaves the disk to pulls), and recording the outcome in [`Store::gc_stats`].
    pub fn scrub(&self, rate: Option<u64>) -> Result<super::VerifyReport, StorageError> {
        let report = {
            let _one = self.inner.gc_lock.lock().unwrap_or_else(|p| p.into_inner());
            self.verify_at(rate)?
        };
        let mut st = self
            .inner
            .gc_stats
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        st.last_scrub_unix_ms = Some(now_ms());
        st.corrupt_records_found += report.corrupt.len() as u64;
        Ok(report)
    }

    /// Takes damaged blobs out of service: they are no longer served or reported present, so
    /// clients push them again, which heals them. Returns how many were in the index.
    pub fn quarantine(&self, digests: &[Digest]) -> Result<u64, StorageError> {
        self.check_open()?;
        if digests.is_empty() {
            return Ok(0);
        }
        let n = match self.submit(Op::Quarantine {
            digests: digests.to_vec(),
        })? {
            Out::Count(n) => n,
            other => return Err(StorageError::Index(format!("unexpected outcome {other:?}"))),
        };
        for d in digests {
            tracing::error!(digest = %d, "damaged blob taken out of service; a push of it heals it");
        }
        self.inner
            .gc_stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .blobs_quarantined += n;
        Ok(n)
    }
}

impl GcReport {
    /// Adds what one sweep step removed.
    fn account(&mut self, list: &SweepList, sizes: &HashMap<Digest, u64>) {
        self.tags_deleted
            .extend(list.tags.iter().map(|t| (t.repo.clone(), t.tag.clone())));
        self.manifests_deleted.extend(
            list.manifests
                .iter()
                .map(|m| (m.repo.clone(), m.digest.clone())),
        );
        self.links_removed += list.links.len() as u64;
        self.blobs_removed += list.blobs.len() as u64;
        for d in &list.blobs {
            let size = sizes.get(d).copied().unwrap_or(0);
            self.bytes_swept += size;
            self.swept_blobs.push((size, d.clone()));
        }
    }
}
