//! The memory all upload sessions' tails may hold together, and making room in it.
//!
//! A tail (less than one chunk record) stays in memory until the session appends enough to
//! fill a record, commits, or ends. Without a shared bound, idle sessions could each pin up
//! to a record for as long as they are kept open. When an append needs more than the budget
//! has left, the tails of the least recently touched sessions are written to the log as
//! (short) chunk records, the same write `flush_buffer` does for a commit: a flushed tail is
//! only an earlier write, durable and recoverable like any other chunk of the session
//! (storage-format.md, section 5). Only when every other tail belongs to a session busy at
//! this very moment, and the appending session's own tail is written too, is the append
//! refused ([`StorageError::UploadMemory`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::SystemTime;

use super::error::StorageError;
use super::session::Session;
use super::store::Store;
use super::types::UploadId;

/// Bytes held by the tails of all sessions, against a limit.
pub(crate) struct TailBudget {
    held: AtomicUsize,
    limit: usize,
}

impl TailBudget {
    pub fn new(limit: usize) -> TailBudget {
        TailBudget {
            held: AtomicUsize::new(0),
            limit,
        }
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    pub fn add(&self, n: usize) {
        self.held.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sub(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::Relaxed);
    }

    /// Counts `n` bytes ahead of the tail that will hold them, if that stays within the limit;
    /// so that appends racing on several threads cannot together pass it.
    fn reserve(&self, n: usize) -> Option<Reservation<'_>> {
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                held.checked_add(n).filter(|&after| after <= self.limit)
            })
            .ok()
            .map(|_| Reservation { budget: self, n })
    }
}

/// Bytes counted ahead; given back once the tail that holds them counts them itself.
pub(crate) struct Reservation<'a> {
    budget: &'a TailBudget,
    n: usize,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.sub(self.n);
    }
}

impl Store {
    /// Bytes the tails of all upload sessions hold in memory right now.
    pub fn upload_tail_bytes(&self) -> usize {
        self.inner.tails.held()
    }

    /// Makes room in the budget for appending `n` bytes to session `id` (locked by the
    /// caller as `s`), counting only what its tail will hold once the records those bytes
    /// complete are handed on. Keep the reservation until the bytes are in the tail.
    pub(crate) fn reserve_tail(
        &self,
        id: &UploadId,
        s: &mut Session,
        n: usize,
    ) -> Result<Reservation<'_>, StorageError> {
        let cap = self.inner.opts.chunk_record_bytes.max(1);
        let growth = |s: &Session| ((s.tail.len() + n) % cap).saturating_sub(s.tail.len());
        let budget = &self.inner.tails;
        if let Some(r) = budget.reserve(growth(s)) {
            return Ok(r);
        }
        self.flush_idle_tails(id, growth(s));
        if let Some(r) = budget.reserve(growth(s)) {
            return Ok(r);
        }
        // This session is the most recently touched: its own tail goes last.
        if !s.tail.is_empty() {
            self.flush_buffer(id, s)?;
            if let Some(r) = budget.reserve(growth(s)) {
                return Ok(r);
            }
        }
        Err(StorageError::UploadMemory)
    }

    /// Writes the tails of other sessions, least recently touched first, until `need` more
    /// bytes fit with an eighth of the budget to spare (so the next appends do not each come
    /// back here). A session locked right now is busy, not idle, and is passed over, which
    /// also keeps this from waiting on (or deadlocking with) another append.
    fn flush_idle_tails(&self, own: &UploadId, need: usize) {
        let budget = &self.inner.tails;
        let target = budget
            .limit
            .saturating_sub(need.saturating_add(budget.limit / 8));
        let all: Vec<(UploadId, Arc<Mutex<Session>>)> = self
            .inner
            .sessions_read()
            .iter()
            .filter(|(id, _)| *id != own)
            .map(|(id, s)| (*id, s.clone()))
            .collect();
        let mut idle: Vec<(SystemTime, UploadId, Arc<Mutex<Session>>)> = all
            .into_iter()
            .filter_map(|(id, arc)| {
                let touched = {
                    let s = try_lock(&arc)?;
                    (!s.gone && !s.tail.is_empty()).then_some(s.touched)?
                };
                Some((touched, id, arc))
            })
            .collect();
        idle.sort_by_key(|(touched, ..)| *touched);
        for (_, id, arc) in idle {
            if budget.held() <= target {
                return;
            }
            let Some(mut s) = try_lock(&arc) else {
                continue;
            };
            // A record still being written means a writer is at work for it: not idle.
            if s.gone || s.in_flight.iter_mut().any(|f| !f.pending.is_finished()) {
                continue;
            }
            match self.flush_buffer(&id, &mut s) {
                Ok(()) => {}
                // No other tail would fare better.
                Err(e @ (StorageError::DiskFull | StorageError::Poisoned)) => {
                    tracing::warn!(error = %e, "could not write idle uploads' buffered bytes");
                    return;
                }
                // A failed write in flight cut the session back (its tail with it), as
                // `status()` would.
                Err(e) => tracing::warn!(error = %e, "upload chunk write failed; session cut back"),
            }
        }
    }
}

fn try_lock(s: &Mutex<Session>) -> Option<std::sync::MutexGuard<'_, Session>> {
    match s.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}
