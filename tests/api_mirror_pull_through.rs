//! The pull-through cache against an in-process upstream berth: first pulls are fetched and
//! stored, later ones are served locally (also with the upstream gone), concurrent misses
//! share one fetch, and an upstream whose bytes do not match their digest gets nothing stored.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth::mirror::config::{MirrorSettings, MirrorTable};
use bytes::Bytes;
use common::{image_manifest, sha256, Server, OCI_MANIFEST};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

/// A mirror of `docker.io` whose upstream is `upstream`.
async fn mirror_of(upstream: SocketAddr, tag_ttl: &str) -> Server {
    let table = MirrorTable {
        ns: "docker.io".into(),
        upstream: Some(format!("http://{upstream}")),
        tag_ttl: Some(tag_ttl.parse().unwrap()),
        timeout: Some("2s".parse().unwrap()),
        ..MirrorTable::default()
    };
    Server::start_with(|c| c.mirrors = MirrorSettings::resolve(&[table], None).unwrap()).await
}

/// A counter's value in a `/metrics` text.
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// GET that reports a cut connection instead of panicking.
async fn try_get(addr: SocketAddr, path: &str) -> Result<(StatusCode, Bytes), String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", addr.to_string())
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

#[tokio::test]
async fn first_pull_fetches_later_pulls_are_local_even_with_the_upstream_gone() {
    let upstream = Server::start().await;
    let m = upstream.image("library/app", "v1").await;
    let r = upstream
        .put_manifest("library/app", "1", OCI_MANIFEST, &m)
        .await;
    let digest = r.header("docker-content-digest").to_owned();
    let mirror = mirror_of(upstream.addr, "0s").await;

    let r = mirror.get("/v2/library/app/manifests/1?ns=docker.io").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("docker-content-digest"), digest);
    assert_eq!(&r.body[..], &m[..], "byte for byte");
    assert_eq!(r.header("content-type"), OCI_MANIFEST);
    let manifest = r.json();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let r = mirror
        .get(&format!("/v2/library/app/blobs/{layer}?ns=docker.io"))
        .await;
    assert_eq!(&r.body[..], b"layer of v1");
    // The same content under its full name, as skopeo or podman would ask.
    let r = mirror.get("/v2/docker.io/library/app/manifests/1").await;
    assert_eq!(r.header("docker-content-digest"), digest);

    upstream.stop().await;
    // Tag TTL 0: every tag read asks; the upstream is gone, so the cached tag is served stale.
    let r = mirror.get("/v2/library/app/manifests/1?ns=docker.io").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("docker-content-digest"), digest);
    let r = mirror
        .get(&format!("/v2/library/app/blobs/{layer}?ns=docker.io"))
        .await;
    assert_eq!(&r.body[..], b"layer of v1");
    let r = mirror
        .get(&format!("/v2/library/app/manifests/{digest}?ns=docker.io"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let text = mirror.get("/metrics").await.text();
    assert!(
        metric(&text, "berth_mirror_stale_served_total{ns=\"docker.io\"}") >= 1,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "berth_mirror_upstream_failures_total{ns=\"docker.io\"}"
        ) >= 1
    );

    // Never cached, upstream down: a clear error, fast.
    let started = Instant::now();
    let r = mirror
        .get("/v2/library/other/manifests/1?ns=docker.io")
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.text());
    assert!(r.text().contains("upstream"), "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(5));
    mirror.stop().await;
}

