//! Checks shared by the storage scenarios: what "every acknowledged blob is intact" means.
//! Each scenario uses some of them.
#![allow(dead_code)]

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::Store;

pub fn sha(b: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, b)
}

/// A stored blob's bytes, read through the verifying reader; panics if it is missing.
pub fn blob_bytes(store: &Store, digest: &Digest) -> Vec<u8> {
    store
        .get(digest)
        .unwrap()
        .unwrap_or_else(|| panic!("{digest} missing"))
        .read_all()
        .unwrap()
        .to_vec()
}

/// Every blob reads back byte for byte through the verifying reader, and a full scrub of the
/// segments finds nothing damaged.
pub fn assert_intact(store: &Store, blobs: &[Vec<u8>]) {
    for b in blobs {
        assert_eq!(
            &blob_bytes(store, &sha(b))[..],
            &b[..],
            "{} content",
            sha(b)
        );
    }
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
}
