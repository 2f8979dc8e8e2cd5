//! Access control in the end-to-end scenarios: berth started with `--auth-mode basic|token` over
//! a data directory seeded beforehand through the `berth` CLI (users, projects, members, a
//! robot), credentials handed to clients the way users do, and what the server's request log
//! says each client request got.

use super::cmd::{self, run, run_with_input};
use super::engine::Engine;
use super::image::OciImage;
use super::registry::{berth_bin, Registry};
use super::tls::Certs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A private project: `ALICE` is a developer in it (pull, push), `GUEST` a guest (pull).
pub const PRIVATE: &str = "team";
/// A public project (anyone pulls); `ALICE` is a developer in it too.
pub const PUBLIC: &str = "pub";
pub const ALICE: &str = "alice";
pub const ALICE_PASSWORD: &str = "alice-e2e-secret";
pub const GUEST: &str = "gina";
pub const GUEST_PASSWORD: &str = "gina-e2e-secret";
/// The robot account of `PRIVATE`, allowed to pull and push there.
pub const ROBOT: &str = "robot$team+ci";
/// The same robot in the spelling without `$` (for clients and shells that mangle it).
pub const ROBOT_ALT: &str = "robot_team+ci";

/// berth with access control on, seeded with the accounts above.
pub struct AuthRegistry {
    pub reg: Registry,
    /// The robot's secret, as `berth robot add` printed it once.
    pub robot_secret: String,
}

impl AuthRegistry {
    /// `mode` is `basic` or `token`; `certs` makes berth terminate TLS itself.
    pub fn start(mode: &str, certs: Option<&Certs>) -> AuthRegistry {
        let mut secret = String::new();
        let reg = Registry::start_berth_with(certs, &["--auth-mode", mode], |data| {
            secret = seed(data);
        });
        AuthRegistry {
            reg,
            robot_secret: secret,
        }
    }

    pub fn host(&self) -> &str {
        self.reg.host()
    }

    /// `robot$team+ci:SECRET` (or the other spelling), as `--creds` takes it.
    pub fn robot_creds(&self, name: &str) -> String {
        format!("{name}:{}", self.robot_secret)
    }
}

/// Creates the users, projects, memberships and the robot; returns the robot's secret.
fn seed(data: &Path) -> String {
    std::fs::create_dir_all(data).unwrap();
    let berth = |args: &[&str]| {
        let mut c = Command::new(berth_bin());
        c.args(args).arg("--data").arg(data).env("NO_COLOR", "1");
        c
    };
    for (user, password) in [(ALICE, ALICE_PASSWORD), (GUEST, GUEST_PASSWORD)] {
        run_with_input(
            &mut berth(&["user", "add", user, "--password-stdin"]),
            &format!("{password}\n"),
        );
    }
    run(&mut berth(&["project", "add", PRIVATE]));
    run(&mut berth(&["project", "add", PUBLIC, "--public"]));
    run(&mut berth(&[
        "member",
        "add",
        PRIVATE,
        ALICE,
        "--role",
        "developer",
    ]));
    run(&mut berth(&[
        "member", "add", PRIVATE, GUEST, "--role", "guest",
    ]));
    run(&mut berth(&[
        "member",
        "add",
        PUBLIC,
        ALICE,
        "--role",
        "developer",
    ]));
    let robot = run(&mut berth(&[
        "robot",
        "add",
        PRIVATE,
        "ci",
        "--actions",
        "pull,push",
        "--json",
    ]));
    let robot: serde_json::Value = serde_json::from_str(&robot)
        .unwrap_or_else(|e| panic!("berth robot add --json printed {robot}: {e}"));
    assert_eq!(robot["name"], ROBOT, "{robot}");
    robot["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("no secret in {robot}"))
        .to_string()
}

/// The statuses berth logged for `method path` (the path without its query), in order.
pub fn statuses(reg: &Registry, method: &str, path: &str) -> Vec<u16> {
    let method = format!("method={method}");
    reg.log_text()
        .lines()
        .filter(|l| l.split_whitespace().any(|w| w == method))
        .filter(|l| {
            l.split_whitespace()
                .any(|w| w.strip_prefix("path=") == Some(path))
        })
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("status="))
                .and_then(|s| s.parse().ok())
        })
        .collect()
}

/// Status and `WWW-Authenticate` of an anonymous GET of `url` (trusting `ca` for HTTPS).
pub fn challenge(url: &str, ca: Option<&Path>) -> (u16, String) {
    let mut c = cmd::tool("curl");
    c.args(["-sS", "--max-time", "30", "-o", "/dev/null", "-D", "-"]);
    if let Some(ca) = ca {
        c.arg("--cacert").arg(ca);
    }
    let head = run(c.arg(url));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line from {url}:\n{head}"));
    let value = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    (status, value)
}

