//! oras-py pushes and pulls artifacts (its own push, and a hand-built manifest with a custom
//! artifactType and the empty config), then attaches a signature and an SBOM to an image through
//! `subject` and finds them with the referrers API, filtered by artifactType.

mod e2e;

use e2e::cmd::{self, run};
use e2e::image::OciImage;
use e2e::python::{oras, oras_json};
use e2e::registry::Registry;
use serde_json::Value;

const SIGNATURE: &str = "application/vnd.example.signature.v1+json";
const SBOM: &str = "application/spdx+json";

fn random_file(path: &std::path::Path, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    getrandom::getrandom(&mut bytes).unwrap();
    std::fs::write(path, &bytes).unwrap();
    bytes
}

#[test]
fn oras_push_pull_and_referrers() {
    let reg = Registry::start();
    let work = e2e::workdir();
    let files = work.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let a = random_file(&files.join("a.bin"), 300 * 1024);
    let b = random_file(&files.join("b.txt"), 10);

    // oras-py's own push and pull.
    let target = format!("{}/e2e/oras-files:v1", reg.host());
    let pushed = oras_json(
        oras(None)
            .args(["push-files", &target])
            .arg(files.join("a.bin"))
            .arg(files.join("b.txt")),
    );
    assert!(
        pushed["digest"].as_str().unwrap().starts_with("sha256:"),
        "{pushed}"
    );
    let out = work.path().join("out-files");
    oras_json(oras(None).args(["pull", &target]).arg(&out));
    assert_eq!(std::fs::read(out.join("a.bin")).unwrap(), a);
    assert_eq!(std::fs::read(out.join("b.txt")).unwrap(), b);

    // A hand-built artifact manifest with a custom artifactType and the empty config.
    let note_type = "application/vnd.example.note.v1";
    let note_ref = format!("{}/e2e/oras-note:v1", reg.host());
    let note = oras_json(
        oras(None)
            .args(["push-artifact", &note_ref, "--artifact-type", note_type])
            .args(["--annotation", "org.example.kind=note"])
            .arg(files.join("a.bin")),
    );
    assert_eq!(note["status"], 201, "{note}");
    assert_eq!(
        note["digest"], note["computed_digest"],
        "digest of the bytes sent: {note}"
    );
    let served = oras_json(oras(None).args(["manifest", &note_ref]));
    assert_eq!(
        served["computed_digest"], note["digest"],
        "served bytes differ from pushed"
    );
    assert_eq!(
        served["content_type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(served["manifest"]["artifactType"], note_type);
    assert_eq!(
        served["manifest"]["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    let out = work.path().join("out-note");
    oras_json(oras(None).args(["pull", &note_ref]).arg(&out));
    assert_eq!(std::fs::read(out.join("a.bin")).unwrap(), a);

    // A chunked upload (POST, PATCH with Content-Range per 256 KiB, PUT), then delete by tag.
    let big = random_file(&files.join("big.bin"), 1100 * 1024);
    let chunked_ref = format!("{}/e2e/oras-note:chunked", reg.host());
    let chunked = oras_json(
        oras(None)
            .args(["push-artifact", &chunked_ref, "--artifact-type", note_type])
            .args(["--chunk-size", "262144"])
            .arg(files.join("big.bin")),
    );
    assert_eq!(chunked["status"], 201, "{chunked}");
    let out = work.path().join("out-chunked");
    oras_json(oras(None).args(["pull", &chunked_ref]).arg(&out));
    assert_eq!(std::fs::read(out.join("big.bin")).unwrap(), big);
    oras_json(oras(None).args(["delete-tag", &chunked_ref]));
    let deleted = chunked["digest"].as_str().unwrap();
    let (status, body) = reg.request(
        "GET",
        &format!("/v2/e2e/oras-note/manifests/{deleted}"),
        &[],
    );
    assert_eq!(
        (status, Registry::error_codes(&body)),
        (404, vec!["MANIFEST_UNKNOWN".to_string()])
    );
    let tags = reg.get_json("/v2/e2e/oras-note/tags/list");
    assert_eq!(tags["tags"], serde_json::json!(["v1"]), "{tags}");

    // An image, and a signature and an SBOM that refer to it.
    let image = OciImage::build(&work.path().join("layout"), "v1", &[256]);
    let image_ref = format!("{}/e2e/signed:v1", reg.host());
    run(cmd::tool("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(image.transport_ref())
        .arg(format!("docker://{image_ref}")));
    let subject = image.manifest_digest();
    std::fs::write(
        files.join("sig.json"),
        br#"{"critical":{"type":"test signature"}}"#,
    )
    .unwrap();
    std::fs::write(files.join("sbom.json"), br#"{"spdxVersion":"SPDX-2.3"}"#).unwrap();
    let attach = |artifact_type: &str, file: &str| -> Value {
        // Referrers are usually pushed by digest only; a tag here keeps them easy to inspect.
        let reference = format!("{}/e2e/signed:{}", reg.host(), file.replace('.', "-"));
        oras_json(
            oras(None)
                .args([
                    "push-artifact",
                    &reference,
                    "--artifact-type",
                    artifact_type,
                ])
                .args([
                    "--subject-ref",
                    &image_ref,
                    "--annotation",
                    &format!("org.example.file={file}"),
                ])
                .arg(files.join(file)),
        )
    };
    let sig = attach(SIGNATURE, "sig.json");
    let sbom = attach(SBOM, "sbom.json");
    assert_eq!(sig["subject"]["digest"], subject.as_str());

    if !reg.has_referrers_api() {
        // distribution 2.8 predates the referrers API: the manifests are stored, nothing more.
        let served = oras_json(oras(None).args([
            "manifest",
            &format!(
                "{}/e2e/signed@{}",
                reg.host(),
                sig["digest"].as_str().unwrap()
            ),
        ]));
        assert_eq!(served["manifest"]["subject"]["digest"], subject.as_str());
        return;
    }
    assert_eq!(
        sig["oci_subject"],
        subject.as_str(),
        "PUT of a manifest with subject: {sig}"
    );
    assert_eq!(
        sbom["oci_subject"],
        subject.as_str(),
        "PUT of a manifest with subject: {sbom}"
    );

    let path = format!("/v2/e2e/signed/referrers/{subject}");
    let headers = reg.headers("GET", &path, &[]);
    let content_type = headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str());
    assert_eq!(
        content_type,
        Some("application/vnd.oci.image.index.v1+json"),
        "{headers:?}"
    );
    let index = reg.get_json(&path);
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{index}");
    for (pushed, artifact_type, file) in [(&sig, SIGNATURE, "sig.json"), (&sbom, SBOM, "sbom.json")]
    {
        let entry = entries
            .iter()
            .find(|e| e["digest"] == pushed["digest"])
            .unwrap_or_else(|| panic!("{} missing from {index}", pushed["digest"]));
        assert_eq!(
            entry["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(entry["artifactType"], artifact_type);
        assert_eq!(entry["size"], pushed["size"]);
        assert_eq!(entry["annotations"]["org.example.file"], file);
    }

    // The artifactType filter, and the header that says it was applied.
    let filtered_path = format!("{path}?artifactType={}", SIGNATURE.replace('+', "%2B"));
    let filtered = reg.get_json(&filtered_path);
    let entries = filtered["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{filtered}");
    assert_eq!(entries[0]["digest"], sig["digest"]);
    let headers = reg.headers("GET", &filtered_path, &[]);
    let applied = headers
        .iter()
        .find(|(k, _)| k == "oci-filters-applied")
        .map(|(_, v)| v.as_str());
    assert_eq!(applied, Some("artifactType"), "{headers:?}");

    // A digest nothing refers to has an empty referrers index, not an error.
    let lonely = reg.get_json(&format!(
        "/v2/e2e/signed/referrers/{}",
        sig["digest"].as_str().unwrap()
    ));
    assert_eq!(
        lonely["manifests"].as_array().map(Vec::len),
        Some(0),
        "{lonely}"
    );
}
