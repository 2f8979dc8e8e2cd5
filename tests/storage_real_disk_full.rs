//! A real full file system: a small tmpfs is mounted, filled until writes fail with `ENOSPC`,
//! and the store (and the HTTP layer over it) must report DiskFull, keep every committed blob
//! intact, and work again once space is freed, in the same process and after a reopen.

mod common;
mod storage_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use berth::storage::*;
use common::{Body, Server};
use http::{Method, StatusCode};
use storage_support::{assert_intact, sha};

/// A tmpfs mounted for the test's lifetime; unmounted (lazily, so an open file cannot keep it)
/// when dropped, also when the test fails.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("cannot run mount(8)");
        assert!(
            out.status.success(),
            "this test needs to mount a tmpfs (run it as root with CAP_SYS_ADMIN): mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn data(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 ^ seed as u8)
        .collect()
}

fn opts() -> StoreOptions {
    StoreOptions {
        max_segment_bytes: 4 << 20,
        ..Default::default()
    }
}

#[test]
fn store_on_a_full_tmpfs_reports_disk_full_and_recovers() {
    let fs = Tmpfs::mount("16m");
    let ballast: PathBuf = fs.path().join("ballast");
    std::fs::write(&ballast, vec![1u8; 4 << 20]).unwrap();
    let dir = fs.path().join("store");
    let store = Store::open(&dir, opts()).unwrap();

    // Monolithic and chunked pushes until the file system is full.
    let mut stored = Vec::new();
    let mut full = false;
    for i in 0..64 {
        let b = data(700_000, i);
        let result = if i % 2 == 0 {
            store.put_blob("r", &sha(&b), &b).map(|_| ())
        } else {
            let id = store.begin_upload("r").unwrap();
            let r = b
                .chunks(300_000)
                .try_for_each(|c| store.append_at_end(&id, c).map(|_| ()))
                .and_then(|()| store.commit(&id, &sha(&b)).map(|_| ()));
            if r.is_err() {
                let _ = store.abort(&id);
            }
            r
        };
        match result {
            Ok(()) => stored.push(b),
            Err(StorageError::DiskFull) => {
                full = true;
                break;
            }
            Err(e) => panic!("expected DiskFull, got {e}"),
        }
    }
    assert!(full, "16 MiB were never filled");
    assert!(stored.len() >= 4, "only {} blobs fit", stored.len());
    assert_intact(&store, &stored);

    // Freeing space by deleting a file lets pushes succeed again. They leave room for the
    // reopen below, whose recovery commits to the index (which needs free pages to do it).
    std::fs::remove_file(&ballast).unwrap();
    let b = data(1_200_000, 1000);
    store.put_blob("r", &sha(&b), &b).unwrap();
    stored.push(b);
    let id = store.begin_upload("r").unwrap();
    let b = data(800_000, 1001);
    store.append(&id, 0, &b).unwrap();
    store.commit(&id, &sha(&b)).unwrap();
    stored.push(b);
    assert_intact(&store, &stored);
    store.close().unwrap();
    drop(store);

    let store = Store::open(&dir, opts()).unwrap();
    assert_intact(&store, &stored);
    // More room by growing the file system itself.
    fs.remount("32m");
    let b = data(8_000_000, 1002);
    store.put_blob("r", &sha(&b), &b).unwrap();
    stored.push(b);
    store.close().unwrap();
    drop(store);
    let store = Store::open(&dir, opts()).unwrap();
    assert_intact(&store, &stored);
    store.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_push_to_a_full_disk_is_507_and_recovers() {
    let fs = Tmpfs::mount("16m");
    let ballast = fs.path().join("ballast");
    std::fs::write(&ballast, vec![1u8; 4 << 20]).unwrap();
    let server = Server::start_in(tempfile::tempdir_in(fs.path()).unwrap(), |_| {}).await;

    let mut pushed = Vec::new();
    let mut refused = None;
    for i in 0..64 {
        let b = data(700_000, i);
        let digest = sha(&b);
        let r = server
            .send(
                Method::POST,
                &format!("/v2/lib/a/blobs/uploads/?digest={digest}"),
                &[],
                Body::full(b.clone()),
            )
            .await;
        if r.status == StatusCode::CREATED {
            pushed.push(b);
            continue;
        }
        assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE, "{}", r.text());
        assert_eq!(r.error_code(), "UNKNOWN");
        assert!(r.text().contains("insufficient storage"), "{}", r.text());
        refused = Some(b);
        break;
    }
    let refused = refused.expect("16 MiB were never filled");
    let missing = server
        .head(&format!("/v2/lib/a/blobs/{}", sha(&refused)))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    std::fs::remove_file(&ballast).unwrap();
    let digest = server.push_blob("lib/a", &refused).await;
    pushed.push(refused);
    assert_eq!(digest, sha(pushed.last().unwrap()));
    let dir = server.stop().await;

    let server = Server::start_in(dir, |_| {}).await;
    for b in &pushed {
        let r = server.get(&format!("/v2/lib/a/blobs/{}", sha(b))).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(&r.body[..], &b[..]);
    }
    let dir = server.stop().await;
    drop(dir);
}
