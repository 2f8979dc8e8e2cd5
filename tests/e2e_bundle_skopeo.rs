//! An image pushed with skopeo is exported from the stopped registry's data directory; skopeo
//! reads the bundle as an oci-archive by the image's full name, byte-identical to what was
//! pushed, and `berth import` fills a fresh data directory from it, under the same name, that
//! a registry then serves to skopeo unchanged.

mod e2e;

use e2e::cmd::{self, run};
use e2e::image::{assert_same_image, OciImage};
use e2e::registry::{berth_bin, Registry};

#[test]
fn skopeo_reads_the_bundle_and_berth_imports_it() {
    let work = e2e::workdir();
    let image = OciImage::build(&work.path().join("layout"), "v1", &[512]);
    let mut source = Registry::start_berth_with(None, &[], |_| {});
    let copy = |from: String, to: String| {
        run(cmd::tool("skopeo")
            .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
            .arg(from)
            .arg(to));
    };
    copy(
        image.transport_ref(),
        format!("docker://{}/e2e/bundle/app:v1", source.host()),
    );
    source.shut_down();

    let bundle = work.path().join("bundle.tar");
    let out = run(std::process::Command::new(berth_bin())
        .arg("export")
        .arg("--data")
        .arg(source.data_dir())
        .arg("e2e/bundle/*")
        .arg("-o")
        .arg(&bundle));
    assert!(
        out.trim().is_empty(),
        "export prints nothing on stdout: {out}"
    );

    let from_archive = work.path().join("from-archive");
    copy(
        format!("oci-archive:{}:e2e/bundle/app:v1", bundle.display()),
        format!("oci:{}:v1", from_archive.display()),
    );
    assert_same_image(&image.layout, &from_archive, "v1");

    let target = Registry::start_berth_with(None, &[], |data| {
        let names = run(std::process::Command::new(berth_bin())
            .arg("import")
            .arg("--data")
            .arg(data)
            .arg(&bundle));
        assert_eq!(names.trim(), "e2e/bundle/app:v1");
    });
    let pulled = work.path().join("pulled");
    copy(
        format!("docker://{}/e2e/bundle/app:v1", target.host()),
        format!("oci:{}:v1", pulled.display()),
    );
    assert_same_image(&image.layout, &pulled, "v1");
    source.start_again();
}
