//! Several clients push at the same time, sharing layers (same repository and different ones):
//! four skopeo copies of one image and two podman pushes of another. Every copy reads back
//! complete: skopeo's byte-identical, podman's with the same file contents.
//!
//! The two images share no layer on purpose: containers/image may swap a layer for another
//! compression of the same content that it knows the registry holds, which is the client's call.

mod e2e;

use e2e::cmd::{self, run};
use e2e::engine::Engine;
use e2e::image::{assert_same_image, OciImage};
use e2e::registry::Registry;

#[test]
fn concurrent_pushes_of_shared_layers() {
    let reg = Registry::start();
    let work = e2e::workdir();
    let image = OciImage::build(&work.path().join("layout"), "v1", &[2048, 1024, 1024]);

    // podman's image is built by buildah in the same storage.
    let engine = Engine::new(&work.path().join("podman"));
    let payload = work.path().join("payload.bin");
    let mut bytes = vec![0u8; 2048 * 1024];
    getrandom::getrandom(&mut bytes).unwrap();
    std::fs::write(&payload, &bytes).unwrap();
    let ctr = run(engine.buildah().args(["from", "scratch"]));
    let ctr = ctr.trim();
    run(engine
        .buildah()
        .args(["copy", ctr, "/bin/busybox", "/bin/busybox"]));
    run(engine
        .buildah()
        .args(["copy", ctr])
        .arg(&payload)
        .arg("/data/payload.bin"));
    run(engine
        .buildah()
        .args(["commit", "-q", ctr, "localhost/e2e/concurrent:v1"]));

    let targets = [
        "e2e/shared-a:v1",
        "e2e/shared-a:v2",
        "e2e/shared-b:v1",
        "e2e/shared-c:v1",
    ];
    let podman_targets = ["e2e/shared-a:podman", "e2e/shared-d:podman"];
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for target in targets {
            let source = image.transport_ref();
            let dest = format!("docker://{}/{target}", reg.host());
            handles.push(s.spawn(move || {
                run(cmd::tool("skopeo")
                    .args(["copy", "--dest-tls-verify=false"])
                    .arg(source)
                    .arg(dest));
            }));
        }
        for target in podman_targets {
            let dest = format!("{}/{target}", reg.host());
            let engine = &engine;
            handles.push(s.spawn(move || {
                run(engine
                    .podman()
                    .args([
                        "push",
                        "-q",
                        "--tls-verify=false",
                        "localhost/e2e/concurrent:v1",
                    ])
                    .arg(dest));
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
    });

    for (i, target) in targets.iter().enumerate() {
        let out = work.path().join(format!("out{i}"));
        run(cmd::tool("skopeo")
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{}/{target}", reg.host()))
            .arg(format!("oci:{}:v1", out.display())));
        assert_same_image(&image.layout, &out, "v1");
    }
    let puller = Engine::new(&work.path().join("puller"));
    let payload_sha = cmd::sha256_file(&payload);
    for target in podman_targets {
        let remote = format!("{}/{target}", reg.host());
        run(puller
            .podman()
            .args(["pull", "-q", "--tls-verify=false"])
            .arg(&remote));
        let sum = puller.run_in(&remote, &["/bin/busybox", "sha256sum", "/data/payload.bin"]);
        assert_eq!(
            sum.split_whitespace().next(),
            Some(payload_sha.as_str()),
            "{target}"
        );
    }
}
