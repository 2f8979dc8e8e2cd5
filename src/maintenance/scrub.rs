//! A scrub followed by the quarantine of what it found: a damaged blob left in the index is
//! still reported present (a HEAD answers 200), so clients never push it again and it stays
//! broken; once quarantined it is unknown, and the next push of it heals it.

use crate::storage::{StorageError, Store, VerifyReport};

/// What a scrub found and what was done about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubOutcome {
    pub report: VerifyReport,
    /// Whether damaged blobs were to be quarantined.
    pub quarantine: bool,
    /// Damaged blobs taken out of service (those still in the index).
    pub quarantined: u64,
}

impl ScrubOutcome {
    pub fn is_clean(&self) -> bool {
        self.report.is_clean()
    }
}

/// Scrubs every record at `rate` bytes per second, then (with `quarantine`) quarantines the
/// damaged blobs.
pub fn scrub_and_quarantine(
    store: &Store,
    rate: Option<u64>,
    quarantine: bool,
) -> Result<ScrubOutcome, StorageError> {
    let report = store.scrub(rate)?;
    let quarantined = if quarantine && !report.damaged_blobs.is_empty() {
        store.quarantine(&report.damaged_blobs)?
    } else {
        0
    };
    Ok(ScrubOutcome {
        report,
        quarantine,
        quarantined,
    })
}
