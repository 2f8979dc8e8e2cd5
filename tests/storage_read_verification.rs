//! Chunks are checked as a blob is read, not before: the first extent is handed out before a
//! damaged last one is reached; `Always` catches damage done after a blob was already served,
//! `Once` trusts what it checked until the store is reopened; ranges check only what they touch.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::*;

const RECORD: usize = 1000;

/// Bytes in which every 64-byte window is unique, so a payload can be found in a segment.
fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn opts(policy: ReadVerification) -> StoreOptions {
    StoreOptions {
        chunk_record_bytes: RECORD,
        read_verification: policy,
        ..StoreOptions::default()
    }
}

fn segment(dir: &Path) -> PathBuf {
    dir.join("segments").join("0000000000000001.seg")
}

/// Flips one bit of the blob byte `blob_offset` in the segment file (the store may be open:
/// its maps share the page cache with the file).
fn flip(dir: &Path, blob: &[u8], blob_offset: usize) {
    let seg = segment(dir);
    let bytes = std::fs::read(&seg).unwrap();
    let base = blob_offset - blob_offset % RECORD;
    let probe = &blob[base..base + 64];
    let at = bytes.windows(64).position(|w| w == probe).unwrap() + blob_offset - base;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at as u64).unwrap();
    b[0] ^= 0x10;
    f.write_all_at(&b, at as u64).unwrap();
}

fn push(dir: &Path, blob: &[u8]) -> Digest {
    let d = Digest::of(Algorithm::Sha256, blob);
    let s = Store::open(dir, opts(ReadVerification::Always)).unwrap();
    s.put_blob("r", &d, blob).unwrap();
    s.close().unwrap();
    d
}

#[test]
fn first_extent_is_handed_out_before_a_damaged_last_one_is_reached() {
    let dir = tempfile::tempdir().unwrap();
    let blob = data(5 * RECORD, 1);
    let d = push(dir.path(), &blob);
    flip(dir.path(), &blob, 4 * RECORD + 17);

    let s = Store::open(dir.path(), opts(ReadVerification::Always)).unwrap();
    let data = s.get(&d).unwrap().unwrap();
    assert_eq!(data.extent_count(), 5);
    let mut r = data.reader();
    let first = r.next().unwrap().unwrap();
    assert_eq!(&first[..], &blob[..RECORD]);
    assert_eq!(s.corrupt_reads(), 0, "the last extent is not checked yet");
    for i in 1..4 {
        assert_eq!(
            &r.next().unwrap().unwrap()[..],
            &blob[i * RECORD..(i + 1) * RECORD]
        );
    }
    assert!(matches!(r.next(), Some(Err(StorageError::Corrupt(_)))));
    assert!(r.next().is_none(), "nothing after the damaged extent");
    assert_eq!(s.corrupt_reads(), 1);

    // A range that stays clear of the damaged extent reads fine; one that touches it does not,
    // even if it wants a single byte of it that is intact.
    let part: Vec<u8> = data
        .range(500, 4 * RECORD as u64)
        .flat_map(|b| b.unwrap().to_vec())
        .collect();
    assert_eq!(part, &blob[500..4 * RECORD]);
    let mut tail = data.range(4 * RECORD as u64 + 900, 4 * RECORD as u64 + 901);
    assert!(matches!(tail.next(), Some(Err(StorageError::Corrupt(_)))));
}

#[test]
fn always_catches_damage_after_the_blob_was_served() {
    let dir = tempfile::tempdir().unwrap();
    let blob = data(3 * RECORD, 2);
    let d = push(dir.path(), &blob);
    let s = Store::open(dir.path(), opts(ReadVerification::Always)).unwrap();
    assert_eq!(s.get(&d).unwrap().unwrap().read_all().unwrap(), blob);
    flip(dir.path(), &blob, RECORD + 3);
    assert!(matches!(
        s.get(&d).unwrap().unwrap().read_all(),
        Err(StorageError::Corrupt(_))
    ));
    assert_eq!(s.corrupt_reads(), 1);
    assert_eq!(s.verified_extents(), 0, "Always remembers nothing");
}

#[test]
fn once_trusts_checked_extents_until_the_store_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let blob = data(3 * RECORD, 3);
    let d = push(dir.path(), &blob);
    {
        let s = Store::open(dir.path(), opts(ReadVerification::Once)).unwrap();
        assert_eq!(s.get(&d).unwrap().unwrap().read_all().unwrap(), blob);
        assert_eq!(s.verified_extents(), 3);
        flip(dir.path(), &blob, 2 * RECORD + 5);
        // The documented trade-off: the extent was checked once, so this read trusts it...
        let again = s.get(&d).unwrap().unwrap().read_all().unwrap();
        assert_ne!(again, blob);
        assert_eq!(s.corrupt_reads(), 0);
        // ...and the scrub still finds the damage.
        assert_eq!(s.verify().unwrap().damaged_blobs, vec![d.clone()]);
        s.close().unwrap();
    }
    let s = Store::open(dir.path(), opts(ReadVerification::Once)).unwrap();
    assert!(matches!(
        s.get(&d).unwrap().unwrap().read_all(),
        Err(StorageError::Corrupt(_))
    ));
    assert_eq!(s.corrupt_reads(), 1);
    assert_eq!(
        s.verified_extents(),
        2,
        "the damaged extent is never remembered"
    );
    // A later read checks the damaged extent again.
    assert!(s.get(&d).unwrap().unwrap().read_all().is_err());
    assert_eq!(s.corrupt_reads(), 2);
}

#[test]
fn off_reads_without_checking() {
    let dir = tempfile::tempdir().unwrap();
    let blob = data(2 * RECORD, 4);
    let d = push(dir.path(), &blob);
    flip(dir.path(), &blob, 10);
    let s = Store::open(dir.path(), opts(ReadVerification::Off)).unwrap();
    assert_ne!(s.get(&d).unwrap().unwrap().read_all().unwrap(), blob);
    assert_eq!(s.corrupt_reads(), 0);
    assert!(!s.verify().unwrap().is_clean());
}
