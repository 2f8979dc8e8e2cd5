//! Cross-repository mounts: with `from`, without `from`, and the fallback to a new session.

mod common;

use common::{sha256, Body, Server};
use http::{Method, StatusCode};

#[tokio::test]
async fn mount_from_a_repository_that_has_the_blob() {
    let s = Server::start().await;
    let digest = s.push_blob("src/repo", b"shared layer").await;
    let r = s
        .send(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={digest}&from=src/repo"),
            &[],
            Body::Empty,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.header("location"), format!("/v2/dst/blobs/{digest}"));
    assert_eq!(r.header("docker-content-digest"), digest.to_string());
    let r = s.get(&format!("/v2/dst/blobs/{digest}")).await;
    assert_eq!(&r.body[..], b"shared layer");
    s.stop().await;
}

#[tokio::test]
async fn mount_without_from_finds_the_blob() {
    let s = Server::start().await;
    let digest = s.push_blob("a", b"anywhere").await;
    let r = s
        .send(
            Method::POST,
            &format!("/v2/b/blobs/uploads/?mount={digest}"),
            &[],
            Body::Empty,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        s.get(&format!("/v2/b/blobs/{digest}")).await.status,
        StatusCode::OK
    );
    s.stop().await;
}

#[tokio::test]
async fn mount_falls_back_to_a_session() {
    let s = Server::start().await;
    let digest = s.push_blob("has", b"only here").await;
    let unknown = sha256(b"never pushed");
    // `from` lacks the blob (even though another repository has it), then an unknown blob.
    for query in [
        format!("mount={digest}&from=lacks"),
        format!("mount={unknown}&from=has"),
        format!("mount={unknown}"),
    ] {
        let r = s
            .send(
                Method::POST,
                &format!("/v2/dst/blobs/uploads/?{query}"),
                &[],
                Body::Empty,
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{query}");
        let location = r.header("location").to_owned();
        assert!(location.starts_with("/v2/dst/blobs/uploads/"), "{location}");
        assert_eq!(r.header("range"), "0-0");
        assert_eq!(s.get(&location).await.status, StatusCode::NO_CONTENT);
    }
    assert_eq!(
        s.get(&format!("/v2/dst/blobs/{digest}")).await.status,
        StatusCode::NOT_FOUND
    );
    s.stop().await;
}

#[tokio::test]
async fn mount_with_malformed_arguments_changes_nothing() {
    let s = Server::start().await;
    let digest = s.push_blob("has", b"blob").await;
    let r = s
        .send(
            Method::POST,
            "/v2/dst/blobs/uploads/?mount=sha256:zz&from=has",
            &[],
            Body::Empty,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    let r = s
        .send(
            Method::POST,
            &format!("/v2/dst/blobs/uploads/?mount={digest}&from=Bad__Name"),
            &[],
            Body::Empty,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "NAME_INVALID");
    assert_eq!(
        s.get(&format!("/v2/dst/blobs/{digest}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(s
        .get("/metrics")
        .await
        .text()
        .contains("berth_upload_sessions_open 0"));
    s.stop().await;
}
