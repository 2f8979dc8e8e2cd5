//! One index, one writer: dropping a store is synchronous (its background checkpointer is
//! stopped and joined, its index closed, before `drop` returns), so a store reopened right after
//! on the same disk is the only one touching it; and a second open while the first store is
//! alive fails with `Locked`, on the in-memory disk as on a directory.

use std::time::Duration;

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::memdisk::MemDisk;
use berth::storage::*;

fn opts() -> StoreOptions {
    StoreOptions {
        chunk_record_bytes: 512,
        max_segment_bytes: 64 * 1024,
        // A checkpoint every millisecond: one is nearly always running when the store is dropped.
        checkpoint_interval: Duration::from_millis(1),
        ..Default::default()
    }
}

fn blob(i: u32) -> Vec<u8> {
    (0..300 + i % 700).map(|j| (i * 31 + j * 7) as u8).collect()
}

/// The checkpointer ticks every millisecond and the store is dropped while a session keeps it
/// busy. The checkpointer once held its own strong reference during each tick, so the user's
/// drop could leave it the last one: its checkpoint and redb's shutdown then ran while the
/// reopened store used the same index, and redb panicked on pages changed behind its back
/// (or the reopen found the index corrupt). That failed within the first few dozen rounds.
#[test]
fn a_dropped_store_is_gone_before_the_reopen() {
    // No power cuts here: a disk that keeps no operation log stays small and fast.
    let disk = std::sync::Arc::new(MemDisk::default());
    let mut digests = Vec::new();
    let mut previous = None;
    for i in 0..200 {
        let store = Store::open_with(disk.segments(), disk.index(), opts())
            .unwrap_or_else(|e| panic!("open {i}: {e}"));
        // The last round's session is done with (this keeps the index, and each open, small).
        if let Some(id) = previous.take() {
            store.abort(&id).unwrap();
        }
        let data = blob(i);
        let d = Digest::of(Algorithm::Sha256, &data);
        store.put_blob("r", &d, &data).unwrap();
        // Keep writing session chunks nobody committed up to the drop, so the checkpointer
        // nearly always has a checkpoint under way when it comes.
        let id = store.begin_upload("r").unwrap();
        let mut off = 0;
        for _ in 0..20 {
            off = store.append(&id, off, &[i as u8; 512]).unwrap();
        }
        previous = Some(id);
        digests.push((d, data));
        drop(store);
        // The drop released the lock itself: the store was gone when it returned.
        let lock = disk.segments().lock();
        assert!(lock.is_ok(), "lock still held after drop {i}");
        drop(lock);
        if i % 20 == 19 {
            let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
            for (d, data) in &digests {
                let got = store
                    .get(d)
                    .unwrap()
                    .unwrap_or_else(|| panic!("{d} lost after reopen {i}"));
                assert_eq!(&got.read_all().unwrap()[..], &data[..], "{d}");
            }
            assert!(store.verify().unwrap().is_clean());
        }
    }
}

#[test]
fn a_second_open_of_a_live_mem_disk_is_locked() {
    let disk = MemDisk::new();
    let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
    assert!(matches!(
        Store::open_with(disk.segments(), disk.index(), opts()),
        Err(StorageError::Locked)
    ));
    // A clone keeps the store (and its lock) alive; the last handle's drop releases it.
    let clone = store.clone();
    drop(store);
    assert!(matches!(
        Store::open_with(disk.segments(), disk.index(), opts()),
        Err(StorageError::Locked)
    ));
    drop(clone);
    Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
}

#[test]
fn a_second_open_of_a_live_directory_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), opts()).unwrap();
    assert!(matches!(
        Store::open(dir.path(), opts()),
        Err(StorageError::Locked)
    ));
    drop(store);
    Store::open(dir.path(), opts()).unwrap();
}

/// A reader holds the store: the store (and its checkpointer) stays alive until the reader is
/// dropped too, whichever goes last.
#[test]
fn a_blob_reader_outlives_the_store_handle() {
    let disk = MemDisk::new();
    let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
    let data = blob(1);
    let d = Digest::of(Algorithm::Sha256, &data);
    store.put_blob("r", &d, &data).unwrap();
    let got = store.get(&d).unwrap().unwrap();
    drop(store);
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(&got.read_all().unwrap()[..], &data[..]);
    assert!(matches!(
        Store::open_with(disk.segments(), disk.index(), opts()),
        Err(StorageError::Locked)
    ));
    drop(got);
    Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
}
