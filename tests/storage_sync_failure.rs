//! A failed fdatasync: the kernel may already have dropped the dirty pages, so a later sync
//! that succeeds proves nothing. The store must refuse further writes until a reopen rescans
//! the log (storage-format.md section 4.6), whichever sync failed: a batch's or a roll's.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::io::{LockGuard, SegmentIo, SegmentPin};
use berth::storage::memdisk::MemDisk;
use berth::storage::*;
use bytes::Bytes;

/// Segment I/O over the in-memory disk whose next `sync_data` fails once when armed.
struct FailingSync {
    inner: Arc<dyn SegmentIo>,
    fail_next: AtomicBool,
}

impl SegmentIo for FailingSync {
    fn lock(&self) -> io::Result<LockGuard> {
        self.inner.lock()
    }
    fn list(&self) -> io::Result<Vec<u64>> {
        self.inner.list()
    }
    fn create(&self, id: u64) -> io::Result<()> {
        self.inner.create(id)
    }
    fn remove(&self, id: u64) -> io::Result<()> {
        self.inner.remove(id)
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_dir()
    }
    fn len(&self, id: u64) -> io::Result<u64> {
        self.inner.len(id)
    }
    fn write_at(&self, id: u64, offset: u64, bufs: &[&[u8]]) -> io::Result<()> {
        self.inner.write_at(id, offset, bufs)
    }
    fn read(&self, id: u64, offset: u64, len: usize) -> io::Result<Bytes> {
        self.inner.read(id, offset, len)
    }
    fn sync_data(&self, id: u64) -> io::Result<()> {
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.sync_data(id)
    }
    fn set_len(&self, id: u64, len: u64) -> io::Result<()> {
        self.inner.set_len(id, len)
    }
    fn keep_aside(&self, id: u64, tag: &str, data: &[u8]) -> io::Result<()> {
        self.inner.keep_aside(id, tag, data)
    }
    fn list_aside(&self) -> io::Result<Vec<String>> {
        self.inner.list_aside()
    }
    fn remove_aside(&self, name: &str) -> io::Result<()> {
        self.inner.remove_aside(name)
    }
    fn read_aside(&self, name: &str) -> io::Result<Vec<u8>> {
        self.inner.read_aside(name)
    }
    fn pin(&self, id: u64) -> io::Result<Arc<dyn SegmentPin>> {
        self.inner.pin(id)
    }
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

#[test]
fn a_failed_sync_while_rolling_poisons_the_store() {
    let disk = MemDisk::new();
    let io = Arc::new(FailingSync {
        inner: disk.segments(),
        fail_next: AtomicBool::new(false),
    });
    let opts = StoreOptions {
        chunk_record_bytes: 4096,
        max_segment_bytes: 16 * 1024,
        ..Default::default()
    };
    let store = Store::open_with(io.clone(), disk.index(), opts).unwrap();
    let first = data(10_000, 1);
    let d1 = Digest::of(Algorithm::Sha256, &first);
    store.put_blob("r", &d1, &first).unwrap();

    // The next blob does not fit in segment 1: rolling syncs it first, and that sync fails.
    io.fail_next.store(true, Ordering::SeqCst);
    let second = data(10_000, 2);
    let d2 = Digest::of(Algorithm::Sha256, &second);
    assert!(store.put_blob("r", &d2, &second).is_err());
    assert!(
        !io.fail_next.load(Ordering::SeqCst),
        "the roll never synced"
    );

    // A retry must not roll again behind the failed sync and acknowledge a commit.
    let third = data(10_000, 3);
    let d3 = Digest::of(Algorithm::Sha256, &third);
    assert!(matches!(
        store.put_blob("r", &d3, &third),
        Err(StorageError::Poisoned)
    ));
    assert!(store.stat(&d3).unwrap().is_none());
}
