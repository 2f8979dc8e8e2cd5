//! Chunks written by a session that begins while a group commit is being led must still be
//! recorded in the index, so a reopen resumes the session at its durable end (section 5 of
//! storage-format.md) even once a checkpoint has moved past those chunks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::memdisk::MemDisk;
use berth::storage::*;

const CAP: usize = 512;

fn opts() -> StoreOptions {
    StoreOptions {
        chunk_record_bytes: CAP,
        max_segment_bytes: 64 << 20,
        max_open_uploads: 100_000,
        ..Default::default()
    }
}

#[test]
fn sessions_begun_during_a_batch_keep_their_chunks_across_a_reopen() {
    let disk = MemDisk::new();
    let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Keep group commits running back to back so sessions begin while a leader is mid-batch.
    let leaders: Vec<_> = (0..2u8)
        .map(|t| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    let b = [&[t][..], &i.to_le_bytes()[..]].concat();
                    store
                        .put_blob("r", &Digest::of(Algorithm::Sha256, &b), &b)
                        .unwrap();
                    i += 1;
                }
            })
        })
        .collect();
    let mut ids = Vec::new();
    for _ in 0..6000 {
        let id = store.begin_upload("u").unwrap();
        store.append(&id, 0, &[7u8; CAP]).unwrap();
        ids.push(id);
    }
    stop.store(true, Ordering::SeqCst);
    for l in leaders {
        l.join().unwrap();
    }
    store.checkpoint().unwrap();
    drop(store);

    let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
    let short = ids
        .iter()
        .filter(|id| store.status(id).unwrap().offset != CAP as u64)
        .count();
    assert_eq!(short, 0, "sessions that lost their durable chunk");
}
