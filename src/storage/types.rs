//! Plain data types of the public storage API.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::error::StorageError;
use crate::oci::digest::Digest;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Tunables of a [`super::Store`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Roll the active segment once it grows past this size.
    pub max_segment_bytes: u64,
    /// Upload sessions idle for longer than this are reclaimed. An open session keeps every
    /// segment written since it began from being compacted and takes one of
    /// `max_open_uploads`, so abandoned ones should not linger; clients resume a push within
    /// minutes, or start it over.
    pub upload_max_idle: Duration,
    /// `begin_upload` refuses new sessions past this many.
    pub max_open_uploads: usize,
    /// Maximum payload of one chunk record; also the per-session write buffer.
    pub chunk_record_bytes: usize,
    /// Memory the write buffers (tails) of all upload sessions may hold together. Past it,
    /// the tails of the least recently touched sessions are written to the log early; an
    /// append is refused only if the buffers of sessions busy at that moment fill it.
    pub max_upload_buffer_bytes: usize,
    /// When a chunk's blake3 trailer is checked before its bytes are handed out.
    pub read_verification: ReadVerification,
    /// With [`ReadVerification::Once`]: how many verified chunk records are remembered (about
    /// 40 bytes each; the least recently read are forgotten first and checked again).
    pub verified_cache_entries: usize,
    /// How often the background thread makes the index durable and records upload progress
    /// nobody committed yet. Tests shorten it to run checkpoints between every other step.
    #[doc(hidden)]
    pub checkpoint_interval: Duration,
}

/// When reads check the blake3 trailer of a chunk record (storage-format.md section 8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadVerification {
    /// Every read of every chunk, every time.
    Always,
    /// The first read of a chunk since the store was opened; later reads trust the mapped
    /// pages that were checked (bit rot after that is found by `verify` or after a reopen).
    #[default]
    Once,
    /// Never (the trailers are still checked by recovery and `verify`).
    Off,
}

impl FromStr for ReadVerification {
    type Err = String;
    fn from_str(s: &str) -> Result<ReadVerification, String> {
        match s {
            "always" => Ok(ReadVerification::Always),
            "once" => Ok(ReadVerification::Once),
            "off" => Ok(ReadVerification::Off),
            other => Err(format!(
                "unknown read verification {other:?} (always, once or off)"
            )),
        }
    }
}

impl fmt::Display for ReadVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReadVerification::Always => "always",
            ReadVerification::Once => "once",
            ReadVerification::Off => "off",
        })
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_segment_bytes: 1 << 30,
            upload_max_idle: Duration::from_secs(3600),
            max_open_uploads: 1024,
            chunk_record_bytes: 1 << 20,
            max_upload_buffer_bytes: 64 << 20,
            read_verification: ReadVerification::Once,
            verified_cache_entries: 1 << 16,
            checkpoint_interval: Duration::from_secs(1),
        }
    }
}

/// Identifier of an upload session: 128 random bits, shown as 32 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(pub(crate) [u8; 16]);

impl UploadId {
    /// A fresh id from the operating system's random source. Ids are the only thing that
    /// keeps one client from appending to another's session, so without entropy there is no
    /// id: the request fails rather than fall back to something guessable.
    pub(crate) fn random() -> Result<UploadId, StorageError> {
        UploadId::from_source(getrandom::getrandom)
    }

    /// An id filled by `fill` (the OS source, or a failing one in tests).
    fn from_source<E: fmt::Display>(
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<UploadId, StorageError> {
        let mut b = [0u8; 16];
        fill(&mut b).map_err(|e| StorageError::Random(e.to_string()))?;
        Ok(UploadId(b))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UploadId({self})")
    }
}

impl serde::Serialize for UploadId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for UploadId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<UploadId, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::custom("bad upload id"))
    }
}

impl FromStr for UploadId {
    type Err = StorageError;
    fn from_str(s: &str) -> Result<UploadId, StorageError> {
        if s.len() != 32
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(StorageError::UploadUnknown);
        }
        let mut b = [0u8; 16];
        hex::decode_to_slice(s, &mut b).map_err(|_| StorageError::UploadUnknown)?;
        Ok(UploadId(b))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadStatus {
    pub repo: String,
    pub offset: u64,
    pub started_at: SystemTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestPut {
    pub digest: Digest,
    pub media_type: String,
    pub body: Vec<u8>,
    pub tags: Vec<String>,
    pub references: Vec<Digest>,
    pub subject: Option<Digest>,
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub body: Bytes,
}

/// A manifest's headers without its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestHead {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

/// Live bytes belong to indexed blobs; dead bytes to aborted, mismatched or deduplicated uploads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpaceStats {
    pub live_bytes: u64,
    pub dead_bytes: u64,
    pub segments: Vec<SegmentSpace>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentSpace {
    pub id: u64,
    pub size: u64,
    pub live_bytes: u64,
    pub dead_bytes: u64,
}

impl SegmentSpace {
    /// Fraction of the segment file that is live blob payload (0 for an empty file).
    pub fn live_ratio(&self) -> f64 {
        if self.size == 0 {
            0.0
        } else {
            self.live_bytes as f64 / self.size as f64
        }
    }
}

/// One row of the index, as [`super::Store::dump_index`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexRow {
    pub table: &'static str,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// Result of a scrub of every record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub segments: u64,
    pub records: u64,
    pub bytes: u64,
    /// Damaged records, as "(segment, offset): reason".
    pub corrupt: Vec<CorruptRecord>,
    /// Indexed blobs that have at least one byte in a damaged region.
    pub damaged_blobs: Vec<Digest>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty() && self.damaged_blobs.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptRecord {
    pub segment: u64,
    pub offset: u64,
    pub reason: String,
}

/// What one collection does.
#[derive(Clone, Debug)]
pub struct GcOptions {
    /// Compute and report everything a run would delete and reclaim, change nothing.
    pub dry_run: bool,
    /// Blob links younger than this are kept even when no manifest references them (for
    /// clients that push layers long before their manifest). Default 0: the transactional
    /// touch protocol alone closes the push/GC race.
    pub grace: Duration,
    /// Whether to compact segments after sweeping.
    pub compact: bool,
    /// Sealed segments whose live payload is below this fraction of their size are rewritten.
    pub compact_threshold: f64,
    /// Compaction I/O budget in bytes per second (read and rewritten live bytes); `None` for
    /// as fast as the disk goes.
    pub compact_rate: Option<u64>,
    /// Retention rules, applied before the mark (the first rule whose glob matches a
    /// repository applies to it).
    pub retention: Vec<RetentionRule>,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            grace: Duration::ZERO,
            compact: true,
            compact_threshold: 0.5,
            compact_rate: None,
            retention: Vec::new(),
        }
    }
}

