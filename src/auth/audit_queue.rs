//! Request-rate audit events (pulls, pushes, deletes, token logins) go through a queue that
//! one thread writes in batches: a pull costs a push onto a vector, not a redb commit, so the
//! audit log keeps up with a registry serving thousands of manifest GETs a second. Events are
//! written within [`FLUSH_EVERY`], or at once when [`AuditQueue::flush`] is asked (before the
//! trail is listed) or the queue is dropped.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::auth::audit::AuditLog;
use crate::auth::audit_event::AuditEvent;

/// Longest an event waits in memory.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Events held at most; past this, new ones are dropped (and counted) rather than letting a
/// stalled disk grow memory without bound.
const MAX_PENDING: usize = 100_000;

#[derive(Default)]
struct Pending {
    events: Vec<AuditEvent>,
    /// Events queued so far, and how many of those are written: `flush` waits until the
    /// second reaches what the first was when it was called.
    pushed: u64,
    written: u64,
    /// Asked to write now (a flush) or to stop.
    urgent: bool,
    stop: bool,
    dropped: u64,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    done: Condvar,
}

/// The batching writer in front of an [`AuditLog`].
pub struct AuditQueue {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

impl AuditQueue {
    pub fn new(log: Arc<AuditLog>) -> AuditQueue {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            done: Condvar::new(),
        });
        let s = shared.clone();
        let writer = std::thread::Builder::new()
            .name("berth-audit".into())
            .spawn(move || write_loop(&s, &log))
            .ok();
        AuditQueue { shared, writer }
    }

    /// Queues `event` for the next batch.
    pub fn push(&self, event: AuditEvent) {
        let mut p = lock(&self.shared.pending);
        if p.events.len() >= MAX_PENDING {
            p.dropped += 1;
            return;
        }
        p.events.push(event);
        p.pushed += 1;
    }

    /// Writes every queued event now and waits until they are in.
    pub fn flush(&self) {
        let mut p = lock(&self.shared.pending);
        let target = p.pushed;
        p.urgent = true;
        self.shared.wake.notify_all();
        while p.written < target && !p.stop {
            p = self.shared.done.wait(p).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        lock(&self.shared.pending).dropped
    }
}

impl Drop for AuditQueue {
    fn drop(&mut self) {
        lock(&self.shared.pending).stop = true;
        self.shared.wake.notify_all();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn lock(m: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn write_loop(shared: &Shared, log: &AuditLog) {
    loop {
        let (batch, upto, stop) = {
            let mut p = lock(&shared.pending);
            if !p.urgent && !p.stop {
                p = shared
                    .wake
                    .wait_timeout(p, FLUSH_EVERY)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            p.urgent = false;
            (std::mem::take(&mut p.events), p.pushed, p.stop)
        };
        if let Err(e) = log.record_all(&batch) {
            tracing::warn!(error = %e, events = batch.len(), "writing audit events failed");
        }
        let mut p = lock(&shared.pending);
        p.written = upto;
        shared.done.notify_all();
        if stop && p.events.is_empty() {
            return;
        }
    }
}
