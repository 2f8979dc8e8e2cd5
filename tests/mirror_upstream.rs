//! The upstream client against a real berth started in-process as the upstream: anonymous
//! pulls of a public project, the docker token flow for a private one (one token, reused),
//! Basic upstreams, refusals, a streamed blob, the manifest size limit, an unreachable port
//! and an HTTPS upstream trusted through `ca_file`.

mod common;

use std::time::{Duration, Instant};

use berth::config::AuthMode;
use berth::mirror::config::{Credentials, MirrorConfig, MirrorTable};
use berth::mirror::upstream::{Upstream, UpstreamError};
use common::auth::{self, basic, ADMIN_PW, ALICE_PW, BOB_PW};
use common::{sha256, Body, Server, OCI_MANIFEST};
use http::{Method, StatusCode};

fn config(base: &str, credentials: Option<(&str, &str)>) -> MirrorConfig {
    let mut c = MirrorConfig::resolve(&MirrorTable {
        ns: "upstream.test".into(),
        upstream: Some(base.into()),
        ..MirrorTable::default()
    })
    .unwrap();
    c.credentials = credentials.map(|(u, p)| Credentials {
        username: u.into(),
        password: p.into(),
    });
    c.timeout = Duration::from_secs(5);
    c
}

fn upstream(server: &Server, credentials: Option<(&str, &str)>) -> Upstream {
    Upstream::new(&config(&format!("http://{}", server.addr), credentials)).unwrap()
}

/// `authorization` as request headers (berth takes Basic on /v2/ in token mode too).
fn auth_header(authorization: Option<&str>) -> Vec<(&str, &str)> {
    authorization
        .map(|a| ("authorization", a))
        .into_iter()
        .collect()
}

