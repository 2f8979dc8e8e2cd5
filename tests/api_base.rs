//! The version check, health, metrics, unknown paths and methods, and headers every response
//! carries.

mod common;

use common::{Body, Server};
use http::{Method, StatusCode};

#[tokio::test]
async fn version_check_and_common_headers() {
    let s = Server::start().await;
    for path in ["/v2/", "/v2"] {
        let r = s.get(path).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");
        assert_eq!(r.json(), serde_json::json!({}));
    }
    let r = s.head("/v2/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
    // Errors carry the version header too.
    let r = s.get("/v2/nothing/here/at/all").await;
    assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");
    s.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let s = Server::start().await;
    let r = s.get("/favicon.ico").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "UNSUPPORTED");
    let r = s.send(Method::POST, "/v2/", &[], Body::Empty).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.error_code(), "UNSUPPORTED");
    let r = s
        .send(Method::PATCH, "/v2/a/tags/list", &[], Body::Empty)
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    s.stop().await;
}

#[tokio::test]
async fn bad_names_are_name_invalid() {
    let s = Server::start().await;
    for path in [
        "/v2/UPPER/tags/list",
        "/v2/a__b__c___d/tags/list",
        "/v2/-a/manifests/latest",
        "/v2/a//b/blobs/uploads/",
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(r.error_code(), "NAME_INVALID", "{path}");
    }
    let long = "a".repeat(256);
    let r = s.get(&format!("/v2/{long}/tags/list")).await;
    assert_eq!(r.error_code(), "NAME_INVALID");
    s.stop().await;
}

#[tokio::test]
async fn an_encoded_slash_is_not_a_name_separator() {
    let s = Server::start().await;
    let digest = s.push_blob("a/b", b"layer").await;
    for path in [
        "/v2/a%2Fb/tags/list".to_string(),
        "/v2/a%2fb/manifests/latest".to_string(),
        format!("/v2/a%2Fb/blobs/{digest}"),
        "/v2/a%2Fb/blobs/uploads/".to_string(),
    ] {
        let r = s.get(&path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(r.error_code(), "NAME_INVALID", "{path}");
    }
    let r = s
        .send(Method::POST, "/v2/x%2Fy/blobs/uploads/", &[], Body::Empty)
        .await;
    assert_eq!(r.error_code(), "NAME_INVALID");
    // Other escapes still decode: the digest's colon, and letters.
    let escaped = digest.to_string().replace(':', "%3A");
    let r = s.get(&format!("/v2/a/%62/blobs/{escaped}")).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = s.get("/v2/_catalog").await;
    assert_eq!(r.text(), r#"{"repositories":["a/b"]}"#);
    s.stop().await;
}

#[tokio::test]
async fn health_and_metrics() {
    let s = Server::start().await;
    let r = s.get("/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
    s.push_blob("m/x", b"some bytes").await;
    // containerd's mirror mode adds ?ns=; unknown parameters are ignored.
    let r = s.get("/v2/?ns=docker.io").await;
    assert_eq!(r.status, StatusCode::OK);
    let r = s.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").starts_with("text/plain"));
    let text = r.text();
    for needle in [
        "berth_http_requests_total{route=\"upload_start\",status=\"201\"} 1",
        "berth_http_requests_total{route=\"base\",status=\"200\"} 1",
        "berth_http_request_bytes_total 10",
        "berth_http_request_duration_seconds_bucket{le=\"+Inf\"}",
        "berth_upload_sessions_open 0",
        "berth_store_live_bytes",
        "berth_store_dead_bytes",
        "berth_store_corrupt_reads_total 0",
        "berth_gc_runs_total 0",
        "berth_gc_last_run_timestamp_seconds 0",
        "berth_gc_bytes_reclaimed_total 0",
        "berth_gc_blobs_removed_total 0",
        "berth_gc_manifests_deleted_total 0",
        "berth_gc_segments_compacted_total 0",
        "berth_gc_last_duration_seconds{phase=\"mark\"} 0",
        "berth_gc_last_duration_seconds{phase=\"sweep\"} 0",
        "berth_gc_last_duration_seconds{phase=\"compact\"} 0",
        "berth_scrub_last_timestamp_seconds 0",
        "berth_scrub_corrupt_records_total 0",
        "berth_blobs_quarantined_total 0",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    s.stop().await;
}
