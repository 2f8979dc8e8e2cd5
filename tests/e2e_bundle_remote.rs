//! The bundle commands against running registries (`--url`): an OCI layout imported into one
//! through the distribution API, its inventory listed, the image exported from it and imported
//! into a second registry that has access control on, as a project member, signed and
//! checked against the signer's key. skopeo reads the image back from both, byte-identical.

mod e2e;

use std::process::Command;

use e2e::auth::{AuthRegistry, ALICE, ALICE_PASSWORD, PRIVATE};
use e2e::cmd::{self, run, run_expect_failure};
use e2e::image::{assert_same_image, OciImage};
use e2e::registry::{berth_bin, Registry};

#[test]
fn import_export_and_inventory_through_the_api() {
    let work = e2e::workdir();
    let image = OciImage::build(&work.path().join("layout"), "v1", &[768]);
    let a = Registry::start();
    let url_a = format!("http://{}", a.host());
    let names = run(Command::new(berth_bin())
        .args(["import", "--url", &url_a])
        .arg(&image.layout)
        .args(["--repo", "e2e/remote/app"]));
    assert_eq!(names.trim(), "e2e/remote/app:v1");
    let out_a = work.path().join("out-a");
    run(cmd::tool("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{}/e2e/remote/app:v1", a.host()))
        .arg(format!("oci:{}:v1", out_a.display())));
    assert_same_image(&image.layout, &out_a, "v1");

    let inventory = run(Command::new(berth_bin()).args(["inventory", "--url", &url_a, "-o", "-"]));
    let inv: serde_json::Value = serde_json::from_str(&inventory).unwrap();
    let digest = image.manifest_digest();
    assert_eq!(
        inv["manifests"][0]["digest"],
        digest.as_str(),
        "{inventory}"
    );
    assert_eq!(inv["manifests"][0]["tags"][0], "v1", "{inventory}");
    assert_eq!(inv["blobs"].as_array().unwrap().len(), 4, "{inventory}");

    // A signature-like referrer of the image, pushed by hand; the export takes it along.
    let referrer = push_referrer(&a, work.path(), "e2e/remote/app", &digest);

    let bundle = work.path().join("bundle.tar");
    let fixtures = cmd::repo_path("tests/fixtures/auth");
    run(Command::new(berth_bin())
        .args(["export", "--url", &url_a, "e2e/remote/app:v1", "-o"])
        .arg(&bundle)
        .arg("--sign-key")
        .arg(fixtures.join("ed25519-key.pem")));

    // A flipped byte in a layer: refused while it streams, and no tag appears.
    let manifest: serde_json::Value =
        serde_json::from_slice(&e2e::image::read_blob(&image.layout, &digest)).unwrap();
    let layer = manifest["layers"][1]["digest"].as_str().unwrap();
    let layer_bytes = e2e::image::read_blob(&image.layout, layer);
    let mut bytes = std::fs::read(&bundle).unwrap();
    let at = bytes
        .windows(64)
        .position(|w| w == &layer_bytes[..64])
        .unwrap();
    bytes[at + 1000] ^= 0x40;
    let flipped = work.path().join("flipped.tar");
    std::fs::write(&flipped, &bytes).unwrap();
    let refused = run_expect_failure(
        Command::new(berth_bin())
            .args(["import", "--url", &url_a])
            .arg(&flipped)
            .args(["--repo", "e2e/remote/flipped"]),
    );
    assert!(refused.contains("do not match the digest"), "{refused}");
    assert!(refused.contains(layer), "{refused}");
    // Blobs already sent may be there; no manifest and no tag is.
    let (status, body) = a.request("GET", "/v2/e2e/remote/flipped/tags/list", &[]);
    if status == 200 {
        let tags: serde_json::Value = serde_json::from_str(&body).unwrap();
        let none = tags["tags"].is_null() || tags["tags"].as_array().is_some_and(|t| t.is_empty());
        assert!(none, "{body}");
    } else {
        assert_eq!(status, 404, "{body}");
    }
    let (status, _) = a.request(
        "GET",
        &format!("/v2/e2e/remote/flipped/manifests/{digest}"),
        &[],
    );
    assert_eq!(status, 404);

    let b = AuthRegistry::start("basic", None);
    let url_b = format!("http://{}", b.host());
    let target = format!("{PRIVATE}/app");
    let refused = run_expect_failure(
        Command::new(berth_bin())
            .args(["import", "--url", &url_b])
            .arg(&bundle)
            .args(["--repo", &target]),
    );
    assert!(refused.contains("--username"), "{refused}");
    let names = run(Command::new(berth_bin())
        .args(["import", "--url", &url_b, "--username", ALICE])
        .env("BERTH_PASSWORD", ALICE_PASSWORD)
        .arg(&bundle)
        .args(["--repo", &target])
        .arg("--verify-key")
        .arg(fixtures.join("ed25519-pub.pem")));
    assert_eq!(names.trim(), format!("{target}:v1"));
    let out_b = work.path().join("out-b");
    run(cmd::tool("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("--src-creds={ALICE}:{ALICE_PASSWORD}"))
        .arg(format!("docker://{}/{target}:v1", b.host()))
        .arg(format!("oci:{}:v1", out_b.display())));
    assert_same_image(&image.layout, &out_b, "v1");
    let (status, body) = b.reg.request(
        "GET",
        &format!("/v2/{target}/referrers/{digest}"),
        &["-u", &format!("{ALICE}:{ALICE_PASSWORD}")],
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&referrer), "{body}");
}

/// Pushes an artifact manifest whose subject is `subject` (blobs with a monolithic POST);
/// returns its digest.
fn push_referrer(reg: &Registry, dir: &std::path::Path, repo: &str, subject: &str) -> String {
    let (status, body) = reg.request(
        "GET",
        &format!("/v2/{repo}/manifests/{subject}"),
        &["-H", "Accept: application/vnd.oci.image.manifest.v1+json"],
    );
    assert_eq!(status, 200, "{body}");
    let subject_size = body.len();
    let mut descriptors = Vec::new();
    for (name, bytes, media_type) in [
        ("empty", &b"{}"[..], "application/vnd.oci.empty.v1+json"),
        (
            "sig",
            &b"a signature over the image"[..],
            "application/vnd.example.sig",
        ),
    ] {
        let file = dir.join(name);
        std::fs::write(&file, bytes).unwrap();
        let d = cmd::sha256_digest(bytes);
        let (status, body) = reg.request(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            &[
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
                &format!("@{}", file.display()),
            ],
        );
        assert_eq!(status, 201, "{body}");
        descriptors
            .push(serde_json::json!({"mediaType": media_type, "digest": d, "size": bytes.len()}));
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.sig",
        "config": descriptors[0],
        "layers": [descriptors[1]],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": subject_size},
    }))
    .unwrap();
    let file = dir.join("referrer.json");
    std::fs::write(&file, &manifest).unwrap();
    let d = cmd::sha256_digest(&manifest);
    let (status, body) = reg.request(
        "PUT",
        &format!("/v2/{repo}/manifests/{d}"),
        &[
            "-H",
            "Content-Type: application/vnd.oci.image.manifest.v1+json",
            "--data-binary",
            &format!("@{}", file.display()),
        ],
    );
    assert_eq!(status, 201, "{body}");
    d
}