/// `podman login --password-stdin` into `engine`'s private credentials file. `tls` is
/// `["--tls-verify=false"]` for plain HTTP or `["--cert-dir", DIR]`.
pub fn podman_login(engine: &Engine, host: &str, user: &str, password: &str, tls: &[&str]) {
    let out = run_with_input(
        engine
            .podman()
            .arg("login")
            .args(tls)
            .args(["-u", user, "--password-stdin", host]),
        &format!("{password}\n"),
    );
    assert!(out.contains("Login Succeeded"), "podman login: {out}");
    let stored = std::fs::read_to_string(engine.auth_file()).unwrap();
    assert!(
        stored.contains(host),
        "podman login stored nothing for {host}: {stored}"
    );
}

/// skopeo with an empty credentials file of its own, so that a command without `--creds` is
/// really anonymous whatever the machine's default auth file holds.
pub fn skopeo(work: &Path) -> Command {
    let auth = work.join("skopeo-auth.json");
    if !auth.exists() {
        std::fs::write(&auth, "{\"auths\": {}}\n").unwrap();
    }
    let mut c = cmd::tool("skopeo");
    c.env("REGISTRY_AUTH_FILE", auth);
    c
}

/// The manifest digest podman recorded for a pulled image.
pub fn podman_digest(engine: &Engine, image: &str) -> String {
    run(engine
        .podman()
        .args(["image", "inspect", "--format", "{{.Digest}}"])
        .arg(image))
    .trim()
    .to_string()
}

/// A file of `len` random bytes.
pub fn random_file(path: &Path, len: usize) -> PathBuf {
    let mut bytes = vec![0u8; len];
    getrandom::getrandom(&mut bytes).unwrap();
    std::fs::write(path, &bytes).unwrap();
    path.to_path_buf()
}

/// What a failed client run printed, lower-cased, for matching its error text.
pub fn refusal(cmd: &mut Command) -> String {
    cmd::run_expect_failure(cmd).to_lowercase()
}

/// The podman flow on `PRIVATE` that both modes must pass: a push without login is refused;
/// `podman login` and the push goes through; a fresh storage is refused anonymously, logs in
/// and pulls the same manifest digest and image; after `podman logout` the pull is refused
/// again with a 401. Returns the pushed reference.
pub fn podman_private_round_trip(ar: &AuthRegistry, work: &Path) -> String {
    let host = ar.host();
    let tls = ["--tls-verify=false"];
    let image = OciImage::build(&work.join("layout"), "v1", &[256]);
    let pusher = Engine::new(&work.join("pusher"));
    let id = run(pusher
        .podman()
        .args(["pull", "-q"])
        .arg(image.transport_ref()));
    let id = id.trim();
    let remote = format!("{host}/{PRIVATE}/app:v1");
    let manifest_path = format!("/v2/{PRIVATE}/app/manifests/v1");

    let err = refusal(
        pusher
            .podman()
            .args(["push", "-q"])
            .args(tls)
            .arg(id)
            .arg(&remote),
    );
    // containers/image words a 401 on a HEAD (no body) as "denied ... 401 response".
    assert!(
        err.contains("unauthorized") || err.contains("401"),
        "anonymous push failed for another reason:\n{err}"
    );
    assert!(
        !statuses(&ar.reg, "PUT", &manifest_path).contains(&201),
        "an anonymous push stored a manifest"
    );

    podman_login(&pusher, host, ALICE, ALICE_PASSWORD, &tls);
    let digest_file = work.join("pushed.digest");
    run(pusher
        .podman()
        .args(["push", "-q", "--digestfile"])
        .arg(&digest_file)
        .args(tls)
        .arg(id)
        .arg(&remote));
    let pushed = std::fs::read_to_string(&digest_file).unwrap();
    assert_eq!(statuses(&ar.reg, "PUT", &manifest_path), [201]);

    let puller = Engine::new(&work.join("puller"));
    let err = refusal(puller.podman().args(["pull", "-q"]).args(tls).arg(&remote));
    assert!(err.contains("unauthorized"), "{err}");
    let refused = |reg: &Registry| {
        statuses(reg, "GET", &manifest_path)
            .iter()
            .filter(|s| **s == 401)
            .count()
    };
    let anonymous_refusals = refused(&ar.reg);
    assert!(anonymous_refusals > 0, "no 401 for the anonymous pull");
    assert!(!statuses(&ar.reg, "GET", &manifest_path).contains(&200));

    podman_login(&puller, host, ALICE, ALICE_PASSWORD, &tls);
    run(puller.podman().args(["pull", "-q"]).args(tls).arg(&remote));
    assert_eq!(podman_digest(&puller, &remote), pushed, "manifest digest");
    let pulled_id = run(puller
        .podman()
        .args(["image", "inspect", "--format", "{{.Id}}"])
        .arg(&remote));
    assert_eq!(pulled_id.trim(), id, "the image config changed on the way");

    run(puller.podman().args(["logout", host]));
    let stored = std::fs::read_to_string(puller.auth_file()).unwrap();
    assert!(
        !stored.contains(host),
        "podman logout kept {host}: {stored}"
    );
    let err = refusal(puller.podman().args(["pull", "-q"]).args(tls).arg(&remote));
    assert!(err.contains("unauthorized"), "{err}");
    assert!(
        refused(&ar.reg) > anonymous_refusals,
        "the pull after logout was not refused with 401"
    );
    remote
}
