//! containerd (`ctr`, private daemon) pulls through berth with exactly the files
//! `berth hosts-toml` writes: berth mirrors docker.io and quay.io air-gapped (`[[mirror]]`
//! tables without an upstream, content pushed under `<ns>/`), and each pull gets the image of
//! its own namespace even when two namespaces share a repository path, because containerd
//! sends `?ns=<registry>` and berth routes on it. A registry berth does not mirror gets a 404
//! and containerd takes it from the hosts.toml's `server`; over TLS, the CA copy beside the
//! hosts.toml is what containerd trusts.

mod e2e;

use std::path::{Path, PathBuf};

use e2e::cmd::{self, run};
use e2e::containerd::Containerd;
use e2e::image::OciImage;
use e2e::registry::{berth_bin, Registry};
use e2e::tls::Certs;

/// berth's settings: two air-gapped mirrors.
fn mirror_settings(dir: &Path) -> PathBuf {
    let path = dir.join("berth.toml");
    std::fs::write(
        &path,
        "[[mirror]]\nns = \"docker.io\"\n\n[[mirror]]\nns = \"quay.io\"\n",
    )
    .unwrap();
    path
}

fn start_mirror(work: &Path, certs: Option<&Certs>) -> Registry {
    let settings = mirror_settings(work);
    Registry::start_berth_with(certs, &["--config", settings.to_str().unwrap()], |_| {})
}

fn push(reg: &Registry, image: &OciImage, name: &str, certs: Option<&Certs>) {
    let mut c = cmd::tool("skopeo");
    c.arg("copy");
    match certs {
        Some(certs) => c.arg("--dest-cert-dir").arg(&certs.cert_dir),
        None => c.arg("--dest-tls-verify=false"),
    };
    run(c
        .arg(image.transport_ref())
        .arg(format!("docker://{}/{name}", reg.host())));
}

fn hosts_toml(args: &[&str]) -> String {
    run(std::process::Command::new(berth_bin())
        .arg("hosts-toml")
        .args(args))
}

/// `ctr images pull --hosts-dir DIR name`, with each request containerd sends dumped.
fn pull(ctrd: &Containerd, hosts: &Path, name: &str) -> String {
    let out = cmd::output(
        ctrd.ctr()
            .args(["images", "pull", "--http-dump", "--hosts-dir"])
            .arg(hosts)
            .arg(name),
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "ctr pull {name} failed:\n{all}");
    all
}

/// berth's access log lines for reads (HEAD, GET) of a manifest path; the log has the path,
/// not the query.
fn manifest_reads<'a>(log: &'a str, path: &str) -> Vec<&'a str> {
    let path = format!(" path={path} ");
    log.lines()
        .filter(|l| l.contains(&path))
        .filter(|l| l.contains("method=HEAD ") || l.contains("method=GET "))
        .collect()
}

#[test]
fn each_namespace_pulls_its_own_image() {
    let work = e2e::workdir();
    let reg = start_mirror(work.path(), None);
    let hub = OciImage::build(&work.path().join("hub"), "1", &[256]);
    let quay = OciImage::build(&work.path().join("quay"), "1", &[384]);
    assert_ne!(hub.manifest_digest(), quay.manifest_digest());
    push(&reg, &hub, "docker.io/library/bbtest:1", None);
    push(&reg, &quay, "quay.io/org/bbtest:1", None);
    // The same path below the registry as docker.io's: only ?ns= tells them apart.
    push(&reg, &quay, "quay.io/library/bbtest:1", None);

    let hosts = work.path().join("certs.d");
    let server = format!("http://{}", reg.host());
    let printed = hosts_toml(&[
        "--upstream",
        "docker.io",
        "--upstream",
        "quay.io",
        "--server",
        &server,
        "--out",
        hosts.to_str().unwrap(),
    ]);
    assert!(printed.contains("docker.io/hosts.toml"), "{printed}");

    let ctrd = Containerd::start(&work.path().join("ctrd"));
    for (name, image, ns) in [
        ("docker.io/library/bbtest:1", &hub, "docker.io"),
        ("quay.io/org/bbtest:1", &quay, "quay.io"),
        ("quay.io/library/bbtest:1", &quay, "quay.io"),
    ] {
        let dump = pull(&ctrd, &hosts, name);
        assert!(
            dump.contains(&format!("/manifests/1?ns={ns} ")),
            "containerd did not send ?ns={ns} for {name}:\n{dump}"
        );
        assert_eq!(ctrd.image_digest(name), image.manifest_digest(), "{name}");
    }
    // Nothing else could have answered (the upstreams are out of reach), and berth did.
    let log = reg.log_text();
    assert!(!manifest_reads(&log, "/v2/library/bbtest/manifests/1").is_empty());
    assert!(!manifest_reads(&log, "/v2/org/bbtest/manifests/1").is_empty());
}

