//! Token mode with oras-py: `login` stores the credentials, push and pull of a private project
//! use them (pull through the token endpoint), a pull without them is refused with 401, a
//! guest pulls but its push is refused with 403, and a public project is pulled anonymously.
//!
//! oras-py 0.2.x cannot push through its token backend to a registry that answers a token
//! lacking `push` with 401 `insufficient_scope` (the distribution token spec, and CNCF
//! distribution, do that too): it keeps the first token it gets, for `pull` on the blob HEAD,
//! and re-sends that same token after the upload POST's 401 (it only asks again after a 403).
//! berth also accepts Basic credentials on `/v2/` in token mode, so pushes here use oras-py's
//! basic backend with the same stored login; pulls use the token backend. (Without any
//! credentials, the basic backend retries its refused request with growing pauses for minutes,
//! so an anonymous push is not tried here; anonymous refusals are covered by the pull.)

mod e2e;

use e2e::auth::{
    random_file, statuses, AuthRegistry, ALICE, ALICE_PASSWORD, GUEST, GUEST_PASSWORD, PRIVATE,
    PUBLIC,
};
use e2e::cmd::{run_expect_failure, run_with_input};
use e2e::python::{oras, oras_json};
use std::path::Path;
use std::process::Command;

/// oras_client.py with its own HOME (oras-py also reads `~/.docker/config.json`) and, when
/// given, the credentials file `login` wrote.
fn client(home: &Path, config: Option<&Path>) -> Command {
    let mut c = oras(None);
    c.env("HOME", home);
    if let Some(config) = config {
        c.arg("--auth-config").arg(config);
    }
    c
}

fn login(home: &Path, config: &Path, host: &str, user: &str, password: &str) {
    let out = run_with_input(
        client(home, Some(config)).args(["login", host, "--username", user, "--password-stdin"]),
        &format!("{password}\n"),
    );
    assert!(out.contains("Login Succeeded"), "{out}");
    let stored = std::fs::read_to_string(config).unwrap();
    assert!(stored.contains(host), "{stored}");
}

#[test]
fn oras_login_push_pull_private_guest_and_public() {
    let ar = AuthRegistry::start("token", None);
    let host = ar.host().to_string();
    let work = e2e::workdir();
    let w = work.path();
    let home = w.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let payload = random_file(&w.join("payload.bin"), 300 * 1024);
    let bytes = std::fs::read(&payload).unwrap();
    let target = format!("{host}/{PRIVATE}/artifact:v1");

    let manifest_path = format!("/v2/{PRIVATE}/artifact/manifests/v1");
    let alice = w.join("alice.json");
    login(&home, &alice, &host, ALICE, ALICE_PASSWORD);
    let pushed = oras_json(
        client(&home, Some(&alice))
            .args(["--auth-backend", "basic", "push-files", &target])
            .arg(&payload),
    );
    let digest = pushed["digest"].as_str().unwrap().to_string();
    assert_eq!(statuses(&ar.reg, "PUT", &manifest_path).last(), Some(&201));

    let tokens = statuses(&ar.reg, "GET", "/token").len();
    let out = w.join("pulled");
    oras_json(
        client(&home, Some(&alice))
            .args(["pull", &target])
            .arg(&out),
    );
    assert_eq!(std::fs::read(out.join("payload.bin")).unwrap(), bytes);
    let issued = statuses(&ar.reg, "GET", "/token");
    assert!(
        issued.len() > tokens && issued[tokens..].iter().all(|s| *s == 200),
        "the pull's token requests: {issued:?}"
    );
    let served = oras_json(client(&home, Some(&alice)).args(["manifest", &target]));
    assert_eq!(served["computed_digest"], digest.as_str());

    // Without the stored login the private artifact is refused (401), not found or served.
    let before = statuses(&ar.reg, "GET", &manifest_path).len();
    run_expect_failure(
        client(&home, None)
            .args(["pull", &target])
            .arg(w.join("anonymous")),
    );
    let after = statuses(&ar.reg, "GET", &manifest_path);
    assert!(
        after.len() > before && after[before..].iter().all(|s| *s == 401),
        "{after:?}"
    );

    // The guest pulls, and its push is refused with 403.
    let guest = w.join("guest.json");
    login(&home, &guest, &host, GUEST, GUEST_PASSWORD);
    let guest_out = w.join("guest-pulled");
    oras_json(
        client(&home, Some(&guest))
            .args(["pull", &target])
            .arg(&guest_out),
    );
    assert_eq!(std::fs::read(guest_out.join("payload.bin")).unwrap(), bytes);
    let err = run_expect_failure(
        client(&home, Some(&guest))
            .args(["--auth-backend", "basic", "push-files"])
            .arg(format!("{host}/{PRIVATE}/guest:v1"))
            .arg(&payload),
    );
    let uploads = statuses(
        &ar.reg,
        "POST",
        &format!("/v2/{PRIVATE}/guest/blobs/uploads/"),
    );
    assert!(uploads.contains(&403), "{uploads:?}\n{err}");
    assert!(!uploads.contains(&202), "{uploads:?}");

    // A public project: alice pushes, oras-py pulls it with no credentials at all.
    let public = format!("{host}/{PUBLIC}/artifact:v1");
    oras_json(
        client(&home, Some(&alice))
            .args(["--auth-backend", "basic", "push-files", &public])
            .arg(&payload),
    );
    let anon_out = w.join("public-pulled");
    oras_json(client(&home, None).args(["pull", &public]).arg(&anon_out));
    assert_eq!(std::fs::read(anon_out.join("payload.bin")).unwrap(), bytes);
}
