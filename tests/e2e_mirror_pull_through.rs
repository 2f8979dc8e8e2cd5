//! berth as a pull-through cache in front of real upstreams (a second berth, and CNCF
//! distribution), driven by real clients over loopback:
//! - skopeo reads an OCI image, a Docker schema 2 image, an OCI index and a Docker manifest list
//!   (and each child) through the mirror byte for byte as the upstream serves them, and a moved
//!   tag is seen once the tag TTL ran out;
//! - containerd pulls through the mirror with `?ns=`, and again from a fresh content store with
//!   the upstreams stopped, as does skopeo;
//! - sixteen concurrent pulls of one uncached 256 MiB blob cost the upstream one GET;
//! - blob bytes corrupted on the way from the upstream are never stored nor served whole;
//! - an upstream with token auth is used with the configured credentials, and a wrong password
//!   is a 502 naming the upstream, with nothing cached.

mod e2e;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e::auth::{self, AuthRegistry, ALICE, ALICE_PASSWORD, PRIVATE};
use e2e::cmd::{self, run};
use e2e::containerd::Containerd;
use e2e::image::{assert_same_image, read_blob};
use e2e::registry::{Registry, ACCEPT_MANIFESTS};
use serde_json::{json, Value};

const BERTH_NS: &str = "berth.upstream";
const DIST_NS: &str = "distribution.upstream";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// What is pushed into every upstream: (tag in the test layout, repository:tag upstream,
/// skopeo flags, the media type the upstream then serves).
const PUSHED: [(&str, &str, &[&str], &str); 4] = [
    ("single", "e2e/oci:v1", &[], OCI_MANIFEST),
    (
        "single",
        "e2e/docker:v1",
        &["--format", "v2s2"],
        DOCKER_MANIFEST,
    ),
    ("multi", "e2e/multi:oci", &["--all"], OCI_INDEX),
    (
        "multi",
        "e2e/multi:list",
        &["--all", "--format", "v2s2"],
        DOCKER_LIST,
    ),
];

/// One `[[mirror]]` table toward a plain-HTTP upstream at `host`, with more `key = value` lines.
fn mirror_table(ns: &str, host: &str, more: &str) -> String {
    format!("[[mirror]]\nns = \"{ns}\"\nupstream = \"http://{host}\"\ntimeout = \"5s\"\n{more}\n")
}

