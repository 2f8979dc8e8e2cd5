//! The registry under test: a `berth serve` started on a free loopback port over a temp data dir,
//! waited for until `/v2/` answers, and killed when dropped.
//!
//! For comparing behaviour with the reference implementation, `BERTH_E2E_SERVER=distribution`
//! starts the Debian `docker-registry` (CNCF distribution) the same way instead, and
//! `BERTH_E2E_REGISTRY=host:port` uses an already running plain-HTTP registry, and
//! `BERTH_E2E_BIN=path` runs another build of berth. CI sets none of them.

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
    /// Server certificate chain and key when the registry terminates TLS.
    tls: Option<(PathBuf, PathBuf)>,
    child: Option<Child>,
    log: PathBuf,
    dir: tempfile::TempDir,
    /// More `berth serve` flags (access control, for one).
    extra: Vec<String>,
    /// 5xx statuses the scenario provokes on purpose (a mirror answering 502 for a failing
    /// upstream); any other still fails it.
    expected_5xx: Vec<u16>,
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

    /// berth with more `serve` flags, over a data directory `prepare` fills first (for
    /// example with users, through `berth user add --data`).
    pub fn start_berth_with(
        certs: Option<&Certs>,
        extra: &[&str],
        prepare: impl FnOnce(&Path),
    ) -> Registry {
        Self::start_berth_in(
            tempfile::Builder::new()
                .prefix("berth-e2e-")
                .tempdir()
                .unwrap(),
            certs,
            extra,
            prepare,
        )
    }

    /// berth over plain HTTP reading `settings` as its TOML settings file (`--config`), for
    /// what only the file can say (`[[mirror]]` tables).
    pub fn start_berth_settings(settings: &str) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, settings).unwrap();
        let path = path.to_str().unwrap().to_string();
        Self::start_berth_in(dir, None, &["--config", &path], |_| {})
    }

    /// CNCF distribution (Debian `docker-registry`) over plain HTTP, whatever
    /// `BERTH_E2E_SERVER` says: for scenarios that need it beside berth.
    pub fn start_distribution() -> Registry {
        Self::launch_kind(None, Kind::Distribution)
    }

    fn start_berth_in(
        dir: tempfile::TempDir,
        certs: Option<&Certs>,
        extra: &[&str],
        prepare: impl FnOnce(&Path),
    ) -> Registry {
        prepare(&dir.path().join("data"));
        Self::berth_in(dir, certs, extra)
    }

    /// berth serving HTTPS with a certificate of its own CA: `make` runs `berth cert` on the
    /// data directory the server will use and says where the CA, certificate and key are.
    pub fn start_berth_own_cert(make: impl FnOnce(&Path) -> Certs) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-")
            .tempdir()
            .unwrap();
        let certs = make(&dir.path().join("data"));
        Self::berth_in(dir, Some(&certs), &[])
    }

    fn berth_in(dir: tempfile::TempDir, certs: Option<&Certs>, extra: &[&str]) -> Registry {
        let mut reg = Registry {
            host: String::new(),
            kind: Kind::Berth,
            ca: certs.map(|c| c.ca_crt.clone()),
            tls: certs.map(|c| (c.server_chain.clone(), c.server_key.clone())),
            child: None,
            log: dir.path().join("server.log"),
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            expected_5xx: Vec::new(),
        };
        for _ in 0..5 {
            if reg.spawn_on(&format!("127.0.0.1:{}", free_port()), false) {
                return reg;
            }
        }
        panic!("the registry could not bind a free port in 5 attempts");
    }

    /// The data directory of a berth this test started.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn launch(certs: Option<&Certs>) -> Registry {
        let external = std::env::var("BERTH_E2E_REGISTRY").ok();
        let kind = match (&external, std::env::var("BERTH_E2E_SERVER").as_deref()) {
            (Some(_), _) => Kind::External,
            (None, Ok("distribution")) => Kind::Distribution,
            (None, Ok("berth") | Err(_)) => Kind::Berth,
            (None, Ok(other)) => panic!("BERTH_E2E_SERVER={other}: expected berth or distribution"),
        };
        Self::launch_kind(certs, kind)
    }

    fn launch_kind(certs: Option<&Certs>, kind: Kind) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-")
            .tempdir()
            .unwrap();
        let log = dir.path().join("server.log");
        let ca = certs.map(|c| c.ca_crt.clone());
        let tls = certs.map(|c| (c.server_chain.clone(), c.server_key.clone()));
        let external = match kind {
            Kind::External => std::env::var("BERTH_E2E_REGISTRY").ok(),
            _ => None,
        };
        let mut reg = Registry {
            host: external.clone().unwrap_or_default(),
            kind,
            ca,
            tls,
            child: None,
            log,
            dir,
            extra: Vec::new(),
            expected_5xx: Vec::new(),
        };
        if external.is_some() {
            assert!(
                certs.is_none(),
                "BERTH_E2E_REGISTRY is plain HTTP only; use BERTH_E2E_SERVER=distribution for TLS"
            );
            wait_ready(&reg.host, None, None, &reg.log);
            return reg;
        }
        // A port picked by binding :0 can be taken by someone else before the server binds it;
        // a server that exits at once because of that is retried on another port.
        for _ in 0..5 {
            if reg.spawn_on(&format!("127.0.0.1:{}", free_port()), false) {
                return reg;
            }
        }
        panic!("the registry could not bind a free port in 5 attempts");
    }

    /// Starts the server process on `host` over this registry's data dir; false if the port
    /// turned out to be taken. A restart appends to the log so both runs stay readable.
    fn spawn_on(&mut self, host: &str, append: bool) -> bool {
        let data = self.dir.path().join("data");
        let tls = self.tls.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        let mut command = match self.kind {
            Kind::Berth => {
                let mut c = berth_command(host, &data, tls);
                c.args(&self.extra);
                c
            }
            Kind::Distribution => distribution_command(self.dir.path(), host, &data, tls),
            Kind::External => unreachable!("an external registry is not started by the tests"),
        };
        let logfile = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&self.log)
            .unwrap();
        command
            .stdin(Stdio::null())
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", cmd::describe(&command)));
        if wait_ready(host, self.ca.as_deref(), Some(&mut child), &self.log) {
            self.host = host.to_string();
            self.child = Some(child);
            return true;
        }
        let _ = child.wait();
        false
    }

    /// Stops the server with SIGTERM, checks that berth shut down cleanly (exit status 0), and
    /// starts it again over the same data on the same port.
    pub fn restart(&mut self) {
        self.shut_down();
        self.start_again();
    }

    /// Stops the server with SIGTERM and checks that berth shut down cleanly, leaving its data
    /// directory to commands that need it unlocked (`berth export --data`).
    pub fn shut_down(&mut self) {
        let mut child = self
            .child
            .take()
            .expect("only a registry the test started restarts");
        // SAFETY: signalling our own child process, which has not been reaped yet.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > STARTUP_GUARD {
                let _ = child.kill();
                panic!(
                    "the registry ignored SIGTERM for {STARTUP_GUARD:?}\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if self.kind == Kind::Berth {
            assert!(
                status.success(),
                "berth exited with {status} on SIGTERM\n{}",
                self.log_text()
            );
        }
    }

    /// Starts the server again, after [`Registry::shut_down`], on the same data and port.
    pub fn start_again(&mut self) {
        let host = self.host.clone();
        assert!(
            self.spawn_on(&host, true),
            "{host} was taken while the registry restarted"
        );
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

    /// Kills the server (an upstream going away); its log stays readable and is still
    /// checked for server errors when the registry is dropped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Lets the log hold answers with this 5xx status without failing the scenario: for a
    /// registry the scenario makes fail on purpose.
    pub fn expect_server_status(&mut self, status: u16) {
        assert!(
            (500..600).contains(&status),
            "{status} is not a server error"
        );
        self.expected_5xx.push(status);
    }

    /// The value of one series (name and labels exactly as printed) in `GET /metrics`; 0 when
    /// the series is absent (a counter not yet incremented).
    pub fn metric(&self, series: &str) -> u64 {
        let (status, text) = self.request("GET", "/metrics", &[]);
        assert_eq!(status, 200, "GET /metrics: {text}");
        text.lines()
            .find_map(|l| {
                let value = l.strip_prefix(series)?.strip_prefix(' ')?;
                Some(
                    value
                        .trim()
                        .parse::<f64>()
                        .unwrap_or_else(|e| panic!("{series}: {value:?}: {e}"))
                        as u64,
                )
            })
            .unwrap_or(0)
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
            return;
        }
        // Real clients never send anything that should make the server fail: a 5xx or a panic
        // anywhere in the session fails the scenario even if the client coped.
        let log = self.log_text();
        let bad: Vec<&str> = log
            .lines()
            .filter(|l| {
                server_error(l).is_some_and(|s| !self.expected_5xx.contains(&s))
                    || l.contains("panicked")
            })
            .collect();
        assert!(
            bad.is_empty(),
            "the registry logged server errors:\n{}",
            bad.join("\n")
        );
    }
}

