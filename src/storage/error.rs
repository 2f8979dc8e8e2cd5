//! The storage layer's single error enum.

use crate::oci::digest::Digest;

/// Every failure the store reports. The HTTP layer maps these to OCI error codes in one place.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("upload session unknown")]
    UploadUnknown,
    #[error("upload offset mismatch, expected {expected}")]
    UploadOffset { expected: u64 },
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob unknown: {0}")]
    BlobUnknown(Digest),
    #[error("manifest references unknown blob {0}")]
    ManifestBlobUnknown(Digest),
    #[error("manifest unknown")]
    ManifestUnknown,
    /// A blob delete refused: these manifests of the repository still reference the blob.
    #[error("blob still referenced by {} manifest(s)", .0.len())]
    BlobReferenced(Vec<Digest>),
    #[error("too many open uploads")]
    TooManyUploads,
    /// The upload write buffers are full with sessions busy right now; retry shortly.
    #[error("upload buffers full")]
    UploadMemory,
    #[error("disk full")]
    DiskFull,
    #[error("corrupt store: {0}")]
    Corrupt(String),
    #[error("store closed")]
    Closed,
    #[error("store is locked by another process")]
    Locked,
    /// Written by a newer berth: this build refuses to open it and changes nothing.
    #[error("unsupported storage format: {0}")]
    UnsupportedFormat(String),
    /// A previous I/O failure left state that only a reopen (and its recovery scan) can trust.
    #[error("store needs a reopen after an earlier I/O failure")]
    Poisoned,
    /// The operating system's random source failed, so no unguessable session id can be made.
    #[error("random source failed: {0}")]
    Random(String),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("index error: {0}")]
    Index(String),
}

impl StorageError {
    /// Classifies an I/O error, turning "no space" into [`StorageError::DiskFull`].
    pub(crate) fn from_io(e: std::io::Error) -> StorageError {
        if is_disk_full(&e) {
            StorageError::DiskFull
        } else {
            StorageError::Io(e)
        }
    }
}

pub(crate) fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || e.kind() == std::io::ErrorKind::StorageFull
}

impl From<redb::StorageError> for StorageError {
    fn from(e: redb::StorageError) -> StorageError {
        match e {
            redb::StorageError::Io(io) => StorageError::from_io(io),
            other => StorageError::Index(other.to_string()),
        }
    }
}

macro_rules! from_redb {
    ($($t:ident),*) => {$(
        impl From<redb::$t> for StorageError {
            fn from(e: redb::$t) -> StorageError {
                match e {
                    redb::$t::Storage(s) => s.into(),
                    other => StorageError::Index(other.to_string()),
                }
            }
        }
    )*};
}

from_redb!(DatabaseError, TransactionError, TableError, CommitError);

impl StorageError {
    /// A copy for every waiter of a failed group commit (io::Error is not Clone).
    pub(crate) fn duplicate(&self) -> StorageError {
        match self {
            StorageError::DiskFull => StorageError::DiskFull,
            StorageError::Poisoned => StorageError::Poisoned,
            StorageError::Closed => StorageError::Closed,
            StorageError::Io(e) => StorageError::Io(std::io::Error::new(e.kind(), e.to_string())),
            StorageError::Corrupt(s) => StorageError::Corrupt(s.clone()),
            StorageError::UnsupportedFormat(s) => StorageError::UnsupportedFormat(s.clone()),
            StorageError::BlobReferenced(m) => StorageError::BlobReferenced(m.clone()),
            StorageError::UploadMemory => StorageError::UploadMemory,
            other => StorageError::Index(other.to_string()),
        }
    }
}