async fn push_blob(server: &Server, authorization: Option<&str>, name: &str, data: &[u8]) {
    let digest = sha256(data);
    let r = server
        .send(
            Method::POST,
            &format!("/v2/{name}/blobs/uploads/?digest={digest}"),
            &auth_header(authorization),
            Body::full(data.to_vec()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
}

/// Pushes a small image under `name:tag`; returns the manifest's bytes.
async fn push_image(
    server: &Server,
    authorization: Option<&str>,
    name: &str,
    tag: &str,
) -> Vec<u8> {
    let config = format!("{{\"image\":\"{name}\"}}");
    let layer = format!("the layer of {name}");
    push_blob(server, authorization, name, config.as_bytes()).await;
    push_blob(server, authorization, name, layer.as_bytes()).await;
    let manifest = common::image_manifest(
        &sha256(config.as_bytes()),
        config.len(),
        &[(&sha256(layer.as_bytes()), layer.len())],
        "",
    );
    let mut headers = auth_header(authorization);
    headers.push(("content-type", OCI_MANIFEST));
    let r = server
        .send(
            Method::PUT,
            &format!("/v2/{name}/manifests/{tag}"),
            &headers,
            Body::full(manifest.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    manifest
}

/// Requests counted by the upstream's `/metrics` for one route and status.
async fn requests(server: &Server, route: &str, status: u16) -> u64 {
    let admin = basic("admin", ADMIN_PW);
    let r = server
        .send(
            Method::GET,
            "/metrics",
            &[("authorization", admin.as_str())],
            Body::Empty,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let line = format!("berth_http_requests_total{{route=\"{route}\",status=\"{status}\"}} ");
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn public_manifests_anonymously() {
    let server = auth::start(AuthMode::Token, |_| {}).await;
    let alice = basic("alice", ALICE_PW);
    let manifest = push_image(&server, Some(&alice), "open/app", "v1").await;
    let up = upstream(&server, None);

    let got = up.manifest("open/app", "v1", false, 1 << 20).await.unwrap();
    let got = got.expect("the manifest exists");
    assert_eq!(&got.body[..], &manifest[..]);
    assert_eq!(got.media_type, OCI_MANIFEST);
    assert_eq!(got.digest, Some(sha256(&manifest)));
    assert_eq!(got.size, Some(manifest.len() as u64));

    // By digest, and HEAD: the same facts, no body.
    let digest = sha256(&manifest).to_string();
    let head = up
        .manifest("open/app", &digest, true, 1 << 20)
        .await
        .unwrap();
    let head = head.expect("the manifest exists");
    assert!(head.body.is_empty());
    assert_eq!(head.media_type, OCI_MANIFEST);
    assert_eq!(head.digest, Some(sha256(&manifest)));
    assert_eq!(head.size, Some(manifest.len() as u64));

    // Unknown tags and repositories are None, not errors.
    assert!(up
        .manifest("open/app", "nope", false, 1 << 20)
        .await
        .unwrap()
        .is_none());
    assert!(up
        .manifest("open/other", "v1", true, 1 << 20)
        .await
        .unwrap()
        .is_none());
    // A public project needs no token at all.
    assert_eq!(requests(&server, "token", 200).await, 0);
    server.stop().await;
}

#[tokio::test]
async fn private_repository_one_token_reused() {
    let server = auth::start(AuthMode::Token, |_| {}).await;
    let alice = basic("alice", ALICE_PW);
    let manifest = push_image(&server, Some(&alice), "team/app", "v1").await;
    let up = upstream(&server, Some(("alice", ALICE_PW)));

    for head in [false, false, true] {
        let got = up.manifest("team/app", "v1", head, 1 << 20).await.unwrap();
        let got = got.expect("alice may pull team/app");
        assert_eq!(got.digest, Some(sha256(&manifest)));
    }
    let layer = b"the layer of team/app";
    let mut blob = up
        .blob("team/app", &sha256(layer))
        .await
        .unwrap()
        .expect("the layer exists");
    let mut got = Vec::new();
    while let Some(piece) = blob.chunk().await.unwrap() {
        got.extend_from_slice(&piece);
    }
    assert_eq!(got, layer);
    // One anonymous try, one token, then the cached token on every later request.
    assert_eq!(requests(&server, "token", 200).await, 1);
    assert_eq!(requests(&server, "manifest", 401).await, 1);
    assert_eq!(requests(&server, "blob", 401).await, 0);

    // Another repository is another scope: one more token.
    push_image(&server, Some(&alice), "team/other", "v1").await;
    assert!(up
        .manifest("team/other", "v1", true, 1 << 20)
        .await
        .unwrap()
        .is_some());
    assert_eq!(requests(&server, "token", 200).await, 2);
    server.stop().await;
}

#[tokio::test]
async fn refusals_are_denied_not_outages() {
    let server = auth::start(AuthMode::Token, |_| {}).await;
    let alice = basic("alice", ALICE_PW);
    push_image(&server, Some(&alice), "team/app", "v1").await;
    push_image(&server, Some(&basic("admin", ADMIN_PW)), "ops/app", "v1").await;

    // A wrong password: the token service refuses it.
    let up = upstream(&server, Some(("bob", "not-bobs-password")));
    let e = up
        .manifest("team/app", "v1", false, 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::Denied(_)), "{e}");
    assert!(!e.is_outage());
    assert!(e.to_string().contains("token service"), "{e}");
    assert!(!e.to_string().contains("not-bobs-password"), "{e}");

    // Right credentials, no access: the token grants nothing and the retry is refused.
    let up = upstream(&server, Some(("bob", BOB_PW)));
    let e = up
        .manifest("ops/app", "v1", true, 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::Denied(_)), "{e}");
    // No credentials for a private project.
    let up = upstream(&server, None);
    let e = up
        .blob("team/app", &sha256(b"the layer of team/app"))
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::Denied(_)), "{e}");
    server.stop().await;
}

#[tokio::test]
async fn basic_upstream_is_answered_once_then_sent_basic() {
    let server = auth::start(AuthMode::Basic, |_| {}).await;
    let alice = basic("alice", ALICE_PW);
    let manifest = push_image(&server, Some(&alice), "team/app", "v1").await;
    let up = upstream(&server, Some(("alice", ALICE_PW)));
    for _ in 0..3 {
        let got = up.manifest("team/app", "v1", false, 1 << 20).await.unwrap();
        assert_eq!(&got.expect("alice may pull").body[..], &manifest[..]);
    }
    // Only the first request went anonymously and met the challenge.
    assert_eq!(requests(&server, "manifest", 401).await, 1);
    assert_eq!(requests(&server, "manifest", 200).await, 3);

    let e = upstream(&server, Some(("alice", "wrong")))
        .manifest("team/app", "v1", false, 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::Denied(_)), "{e}");
    let e = upstream(&server, None)
        .manifest("team/app", "v1", false, 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::Denied(_)), "{e}");
    server.stop().await;
}

