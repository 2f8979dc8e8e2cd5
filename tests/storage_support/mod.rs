//! Checks shared by the storage scenarios: what "every acknowledged blob is intact" means.
//! Each scenario uses some of them.
#![allow(dead_code)]

pub mod sync_hook;

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::Store;

/// The seed of a randomized scenario: `BERTH_TEST_SEED` when set (to replay a failure), else
/// taken from the clock so every run tries other cases. Printed, so that the output of a
/// failing test names it.
pub fn test_seed(test: &str) -> u64 {
    let seed = match std::env::var("BERTH_TEST_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("BERTH_TEST_SEED={s} is not a u64")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    eprintln!("{test}: BERTH_TEST_SEED={seed} replays this run");
    seed
}

/// Every blob the store lists reads back through the verifying reader and hashes to its
/// digest; returns their digests. (The reader's checks cover each chunk against its own
/// trailer only: a blob put together from the wrong chunks passes them.)
pub fn assert_listed_blobs_hash_to_their_digests(store: &Store) -> Vec<Digest> {
    let mut all = Vec::new();
    let mut last = None;
    loop {
        let page = store.list_blobs(last.as_ref(), 100).unwrap();
        let Some(l) = page.last() else { break };
        last = Some(l.digest.clone());
        for b in page {
            let got = Digest::of(b.digest.algorithm(), &blob_bytes(store, &b.digest));
            assert_eq!(got, b.digest, "listed blob {} holds other bytes", b.digest);
            all.push(b.digest);
        }
    }
    all
}

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
