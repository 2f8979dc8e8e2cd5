//! `berth cert` as a user runs it: a first run makes the CA and a server certificate and prints
//! the commands with the real paths and `host:port`; a second run keeps them; `--renew`
//! reissues under the same CA; `--out-*` writes elsewhere; a CA key others can read and bad
//! names are refused. `berth serve` with a certificate near its end warns in its log, and with
//! a fresh one does not.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

fn berth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .env_remove("BERTH_DATA")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `berth cert --data DATA ARGS…`, which must succeed; returns stdout.
fn cert_ok(data: &Path, args: &[&str]) -> String {
    let mut all = vec!["cert", "--data", data.to_str().unwrap()];
    all.extend(args);
    let out = berth(&all);
    assert!(
        out.status.success(),
        "{all:?} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn has_line(out: &str, line: &str) -> bool {
    out.lines().any(|l| l == line)
}

#[test]
fn cert_creates_keeps_renews_and_prints_how_to_trust() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tls = fs::canonicalize(dir.path()).unwrap().join("data/tls");
    let (ca, ca_key) = (tls.join("ca.crt"), tls.join("ca.key"));
    let (crt, key) = (tls.join("server.crt"), tls.join("server.key"));
    let names = ["--host", "localhost", "--ip", "127.0.0.1", "--port", "5443"];

    let first = cert_ok(&data, &names);
    assert!(
        first.contains(&format!("{}: created", ca.display())),
        "{first}"
    );
    assert!(
        first.contains(&format!(
            "{}: issued for localhost, 127.0.0.1",
            crt.display()
        )),
        "{first}"
    );
    let (ca_pem, ca_key_pem) = (fs::read(&ca).unwrap(), fs::read(&ca_key).unwrap());
    let first_crt = fs::read(&crt).unwrap();
    assert_eq!(
        (mode(&tls), mode(&ca_key), mode(&key), mode(&ca)),
        (0o700, 0o600, 0o600, 0o644)
    );
    let (c, k, ca_s) = (crt.display(), key.display(), ca.display());
    let d_abs = fs::canonicalize(&data).unwrap();
    for line in [
        format!(
            "berth serve --data {} --listen 0.0.0.0:5443 --tls-cert {c} --tls-key {k}",
            d_abs.display()
        ),
        "mkdir -p /etc/containerd/certs.d/localhost:5443".to_owned(),
        format!("cp {ca_s} /etc/containerd/certs.d/localhost:5443/ca.crt"),
        "cat > /etc/containerd/certs.d/localhost:5443/hosts.toml <<'EOF'".to_owned(),
        "  ca = \"/etc/containerd/certs.d/localhost:5443/ca.crt\"".to_owned(),
        format!("cp {ca_s} /etc/docker/certs.d/localhost:5443/ca.crt"),
        format!("cp {ca_s} /etc/containers/certs.d/localhost:5443/ca.crt"),
        format!("cp {ca_s} /usr/local/share/ca-certificates/berth-ca.crt"),
        "update-ca-certificates".to_owned(),
        format!("helm pull oci://localhost:5443/charts/NAME --version VERSION --ca-file {ca_s}"),
        format!("oras push --ca-file {ca_s} localhost:5443/REPO:TAG FILE"),
        "skopeo copy --src-cert-dir /etc/containers/certs.d/localhost:5443 docker://localhost:5443/REPO:TAG oci:OUT:TAG".to_owned(),
    ] {
        assert!(has_line(&first, &line), "missing {line:?} in\n{first}");
    }

    // Again, names in another order: everything kept, and said so.
    let again = cert_ok(&data, &["--ip", "127.0.0.1", "--host", "localhost"]);
    assert!(again.contains(&format!("{ca_s}: kept")), "{again}");
    assert!(
        again.contains(&format!(
            "{c}: reused, still valid for localhost, 127.0.0.1"
        )),
        "{again}"
    );
    assert_eq!(fs::read(&crt).unwrap(), first_crt);

    let renewed = cert_ok(&data, &[&names[..], &["--renew"]].concat());
    assert!(
        renewed.contains(&format!("{c}: issued (--renew)")),
        "{renewed}"
    );
    assert_ne!(fs::read(&crt).unwrap(), first_crt);
    assert_eq!(fs::read(&ca).unwrap(), ca_pem);
    assert_eq!(fs::read(&ca_key).unwrap(), ca_key_pem);

    // Elsewhere, for another name: same CA, and the serve line names those files.
    let out_dir = dir.path().join("elsewhere");
    let (oc, ok) = (out_dir.join("edge.crt"), out_dir.join("edge.key"));
    let elsewhere = cert_ok(
        &data,
        &[
            "--host",
            "registry.lan",
            "--out-cert",
            oc.to_str().unwrap(),
            "--out-key",
            ok.to_str().unwrap(),
        ],
    );
    let (oc, ok) = (
        fs::canonicalize(&oc).unwrap(),
        fs::canonicalize(&ok).unwrap(),
    );
    assert!(
        elsewhere.contains(&format!(
            "--listen 0.0.0.0:5000 --tls-cert {} --tls-key {}",
            oc.display(),
            ok.display()
        )),
        "{elsewhere}"
    );
    assert!(has_line(
        &elsewhere,
        "mkdir -p /etc/docker/certs.d/registry.lan:5000"
    ));
    assert_eq!(mode(&ok), 0o600);
    assert_eq!(fs::read(&ca).unwrap(), ca_pem);
}

