//! `Authorization: Basic Og==` (empty user and password), which containers/image (podman,
//! skopeo, buildah) sends after a Basic challenge when it has no credentials, is an anonymous
//! request: it pulls from a public project, gets the challenge for a private one, and never
//! counts as a failed login.

mod common;

use berth::config::AuthMode;
use common::auth::{self, basic, ALICE_PW};
use common::{Body, OCI_MANIFEST};
use http::{Method, StatusCode};

#[tokio::test]
async fn empty_basic_credentials_are_anonymous() {
    let server = auth::start(AuthMode::Basic, |_| {}).await;
    let alice = basic("alice", ALICE_PW);
    let config = b"{}";
    let r = server
        .send(
            Method::POST,
            &format!(
                "/v2/open/tool/blobs/uploads/?digest={}",
                common::sha256(config)
            ),
            &[("authorization", &alice)],
            Body::full(config.to_vec()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let manifest = common::image_manifest(&common::sha256(config), config.len(), &[], "");
    let r = server
        .send(
            Method::PUT,
            "/v2/open/tool/manifests/v1",
            &[("authorization", &alice), ("content-type", OCI_MANIFEST)],
            Body::full(manifest),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());

    let empty = basic("", "");
    assert_eq!(empty, "Basic Og==");
    // More requests than the failed-login limit allows: none of them is a failure.
    for _ in 0..40 {
        let r = server
            .send(
                Method::GET,
                "/v2/open/tool/manifests/v1",
                &[("authorization", &empty), ("accept", OCI_MANIFEST)],
                Body::Empty,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let r = server
        .send(
            Method::GET,
            "/v2/team/app/manifests/v1",
            &[("authorization", &empty)],
            Body::Empty,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert_eq!(r.header("www-authenticate"), "Basic realm=\"berth\"");
    let r = server
        .send(
            Method::PUT,
            "/v2/open/tool/manifests/anonymous",
            &[("authorization", &empty), ("content-type", OCI_MANIFEST)],
            Body::full(b"{}".to_vec()),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());

    // A password without a user name is still a wrong login.
    let r = server
        .send(
            Method::GET,
            "/v2/open/tool/manifests/v1",
            &[("authorization", &basic("", "something"))],
            Body::Empty,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    server.stop().await;
}
