//! The admin endpoint: loopback peers only by default, one job at a time (409 while one
//! runs), scrub reports, parameter checks, collection reports and their metrics.

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;

use berth::api::{AdminAccess, Limits, Policy, Registry};
use berth::config::ServerSettings;
use berth::maintenance::{Job, Maintenance};
use berth::metrics::Metrics;
use berth::storage::{GcOptions, Store, StoreOptions};
use common::*;
use http::{Method, StatusCode};

/// An address of this host that is not loopback (the source address of a route out), or
/// `None` on a host with no such route.
fn non_loopback_ip() -> Option<IpAddr> {
    ["192.0.2.1:9", "8.8.8.8:53", "10.0.0.1:9"]
        .iter()
        .find_map(|target| {
            let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
            socket.connect(target).ok()?;
            let ip = socket.local_addr().ok()?.ip();
            (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
        })
}

async fn post(client: &Client, path: &str, body: &str) -> Resp {
    client
        .send(
            Method::POST,
            path,
            &[],
            Body::full(body.as_bytes().to_vec()),
        )
        .await
}

#[tokio::test]
async fn other_peers_are_refused_unless_allowed() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("skipped: this host has no non-loopback address");
        return;
    };
    for (access, remote_status) in [
        (AdminAccess::Loopback, StatusCode::FORBIDDEN),
        (AdminAccess::Any, StatusCode::OK),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let s = Server::start_at(dir, "0.0.0.0:0", |c| c.policy.admin = access).await;
        let remote = Server::client_only(SocketAddr::new(ip, s.addr.port()));
        let local = Server::client_only(SocketAddr::from(([127, 0, 0, 1], s.addr.port())));

        let r = remote
            .send(Method::GET, "/admin/gc", &[], Body::Empty)
            .await;
        assert_eq!(r.status, remote_status, "{access}: {}", r.text());
        let r2 = post(&remote, "/admin/verify", "{}").await;
        assert_eq!(r2.status, remote_status, "{access}: {}", r2.text());
        if remote_status == StatusCode::FORBIDDEN {
            assert_eq!(r.error_code(), "DENIED");
            assert!(r.text().contains("loopback"), "{}", r.text());
        }
        // The registry API itself answers everyone.
        let r = remote.send(Method::GET, "/v2/", &[], Body::Empty).await;
        assert_eq!(r.status, StatusCode::OK);
        let r = local.send(Method::GET, "/admin/gc", &[], Body::Empty).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        s.stop().await;
    }
}

#[tokio::test]
async fn off_refuses_everyone() {
    let s = Server::start_with(|c| c.policy.admin = AdminAccess::Off).await;
    let r = s.get("/admin/gc").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.error_code(), "DENIED");
    assert!(r.text().contains("disabled"), "{}", r.text());
    s.stop().await;
}

