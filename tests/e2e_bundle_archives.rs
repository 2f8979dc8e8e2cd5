//! `berth import` reads what other tools write: skopeo's oci-archive (named by tag only, so
//! `--repo` names it) and docker-archive, and a multi-image archive from `podman save -m`.
//! A registry started on the data directory then serves each image: the oci-archive one
//! byte-identical, the docker-archive ones as images podman pulls and runs with every file.

mod e2e;

use e2e::cmd::{self, run};
use e2e::engine::Engine;
use e2e::image::{assert_same_image, OciImage};
use e2e::registry::{berth_bin, Registry};

#[test]
fn oci_and_docker_archives_import_and_serve() {
    let work = e2e::workdir();
    let one = OciImage::build(&work.path().join("one"), "v1", &[512]);
    let two = OciImage::build(&work.path().join("two"), "v2", &[256]);
    let skopeo_copy = |from: String, to: String| {
        run(cmd::tool("skopeo")
            .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
            .arg(from)
            .arg(to));
    };
    let oci_tar = work.path().join("one.oci.tar");
    skopeo_copy(
        one.transport_ref(),
        format!("oci-archive:{}:v1", oci_tar.display()),
    );
    let docker_tar = work.path().join("one.docker.tar");
    skopeo_copy(
        one.transport_ref(),
        format!(
            "docker-archive:{}:e2e/archive/docker:v1",
            docker_tar.display()
        ),
    );

    // Two images in one docker-archive, as podman saves them.
    let engine = Engine::new(&work.path().join("podman"));
    for (image, name) in [(&one, "e2e/multi-one:v1"), (&two, "e2e/multi-two:v2")] {
        let id = run(engine
            .podman()
            .args(["pull", "-q"])
            .arg(image.transport_ref()));
        run(engine.podman().arg("tag").arg(id.trim()).arg(name));
    }
    let multi_tar = work.path().join("multi.tar");
    run(engine
        .podman()
        .args(["save", "-q", "--multi-image-archive", "-o"])
        .arg(&multi_tar)
        .args(["e2e/multi-one:v1", "e2e/multi-two:v2"]));

    let reg = Registry::start_berth_with(None, &[], |data| {
        let import = |args: &[&std::ffi::OsStr]| {
            run(std::process::Command::new(berth_bin())
                .arg("import")
                .arg("--data")
                .arg(data)
                .args(args))
        };
        // Named "v1" alone: without --repo it cannot be placed, and is refused.
        let refused = cmd::run_expect_failure(
            std::process::Command::new(berth_bin())
                .args(["import", "--data"])
                .arg(data)
                .arg(&oci_tar),
        );
        assert!(refused.contains("--repo"), "{refused}");
        let names = import(&[
            oci_tar.as_os_str(),
            "--repo".as_ref(),
            "e2e/archive/oci".as_ref(),
        ]);
        assert_eq!(names.trim(), "e2e/archive/oci:v1");
        // skopeo writes the name fully qualified into RepoTags; that is the name it gets.
        let names = import(&[docker_tar.as_os_str()]);
        assert_eq!(names.trim(), "docker.io/e2e/archive/docker:v1");
        let names = import(&[multi_tar.as_os_str()]);
        let mut names: Vec<&str> = names.lines().collect();
        names.sort();
        assert_eq!(
            names,
            ["localhost/e2e/multi-one:v1", "localhost/e2e/multi-two:v2"]
        );
    });

    let out = work.path().join("out");
    skopeo_copy(
        format!("docker://{}/e2e/archive/oci:v1", reg.host()),
        format!("oci:{}:v1", out.display()),
    );
    assert_same_image(&one.layout, &out, "v1");

    let puller = Engine::new(&work.path().join("puller"));
    for (image, name) in [
        (&one, "docker.io/e2e/archive/docker:v1"),
        (&one, "localhost/e2e/multi-one:v1"),
        (&two, "localhost/e2e/multi-two:v2"),
    ] {
        let remote = format!("{}/{name}", reg.host());
        run(puller
            .podman()
            .args(["pull", "-q", "--tls-verify=false"])
            .arg(&remote));
        let sums = puller.run_in(&remote, &["sh", "-c", "sha256sum /data/*"]);
        for (path, sha) in &image.files {
            assert!(
                sums.contains(&format!("{sha}  {path}")),
                "{name} {path}:\n{sums}"
            );
        }
    }
}