/// An OCI layout holding `single` (one 256 KiB random layer), `amd64` and `arm64` (one 64 KiB
/// layer each) and `multi`, an OCI index of the last two.
fn build_images(layout: &Path) {
    let make = |tag: &str, arch: &str, kib: &str| {
        run(cmd::tool("bash")
            .arg(cmd::repo_path("tools/e2e/make-image.sh"))
            .arg(layout)
            .args([tag, kib])
            .env("IMAGE_ARCH", arch));
    };
    make("single", "amd64", "256");
    make("amd64", "amd64", "64");
    make("arm64", "arm64", "64");
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let digest = e2e::image::manifest_digest(layout, arch);
        let size = read_blob(layout, &digest).len();
        children.push(json!({
            "mediaType": OCI_MANIFEST,
            "digest": digest,
            "size": size,
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children,
    }))
    .unwrap();
    let digest = cmd::sha256_digest(&body);
    std::fs::write(e2e::image::blob_path(layout, &digest), &body).unwrap();
    let index_path = layout.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["manifests"].as_array_mut().unwrap().push(json!({
        "mediaType": OCI_INDEX,
        "digest": digest,
        "size": body.len(),
        "annotations": {"org.opencontainers.image.ref.name": "multi"},
    }));
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// skopeo copy of `tag` of the layout to `host/repo_tag`; returns the manifest digest pushed.
fn push(
    work: &Path,
    layout: &Path,
    tag: &str,
    host: &str,
    repo_tag: &str,
    flags: &[&str],
) -> String {
    let digest_file = work.join("pushed.digest");
    run(auth::skopeo(work)
        .args(["copy", "--dest-tls-verify=false"])
        .args(flags)
        .arg("--digestfile")
        .arg(&digest_file)
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{host}/{repo_tag}")));
    std::fs::read_to_string(&digest_file).unwrap()
}

/// Pushes everything in [`PUSHED`]; returns the digests in that order.
fn push_all(work: &Path, layout: &Path, host: &str) -> Vec<String> {
    PUSHED
        .iter()
        .map(|(tag, repo_tag, flags, _)| push(work, layout, tag, host, repo_tag, flags))
        .collect()
}

/// `skopeo inspect --raw` of `reference` (`host/repo:tag` or `host/repo@digest`).
fn raw(work: &Path, reference: &str) -> String {
    run(auth::skopeo(work)
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}")))
}

fn mirror_series(name: &str, ns: &str) -> String {
    format!("berth_mirror_{name}{{ns=\"{ns}\"}}")
}

/// `POST /v2/<repo>/blobs/uploads/` then `PUT ?digest=` with the file: the monolithic push every
/// registry takes.
fn push_blob(reg: &Registry, repo: &str, file: &Path, digest: &str) {
    let headers = reg.headers("POST", &format!("/v2/{repo}/blobs/uploads/"), &[]);
    let location = headers
        .iter()
        .find(|(k, _)| k == "location")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no Location: {headers:?}"));
    let url = if location.starts_with("http") {
        location
    } else {
        reg.url(&location)
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let code = run(cmd::tool("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T"])
        .arg(file)
        .arg(format!("{url}{sep}digest={digest}")));
    assert_eq!(code, "201", "blob upload to {repo}");
}

/// A file of `mib` MiB of random bytes and its digest.
fn random_blob(path: &Path, mib: usize) -> String {
    run(cmd::tool("bash").arg("-c").arg(format!(
        "head -c {}M /dev/urandom > '{}'",
        mib,
        path.display()
    )));
    let sum = run(cmd::tool("sha256sum").arg(path));
    format!("sha256:{}", sum.split_whitespace().next().unwrap())
}

/// The manifest a pull of `raw` ends at on this host: `raw` itself, or the child of an index
/// for this machine's architecture, fetched with `child`.
fn platform_manifest(raw: &str, child: impl Fn(&str) -> String) -> Value {
    let v: Value = serde_json::from_str(raw).unwrap();
    let Some(children) = v["manifests"].as_array() else {
        return v;
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let digest = children
        .iter()
        .find(|m| m["platform"]["architecture"] == arch)
        .unwrap_or_else(|| panic!("no {arch} child in {raw}"))["digest"]
        .as_str()
        .unwrap()
        .to_string();
    serde_json::from_str(&child(&digest)).unwrap()
}

/// The Content-Type of a manifest GET that accepts every manifest type.
fn content_type(reg: &Registry, path: &str) -> String {
    let headers = reg.headers("GET", path, &["-H", ACCEPT_MANIFESTS]);
    headers
        .into_iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("{path}: no Content-Type"))
}

#[test]
fn skopeo_reads_the_upstreams_bytes_through_the_mirror() {
    let work = e2e::workdir();
    let w = work.path();
    let layout = w.join("layout");
    build_images(&layout);
    let up_berth = Registry::start();
    let up_dist = Registry::start_distribution();
    let mirror = Registry::start_berth_settings(
        &[
            mirror_table(BERTH_NS, up_berth.host(), "tag-ttl = \"1s\""),
            mirror_table(DIST_NS, up_dist.host(), "tag-ttl = \"1s\""),
        ]
        .concat(),
    );

    for (ns, up) in [(BERTH_NS, &up_berth), (DIST_NS, &up_dist)] {
        let digests = push_all(w, &layout, up.host());
        for ((_, repo_tag, _, media_type), digest) in PUSHED.iter().zip(&digests) {
            let direct = raw(w, &format!("{}/{repo_tag}", up.host()));
            let through = raw(w, &format!("{}/{ns}/{repo_tag}", mirror.host()));
            assert_eq!(through, direct, "{ns}/{repo_tag}: bytes differ");
            assert_eq!(
                &cmd::sha256_digest(through.as_bytes()),
                digest,
                "{ns}/{repo_tag}"
            );
            // Served as the type the upstream serves it as (umoci's manifests carry none).
            let (repo, tag) = repo_tag.split_once(':').unwrap();
            for (reg, path) in [
                (up, format!("/v2/{repo}/manifests/{tag}")),
                (&mirror, format!("/v2/{ns}/{repo}/manifests/{tag}")),
            ] {
                let served = content_type(reg, &path);
                assert_eq!(served, *media_type, "{}{path}", reg.host());
            }
            // Every child of a list, by digest, through the mirror as from the upstream.
            let parsed: Value = serde_json::from_str(&through).unwrap();
            for child in parsed["manifests"].as_array().into_iter().flatten() {
                let d = child["digest"].as_str().unwrap();
                let direct = raw(w, &format!("{}/{repo}@{d}", up.host()));
                let through = raw(w, &format!("{}/{ns}/{repo}@{d}", mirror.host()));
                assert_eq!(through, direct, "{ns}/{repo}@{d}: bytes differ");
                assert_eq!(cmd::sha256_digest(through.as_bytes()), d);
            }
        }
        // The whole OCI index with both platforms' blobs, out of the mirror into a layout.
        let out = w.join(format!("out-{ns}"));
        run(auth::skopeo(w)
            .args(["copy", "--all", "--src-tls-verify=false"])
            .arg(format!("docker://{}/{ns}/e2e/multi:oci", mirror.host()))
            .arg(format!("oci:{}:multi", out.display())));
        assert_eq!(e2e::image::manifest_digest(&out, "multi"), digests[2]);
        for arch in ["amd64", "arm64"] {
            let child = e2e::image::manifest_digest(&layout, arch);
            let manifest: Value = serde_json::from_slice(&read_blob(&out, &child)).unwrap();
            let mut blobs = vec![manifest["config"]["digest"].as_str().unwrap()];
            blobs.extend(
                manifest["layers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l["digest"].as_str().unwrap()),
            );
            for d in blobs {
                assert_eq!(
                    read_blob(&out, d),
                    read_blob(&layout, d),
                    "{ns}: {arch} {d}"
                );
            }
        }
        assert!(
            mirror.metric(&mirror_series("upstream_requests_total", ns)) > 0,
            "{ns}: the mirror never asked its upstream"
        );
    }

    // A tag moved upstream is seen through the mirror once its TTL has run out.
    for (ns, up) in [(BERTH_NS, &up_berth), (DIST_NS, &up_dist)] {
        let before = raw(w, &format!("{}/{ns}/e2e/oci:v1", mirror.host()));
        let moved = push(w, &layout, "amd64", up.host(), "e2e/oci:v1", &[]);
        assert_ne!(cmd::sha256_digest(before.as_bytes()), moved);
        std::thread::sleep(Duration::from_millis(1500));
        let after = raw(w, &format!("{}/{ns}/e2e/oci:v1", mirror.host()));
        assert_eq!(
            cmd::sha256_digest(after.as_bytes()),
            moved,
            "{ns}: tag not revalidated"
        );
        assert_eq!(after, raw(w, &format!("{}/e2e/oci:v1", up.host())));
    }
}

/// Pulls `ns/repo_tag` through the mirror and checks the digest and that the config and every
/// layer of this platform's manifest are in containerd's content store.
fn ctr_pull(ctrd: &Containerd, ns: &str, repo_tag: &str, digest: &str, manifest: &Value) {
    let name = format!("{ns}/{repo_tag}");
    run(ctrd
        .ctr()
        .args(["images", "pull", "--hosts-dir"])
        .arg(&ctrd.hosts_dir)
        .arg(&name));
    assert_eq!(ctrd.image_digest(&name), digest, "{name}");
    let content = run(ctrd.ctr().args(["content", "ls", "-q"]));
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
            "{name}: {d} not in containerd's content store"
        );
    }
}

/// A private containerd whose only way to `ns` is the mirror: the `server` fallback is a closed
/// loopback port.
fn containerd_via(dir: &Path, mirror: &Registry) -> Containerd {
    let ctrd = Containerd::start(dir);
    for ns in [BERTH_NS, DIST_NS] {
        ctrd.add_mirror(
            ns,
            "http://127.0.0.1:1",
            &format!("http://{}", mirror.host()),
        );
    }
    ctrd
}

#[test]
fn containerd_pulls_through_the_mirror_and_again_with_the_upstreams_stopped() {
    let work = e2e::workdir();
    let w = work.path();
    let layout = w.join("layout");
    build_images(&layout);
    let mut up_berth = Registry::start();
    let mut up_dist = Registry::start_distribution();
    let mirror = Registry::start_berth_settings(
        &[
            mirror_table(BERTH_NS, up_berth.host(), "tag-ttl = \"1s\""),
            mirror_table(DIST_NS, up_dist.host(), "tag-ttl = \"1s\""),
        ]
        .concat(),
    );
    // An OCI image and a Docker manifest list from each upstream (this platform's child).
    let pulled = [("e2e/oci:v1", 0), ("e2e/multi:list", 3)];
    let mut expected = Vec::new();
    for (ns, up) in [(BERTH_NS, &up_berth), (DIST_NS, &up_dist)] {
        let digests = push_all(w, &layout, up.host());
        for (repo_tag, i) in pulled {
            let raw_up = raw(w, &format!("{}/{repo_tag}", up.host()));
            let repo = repo_tag.split(':').next().unwrap();
            let manifest =
                platform_manifest(&raw_up, |d| raw(w, &format!("{}/{repo}@{d}", up.host())));
            expected.push((ns, repo_tag, digests[i].clone(), manifest));
        }
    }

    let first = containerd_via(&w.join("ctrd1"), &mirror);
    for (ns, repo_tag, digest, manifest) in &expected {
        let requests = mirror_series("upstream_requests_total", ns);
        let before = mirror.metric(&requests);
        // containerd asks for the upstream's own name with ?ns=: the mirror logs the path
        // without the prefix, a name no local repository has.
        let (repo, tag) = repo_tag.split_once(':').unwrap();
        let path = format!("/v2/{repo}/manifests/{tag}");
        let heads_before = answered(&mirror, "HEAD", &path);
        ctr_pull(&first, ns, repo_tag, digest, manifest);
        assert!(
            mirror.metric(&requests) > before,
            "{ns}/{repo_tag}: upstream not asked"
        );
        assert!(
            answered(&mirror, "HEAD", &path) > heads_before,
            "{ns}: HEAD {path}"
        );
    }
    let catalog = mirror.get_json("/v2/_catalog");
    let repos: Vec<&str> = catalog["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        repos
            .iter()
            .all(|r| r.starts_with(BERTH_NS) || r.starts_with(DIST_NS)),
        "{repos:?}"
    );
    drop(first);

    // The upstreams go away; the tags' TTL runs out, so the mirror tries them and serves what
    // it stored.
    up_berth.stop();
    up_dist.stop();
    std::thread::sleep(Duration::from_millis(1200));
    let second = containerd_via(&w.join("ctrd2"), &mirror);
    for (ns, repo_tag, digest, manifest) in &expected {
        let stale = mirror_series("stale_served_total", ns);
        let before = mirror.metric(&stale);
        ctr_pull(&second, ns, repo_tag, digest, manifest);
        assert!(
            mirror.metric(&stale) > before,
            "{ns}/{repo_tag}: not served stale"
        );
    }
    for ns in [BERTH_NS, DIST_NS] {
        let out = w.join(format!("dir-{ns}"));
        run(auth::skopeo(w)
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!("docker://{}/{ns}/e2e/oci:v1", mirror.host()))
            .arg(format!("dir:{}", out.display())));
        let manifest = std::fs::read(out.join("manifest.json")).unwrap();
        assert_eq!(
            cmd::sha256_digest(&manifest),
            expected_digest(&expected, ns)
        );
        let manifest: Value = serde_json::from_slice(&manifest).unwrap();
        let layers = manifest["layers"].as_array().unwrap().iter();
        for d in layers
            .map(|l| &l["digest"])
            .chain([&manifest["config"]["digest"]])
        {
            let d = d.as_str().unwrap();
            let bytes = std::fs::read(out.join(d.trim_start_matches("sha256:"))).unwrap();
            assert_eq!(
                cmd::sha256_digest(&bytes),
                d,
                "{ns}: blob {d} from the mirror"
            );
        }
    }
}

