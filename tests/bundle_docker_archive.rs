//! docker-archives in the layouts `docker save` writes: files named by digest under
//! `blobs/sha256/` (Docker 25 and later), and the legacy `<id>/layer.tar` with a symlink where
//! two images share a layer. Each image gets a schema 2 manifest with its layers as they are
//! (gzip stays gzip, also when the layer was already stored), under its `RepoTags`.

mod bundle_support;

use std::io::Write;

use berth::bundle::{import, ImportOptions};
use berth::oci::digest::{Algorithm, Digest};
use berth::storage::Reference;
use bundle_support::*;

fn layer_tar(name: &str, body: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, name, body).unwrap();
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn sha(b: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, b)
}

fn config(diff_ids: &[&Digest]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

enum File<'a> {
    Data(&'a str, &'a [u8]),
    Link(&'a str, &'a str),
}

fn archive(path: &std::path::Path, files: &[File<'_>]) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    for f in files {
        match f {
            File::Data(name, body) => {
                let mut h = tar::Header::new_gnu();
                h.set_size(body.len() as u64);
                h.set_mode(0o644);
                b.append_data(&mut h, name, *body).unwrap();
            }
            File::Link(name, target) => {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, name, target).unwrap();
            }
        }
    }
    b.finish().unwrap();
}

fn layers_of(store: &berth::storage::Store, repo: &str, tag: &str) -> Vec<(String, Digest)> {
    let m = store
        .get_manifest(repo, &Reference::Tag(tag.into()))
        .unwrap()
        .unwrap();
    assert_eq!(m.media_type, berth::oci::manifest::DOCKER_MANIFEST);
    let v: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
    v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let d: Digest = l["digest"].as_str().unwrap().parse().unwrap();
            assert!(store.repo_has_blob(repo, &d).unwrap());
            (l["mediaType"].as_str().unwrap().to_owned(), d)
        })
        .collect()
}

#[test]
fn digest_named_and_legacy_docker_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(&tmp.path().join("data"));

    // Docker 25+: digest-named files, a gzip layer.
    let plain = layer_tar("hello.txt", b"hello from a gzip layer");
    let packed = gzip(&plain);
    let cfg = config(&[&sha(&plain)]);
    let (cfg_path, layer_path) = (
        format!("blobs/sha256/{}", sha(&cfg).hex()),
        format!("blobs/sha256/{}", sha(&packed).hex()),
    );
    let list =
        format!(r#"[{{"Config":"{cfg_path}","RepoTags":["app:v1"],"Layers":["{layer_path}"]}}]"#);
    let modern = tmp.path().join("modern.tar");
    archive(
        &modern,
        &[
            File::Data(&cfg_path, &cfg),
            File::Data(&layer_path, &packed),
            File::Data("manifest.json", list.as_bytes()),
        ],
    );
    let r = import(&store, &modern, &ImportOptions::default(), &mut |_, _| {}).unwrap();
    assert_eq!(r.format, "docker-archive");
    assert_eq!(r.images, vec!["app:v1".to_owned()]);
    let layers = layers_of(&store, "app", "v1");
    assert_eq!(
        layers,
        vec![(
            "application/vnd.docker.image.rootfs.diff.tar.gzip".to_owned(),
            sha(&packed)
        )]
    );
    // Again: every blob is already stored and skipped, and the manifest comes out the same.
    let before = store
        .get_manifest("app", &Reference::Tag("v1".into()))
        .unwrap()
        .unwrap()
        .digest;
    let again = import(&store, &modern, &ImportOptions::default(), &mut |_, _| {}).unwrap();
    assert_eq!(again.blobs_written, 0);
    let after = store
        .get_manifest("app", &Reference::Tag("v1".into()))
        .unwrap()
        .unwrap()
        .digest;
    assert_eq!(before, after);

    // Legacy: `<id>/layer.tar`, the second image's shared layer a symlink to the first's.
    let base = layer_tar("base.txt", b"shared base");
    let own = layer_tar("own.txt", b"second image only");
    let cfg1 = config(&[&sha(&base)]);
    let cfg2 = config(&[&sha(&base), &sha(&own)]);
    let list = r#"[{"Config":"c1.json","RepoTags":["old/one:1"],"Layers":["aaa/layer.tar"]},
        {"Config":"c2.json","RepoTags":["old/two:2"],"Layers":["bbb/layer.tar","ccc/layer.tar"]}]"#;
    let legacy = tmp.path().join("legacy.tar");
    archive(
        &legacy,
        &[
            File::Data("aaa/layer.tar", &base),
            File::Link("bbb/layer.tar", "../aaa/layer.tar"),
            File::Data("ccc/layer.tar", &own),
            File::Data("c1.json", &cfg1),
            File::Data("c2.json", &cfg2),
            File::Data("manifest.json", list.as_bytes()),
        ],
    );
    let r = import(&store, &legacy, &ImportOptions::default(), &mut |_, _| {}).unwrap();
    let mut images = r.images.clone();
    images.sort();
    assert_eq!(images, ["old/one:1", "old/two:2"]);
    let tar_type = "application/vnd.docker.image.rootfs.diff.tar".to_owned();
    assert_eq!(
        layers_of(&store, "old/one", "1"),
        vec![(tar_type.clone(), sha(&base))]
    );
    assert_eq!(
        layers_of(&store, "old/two", "2"),
        vec![(tar_type.clone(), sha(&base)), (tar_type, sha(&own))]
    );

    // A layer whose bytes are not its config's diff ID is refused.
    let wrong = tmp.path().join("wrong.tar");
    let cfg_wrong = config(&[&sha(b"something else")]);
    archive(
        &wrong,
        &[
            File::Data("aaa/layer.tar", &base),
            File::Data("c.json", &cfg_wrong),
            File::Data(
                "manifest.json",
                br#"[{"Config":"c.json","RepoTags":["bad:1"],"Layers":["aaa/layer.tar"]}]"#,
            ),
        ],
    );
    let err = import(&store, &wrong, &ImportOptions::default(), &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("aaa/layer.tar"), "{err}");
    assert_eq!(store.list_tags("bad", None, 10).unwrap(), None);
}
