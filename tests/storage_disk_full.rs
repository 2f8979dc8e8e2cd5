//! A full disk: writes fail with DiskFull, the store stays consistent (no partial record, no
//! partial blob), and works again once space is freed — in the same process and after reopen.

mod storage_support;

use berth::storage::memdisk::MemDisk;
use berth::storage::*;
use storage_support::{assert_intact, sha};

fn opts() -> StoreOptions {
    StoreOptions {
        chunk_record_bytes: 4096,
        max_segment_bytes: 64 * 1024,
        ..Default::default()
    }
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

#[test]
fn enospc_is_reported_and_recovered_from() {
    let disk = MemDisk::new();
    let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
    let mut stored = Vec::new();
    for i in 0..5u8 {
        let b = data(10_000, i);
        store.put_blob("r", &sha(&b), &b).unwrap();
        stored.push(b);
    }
    disk.set_segment_space(Some(70_000));

    // Monolithic pushes run into the limit.
    let mut refused = None;
    for i in 5..20u8 {
        let b = data(10_000, i);
        match store.put_blob("r", &sha(&b), &b) {
            Ok(_) => stored.push(b),
            Err(StorageError::DiskFull) => {
                refused = Some(b);
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    let refused = refused.expect("the limit was never hit");
    assert!(store.stat(&sha(&refused)).unwrap().is_none());

    // A chunked upload keeps exactly the prefix that was written.
    let id = store.begin_upload("r").unwrap();
    let big = data(50_000, 99);
    let err = store.append(&id, 0, &big).unwrap_err();
    assert!(matches!(err, StorageError::DiskFull));
    let offset = store.status(&id).unwrap().offset;
    assert!(offset < big.len() as u64);
    assert_eq!(offset % 4096, 0);

    // Everything committed is intact and every record in the segments is whole.
    assert_intact(&store, &stored);

    // Space comes back: the same upload resumes and the refused blob goes in.
    disk.set_segment_space(None);
    store.append(&id, offset, &big[offset as usize..]).unwrap();
    store.commit(&id, &sha(&big)).unwrap();
    store.put_blob("r", &sha(&refused), &refused).unwrap();
    stored.push(big);
    stored.push(refused);
    store.close().unwrap();
    // A closed store still holds the disk (its index is open) until it is dropped.
    drop(store);

    let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
    assert_intact(&store, &stored);
}

/// Small appends are written by a helper thread after `append` returned: a write that fails
/// there is reported by a later call, and the session is cut back to the records before it.
#[test]
fn a_failed_write_in_flight_is_reported_later_and_cuts_the_session_back() {
    for owned in [false, true] {
        let disk = MemDisk::new();
        let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
        let id = store.begin_upload("r").unwrap();
        let big = data(200_000, 7);
        disk.set_segment_space(Some(60_000));
        let mut acked = 0usize;
        let failed = big.chunks(1000).find_map(|piece| {
            let r = if owned {
                store.append_owned(&id, acked as u64, [bytes::Bytes::copy_from_slice(piece)])
            } else {
                store.append(&id, acked as u64, piece)
            };
            match r {
                Ok(len) => {
                    acked = len as usize;
                    None
                }
                Err(e) => Some(e),
            }
        });
        assert!(
            matches!(failed, Some(StorageError::DiskFull)),
            "owned {owned}: {failed:?}"
        );
        let offset = store.status(&id).unwrap().offset;
        assert!(
            offset < acked as u64,
            "owned {owned}: cut back below {acked}"
        );
        assert_eq!(offset % 4096, 0);

        disk.set_segment_space(None);
        store.append(&id, offset, &big[offset as usize..]).unwrap();
        store.commit(&id, &sha(&big)).unwrap();
        assert_intact(&store, std::slice::from_ref(&big));
        store.close().unwrap();
        drop(store);
        let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
        assert_intact(&store, &[big]);
    }
}

#[test]
fn full_disk_at_segment_roll_is_survivable() {
    let disk = MemDisk::new();
    let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
    // Fill close to one segment, then leave room for less than a segment header.
    let mut pushed = Vec::new();
    for i in 0..15u8 {
        let b = data(4000, i);
        store.put_blob("r", &sha(&b), &b).unwrap();
        pushed.push(b);
    }
    let used: u64 = store.space().segments.iter().map(|s| s.size).sum();
    disk.set_segment_space(Some(used + 10));
    let mut full = false;
    for i in 15..40u8 {
        let b = data(4000, i);
        match store.put_blob("r", &sha(&b), &b) {
            Ok(_) => pushed.push(b),
            Err(StorageError::DiskFull) => {
                full = true;
                break;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(full);
    disk.set_segment_space(None);
    let b = data(4000, 200);
    store.put_blob("r", &sha(&b), &b).unwrap();
    pushed.push(b);
    drop(store);
    let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
    assert_intact(&store, &pushed);
}
