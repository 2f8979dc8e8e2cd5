//! What clients pushed survives a graceful restart: SIGTERM, start again over the same data, and
//! the image, its tags and its referrers come back byte-identical; the store takes new pushes.

mod e2e;

use e2e::cmd::{self, run};
use e2e::image::{assert_same_image, OciImage};
use e2e::python::{oras, oras_json};
use e2e::registry::Registry;

fn skopeo_copy(from: &str, to: &str) {
    run(cmd::tool("skopeo")
        .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(from)
        .arg(to));
}

#[test]
fn pushed_content_survives_a_restart() {
    let mut reg = Registry::start();
    let work = e2e::workdir();
    let image = OciImage::build(&work.path().join("layout"), "v1", &[1024, 1024]);
    let remote = format!("docker://{}/e2e/durable:v1", reg.host());
    skopeo_copy(&image.transport_ref(), &remote);
    let note = work.path().join("note.txt");
    std::fs::write(&note, b"attached before the restart\n").unwrap();
    let image_ref = format!("{}/e2e/durable:v1", reg.host());
    let sig = oras_json(
        oras(None)
            .args(["push-artifact", &format!("{}/e2e/durable:sig", reg.host())])
            .args(["--artifact-type", "application/vnd.example.signature"])
            .args(["--subject-ref", &image_ref])
            .arg(&note),
    );

    reg.restart();

    let out = work.path().join("out");
    skopeo_copy(&remote, &format!("oci:{}:v1", out.display()));
    assert_same_image(&image.layout, &out, "v1");
    let tags = reg.get_json("/v2/e2e/durable/tags/list");
    let mut tags: Vec<&str> = tags["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, ["sig", "v1"]);
    let pulled = work.path().join("note-out");
    oras_json(
        oras(None)
            .args(["pull", &format!("{}/e2e/durable:sig", reg.host())])
            .arg(&pulled),
    );
    assert_eq!(
        std::fs::read(pulled.join("note.txt")).unwrap(),
        std::fs::read(&note).unwrap()
    );
    if reg.has_referrers_api() {
        let index = reg.get_json(&format!(
            "/v2/e2e/durable/referrers/{}",
            image.manifest_digest()
        ));
        let digests: Vec<&serde_json::Value> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["digest"])
            .collect();
        assert_eq!(digests, [&sig["digest"]], "{index}");
    }

    // The reopened store takes new pushes: a second tag (blobs already there) and a new image.
    skopeo_copy(&remote, &format!("docker://{}/e2e/durable:v2", reg.host()));
    let second = OciImage::build(&work.path().join("layout2"), "v1", &[512]);
    let remote2 = format!("docker://{}/e2e/durable-two:v1", reg.host());
    skopeo_copy(&second.transport_ref(), &remote2);
    reg.restart();
    let out2 = work.path().join("out2");
    skopeo_copy(&remote2, &format!("oci:{}:v1", out2.display()));
    assert_same_image(&second.layout, &out2, "v1");
    let raw = run(cmd::tool("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/e2e/durable:v2", reg.host())));
    assert_eq!(cmd::sha256_digest(raw.as_bytes()), image.manifest_digest());
}
