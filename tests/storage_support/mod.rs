//! Checks shared by the storage scenarios: what "every acknowledged blob is intact" means.

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::Store;

pub fn sha(b: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, b)
}

/// Every blob reads back byte for byte through the verifying reader, and a full scrub of the
/// segments finds nothing damaged.
pub fn assert_intact(store: &Store, blobs: &[Vec<u8>]) {
    for b in blobs {
        let got = store
            .get(&sha(b))
            .unwrap()
            .unwrap_or_else(|| panic!("{} missing", sha(b)));
        assert_eq!(&got.read_all().unwrap()[..], &b[..], "{} content", sha(b));
    }
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
}
