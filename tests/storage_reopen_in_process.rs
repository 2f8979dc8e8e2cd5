//! One index, one writer: a second open while the first store is alive fails with `Locked`, on
//! the in-memory disk as on a directory.

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
