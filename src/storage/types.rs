//! Plain data types of the public storage API.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::error::StorageError;
use crate::oci::digest::Digest;

/// Tunables of a [`super::Store`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Roll the active segment once it grows past this size.
    pub max_segment_bytes: u64,
    /// Upload sessions idle for longer than this are reclaimed.
    pub upload_max_idle: Duration,
    /// `begin_upload` refuses new sessions past this many.
    pub max_open_uploads: usize,
    /// Maximum payload of one chunk record; also the per-session write buffer.
    pub chunk_record_bytes: usize,
    /// Check the blake3 trailer of every chunk before handing it out.
    pub verify_reads: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_segment_bytes: 1 << 30,
            upload_max_idle: Duration::from_secs(24 * 3600),
            max_open_uploads: 1024,
            chunk_record_bytes: 1 << 20,
            verify_reads: true,
        }
    }
}

/// Identifier of an upload session: 128 random bits, shown as 32 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(pub(crate) [u8; 16]);

impl UploadId {
    pub(crate) fn random() -> UploadId {
        let mut b = [0u8; 16];
        if getrandom::getrandom(&mut b).is_err() {
            // No entropy source: fall back to time and a counter, still unique within the process.
            use std::sync::atomic::{AtomicU64, Ordering};
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            b[..8].copy_from_slice(&now.to_le_bytes());
            b[8..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        }
        UploadId(b)
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

/// A committed blob as zero-copy slices of the segment maps, in order.
#[derive(Clone, Debug)]
pub struct BlobData {
    pub digest: Digest,
    pub size: u64,
    pub extents: Vec<Bytes>,
}

impl BlobData {
    /// The bytes in `start..end_exclusive` (clamped to the blob) as zero-copy slices.
    pub fn slice(&self, start: u64, end_exclusive: u64) -> Vec<Bytes> {
        let end = end_exclusive.min(self.size);
        let mut out = Vec::new();
        let mut pos = 0u64;
        for e in &self.extents {
            let len = e.len() as u64;
            let (lo, hi) = (start.max(pos), end.min(pos + len));
            if lo < hi {
                out.push(e.slice((lo - pos) as usize..(hi - pos) as usize));
            }
            pos += len;
            if pos >= end {
                break;
            }
        }
        out
    }

    /// Copies the whole blob into one buffer (tests and small manifests).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.size as usize);
        for e in &self.extents {
            v.extend_from_slice(e);
        }
        v
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_id_round_trips_and_refuses_junk() {
        let id = UploadId::random();
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

    #[test]
    fn slice_spans_extents() {
        let d = crate::oci::digest::Digest::of(crate::oci::digest::Algorithm::Sha256, b"abcdefgh");
        let b = BlobData {
            digest: d,
            size: 8,
            extents: vec![Bytes::from_static(b"abc"), Bytes::from_static(b"defgh")],
        };
        let cat = |v: Vec<Bytes>| v.iter().flat_map(|b| b.to_vec()).collect::<Vec<u8>>();
        assert_eq!(cat(b.slice(0, 8)), b"abcdefgh");
        assert_eq!(cat(b.slice(2, 5)), b"cde");
        assert_eq!(cat(b.slice(3, 100)), b"defgh");
        assert!(b.slice(5, 5).is_empty());
    }
}
