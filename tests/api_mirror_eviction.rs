//! A mirror cache over its size drops the least recently pulled images, and a collection
//! gives their bytes back; what was pulled recently stays.

mod common;

use std::time::{Duration, Instant};

use berth::mirror::config::{MirrorSettings, MirrorTable};
use common::{image_manifest, Server, OCI_MANIFEST};
use http::StatusCode;

const MIB: usize = 1 << 20;

/// Pushes `library/<name>:1` with one distinct 1 MiB layer.
async fn push_image(s: &Server, name: &str, seed: u8) {
    let repo = format!("library/{name}");
    let config = format!("{{\"image\":\"{name}\"}}");
    let c = s.push_blob(&repo, config.as_bytes()).await;
    let layer: Vec<u8> = (0..MIB)
        .map(|i| (i as u8).wrapping_mul(seed) ^ seed)
        .collect();
    let l = s.push_blob(&repo, &layer).await;
    let m = image_manifest(&c, config.len(), &[(&l, layer.len())], "");
    let r = s.put_manifest(&repo, "1", OCI_MANIFEST, &m).await;
    assert_eq!(r.status, StatusCode::CREATED);
}

/// Pulls the image through the mirror: manifest and every blob.
async fn pull(mirror: &Server, name: &str) {
    let r = mirror
        .get(&format!("/v2/library/{name}/manifests/1?ns=docker.io"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let m = r.json();
    let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_owned()];
    blobs.push(m["layers"][0]["digest"].as_str().unwrap().to_owned());
    for b in blobs {
        let r = mirror
            .get(&format!("/v2/library/{name}/blobs/{b}?ns=docker.io"))
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
}

/// Whether the mirror still holds the image's tag (a tag list never asks the upstream).
async fn cached(mirror: &Server, name: &str) -> bool {
    let r = mirror
        .get(&format!("/v2/docker.io/library/{name}/tags/list"))
        .await;
    r.status == StatusCode::OK && r.json()["tags"].as_array().is_some_and(|t| !t.is_empty())
}

#[tokio::test]
async fn the_least_recently_pulled_image_goes_first() {
    let upstream = Server::start().await;
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        push_image(&upstream, name, i as u8 + 3).await;
    }
    let table = MirrorTable {
        ns: "docker.io".into(),
        upstream: Some(format!("http://{}", upstream.addr)),
        ..MirrorTable::default()
    };
    let mirror = Server::start_with(|c| {
        let mut m = MirrorSettings::resolve(&[table], Some("2.5MiB".parse().unwrap())).unwrap();
        m.check_every = Duration::from_millis(100);
        c.mirrors = m;
    })
    .await;
    pull(&mirror, "a").await;
    pull(&mirror, "b").await;
    // a is used again: b is now the least recently pulled.
    tokio::time::sleep(Duration::from_millis(5)).await;
    pull(&mirror, "a").await;
    pull(&mirror, "c").await;

    let deadline = Instant::now() + Duration::from_secs(60);
    while cached(&mirror, "b").await {
        assert!(Instant::now() < deadline, "b was never evicted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cached(&mirror, "a").await, "recently pulled a stays");
    assert!(cached(&mirror, "c").await, "just fetched c stays");
    // The collection after the eviction gave b's layer back.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = mirror.get("/admin/gc").await;
        if r.status == StatusCode::OK && r.json()["total_blobs_removed"].as_u64().unwrap_or(0) >= 1
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no collection reclaimed b: {}",
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Evicted content is fetched again on demand.
    pull(&mirror, "b").await;
    mirror.stop().await;
    upstream.stop().await;
}
