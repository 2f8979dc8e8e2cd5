//! containerd imports a berth bundle (`ctr images import`): the image is listed under its full
//! name with the digest it had in the layout it came from, and its content is all there.

mod e2e;

use e2e::cmd::run;
use e2e::containerd::Containerd;
use e2e::image::OciImage;
use e2e::registry::berth_bin;

#[test]
fn ctr_imports_the_bundle_by_name() {
    let work = e2e::workdir();
    let image = OciImage::build(&work.path().join("layout"), "v1", &[256, 128]);
    let data = work.path().join("data");
    let berth = || std::process::Command::new(berth_bin());
    // An OCI layout directory whose index names the image only "v1": --repo names it.
    run(berth()
        .args(["import", "--data"])
        .arg(&data)
        .arg(&image.layout)
        .args(["--repo", "e2e/ctr-bundle"]));
    let bundle = work.path().join("bundle.tar");
    run(berth()
        .args(["export", "--data"])
        .arg(&data)
        .arg("e2e/ctr-bundle:v1")
        .arg("-o")
        .arg(&bundle));

    let ctrd = Containerd::start(&work.path().join("ctrd"));
    run(ctrd.ctr().args(["images", "import"]).arg(&bundle));
    let listing = run(ctrd.ctr().args(["images", "ls"]));
    let line = listing
        .lines()
        .find(|l| l.split_whitespace().next() == Some("e2e/ctr-bundle:v1"))
        .unwrap_or_else(|| panic!("e2e/ctr-bundle:v1 not in ctr images ls:\n{listing}"));
    assert!(line.contains(&image.manifest_digest()), "{line}");
    let content = run(ctrd.ctr().args(["content", "ls", "-q"]));
    let manifest: serde_json::Value = serde_json::from_slice(&e2e::image::read_blob(
        &image.layout,
        &image.manifest_digest(),
    ))
    .unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    for d in layers.iter().map(|l| l["digest"].as_str().unwrap()) {
        assert!(content.lines().any(|l| l.trim() == d), "{d} not imported");
    }
}
