//! The bundle layer's single error enum: every refusal names what is wrong and where.

use crate::oci::digest::Digest;
use crate::storage::StorageError;

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("storage: {0}")]
    Storage(StorageError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A reference argument that does not parse.
    #[error("{0:?} is not a reference (repo:tag, repo@digest, repo or a repository glob)")]
    BadRef(String),
    /// A reference the store does not hold.
    #[error("{0}: not in the store")]
    UnknownRef(String),
    /// The input is none of the formats `berth import` reads, or a file in it is malformed.
    #[error("{0}")]
    Format(String),
    /// The bytes of a file are not the bytes its digest names.
    #[error("{path}: the bytes do not match the digest {expected} (they hash to {actual})")]
    DigestMismatch {
        path: String,
        expected: Digest,
        actual: Digest,
    },
    /// An entry ended before its announced size: the input is cut short.
    #[error("{path}: truncated after {got} of {expected} bytes")]
    Truncated {
        path: String,
        expected: u64,
        got: u64,
    },
    /// The tar itself ends or breaks between files.
    #[error("the tar is cut short or damaged after {after}: {reason}")]
    CutShort { after: String, reason: String },
    /// The contents manifest does not describe the bundle it heads.
    #[error("the bundle's contents manifest does not match the bundle: {0}")]
    ContentsMismatch(String),
    /// Something an image needs is neither in the input nor already stored.
    #[error("{0}")]
    Missing(String),
    /// Where images go cannot be told from the input and the flags.
    #[error("{0}")]
    Names(String),
    #[error("signature: {0}")]
    Signature(String),
}

impl From<StorageError> for BundleError {
    fn from(e: StorageError) -> BundleError {
        BundleError::Storage(e)
    }
}

impl BundleError {
    pub(crate) fn format(what: impl Into<String>) -> BundleError {
        BundleError::Format(what.into())
    }
}
