//! Manifest PUT/GET/HEAD/DELETE: exact bytes and media types, several tags in one PUT,
//! validation failures, the size limit.

mod common;

use berth::oci::digest::{Algorithm, Digest};
use common::{image_manifest, sha256, Body, Server, OCI_INDEX, OCI_MANIFEST};
use http::{Method, StatusCode};

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

#[tokio::test]
async fn put_by_tag_then_get_and_head_by_tag_and_digest() {
    let s = Server::start().await;
    // Odd whitespace: the registry must keep the exact bytes.
    let mut body = s.image("app", "one").await;
    body.extend_from_slice(b"\n  ");
    let digest = sha256(&body);
    let r = s.put_manifest("app", "v1", OCI_MANIFEST, &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.header("location"), format!("/v2/app/manifests/{digest}"));
    assert_eq!(r.header("docker-content-digest"), digest.to_string());
    assert!(!r.has_header("oci-subject"));
    assert!(!r.has_header("oci-tag"));

    for reference in ["v1".to_owned(), digest.to_string()] {
        let path = format!("/v2/app/manifests/{reference}");
        // No Accept header at all, and an Accept that does not list the type.
        for accept in [
            None,
            Some("application/vnd.docker.distribution.manifest.v2+json"),
        ] {
            let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
            let r = s.send(Method::GET, &path, &headers, Body::Empty).await;
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(&r.body[..], &body[..]);
            assert_eq!(r.header("content-type"), OCI_MANIFEST);
            assert_eq!(r.header("docker-content-digest"), digest.to_string());
            let r = s.send(Method::HEAD, &path, &headers, Body::Empty).await;
            assert_eq!(r.status, StatusCode::OK);
            assert!(r.body.is_empty());
            assert_eq!(r.header("content-type"), OCI_MANIFEST);
            assert_eq!(r.header("content-length"), body.len().to_string());
            assert_eq!(r.header("docker-content-digest"), digest.to_string());
        }
    }
    // The manifest is also readable as a blob of the repository.
    let r = s.get(&format!("/v2/app/blobs/{digest}")).await;
    assert_eq!(&r.body[..], &body[..]);
    s.stop().await;
}

#[tokio::test]
async fn put_by_digest_with_several_tags() {
    let s = Server::start().await;
    let body = s.image("multi", "two").await;
    let digest = sha256(&body);
    let r = s
        .send(
            Method::PUT,
            &format!("/v2/multi/manifests/{digest}?tag=a&tag=b&tag=1.0_build.7"),
            &[("content-type", OCI_MANIFEST)],
            Body::full(body.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    // Every tag the request created is named, or clients re-push tag by tag.
    assert_eq!(r.header("oci-tag"), "a, b, 1.0_build.7");
    for tag in ["a", "b", "1.0_build.7"] {
        let r = s.get(&format!("/v2/multi/manifests/{tag}")).await;
        assert_eq!(r.status, StatusCode::OK, "{tag}");
        assert_eq!(r.header("docker-content-digest"), digest.to_string());
    }
    let tags = s.get("/v2/multi/tags/list").await.json();
    assert_eq!(tags["tags"], serde_json::json!(["1.0_build.7", "a", "b"]));

    // A sha512 manifest can only be tagged this way: a PUT by tag digests with sha256.
    let d512 = Digest::of(Algorithm::Sha512, &body);
    let r = s
        .send(
            Method::PUT,
            &format!("/v2/multi/manifests/{d512}?tag=long"),
            &[("content-type", OCI_MANIFEST)],
            Body::full(body.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.header("oci-tag"), "long");
    assert_eq!(r.header("docker-content-digest"), d512.to_string());
    let r = s.get("/v2/multi/manifests/long").await;
    assert_eq!(r.header("docker-content-digest"), d512.to_string());

    // A bad tag among them fails the whole request.
    let r = s
        .send(
            Method::PUT,
            &format!("/v2/multi/manifests/{digest}?tag=ok&tag=no%2Bplus"),
            &[("content-type", OCI_MANIFEST)],
            Body::full(body),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "MANIFEST_INVALID");
    assert_eq!(
        s.get("/v2/multi/manifests/ok").await.status,
        StatusCode::NOT_FOUND
    );
    s.stop().await;
}

#[tokio::test]
async fn media_type_comes_from_content_type_or_the_body() {
    let s = Server::start().await;
    let c = s.push_blob("dk", b"{}").await;
    let l = s.push_blob("dk", b"layer").await;
    let body = format!(
        r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{c}","size":2}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{l}","size":5}}]}}"#
    );
    // Generic Content-Type: the body's mediaType is what gets stored.
    let r = s
        .put_manifest("dk", "latest", "application/octet-stream", body.as_bytes())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = s.get("/v2/dk/manifests/latest").await;
    assert_eq!(r.header("content-type"), DOCKER_MANIFEST);
    // A Content-Type that contradicts the body is refused.
    let r = s
        .put_manifest("dk", "other", OCI_MANIFEST, body.as_bytes())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "MANIFEST_INVALID");
    s.stop().await;
}

