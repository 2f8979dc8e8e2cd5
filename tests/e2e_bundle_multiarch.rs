//! A two-platform image pushed with buildah (`manifest push --all`) is exported whole: skopeo
//! copies every platform back out of the bundle (`copy --all oci-archive:`) with the index
//! unchanged, containerd imports it for all platforms, and berth imports it into another data
//! directory that then serves the same index and children.

mod e2e;

use std::process::Command;

use e2e::cmd::{self, run};
use e2e::containerd::Containerd;
use e2e::engine::Engine;
use e2e::image::{manifest_digest, read_blob, OciImage};
use e2e::registry::{berth_bin, Registry};
use serde_json::Value;

fn build(work: &std::path::Path, name: &str, arch: &str) -> OciImage {
    let mut c = cmd::tool("bash");
    c.arg(cmd::repo_path("tools/e2e/make-image.sh"))
        .arg(work.join(name))
        .arg("v1")
        .arg("128")
        .env("IMAGE_ARCH", arch);
    let files = cmd::run(&mut c)
        .lines()
        .map(|l| {
            let (p, h) = l.split_once(' ').unwrap();
            (p.to_string(), h.to_string())
        })
        .collect();
    OciImage {
        layout: work.join(name),
        tag: "v1".into(),
        files,
    }
}

#[test]
fn a_multi_platform_index_travels_whole() {
    let work = e2e::workdir();
    let mut source = Registry::start_berth_with(None, &[], |_| {});
    let engine = Engine::new(&work.path().join("builder"));
    run(engine
        .buildah()
        .args(["manifest", "create", "localhost/e2e/multi:v1"]));
    for arch in ["amd64", "arm64"] {
        let image = build(work.path(), arch, arch);
        run(engine
            .buildah()
            .args(["manifest", "add", "localhost/e2e/multi:v1"])
            .arg(image.transport_ref()));
    }
    let digest_file = work.path().join("pushed.digest");
    run(engine
        .buildah()
        .args(["manifest", "push", "-q", "--all", "--tls-verify=false"])
        .args(["--format", "oci", "--digestfile"])
        .arg(&digest_file)
        .arg("localhost/e2e/multi:v1")
        .arg(format!("docker://{}/e2e/multi:v1", source.host())));
    let pushed = std::fs::read_to_string(&digest_file).unwrap();
    source.shut_down();

    let bundle = work.path().join("multi.tar");
    run(Command::new(berth_bin())
        .args(["export", "--data"])
        .arg(source.data_dir())
        .args(["e2e/multi:v1", "-o"])
        .arg(&bundle));

    // skopeo: the whole index and both platforms out of the bundle, the index byte-identical.
    let out = work.path().join("out");
    run(cmd::tool("skopeo")
        .args(["copy", "--all"])
        .arg(format!("oci-archive:{}:e2e/multi:v1", bundle.display()))
        .arg(format!("oci:{}:v1", out.display())));
    assert_eq!(manifest_digest(&out, "v1"), pushed.trim());
    let index: Value = serde_json::from_slice(&read_blob(&out, pushed.trim())).unwrap();
    let children = index["manifests"].as_array().unwrap();
    assert_eq!(children.len(), 2);
    for child in children {
        let m: Value =
            serde_json::from_slice(&read_blob(&out, child["digest"].as_str().unwrap())).unwrap();
        for layer in m["layers"].as_array().unwrap() {
            read_blob(&out, layer["digest"].as_str().unwrap());
        }
    }

    // containerd takes every platform's content.
    let ctrd = Containerd::start(&work.path().join("ctrd"));
    run(ctrd
        .ctr()
        .args(["images", "import", "--all-platforms"])
        .arg(&bundle));
    let listing = run(ctrd.ctr().args(["images", "ls"]));
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("e2e/multi:v1") && l.contains(pushed.trim())),
        "{listing}"
    );

    // berth: a fresh data directory serves the same index, and each child by digest.
    let target = Registry::start_berth_with(None, &[], |data| {
        run(Command::new(berth_bin())
            .args(["import", "--data"])
            .arg(data)
            .arg(&bundle));
    });
    let raw = run(cmd::tool("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/e2e/multi:v1", target.host())));
    assert_eq!(cmd::sha256_digest(raw.as_bytes()), pushed.trim());
    for child in children {
        let d = child["digest"].as_str().unwrap();
        let m = target.get_manifest("e2e/multi", d);
        assert!(m["layers"].is_array(), "{d}: {m}");
    }
    source.start_again();
}
