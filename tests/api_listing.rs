//! Tag lists and the catalog: pagination with `n`/`last`, `Link` headers, edges.

mod common;

use common::{Server, OCI_MANIFEST};
use http::StatusCode;
use serde_json::json;

async fn tagged(s: &Server, name: &str, tags: &[&str]) {
    let body = s.image(name, name).await;
    for tag in tags {
        let r = s.put_manifest(name, tag, OCI_MANIFEST, &body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
}

#[tokio::test]
async fn tags_pagination() {
    let s = Server::start().await;
    tagged(&s, "lib/t", &["d", "a", "c", "b", "e"]).await;

    let r = s.get("/v2/lib/t/tags/list").await;
    assert_eq!(
        r.json(),
        json!({"name": "lib/t", "tags": ["a", "b", "c", "d", "e"]})
    );
    assert!(!r.has_header("link"));

    let r = s.get("/v2/lib/t/tags/list?n=2").await;
    assert_eq!(r.json()["tags"], json!(["a", "b"]));
    assert_eq!(
        r.header("link"),
        "</v2/lib/t/tags/list?n=2&last=b>; rel=\"next\""
    );
    let r = s.get("/v2/lib/t/tags/list?n=2&last=b").await;
    assert_eq!(r.json()["tags"], json!(["c", "d"]));
    assert_eq!(
        r.header("link"),
        "</v2/lib/t/tags/list?n=2&last=d>; rel=\"next\""
    );
    let r = s.get("/v2/lib/t/tags/list?n=2&last=d").await;
    assert_eq!(r.json()["tags"], json!(["e"]));
    assert!(!r.has_header("link"));

    // Exactly n left: no next page.
    let r = s.get("/v2/lib/t/tags/list?n=5").await;
    assert_eq!(r.json()["tags"].as_array().unwrap().len(), 5);
    assert!(!r.has_header("link"));
    // `last` need not be a tag that exists; past the end is an empty list.
    let r = s.get("/v2/lib/t/tags/list?last=bb").await;
    assert_eq!(r.json()["tags"], json!(["c", "d", "e"]));
    let r = s.get("/v2/lib/t/tags/list?last=z").await;
    assert_eq!(r.json()["tags"], json!([]));
    let r = s.get("/v2/lib/t/tags/list?n=0").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["tags"], json!([]));
    let r = s.get("/v2/lib/t/tags/list?n=many").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test]
async fn unknown_repository_is_name_unknown() {
    let s = Server::start().await;
    for path in ["/v2/ghost/tags/list", "/v2/ghost/tags/list?n=0"] {
        let r = s.get(path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.error_code(), "NAME_UNKNOWN");
    }
    s.stop().await;
}

#[tokio::test]
async fn catalog_pagination() {
    let s = Server::start().await;
    let r = s.get("/v2/_catalog").await;
    assert_eq!(r.json(), json!({"repositories": []}));
    for name in ["zeta", "alpha", "mid/one", "mid/two"] {
        tagged(&s, name, &["latest"]).await;
    }
    let r = s.get("/v2/_catalog").await;
    assert_eq!(
        r.json()["repositories"],
        json!(["alpha", "mid/one", "mid/two", "zeta"])
    );
    assert!(!r.has_header("link"));
    let r = s.get("/v2/_catalog?n=3").await;
    assert_eq!(
        r.json()["repositories"],
        json!(["alpha", "mid/one", "mid/two"])
    );
    assert_eq!(
        r.header("link"),
        "</v2/_catalog?n=3&last=mid/two>; rel=\"next\""
    );
    let r = s.get("/v2/_catalog?n=3&last=mid/two").await;
    assert_eq!(r.json()["repositories"], json!(["zeta"]));
    assert!(!r.has_header("link"));
    let r = s.get("/v2/_catalog?n=0").await;
    assert_eq!(r.json()["repositories"], json!([]));
    s.stop().await;
}
