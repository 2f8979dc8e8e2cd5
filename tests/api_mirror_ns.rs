//! containerd's mirror requests (`?ns=<registry>`): each configured upstream is its own
//! namespace of local repositories, unknown ones are a fast 404, writes ignore `ns`, and the
//! path-prefixed and unprefixed spellings reach the same content.

mod common;

use berth::mirror::config::{MirrorSettings, MirrorTable};
use common::{Server, OCI_MANIFEST};
use http::StatusCode;

fn table(ns: &str, unprefixed: bool) -> MirrorTable {
    MirrorTable {
        ns: ns.into(),
        unprefixed: Some(unprefixed),
        ..MirrorTable::default()
    }
}

async fn mirror_server(unprefixed: bool) -> Server {
    Server::start_with(|c| {
        c.mirrors = MirrorSettings::resolve(
            &[table("docker.io", unprefixed), table("quay.io", false)],
            None,
        )
        .unwrap();
    })
    .await
}

/// Pushes an image under `name:1` and returns its manifest digest.
async fn push(s: &Server, name: &str, seed: &str) -> String {
    let m = s.image(name, seed).await;
    let r = s.put_manifest(name, "1", OCI_MANIFEST, &m).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.header("docker-content-digest").to_owned()
}

#[tokio::test]
async fn each_upstream_is_its_own_namespace() {
    let s = mirror_server(false).await;
    let hub = push(&s, "docker.io/library/app", "hub").await;
    let quay = push(&s, "quay.io/library/app", "quay").await;
    assert_ne!(hub, quay);

    for (path, want) in [
        ("/v2/library/app/manifests/1?ns=docker.io", &hub),
        ("/v2/app/manifests/1?ns=docker.io", &hub),
        ("/v2/library/app/manifests/1?ns=index.docker.io", &hub),
        ("/v2/library/app/manifests/1?ns=registry-1.docker.io", &hub),
        // containerd with override_path at /v2/docker.io still sends ns.
        ("/v2/docker.io/library/app/manifests/1?ns=docker.io", &hub),
        ("/v2/docker.io/library/app/manifests/1", &hub),
        ("/v2/library/app/manifests/1?ns=quay.io", &quay),
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
        assert_eq!(r.header("docker-content-digest"), want, "{path}");
    }
    let r = s.head("/v2/library/app/manifests/1?ns=quay.io").await;
    assert_eq!(r.header("docker-content-digest"), quay);
    // Quay has no library/ rule: a one-component name stays one component.
    let r = s.get("/v2/app/manifests/1?ns=quay.io").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Blobs and tag lists follow the same names.
    let manifest = s
        .get("/v2/library/app/manifests/1?ns=docker.io")
        .await
        .json();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let r = s
        .get(&format!("/v2/library/app/blobs/{layer}?ns=docker.io"))
        .await;
    assert_eq!(&r.body[..], b"layer of hub");
    let nowhere = common::sha256(b"pushed nowhere");
    let r = s
        .get(&format!("/v2/library/app/blobs/{nowhere}?ns=quay.io"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = s.get("/v2/library/app/tags/list?ns=docker.io").await;
    assert_eq!(r.json()["name"], "docker.io/library/app");
    s.stop().await;
}

#[tokio::test]
async fn an_unknown_ns_is_a_fast_404_and_writes_ignore_ns() {
    let s = mirror_server(false).await;
    push(&s, "library/app", "plain").await;
    let r = s.get("/v2/library/app/manifests/1?ns=ghcr.io").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "NAME_UNKNOWN");
    assert!(r.text().contains("ghcr.io"), "{}", r.text());
    // Garbage is not a host to dial or a name to build.
    let r = s.get("/v2/library/app/manifests/1?ns=..%2F..").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Without ns, as before mirrors existed.
    let r = s.get("/v2/library/app/manifests/1").await;
    assert_eq!(r.status, StatusCode::OK);
    // A push carrying ns lands where its path says.
    let m = s.image("pushed/app", "w").await;
    let r = s
        .put_manifest("pushed/app", "1?ns=docker.io", OCI_MANIFEST, &m)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        s.get("/v2/pushed/app/manifests/1").await.status,
        StatusCode::OK
    );
    let r = s.get("/v2/docker.io/pushed/app/manifests/1").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn without_mirrors_ns_is_ignored_as_before() {
    let s = Server::start().await;
    let want = push(&s, "library/app", "plain").await;
    let r = s.get("/v2/library/app/manifests/1?ns=docker.io").await;
    assert_eq!(r.header("docker-content-digest"), want);
    s.stop().await;
}

#[tokio::test]
async fn unprefixed_names_fall_back_to_the_docker_hub_mirror() {
    let s = mirror_server(true).await;
    let hub = push(&s, "docker.io/library/app", "hub").await;
    let local = push(&s, "mine", "local").await;
    // docker's registry-mirrors asks for library/app with no ns.
    let r = s.get("/v2/library/app/manifests/1").await;
    assert_eq!(r.header("docker-content-digest"), hub);
    let r = s.get("/v2/app/manifests/1").await;
    assert_eq!(r.header("docker-content-digest"), hub);
    // A local repository of that name wins.
    let r = s.get("/v2/mine/manifests/1").await;
    assert_eq!(r.header("docker-content-digest"), local);
    s.stop().await;
}
