//! Token mode with containerd (`ctr`, private daemon, plain HTTP): `--user` pulls from and
//! pushes to a private project, getting its tokens with the OAuth2 password grant
//! (`POST /token`); without `--user` the private image is refused (and a push with a pull-only
//! token gets `insufficient_scope`) while a public one is pulled.

mod e2e;

use e2e::auth::{refusal, skopeo, statuses, AuthRegistry, ALICE, ALICE_PASSWORD, PRIVATE, PUBLIC};
use e2e::cmd::{self, run};
use e2e::containerd::Containerd;
use e2e::image::OciImage;

#[test]
fn ctr_user_pull_push_and_anonymous_public_pull() {
    let ar = AuthRegistry::start("token", None);
    let host = ar.host().to_string();
    let work = e2e::workdir();
    let w = work.path();
    let image = OciImage::build(&w.join("layout"), "v1", &[256]);
    let digest = image.manifest_digest();
    let alice = format!("{ALICE}:{ALICE_PASSWORD}");
    for repo in [PRIVATE, PUBLIC] {
        run(skopeo(w)
            .args(["copy", "--dest-tls-verify=false", "--dest-creds", &alice])
            .arg(image.transport_ref())
            .arg(format!("docker://{host}/{repo}/ctr:v1")));
    }
    let ctrd = Containerd::start(&w.join("ctrd"));
    let private = format!("{host}/{PRIVATE}/ctr:v1");

    let err = refusal(
        ctrd.ctr()
            .args(["images", "pull", "--plain-http"])
            .arg(&private),
    );
    assert!(
        err.contains("pull access denied") || err.contains("unauthorized"),
        "{err}"
    );
    assert!(statuses(&ar.reg, "POST", "/token").is_empty());

    run(ctrd
        .ctr()
        .args(["images", "pull", "--plain-http", "--user", &alice])
        .arg(&private));
    assert_eq!(ctrd.image_digest(&private), digest);
    let grants = statuses(&ar.reg, "POST", "/token");
    assert!(
        grants.contains(&200),
        "containerd got no token by the password grant: {grants:?}"
    );

    let pushed = format!("{host}/{PRIVATE}/ctr-pushed:v1");
    run(ctrd
        .ctr()
        .args(["images", "tag"])
        .arg(&private)
        .arg(&pushed));
    let err = refusal(
        ctrd.ctr()
            .args(["images", "push", "--plain-http"])
            .arg(&pushed),
    );
    assert!(err.contains("insufficient_scope"), "{err}");
    run(ctrd
        .ctr()
        .args(["images", "push", "--plain-http", "--user", &alice])
        .arg(&pushed));
    let raw = run(skopeo(w)
        .args(["inspect", "--raw", "--tls-verify=false", "--creds", &alice])
        .arg(format!("docker://{pushed}")));
    assert_eq!(cmd::sha256_digest(raw.as_bytes()), digest);
    assert_eq!(
        statuses(
            &ar.reg,
            "PUT",
            &format!("/v2/{PRIVATE}/ctr-pushed/manifests/v1")
        ),
        [201]
    );

    // A public project needs no --user: berth answers anonymous reads of it at once.
    let public = format!("{host}/{PUBLIC}/ctr:v1");
    run(ctrd
        .ctr()
        .args(["images", "pull", "--plain-http"])
        .arg(&public));
    assert_eq!(ctrd.image_digest(&public), digest);
    let resolved = statuses(&ar.reg, "HEAD", &format!("/v2/{PUBLIC}/ctr/manifests/v1"));
    assert_eq!(resolved.last(), Some(&200), "{resolved:?}");
}