#[tokio::test]
async fn stats_verify_and_parameter_checks() {
    let s = Server::start().await;
    s.push_blob("adm/app", b"some bytes").await;
    let client = Server::client_only(s.addr);

    let r = s.get("/admin/gc").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").starts_with("application/json"));
    let stats = r.json();
    assert_eq!(stats["running"], serde_json::Value::Null);
    assert!(stats["runs"].is_u64(), "{stats}");

    let r = post(&client, "/admin/verify", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = r.json();
    assert_eq!(v["clean"], true, "{v}");
    assert!(v["segments"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["records"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["quarantine"], true);
    let r = post(&client, "/admin/verify?quarantine=false&rate=unlimited", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["quarantine"], false);

    for (path, body) in [
        ("/admin/gc?dryrun=true", ""),
        ("/admin/gc?grace=10", ""),
        ("/admin/gc", r#"{"dry-run":true}"#),
        ("/admin/gc", r#"{"compact_threshold":3}"#),
        ("/admin/verify?rate=0", ""),
    ] {
        let r = post(&client, path, body).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{path} {body}: {}",
            r.text()
        );
    }
    let r = client
        .send(Method::DELETE, "/admin/gc", &[], Body::Empty)
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let r = s.get("/admin/verify").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    s.stop().await;
}

/// A registry served over a store and maintenance runner the test also holds.
struct Held {
    maintenance: Maintenance,
    client: Client,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    store: Store,
    _dir: tempfile::TempDir,
}

async fn serve_held() -> Held {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let maintenance = Maintenance::new(store.clone(), GcOptions::default(), None);
    let registry = Registry::assemble(
        store.clone(),
        Arc::new(Metrics::new()),
        Limits::default(),
        Policy::default(),
        maintenance.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = Server::client_only(listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let settings = ServerSettings::default();
        let shutdown = async move {
            let _ = stopped.await;
        };
        berth::server::serve(listener, shutdown, registry, &settings, None).await;
    });
    Held {
        maintenance,
        client,
        stop,
        task,
        store,
        _dir: dir,
    }
}

#[tokio::test]
async fn a_second_job_is_refused_with_409_while_one_runs() {
    let h = serve_held().await;
    let running = h.maintenance.begin(Job::Gc).unwrap();

    for path in ["/admin/gc", "/admin/gc?dry_run", "/admin/verify"] {
        let r = post(&h.client, path, "").await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{path}: {}", r.text());
        assert_eq!(r.error_code(), "TOOMANYREQUESTS");
        assert!(
            r.text().contains("garbage collection is already running"),
            "{}",
            r.text()
        );
    }
    let r = h
        .client
        .send(Method::GET, "/admin/gc", &[], Body::Empty)
        .await;
    assert_eq!(r.json()["running"], "gc");

    drop(running);
    let r = post(&h.client, "/admin/verify", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(h.maintenance.running().is_none());

    let _ = h.stop.send(());
    h.task.await.unwrap();
    h.store.close().unwrap();
}

/// Needs `Store::gc` and `Store::gc_stats` from the garbage collection engine.
#[tokio::test]
async fn a_collection_reports_what_it_removed_and_is_counted() {
    let s = Server::start().await;
    let client = Server::client_only(s.addr);
    let loose = s.push_blob("gc/app", b"referenced by no manifest").await;

    let r = post(&client, "/admin/gc", r#"{"dry_run":true}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let report = r.json();
    assert_eq!(report["dry_run"], true);
    assert!(report["links_removed"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(
        s.get(&format!("/v2/gc/app/blobs/{loose}")).await.status,
        StatusCode::OK
    );

    let r = post(&client, "/admin/gc?compact=false", "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let report = r.json();
    assert_eq!(report["dry_run"], false);
    assert!(report["blobs_removed"].as_u64().unwrap() >= 1, "{report}");
    assert_eq!(
        s.get(&format!("/v2/gc/app/blobs/{loose}")).await.status,
        StatusCode::NOT_FOUND
    );

    let stats = s.get("/admin/gc").await.json();
    assert_eq!(stats["runs"], 1, "{stats}");
    assert!(stats["last_run_unix_ms"].is_u64(), "{stats}");
    let metrics = s.get("/metrics").await.text();
    assert!(metrics.contains("berth_gc_runs_total 1"), "{metrics}");
    assert!(
        !metrics.contains("berth_gc_last_run_timestamp_seconds 0\n"),
        "{metrics}"
    );
    s.stop().await;
}

/// Needs `Store::gc`, `Store::scrub` and `Store::gc_stats` from the garbage collection engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedule_collects_and_scrubs() {
    let s = Server::start_with(|c| {
        c.gc.interval = Some(std::time::Duration::from_millis(200));
        c.scrub.interval = Some(std::time::Duration::from_millis(300));
    })
    .await;
    s.push_blob("sched/app", b"referenced by no manifest").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let stats = s.get("/admin/gc").await.json();
        if stats["runs"].as_u64() >= Some(1) && stats["last_scrub_unix_ms"].is_u64() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{stats}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let metrics = s.get("/metrics").await.text();
    assert!(
        !metrics.contains("berth_scrub_last_timestamp_seconds 0\n"),
        "{metrics}"
    );
    s.stop().await;
}