/// A retention policy for the repositories matching `repositories` (a glob: `*` matches within
/// one path component, `**` across components).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionRule {
    pub repositories: String,
    /// Delete untagged manifests (that are not referrers of a live subject and not children of
    /// a live index) pushed longer ago than this.
    pub delete_untagged_after: Option<Duration>,
    /// Keep only the newest this-many tags (by push time), deleting the older tags.
    pub keep_newest_tags: Option<usize>,
    /// Tags matching any of these globs are never deleted by retention.
    pub protect_tags: Vec<String>,
}

/// The phase a progress report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GcPhase {
    Mark,
    Sweep,
    Compact,
}

/// Progress of the current phase: `done` out of `total` (manifests for the mark, index items
/// for the sweep, live bytes to relocate for the compaction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GcProgress {
    pub phase: GcPhase,
    pub done: u64,
    pub total: u64,
}

/// What a collection did (or, with `dry_run`, would do).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GcReport {
    pub dry_run: bool,
    /// Manifests deleted by retention rules or because their subject is gone: (repo, digest).
    pub manifests_deleted: Vec<(String, Digest)>,
    /// Tags deleted by retention rules: (repo, tag).
    pub tags_deleted: Vec<(String, String)>,
    /// Repository links of blobs no manifest references any more.
    pub links_removed: u64,
    /// Blobs dropped from the index, and their payload bytes (now dead space).
    pub blobs_removed: u64,
    pub bytes_swept: u64,
    /// Candidates kept because a client touched them after the mark began.
    pub kept_touched: u64,
    /// Sealed segments rewritten and deleted.
    pub segments_compacted: u64,
    /// Live payload bytes copied into new segments.
    pub bytes_relocated: u64,
    /// Segment file bytes deleted (or, in a dry run, that would be).
    pub bytes_reclaimed: u64,
    pub mark_time: Duration,
    pub sweep_time: Duration,
    pub compact_time: Duration,
    /// The blobs removed (size, digest).
    pub swept_blobs: Vec<(u64, Digest)>,
}

/// Running totals and the last outcomes, for metrics and health reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GcStats {
    /// Completed collections (dry runs excluded) since the store was opened.
    pub runs: u64,
    /// When the last collection (not a dry run) ended, in ms since the Unix epoch.
    pub last_run_unix_ms: Option<u64>,
    /// The last collection's report.
    pub last: Option<GcReport>,
    pub total_bytes_reclaimed: u64,
    pub total_blobs_removed: u64,
    pub total_manifests_deleted: u64,
    pub total_segments_compacted: u64,
    /// When the last full scrub (`verify`) ended, in ms since the Unix epoch.
    pub last_scrub_unix_ms: Option<u64>,
    /// Damaged records found by scrubs since the store was opened.
    pub corrupt_records_found: u64,
    /// Blobs taken out of service because a scrub found them damaged.
    pub blobs_quarantined: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_upload_id_without_entropy() {
        let failed = UploadId::from_source(|_| Err("no entropy"));
        assert!(matches!(failed, Err(StorageError::Random(m)) if m == "no entropy"));
        let filled = UploadId::from_source(|b| {
            b.fill(7);
            Ok::<(), String>(())
        });
        assert_eq!(filled.unwrap(), UploadId([7; 16]));
    }

    #[test]
    fn upload_id_round_trips_and_refuses_junk() {
        let id = UploadId::random().unwrap();
        let s = id.to_string();
        assert_eq!(s.len(), 32);
        assert_eq!(s.parse::<UploadId>().unwrap(), id);
        assert!(matches!(
            "xyz".parse::<UploadId>(),
            Err(StorageError::UploadUnknown)
        ));
        assert!(matches!(
            s.to_uppercase().parse::<UploadId>(),
            Err(StorageError::UploadUnknown)
        ));
    }
}