/// How many `method path` requests the berth `reg` answered with 200.
fn answered(reg: &Registry, method: &str, path: &str) -> usize {
    let statuses = auth::statuses(reg, method, path);
    statuses.iter().filter(|s| **s == 200).count()
}

fn expected_digest(expected: &[(&str, &str, String, Value)], ns: &str) -> String {
    expected
        .iter()
        .find(|(n, r, _, _)| *n == ns && *r == "e2e/oci:v1")
        .unwrap()
        .2
        .clone()
}

/// `curl URL | sha256sum` for each URL at once; the digests the clients computed.
fn concurrent_pulls(urls: &[String]) -> Vec<String> {
    let threads: Vec<_> = urls
        .iter()
        .map(|url| {
            let mut c = cmd::tool("bash");
            c.arg("-c").arg(format!(
                "set -o pipefail; curl -sS --fail --max-time 110 '{url}' | sha256sum"
            ));
            std::thread::spawn(move || run(&mut c))
        })
        .collect();
    threads
        .into_iter()
        .map(|t| {
            let out = t.join().unwrap();
            format!("sha256:{}", out.split_whitespace().next().unwrap())
        })
        .collect()
}

/// Blob requests the upstream answered (any status), as it counts or logs them.
fn upstream_blob_gets(up: &Registry, repo: &str, digest: &str) -> usize {
    match up.kind() {
        e2e::registry::Kind::Berth => {
            let (status, text) = up.request("GET", "/metrics", &[]);
            assert_eq!(status, 200);
            text.lines()
                .filter(|l| l.starts_with("berth_http_requests_total{route=\"blob\","))
                .map(|l| l.rsplit(' ').next().unwrap().parse::<usize>().unwrap())
                .sum()
        }
        // One access log line per request: `"GET /v2/<repo>/blobs/<digest> HTTP/1.1" 200 …`.
        _ => {
            let line = format!("\"GET /v2/{repo}/blobs/{digest} HTTP/1.1\"");
            up.log_text().lines().filter(|l| l.contains(&line)).count()
        }
    }
}

