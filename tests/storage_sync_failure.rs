//! A failed fdatasync: the kernel may already have dropped the dirty pages, so a later sync
//! that succeeds proves nothing. The store must refuse further writes until a reopen rescans
//! the log (storage-format.md section 4.6), whichever sync failed: a batch's or a roll's.

mod storage_support;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::memdisk::MemDisk;
use berth::storage::*;
use storage_support::sync_hook::SyncHook;

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

#[test]
fn a_failed_sync_while_rolling_poisons_the_store() {
    let disk = MemDisk::new();
    // The next sync fails once when armed.
    let fail_next = Arc::new(AtomicBool::new(false));
    let armed = fail_next.clone();
    let io = Arc::new(SyncHook::new(
        disk.segments(),
        Box::new(move |_| match armed.swap(false, Ordering::SeqCst) {
            true => Err(io::Error::from_raw_os_error(libc::EIO)),
            false => Ok(()),
        }),
    ));
    let opts = StoreOptions {
        chunk_record_bytes: 4096,
        max_segment_bytes: 16 * 1024,
        ..Default::default()
    };
    let store = Store::open_with(io.clone(), disk.index(), opts).unwrap();
    let first = data(10_000, 1);
    let d1 = Digest::of(Algorithm::Sha256, &first);
    store.put_blob("r", &d1, &first).unwrap();

    // The next blob does not fit in segment 1: rolling syncs it first, and that sync fails.
    fail_next.store(true, Ordering::SeqCst);
    let second = data(10_000, 2);
    let d2 = Digest::of(Algorithm::Sha256, &second);
    assert!(store.put_blob("r", &d2, &second).is_err());
    assert!(!fail_next.load(Ordering::SeqCst), "the roll never synced");

    // A retry must not roll again behind the failed sync and acknowledge a commit.
    let third = data(10_000, 3);
    let d3 = Digest::of(Algorithm::Sha256, &third);
    assert!(matches!(
        store.put_blob("r", &d3, &third),
        Err(StorageError::Poisoned)
    ));
    assert!(store.stat(&d3).unwrap().is_none());
}
