//! The air-gap path: an image exported from the registry to an oci-archive and a docker-archive
//! with skopeo, then imported into another repository from each archive, intact.

mod e2e;

use e2e::cmd::{self, run};
use e2e::engine::Engine;
use e2e::image::{assert_same_image, OciImage};
use e2e::registry::Registry;

#[test]
fn export_to_archives_and_import_back() {
    let reg = Registry::start();
    let work = e2e::workdir();
    let image = OciImage::build(&work.path().join("layout"), "v1", &[1024]);
    let copy = |from: String, to: String| {
        run(cmd::tool("skopeo")
            .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
            .arg(from)
            .arg(to));
    };
    let source = format!("docker://{}/e2e/airgap:v1", reg.host());
    copy(image.transport_ref(), source.clone());

    // oci-archive keeps the OCI manifest: the re-imported image has the same digest and bytes.
    let oci_tar = work.path().join("image.oci.tar");
    copy(
        source.clone(),
        format!("oci-archive:{}:v1", oci_tar.display()),
    );
    let from_oci = format!("docker://{}/e2e/airgap-oci:v1", reg.host());
    copy(
        format!("oci-archive:{}:v1", oci_tar.display()),
        from_oci.clone(),
    );
    let out = work.path().join("out");
    copy(from_oci, format!("oci:{}:v1", out.display()));
    assert_same_image(&image.layout, &out, "v1");

    // docker-archive stores Docker-format layers, so the manifest differs: check what runs.
    let docker_tar = work.path().join("image.docker.tar");
    copy(
        source,
        format!("docker-archive:{}:e2e/airgap:v1", docker_tar.display()),
    );
    let from_docker = format!("{}/e2e/airgap-docker:v1", reg.host());
    copy(
        format!("docker-archive:{}", docker_tar.display()),
        format!("docker://{from_docker}"),
    );
    let engine = Engine::new(&work.path().join("podman"));
    run(engine
        .podman()
        .args(["pull", "-q", "--tls-verify=false"])
        .arg(&from_docker));
    let sums = engine.run_in(&from_docker, &["sh", "-c", "sha256sum /data/*"]);
    for (path, sha) in &image.files {
        assert!(sums.contains(&format!("{sha}  {path}")), "{path}:\n{sums}");
    }
}
