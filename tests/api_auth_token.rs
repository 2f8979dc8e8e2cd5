//! The docker token flow end to end over HTTP, as podman, skopeo and containerd drive it: an
//! unauthenticated request gets a Bearer challenge naming the realm, service and scope; the
//! token endpoint grants what the caller may have (never an error for asking too much); the
//! registry honours exactly what the token grants. Then every token attack of the issue is
//! sent and refused.

mod common;

use berth::auth::claims::{Claims, ResourceActions};
use berth::auth::jwt::{sign, TokenKind};
use berth::auth::keys::SigningKey;
use berth::auth::public::Alg;
use berth::config::AuthMode;
use common::auth::{self, bearer, granted, ALICE_PW, BOB_PW};
use common::{Body, Server};
use http::{Method, StatusCode};
use serde_json::Value;

async fn get(server: &Server, path: &str, authorization: Option<&str>) -> common::Resp {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| ("authorization", a))
        .into_iter()
        .collect();
    server.send(Method::GET, path, &headers, Body::Empty).await
}

fn challenge(r: &common::Resp) -> String {
    r.header("www-authenticate").to_owned()
}

#[tokio::test]
async fn challenge_token_and_retry() {
    let server = auth::start(AuthMode::Token, |_| {}).await;
    let host = server.addr.to_string();

    // The ping and an anonymous pull of a private repository both send the client to /token.
    let r = get(&server, "/v2/", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(&r),
        format!("Bearer realm=\"http://{host}/token\",service=\"berth\"")
    );
    let r = get(&server, "/v2/team/app/tags/list", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(&r),
        format!("Bearer realm=\"http://{host}/token\",service=\"berth\",scope=\"repository:team/app:pull\"")
    );
    assert!(r.text().contains("UNAUTHORIZED"), "{}", r.text());

    // Behind a TLS proxy the realm is the address the client used.
    let r = server
        .send(
            Method::GET,
            "/v2/",
            &[
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "registry.example:8443"),
            ],
            Body::Empty,
        )
        .await;
    assert!(
        challenge(&r).starts_with("Bearer realm=\"https://registry.example:8443/token\""),
        "{}",
        challenge(&r)
    );

    // alice (developer in team) pushes and pulls with a token for exactly that.
    let token = auth::access_token(
        &server,
        "alice",
        ALICE_PW,
        &["repository:team/app:pull,push"],
    )
    .await;
    let mut granted_actions = granted(&token, "repository", "team/app");
    granted_actions.sort();
    assert_eq!(granted_actions, ["pull", "push"]);
    let a = bearer(&token);
    let headers = [("authorization", a.as_str())];
    let blob = b"layer bytes";
    let digest = common::sha256(blob);
    let r = server
        .send(
            Method::POST,
            &format!("/v2/team/app/blobs/uploads/?digest={digest}"),
            &headers,
            Body::full(blob.to_vec()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = get(&server, &format!("/v2/team/app/blobs/{digest}"), Some(&a)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], blob);
    let r = get(&server, "/v2/", Some(&a)).await;
    assert_eq!(r.status, StatusCode::OK);

    // Asking for too much is not an error: bob (guest) gets pull only, and his push is refused
    // with DENIED, not sent round the token loop again.
    let token = auth::access_token(
        &server,
        "bob",
        BOB_PW,
        &["repository:team/app:pull,push,delete"],
    )
    .await;
    assert_eq!(granted(&token, "repository", "team/app"), ["pull"]);
    let b = bearer(&token);
    let r = get(&server, &format!("/v2/team/app/blobs/{digest}"), Some(&b)).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = server
        .send(
            Method::POST,
            "/v2/team/app/blobs/uploads/",
            &[("authorization", b.as_str())],
            Body::Empty,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(r.text().contains("DENIED"));

    // A token for team/app says nothing about another repository: alice may pull team/other,
    // so she is sent back for a token with that scope.
    let r = get(&server, "/v2/team/other/tags/list", Some(&a)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        challenge(&r).contains("error=\"insufficient_scope\""),
        "{}",
        challenge(&r)
    );
    // ...and ops/app, where she may do nothing, is DENIED.
    let r = get(&server, "/v2/ops/app/tags/list", Some(&a)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Anonymous tokens: a public project's pull is granted, a private one's is not.
    let (status, body) = auth::token(
        &server,
        None,
        &["repository:open/app:pull", "repository:team/app:pull"],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let anon = body["token"].as_str().unwrap();
    assert_eq!(granted(anon, "repository", "open/app"), ["pull"]);
    assert!(granted(anon, "repository", "team/app").is_empty());

    // Wrong password: 401 from the token endpoint.
    let (status, _) = auth::token(
        &server,
        Some(("alice", "nope")),
        &["repository:team/app:pull"],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn oauth2_password_and_refresh_grants() {
    let server = auth::start(AuthMode::Token, |_| {}).await;
    let form = format!(
        "grant_type=password&service=berth&client_id=containerd&access_type=offline&username=alice&password={ALICE_PW}&scope=repository%3Ateam%2Fapp%3Apull"
    );
    let r = server
        .send(
            Method::POST,
            "/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            Body::full(form.into_bytes()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let body: Value = r.json();
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert!(body["expires_in"].as_u64().unwrap() >= 60);
    assert!(body["issued_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(granted(&access, "repository", "team/app"), ["pull"]);

    // The refresh token buys a new access token...
    let form = format!("grant_type=refresh_token&service=berth&refresh_token={refresh}&scope=repository%3Ateam%2Fapp%3Apull%2Cpush");
    let r = server
        .send(Method::POST, "/token", &[], Body::full(form.into_bytes()))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let again = r.json()["access_token"].as_str().unwrap().to_owned();
    let mut actions = granted(&again, "repository", "team/app");
    actions.sort();
    assert_eq!(actions, ["pull", "push"]);
    // ...but is no access token itself, and an access token is no refresh token.
    let r = get(&server, "/v2/team/app/tags/list", Some(&bearer(&refresh))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let form = format!("grant_type=refresh_token&service=berth&refresh_token={access}");
    let r = server
        .send(Method::POST, "/token", &[], Body::full(form.into_bytes()))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    // GET with offline_token=true hands out a refresh token too.
    let (status, body) = auth::token(
        &server,
        Some(("alice", ALICE_PW)),
        &[],
        "&offline_token=true",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["refresh_token"].is_string());
    server.stop().await;
}

/// Claims as berth issues them, for alice on team/app.
fn claims(exp_in: i64) -> Claims {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    Claims {
        iss: "berth".into(),
        sub: "alice".into(),
        aud: vec!["berth".into()],
        exp: (now + exp_in) as u64,
        nbf: None,
        iat: Some(now as u64),
        jti: None,
        access: vec![ResourceActions {
            kind: "repository".into(),
            class: None,
            name: "team/app".into(),
            actions: vec!["pull".into(), "push".into()],
        }],
    }
}

fn b64(data: &[u8]) -> String {
    berth::auth::b64::encode_url(data)
}

/// A token whose header and claims are given as JSON and whose signature is `sig`.
fn forged(header: &Value, claims: &Claims, sign_input: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let head = b64(&serde_json::to_vec(header).unwrap());
    let body = b64(&serde_json::to_vec(claims).unwrap());
    let input = format!("{head}.{body}");
    let sig = sign_input(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

#[tokio::test]
async fn every_token_attack_is_refused() {
    let server = auth::start(AuthMode::Token, |_| {}).await;
    let real = auth::access_token(&server, "alice", ALICE_PW, &["repository:team/app:pull"]).await;
    let header: Value = serde_json::from_slice(
        &berth::auth::b64::decode_url(real.split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    let kid = header["kid"].as_str().unwrap().to_owned();
    let jwks = get(&server, "/token/jwks.json", None).await.json();
    let public_jwk = jwks["keys"][0].clone();
    let attacker = SigningKey::generate(Alg::EdDSA).unwrap();

    let mut attacks: Vec<(&str, String)> = Vec::new();
    attacks.push((
        "alg none",
        forged(
            &serde_json::json!({"alg":"none","typ":"JWT","kid":kid}),
            &claims(300),
            |_| Vec::new(),
        ),
    ));
    // HS256 keyed with the public key, in the forms a confused verifier might use.
    for secret in [
        serde_json::to_vec(&public_jwk).unwrap(),
        public_jwk["x"].as_str().unwrap_or("").as_bytes().to_vec(),
    ] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
        attacks.push((
            "HS256 with the public key",
            forged(
                &serde_json::json!({"alg":"HS256","typ":"JWT","kid":kid}),
                &claims(300),
                |m| ring::hmac::sign(&key, m).as_ref().to_vec(),
            ),
        ));
    }
    attacks.push((
        "embedded jwk of the signer",
        forged(
            &serde_json::json!({"alg":"EdDSA","typ":"JWT","jwk":attacker.public_jwk()}),
            &claims(300),
            |m| attacker.sign(m).unwrap(),
        ),
    ));
    attacks.push((
        "another key under the real kid",
        forged(
            &serde_json::json!({"alg":"EdDSA","typ":"JWT","kid":kid}),
            &claims(300),
            |m| attacker.sign(m).unwrap(),
        ),
    ));
    attacks.push((
        "another key",
        sign(&attacker, &claims(300), TokenKind::Access).unwrap(),
    ));

    // Tokens signed with berth's own key but wrong claims: load the key the server made.
    let own = SigningKey::load_or_create(&server.dir.path().join("data"), Alg::EdDSA).unwrap();
    assert_eq!(own.kid(), kid);
    attacks.push((
        "expired",
        sign(&own, &claims(-600), TokenKind::Access).unwrap(),
    ));
    let mut c = claims(300);
    c.aud = vec!["another-registry".into()];
    attacks.push(("wrong aud", sign(&own, &c, TokenKind::Access).unwrap()));
    let mut c = claims(300);
    c.iss = "someone-else".into();
    attacks.push(("wrong iss", sign(&own, &c, TokenKind::Access).unwrap()));
    attacks.push((
        "refresh token as access token",
        sign(&own, &claims(300), TokenKind::Refresh).unwrap(),
    ));

    for (what, token) in &attacks {
        let r = get(&server, "/v2/team/app/tags/list", Some(&bearer(token))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.text());
        assert!(
            challenge(&r).contains("error=\"invalid_token\""),
            "{what}: {}",
            challenge(&r)
        );
    }
    // The control: the same claims, properly signed, pass; and a token for team/app does
    // nothing on team/other.
    let good = sign(&own, &claims(300), TokenKind::Access).unwrap();
    let r = get(&server, "/v2/team/app/tags/list", Some(&bearer(&good))).await;
    assert_ne!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    let r = get(&server, "/v2/team/other/tags/list", Some(&bearer(&good))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    server.stop().await;
}

/// Tokens of an external token service (a Harbor, GitLab or Keycloak in front of berth):
/// verified against the configured certificate, issuer and service; their grants alone decide.
#[tokio::test]
async fn tokens_of_an_external_issuer() {
    use std::os::unix::fs::PermissionsExt;
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/auth");
    // The external service's private key, loaded as a signing key from a directory of its own.
    let keydir = tempfile::tempdir().unwrap();
    let keyfile = keydir.path().join(berth::auth::keys::KEY_FILE);
    std::fs::copy(fixtures.join("ec-p256-key.pem"), &keyfile).unwrap();
    std::fs::set_permissions(&keyfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let external = SigningKey::load_or_create(keydir.path(), Alg::ES256).unwrap();
    let cert = fixtures.join("ec-p256-cert.pem");
    let server = auth::start(AuthMode::Token, |c| {
        c.auth.external = Some(("harbor-token-issuer".into(), cert));
    })
    .await;

    let mut c = claims(300);
    c.iss = "harbor-token-issuer".into();
    c.sub = "someone-from-harbor".into();
    let good = sign(&external, &c, TokenKind::Access).unwrap();
    let r = get(&server, "/v2/team/app/tags/list", Some(&bearer(&good))).await;
    assert_ne!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    assert_ne!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    // Its grants bound it: nothing on another repository.
    let r = get(&server, "/v2/ops/app/tags/list", Some(&bearer(&good))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // An external subject named like a local administrator is not one: the token, verified
    // once by the external keys, never comes back as one of berth's own.
    let mut c = claims(300);
    c.iss = "harbor-token-issuer".into();
    c.sub = "admin".into();
    let named_admin = sign(&external, &c, TokenKind::Access).unwrap();
    for _ in 0..2 {
        let r = get(
            &server,
            "/v2/team/app/tags/list",
            Some(&bearer(&named_admin)),
        )
        .await;
        assert_ne!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
        let r = get(&server, "/metrics", Some(&bearer(&named_admin))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    }
    // The same key under berth's issuer name, or for another service, is refused.
    let mut c = claims(300);
    c.iss = "berth".into();
    let wrong_iss = sign(&external, &c, TokenKind::Access).unwrap();
    let mut c = claims(300);
    c.iss = "harbor-token-issuer".into();
    c.aud = vec!["other".into()];
    let wrong_aud = sign(&external, &c, TokenKind::Access).unwrap();
    for token in [wrong_iss, wrong_aud] {
        let r = get(&server, "/v2/team/app/tags/list", Some(&bearer(&token))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    }
    server.stop().await;
}