#[test]
fn sixteen_pulls_of_an_uncached_blob_cost_the_upstream_one_get() {
    const CLIENTS: usize = 16;
    const MIB: usize = 256;
    let work = e2e::workdir();
    let up_berth = Registry::start();
    let up_dist = Registry::start_distribution();
    // A blob of its own for each upstream: the mirror would link one it already holds.
    let file = work.path().join("big.bin");
    let digests: Vec<String> = [&up_berth, &up_dist]
        .into_iter()
        .map(|up| {
            let digest = random_blob(&file, MIB);
            push_blob(up, "e2e/big", &file, &digest);
            digest
        })
        .collect();
    std::fs::remove_file(&file).unwrap();
    let mirror = Registry::start_berth_settings(
        &[
            mirror_table(BERTH_NS, up_berth.host(), ""),
            mirror_table(DIST_NS, up_dist.host(), ""),
        ]
        .concat(),
    );

    for ((ns, up), digest) in [(BERTH_NS, &up_berth), (DIST_NS, &up_dist)]
        .into_iter()
        .zip(&digests)
    {
        let gets_before = upstream_blob_gets(up, "e2e/big", digest);
        // Half the clients as containerd asks (?ns=), half with the prefixed name: both are
        // the same local repository, so the same fetch.
        let urls: Vec<String> = (0..CLIENTS)
            .map(|i| match i % 2 {
                0 => mirror.url(&format!("/v2/e2e/big/blobs/{digest}?ns={ns}")),
                _ => mirror.url(&format!("/v2/{ns}/e2e/big/blobs/{digest}")),
            })
            .collect();
        let got = concurrent_pulls(&urls);
        for (i, d) in got.iter().enumerate() {
            assert_eq!(d, digest, "{ns}: client {i} got other bytes");
        }
        let gets = upstream_blob_gets(up, "e2e/big", digest) - gets_before;
        assert_eq!(
            gets, 1,
            "{ns}: blob GETs at the upstream for {CLIENTS} pulls"
        );
        assert_eq!(
            mirror.metric(&mirror_series("fetched_bytes_total", ns)),
            (MIB << 20) as u64,
            "{ns}: bytes fetched and stored"
        );
    }
}