#[tokio::test]
async fn blob_streams_in_pieces() {
    let server = Server::start().await;
    // Incompressible and large enough to arrive in many reads.
    let mut data = vec![0u8; 3 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let digest = server.push_blob("lib/big", &data).await;
    let up = upstream(&server, None);
    let mut blob = up.blob("lib/big", &digest).await.unwrap().expect("pushed");
    assert_eq!(blob.size(), Some(data.len() as u64));
    let mut hasher = berth::oci::digest::Hasher::new(berth::oci::digest::Algorithm::Sha256);
    let (mut pieces, mut total) = (0, 0);
    while let Some(piece) = blob.chunk().await.unwrap() {
        pieces += 1;
        total += piece.len();
        hasher.update(&piece);
    }
    assert!(pieces > 1, "one piece of {total} bytes");
    assert_eq!(total, data.len());
    assert_eq!(hasher.finish(), digest);

    assert!(up
        .blob("lib/big", &sha256(b"never pushed"))
        .await
        .unwrap()
        .is_none());
    server.stop().await;
}

#[tokio::test]
async fn manifest_over_the_limit_is_invalid() {
    let server = Server::start().await;
    let manifest = push_image(&server, None, "lib/app", "v1").await;
    let up = upstream(&server, None);
    let e = up
        .manifest("lib/app", "v1", false, manifest.len() - 1)
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::Invalid(_)), "{e}");
    assert!(!e.is_outage());
    let got = up.manifest("lib/app", "v1", false, manifest.len()).await;
    assert_eq!(&got.unwrap().unwrap().body[..], &manifest[..]);
    // HEAD reads no body, so the limit does not apply.
    assert!(up
        .manifest("lib/app", "v1", true, 1)
        .await
        .unwrap()
        .is_some());
    server.stop().await;
}

#[tokio::test]
async fn closed_port_is_unreachable_quickly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let up = Upstream::new(&config(&format!("http://{addr}"), None)).unwrap();
    let started = Instant::now();
    let e = up
        .manifest("library/busybox", "latest", false, 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::Unreachable(_)), "{e}");
    assert!(e.is_outage());
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2), "{e}");
    let e = up.blob("library/busybox", &sha256(b"x")).await.unwrap_err();
    assert!(e.is_outage(), "{e}");
}

/// A self-signed certificate for 127.0.0.1 and localhost, made with the openssl CLI.
fn make_cert(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is needed to make a test certificate");
    assert!(status.success());
    (cert, key)
}

#[tokio::test]
async fn https_upstream_trusted_through_ca_file() {
    // Content pushed over plain HTTP, then served over TLS from the same directory.
    let plain = Server::start().await;
    let manifest = push_image(&plain, None, "lib/app", "v1").await;
    let dir = plain.stop().await;
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(certs.path());
    let server = Server::start_in(dir, |c| {
        c.tls = Some(berth::config::TlsFiles {
            cert: cert.clone(),
            key,
        })
    })
    .await;
    let base = format!("https://127.0.0.1:{}", server.addr.port());

    let mut trusted = config(&base, None);
    trusted.ca_file = Some(cert);
    let up = Upstream::new(&trusted).unwrap();
    let got = up.manifest("lib/app", "v1", false, 1 << 20).await.unwrap();
    assert_eq!(&got.unwrap().body[..], &manifest[..]);

    // Without the CA the handshake fails: unreachable, naming the upstream.
    let up = Upstream::new(&config(&base, None)).unwrap();
    let e = up
        .manifest("lib/app", "v1", false, 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::Unreachable(_)), "{e}");
    assert!(e.to_string().contains(&base), "{e}");
    server.stop().await;
}
