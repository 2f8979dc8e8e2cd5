//! Basic auth and Harbor's project rules over HTTP: roles, public and private projects, the
//! catalog per caller, cross-repository mounts that must not leak, quotas, immutable tags,
//! the failed-login limit, the audit log, and the admin-only endpoints.

mod common;

use berth::config::AuthMode;
use common::auth::{self, basic, ADMIN_PW, ALICE_PW, BOB_PW, CAROL_PW};
use common::{Body, Server, OCI_MANIFEST};
use http::{Method, StatusCode};
use serde_json::{json, Value};

async fn send(
    server: &Server,
    method: Method,
    path: &str,
    who: Option<&str>,
    body: Body,
) -> common::Resp {
    let headers: Vec<(&str, &str)> = who.map(|a| ("authorization", a)).into_iter().collect();
    server.send(method, path, &headers, body).await
}

async fn push_blob(server: &Server, repo: &str, who: &str, data: &[u8]) -> common::Resp {
    let digest = common::sha256(data);
    send(
        server,
        Method::POST,
        &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
        Some(who),
        Body::full(data.to_vec()),
    )
    .await
}

/// Pushes a config and a layer as `who` and the manifest under `tag`; returns the manifest.
async fn push_image(
    server: &Server,
    repo: &str,
    who: &str,
    tag: &str,
    seed: &str,
) -> (common::Resp, Vec<u8>) {
    let config = format!("{{\"seed\":\"{seed}\"}}");
    let layer = format!("layer of {seed}");
    for data in [config.as_bytes(), layer.as_bytes()] {
        let r = push_blob(server, repo, who, data).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
    let manifest = common::image_manifest(
        &common::sha256(config.as_bytes()),
        config.len(),
        &[(&common::sha256(layer.as_bytes()), layer.len())],
        "",
    );
    let r = server
        .send(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("authorization", who), ("content-type", OCI_MANIFEST)],
            Body::full(manifest.clone()),
        )
        .await;
    (r, manifest)
}

fn codes(r: &common::Resp) -> String {
    r.text()
}

