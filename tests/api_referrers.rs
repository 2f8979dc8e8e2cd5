//! `subject` on a manifest PUT: the `OCI-Subject` header, and the referrers index with
//! artifact types, annotations and `artifactType` filtering.

mod common;

use common::{image_manifest, sha256, Server, OCI_INDEX, OCI_MANIFEST};
use http::StatusCode;
use serde_json::json;

const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";

/// An artifact manifest (empty config) pointing at `subject`.
async fn artifact(
    s: &Server,
    name: &str,
    artifact_type: &str,
    subject: &str,
    size: usize,
    note: &str,
) -> Vec<u8> {
    let empty = s.push_blob(name, b"{}").await;
    let payload = s.push_blob(name, note.as_bytes()).await;
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"{artifact_type}","config":{{"mediaType":"{EMPTY_CONFIG}","digest":"{empty}","size":2}},"layers":[{{"mediaType":"application/octet-stream","digest":"{payload}","size":{}}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":{size}}},"annotations":{{"note":"{note}"}}}}"#,
        note.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn referrers_index_and_filter() {
    let s = Server::start().await;
    let image = s.image("app", "base").await;
    let subject = sha256(&image);
    s.put_manifest("app", "v1", OCI_MANIFEST, &image).await;

    let sig = artifact(
        &s,
        "app",
        "application/vnd.example.signature",
        &subject.to_string(),
        image.len(),
        "signed",
    )
    .await;
    let r = s
        .put_manifest("app", &sha256(&sig).to_string(), OCI_MANIFEST, &sig)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.header("oci-subject"), subject.to_string());
    let sbom = artifact(
        &s,
        "app",
        "application/vnd.example.sbom",
        &subject.to_string(),
        image.len(),
        "sbom",
    )
    .await;
    let r = s
        .put_manifest("app", &sha256(&sbom).to_string(), OCI_MANIFEST, &sbom)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());

    let r = s.get(&format!("/v2/app/referrers/{subject}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), OCI_INDEX);
    assert!(!r.has_header("oci-filters-applied"));
    let index = r.json();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], OCI_INDEX);
    let mut found: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["artifactType"].as_str().unwrap().to_owned(),
                m["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            (
                "application/vnd.example.sbom".to_owned(),
                sha256(&sbom).to_string()
            ),
            (
                "application/vnd.example.signature".to_owned(),
                sha256(&sig).to_string()
            ),
        ]
    );

    let r = s
        .get(&format!(
            "/v2/app/referrers/{subject}?artifactType=application/vnd.example.signature"
        ))
        .await;
    assert_eq!(r.header("oci-filters-applied"), "artifactType");
    let index = r.json();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    assert_eq!(manifests[0]["digest"], sha256(&sig).to_string());
    assert_eq!(manifests[0]["mediaType"], OCI_MANIFEST);
    assert_eq!(manifests[0]["size"], sig.len());
    assert_eq!(manifests[0]["annotations"], json!({"note": "signed"}));
    s.stop().await;
}

#[tokio::test]
async fn subject_may_be_absent_and_unknown_subjects_are_empty() {
    let s = Server::start().await;
    // A referrer may be pushed before its subject exists.
    let ghost = sha256(b"subject not pushed yet");
    let sig = artifact(
        &s,
        "r",
        "application/x-sig",
        &ghost.to_string(),
        10,
        "early",
    )
    .await;
    let r = s.put_manifest("r", "sig", OCI_MANIFEST, &sig).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.header("oci-subject"), ghost.to_string());
    let r = s.get(&format!("/v2/r/referrers/{ghost}")).await;
    assert_eq!(r.json()["manifests"].as_array().unwrap().len(), 1);

    let nothing = sha256(b"nothing refers to me");
    let r = s.get(&format!("/v2/r/referrers/{nothing}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
    );
    let r = s.get("/v2/r/referrers/sha256:bad").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    s.stop().await;
}

#[tokio::test]
async fn image_config_type_stands_in_for_artifact_type() {
    let s = Server::start().await;
    let c = s.push_blob("h", br#"{"name":"chart"}"#).await;
    let subject = sha256(b"some subject");
    let body = String::from_utf8(image_manifest(
        &c,
        16,
        &[],
        &format!(r#","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{subject}","size":3}}"#),
    ))
    .unwrap()
    .replace(
        "application/vnd.oci.image.config.v1+json",
        "application/vnd.cncf.helm.config.v1+json",
    );
    let r = s
        .put_manifest("h", "0.1.0", OCI_MANIFEST, body.as_bytes())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = s.get(&format!("/v2/h/referrers/{subject}")).await;
    assert_eq!(
        r.json()["manifests"][0]["artifactType"],
        "application/vnd.cncf.helm.config.v1+json"
    );
    s.stop().await;
}
