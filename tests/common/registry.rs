//! The registry under test: a `berth serve` started on a free loopback port over a temp data dir,
//! waited for until `/v2/` answers, and killed when dropped.
//!
//! For comparing behaviour with the reference implementation, `BERTH_E2E_SERVER=distribution`
//! starts the Debian `docker-registry` (CNCF distribution) the same way instead, and
//! `BERTH_E2E_REGISTRY=host:port` uses an already running plain-HTTP registry. CI sets neither.

use super::cmd;
use super::tls::Certs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a freshly started server may take to answer `/v2/` before the test gives up.
const STARTUP_GUARD: Duration = Duration::from_secs(60);

pub const ACCEPT_MANIFESTS: &str = "Accept: application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Berth,
    Distribution,
    External,
}

pub struct Registry {
    host: String,
    kind: Kind,
    ca: Option<PathBuf>,
    child: Option<Child>,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Registry {
    /// A registry speaking plain HTTP.
    pub fn start() -> Registry {
        Self::launch(None)
    }

    /// A registry terminating TLS itself with the given server certificate.
    pub fn start_tls(certs: &Certs) -> Registry {
        Self::launch(Some(certs))
    }

    fn launch(certs: Option<&Certs>) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-")
            .tempdir()
            .unwrap();
        let log = dir.path().join("server.log");
        let ca = certs.map(|c| c.ca_crt.clone());
        if let Ok(host) = std::env::var("BERTH_E2E_REGISTRY") {
            assert!(
                certs.is_none(),
                "BERTH_E2E_REGISTRY is plain HTTP only; use BERTH_E2E_SERVER=distribution for TLS"
            );
            wait_ready(&host, None, None, &log);
            return Registry {
                host,
                kind: Kind::External,
                ca,
                child: None,
                log,
                dir,
            };
        }
        let kind = match std::env::var("BERTH_E2E_SERVER").as_deref() {
            Ok("distribution") => Kind::Distribution,
            Ok("berth") | Err(_) => Kind::Berth,
            Ok(other) => panic!("BERTH_E2E_SERVER={other}: expected berth or distribution"),
        };
        // A port picked by binding :0 can be taken by someone else before the server binds it;
        // a server that exits at once because of that is retried on another port.
        for _ in 0..5 {
            let host = format!("127.0.0.1:{}", free_port());
            let data = dir.path().join("data");
            let mut command = match kind {
                Kind::Berth => berth_command(&host, &data, certs),
                Kind::Distribution => distribution_command(dir.path(), &host, &data, certs),
                Kind::External => unreachable!(),
            };
            let logfile = std::fs::File::create(&log).unwrap();
            command
                .stdin(Stdio::null())
                .stdout(logfile.try_clone().unwrap())
                .stderr(logfile);
            let mut child = command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", cmd::describe(&command)));
            if wait_ready(&host, ca.as_deref(), Some(&mut child), &log) {
                return Registry {
                    host,
                    kind,
                    ca,
                    child: Some(child),
                    log,
                    dir,
                };
            }
            let _ = child.wait();
        }
        panic!("the registry could not bind a free port in 5 attempts");
    }

    /// `127.0.0.1:PORT`, as clients write it in image references.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn is_tls(&self) -> bool {
        self.ca.is_some()
    }

    /// Whether the server implements what berth must be ahead of distribution 2.8 on:
    /// the referrers API and the `OCI-Subject` header.
    pub fn has_referrers_api(&self) -> bool {
        self.kind == Kind::Berth
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.is_tls() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.host)
    }

    /// A quiet curl that trusts the test CA when the registry speaks TLS.
    pub fn curl(&self) -> Command {
        curl(self.ca.as_deref())
    }

    /// GET `path` and parse the JSON body; panics on a non-2xx answer.
    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let body = cmd::run(self.curl().arg("--fail-with-body").arg(self.url(path)));
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    /// GET a manifest as clients do, accepting every manifest type (distribution answers 404
    /// to a request for an OCI manifest that does not accept it).
    pub fn get_manifest(&self, repo: &str, reference: &str) -> serde_json::Value {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let body = cmd::run(
            self.curl()
                .arg("--fail-with-body")
                .args(["-H", ACCEPT_MANIFESTS])
                .arg(self.url(&path)),
        );
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    /// Status code and body of a request.
    pub fn request(&self, method: &str, path: &str, extra: &[&str]) -> (u16, String) {
        let out = cmd::run(
            self.curl()
                .args(["-w", "\n%{http_code}", "-X", method])
                .args(extra)
                .arg(self.url(path)),
        );
        let (body, code) = out.rsplit_once('\n').unwrap();
        (code.parse().unwrap(), body.to_string())
    }

    /// The OCI error codes in an error body.
    pub fn error_codes(body: &str) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {body}"));
        v["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors array: {body}"))
            .iter()
            .map(|e| e["code"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// The response headers of a request, lower-cased names, for header assertions.
    pub fn headers(&self, method: &str, path: &str, extra: &[&str]) -> Vec<(String, String)> {
        let mut c = self.curl();
        c.args(["-o", "/dev/null", "-D", "-", "-X", method]);
        if method == "HEAD" {
            c.arg("-I");
        }
        c.args(extra).arg(self.url(path));
        cmd::run(&mut c)
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect()
    }

    /// The server's own log so far (empty for an external registry).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("---- last lines of the registry log ({:?}) ----", self.kind);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

fn curl(ca: Option<&Path>) -> Command {
    let mut c = cmd::tool("curl");
    c.args(["-sS", "--max-time", "60"]);
    if let Some(ca) = ca {
        c.arg("--cacert").arg(ca);
    }
    c
}

/// Waits for `GET /v2/` to answer 200 or 401. False if the server exited because its port was
/// taken; any other early exit or a server that never answers fails the test with its log.
fn wait_ready(host: &str, ca: Option<&Path>, mut child: Option<&mut Child>, log: &Path) -> bool {
    let scheme = if ca.is_some() { "https" } else { "http" };
    let started = Instant::now();
    loop {
        if let Some(child) = child.as_mut() {
            if let Some(status) = child.try_wait().unwrap() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                if text.contains("in use") {
                    return false;
                }
                panic!("the registry exited with {status} before answering /v2/\n{text}");
            }
        }
        if TcpStream::connect(host).is_ok() {
            let out = cmd::output(
                curl(ca)
                    .args(["-o", "/dev/null", "-w", "%{http_code}"])
                    .arg(format!("{scheme}://{host}/v2/")),
            );
            let code = String::from_utf8_lossy(&out.stdout);
            if code == "200" || code == "401" {
                return true;
            }
        }
        assert!(
            started.elapsed() < STARTUP_GUARD,
            "registry at {host} did not answer /v2/ within {STARTUP_GUARD:?}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn berth_command(host: &str, data: &Path, certs: Option<&Certs>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
    c.arg("serve")
        .arg("--listen")
        .arg(host)
        .arg("--data")
        .arg(data)
        .env("NO_COLOR", "1");
    if let Some(certs) = certs {
        c.arg("--tls-cert")
            .arg(&certs.server_chain)
            .arg("--tls-key")
            .arg(&certs.server_key);
    }
    c
}

fn distribution_command(dir: &Path, host: &str, data: &Path, certs: Option<&Certs>) -> Command {
    let mut config = format!(
        "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
         delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
        data.display()
    );
    if let Some(certs) = certs {
        config.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            certs.server_chain.display(),
            certs.server_key.display()
        ));
    }
    let path = dir.join("distribution.yml");
    std::fs::write(&path, config).unwrap();
    let mut c = cmd::tool("docker-registry");
    c.arg("serve").arg(path);
    c
}
