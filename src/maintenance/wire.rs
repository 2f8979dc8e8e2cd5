//! The JSON of the admin endpoint, read back by `berth gc --url` / `berth verify --url` and
//! printed by `--json`: the storage reports in plain fields (digests as strings, durations as
//! seconds), and the overrides a collection request may carry.

use serde::{Deserialize, Serialize};

use crate::config::units::{ByteRate, HumanDuration};
use crate::maintenance::{Job, ScrubOutcome};
use crate::storage::{GcOptions, GcReport, GcStats};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ManifestRef {
    pub repository: String,
    pub digest: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TagRef {
    pub repository: String,
    pub tag: String,
}

/// [`GcReport`] as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GcReportJson {
    pub dry_run: bool,
    pub manifests_deleted: Vec<ManifestRef>,
    pub tags_deleted: Vec<TagRef>,
    pub links_removed: u64,
    pub blobs_removed: u64,
    pub bytes_swept: u64,
    pub kept_touched: u64,
    pub segments_compacted: u64,
    pub bytes_relocated: u64,
    pub bytes_reclaimed: u64,
    pub mark_seconds: f64,
    pub sweep_seconds: f64,
    pub compact_seconds: f64,
}

impl From<&GcReport> for GcReportJson {
    fn from(r: &GcReport) -> GcReportJson {
        GcReportJson {
            dry_run: r.dry_run,
            manifests_deleted: r
                .manifests_deleted
                .iter()
                .map(|(repo, digest)| ManifestRef {
                    repository: repo.clone(),
                    digest: digest.to_string(),
                })
                .collect(),
            tags_deleted: r
                .tags_deleted
                .iter()
                .map(|(repo, tag)| TagRef {
                    repository: repo.clone(),
                    tag: tag.clone(),
                })
                .collect(),
            links_removed: r.links_removed,
            blobs_removed: r.blobs_removed,
            bytes_swept: r.bytes_swept,
            kept_touched: r.kept_touched,
            segments_compacted: r.segments_compacted,
            bytes_relocated: r.bytes_relocated,
            bytes_reclaimed: r.bytes_reclaimed,
            mark_seconds: r.mark_time.as_secs_f64(),
            sweep_seconds: r.sweep_time.as_secs_f64(),
            compact_seconds: r.compact_time.as_secs_f64(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorruptRecordJson {
    pub segment: u64,
    pub offset: u64,
    pub reason: String,
}

/// A scrub's [`ScrubOutcome`] as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyJson {
    pub clean: bool,
    pub segments: u64,
    pub records: u64,
    pub bytes: u64,
    pub damaged_records: Vec<CorruptRecordJson>,
    pub damaged_blobs: Vec<String>,
    /// Whether damaged blobs were to be quarantined.
    pub quarantine: bool,
    /// How many of them were taken out of service.
    pub quarantined: u64,
}

impl From<&ScrubOutcome> for VerifyJson {
    fn from(o: &ScrubOutcome) -> VerifyJson {
        let r = &o.report;
        VerifyJson {
            clean: o.is_clean(),
            segments: r.segments,
            records: r.records,
            bytes: r.bytes,
            damaged_records: r
                .corrupt
                .iter()
                .map(|c| CorruptRecordJson {
                    segment: c.segment,
                    offset: c.offset,
                    reason: c.reason.clone(),
                })
                .collect(),
            damaged_blobs: r.damaged_blobs.iter().map(|d| d.to_string()).collect(),
            quarantine: o.quarantine,
            quarantined: o.quarantined,
        }
    }
}

/// `GET /admin/gc`: [`GcStats`] and the job running now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GcStatsJson {
    /// `"gc"` or `"scrub"` while one runs.
    pub running: Option<String>,
    pub runs: u64,
    pub last_run_unix_ms: Option<u64>,
    pub last: Option<GcReportJson>,
    pub total_bytes_reclaimed: u64,
    pub total_blobs_removed: u64,
    pub total_manifests_deleted: u64,
    pub total_segments_compacted: u64,
    pub last_scrub_unix_ms: Option<u64>,
    pub corrupt_records_found: u64,
    pub blobs_quarantined: u64,
}

impl GcStatsJson {
    pub fn new(s: &GcStats, running: Option<Job>) -> GcStatsJson {
        GcStatsJson {
            running: running.map(|j| j.as_str().to_owned()),
            runs: s.runs,
            last_run_unix_ms: s.last_run_unix_ms,
            last: s.last.as_ref().map(GcReportJson::from),
            total_bytes_reclaimed: s.total_bytes_reclaimed,
            total_blobs_removed: s.total_blobs_removed,
            total_manifests_deleted: s.total_manifests_deleted,
            total_segments_compacted: s.total_segments_compacted,
            last_scrub_unix_ms: s.last_scrub_unix_ms,
            corrupt_records_found: s.corrupt_records_found,
            blobs_quarantined: s.blobs_quarantined,
        }
    }
}

/// What a `POST /admin/gc` may change of the registry's configured collection; each field
/// left out keeps the configured value. Durations are strings (`"10m"`) or seconds, rates
/// strings (`"50MB"`, `"unlimited"`) or bytes per second.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<HumanDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compact: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compact_threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<ByteRate>,
}

impl GcRequest {
    /// Fills every unset field from `other`.
    pub fn or(self, other: GcRequest) -> GcRequest {
        GcRequest {
            dry_run: self.dry_run.or(other.dry_run),
            grace: self.grace.or(other.grace),
            compact: self.compact.or(other.compact),
            compact_threshold: self.compact_threshold.or(other.compact_threshold),
            rate: self.rate.or(other.rate),
        }
    }

