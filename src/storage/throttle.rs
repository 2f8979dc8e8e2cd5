//! An I/O budget for background work (compaction, scrubs) that must leave the disk to clients.

use std::time::{Duration, Instant};

/// Spends at most `rate` bytes per second (no limit when `None` or 0).
pub(crate) struct Throttle {
    rate: Option<u64>,
    started: Instant,
    spent: u64,
}

impl Throttle {
    pub fn new(rate: Option<u64>) -> Throttle {
        Throttle {
            rate: rate.filter(|&r| r > 0),
            started: Instant::now(),
            spent: 0,
        }
    }

    /// Counts `bytes` as done, sleeping if they came sooner than the budget allows.
    pub fn spend(&mut self, bytes: u64) {
        self.spent += bytes;
        if let Some(rate) = self.rate {
            let due = Duration::from_secs_f64(self.spent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(self.started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
}
