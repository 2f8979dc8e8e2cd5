//! buildah builds an image from scratch and pushes it (Docker and OCI formats); podman pulls it
//! back from the registry into another storage and the built file comes out intact.

mod e2e;

use e2e::cmd::{self, run};
use e2e::engine::Engine;
use e2e::registry::Registry;

#[test]
fn buildah_built_image_pushes_and_pulls_back() {
    let reg = Registry::start();
    let work = e2e::workdir();
    let payload = work.path().join("payload.bin");
    let mut bytes = vec![0u8; 1536 * 1024];
    getrandom::getrandom(&mut bytes).unwrap();
    std::fs::write(&payload, &bytes).unwrap();
    let payload_sha = cmd::sha256_file(&payload);

    let builder = Engine::new(&work.path().join("builder"));
    let ctr = run(builder.buildah().args(["from", "scratch"]));
    let ctr = ctr.trim();
    run(builder
        .buildah()
        .args(["copy", ctr, "/bin/busybox", "/bin/busybox"]));
    run(builder
        .buildah()
        .args(["copy", ctr])
        .arg(&payload)
        .arg("/data/payload.bin"));
    run(builder
        .buildah()
        .args(["config", "--cmd", "/bin/busybox sh", "--os", "linux", ctr]));
    run(builder
        .buildah()
        .args(["commit", "-q", ctr, "localhost/e2e/built:v1"]));

    let puller = Engine::new(&work.path().join("puller"));
    for format in ["docker", "oci"] {
        let digest_file = work.path().join(format!("{format}.digest"));
        let remote = format!("{}/e2e/buildah:{format}", reg.host());
        run(builder
            .buildah()
            .args([
                "push",
                "-q",
                "--tls-verify=false",
                "--format",
                format,
                "--digestfile",
            ])
            .arg(&digest_file)
            .arg("localhost/e2e/built:v1")
            .arg(format!("docker://{remote}")));
        let pushed = std::fs::read_to_string(&digest_file).unwrap();
        let raw = run(cmd::tool("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{remote}")));
        assert_eq!(cmd::sha256_digest(raw.as_bytes()), pushed, "{format}");

        run(puller
            .podman()
            .args(["pull", "-q", "--tls-verify=false"])
            .arg(&remote));
        let sum = puller.run_in(&remote, &["/bin/busybox", "sha256sum", "/data/payload.bin"]);
        assert_eq!(
            sum.split_whitespace().next(),
            Some(payload_sha.as_str()),
            "{format}"
        );
    }
}
