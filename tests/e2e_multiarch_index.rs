//! buildah pushes a two-platform image (OCI index, and Docker manifest list) with `--all`;
//! skopeo copies the whole index back out intact and podman pulls the right platform from it.

mod e2e;

use e2e::cmd::{self, run};
use e2e::engine::Engine;
use e2e::image::{read_blob, OciImage};
use e2e::registry::Registry;
use serde_json::Value;

fn build(work: &std::path::Path, name: &str, arch: &str) -> OciImage {
    let mut c = cmd::tool("bash");
    c.arg(cmd::repo_path("tools/e2e/make-image.sh"))
        .arg(work.join(name))
        .arg("v1")
        .arg("256")
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
fn multi_platform_index_push_copy_and_pull() {
    let reg = Registry::start();
    let work = e2e::workdir();
    let amd64 = build(work.path(), "amd64", "amd64");
    let arm64 = build(work.path(), "arm64", "arm64");
    let engine = Engine::new(&work.path().join("builder"));
    run(engine
        .buildah()
        .args(["manifest", "create", "localhost/e2e/multi:v1"]));
    for image in [&amd64, &arm64] {
        run(engine
            .buildah()
            .args(["manifest", "add", "localhost/e2e/multi:v1"])
            .arg(image.transport_ref()));
    }

    for (format, index_type, child_type) in [
        (
            "oci",
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.oci.image.manifest.v1+json",
        ),
        (
            "v2s2",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        ),
    ] {
        let remote = format!("{}/e2e/multi:{format}", reg.host());
        let digest_file = work.path().join(format!("{format}.digest"));
        run(engine
            .buildah()
            .args([
                "manifest",
                "push",
                "-q",
                "--all",
                "--tls-verify=false",
                "--format",
                format,
            ])
            .arg("--digestfile")
            .arg(&digest_file)
            .arg("localhost/e2e/multi:v1")
            .arg(format!("docker://{remote}")));
        let pushed = std::fs::read_to_string(&digest_file).unwrap();
        let raw = run(cmd::tool("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{remote}")));
        assert_eq!(cmd::sha256_digest(raw.as_bytes()), pushed, "{format}");
        let index: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(index["mediaType"], index_type, "{format}: {index}");
        let children = index["manifests"].as_array().unwrap();
        let mut arches: Vec<&str> = children
            .iter()
            .map(|m| m["platform"]["architecture"].as_str().unwrap())
            .collect();
        arches.sort_unstable();
        assert_eq!(arches, ["amd64", "arm64"]);

        // Every child manifest is served by digest with the bytes the index names.
        for child in children {
            let digest = child["digest"].as_str().unwrap();
            assert_eq!(child["mediaType"], child_type);
            let (status, body) = reg.request(
                "GET",
                &format!("/v2/e2e/multi/manifests/{digest}"),
                &["-H", e2e::registry::ACCEPT_MANIFESTS],
            );
            assert_eq!(status, 200, "{body}");
            assert_eq!(cmd::sha256_digest(body.as_bytes()), digest);
        }

        // The whole index back out, byte-identical (an OCI layout holds OCI types only, so
        // skopeo would convert a Docker list: compare the OCI one).
        if format == "oci" {
            let out = work.path().join("out");
            run(cmd::tool("skopeo")
                .args(["copy", "--all", "--src-tls-verify=false"])
                .arg(format!("docker://{remote}"))
                .arg(format!("oci:{}:v1", out.display())));
            assert_eq!(e2e::image::manifest_digest(&out, "v1"), pushed);
            for child in children {
                let digest = child["digest"].as_str().unwrap();
                let manifest = read_blob(&out, digest);
                assert_eq!(cmd::sha256_digest(&manifest), digest);
                let manifest: Value = serde_json::from_slice(&manifest).unwrap();
                for layer in manifest["layers"].as_array().unwrap() {
                    let d = layer["digest"].as_str().unwrap();
                    assert_eq!(cmd::sha256_digest(&read_blob(&out, d)), d);
                }
            }
        }

        // podman picks the platform it is asked for out of the index.
        let puller = Engine::new(&work.path().join(format!("pull-{format}")));
        for arch in ["amd64", "arm64"] {
            run(puller
                .podman()
                .args(["pull", "-q", "--tls-verify=false", "--arch", arch])
                .arg(&remote));
            let got = run(puller
                .podman()
                .args(["image", "inspect", "--format", "{{.Architecture}}"])
                .arg(&remote));
            assert_eq!(got.trim(), arch, "{format}");
        }
        // The host's platform runs, with the contents of the amd64 image.
        run(puller
            .podman()
            .args(["pull", "-q", "--tls-verify=false"])
            .arg(&remote));
        let sums = puller.run_in(&remote, &["sh", "-c", "sha256sum /data/*"]);
        for (path, sha) in &amd64.files {
            assert!(
                sums.contains(&format!("{sha}  {path}")),
                "{format}: {path}:\n{sums}"
            );
        }
        assert!(!arm64
            .files
            .iter()
            .any(|(_, sha)| sums.contains(sha.as_str())));
    }
}