#[tokio::test]
async fn a_moved_tag_is_fetched_again_and_a_fresh_one_is_not_asked() {
    let upstream = Server::start().await;
    let m1 = upstream.image("library/app", "one").await;
    upstream
        .put_manifest("library/app", "1", OCI_MANIFEST, &m1)
        .await;
    let mirror = mirror_of(upstream.addr, "1h").await;
    let r = mirror.get("/v2/library/app/manifests/1?ns=docker.io").await;
    assert_eq!(&r.body[..], &m1[..]);
    let before = upstream.get("/metrics").await.text();
    for _ in 0..5 {
        let r = mirror
            .head("/v2/library/app/manifests/1?ns=docker.io")
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let after = upstream.get("/metrics").await.text();
    let asked = |t: &str| {
        metric(
            t,
            "berth_http_requests_total{route=\"manifest\",status=\"200\"}",
        )
    };
    assert_eq!(
        asked(&before),
        asked(&after),
        "within the TTL nobody asks upstream"
    );

    // With TTL 0 the tag is checked with one HEAD and refetched when it moved.
    let mirror2 = mirror_of(upstream.addr, "0s").await;
    let r = mirror2
        .get("/v2/library/app/manifests/1?ns=docker.io")
        .await;
    assert_eq!(&r.body[..], &m1[..]);
    let m2 = upstream.image("library/app", "two").await;
    upstream
        .put_manifest("library/app", "1", OCI_MANIFEST, &m2)
        .await;
    let r = mirror2
        .get("/v2/library/app/manifests/1?ns=docker.io")
        .await;
    assert_eq!(&r.body[..], &m2[..]);
    mirror.stop().await;
    mirror2.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn concurrent_misses_of_one_blob_fetch_it_once() {
    let upstream = Server::start().await;
    let big: Vec<u8> = (0..48u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let digest = upstream.push_blob("library/big", &big).await;
    let mirror = mirror_of(upstream.addr, "1h").await;
    let path = format!("/v2/library/big/blobs/{digest}?ns=docker.io");
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (addr, path) = (mirror.addr, path.clone());
        tasks.push(tokio::spawn(async move { try_get(addr, &path).await }));
    }
    for t in tasks {
        let (status, body) = t.await.unwrap().unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(sha256(&body), digest);
    }
    let text = upstream.get("/metrics").await.text();
    assert_eq!(
        metric(
            &text,
            "berth_http_requests_total{route=\"blob\",status=\"200\"}"
        ),
        1,
        "{text}"
    );
    let text = mirror.get("/metrics").await.text();
    assert_eq!(
        metric(&text, "berth_mirror_fetched_bytes_total{ns=\"docker.io\"}"),
        big.len() as u64
    );
    // A range of the stored blob, now local.
    let r = mirror
        .send(
            http::Method::GET,
            &path,
            &[("range", "bytes=10-19")],
            common::Body::Empty,
        )
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&r.body[..], &big[10..20]);
    mirror.stop().await;
    upstream.stop().await;
}

/// An upstream that serves one manifest and a blob whose bytes are not what its digest says.
async fn lying_upstream(manifest: Vec<u8>, blob: Vec<u8>, hits: Arc<AtomicUsize>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (manifest, blob, hits) = (manifest.clone(), blob.clone(), hits.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (manifest, blob, hits) = (manifest.clone(), blob.clone(), hits.clone());
                    async move {
                        let path = req.uri().path().to_owned();
                        let resp = if path.contains("/manifests/") {
                            Response::builder()
                                .header("content-type", OCI_MANIFEST)
                                .body(Full::new(Bytes::from(manifest)))
                        } else if path.contains("/blobs/") {
                            hits.fetch_add(1, Ordering::SeqCst);
                            Response::builder().body(Full::new(Bytes::from(blob)))
                        } else {
                            Response::builder().body(Full::new(Bytes::new()))
                        };
                        Ok::<_, Infallible>(resp.unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn bytes_that_fail_their_digest_are_never_stored_or_served_whole() {
    let good = vec![7u8; 3 << 20];
    let mut bad = good.clone();
    bad[2 << 20] ^= 1;
    let layer = sha256(&good);
    let config = sha256(b"{}");
    let manifest = image_manifest(&config, 2, &[(&layer, good.len())], "");
    let hits = Arc::new(AtomicUsize::new(0));
    let upstream = lying_upstream(manifest, bad, hits.clone()).await;
    let mirror = mirror_of(upstream, "1h").await;
    let path = format!("/v2/library/app/blobs/{layer}?ns=docker.io");
    for _ in 0..2 {
        // Cut off (an error) is fine: the client keeps nothing.
        if let Ok((status, body)) = try_get(mirror.addr, &path).await {
            assert_ne!(sha256(&body), layer);
            assert!(
                status != StatusCode::OK || body.len() < good.len(),
                "{status}"
            );
        }
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2, "not cached: asked again");
    let text = mirror.get("/metrics").await.text();
    assert!(
        metric(
            &text,
            "berth_mirror_upstream_failures_total{ns=\"docker.io\"}"
        ) >= 2
    );
    assert_eq!(
        metric(&text, "berth_mirror_fetched_bytes_total{ns=\"docker.io\"}"),
        0
    );
    mirror.stop().await;
}

#[tokio::test]
async fn with_access_control_a_mirror_is_a_project_and_never_links_another_projects_blob() {
    use berth::config::AuthMode;
    use common::auth::{self, basic, ADMIN_PW, ALICE_PW};
    let upstream = Server::start().await;
    let m = upstream.image("library/app", "v1").await;
    upstream
        .put_manifest("library/app", "1", OCI_MANIFEST, &m)
        .await;
    let mirror_table = |ns: &str| MirrorTable {
        ns: ns.into(),
        upstream: Some(format!("http://{}", upstream.addr)),
        ..MirrorTable::default()
    };
    let tables = [mirror_table("open"), mirror_table("team")];
    let mirror = auth::start(AuthMode::Basic, |c| {
        c.mirrors = MirrorSettings::resolve(&tables, None).unwrap();
    })
    .await;
    // A public project's mirror serves anonymous pulls; a private one needs a member.
    let r = mirror.get("/v2/library/app/manifests/1?ns=open").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = mirror.get("/v2/library/app/manifests/1?ns=team").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let alice = basic("alice", ALICE_PW);
    let r = mirror
        .send(
            http::Method::GET,
            "/v2/library/app/manifests/1?ns=team",
            &[("authorization", &alice)],
            common::Body::Empty,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    // A blob pushed into the private project `ops` is not served through the open mirror
    // by its digest: the upstream does not have it, so it is unknown.
    let admin = basic("admin", ADMIN_PW);
    let secret = b"private layer of ops".to_vec();
    let digest = sha256(&secret);
    let r = mirror
        .send(
            http::Method::POST,
            &format!("/v2/ops/secret/blobs/uploads/?digest={digest}"),
            &[("authorization", &admin)],
            common::Body::full(secret),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = mirror
        .get(&format!("/v2/library/app/blobs/{digest}?ns=open"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    mirror.stop().await;
    upstream.stop().await;
}

#[tokio::test]
async fn a_blob_another_repository_holds_is_linked_not_fetched() {
    let upstream = Server::start().await;
    let data = b"a layer two images share".to_vec();
    let digest = upstream.push_blob("library/one", &data).await;
    assert_eq!(upstream.push_blob("library/two", &data).await, digest);
    let mirror = mirror_of(upstream.addr, "1h").await;
    let blob_gets = |t: &str| {
        metric(
            t,
            "berth_http_requests_total{route=\"blob\",status=\"200\"}",
        )
    };
    for repo in ["library/one", "library/two"] {
        let r = mirror
            .get(&format!("/v2/{repo}/blobs/{digest}?ns=docker.io"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{repo}: {}", r.text());
        assert_eq!(&r.body[..], &data[..], "{repo}");
    }
    let fetched = blob_gets(&upstream.get("/metrics").await.text());
    assert_eq!(fetched, 1, "the second repository's read went upstream");
    let text = mirror.get("/metrics").await.text();
    assert!(
        metric(&text, "berth_mirror_hits_total{ns=\"docker.io\"}") >= 1,
        "{text}"
    );
    mirror.stop().await;
    upstream.stop().await;
}
