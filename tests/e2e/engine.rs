//! podman and buildah over a private storage root (vfs driver, own runroot and tmpdir) so that
//! scenarios running in parallel never see each other's images or locks.

use super::cmd;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Engine {
    root: PathBuf,
}

impl Engine {
    pub fn new(dir: &Path) -> Engine {
        let root = dir.join("s");
        for sub in ["root", "run", "tmp"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        // A private credentials file: `podman login` in one scenario never logs another in,
        // and nothing is left in the machine's default auth file. It must exist to be read.
        std::fs::write(root.join("auth.json"), "{\"auths\": {}}\n").unwrap();
        Engine { root }
    }

    /// The credentials file `podman login` writes and podman and buildah read.
    pub fn auth_file(&self) -> PathBuf {
        self.root.join("auth.json")
    }

    pub fn podman(&self) -> Command {
        let mut c = cmd::tool("podman");
        c.arg("--root")
            .arg(self.root.join("root"))
            .arg("--runroot")
            .arg(self.root.join("run"))
            .arg("--tmpdir")
            .arg(self.root.join("tmp"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .args(["--events-backend", "none", "--runtime", "runc"]);
        c.env("TMPDIR", self.root.join("tmp"))
            .env("REGISTRY_AUTH_FILE", self.auth_file());
        c
    }

    pub fn buildah(&self) -> Command {
        let mut c = cmd::tool("buildah");
        c.arg("--root")
            .arg(self.root.join("root"))
            .arg("--runroot")
            .arg(self.root.join("run"))
            .args(["--storage-driver", "vfs"]);
        c.env("TMPDIR", self.root.join("tmp"))
            .env("REGISTRY_AUTH_FILE", self.auth_file());
        c
    }

    /// Runs `command` in a throwaway container of `image` with podman and returns its stdout.
    /// runc rather than crun, and explicit rlimits: what works on this kind of host.
    pub fn run_in(&self, image: &str, command: &[&str]) -> String {
        cmd::run(
            self.podman()
                .args(["run", "--rm", "--network", "none"])
                .args([
                    "--ulimit",
                    "nofile=1024:1024",
                    "--ulimit",
                    "nproc=1024:1024",
                ])
                .arg(image)
                .args(command),
        )
    }
}
