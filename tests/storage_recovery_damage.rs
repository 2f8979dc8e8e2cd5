//! Damage that recovery finds after the last checkpoint must never silently drop acknowledged
//! commits: a damaged segment header over records refuses the open, and a cut tail is kept
//! aside, and stays cut off once new records are written where it was.

mod storage_support;

use std::sync::Arc;

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::memdisk::MemDisk;
use berth::storage::*;
use storage_support::{assert_listed_blobs_hash_to_their_digests, sha};

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
    // It held nothing ever acknowledged: it is removed, and appends go on in the segment before.
    assert!(!segs.list().unwrap().contains(&last));
    // Blobs in earlier segments are intact.
    assert!(store.get(&digests[0]).unwrap().is_some());
}

#[test]
fn cut_tail_of_the_last_segment_is_kept_in_a_side_file() {
    let (image, digests) = crashed_after_commits(8);
    let segs = image.segments();
    let last = *segs.list().unwrap().last().unwrap();
    let len = segs.len(last).unwrap();
    let before = segs.read(last, 0, len as usize).unwrap().to_vec();
    let records: Vec<u64> = record::Scanner::new(&before[64..], 64)
        .map(|(at, _)| at)
        .collect();
    assert!(
        records.len() >= 2,
        "the last segment needs records after the damaged one"
    );
    // A byte of the first record's payload goes bad after it was synced.
    image.corrupt_segment_byte(last, records[0] + 48 + 5);
    let damaged = segs.read(last, 0, len as usize).unwrap().to_vec();
    let store = Store::open_with(image.segments(), image.index(), opts()).unwrap();
    assert_eq!(segs.len(last).unwrap(), records[0]);
    let kept = image.aside_files();
    assert_eq!(
        kept.len(),
        1,
        "{:?}",
        kept.iter().map(|k| &k.0).collect::<Vec<_>>()
    );
    let (name, bytes) = &kept[0];
    assert!(
        name.starts_with(&format!("{last:016x}.seg.tail-")),
        "{name}"
    );
    assert_eq!(bytes[..], damaged[records[0] as usize..]);
    // Earlier segments still serve their blobs.
    assert!(store.get(&digests[0]).unwrap().is_some());
}

/// Bytes recovery cut off must stay cut off once new records land where they were. The first
/// chunk of the last blob is damaged, so recovery cuts the tail there; then a session's next
/// record, the same size, is written at that very offset. Had the old bytes stayed in place, the
/// next open would scan on past the new record into them and replay the old commit: a blob
/// served with the session's bytes in place of its own first chunk (its trailer checks, it is
/// the new record's).
#[test]
fn records_after_a_cut_tail_never_come_back() {
    let opts = StoreOptions {
        chunk_record_bytes: 512,
        max_segment_bytes: 1 << 20,
        ..Default::default()
    };
    let disk = MemDisk::new();
    let store = Store::open_with(disk.segments(), disk.index(), opts.clone()).unwrap();
    let session = store.begin_upload("r").unwrap();
    store.checkpoint().unwrap();
    // Two whole chunk records and the commit naming them, after the checkpoint.
    let blob: Vec<u8> = (0..1024u32).map(|j| (j * 13 + 1) as u8).collect();
    let digest = sha(&blob);
    store.put_blob("r", &digest, &blob).unwrap();
    let image = disk.power_cut_image(disk.op_count(), 7);
    drop(store);

    let segs = image.segments();
    let len = segs.len(1).unwrap();
    let bytes = segs.read(1, 0, len as usize).unwrap();
    let records: Vec<u64> = record::Scanner::new(&bytes[64..], 64)
        .map(|(at, _)| at)
        .collect();
    let first_chunk = records[records.len() - 3];
    image.corrupt_segment_byte(1, first_chunk + 48 + 5);

    let store = Store::open_with(image.segments(), image.index(), opts.clone()).unwrap();
    assert!(
        store.get(&digest).unwrap().is_none(),
        "a commit after the damage"
    );
    let other = vec![0x5a; 512];
    store.append(&session, 0, &other).unwrap();
    store.close().unwrap();
    drop(store);

    let store = Store::open_with(image.segments(), image.index(), opts).unwrap();
    assert_listed_blobs_hash_to_their_digests(&store);
    assert!(
        store.get(&digest).unwrap().is_none(),
        "a commit recovery had cut off came back"
    );
    assert_eq!(store.status(&session).unwrap().offset, 512);
    assert!(store.verify().unwrap().is_clean());
}