    /// `configured` with this request's changes.
    pub fn apply(&self, configured: &GcOptions) -> Result<GcOptions, String> {
        let mut opts = configured.clone();
        if let Some(v) = self.dry_run {
            opts.dry_run = v;
        }
        if let Some(v) = self.grace {
            opts.grace = v.0;
        }
        if let Some(v) = self.compact {
            opts.compact = v;
        }
        if let Some(v) = self.compact_threshold {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!(
                    "compact_threshold must be between 0 and 1, not {v}"
                ));
            }
            opts.compact_threshold = v;
        }
        if let Some(v) = self.rate {
            opts.compact_rate = v.0;
        }
        Ok(opts)
    }
}

/// What a `POST /admin/verify` may change: whether damaged blobs are quarantined (default
/// yes) and the read budget (default the registry's `[scrub] rate`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<ByteRate>,
}

impl VerifyRequest {
    pub fn or(self, other: VerifyRequest) -> VerifyRequest {
        VerifyRequest {
            quarantine: self.quarantine.or(other.quarantine),
            rate: self.rate.or(other.rate),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::oci::digest::{Algorithm, Digest};
    use crate::storage::{CorruptRecord, VerifyReport};

    #[test]
    fn reports_become_plain_json() {
        let d = Digest::of(Algorithm::Sha256, b"x");
        let report = GcReport {
            dry_run: true,
            manifests_deleted: vec![("app".into(), d.clone())],
            tags_deleted: vec![("app".into(), "old".into())],
            bytes_reclaimed: 4096,
            mark_time: Duration::from_millis(1500),
            ..GcReport::default()
        };
        let v = serde_json::to_value(GcReportJson::from(&report)).unwrap();
        assert_eq!(v["dry_run"], true);
        assert_eq!(v["manifests_deleted"][0]["repository"], "app");
        assert_eq!(v["manifests_deleted"][0]["digest"], d.to_string());
        assert_eq!(v["tags_deleted"][0]["tag"], "old");
        assert_eq!(v["bytes_reclaimed"], 4096);
        assert_eq!(v["mark_seconds"], 1.5);

        let outcome = ScrubOutcome {
            report: VerifyReport {
                segments: 2,
                corrupt: vec![CorruptRecord {
                    segment: 2,
                    offset: 64,
                    reason: "payload checksum".into(),
                }],
                damaged_blobs: vec![d.clone()],
                ..VerifyReport::default()
            },
            quarantine: true,
            quarantined: 1,
        };
        let json = VerifyJson::from(&outcome);
        assert!(!json.clean);
        assert_eq!(json.damaged_records[0].offset, 64);
        assert_eq!(json.damaged_blobs, vec![d.to_string()]);
        let text = serde_json::to_string(&json).unwrap();
        assert_eq!(serde_json::from_str::<VerifyJson>(&text).unwrap(), json);
    }

    #[test]
    fn requests_override_the_configuration() {
        let configured = GcOptions {
            grace: Duration::from_secs(60),
            ..GcOptions::default()
        };
        let req: GcRequest =
            serde_json::from_str(r#"{"dry_run":true,"grace":"10m","rate":"20MB"}"#).unwrap();
        let opts = req.apply(&configured).unwrap();
        assert!(opts.dry_run);
        assert_eq!(opts.grace, Duration::from_secs(600));
        assert_eq!(opts.compact_rate, Some(20_000_000));
        assert!(opts.compact);
        let req: GcRequest = serde_json::from_str(r#"{"compact_threshold":2}"#).unwrap();
        assert!(req.apply(&configured).is_err());
        assert!(serde_json::from_str::<GcRequest>(r#"{"dryrun":true}"#).is_err());
        // What the command line sends is what the endpoint reads.
        let sent = GcRequest {
            grace: Some(HumanDuration(Duration::from_millis(1500))),
            rate: Some(ByteRate(None)),
            ..GcRequest::default()
        };
        let text = serde_json::to_string(&sent).unwrap();
        assert_eq!(serde_json::from_str::<GcRequest>(&text).unwrap(), sent);
    }
}
