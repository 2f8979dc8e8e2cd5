//! A group-commit leader that panics inside the index (here: a backend whose sync panics) must
//! not hang the store: the panic reaches its own caller, later writes fail with `Poisoned`, and
//! a reopen recovers every commit acknowledged before it. Dropping the poisoned store skips
//! redb's shutdown (which would commit over the interrupted transaction), so it can be reopened
//! in the same process.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::memdisk::{MemDisk, MemIndexFile};
use berth::storage::*;

#[derive(Debug)]
struct PanickingIndex {
    inner: MemIndexFile,
    armed: Arc<AtomicBool>,
}

impl redb::StorageBackend for PanickingIndex {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.inner.read(offset, len)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self, eventual: bool) -> io::Result<()> {
        if self.armed.swap(false, Ordering::SeqCst) {
            panic!("index backend failed in sync");
        }
        self.inner.sync_data(eventual)
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.inner.write(offset, data)
    }
}

#[test]
fn panicking_leader_poisons_the_store_instead_of_hanging_it() {
    let disk = MemDisk::new();
    let armed = Arc::new(AtomicBool::new(false));
    let index = PanickingIndex {
        inner: disk.index(),
        armed: armed.clone(),
    };
    let store = Store::open_with(disk.segments(), index, StoreOptions::default()).unwrap();
    let put = |i: usize| {
        let data = format!("acknowledged before the panic #{i}").into_bytes();
        let d = Digest::of(Algorithm::Sha256, &data);
        store.put_blob("r", &d, &data).unwrap();
        (d, data)
    };
    // Some blobs in a durable index state, one only in the log and a lazy index commit: the
    // panic then interrupts the immediate commit in a state where redb's shutdown would trip.
    let mut acked: Vec<(Digest, Vec<u8>)> = (0..8).map(put).collect();
    store.checkpoint().unwrap();
    acked.push(put(8));

    armed.store(true, Ordering::SeqCst);
    let leader = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.checkpoint()));
    assert!(
        leader.is_err(),
        "the checkpoint's own caller sees the panic"
    );

    // Before the fix this blocked forever on the group's condvar; the watchdog turns a hang
    // into a failure.
    let (tx, rx) = mpsc::channel();
    let s2 = store.clone();
    std::thread::spawn(move || {
        let data = b"after the panic".to_vec();
        let out = s2.put_blob("r", &Digest::of(Algorithm::Sha256, &data), &data);
        tx.send(out.map(|_| ())).unwrap();
    });
    let out = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("a write after the leader panicked hung");
    assert!(matches!(out, Err(StorageError::Poisoned)), "{out:?}");
    assert!(store.is_poisoned());

    // The background checkpointer stops instead of failing every tick; a hang here is the
    // defect, the watchdog only turns it into a failure.
    let watchdog = Instant::now() + Duration::from_secs(60);
    while store.checkpointer_running() {
        assert!(
            Instant::now() < watchdog,
            "the checkpointer kept running on a poisoned store"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    // Dropping runs no redb shutdown over the interrupted transaction (which trips redb's
    // assertions); the same disk then reopens in this process, replaying the log.
    drop(store);
    let store = Store::open_with(disk.segments(), disk.index(), StoreOptions::default()).unwrap();
    assert!(!store.is_poisoned());
    assert_all(&store, &acked);
    let data = b"written after the reopen".to_vec();
    store
        .put_blob("r", &Digest::of(Algorithm::Sha256, &data), &data)
        .unwrap();
    store.checkpoint().unwrap();
    drop(store);

    // Nor does a power cut after all of that.
    let img = disk.power_cut_image(disk.op_count(), 1);
    let store = Store::open_with(img.segments(), img.index(), StoreOptions::default()).unwrap();
    assert_all(&store, &acked);
}

fn assert_all(store: &Store, blobs: &[(Digest, Vec<u8>)]) {
    for (d, data) in blobs {
        let got = store.get(d).unwrap().expect("acknowledged blob missing");
        assert_eq!(&got.read_all().unwrap().to_vec(), data);
    }
}
