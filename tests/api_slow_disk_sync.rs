//! A disk whose sync stalls must not stall requests that need no sync: while a push is stuck
//! in an `fdatasync` (the one that seals a segment as the log rolls, taken under the log's
//! mutex, and the group commit's after it), a manifest GET and `/metrics` still answer.

mod common;
mod storage_support;

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use berth::api::{Limits, Registry};
use berth::config::ServerSettings;
use berth::metrics::Metrics;
use berth::storage::memdisk::MemDisk;
use berth::storage::{Store, StoreOptions};
use common::*;
use http::{Method, StatusCode};
use storage_support::sync_hook::SyncHook;

/// How long a held sync waits to be released before it goes on by itself: only so that a
/// regression fails (the push completes, see below) instead of hanging the suite.
const HOLD: Duration = Duration::from_secs(60);

/// Syncs that wait (up to [`HOLD`]) while the gate is armed.
#[derive(Default)]
struct Gate {
    armed: Mutex<bool>,
    cv: Condvar,
    /// Told when a sync starts waiting.
    holding: tokio::sync::Notify,
}

impl Gate {
    fn set(&self, armed: bool) {
        *self.armed.lock().unwrap() = armed;
        self.cv.notify_all();
    }

    fn pass(&self) {
        let armed = self.armed.lock().unwrap();
        if *armed {
            self.holding.notify_one();
            let _ = self.cv.wait_timeout_while(armed, HOLD, |a| *a).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_metrics_answer_while_a_sync_is_stuck() {
    let disk = MemDisk::new();
    let gate = Arc::new(Gate::default());
    let held = gate.clone();
    let io = Arc::new(SyncHook::new(
        disk.segments(),
        Box::new(move |_| {
            held.pass();
            Ok(())
        }),
    ));
    let opts = StoreOptions {
        max_segment_bytes: 2 << 20,
        ..Default::default()
    };
    let store = Store::open_with(io, disk.index(), opts).unwrap();
    let registry = Registry::new(store, Arc::new(Metrics::new()), Limits::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = Server::client_only(listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        berth::server::serve(
            listener,
            shutdown,
            registry,
            &ServerSettings::default(),
            None,
        )
        .await;
    });

    let push = |name: &'static str, data: Vec<u8>| {
        let digest = sha256(&data);
        async move {
            let path = format!("/v2/{name}/blobs/uploads/?digest={digest}");
            let r = client
                .send(Method::POST, &path, &[], Body::full(data))
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
            digest
        }
    };
    let config = push("app", b"{}".to_vec()).await;
    let layer = push("app", b"a layer".to_vec()).await;
    let manifest = image_manifest(&config, 2, &[(&layer, 7)], "");
    let path = "/v2/app/manifests/v1";
    let r = client
        .send(
            Method::PUT,
            path,
            &[("content-type", OCI_MANIFEST)],
            Body::full(manifest.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());

    // A push of several records rolls the log; the roll's sync is held.
    gate.set(true);
    let big: Vec<u8> = (0..(5u32 << 20)).map(|i| (i % 251) as u8).collect();
    let stuck = tokio::spawn(push("big", big));
    tokio::time::timeout(HOLD, gate.holding.notified())
        .await
        .expect("the push never reached a sync");
    tokio::time::sleep(Duration::from_millis(100)).await;

    let r = client
        .send(Method::GET, path, &[("accept", OCI_MANIFEST)], Body::Empty)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], &manifest[..]);
    let r = client.send(Method::GET, "/metrics", &[], Body::Empty).await;
    assert_eq!(r.status, StatusCode::OK);
    // Both answered while the sync was still held: the push behind it has not finished.
    assert!(!stuck.is_finished(), "the answers waited for the held sync");

    gate.set(false);
    stuck.await.unwrap();
    let _ = stop.send(());
    server.await.unwrap();
}
