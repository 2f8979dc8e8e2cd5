//! Words for a collection's progress, and the throttled log lines a server writes from it.

use std::time::{Duration, Instant};

use crate::config::units::format_bytes;
use crate::storage::{GcPhase, GcProgress};

pub fn phase_name(phase: GcPhase) -> &'static str {
    match phase {
        GcPhase::Mark => "mark",
        GcPhase::Sweep => "sweep",
        GcPhase::Compact => "compact",
    }
}

/// Whether the phase counts bytes (the compaction's live bytes to relocate) rather than items.
pub fn counts_bytes(phase: GcPhase) -> bool {
    phase == GcPhase::Compact
}

/// What the phase counts, for "1234/2741 manifests".
pub fn item_name(phase: GcPhase) -> &'static str {
    match phase {
        GcPhase::Mark => "manifests",
        GcPhase::Sweep => "index items",
        GcPhase::Compact => "",
    }
}

/// Percent done, 100 for an empty phase.
pub fn percent(p: GcProgress) -> u64 {
    if p.total == 0 {
        100
    } else {
        (p.done.min(p.total) as u128 * 100 / p.total as u128) as u64
    }
}

/// `1234/2741 manifests` or `1.2 GiB/3.4 GiB`.
pub fn amount(p: GcProgress) -> String {
    if counts_bytes(p.phase) {
        format!("{}/{}", format_bytes(p.done), format_bytes(p.total))
    } else {
        format!("{}/{} {}", p.done, p.total, item_name(p.phase))
    }
}

/// `mark 45% (1234/2741 manifests)`.
pub fn describe(p: GcProgress) -> String {
    format!("{} {}% ({})", phase_name(p.phase), percent(p), amount(p))
}

/// Logs a collection's progress when a phase starts and then at most every `every`.
pub struct ProgressLog {
    every: Duration,
    phase: Option<GcPhase>,
    last: Instant,
}

impl ProgressLog {
    pub fn new(every: Duration) -> ProgressLog {
        ProgressLog {
            every,
            phase: None,
            last: Instant::now(),
        }
    }

    /// Whether `p` deserves a line, remembering that it got one.
    pub fn due(&mut self, p: GcProgress, now: Instant) -> bool {
        if self.phase != Some(p.phase) || now.duration_since(self.last) >= self.every {
            self.phase = Some(p.phase);
            self.last = now;
            true
        } else {
            false
        }
    }

    pub fn update(&mut self, p: GcProgress) {
        if self.due(p, Instant::now()) {
            tracing::info!(
                phase = phase_name(p.phase),
                done = p.done,
                total = p.total,
                percent = percent(p),
                "garbage collection progress: {}",
                describe(p)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(phase: GcPhase, done: u64, total: u64) -> GcProgress {
        GcProgress { phase, done, total }
    }

    #[test]
    fn descriptions() {
        assert_eq!(
            describe(p(GcPhase::Mark, 1234, 2741)),
            "mark 45% (1234/2741 manifests)"
        );
        assert_eq!(
            describe(p(GcPhase::Compact, 1 << 30, 4 << 30)),
            "compact 25% (1.0 GiB/4.0 GiB)"
        );
        assert_eq!(percent(p(GcPhase::Sweep, 0, 0)), 100);
        assert_eq!(percent(p(GcPhase::Sweep, 9, 3)), 100);
    }

    #[test]
    fn lines_at_each_phase_and_then_every_interval() {
        let mut log = ProgressLog::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert!(log.due(p(GcPhase::Mark, 0, 10), t0));
        assert!(!log.due(p(GcPhase::Mark, 1, 10), t0 + Duration::from_secs(1)));
        assert!(log.due(p(GcPhase::Mark, 5, 10), t0 + Duration::from_secs(5)));
        assert!(log.due(p(GcPhase::Sweep, 0, 3), t0 + Duration::from_secs(6)));
        assert!(!log.due(p(GcPhase::Sweep, 1, 3), t0 + Duration::from_secs(7)));
    }
}
