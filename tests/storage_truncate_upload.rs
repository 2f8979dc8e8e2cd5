//! Cutting an upload session back (a chunk that did not match its Content-Range): the session
//! continues exactly as if the cut bytes had never arrived, the cut records are dead, and a
//! reopen (replaying the log, or rebuilding the index from it) agrees.

mod storage_support;

use berth::storage::memdisk::MemDisk;
use berth::storage::*;
use storage_support::{assert_intact, sha};

fn opts() -> StoreOptions {
    StoreOptions {
        chunk_record_bytes: 4096,
        max_segment_bytes: 1 << 20,
        ..Default::default()
    }
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn dead(store: &Store) -> u64 {
    store.space().dead_bytes
}

#[test]
fn cuts_inside_the_buffer_and_inside_written_records() {
    for (kept, junk) in [
        (10_000, 1_000),
        (10_000, 9_000),
        (8_192, 5_000),
        (100, 20_000),
    ] {
        let disk = MemDisk::new();
        let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
        let blob = data(30_000, 7);
        let id = store.begin_upload("r").unwrap();
        store.append(&id, 0, &blob[..kept]).unwrap();
        store.append(&id, kept as u64, &data(junk, 99)).unwrap();
        assert_eq!(
            store.truncate_upload(&id, kept as u64).unwrap(),
            kept as u64
        );
        assert_eq!(store.status(&id).unwrap().offset, kept as u64);
        // Appending at the old end is refused: the session really is shorter.
        assert!(matches!(
            store.append(&id, (kept + junk) as u64, b"x"),
            Err(StorageError::UploadOffset { expected }) if expected == kept as u64
        ));
        let dead_before = dead(&store);
        store.append(&id, kept as u64, &blob[kept..]).unwrap();
        store.commit(&id, &sha(&blob)).unwrap();
        assert_intact(&store, std::slice::from_ref(&blob));
        // Every cut record is dead (written records only: cuts inside the buffer write none).
        let written_junk = ((kept + junk) / 4096 * 4096).saturating_sub(kept / 4096 * 4096);
        assert_eq!(dead_before, written_junk as u64, "kept {kept} junk {junk}");
        store.close().unwrap();
        drop(store);

        let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
        assert_intact(&store, std::slice::from_ref(&blob));
        assert_eq!(dead(&store), written_junk as u64);
        drop(store);
        disk.remove_index();
        let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
        assert_intact(&store, std::slice::from_ref(&blob));
        assert_eq!(dead(&store), written_junk as u64);
    }
}

#[test]
fn an_open_session_reopens_at_the_cut() {
    let disk = MemDisk::new();
    let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
    let blob = data(20_000, 3);
    let id = store.begin_upload("r").unwrap();
    store.append(&id, 0, &blob[..12_288]).unwrap();
    store.append(&id, 12_288, &data(8_192, 50)).unwrap();
    store.truncate_upload(&id, 12_288).unwrap();
    store.checkpoint().unwrap();
    store.close().unwrap();
    drop(store);

    let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
    assert_eq!(store.status(&id).unwrap().offset, 12_288);
    store.append(&id, 12_288, &blob[12_288..]).unwrap();
    store.commit(&id, &sha(&blob)).unwrap();
    assert_intact(&store, std::slice::from_ref(&blob));
}

#[test]
fn cutting_past_the_end_is_refused() {
    let disk = MemDisk::new();
    let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
    let id = store.begin_upload("r").unwrap();
    store.append(&id, 0, &data(100, 1)).unwrap();
    assert!(matches!(
        store.truncate_upload(&id, 101),
        Err(StorageError::UploadOffset { expected: 100 })
    ));
    assert_eq!(store.truncate_upload(&id, 100).unwrap(), 100);
}