/// The 5xx status of a request log line (`status=5xx` in berth's log,
/// `http.response.status=5xx` in distribution's), if it has one.
fn server_error(line: &str) -> Option<u16> {
    line.match_indices("status=").find_map(|(i, m)| {
        let code = &line[i + m.len()..];
        let ok = code.len() >= 3
            && code.starts_with('5')
            && code[..3].bytes().all(|b| b.is_ascii_digit());
        ok.then(|| code[..3].parse().unwrap())
    })
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

/// The berth binary under test.
pub fn berth_bin() -> PathBuf {
    // BERTH_E2E_BIN (development only) runs another build of the server under these tests.
    std::env::var_os("BERTH_E2E_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_berth")))
}

fn berth_command(host: &str, data: &Path, tls: Option<(&Path, &Path)>) -> Command {
    let mut c = Command::new(berth_bin());
    c.arg("serve")
        .arg("--listen")
        .arg(host)
        .arg("--data")
        .arg(data)
        .env("NO_COLOR", "1");
    if let Some((chain, key)) = tls {
        c.arg("--tls-cert").arg(chain).arg("--tls-key").arg(key);
    }
    c
}

fn distribution_command(
    dir: &Path,
    host: &str,
    data: &Path,
    tls: Option<(&Path, &Path)>,
) -> Command {
    let mut config = format!(
        "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
         delete:\n    enabled: true\nhttp:\n  addr: {host}\n",
        data.display()
    );
    if let Some((chain, key)) = tls {
        config.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            chain.display(),
            key.display()
        ));
    }
    let path = dir.join("distribution.yml");
    std::fs::write(&path, config).unwrap();
    let mut c = cmd::tool("docker-registry");
    c.arg("serve").arg(path);
    c
}
