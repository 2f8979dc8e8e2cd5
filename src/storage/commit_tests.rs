//! Group commit through the store, over the in-memory disk: who shares a sync, and what a power
//! cut between the pipelined steps of two batches leaves.

use std::sync::mpsc;
use std::time::Duration;

use super::error::StorageError;
use super::index::ops::{BlobCommit, Op};
use super::segment::memdisk::MemDisk;
use super::store::Store;
use super::types::StoreOptions;
use crate::oci::digest::{Algorithm, Digest};

/// A watchdog for the channel waits below: a hang is the defect it turns into a failure.
const HANG: Duration = Duration::from_secs(60);

/// No background checkpoint runs during a test: it would be a batch of its own.
fn options() -> StoreOptions {
    StoreOptions {
        checkpoint_interval: Duration::from_secs(3600),
        ..StoreOptions::default()
    }
}

fn blob(i: usize) -> (Digest, Vec<u8>) {
    let data = format!("small push #{i}").repeat(100).into_bytes();
    (Digest::of(Algorithm::Sha256, &data), data)
}

/// Syncs of segment files the disk logged from `from` on.
fn segment_syncs(disk: &MemDisk, from: usize) -> usize {
    disk.describe_ops(from..disk.op_count())
        .iter()
        .filter(|op| op.starts_with("sync seg/"))
        .count()
}

/// The blobs a store reopened on the image a power cut after `point` leaves all read back.
fn assert_survive(disk: &MemDisk, point: usize, blobs: &[(Digest, Vec<u8>)]) {
    for seed in 0..8 {
        let image = disk.power_cut_image(point, seed);
        let store = Store::open_with(image.segments(), image.index(), options()).unwrap();
        for (d, data) in blobs {
            let got = store
                .get(d)
                .unwrap()
                .unwrap_or_else(|| panic!("{d} lost (seed {seed})"));
            assert_eq!(&got.read_all().unwrap()[..], &data[..], "{d} (seed {seed})");
        }
    }
}

/// Pushes that arrive while a batch is being logged are all in the next batch: eight pushes
/// cost one log sync, and every one of them is durable when its call returns.
#[test]
fn pushes_queued_during_a_sync_share_one_log_sync_and_are_all_durable() {
    let disk = MemDisk::new();
    let store = Store::open_with(disk.segments(), disk.index(), options()).unwrap();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let start = disk.op_count();
    // A batch held in its log stage, as a slow sync would hold it.
    let held = {
        let store = store.clone();
        std::thread::spawn(move || {
            store.inner.group.submit(
                Op::Checkpoint,
                |ops| {
                    entered_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    store.log_batch(ops)
                },
                |logged| store.apply_logged(logged),
            )
        })
    };
    entered_rx.recv_timeout(HANG).unwrap();
    let blobs: Vec<(Digest, Vec<u8>)> = (0..8).map(blob).collect();
    let pushers: Vec<_> = blobs
        .iter()
        .cloned()
        .map(|(d, data)| {
            let store = store.clone();
            std::thread::spawn(move || store.put_blob("small/pushes", &d, &data))
        })
        .collect();
    while store.inner.group.queued() < blobs.len() {
        std::thread::yield_now();
    }
    release_tx.send(()).unwrap();
    held.join().unwrap().unwrap();
    for p in pushers {
        p.join().unwrap().unwrap();
    }
    assert_eq!(
        segment_syncs(&disk, start),
        2,
        "the held batch and the eight pushes: {:?}",
        disk.describe_ops(start..disk.op_count())
    );
    assert_survive(&disk, disk.op_count(), &blobs);
}

/// The pipelined order of two batches: the second is logged and synced before the first
/// reaches the index, and the first is a durable (checkpoint) commit. A power cut before the
/// first's index commit, or after it and before the second's, loses neither: the durable
/// index's checkpoint ends at the first batch's records, so a reopen replays the second.
#[test]
fn a_power_cut_between_the_next_batch_sync_and_the_index_commit_loses_nothing() {
    let disk = MemDisk::new();
    let store = Store::open_with(disk.segments(), disk.index(), options()).unwrap();
    let commit = |i: usize| {
        let (d, data) = blob(i);
        let extents = store.write_blob_records(&data).unwrap();
        let op = Op::Commit(BlobCommit {
            session: None,
            repo: "pipe/line".into(),
            digest: d.clone(),
            size: data.len() as u64,
            extents,
            at_ms: 0,
        });
        (op, (d, data))
    };
    let (op1, first) = commit(1);
    let logged1 = store.log_batch(vec![op1, Op::Checkpoint]);
    let (op2, second) = commit(2);
    let logged2 = store.log_batch(vec![op2]);
    let both_synced = disk.op_count();
    let outs1 = store.apply_logged(logged1);
    let first_indexed = disk.op_count();
    assert!(outs1.iter().all(|o| o.is_ok()));
    assert!(store.apply_logged(logged2).iter().all(|o| o.is_ok()));
    assert!(
        first_indexed > both_synced,
        "the checkpoint commit writes the index"
    );
    let blobs = [first, second];
    assert_survive(&disk, both_synced, &blobs);
    assert_survive(&disk, first_indexed, &blobs);
}

/// A batch logged while the one before it fails its index commit (which poisons the log) is
/// not applied on top of the index that lacks the earlier batch: its callers get `Poisoned`,
/// nothing of it is visible, and a reopen replays both from the log.
#[test]
fn a_batch_logged_behind_a_failed_index_commit_is_not_applied() {
    let disk = MemDisk::new();
    let store = Store::open_with(disk.segments(), disk.index(), options()).unwrap();
    let blobs: Vec<(Digest, Vec<u8>)> = (1..=2).map(blob).collect();
    let logged: Vec<_> = blobs
        .iter()
        .map(|(d, data)| {
            let extents = store.write_blob_records(data).unwrap();
            store.log_batch(vec![Op::Commit(BlobCommit {
                session: None,
                repo: "pipe/line".into(),
                digest: d.clone(),
                size: data.len() as u64,
                extents,
                at_ms: 0,
            })])
        })
        .collect();
    // What a failed index commit of the first batch leaves: the log poisoned, its ops unapplied.
    store.inner.log.poison();
    let mut logged = logged.into_iter();
    drop(logged.next());
    let outs = store.apply_logged(logged.next().unwrap());
    assert!(
        matches!(outs[..], [Err(StorageError::Poisoned)]),
        "{outs:?}"
    );
    assert!(store.get(&blobs[1].0).unwrap().is_none());
    assert_survive(&disk, disk.op_count(), &blobs);
}
