//! Token mode with podman: the 401 names the token endpoint (`Bearer realm="http://<host>/token"`,
//! `service="berth"`) and podman follows it by itself: login, push and pull back on a private
//! project (refused without login and again after `podman logout`), the robot logs in and
//! pushes, and a public project is pulled without login with an anonymous token.

mod e2e;

use e2e::auth::{
    challenge, podman_digest, podman_login, podman_private_round_trip, statuses, AuthRegistry,
    ALICE, ALICE_PASSWORD, PRIVATE, PUBLIC, ROBOT,
};
use e2e::cmd::run;
use e2e::engine::Engine;

#[test]
fn podman_token_login_push_pull_and_logout() {
    let ar = AuthRegistry::start("token", None);
    let host = ar.host().to_string();
    let work = e2e::workdir();
    let tls = ["--tls-verify=false"];

    let realm = format!("Bearer realm=\"http://{host}/token\",service=\"berth\"");
    assert_eq!(challenge(&ar.reg.url("/v2/"), None), (401, realm.clone()));
    let (status, value) = challenge(
        &ar.reg.url(&format!("/v2/{PRIVATE}/app/manifests/v1")),
        None,
    );
    assert_eq!(status, 401);
    assert_eq!(
        value,
        format!("{realm},scope=\"repository:{PRIVATE}/app:pull\"")
    );

    let remote = podman_private_round_trip(&ar, work.path());
    // Every credentialed request went through the token endpoint: podman never sent the
    // password to /v2/ itself, and got tokens with it.
    let tokens = statuses(&ar.reg, "GET", "/token");
    assert!(
        tokens.iter().filter(|s| **s == 200).count() >= 2,
        "{tokens:?}"
    );

    // The robot pushes under another tag; alice's fresh storage pulls it (same digest).
    let robot = Engine::new(&work.path().join("robot"));
    podman_login(&robot, &host, ALICE, ALICE_PASSWORD, &tls);
    run(robot.podman().args(["pull", "-q"]).args(tls).arg(&remote));
    let digest = podman_digest(&robot, &remote);
    run(robot.podman().args(["logout", &host]));
    podman_login(&robot, &host, ROBOT, &ar.robot_secret, &tls);
    let by_robot = format!("{host}/{PRIVATE}/app:robot");
    run(robot
        .podman()
        .args(["push", "-q"])
        .args(tls)
        .arg(&remote)
        .arg(&by_robot));
    let check = Engine::new(&work.path().join("check"));
    podman_login(&check, &host, ALICE, ALICE_PASSWORD, &tls);
    run(check.podman().args(["pull", "-q"]).args(tls).arg(&by_robot));
    assert_eq!(podman_digest(&check, &by_robot), digest);

    // A public project: pushed by alice, pulled by podman with no credentials at all.
    let public = format!("{host}/{PUBLIC}/app:v1");
    run(check
        .podman()
        .args(["push", "-q"])
        .args(tls)
        .arg(&by_robot)
        .arg(&public));
    let anonymous = Engine::new(&work.path().join("anonymous"));
    run(anonymous
        .podman()
        .args(["pull", "-q"])
        .args(tls)
        .arg(&public));
    assert_eq!(podman_digest(&anonymous, &public), digest);
    assert_eq!(
        statuses(&ar.reg, "GET", &format!("/v2/{PUBLIC}/app/manifests/v1")).last(),
        Some(&200)
    );
}
