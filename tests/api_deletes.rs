//! Delete safety: with deletes turned off every manifest, tag and blob DELETE is 405
//! `UNSUPPORTED` and nothing goes away; with them on, a blob that a manifest of the same
//! repository still references is refused with 403 `DENIED` naming the manifest.

mod common;

use common::*;
use http::StatusCode;

/// Pushes an image and returns (manifest digest, config digest, layer digest).
async fn push_image(s: &Server, name: &str, tag: &str) -> (String, String, String) {
    let config = format!("{{\"seed\":\"{name}\"}}");
    let c = s.push_blob(name, config.as_bytes()).await;
    let layer = format!("layer of {name}");
    let l = s.push_blob(name, layer.as_bytes()).await;
    let body = image_manifest(&c, config.len(), &[(&l, layer.len())], "");
    let r = s.put_manifest(name, tag, OCI_MANIFEST, &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    (sha256(&body).to_string(), c.to_string(), l.to_string())
}

#[tokio::test]
async fn with_deletes_off_every_delete_is_405_unsupported() {
    let s = Server::start_with(|c| c.policy.deletes = false).await;
    let (manifest, config, _) = push_image(&s, "keep/app", "v1").await;
    let loose = s.push_blob("keep/app", b"referenced by nothing").await;

    for path in [
        format!("/v2/keep/app/blobs/{loose}"),
        format!("/v2/keep/app/blobs/{config}"),
        format!("/v2/keep/app/manifests/{manifest}"),
        "/v2/keep/app/manifests/v1".to_owned(),
    ] {
        let r = s.delete(&path).await;
        assert_eq!(
            r.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{path}: {}",
            r.text()
        );
        assert_eq!(r.error_code(), "UNSUPPORTED", "{path}");
        assert!(r.text().contains("deletes are disabled"), "{}", r.text());
    }
    // Everything is still there.
    assert_eq!(
        s.get("/v2/keep/app/manifests/v1").await.status,
        StatusCode::OK
    );
    let r = s.get(&format!("/v2/keep/app/blobs/{loose}")).await;
    assert_eq!(r.status, StatusCode::OK);
    // Cancelling an upload session is not a delete of content.
    let location = s.start_upload("keep/app").await;
    assert_eq!(s.delete(&location).await.status, StatusCode::NO_CONTENT);
    s.stop().await;
}

#[tokio::test]
async fn with_deletes_on_unreferenced_content_goes() {
    let s = Server::start().await;
    push_image(&s, "del/app", "v1").await;
    let loose = s.push_blob("del/app", b"referenced by nothing").await;
    let r = s.delete(&format!("/v2/del/app/blobs/{loose}")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let r = s.delete("/v2/del/app/manifests/v1").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    s.stop().await;
}

/// Needs `Store::manifests_referencing` from the garbage collection engine.
#[tokio::test]
async fn a_blob_a_manifest_of_the_repository_references_is_not_deleted() {
    let s = Server::start().await;
    let (manifest, config, layer) = push_image(&s, "ref/app", "v1").await;

    for blob in [&config, &layer] {
        let r = s.delete(&format!("/v2/ref/app/blobs/{blob}")).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
        assert_eq!(r.error_code(), "DENIED");
        let detail = r.json()["errors"][0]["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains(&manifest), "{detail}");
        assert!(detail.contains(blob.as_str()), "{detail}");
        let r = s.get(&format!("/v2/ref/app/blobs/{blob}")).await;
        assert_eq!(r.status, StatusCode::OK);
    }

    // Only manifests of the same repository count: the same bytes pushed to another
    // repository, referenced by nothing there, may go.
    let layer_bytes = b"layer of ref/app";
    let other = s.push_blob("ref/other", layer_bytes).await;
    assert_eq!(other.to_string(), layer);
    let r = s.delete(&format!("/v2/ref/other/blobs/{layer}")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());

    // Once the manifest is gone, so may its blobs be.
    let r = s.delete(&format!("/v2/ref/app/manifests/{manifest}")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let r = s.delete(&format!("/v2/ref/app/blobs/{layer}")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    s.stop().await;
}
