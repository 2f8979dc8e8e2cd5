//! Garbage collection as an operator runs it: skopeo pushes several images, `skopeo delete`
//! removes some, `berth gc --url` collects through the running registry, and the images that
//! were kept still pull byte-identical while the deleted ones' own layers are gone.

mod e2e;

use e2e::cmd::{self, run};
use e2e::image::{assert_same_image, manifest_digest, read_blob, OciImage};
use e2e::registry::{Kind, Registry};

/// The config and layer digests of `tag` in an OCI layout.
fn blobs_of(layout: &std::path::Path, tag: &str) -> Vec<String> {
    let m: serde_json::Value =
        serde_json::from_slice(&read_blob(layout, &manifest_digest(layout, tag))).unwrap();
    let mut out = vec![m["config"]["digest"].as_str().unwrap().to_string()];
    for l in m["layers"].as_array().unwrap() {
        out.push(l["digest"].as_str().unwrap().to_string());
    }
    out
}

#[test]
fn deleted_images_are_collected_and_kept_ones_pull_byte_identical() {
    let reg = Registry::start();
    if reg.kind() != Kind::Berth {
        // `berth gc` is berth's own tool; other registries collect in their own ways.
        return;
    }
    let work = e2e::workdir();
    let images: Vec<OciImage> = (0..4)
        .map(|i| {
            OciImage::build(
                &work.path().join(format!("src{i}")),
                &format!("v{i}"),
                &[256 + 64 * i, 128],
            )
        })
        .collect();
    let remote = |i: usize| format!("docker://{}/e2e/gc:v{i}", reg.host());
    for (i, img) in images.iter().enumerate() {
        run(cmd::tool("skopeo")
            .args(["copy", "--dest-tls-verify=false"])
            .arg(img.transport_ref())
            .arg(remote(i)));
    }
    for i in [1, 3] {
        run(cmd::tool("skopeo")
            .args(["delete", "--tls-verify=false"])
            .arg(remote(i)));
    }

    let out = run(std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["gc", "--json", "--url"])
        .arg(format!("http://{}", reg.host())));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    // Each deleted image had its own config, two random layers and its manifest body; the
    // busybox base layer is shared with the kept images.
    let removed = report["blobs_removed"].as_u64().unwrap();
    assert!(removed >= 8, "{report}");
    assert!(
        report["bytes_swept"].as_u64().unwrap() > 2 * (256 + 128) * 1024,
        "{report}"
    );

    for i in [0, 2] {
        let out = work.path().join(format!("out{i}"));
        run(cmd::tool("skopeo")
            .args(["copy", "--src-tls-verify=false"])
            .arg(remote(i))
            .arg(format!("oci:{}:v{i}", out.display())));
        assert_same_image(&images[i].layout, &out, &format!("v{i}"));
    }
    let kept: Vec<String> = [0, 2]
        .iter()
        .flat_map(|&i| blobs_of(&images[i].layout, &format!("v{i}")))
        .collect();
    for i in [1, 3] {
        for d in blobs_of(&images[i].layout, &format!("v{i}")) {
            if kept.contains(&d) {
                continue;
            }
            let (status, body) = reg.request("GET", &format!("/v2/e2e/gc/blobs/{d}"), &[]);
            assert_eq!(
                status, 404,
                "{d} of a deleted image is still served: {body}"
            );
        }
    }
    // A second run finds nothing more to do.
    let again: serde_json::Value = serde_json::from_str(&run(std::process::Command::new(env!(
        "CARGO_BIN_EXE_berth"
    ))
    .args(["gc", "--json", "--url"])
    .arg(format!("http://{}", reg.host()))))
    .unwrap();
    assert_eq!(again["blobs_removed"].as_u64(), Some(0), "{again}");
}
