//! The access model's commands as a setup script runs them, without a terminal, on a fresh
//! data directory: users with a password on stdin, a public project with a quota, a member, a
//! robot whose secret is printed once and then works, immutable rules, JSON listings, the
//! audit trail, and the refusals (no password, a foreign directory, an unknown user).

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use berth::auth::db::AuthDb;
use berth::auth::login::{Authenticator, AuthenticatorSettings};
use berth::auth::policy::{Action, Policy, PolicySettings};
use serde_json::Value;

fn berth_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("BERTH_PASSWORD")
        .env_remove("BERTH_DATA")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn berth(args: &[&str]) -> Output {
    berth_with_stdin(args, "")
}

/// Runs a command that must succeed; returns its stdout.
fn ok(args: &[&str], dir: &Path) -> String {
    let mut all = args.to_vec();
    all.extend(["--data", dir.to_str().unwrap()]);
    let out = berth(&all);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

fn json(args: &[&str], dir: &Path) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    serde_json::from_str(&ok(&all, dir)).unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_setup_script_configures_access() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let d = data.to_str().unwrap();

    let out = berth_with_stdin(
        &["user", "add", "alice", "--password-stdin", "--data", d],
        "alice-password\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    ok(&["project", "add", "team", "--public"], &data);
    ok(
        &["member", "add", "team", "alice", "--role", "developer"],
        &data,
    );
    let created = ok(
        &[
            "robot",
            "add",
            "team",
            "ci",
            "--actions",
            "pull,push",
            "--expires",
            "30d",
        ],
        &data,
    );
    let secret = created.lines().last().unwrap().to_owned();
    assert_eq!(secret.len(), 64, "{created}");
    assert!(created.contains("robot$team+ci"), "{created}");
    ok(&["project", "quota", "team", "10GiB"], &data);
    ok(&["immutable", "add", "team", "v*"], &data);
    ok(&["immutable", "add", "team", "release-*"], &data);
    ok(&["immutable", "del", "team", "release-*"], &data);

    let users = json(&["user", "list"], &data);
    assert_eq!(users[0]["name"], "alice");
    assert_eq!(users[0]["admin"], false);
    let projects = json(&["project", "list"], &data);
    assert_eq!(projects[0]["name"], "team");
    assert_eq!(projects[0]["public"], true);
    assert_eq!(projects[0]["quota_bytes"], 10u64 << 30);
    let members = json(&["member", "list", "team"], &data);
    assert_eq!(members[0]["user"], "alice");
    assert_eq!(members[0]["role"], "developer");
    let robots = json(&["robot", "list", "team"], &data);
    assert_eq!(robots[0]["name"], "robot$team+ci");
    assert_eq!(robots[0]["actions"], serde_json::json!(["pull", "push"]));
    assert!(
        robots[0]["expires_at_ms"].as_u64().unwrap() > robots[0]["created_at_ms"].as_u64().unwrap()
    );
    assert!(!robots.to_string().contains(&secret));
    let listing = ok(&["robot", "list"], &data);
    assert!(
        listing.contains("(in 30d)") || listing.contains("(in 29d"),
        "{listing}"
    );
    let rules = json(&["immutable", "list", "team"], &data);
    assert_eq!(rules.as_array().unwrap().len(), 1);
    assert_eq!(rules[0]["pattern"], "v*");

    ok(&["project", "set-private", "team"], &data);
    // The audit trail's --json is JSON lines, one event each.
    let lines = ok(&["audit", "--project", "team", "--json"], &data);
    let audit: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = audit
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "project_create",
        "member_add",
        "robot_add",
        "immutable_add",
        "project_update",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let all = ok(&["audit", "--since", "1h"], &data);
    assert!(
        all.contains("user_add") && all.contains("(operator)"),
        "{all}"
    );
    assert!(!all.contains("alice-password") && !all.contains(&secret));

    // What the commands wrote is what a registry serving this directory will enforce.
    let db = Arc::new(AuthDb::open(&data).unwrap());
    let auth = Authenticator::new(db.clone(), None, None, AuthenticatorSettings::default());
    let policy = Policy::new(db.clone(), PolicySettings::default());
    let here: IpAddr = "127.0.0.1".parse().unwrap();
    let alice = auth
        .authenticate_basic("alice", "alice-password", here)
        .unwrap();
    assert!(policy.allowed(&alice, "team/app", Action::Push));
    assert!(!policy.allowed(&alice, "team/app", Action::Delete));
    let robot = auth
        .authenticate_basic("robot_team+ci", &secret, here)
        .unwrap();
    assert!(policy.allowed(&robot, "team/app", Action::Push));
    assert!(policy.tag_is_immutable("team/app", "v1"));
    assert!(!policy.allowed(
        &berth::auth::policy::Principal::Anonymous,
        "team/app",
        Action::Pull
    ));
    assert_eq!(policy.quota_bytes("team/app"), Some(10 << 30));
    drop((auth, policy, db));

    // Passwords change through stdin or a file; deletion takes the memberships along.
    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, "second-password\n").unwrap();
    ok(
        &[
            "user",
            "passwd",
            "alice",
            "--password-file",
            pw_file.to_str().unwrap(),
        ],
        &data,
    );
    ok(&["robot", "del", "team", "ci"], &data);
    assert!(json(&["robot", "list"], &data)
        .as_array()
        .unwrap()
        .is_empty());
    ok(&["user", "del", "alice"], &data);
    assert!(json(&["member", "list", "team"], &data)
        .as_array()
        .unwrap()
        .is_empty());
    ok(&["project", "del", "team"], &data);
    assert!(json(&["project", "list"], &data)
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn mistakes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // No password source at all: usage error, nothing created.
    let out = berth(&["user", "add", "bob", "--data", d]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--password-stdin"));
    assert!(!dir.path().join("auth.redb").exists());
    // A password is not an argument.
    let out = berth(&["user", "add", "bob", "--password", "pw", "--data", d]);
    assert_eq!(out.status.code(), Some(2));
    // A directory that does not exist yet is made (a first command before the first start);
    // one that holds something else is refused.
    let fresh = dir.path().join("fresh");
    let out = berth(&["project", "list", "--data", fresh.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(fresh.join("auth.redb").is_file());
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "x").unwrap();
    let out = berth(&["project", "list", "--data", foreign.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(!foreign.join("auth.redb").exists());
    // Bad names, unknown users and duplicates.
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let d = data.to_str().unwrap();
    let out = berth(&["project", "add", "Team", "--data", d]);
    assert_eq!(out.status.code(), Some(2));
    ok(&["project", "add", "team"], &data);
    let out = berth(&[
        "member", "add", "team", "ghost", "--role", "guest", "--data", d,
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("ghost"), "{}", text(&out.stderr));
    let out = berth(&["project", "add", "team", "--data", d]);
    assert_eq!(out.status.code(), Some(3));
    let out = berth_with_stdin(
        &["user", "add", "bob", "--password-stdin", "--data", d],
        "short\n",
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
}