/// A forwarding HTTP/1.1 proxy in front of an upstream that flips one byte in the middle of
/// every successful blob body (and passes everything else through untouched).
struct CorruptingProxy {
    addr: SocketAddr,
    corrupted: Arc<AtomicUsize>,
    stopping: Arc<AtomicBool>,
}

impl CorruptingProxy {
    fn start(upstream: &str) -> CorruptingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let corrupted = Arc::new(AtomicUsize::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let (count, stop, upstream) = (corrupted.clone(), stopping.clone(), upstream.to_owned());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let (count, upstream) = (count.clone(), upstream.clone());
                std::thread::spawn(move || {
                    // A connection that fails mid-way just ends; the mirror sees it as a cut.
                    let _ = proxy_connection(client, &upstream, &count);
                });
            }
        });
        CorruptingProxy {
            addr,
            corrupted,
            stopping,
        }
    }
}

impl Drop for CorruptingProxy {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr); // Wakes the accept loop.
    }
}

/// The lines of an HTTP head up to the blank line; None at end of stream.
fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<Vec<String>>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            return Ok(Some(lines));
        }
        lines.push(line);
    }
}

fn header<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines[1..].iter().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Forwards each request on `client` over a new connection to `upstream` and the answer back.
fn proxy_connection(
    client: TcpStream,
    upstream: &str,
    corrupted: &AtomicUsize,
) -> std::io::Result<()> {
    let mut to_client = client.try_clone()?;
    let mut from_client = BufReader::new(client);
    while let Some(request) = read_head(&mut from_client)? {
        let mut parts = request[0].split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut up = TcpStream::connect(upstream)?;
        up.write_all(format!("{}\r\n\r\n", request.join("\r\n")).as_bytes())?;
        if let Some(n) = header(&request, "content-length").and_then(|v| v.parse::<u64>().ok()) {
            std::io::copy(&mut (&mut from_client).take(n), &mut up)?;
        }
        let mut from_up = BufReader::new(up);
        let Some(response) = read_head(&mut from_up)? else {
            return Ok(());
        };
        to_client.write_all(format!("{}\r\n\r\n", response.join("\r\n")).as_bytes())?;
        let status = response[0].split_whitespace().nth(1).unwrap_or("");
        let length = header(&response, "content-length").and_then(|v| v.parse::<u64>().ok());
        if method == "HEAD" || status == "204" || status == "304" {
            continue;
        }
        let Some(length) = length else {
            // Chunked or until close: pass it through and end the connection with it.
            std::io::copy(&mut from_up, &mut to_client)?;
            return Ok(());
        };
        let flip_at =
            (method == "GET" && status == "200" && path.contains("/blobs/") && length > 0)
                .then_some(length / 2);
        let mut body = (&mut from_up).take(length);
        let mut at = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = body.read(&mut buf)?;
            if n == 0 {
                break;
            }
            if let Some(flip) = flip_at {
                if (at..at + n as u64).contains(&flip) {
                    buf[(flip - at) as usize] ^= 0x01;
                    corrupted.fetch_add(1, Ordering::Relaxed);
                }
            }
            to_client.write_all(&buf[..n])?;
            at += n as u64;
        }
        if at < length {
            return Ok(());
        }
    }
    Ok(())
}

