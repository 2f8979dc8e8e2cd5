//! Blob pushes in one request, GET/HEAD/Range/DELETE, and their errors.

mod common;

use berth::oci::digest::{Algorithm, Digest};
use common::{sha256, Body, Server};
use http::{Method, StatusCode};

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

#[tokio::test]
async fn monolithic_push_then_get_and_head() {
    let s = Server::start().await;
    let blob = data(5000);
    let digest = s.push_blob("lib/app", &blob).await;

    let r = s.get(&format!("/v2/lib/app/blobs/{digest}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], &blob[..]);
    assert_eq!(r.header("content-length"), "5000");
    assert_eq!(r.header("docker-content-digest"), digest.to_string());
    assert_eq!(r.header("etag"), format!("\"{digest}\""));
    assert_eq!(r.header("accept-ranges"), "bytes");
    assert_eq!(r.header("content-type"), "application/octet-stream");

    let r = s.head(&format!("/v2/lib/app/blobs/{digest}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), "5000");
    assert_eq!(r.header("docker-content-digest"), digest.to_string());

    // A client that escapes the digest's colon reaches the same blob.
    let escaped = digest.to_string().replace(':', "%3A");
    let r = s.get(&format!("/v2/lib/app/blobs/{escaped}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.len(), blob.len());

    // Not linked into another repository.
    let r = s.get(&format!("/v2/other/blobs/{digest}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "BLOB_UNKNOWN");
    let r = s.head(&format!("/v2/other/blobs/{digest}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn large_monolithic_push_streams_through_a_session() {
    let s = Server::start().await;
    let blob = data(3 << 20);
    let digest = s.push_blob("big", &blob).await;
    let r = s.get(&format!("/v2/big/blobs/{digest}")).await;
    assert_eq!(r.body.len(), blob.len());
    assert!(r.body[..] == blob[..]);
    // The same streamed path with a wrong digest stores nothing and leaves no session.
    let wrong = sha256(b"not this");
    let r = s
        .send(
            Method::POST,
            &format!("/v2/big/blobs/uploads/?digest={wrong}"),
            &[],
            Body::full(data(2 << 20)),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    let r = s.get("/metrics").await;
    assert!(r.text().contains("berth_upload_sessions_open 0"));
    s.stop().await;
}

#[tokio::test]
async fn ranges() {
    let s = Server::start().await;
    let blob = data(1000);
    let digest = s.push_blob("r", &blob).await;
    let path = format!("/v2/r/blobs/{digest}");
    let cases = [
        ("bytes=0-99", 0, 100),
        ("bytes=900-", 900, 1000),
        ("bytes=-10", 990, 1000),
        ("bytes=995-5000", 995, 1000),
    ];
    for (range, start, end) in cases {
        let r = s
            .send(Method::GET, &path, &[("range", range)], Body::Empty)
            .await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(&r.body[..], &blob[start..end], "{range}");
        assert_eq!(
            r.header("content-range"),
            format!("bytes {start}-{}/1000", end - 1)
        );
        assert_eq!(r.header("content-length"), (end - start).to_string());
    }
    for bad in [
        "bytes=1000-",
        "bytes=5-2",
        "bytes=0-1,4-5",
        "lines=1-2",
        "bytes=abc",
    ] {
        let r = s
            .send(Method::GET, &path, &[("range", bad)], Body::Empty)
            .await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        assert_eq!(r.header("content-range"), "bytes */1000");
    }
    s.stop().await;
}

#[tokio::test]
async fn conditional_get_by_etag() {
    let s = Server::start().await;
    let digest = s.push_blob("e", b"etag me").await;
    let path = format!("/v2/e/blobs/{digest}");
    let tag = format!("\"{digest}\"");
    let r = s
        .send(Method::GET, &path, &[("if-none-match", &tag)], Body::Empty)
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn delete_unlinks_from_the_repository() {
    let s = Server::start().await;
    let digest = s.push_blob("d", b"doomed").await;
    let path = format!("/v2/d/blobs/{digest}");
    assert_eq!(s.delete(&path).await.status, StatusCode::ACCEPTED);
    let r = s.get(&path).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "BLOB_UNKNOWN");
    let r = s.delete(&path).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "BLOB_UNKNOWN");
    s.stop().await;
}

#[tokio::test]
async fn digest_mismatch_and_bad_digests_store_nothing() {
    let s = Server::start().await;
    let wrong = sha256(b"something else");
    let r = s
        .send(
            Method::POST,
            &format!("/v2/x/blobs/uploads/?digest={wrong}"),
            &[],
            Body::full(b"payload".to_vec()),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    assert_eq!(
        s.get(&format!("/v2/x/blobs/{wrong}")).await.status,
        StatusCode::NOT_FOUND
    );
    let actual = sha256(b"payload");
    assert_eq!(
        s.get(&format!("/v2/x/blobs/{actual}")).await.status,
        StatusCode::NOT_FOUND
    );

    for bad in ["sha256:1234", "sha256:XYZ", "nocolon", "sha256:"] {
        let r = s.get(&format!("/v2/x/blobs/{bad}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.error_code(), "DIGEST_INVALID", "{bad}");
        let r = s
            .send(
                Method::POST,
                &format!("/v2/x/blobs/uploads/?digest={bad}"),
                &[],
                Body::full(b"p".to_vec()),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // Well formed, but an algorithm the registry does not implement: 400 DIGEST_INVALID, as
    // the spec and distribution answer, for a pull, a push and an announced algorithm.
    let r = s
        .get(&format!("/v2/x/blobs/sha384:{}", "a".repeat(96)))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    let r = s
        .send(
            Method::POST,
            &format!("/v2/x/blobs/uploads/?digest=blake3:{}", "a".repeat(64)),
            &[],
            Body::full(b"p".to_vec()),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    let r = s
        .send(
            Method::POST,
            "/v2/x/blobs/uploads/?digest-algorithm=sha384",
            &[],
            Body::Empty,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    for alg in ["sha256", "sha512"] {
        let r = s
            .send(
                Method::POST,
                &format!("/v2/x/blobs/uploads/?digest-algorithm={alg}"),
                &[],
                Body::Empty,
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{alg}");
        let r = s.delete(r.header("location")).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
    let r = s.get("/metrics").await;
    assert!(r.text().contains("berth_upload_sessions_open 0"));
    s.stop().await;
}

#[tokio::test]
async fn sha512_digests() {
    let s = Server::start().await;
    let blob = b"sixty-four bytes of hash".to_vec();
    let digest = Digest::of(Algorithm::Sha512, &blob);
    let r = s
        .send(
            Method::POST,
            &format!("/v2/s/blobs/uploads/?digest={digest}"),
            &[],
            Body::full(blob.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.header("location"), format!("/v2/s/blobs/{digest}"));
    let r = s.get(&format!("/v2/s/blobs/{digest}")).await;
    assert_eq!(&r.body[..], &blob[..]);
    assert_eq!(r.header("docker-content-digest"), digest.to_string());
    s.stop().await;
}

#[tokio::test]
async fn empty_blob() {
    let s = Server::start().await;
    let digest = s.push_blob("empty", b"").await;
    let r = s.get(&format!("/v2/empty/blobs/{digest}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-length"), "0");
    assert!(r.body.is_empty());
    s.stop().await;
}
