//! containerd (`ctr`, private daemon) pulls from the registry over plain HTTP, pushes back into
//! another repository (cross-repo mount), and pulls `docker.io/library/...` through the registry
//! configured as a `hosts.toml` mirror (requests carry `?ns=docker.io`).

mod e2e;

use e2e::cmd::{self, run};
use e2e::containerd::Containerd;
use e2e::image::OciImage;
use e2e::registry::{Kind, Registry};

fn push_with_skopeo(reg: &Registry, image: &OciImage, repo_tag: &str) {
    run(cmd::tool("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(image.transport_ref())
        .arg(format!("docker://{}/{repo_tag}", reg.host())));
}

fn remote_digest(reg: &Registry, repo_tag: &str) -> String {
    let raw = run(cmd::tool("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/{repo_tag}", reg.host())));
    cmd::sha256_digest(raw.as_bytes())
}

fn assert_all_blobs_fetched(ctrd: &Containerd, layout: &std::path::Path, digest: &str) {
    let content = run(ctrd.ctr().args(["content", "ls", "-q"]));
    let manifest: serde_json::Value =
        serde_json::from_slice(&e2e::image::read_blob(layout, digest)).unwrap();
    let mut wanted = vec![manifest["config"]["digest"].as_str().unwrap()];
    wanted.extend(
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap()),
    );
    for d in wanted {
        assert!(
            content.lines().any(|l| l.trim() == d),
            "{d} not in containerd's content store"
        );
    }
}

#[test]
fn ctr_pull_push_and_mirror() {
    let reg = Registry::start();
    let work = e2e::workdir();
    let image = OciImage::build(&work.path().join("layout"), "v1", &[1024, 512]);
    let digest = image.manifest_digest();
    push_with_skopeo(&reg, &image, "e2e/ctr:v1");
    // A different image for the mirror, so that its blobs are not already in containerd's store.
    let mirrored = OciImage::build(&work.path().join("mirrored"), "v1", &[768]);
    push_with_skopeo(&reg, &mirrored, "library/mirrored:v1");
    let ctrd = Containerd::start(&work.path().join("ctrd"));

    // Direct pull over plain HTTP, unpacked into the snapshotter.
    let name = format!("{}/e2e/ctr:v1", reg.host());
    run(ctrd
        .ctr()
        .args(["images", "pull", "--plain-http"])
        .arg(&name));
    assert_eq!(ctrd.image_digest(&name), digest);
    assert_all_blobs_fetched(&ctrd, &image.layout, &digest);

    // Push under another repository name: containerd mounts the blobs from e2e/ctr.
    let pushed = format!("{}/e2e/ctr-pushed:v1", reg.host());
    run(ctrd.ctr().args(["images", "tag"]).arg(&name).arg(&pushed));
    run(ctrd
        .ctr()
        .args(["images", "push", "--plain-http"])
        .arg(&pushed));
    assert_eq!(remote_digest(&reg, "e2e/ctr-pushed:v1"), digest);
    let back = work.path().join("back");
    run(cmd::tool("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{pushed}"))
        .arg(format!("oci:{}:v1", back.display())));
    e2e::image::assert_same_image(&image.layout, &back, "v1");

    // The registry as a docker.io mirror: the upstream is unreachable, so this can only work if
    // the mirror answers the ?ns=docker.io requests for library/mirrored.
    ctrd.add_mirror(
        "docker.io",
        "https://registry-1.docker.io",
        &format!("http://{}", reg.host()),
    );
    let upstream_name = "docker.io/library/mirrored:v1";
    run(ctrd
        .ctr()
        .args(["images", "pull", "--hosts-dir"])
        .arg(&ctrd.hosts_dir)
        .arg(upstream_name));
    // The server's request log shows the mirror was asked (an external registry keeps its own).
    assert!(
        reg.kind() == Kind::External
            || reg.log_text().contains("/v2/library/mirrored/manifests/v1"),
        "the mirror pull never reached the registry"
    );
    let mirrored_digest = mirrored.manifest_digest();
    assert_eq!(ctrd.image_digest(upstream_name), mirrored_digest);
    assert_all_blobs_fetched(&ctrd, &mirrored.layout, &mirrored_digest);
}