/// Status, bytes received and the curl exit code of a GET of `url` saved to `out`.
fn try_pull(url: &str, out: &Path) -> (String, u64, i32) {
    let o = cmd::output(
        cmd::tool("curl")
            .args(["-sS", "--max-time", "60", "-o"])
            .arg(out)
            .args(["-w", "%{http_code}"])
            .arg(url),
    );
    let size = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        size,
        o.status.code().unwrap_or(-1),
    )
}

#[test]
fn corrupted_upstream_bytes_are_never_committed() {
    const CORRUPT_NS: &str = "corrupt.upstream";
    let work = e2e::workdir();
    let w = work.path();
    let layout = w.join("layout");
    build_images(&layout);
    let up = Registry::start();
    let image_digest = push(w, &layout, "single", up.host(), "e2e/app:v1", &[]);
    let file = w.join("blob.bin");
    let blob = random_blob(&file, 4);
    push_blob(&up, "e2e/app", &file, &blob);
    let proxy = CorruptingProxy::start(up.host());
    let mut mirror = Registry::start_berth_settings(
        &[
            mirror_table(CORRUPT_NS, &proxy.addr.to_string(), ""),
            mirror_table(BERTH_NS, up.host(), ""),
        ]
        .concat(),
    );
    // A read that joins a fetch just as it fails is answered 502 (the upstream failed).
    mirror.expect_server_status(502);

    // Sequential pulls, then four at once: each starts a fetch that fails its digest check.
    let url = mirror.url(&format!("/v2/e2e/app/blobs/{blob}?ns={CORRUPT_NS}"));
    let mut results = Vec::new();
    for i in 0..3 {
        results.push(try_pull(&url, &w.join(format!("seq{i}"))));
    }
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let (url, out) = (url.clone(), w.join(format!("par{i}")));
            std::thread::spawn(move || try_pull(&url, &out))
        })
        .collect();
    results.extend(threads.into_iter().map(|t| t.join().unwrap()));
    let size = 4 << 20;
    for (status, received, exit) in &results {
        assert!(
            *exit != 0 || status != "200",
            "a corrupted blob was served as a success: {status}, {received} bytes"
        );
        assert!(
            *received < size,
            "the whole corrupted blob reached a client"
        );
    }
    assert!(
        proxy.corrupted.load(Ordering::Relaxed) > 0,
        "the proxy never corrupted a blob: the test did not test anything"
    );

    // skopeo through the corrupting path fails on the layers.
    let err = cmd::run_expect_failure(
        auth::skopeo(w)
            .args(["copy", "--src-tls-verify=false"])
            .arg(format!(
                "docker://{}/{CORRUPT_NS}/e2e/app:v1",
                mirror.host()
            ))
            .arg(format!("oci:{}:v1", w.join("bad-out").display())),
    );
    assert!(!err.is_empty());
    assert_eq!(
        mirror.metric(&mirror_series("fetched_bytes_total", CORRUPT_NS)),
        0,
        "bytes from the corrupting upstream were stored"
    );
    assert!(mirror.metric(&mirror_series("upstream_failures_total", CORRUPT_NS)) > 0);

    // The same content through the correct path is fetched, stored and served intact.
    let good = w.join("good");
    let (status, received, exit) = try_pull(
        &mirror.url(&format!("/v2/{BERTH_NS}/e2e/app/blobs/{blob}")),
        &good,
    );
    assert_eq!((status.as_str(), exit), ("200", 0));
    assert_eq!(received, size);
    assert_eq!(cmd::sha256_file(&good), blob.trim_start_matches("sha256:"));
    let out = w.join("good-out");
    run(auth::skopeo(w)
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{}/{BERTH_NS}/e2e/app:v1", mirror.host()))
        .arg(format!("oci:{}:single", out.display())));
    assert_same_image(&layout, &out, "single");
    assert_eq!(e2e::image::manifest_digest(&out, "single"), image_digest);
    assert!(mirror.metric(&mirror_series("fetched_bytes_total", BERTH_NS)) >= size);
}

