//! Basic mode with podman: 401 carries `Basic realm="berth"`; login, push and pull back on a
//! private project (refused without login and again after `podman logout`); the project's robot
//! logs in as `robot$team+ci` and as `robot_team+ci` and pushes; a public project is pulled
//! without any login while the private one is not.

mod e2e;

use e2e::auth::{
    challenge, podman_digest, podman_login, podman_private_round_trip, refusal, skopeo, statuses,
    AuthRegistry, ALICE, ALICE_PASSWORD, PRIVATE, PUBLIC, ROBOT, ROBOT_ALT,
};
use e2e::cmd::{self, run};
use e2e::engine::Engine;

#[test]
fn podman_basic_login_push_pull_robot_and_anonymous() {
    let ar = AuthRegistry::start("basic", None);
    let host = ar.host().to_string();
    let work = e2e::workdir();
    let tls = ["--tls-verify=false"];

    let (status, value) = challenge(&ar.reg.url("/v2/"), None);
    assert_eq!((status, value.as_str()), (401, "Basic realm=\"berth\""));

    let remote = podman_private_round_trip(&ar, work.path());
    // Basic mode has no token endpoint; nothing may have asked for one.
    assert!(statuses(&ar.reg, "GET", "/token").is_empty());

    // The robot, in both spellings, pushes what alice pushed under new tags.
    let robot = Engine::new(&work.path().join("robot"));
    podman_login(&robot, &host, ALICE, ALICE_PASSWORD, &tls);
    run(robot.podman().args(["pull", "-q"]).args(tls).arg(&remote));
    run(robot.podman().args(["logout", &host]));
    for (name, tag) in [(ROBOT, "robot"), (ROBOT_ALT, "robot-alt")] {
        podman_login(&robot, &host, name, &ar.robot_secret, &tls);
        let target = format!("{host}/{PRIVATE}/app:{tag}");
        run(robot
            .podman()
            .args(["push", "-q"])
            .args(tls)
            .arg(&remote)
            .arg(&target));
        let path = format!("/v2/{PRIVATE}/app/manifests/{tag}");
        assert_eq!(statuses(&ar.reg, "PUT", &path), [201], "{name}");
        run(robot.podman().args(["logout", &host]));
    }
    let digest = podman_digest(&robot, &remote);
    let creds = format!("{ALICE}:{ALICE_PASSWORD}");
    for tag in ["robot", "robot-alt"] {
        let raw = run(skopeo(work.path())
            .args(["inspect", "--raw", "--tls-verify=false", "--creds", &creds])
            .arg(format!("docker://{host}/{PRIVATE}/app:{tag}")));
        assert_eq!(cmd::sha256_digest(raw.as_bytes()), digest, "{tag}");
    }
    // A wrong robot secret is refused like any wrong password.
    let err = refusal(robot.podman().arg("login").args(tls).args([
        "-u",
        ROBOT,
        "-p",
        "not-the-secret",
        &host,
    ]));
    assert!(err.contains("invalid username/password"), "{err}");

    // The public project: alice pushes, then anyone pulls with no login at all.
    let public = format!("{host}/{PUBLIC}/app:v1");
    let pusher = Engine::new(&work.path().join("public-pusher"));
    podman_login(&pusher, &host, ALICE, ALICE_PASSWORD, &tls);
    run(pusher.podman().args(["pull", "-q"]).args(tls).arg(&remote));
    run(pusher
        .podman()
        .args(["push", "-q"])
        .args(tls)
        .arg(&remote)
        .arg(&public));
    let anonymous = Engine::new(&work.path().join("anonymous"));
    run(anonymous
        .podman()
        .args(["pull", "-q"])
        .args(tls)
        .arg(&public));
    assert_eq!(podman_digest(&anonymous, &public), digest);
    let raw = run(skopeo(work.path())
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{public}")));
    assert_eq!(cmd::sha256_digest(raw.as_bytes()), digest);
    // ... but not the private one, nor push to the public one.
    let err = refusal(
        anonymous
            .podman()
            .args(["pull", "-q"])
            .args(tls)
            .arg(&remote),
    );
    assert!(err.contains("unauthorized"), "{err}");
    let err = refusal(
        anonymous
            .podman()
            .args(["push", "-q"])
            .args(tls)
            .arg(&public)
            .arg(format!("{host}/{PUBLIC}/app:anonymous")),
    );
    assert!(err.contains("unauthorized"), "{err}");
    let (status, value) = challenge(
        &ar.reg.url(&format!("/v2/{PRIVATE}/app/manifests/v1")),
        None,
    );
    assert_eq!((status, value.as_str()), (401, "Basic realm=\"berth\""));
}
