//! Helm 4's registry client (helm-sdkpy) packages a chart, pushes it to `oci://`, pushes the same
//! chart again, and shows its Chart.yaml and values back; a version with `+` build metadata is
//! stored under a tag with `_` and found again from the tag list.

mod e2e;

use e2e::cmd::{self, run};
use e2e::python::helm;
use e2e::registry::Registry;
use std::path::Path;

const VALUES: &str = "replicaCount: 2\nimage:\n  repository: berth/demo\n  tag: \"1.0\"\n";

fn write_chart(dir: &Path, version: &str) {
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(
        dir.join("Chart.yaml"),
        format!(
            "apiVersion: v2\nname: e2echart\ndescription: chart pushed by the e2e test\n\
             type: application\nversion: {version}\nappVersion: \"1.0\"\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("values.yaml"), VALUES).unwrap();
    std::fs::write(
        dir.join("templates/configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n\
         data:\n  replicas: \"{{ .Values.replicaCount }}\"\n",
    )
    .unwrap();
}

/// Packages and pushes a chart version; returns the .tgz path and the digest Helm reports.
fn push_chart(
    home: &Path,
    work: &Path,
    remote: &str,
    version: &str,
) -> (std::path::PathBuf, String) {
    let chart_dir = work.join(format!("src-{version}")).join("e2echart");
    write_chart(&chart_dir, version);
    let dist = work.join("dist");
    std::fs::create_dir_all(&dist).unwrap();
    let tgz = run(helm(home).arg("package").arg(&chart_dir).arg(&dist));
    let tgz = std::path::PathBuf::from(tgz.trim());
    let out = run(helm(home)
        .args(["--plain-http", "push"])
        .arg(&tgz)
        .arg(remote));
    let digest = out
        .lines()
        .find_map(|l| l.strip_prefix("Digest: "))
        .unwrap_or_else(|| panic!("no digest in helm push output:\n{out}"))
        .to_string();
    (tgz, digest)
}

fn show(home: &Path, what: &str, reference: &str, out: &Path) -> String {
    run(helm(home).args(["--plain-http", what, reference]).arg(out));
    std::fs::read_to_string(out).unwrap()
}

#[test]
fn helm_push_show_and_build_metadata_versions() {
    let reg = Registry::start();
    let work = e2e::workdir();
    let home = work.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let remote = format!("oci://{}/charts", reg.host());

    let (tgz, digest) = push_chart(&home, work.path(), &remote, "0.1.0");
    // Pushing the identical chart again succeeds and lands on the same manifest.
    let again = run(helm(&home)
        .args(["--plain-http", "push"])
        .arg(&tgz)
        .arg(&remote));
    assert!(
        again.contains(&format!("Digest: {digest}")),
        "second push:\n{again}"
    );

    // What Helm stored: its config type, and the chart archive as the only layer, byte for byte.
    let manifest = reg.get_manifest("charts/e2echart", "0.1.0");
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.cncf.helm.config.v1+json"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
    );
    let tgz_digest = format!("sha256:{}", cmd::sha256_file(&tgz));
    assert_eq!(layers[0]["digest"], tgz_digest.as_str());
    let blob = work.path().join("blob.tgz");
    run(reg
        .curl()
        .arg("--fail")
        .arg("-o")
        .arg(&blob)
        .arg(reg.url(&format!("/v2/charts/e2echart/blobs/{tgz_digest}"))));
    assert_eq!(std::fs::read(&blob).unwrap(), std::fs::read(&tgz).unwrap());

    let reference = format!("{remote}/e2echart:0.1.0");
    let chart = show(
        &home,
        "show-chart",
        &reference,
        &work.path().join("chart.yaml"),
    );
    assert!(chart.contains("name: e2echart"), "{chart}");
    assert!(chart.contains("version: 0.1.0"), "{chart}");
    assert!(
        chart.contains("description: chart pushed by the e2e test"),
        "{chart}"
    );
    let values = show(
        &home,
        "show-values",
        &reference,
        &work.path().join("values.yaml"),
    );
    assert_eq!(values.trim_end(), VALUES.trim_end());

    // `+` is not allowed in tags: Helm stores 0.2.0+build.5 as 0.2.0_build.5.
    let (_, build_digest) = push_chart(&home, work.path(), &remote, "0.2.0+build.5");
    let tags = reg.get_json("/v2/charts/e2echart/tags/list");
    let mut tags: Vec<&str> = tags["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, ["0.1.0", "0.2.0_build.5"]);
    // Without a tag Helm reads the tag list and picks the highest version, turning `_` back to `+`.
    let latest = show(
        &home,
        "show-chart",
        &format!("{remote}/e2echart"),
        &work.path().join("latest.yaml"),
    );
    assert!(latest.contains("version: 0.2.0+build.5"), "{latest}");
    let by_digest = show(
        &home,
        "show-values",
        &format!("{remote}/e2echart@{build_digest}"),
        &work.path().join("by-digest.yaml"),
    );
    assert_eq!(by_digest.trim_end(), VALUES.trim_end());
}
