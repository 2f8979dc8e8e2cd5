//! Access-control fixtures for the API scenarios: a data directory seeded with users, projects
//! and members before the server starts, and the headers and token requests clients send.
#![allow(dead_code)]

use std::path::Path;

use berth::auth::db::AuthDb;
use berth::auth::model::{ProjectName, Role, UserName};
use berth::config::{AuthMode, Config};
use http::{Method, StatusCode};
use serde_json::Value;

use super::{Body, Server};

pub const ADMIN_PW: &str = "admin-secret-1";
pub const ALICE_PW: &str = "alice-secret-1";
pub const BOB_PW: &str = "bob-secret-1";
pub const CAROL_PW: &str = "carol-secret-1";

/// `admin` (system admin); project `team` (private) with alice as developer, bob as guest and
/// carol as limitedGuest; project `open` (public) with alice as maintainer; project `ops`
/// (private) with nobody.
pub fn seed(data: &Path) {
    let db = AuthDb::open(data).unwrap();
    let user = |n: &str| UserName::parse(n).unwrap();
    let project = |n: &str| ProjectName::parse(n).unwrap();
    db.add_user(&user("admin"), ADMIN_PW, true).unwrap();
    db.add_user(&user("alice"), ALICE_PW, false).unwrap();
    db.add_user(&user("bob"), BOB_PW, false).unwrap();
    db.add_user(&user("carol"), CAROL_PW, false).unwrap();
    db.add_project(&project("team"), false, None).unwrap();
    db.add_project(&project("open"), true, None).unwrap();
    db.add_project(&project("ops"), false, None).unwrap();
    db.add_member(&project("team"), &user("alice"), Role::Developer)
        .unwrap();
    db.add_member(&project("team"), &user("bob"), Role::Guest)
        .unwrap();
    db.add_member(&project("team"), &user("carol"), Role::LimitedGuest)
        .unwrap();
    db.add_member(&project("open"), &user("alice"), Role::Maintainer)
        .unwrap();
}

/// A server in `mode` over a seeded data directory; `adjust` may change more settings.
pub async fn start(mode: AuthMode, adjust: impl FnOnce(&mut Config)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    seed(&data);
    Server::start_in(dir, |c| {
        c.auth.mode = mode;
        adjust(c);
    })
    .await
}

pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        berth::auth::b64::encode_std(format!("{user}:{password}").as_bytes())
    )
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `GET /token` for `scopes` with Basic credentials (or none); returns the status and body.
pub async fn token(
    server: &Server,
    credentials: Option<(&str, &str)>,
    scopes: &[&str],
    extra: &str,
) -> (StatusCode, Value) {
    let mut path = "/token?service=berth".to_owned();
    for s in scopes {
        path.push_str("&scope=");
        path.push_str(&berth::api::query::encode(s));
    }
    path.push_str(extra);
    let auth = credentials.map(|(u, p)| basic(u, p));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let r = server.send(Method::GET, &path, &headers, Body::Empty).await;
    let body = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, body)
}

/// An access token for `scopes`, which must be issued.
pub async fn access_token(server: &Server, user: &str, password: &str, scopes: &[&str]) -> String {
    let (status, body) = token(server, Some((user, password)), scopes, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

/// The actions a token grants on `kind`/`name`, read from its (unverified) claims.
pub fn granted(token: &str, kind: &str, name: &str) -> Vec<String> {
    let claims = token.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&berth::auth::b64::decode_url(claims).unwrap()).unwrap();
    claims["access"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == kind && r["name"] == name)
        .flat_map(|r| r["actions"].as_array().unwrap().iter())
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}
