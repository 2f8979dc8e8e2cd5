//! skopeo copies a multi-layer image from an OCI layout into the registry and back out into
//! another layout byte-identically; inspect, list-tags and delete behave as skopeo expects.

mod e2e;

use e2e::cmd::{self, run, run_expect_failure};
use e2e::image::{assert_same_image, OciImage};
use e2e::registry::Registry;

#[test]
fn skopeo_copy_in_and_out_is_byte_identical() {
    let reg = Registry::start();
    let work = e2e::workdir();
    let image = OciImage::build(&work.path().join("src"), "v1", &[1024, 2048, 512]);
    let remote = format!("docker://{}/e2e/skopeo:v1", reg.host());

    run(cmd::tool("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(image.transport_ref())
        .arg(&remote));

    let out = work.path().join("out");
    run(cmd::tool("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(&remote)
        .arg(format!("oci:{}:v1", out.display())));
    let blobs = assert_same_image(&image.layout, &out, "v1");
    assert_eq!(
        blobs, 6,
        "manifest, config, busybox layer and three random layers"
    );

    // The registry serves the manifest bytes it received, under the digest of those bytes.
    let digest = image.manifest_digest();
    let raw = run(cmd::tool("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(&remote));
    assert_eq!(cmd::sha256_digest(raw.as_bytes()), digest);
    let inspect: serde_json::Value = serde_json::from_str(&run(cmd::tool("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(&remote)))
    .unwrap();
    assert_eq!(inspect["Digest"], digest.as_str());
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 4);
    assert_eq!(inspect["Architecture"], "amd64");

    // A second tag of the same image, copied by digest.
    run(cmd::tool("skopeo")
        .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(format!("docker://{}/e2e/skopeo@{digest}", reg.host()))
        .arg(format!("docker://{}/e2e/skopeo:v2", reg.host())));
    let tags = |reg: &Registry| -> Vec<String> {
        let listed: serde_json::Value = serde_json::from_str(&run(cmd::tool("skopeo")
            .args(["list-tags", "--tls-verify=false"])
            .arg(format!("docker://{}/e2e/skopeo", reg.host()))))
        .unwrap();
        let mut tags: Vec<String> = listed["Tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        tags.sort();
        tags
    };
    assert_eq!(tags(&reg), ["v1", "v2"]);
    let catalog = reg.get_json("/v2/_catalog");
    assert_eq!(
        catalog["repositories"],
        serde_json::json!(["e2e/skopeo"]),
        "{catalog}"
    );

    // skopeo delete resolves the tag and deletes the manifest by digest: both tags go with it.
    run(cmd::tool("skopeo")
        .args(["delete", "--tls-verify=false"])
        .arg(&remote));
    run_expect_failure(
        cmd::tool("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/e2e/skopeo@{digest}", reg.host())),
    );
    let (status, body) = reg.request("GET", &format!("/v2/e2e/skopeo/manifests/{digest}"), &[]);
    assert_eq!(status, 404, "{body}");
    assert_eq!(Registry::error_codes(&body), ["MANIFEST_UNKNOWN"]);
    // With every tag gone the repository lists no tags (or, equally valid, is unknown).
    let (status, body) = reg.request("GET", "/v2/e2e/skopeo/tags/list", &[]);
    match status {
        200 => {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let empty = v["tags"].is_null() || v["tags"].as_array().is_some_and(|t| t.is_empty());
            assert!(
                empty,
                "tags still listed after the manifest was deleted: {body}"
            );
        }
        404 => assert_eq!(Registry::error_codes(&body), ["NAME_UNKNOWN"]),
        other => panic!("tags list after delete answered {other}: {body}"),
    }
}