#[tokio::test]
async fn roles_projects_and_the_catalog() {
    let server = auth::start(AuthMode::Basic, |_| {}).await;
    let (alice, bob, carol) = (
        basic("alice", ALICE_PW),
        basic("bob", BOB_PW),
        basic("carol", CAROL_PW),
    );

    let r = send(&server, Method::GET, "/v2/", None, Body::Empty).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("www-authenticate"), "Basic realm=\"berth\"");
    let r = send(
        &server,
        Method::GET,
        "/v2/",
        Some(&basic("alice", "wrong")),
        Body::Empty,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(codes(&r).contains("UNAUTHORIZED"));

    // A developer pushes; a guest pulls but may not push; a limited guest pulls, never lists.
    let (r, _) = push_image(&server, "team/app", &alice, "v1", "a").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = send(
        &server,
        Method::GET,
        "/v2/team/app/manifests/v1",
        Some(&bob),
        Body::Empty,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = push_blob(&server, "team/app", &bob, b"guest layer").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(codes(&r).contains("DENIED"), "{}", r.text());
    let r = send(
        &server,
        Method::GET,
        "/v2/team/app/tags/list",
        Some(&bob),
        Body::Empty,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(
        &server,
        Method::GET,
        "/v2/team/app/manifests/v1",
        Some(&carol),
        Body::Empty,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(
        &server,
        Method::GET,
        "/v2/team/app/tags/list",
        Some(&carol),
        Body::Empty,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A developer may not delete.
    let r = send(
        &server,
        Method::DELETE,
        "/v2/team/app/manifests/v1",
        Some(&alice),
        Body::Empty,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Private pull without login: 401 with a challenge; a public project: anyone pulls.
    let r = send(
        &server,
        Method::GET,
        "/v2/team/app/manifests/v1",
        None,
        Body::Empty,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let (r, _) = push_image(&server, "open/tool", &alice, "v1", "o").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = send(
        &server,
        Method::GET,
        "/v2/open/tool/manifests/v1",
        None,
        Body::Empty,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    // Pushing into a project that does not exist needs the right to create it (admins).
    let r = push_blob(&server, "newproj/app", &alice, b"layer").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    let admin = basic("admin", ADMIN_PW);
    let (r, _) = push_image(&server, "newproj/app", &admin, "v1", "n").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());

    // The catalog shows each caller what they may list.
    let catalog = |who: &str| {
        let who = who.to_owned();
        let server = &server;
        async move {
            let r = send(server, Method::GET, "/v2/_catalog", Some(&who), Body::Empty).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            r.json()["repositories"].clone()
        }
    };
    assert_eq!(
        catalog(&admin).await,
        json!(["newproj/app", "open/tool", "team/app"])
    );
    assert_eq!(catalog(&bob).await, json!(["open/tool", "team/app"]));
    assert_eq!(catalog(&carol).await, json!(["open/tool"]));
    let r = send(&server, Method::GET, "/v2/_catalog", None, Body::Empty).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Metrics and the admin endpoints are for system administrators; health stays open.
    let r = send(&server, Method::GET, "/metrics", Some(&alice), Body::Empty).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(&server, Method::GET, "/metrics", None, Body::Empty).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = send(&server, Method::GET, "/metrics", Some(&admin), Body::Empty).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(&server, Method::GET, "/healthz", None, Body::Empty).await;
    assert_eq!(r.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn mounts_only_link_what_the_caller_may_pull() {
    let server = auth::start(AuthMode::Basic, |_| {}).await;
    let admin = basic("admin", ADMIN_PW);
    let alice = basic("alice", ALICE_PW);
    let secret = b"a layer only ops may read";
    let r = push_blob(&server, "ops/secret", &admin, secret).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let digest = common::sha256(secret);

    // From a repository alice cannot read, and with no `from` at all: no link, an upload.
    for query in [
        format!("mount={digest}&from=ops/secret"),
        format!("mount={digest}"),
    ] {
        let r = send(
            &server,
            Method::POST,
            &format!("/v2/team/app/blobs/uploads/?{query}"),
            Some(&alice),
            Body::Empty,
        )
        .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{query}: {}", r.text());
        let r = send(
            &server,
            Method::HEAD,
            &format!("/v2/team/app/blobs/{digest}"),
            Some(&alice),
            Body::Empty,
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{query}: the blob leaked into team/app"
        );
    }
    // From a repository she can read: linked.
    let r = push_blob(&server, "team/base", &alice, b"shared layer").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let shared = common::sha256(b"shared layer");
    let r = send(
        &server,
        Method::POST,
        &format!("/v2/team/app/blobs/uploads/?mount={shared}&from=team/base"),
        Some(&alice),
        Body::Empty,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    server.stop().await;
}

#[tokio::test]
async fn quotas_and_immutable_tags() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    auth::seed(&data);
    {
        use berth::auth::db::AuthDb;
        use berth::auth::model::{ProjectName, TagPattern};
        let db = AuthDb::open(&data).unwrap();
        let team = ProjectName::parse("team").unwrap();
        db.set_quota(&team, Some(2_000)).unwrap();
        db.add_immutable(&team, &TagPattern::parse("v*").unwrap())
            .unwrap();
    }
    let server = Server::start_in(dir, |c| c.auth.mode = AuthMode::Basic).await;
    let alice = basic("alice", ALICE_PW);

    let (r, _) = push_image(&server, "team/app", &alice, "v1", "small").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    // A blob that would pass the quota is refused whole and stays invisible.
    let big = vec![7u8; 3_000];
    let r = push_blob(&server, "team/app", &alice, &big).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(r.text().contains("quota"), "{}", r.text());
    let r = send(
        &server,
        Method::HEAD,
        &format!("/v2/team/app/blobs/{}", common::sha256(&big)),
        Some(&alice),
        Body::Empty,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Chunked, through a session: the same.
    let r = send(
        &server,
        Method::POST,
        "/v2/team/app/blobs/uploads/",
        Some(&alice),
        Body::Empty,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let location = r.header("location").to_owned();
    let r = send(
        &server,
        Method::PATCH,
        &location,
        Some(&alice),
        Body::full(big.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let location = r.header("location").to_owned();
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = send(
        &server,
        Method::PUT,
        &format!("{location}{sep}digest={}", common::sha256(&big)),
        Some(&alice),
        Body::Empty,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());

    // v1 is immutable: it neither moves nor goes; a mutable tag does both.
    let (r, _) = push_image(&server, "team/app", &alice, "v1", "other").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(r.text().contains("immutable"), "{}", r.text());
    let (r, _) = push_image(&server, "team/app", &alice, "latest", "small").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let admin = basic("admin", ADMIN_PW);
    let r = send(
        &server,
        Method::DELETE,
        "/v2/team/app/manifests/v1",
        Some(&admin),
        Body::Empty,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    let r = send(
        &server,
        Method::DELETE,
        "/v2/team/app/manifests/latest",
        Some(&admin),
        Body::Empty,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    server.stop().await;
}

#[tokio::test]
async fn failed_logins_are_limited_and_audited_without_secrets() {
    let server = auth::start(AuthMode::Basic, |_| {}).await;
    let mut limited = None;
    for i in 0..40 {
        let r = send(
            &server,
            Method::GET,
            "/v2/",
            Some(&basic("alice", &format!("guess-{i}"))),
            Body::Empty,
        )
        .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(codes(&r).contains("TOOMANYREQUESTS"));
            limited = Some(r.header("retry-after").parse::<u64>().unwrap());
            break;
        }
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let retry = limited.expect("the failed-login limit never engaged");
    assert!(retry >= 1);
    // Passwords are never stored, not even the wrong ones in the failure events.
    let text = std::fs::read(server.dir.path().join("data").join("auth.redb")).unwrap();
    assert!(
        !text.windows(6).any(|w| w == b"guess-"),
        "a password reached auth.redb"
    );
    server.stop().await;
}

#[tokio::test]
async fn admin_api_manages_projects_and_reads_the_audit_log() {
    let server = auth::start(AuthMode::Basic, |_| {}).await;
    let admin = basic("admin", ADMIN_PW);
    let alice = basic("alice", ALICE_PW);
    let op = |v: Value| Body::full(serde_json::to_vec(&v).unwrap());
    let r = send(
        &server,
        Method::POST,
        "/api/v1/ops",
        Some(&alice),
        op(json!({"op":"project-list"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(
        &server,
        Method::POST,
        "/api/v1/ops",
        Some(&admin),
        op(json!({"op":"project-add","name":"qa","public":false,"quota_bytes":null})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = send(
        &server,
        Method::POST,
        "/api/v1/ops",
        Some(&admin),
        op(json!({"op":"member-add","project":"qa","user":"alice","role":"developer"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let (r, _) = push_image(&server, "qa/app", &alice, "v1", "qa").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = send(
        &server,
        Method::GET,
        "/v2/qa/app/manifests/v1",
        Some(&alice),
        Body::Empty,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    let r = send(
        &server,
        Method::POST,
        "/api/v1/ops",
        Some(&admin),
        op(json!({"op":"project-list"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let projects = r.json();
    let qa = projects["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "qa")
        .unwrap()
        .clone();
    assert!(qa["used_bytes"].as_u64().unwrap() > 0, "{qa}");

    let r = send(
        &server,
        Method::POST,
        "/api/v1/ops",
        Some(&admin),
        op(json!({"op":"audit","filter":{}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let text = r.text();
    for needle in [
        "\"push\"",
        "\"pull\"",
        "\"member_add\"",
        "\"project_create\"",
        "qa/app",
    ] {
        assert!(
            text.contains(needle),
            "no {needle} in the audit log: {text}"
        );
    }
    for secret in [ADMIN_PW, ALICE_PW] {
        assert!(!text.contains(secret), "a password in the audit log");
    }
    server.stop().await;
}

/// Basic auth sends the password with every request; a registry that hashed it each time
/// (argon2id costs tens of milliseconds) would collapse under load. One hash per credential.
#[tokio::test]
async fn a_password_is_hashed_once_not_per_request() {
    let server = auth::start(AuthMode::Basic, |_| {}).await;
    let admin = basic("admin", ADMIN_PW);
    let alice = basic("alice", ALICE_PW);
    let hashes = |text: String| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("berth_auth_password_hashes_total "))
            .expect("no berth_auth_password_hashes_total in /metrics")
            .parse()
            .unwrap()
    };
    let r = send(&server, Method::GET, "/metrics", Some(&admin), Body::Empty).await;
    let before = hashes(r.text());
    for _ in 0..50 {
        let r = send(
            &server,
            Method::GET,
            "/v2/team/app/tags/list",
            Some(&alice),
            Body::Empty,
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    }
    let r = send(&server, Method::GET, "/metrics", Some(&admin), Body::Empty).await;
    assert_eq!(hashes(r.text()) - before, 1, "alice's 50 requests");
    server.stop().await;
}

/// A CNCF distribution htpasswd file (bcrypt) keeps working: its users log in and may do
/// what they could there; other entries and wrong passwords are refused.
#[tokio::test]
async fn htpasswd_users_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash("legacy-pw", 4).unwrap();
    std::fs::write(&htpasswd, format!("legacy:{hash}\nplain:{{SHA}}abc\n")).unwrap();
    let server = auth::start(AuthMode::Basic, |c| c.auth.htpasswd = Some(htpasswd)).await;
    let legacy = basic("legacy", "legacy-pw");
    let (r, _) = push_image(&server, "old/app", &legacy, "v1", "legacy").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = send(
        &server,
        Method::GET,
        "/v2/old/app/manifests/v1",
        Some(&legacy),
        Body::Empty,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(
        &server,
        Method::GET,
        "/v2/",
        Some(&basic("legacy", "nope")),
        Body::Empty,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = send(
        &server,
        Method::GET,
        "/v2/",
        Some(&basic("plain", "abc")),
        Body::Empty,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

/// A first start over an empty data directory: the administrator from BERTH_ADMIN_PASSWORD,
/// and Harbor's public `library` project for single-component names.
#[tokio::test]
async fn first_start_creates_admin_and_a_public_library() {
    // Each nextest test is a process of its own, so the variable reaches only this server.
    std::env::set_var("BERTH_ADMIN_PASSWORD", "first-start-pw");
    let server = Server::start_with(|c| c.auth.mode = AuthMode::Basic).await;
    let admin = basic("admin", "first-start-pw");
    let (r, _) = push_image(&server, "app", &admin, "v1", "library").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = send(
        &server,
        Method::GET,
        "/v2/app/manifests/v1",
        None,
        Body::Empty,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    server.stop().await;
}
