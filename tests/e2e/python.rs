//! The Python clients (oras-py, helm-sdkpy) run from the venv `tools/install-test-deps.sh`
//! creates, through the scripts in `tools/e2e/`.

use super::cmd;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The venv's interpreter; a missing venv fails the test with the command that creates it.
pub fn python() -> PathBuf {
    let venv = std::env::var_os("BERTH_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/berth-test-venv"));
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "{} is missing (oras-py and helm-sdkpy live there): run tools/install-test-deps.sh",
        python.display()
    );
    python
}

/// `tools/e2e/oras_client.py` over plain HTTP, or over HTTPS trusting the test CA.
pub fn oras(ca: Option<&Path>) -> Command {
    let mut c = Command::new(python());
    c.arg(cmd::repo_path("tools/e2e/oras_client.py"));
    match ca {
        Some(ca) => c.arg("--ca").arg(ca),
        None => c.arg("--insecure"),
    };
    c
}

/// Runs an oras_client.py command and parses the JSON it prints.
pub fn oras_json(c: &mut Command) -> serde_json::Value {
    let out = cmd::run(c);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("oras_client.py printed {out}: {e}"))
}

/// `tools/e2e/helm_client.py` with Helm's cache and registry config kept in `home`.
pub fn helm(home: &Path) -> Command {
    let mut c = Command::new(python());
    c.arg(cmd::repo_path("tools/e2e/helm_client.py"))
        .env("HOME", home);
    for var in [
        "HELM_CACHE_HOME",
        "HELM_CONFIG_HOME",
        "HELM_DATA_HOME",
        "HELM_REGISTRY_CONFIG",
    ] {
        c.env_remove(var);
    }
    c
}
