//! The in-memory disk with a hook run before every `sync_data`: scenarios hold a sync (to put
//! a group commit exactly where a race needs it), delay it (a slow disk) or fail it (EIO).

use std::io;
use std::sync::Arc;

use berth::storage::io::{LockGuard, SegmentIo, SegmentPin};
use bytes::Bytes;

/// Called with the segment id before each sync; an error is the sync's result.
pub type BeforeSync = Box<dyn Fn(u64) -> io::Result<()> + Send + Sync>;

/// Segment I/O that passes everything to `inner`, running `before_sync` first on syncs.
pub struct SyncHook {
    inner: Arc<dyn SegmentIo>,
    before_sync: BeforeSync,
}

impl SyncHook {
    pub fn new(inner: Arc<dyn SegmentIo>, before_sync: BeforeSync) -> SyncHook {
        SyncHook { inner, before_sync }
    }
}

impl SegmentIo for SyncHook {
    fn lock(&self) -> io::Result<LockGuard> {
        self.inner.lock()
    }
    fn sync_dir(&self) -> io::Result<()> {
        self.inner.sync_dir()
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
    fn len(&self, id: u64) -> io::Result<u64> {
        self.inner.len(id)
    }
    fn write_at(&self, id: u64, offset: u64, bufs: &[&[u8]]) -> io::Result<()> {
        self.inner.write_at(id, offset, bufs)
    }
    fn read(&self, id: u64, offset: u64, len: usize) -> io::Result<Bytes> {
        self.inner.read(id, offset, len)
    }
    fn pin(&self, id: u64) -> io::Result<Arc<dyn SegmentPin>> {
        self.inner.pin(id)
    }
    fn sync_data(&self, id: u64) -> io::Result<()> {
        (self.before_sync)(id)?;
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
}