#[test]
fn an_unmirrored_registry_falls_back_to_its_server() {
    let work = e2e::workdir();
    let reg = start_mirror(work.path(), None);
    // A decoy berth must not serve: a mirror that ignored ?ns= would hand it out.
    let decoy = OciImage::build(&work.path().join("decoy"), "1", &[128]);
    push(&reg, &decoy, "x/app:1", None);
    // Another berth stands in for example.invalid's own server (nothing else is reachable).
    // containerd sends ?ns=example.invalid to the `server` too, so it mirrors that ns itself.
    let origin_dir = work.path().join("origin");
    std::fs::create_dir_all(&origin_dir).unwrap();
    let origin_settings = origin_dir.join("berth.toml");
    std::fs::write(&origin_settings, "[[mirror]]\nns = \"example.invalid\"\n").unwrap();
    let origin = Registry::start_berth_with(
        None,
        &["--config", origin_settings.to_str().unwrap()],
        |_| {},
    );
    let real = OciImage::build(&work.path().join("real"), "1", &[192]);
    push(&origin, &real, "example.invalid/x/app:1", None);

    let hosts = work.path().join("certs.d");
    let server = format!("http://{}", reg.host());
    hosts_toml(&[
        "--upstream",
        "example.invalid",
        "--server",
        &server,
        "--out",
        hosts.to_str().unwrap(),
    ]);
    point_server_at(&hosts.join("example.invalid/hosts.toml"), &origin);

    let ctrd = Containerd::start(&work.path().join("ctrd"));
    let name = "example.invalid/x/app:1";
    pull(&ctrd, &hosts, name);
    assert_eq!(ctrd.image_digest(name), real.manifest_digest());
    let log = reg.log_text();
    let asked = manifest_reads(&log, "/v2/x/app/manifests/1");
    assert!(!asked.is_empty(), "containerd never asked berth");
    assert!(
        asked.iter().all(|l| l.contains("status=404")),
        "berth must answer 404 for an ns it does not mirror:\n{}",
        asked.join("\n")
    );

    // berth out of reach (nothing listens on its port): containerd goes to the server too.
    let dead = format!("http://127.0.0.1:{}", e2e::registry::free_port());
    let hosts2 = work.path().join("certs2.d");
    hosts_toml(&[
        "--upstream",
        "example.invalid",
        "--server",
        &dead,
        "--out",
        hosts2.to_str().unwrap(),
    ]);
    point_server_at(&hosts2.join("example.invalid/hosts.toml"), &origin);
    run(ctrd.ctr().args(["images", "rm", name]));
    pull(&ctrd, &hosts2, name);
    assert_eq!(ctrd.image_digest(name), real.manifest_digest());
}

/// Replaces the generated `server` (https://example.invalid) with `origin`, over plain HTTP.
fn point_server_at(file: &Path, origin: &Registry) {
    let mut table: toml::Table = std::fs::read_to_string(file).unwrap().parse().unwrap();
    assert_eq!(table["server"].as_str(), Some("https://example.invalid"));
    table.insert(
        "server".into(),
        toml::Value::String(format!("http://{}", origin.host())),
    );
    std::fs::write(file, toml::to_string(&table).unwrap()).unwrap();
}

#[test]
fn over_tls_containerd_trusts_the_ca_copy() {
    let work = e2e::workdir();
    let certs = Certs::generate(&work.path().join("tls"));
    let reg = start_mirror(work.path(), Some(&certs));
    let image = OciImage::build(&work.path().join("img"), "1", &[200]);
    push(&reg, &image, "docker.io/library/bbtls:1", Some(&certs));

    let hosts = work.path().join("certs.d");
    let server = format!("https://{}", reg.host());
    hosts_toml(&[
        "--upstream",
        "docker.io",
        "--server",
        &server,
        "--ca",
        certs.ca_crt.to_str().unwrap(),
        "--out",
        hosts.to_str().unwrap(),
    ]);
    // The CA is only known through the copy the command placed beside the hosts.toml.
    assert!(hosts.join("docker.io/berth-ca.crt").is_file());

    let ctrd = Containerd::start(&work.path().join("ctrd"));
    let name = "docker.io/library/bbtls:1";
    pull(&ctrd, &hosts, name);
    assert_eq!(ctrd.image_digest(name), image.manifest_digest());
}

/// containerd 2.1+ probes an `http://` host that has a `dial_timeout` with a TLS handshake
/// first and switches to plain HTTP only when the answer starts with `HTTP/`; a listener that
/// just closed the connection would make every pull skip berth.
#[test]
fn a_tls_handshake_to_the_plain_listener_gets_an_http_answer() {
    use std::io::{Read, Write};
    let work = e2e::workdir();
    let reg = start_mirror(work.path(), None);
    let mut conn = std::net::TcpStream::connect(reg.host()).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    // A TLS record header (handshake, TLS 1.0 record version, 512 bytes) and a ClientHello's start.
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    hello.resize(517, 0);
    conn.write_all(&hello).unwrap();
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    assert!(
        answer.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
}
