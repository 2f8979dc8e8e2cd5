//! Abandoned upload sessions are reclaimed by the store's own background thread, with no server
//! around it; a session that keeps receiving bytes is not.

use std::time::{Duration, Instant};

use berth::storage::{StorageError, Store, StoreOptions};

/// Polls `done` until it holds or `within` has passed; true if it held.
fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}

#[test]
fn the_background_thread_reclaims_idle_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        upload_max_idle: Duration::from_secs(1),
        checkpoint_interval: Duration::from_millis(10),
        ..StoreOptions::default()
    };
    let store = Store::open(dir.path(), opts).unwrap();
    let idle = store.begin_upload("idle").unwrap();
    store.append(&idle, 0, b"abandoned").unwrap();
    let busy = store.begin_upload("busy").unwrap();
    let mut offset = 0;
    let reclaimed = eventually(Duration::from_secs(20), || {
        // The busy session receives bytes well within its idle limit all along.
        offset = store.append(&busy, offset, b"more").unwrap();
        matches!(store.status(&idle), Err(StorageError::UploadUnknown))
    });
    assert!(reclaimed, "the idle session was never reclaimed");
    assert_eq!(store.status(&busy).unwrap().offset, offset);
    store.close().unwrap();
}
