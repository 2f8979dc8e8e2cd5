//! The server's periodic collections and scrubs. Each kind runs one interval after its
//! previous run ended (a run longer than its interval is never followed by another at once),
//! the first one interval after start-up; a run that finds the slot taken (an admin request
//! is running a job) is skipped until its next turn.

use std::time::Duration;

use tokio::time::Instant;

use crate::maintenance::{Job, Maintenance, MaintenanceError};

/// When each kind of job runs; `None` never.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Schedule {
    pub gc_every: Option<Duration>,
    pub scrub_every: Option<Duration>,
}

impl Schedule {
    pub fn is_empty(&self) -> bool {
        self.gc_every.is_none() && self.scrub_every.is_none()
    }
}

/// Runs the schedule until the task is dropped. Collections use the configured settings;
/// scrubs the configured rate, and they quarantine the damaged blobs they find.
pub async fn run(maintenance: Maintenance, schedule: Schedule) {
    if schedule.is_empty() {
        return;
    }
    tracing::info!(
        gc_every_s = schedule.gc_every.map(|d| d.as_secs()),
        scrub_every_s = schedule.scrub_every.map(|d| d.as_secs()),
        "maintenance scheduled"
    );
    let start = Instant::now();
    let mut next_gc = schedule.gc_every.map(|d| start + d);
    let mut next_scrub = schedule.scrub_every.map(|d| start + d);
    loop {
        let Some(wake) = next_gc.into_iter().chain(next_scrub).min() else {
            return;
        };
        tokio::time::sleep_until(wake).await;
        let now = Instant::now();
        if let (Some(at), Some(every)) = (next_gc, schedule.gc_every) {
            if at <= now {
                let result = maintenance
                    .gc(maintenance.gc_defaults().clone())
                    .await
                    .map(drop);
                note(Job::Gc, result);
                next_gc = Some(Instant::now() + every);
            }
        }
        let now = Instant::now();
        if let (Some(at), Some(every)) = (next_scrub, schedule.scrub_every) {
            if at <= now {
                let result = maintenance
                    .scrub(maintenance.scrub_rate(), true)
                    .await
                    .map(drop);
                note(Job::Scrub, result);
                next_scrub = Some(Instant::now() + every);
            }
        }
    }
}

/// The job itself logged its report or failure; only a skipped or lost job is told here.
fn note(job: Job, result: Result<(), MaintenanceError>) {
    match result {
        Ok(()) | Err(MaintenanceError::Storage(_)) => {}
        Err(MaintenanceError::Busy(other)) => {
            tracing::info!(
                job = job.as_str(),
                running = other.as_str(),
                "scheduled {job} skipped: a {other} is running"
            );
        }
        Err(e @ MaintenanceError::Task(_)) => {
            tracing::error!(job = job.as_str(), error = %e, "scheduled {job} failed");
        }
    }
}