#[tokio::test]
async fn index_requires_its_children() {
    let s = Server::start().await;
    let child = s.image("idx", "child").await;
    let child_digest = sha256(&child);
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{child_digest}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
        child.len()
    );
    let r = s
        .put_manifest("idx", "multi", OCI_INDEX, index.as_bytes())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "MANIFEST_BLOB_UNKNOWN");
    let r = s
        .put_manifest("idx", &child_digest.to_string(), OCI_MANIFEST, &child)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = s
        .put_manifest("idx", "multi", OCI_INDEX, index.as_bytes())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = s.get("/v2/idx/manifests/multi").await;
    assert_eq!(r.header("content-type"), OCI_INDEX);
    assert_eq!(&r.body[..], index.as_bytes());
    s.stop().await;
}

#[tokio::test]
async fn invalid_manifests_change_nothing() {
    let s = Server::start().await;
    let c = s.push_blob("bad", b"{}").await;
    let missing = sha256(b"not pushed");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "MANIFEST_INVALID"),
        (b"[1,2]".to_vec(), "MANIFEST_INVALID"),
        (
            format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}"}}"#).into_bytes(),
            "MANIFEST_INVALID",
        ),
        (
            image_manifest(&c, 2, &[], "").replace_schema(),
            "MANIFEST_INVALID",
        ),
        (
            image_manifest(&c, 2, &[(&missing, 10)], ""),
            "MANIFEST_BLOB_UNKNOWN",
        ),
        (
            image_manifest(&missing, 2, &[], ""),
            "MANIFEST_BLOB_UNKNOWN",
        ),
    ];
    for (body, code) in cases {
        let r = s.put_manifest("bad", "t", OCI_MANIFEST, &body).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(r.error_code(), code, "{}", String::from_utf8_lossy(&body));
    }
    let r = s.get("/v2/bad/manifests/t").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "MANIFEST_UNKNOWN");

    // Digest in the URL must be the body's digest.
    let good = image_manifest(&c, 2, &[], "");
    let other = sha256(b"other");
    let r = s
        .put_manifest("bad", &other.to_string(), OCI_MANIFEST, &good)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    // Bad tag in the path.
    let r = s.put_manifest("bad", "-dash", OCI_MANIFEST, &good).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    s.stop().await;
}

trait ReplaceSchema {
    fn replace_schema(self) -> Vec<u8>;
}

impl ReplaceSchema for Vec<u8> {
    /// The same manifest claiming schema version 1.
    fn replace_schema(self) -> Vec<u8> {
        String::from_utf8(self)
            .unwrap()
            .replace("\"schemaVersion\":2", "\"schemaVersion\":1")
            .into_bytes()
    }
}

#[tokio::test]
async fn size_limit_is_413() {
    let s = Server::start().await;
    let c = s.push_blob("big", b"{}").await;
    let padding = "x".repeat(4 << 20);
    let body = image_manifest(
        &c,
        2,
        &[],
        &format!(r#","annotations":{{"pad":"{padding}"}}"#),
    );
    assert!(body.len() > 4 << 20);
    let r = s.put_manifest("big", "huge", OCI_MANIFEST, &body).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.error_code(), "SIZE_INVALID");
    // Same without a Content-Length: the limit applies while reading.
    let parts: Vec<Vec<u8>> = body.chunks(1 << 20).map(<[u8]>::to_vec).collect();
    let r = s
        .send(
            Method::PUT,
            "/v2/big/manifests/huge",
            &[("content-type", OCI_MANIFEST)],
            Body::chunked(parts),
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        s.get("/v2/big/manifests/huge").await.status,
        StatusCode::NOT_FOUND
    );
    s.stop().await;
}

#[tokio::test]
async fn sha512_manifest_reference() {
    let s = Server::start().await;
    let body = s.image("five12", "x").await;
    let digest = Digest::of(Algorithm::Sha512, &body);
    let r = s
        .put_manifest("five12", &digest.to_string(), OCI_MANIFEST, &body)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.header("docker-content-digest"), digest.to_string());
    let r = s.get(&format!("/v2/five12/manifests/{digest}")).await;
    assert_eq!(&r.body[..], &body[..]);
    s.stop().await;
}

#[tokio::test]
async fn delete_by_tag_and_by_digest() {
    let s = Server::start().await;
    let body = s.image("del", "d").await;
    let digest = sha256(&body);
    s.put_manifest("del", "keep", OCI_MANIFEST, &body).await;
    s.put_manifest("del", "drop", OCI_MANIFEST, &body).await;
    assert_eq!(
        s.delete("/v2/del/manifests/drop").await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        s.get("/v2/del/manifests/drop").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(s.get("/v2/del/manifests/keep").await.status, StatusCode::OK);
    let r = s.delete("/v2/del/manifests/drop").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "MANIFEST_UNKNOWN");

    assert_eq!(
        s.delete(&format!("/v2/del/manifests/{digest}"))
            .await
            .status,
        StatusCode::ACCEPTED
    );
    let r = s.get(&format!("/v2/del/manifests/{digest}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "MANIFEST_UNKNOWN");
    // Deleting a manifest removes the tags pointing at it.
    assert_eq!(
        s.get("/v2/del/manifests/keep").await.status,
        StatusCode::NOT_FOUND
    );
    let r = s.delete(&format!("/v2/del/manifests/{digest}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    s.stop().await;
}