#[test]
fn token_auth_upstream_with_credentials_and_with_a_wrong_password() {
    const AUTH_NS: &str = "auth.upstream";
    const BAD_NS: &str = "badauth.upstream";
    let work = e2e::workdir();
    let w = work.path();
    let layout = w.join("layout");
    build_images(&layout);
    let ar = AuthRegistry::start("token", None);
    let alice = format!("{ALICE}:{ALICE_PASSWORD}");
    let digest = push(
        w,
        &layout,
        "single",
        ar.host(),
        &format!("{PRIVATE}/app:v1"),
        &["--dest-creds", &alice],
    );
    let credentials = |password: &str| format!("username = \"{ALICE}\"\npassword = \"{password}\"");
    let mut mirror = Registry::start_berth_settings(
        &[
            mirror_table(AUTH_NS, ar.host(), &credentials(ALICE_PASSWORD)),
            mirror_table(BAD_NS, ar.host(), &credentials("not-alices-password")),
        ]
        .concat(),
    );
    mirror.expect_server_status(502);

    // A wrong password: 502, naming the upstream, for the manifest and for a blob.
    // (First, so that no blob it names is stored yet: a mirror without access control links a
    // stored blob into any repository, whichever upstream it came from.)
    let refused_before = token_refusals(&ar);
    let upstream = format!("http://{}", ar.host());
    let manifest: Value = serde_json::from_slice(&read_blob(
        &layout,
        &e2e::image::manifest_digest(&layout, "single"),
    ))
    .unwrap();
    let config = manifest["config"]["digest"].as_str().unwrap().to_string();
    for path in [
        format!("/v2/{BAD_NS}/{PRIVATE}/app/manifests/v1"),
        format!("/v2/{PRIVATE}/app/blobs/{config}?ns={BAD_NS}"),
    ] {
        let (status, body) = mirror.request("GET", &path, &["-H", ACCEPT_MANIFESTS]);
        assert_eq!(status, 502, "{path}: {body}");
        let named = body.matches(&format!("upstream {upstream}:")).count();
        assert_eq!(
            named, 1,
            "{path}: the error should name {upstream} once: {body}"
        );
        assert!(
            !body.contains("not-alices-password"),
            "{path}: the password leaked: {body}"
        );
    }
    let err = auth::refusal(
        auth::skopeo(w)
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!(
                "docker://{}/{BAD_NS}/{PRIVATE}/app:v1",
                mirror.host()
            )),
    );
    assert!(err.contains("502") || err.contains("bad gateway"), "{err}");
    assert!(
        token_refusals(&ar) > refused_before,
        "the upstream never refused the wrong password"
    );

    // Nothing of it was cached.
    let catalog = mirror.get_json("/v2/_catalog");
    let repos = catalog["repositories"].as_array().unwrap();
    assert!(
        !repos
            .iter()
            .any(|r| r.as_str().unwrap().starts_with(BAD_NS)),
        "{catalog}"
    );
    for series in ["fetched_bytes_total", "hits_total"] {
        assert_eq!(mirror.metric(&mirror_series(series, BAD_NS)), 0, "{series}");
    }
    assert!(mirror.metric(&mirror_series("upstream_failures_total", BAD_NS)) > 0);

    // Anonymous clients of the mirror get the private image, which the upstream refuses them:
    // the mirror logs in for them.
    let err = auth::refusal(
        auth::skopeo(w)
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{}/{PRIVATE}/app:v1", ar.host())),
    );
    assert!(err.contains("unauthorized"), "{err}");
    let granted = |ar: &AuthRegistry| {
        let statuses = auth::statuses(&ar.reg, "GET", "/token");
        statuses.iter().filter(|s| **s == 200).count()
    };
    let granted_before = granted(&ar);
    let through = raw(w, &format!("{}/{AUTH_NS}/{PRIVATE}/app:v1", mirror.host()));
    assert_eq!(cmd::sha256_digest(through.as_bytes()), digest);
    let out = w.join("out");
    run(auth::skopeo(w)
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!(
            "docker://{}/{AUTH_NS}/{PRIVATE}/app:v1",
            mirror.host()
        ))
        .arg(format!("oci:{}:single", out.display())));
    assert_same_image(&layout, &out, "single");
    assert!(
        granted(&ar) > granted_before,
        "the mirror never got a token"
    );
}

/// The token requests the upstream refused with 401.
fn token_refusals(ar: &AuthRegistry) -> usize {
    let statuses = auth::statuses(&ar.reg, "GET", "/token");
    statuses.iter().filter(|s| **s == 401).count()
}
