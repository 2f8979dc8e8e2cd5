//! A private containerd daemon (own root, state, socket and registry hosts dir in a temp dir),
//! driven with `ctr`; killed when dropped.

use super::cmd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STARTUP_GUARD: Duration = Duration::from_secs(60);

pub struct Containerd {
    socket: PathBuf,
    /// `certs.d`-style directory: `<host>/hosts.toml` per upstream registry.
    pub hosts_dir: PathBuf,
    log: PathBuf,
    child: Child,
}

impl Containerd {
    pub fn start(dir: &Path) -> Containerd {
        cmd::require("ctr");
        let socket = dir.join("ctrd.sock");
        let hosts_dir = dir.join("certs.d");
        std::fs::create_dir_all(&hosts_dir).unwrap();
        let config = dir.join("containerd.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{sock}\"\n\
                 [ttrpc]\n  address = \"{sock}.ttrpc\"\n\
                 [debug]\n  address = \"{sock}.debug\"\n\
                 [metrics]\n  address = \"\"\n",
                root = dir.join("root").display(),
                state = dir.join("state").display(),
                sock = socket.display(),
            ),
        )
        .unwrap();
        let log = dir.join("containerd.log");
        let logfile = std::fs::File::create(&log).unwrap();
        let mut child = cmd::tool("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile)
            .spawn()
            .unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("containerd exited with {status}\n{}", read(&log));
            }
            if socket.exists() {
                let mut probe = Command::new("ctr");
                probe.arg("--address").arg(&socket).arg("version");
                if cmd::output(&mut probe).status.success() {
                    break;
                }
            }
            assert!(
                started.elapsed() < STARTUP_GUARD,
                "containerd did not come up within {STARTUP_GUARD:?}\n{}",
                read(&log)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Containerd {
            socket,
            hosts_dir,
            log,
            child,
        }
    }

    /// `ctr` talking to this daemon.
    pub fn ctr(&self) -> Command {
        let mut c = cmd::tool("ctr");
        c.arg("--address").arg(&self.socket);
        c
    }

    /// The manifest digest `ctr images ls` records for the image `name`.
    pub fn image_digest(&self, name: &str) -> String {
        let listing = cmd::run(self.ctr().args(["images", "ls"]));
        let line = listing
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not in ctr images ls:\n{listing}"));
        line.split_whitespace()
            .find(|w| w.starts_with("sha256:"))
            .unwrap()
            .to_string()
    }

    /// Makes `upstream` (e.g. `docker.io`, served by `server`) resolve through `mirror`
    /// (`http://host:port`); nothing but loopback is reachable here, so only the mirror can answer.
    pub fn add_mirror(&self, upstream: &str, server: &str, mirror: &str) {
        let dir = self.hosts_dir.join(upstream);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("hosts.toml"),
            format!(
                "server = \"{server}\"\n\n[host.\"{mirror}\"]\n  \
                 capabilities = [\"pull\", \"resolve\"]\n"
            ),
        )
        .unwrap();
    }

    pub fn log_text(&self) -> String {
        read(&self.log)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- containerd log ----\n{}", self.log_text());
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
