//! The main client flow, run against a registry reached over HTTPS (through a TLS proxy or with
//! the registry terminating TLS itself): skopeo in and out byte-identical, podman push and pull
//! with a streamed upload, oras push and pull. Clients trust the test CA, no insecure flags.

use super::cmd::{self, run};
use super::engine::Engine;
use super::image::{assert_same_image, OciImage};
use super::python::{oras, oras_json};
use super::tls::Certs;
use std::path::Path;

pub fn main_flow_over_tls(host: &str, certs: &Certs, work: &Path) {
    // One layer big enough that a proxy spooling bodies or a fixed-size buffer would show.
    let image = OciImage::build(&work.join("layout"), "v1", &[16384, 1024]);
    let cert_dir = certs.cert_dir.to_str().unwrap();

    // skopeo in and back out.
    let remote = format!("docker://{host}/e2e/tls:v1");
    run(cmd::tool("skopeo")
        .args(["copy", "--dest-cert-dir", cert_dir])
        .arg(image.transport_ref())
        .arg(&remote));
    let out = work.join("out");
    run(cmd::tool("skopeo")
        .args(["copy", "--src-cert-dir", cert_dir])
        .arg(&remote)
        .arg(format!("oci:{}:v1", out.display())));
    assert_same_image(&image.layout, &out, "v1");
    let tags = run(cmd::tool("skopeo")
        .args(["list-tags", "--cert-dir", cert_dir])
        .arg(format!("docker://{host}/e2e/tls")));
    assert!(tags.contains("\"v1\""), "{tags}");

    // podman pulls what skopeo pushed, and pushes it again (streamed PATCH, no length).
    let engine = Engine::new(&work.join("podman"));
    let pulled = format!("{host}/e2e/tls:v1");
    run(engine
        .podman()
        .args(["pull", "-q", "--cert-dir", cert_dir])
        .arg(&pulled));
    let config_digest = {
        let manifest: serde_json::Value = serde_json::from_slice(&super::image::read_blob(
            &image.layout,
            &image.manifest_digest(),
        ))
        .unwrap();
        manifest["config"]["digest"].as_str().unwrap().to_string()
    };
    let id = run(engine
        .podman()
        .args(["image", "inspect", "--format", "{{.Id}}"])
        .arg(&pulled));
    assert_eq!(format!("sha256:{}", id.trim()), config_digest);
    let pushed = format!("{host}/e2e/tls-podman:v1");
    let digest_file = work.join("podman.digest");
    run(engine
        .podman()
        .args([
            "push",
            "-q",
            "--cert-dir",
            cert_dir,
            "--format",
            "v2s2",
            "--digestfile",
        ])
        .arg(&digest_file)
        .arg(&pulled)
        .arg(&pushed));
    let raw = run(cmd::tool("skopeo")
        .args(["inspect", "--raw", "--cert-dir", cert_dir])
        .arg(format!("docker://{pushed}")));
    assert_eq!(
        cmd::sha256_digest(raw.as_bytes()),
        std::fs::read_to_string(&digest_file).unwrap()
    );
    let fresh = Engine::new(&work.join("podman2"));
    run(fresh
        .podman()
        .args(["pull", "-q", "--cert-dir", cert_dir])
        .arg(&pushed));
    let sums = fresh.run_in(&pushed, &["sh", "-c", "sha256sum /data/*"]);
    for (path, sha) in &image.files {
        assert!(
            sums.contains(&format!("{sha}  {path}")),
            "{path} differs:\n{sums}"
        );
    }

    // oras-py over HTTPS with the CA bundle.
    let ca = Some(certs.ca_crt.as_path());
    let payload = work.join("payload.bin");
    let mut bytes = vec![0u8; 512 * 1024];
    getrandom::getrandom(&mut bytes).unwrap();
    std::fs::write(&payload, &bytes).unwrap();
    let artifact = format!("{host}/e2e/tls-artifact:v1");
    // Chunked: every PATCH goes to the Location the previous answer gave, through the proxy.
    let pushed = oras_json(
        oras(ca)
            .args(["push-artifact", &artifact])
            .args(["--artifact-type", "application/vnd.example.tls"])
            .args(["--chunk-size", "131072"])
            .arg(&payload),
    );
    assert_eq!(pushed["digest"], pushed["computed_digest"], "{pushed}");
    let pulled_dir = work.join("oras-out");
    oras_json(oras(ca).args(["pull", &artifact]).arg(&pulled_dir));
    assert_eq!(
        std::fs::read(pulled_dir.join("payload.bin")).unwrap(),
        bytes
    );
}
