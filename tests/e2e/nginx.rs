//! nginx as a TLS-terminating reverse proxy in front of the registry, configured from
//! `tools/nginx/registry.conf.template` on a free port in a temp dir; stopped when dropped.

use super::cmd;
use super::registry::free_port;
use super::tls::Certs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const STARTUP_GUARD: Duration = Duration::from_secs(30);

pub struct Nginx {
    host: String,
    prefix: PathBuf,
    child: Child,
}

impl Nginx {
    /// Proxies `https://127.0.0.1:<free port>/v2/` to the plain-HTTP registry at `upstream`.
    pub fn start(dir: &Path, upstream: &str, certs: &Certs) -> Nginx {
        let template =
            std::fs::read_to_string(cmd::repo_path("tools/nginx/registry.conf.template")).unwrap();
        let prefix = dir.to_path_buf();
        for sub in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(prefix.join("tmp").join(sub)).unwrap();
        }
        let host = format!("127.0.0.1:{}", free_port());
        let config = template
            .replace("@PREFIX@", &prefix.display().to_string())
            .replace("@LISTEN@", &host)
            .replace("@UPSTREAM@", upstream)
            .replace("@CERT@", &certs.server_chain.display().to_string())
            .replace("@KEY@", &certs.server_key.display().to_string());
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, config).unwrap();
        let log = std::fs::File::create(prefix.join("stderr.log")).unwrap();
        // Workers run as root so that they can use the private temp dirs made above.
        let mut child = cmd::tool("nginx")
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off; user root;"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let started = Instant::now();
        while TcpStream::connect(&host).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("nginx exited with {status}\n{}", errors(&prefix));
            }
            assert!(
                started.elapsed() < STARTUP_GUARD,
                "nginx did not listen\n{}",
                errors(&prefix)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx {
            host,
            prefix,
            child,
        }
    }

    /// `127.0.0.1:PORT` of the HTTPS front.
    pub fn host(&self) -> &str {
        &self.host
    }
}

fn errors(prefix: &Path) -> String {
    let read = |f: &str| std::fs::read_to_string(prefix.join(f)).unwrap_or_default();
    format!("{}{}", read("stderr.log"), read("error.log"))
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM is nginx's fast shutdown: the master takes its workers down with it (a SIGKILL
        // would orphan them). SIGQUIT would wait for idle keep-alive connections.
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child process, which has not been reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- nginx error log ----\n{}", errors(&self.prefix));
        }
    }
}
