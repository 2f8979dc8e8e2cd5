//! Damage that recovery finds after the last checkpoint must never silently drop acknowledged
//! commits: a damaged segment header over records refuses the open, and a cut tail is kept.

use std::sync::Arc;

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::memdisk::MemDisk;
use berth::storage::*;

fn opts() -> StoreOptions {
    StoreOptions {
        chunk_record_bytes: 512,
        max_segment_bytes: 4 * 1024,
        ..Default::default()
    }
}

fn data(i: u32) -> Vec<u8> {
    (0..1500u32).map(|j| (i * 31 + j * 7) as u8).collect()
}

/// Checkpoints once, then commits `n` blobs after it; returns the crash image (every commit
/// was synced, so all of them are acknowledged and durable) and the blobs' digests.
fn crashed_after_commits(n: u32) -> (Arc<MemDisk>, Vec<Digest>) {
    let disk = MemDisk::new();
    let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
    store.checkpoint().unwrap();
    let mut digests = Vec::new();
    for i in 0..n {
        let d = data(i);
        let dg = Digest::of(Algorithm::Sha256, &d);
        store.put_blob("r", &dg, &d).unwrap();
        digests.push(dg);
    }
    let image = disk.power_cut_image(disk.op_count(), 7);
    drop(store);
    (image, digests)
}

#[test]
fn damaged_header_over_records_refuses_to_open_and_names_the_file() {
    let (image, _) = crashed_after_commits(8);
    let segs = image.segments();
    let last = *segs.list().unwrap().last().unwrap();
    assert!(
        last > 1,
        "the workload must roll past the checkpointed segment"
    );
    assert!(segs.len(last).unwrap() > 64);
    image.corrupt_segment_byte(last, 3);
    let err = Store::open_with(image.segments(), image.index(), opts()).unwrap_err();
    match err {
        StorageError::Corrupt(msg) => {
            assert!(msg.contains(&format!("{last:016x}.seg")), "{msg}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Nothing was rewritten: the records are still there for the operator.
    assert!(segs.len(last).unwrap() > 64);
}

#[test]
fn damaged_header_with_nothing_after_it_is_a_torn_creation() {
    let (image, digests) = crashed_after_commits(8);
    let segs = image.segments();
    let last = *segs.list().unwrap().last().unwrap();
    // A creation cut short: a header-sized file whose header never reached the disk.
    segs.set_len(last, 64).unwrap();
    image.corrupt_segment_byte(last, 3);
    let store = Store::open_with(image.segments(), image.index(), opts()).unwrap();
    assert_eq!(segs.len(last).unwrap(), 64);
    // Blobs in earlier segments are intact.
    assert!(store.get(&digests[0]).unwrap().is_some());
}
