//! podman pushes an image in both manifest formats (OCI and Docker schema 2) and another with zstd
//! layers; fresh podman storages pull them back and run them: same image id, same file contents.

mod e2e;

use e2e::cmd::{self, run};
use e2e::engine::Engine;
use e2e::image::OciImage;
use e2e::registry::Registry;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

#[test]
fn podman_push_both_formats_and_pull_back() {
    let reg = Registry::start();
    let work = e2e::workdir();
    let image = OciImage::build(&work.path().join("layout"), "v1", &[1024, 768]);
    let pusher = Engine::new(&work.path().join("pusher"));
    let id = run(pusher
        .podman()
        .args(["pull", "-q"])
        .arg(image.transport_ref()));
    let id = id.trim();
    run(pusher.podman().args(["tag", id, "localhost/e2e/app:v1"]));

    for (format, media_type) in [("oci", OCI_MANIFEST), ("v2s2", DOCKER_MANIFEST)] {
        let digest_file = work.path().join(format!("{format}.digest"));
        run(pusher
            .podman()
            .args([
                "push",
                "-q",
                "--tls-verify=false",
                "--format",
                format,
                "--digestfile",
            ])
            .arg(&digest_file)
            .arg("localhost/e2e/app:v1")
            .arg(format!("{}/e2e/podman:{format}", reg.host())));
        let pushed = std::fs::read_to_string(&digest_file).unwrap();

        // The registry keeps the bytes podman sent, with podman's media type and digest.
        let accept = format!("Accept: {OCI_MANIFEST}, {DOCKER_MANIFEST}");
        let path = format!("/v2/e2e/podman/manifests/{format}");
        let headers = reg.headers("GET", &path, &["-H", &accept]);
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert_eq!(header("content-type"), media_type, "{format}: {headers:?}");
        assert_eq!(
            header("docker-content-digest"),
            pushed,
            "{format}: {headers:?}"
        );
        let (status, body) = reg.request("GET", &path, &["-H", &accept]);
        assert_eq!(status, 200);
        assert_eq!(cmd::sha256_digest(body.as_bytes()), pushed);
        let manifest: serde_json::Value = serde_json::from_str(&body).unwrap();
        // The OCI format leaves the optional mediaType field out; Docker schema 2 requires it.
        if !manifest["mediaType"].is_null() || format == "v2s2" {
            assert_eq!(manifest["mediaType"], media_type);
        }
        assert_eq!(manifest["layers"].as_array().unwrap().len(), 3);
    }

    let puller = Engine::new(&work.path().join("puller"));
    for format in ["oci", "v2s2"] {
        let remote = format!("{}/e2e/podman:{format}", reg.host());
        run(puller
            .podman()
            .args(["pull", "-q", "--tls-verify=false"])
            .arg(&remote));
        let pulled_id = run(puller
            .podman()
            .args(["image", "inspect", "--format", "{{.Id}}"])
            .arg(&remote));
        assert_eq!(
            pulled_id.trim(),
            id,
            "{format}: the image config changed on the way"
        );
        let sums = puller.run_in(&remote, &["sh", "-c", "sha256sum /data/*"]);
        for (path, sha) in &image.files {
            assert!(
                sums.contains(&format!("{sha}  {path}")),
                "{format}: {path} differs:\n{sums}"
            );
        }
    }

    // zstd-compressed layers: the registry stores any layer type it is given. A separate image
    // and storage, because containers/image would otherwise mix up reuse of gzip and zstd
    // copies of the same layers between the pushes above (a client-side limitation).
    let zstd_image = OciImage::build(&work.path().join("zstd-layout"), "v1", &[512]);
    let zstd_pusher = Engine::new(&work.path().join("zstd-pusher"));
    let zstd_id = run(zstd_pusher
        .podman()
        .args(["pull", "-q"])
        .arg(zstd_image.transport_ref()));
    let remote = format!("{}/e2e/podman-zstd:v1", reg.host());
    run(zstd_pusher
        .podman()
        .args(["push", "-q", "--tls-verify=false", "--format", "oci"])
        .args(["--compression-format", "zstd", zstd_id.trim()])
        .arg(&remote));
    let manifest = reg.get_manifest("e2e/podman-zstd", "v1");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{manifest}");
    for layer in layers {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }
    let zstd_puller = Engine::new(&work.path().join("zstd-puller"));
    run(zstd_puller
        .podman()
        .args(["pull", "-q", "--tls-verify=false"])
        .arg(&remote));
    let sums = zstd_puller.run_in(&remote, &["sh", "-c", "sha256sum /data/*"]);
    for (path, sha) in &zstd_image.files {
        assert!(
            sums.contains(&format!("{sha}  {path}")),
            "zstd: {path}:\n{sums}"
        );
    }
}