#[test]
fn a_loose_ca_key_and_bad_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    cert_ok(&data, &["--host", "localhost"]);
    let ca_key = data.join("tls/ca.key");
    let crt = fs::read(data.join("tls/server.crt")).unwrap();
    fs::set_permissions(&ca_key, fs::Permissions::from_mode(0o644)).unwrap();
    let d = data.to_str().unwrap();
    let out = berth(&["cert", "--data", d, "--host", "localhost", "--renew"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("ca.key has mode 644"), "{err}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert_eq!(fs::read(data.join("tls/server.crt")).unwrap(), crt);
    fs::set_permissions(&ca_key, fs::Permissions::from_mode(0o600)).unwrap();

    let out = berth(&["cert", "--data", d, "--host", "localhost:5000"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--port"));
    let out = berth(&["cert", "--data", d]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = berth(&[
        "cert",
        "--data",
        d,
        "--host",
        "localhost",
        "--days",
        "5000",
        "--renew",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("expires"),
        "{}",
        text(&out.stderr)
    );
}

/// `berth serve` over `data` with the certificate there, killed when dropped.
struct Serving {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Serving {
    fn start(data: &Path) -> Serving {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = data.with_extension("log");
        let file = fs::File::create(&log).unwrap();
        let tls = data.join("tls");
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data")
            .arg(data)
            .arg("--tls-cert")
            .arg(tls.join("server.crt"))
            .arg("--tls-key")
            .arg(tls.join("server.key"))
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        let serving = Serving { child, log, port };
        serving.wait_for_v2(&tls.join("ca.crt"));
        serving
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Until `GET /v2/` over TLS, verified against the CA for the name localhost, answers 200.
    fn wait_for_v2(&self, ca: &Path) {
        let started = Instant::now();
        loop {
            match https_get_v2(ca, self.port) {
                Ok(head) if head.starts_with("HTTP/1.1 200") => return,
                other => assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "no answer over TLS: {other:?}\n{}",
                    self.log()
                ),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn https_get_v2(ca: &Path, port: u16) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| e.to_string())? {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let n = tls.read(&mut head).map_err(|e| e.to_string())?;
    Ok(text(&head[..n]))
}

#[test]
fn serve_warns_of_a_certificate_near_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let soon = dir.path().join("soon");
    cert_ok(&soon, &["--host", "localhost", "--days", "3"]);
    let served = Serving::start(&soon);
    let crt = soon.join("tls/server.crt");
    let started = Instant::now();
    let warning = loop {
        let log = served.log();
        if let Some(line) = log.lines().find(|l| l.contains("expires soon")) {
            break line.to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no expiry warning:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains(&format!("file={}", crt.display())),
        "{warning}"
    );
    assert!(warning.contains("days_left=2"), "{warning}");
    let until = time_of(&fs::read(&crt).unwrap());
    assert!(warning.contains(&format!("expires={until}")), "{warning}");
    drop(served);

    // A fresh certificate: serving, and no word of expiry.
    let fresh = dir.path().join("fresh");
    cert_ok(&fresh, &["--host", "localhost"]);
    let served = Serving::start(&fresh);
    std::thread::sleep(Duration::from_millis(300));
    let log = served.log();
    assert!(log.contains("berth serving"), "{log}");
    assert!(!log.contains("expire"), "{log}");
}

/// The certificate's end as the log shows it.
fn time_of(pem: &[u8]) -> String {
    let facts = berth::tlsgen::CertFacts::from_pem(pem).unwrap();
    berth::tlsgen::show_time(facts.not_after)
}
