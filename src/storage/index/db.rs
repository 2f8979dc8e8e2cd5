//! The store's handle on its redb index, which can let go of the index without redb's shutdown
//! when a panic interrupted a batch mid-transaction.

use std::fs::{File, OpenOptions};
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use redb::Database;

/// The index database. Derefs to [`Database`]; see [`IndexDb::abandon`] for why it is not a bare
/// `Database`.
pub(crate) struct IndexDb {
    db: ManuallyDrop<Database>,
    /// A second handle on the index file (file-backed stores only), sharing the lock redb takes
    /// on it, so an abandoned database does not keep the file locked against a reopen.
    file: Option<File>,
    abandoned: bool,
}

impl IndexDb {
    /// Opens (or creates) the index file at `path`, as `Database::create` does.
    pub fn create(path: &Path) -> Result<IndexDb, redb::DatabaseError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let dup = file.try_clone()?;
        let db = redb::Builder::new().create_file(file)?;
        Ok(IndexDb {
            db: ManuallyDrop::new(db),
            file: Some(dup),
            abandoned: false,
        })
    }

    /// Wraps a database over any other backend (tests use the in-memory disk).
    pub fn with_backend(db: Database) -> IndexDb {
        IndexDb {
            db: ManuallyDrop::new(db),
            file: None,
            abandoned: false,
        }
    }

    /// Makes dropping this handle skip redb's shutdown, which commits the allocator state and
    /// trips redb's own assertions when a panic left a write transaction half done. The memory
    /// and the file descriptor redb holds are leaked (a rare failure's cost, once per store).
    pub fn abandon(&mut self) {
        self.abandoned = true;
    }
}

impl Deref for IndexDb {
    type Target = Database;

    fn deref(&self) -> &Database {
        &self.db
    }
}

impl Drop for IndexDb {
    fn drop(&mut self) {
        if !self.abandoned {
            // SAFETY: the database is dropped exactly once, here, and never used after.
            unsafe { ManuallyDrop::drop(&mut self.db) };
            return;
        }
        // Skipping redb's shutdown is safe: the log is the source of truth and a reopen replays
        // it over the last durable index state.
        if let Some(f) = &self.file {
            // SAFETY: flock on a descriptor we own; it releases the lock redb took on the same
            // open file, which the leaked database would otherwise hold until the process ends.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::oci::digest::{Algorithm, Digest};
    use crate::storage::index::ops::Op;
    use crate::storage::{Store, StoreOptions};

    /// A file-backed store whose group commit was poisoned by a panic is dropped without redb's
    /// shutdown and can be reopened in the same process (redb's file lock is released) with
    /// every acknowledged blob.
    #[test]
    fn poisoned_file_store_reopens_in_process() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let data = b"acknowledged before the panic".to_vec();
        let digest = Digest::of(Algorithm::Sha256, &data);
        store.put_blob("r", &digest, &data).unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            store
                .inner
                .group
                .submit(Op::Checkpoint, |ops| ops, |_| panic!("leader failed"))
        }));
        assert!(panicked.is_err());
        assert!(store.is_poisoned());
        drop(store);

        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        assert!(!store.is_poisoned());
        let got = store.get(&digest).unwrap().unwrap().read_all().unwrap();
        assert_eq!(got.to_vec(), data);
        let more = b"written after the reopen".to_vec();
        let d_more = Digest::of(Algorithm::Sha256, &more);
        store.put_blob("r", &d_more, &more).unwrap();
        store.checkpoint().unwrap();
    }
}
