//! Token mode with skopeo: `copy --dest-creds` and `--src-creds` round-trip an image through a
//! private project byte for byte and `inspect --creds` reads it; a guest's push is refused with
//! 403 DENIED while the guest still pulls; a wrong password gets nothing; anonymous skopeo
//! pulls a public project but not the private one (401); the robot works as `robot$team+ci`
//! and as `robot_team+ci`, and only inside its project.

mod e2e;

use e2e::auth::{
    refusal, skopeo, statuses, AuthRegistry, ALICE, ALICE_PASSWORD, GUEST, GUEST_PASSWORD, PRIVATE,
    PUBLIC, ROBOT, ROBOT_ALT,
};
use e2e::cmd::{self, run};
use e2e::image::{assert_same_image, OciImage};

#[test]
fn skopeo_token_creds_guest_anonymous_and_robot() {
    let ar = AuthRegistry::start("token", None);
    let host = ar.host().to_string();
    let work = e2e::workdir();
    let w = work.path();
    let image = OciImage::build(&w.join("layout"), "v1", &[256]);
    let digest = image.manifest_digest();
    let alice = format!("{ALICE}:{ALICE_PASSWORD}");
    let guest = format!("{GUEST}:{GUEST_PASSWORD}");
    let private = format!("docker://{host}/{PRIVATE}/sk:v1");
    let inspect = |creds: Option<&str>, reference: &str| {
        let mut c = skopeo(w);
        c.args(["inspect", "--raw", "--tls-verify=false"]);
        if let Some(creds) = creds {
            c.args(["--creds", creds]);
        }
        c.arg(reference);
        c
    };

    run(skopeo(w)
        .args(["copy", "--dest-tls-verify=false", "--dest-creds", &alice])
        .arg(image.transport_ref())
        .arg(&private));
    let raw = run(&mut inspect(Some(&alice), &private));
    assert_eq!(cmd::sha256_digest(raw.as_bytes()), digest);
    let out = w.join("out");
    run(skopeo(w)
        .args(["copy", "--src-tls-verify=false", "--src-creds", &alice])
        .arg(&private)
        .arg(format!("oci:{}:v1", out.display())));
    assert_same_image(&image.layout, &out, "v1");

    // The guest reads but may not write: the token it gets carries pull only, and berth
    // answers the upload with 403 DENIED, which skopeo reports.
    let raw = run(&mut inspect(Some(&guest), &private));
    assert_eq!(cmd::sha256_digest(raw.as_bytes()), digest);
    let err = refusal(
        skopeo(w)
            .args(["copy", "--dest-tls-verify=false", "--dest-creds", &guest])
            .arg(image.transport_ref())
            .arg(format!("docker://{host}/{PRIVATE}/guest:v1")),
    );
    assert!(
        err.contains("denied: requested access to the resource is denied"),
        "{err}"
    );
    let uploads = statuses(
        &ar.reg,
        "POST",
        &format!("/v2/{PRIVATE}/guest/blobs/uploads/"),
    );
    assert!(
        !uploads.is_empty() && uploads.iter().all(|s| *s == 403),
        "guest uploads: {uploads:?}"
    );
    let manifests = statuses(&ar.reg, "PUT", &format!("/v2/{PRIVATE}/guest/manifests/v1"));
    assert!(manifests.is_empty(), "{manifests:?}");

    // A wrong password gets no token at all.
    let before = statuses(&ar.reg, "GET", "/token");
    refusal(&mut inspect(
        Some(&format!("{ALICE}:wrong-password")),
        &private,
    ));
    let after = statuses(&ar.reg, "GET", "/token");
    assert_eq!(after.get(before.len()), Some(&401), "{after:?}");

    // Anonymous: the private image is refused with 401, a public one is pulled.
    let manifest_path = format!("/v2/{PRIVATE}/sk/manifests/v1");
    let before = statuses(&ar.reg, "GET", &manifest_path).len();
    let err = refusal(&mut inspect(None, &private));
    assert!(err.contains("unauthorized"), "{err}");
    let after = statuses(&ar.reg, "GET", &manifest_path);
    assert!(
        after.len() > before && after[before..].iter().all(|s| *s == 401),
        "{after:?}"
    );
    let public = format!("docker://{host}/{PUBLIC}/sk:v1");
    run(skopeo(w)
        .args(["copy", "--src-tls-verify=false", "--src-creds", &alice])
        .args(["--dest-tls-verify=false", "--dest-creds", &alice])
        .arg(&private)
        .arg(&public));
    let raw = run(&mut inspect(None, &public));
    assert_eq!(cmd::sha256_digest(raw.as_bytes()), digest);
    let anon_out = w.join("anonymous-out");
    run(skopeo(w)
        .args(["copy", "--src-tls-verify=false"])
        .arg(&public)
        .arg(format!("oci:{}:v1", anon_out.display())));
    assert_same_image(&image.layout, &anon_out, "v1");

    // The robot in both spellings: pushes and reads in its project...
    let robot = ar.robot_creds(ROBOT);
    let robot_alt = ar.robot_creds(ROBOT_ALT);
    let by_robot = format!("docker://{host}/{PRIVATE}/robot:v1");
    run(skopeo(w)
        .args(["copy", "--dest-tls-verify=false", "--dest-creds", &robot])
        .arg(image.transport_ref())
        .arg(&by_robot));
    let raw = run(&mut inspect(Some(&robot_alt), &by_robot));
    assert_eq!(cmd::sha256_digest(raw.as_bytes()), digest);
    run(skopeo(w)
        .args([
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &robot_alt,
        ])
        .arg(image.transport_ref())
        .arg(format!("docker://{host}/{PRIVATE}/robot:alt")));
    let raw = run(&mut inspect(
        Some(&robot),
        &format!("docker://{host}/{PRIVATE}/robot:alt"),
    ));
    assert_eq!(cmd::sha256_digest(raw.as_bytes()), digest);
    // ... and nowhere else: the public project is readable to it, not writable.
    let err = refusal(
        skopeo(w)
            .args(["copy", "--dest-tls-verify=false", "--dest-creds", &robot])
            .arg(image.transport_ref())
            .arg(format!("docker://{host}/{PUBLIC}/robot:v1")),
    );
    assert!(err.contains("denied"), "{err}");
    let uploads = statuses(
        &ar.reg,
        "POST",
        &format!("/v2/{PUBLIC}/robot/blobs/uploads/"),
    );
    assert!(
        !uploads.is_empty() && uploads.iter().all(|s| *s == 403),
        "robot uploads to the public project: {uploads:?}"
    );
}
