//! Many upload sessions each holding part of a chunk record keep the memory their tails hold
//! together under `max_upload_buffer_bytes`: the least recently touched tails are written to
//! the log early. Every session still completes with the right digest, and one reopened
//! before its commit resumes where its durable bytes end.

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::memdisk::MemDisk;
use berth::storage::*;
use bytes::Bytes;

const CAP: usize = 64 << 10;
const BUDGET: usize = 4 * CAP;
const SESSIONS: usize = 120;

fn opts() -> StoreOptions {
    StoreOptions {
        chunk_record_bytes: CAP,
        max_upload_buffer_bytes: BUDGET,
        max_segment_bytes: 64 << 20,
        ..Default::default()
    }
}

/// The body of session `i`: a record and a half plus `i` bytes, all shaped by `i`.
fn body(i: usize) -> Vec<u8> {
    (0..CAP + CAP / 2 + i)
        .map(|k| (k * 31 + i * 7) as u8)
        .collect()
}

#[test]
fn idle_tails_are_written_out_and_every_session_completes() {
    let disk = MemDisk::new();
    let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
    let bodies: Vec<Vec<u8>> = (0..SESSIONS).map(body).collect();
    let ids: Vec<UploadId> = (0..SESSIONS)
        .map(|_| store.begin_upload("r").unwrap())
        .collect();
    let mut peak = 0;
    // First part: less than a record each, borrowed or owned, so all of it sits in the tails.
    let first = CAP / 2 + 100;
    for (i, id) in ids.iter().enumerate() {
        let part = &bodies[i][..first];
        if i % 2 == 0 {
            store.append(id, 0, part).unwrap();
        } else {
            let pieces = part.chunks(10_000).map(Bytes::copy_from_slice);
            store.append_owned(id, 0, pieces).unwrap();
        }
        peak = peak.max(store.upload_tail_bytes());
        assert!(
            store.upload_tail_bytes() <= BUDGET,
            "{} tail bytes held past a budget of {BUDGET}",
            store.upload_tail_bytes()
        );
    }
    assert!(peak > BUDGET / 2, "the budget was never approached");
    // The rest, in one append each (completing a record, leaving a new tail).
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(store.status(id).unwrap().offset, first as u64);
        store.append(id, first as u64, &bodies[i][first..]).unwrap();
        assert!(store.upload_tail_bytes() <= BUDGET);
    }
    for (i, id) in ids.iter().enumerate() {
        let want = Digest::of(Algorithm::Sha256, &bodies[i]);
        let info = store.commit(id, &want).unwrap();
        assert_eq!(info.size, bodies[i].len() as u64);
        assert_eq!(
            store
                .get(&want)
                .unwrap()
                .unwrap()
                .read_all()
                .unwrap()
                .to_vec(),
            bodies[i]
        );
    }
    assert_eq!(store.upload_tail_bytes(), 0);
}

#[test]
fn a_tail_written_early_survives_a_reopen() {
    let disk = MemDisk::new();
    let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
    let old = store.begin_upload("r").unwrap();
    let b = body(1);
    let first = CAP / 2;
    store.append(&old, 0, &b[..first]).unwrap();
    // Newer sessions fill the budget: the oldest tail goes to the log.
    for i in 0..2 * BUDGET / CAP + 2 {
        let id = store.begin_upload("r").unwrap();
        store.append(&id, 0, &body(i + 2)[..CAP - 1]).unwrap();
    }
    store.checkpoint().unwrap();
    drop(store);

    let store = Store::open_with(disk.segments(), disk.index(), opts()).unwrap();
    assert_eq!(store.status(&old).unwrap().offset, first as u64);
    store.append(&old, first as u64, &b[first..]).unwrap();
    store
        .commit(&old, &Digest::of(Algorithm::Sha256, &b))
        .unwrap();
}
