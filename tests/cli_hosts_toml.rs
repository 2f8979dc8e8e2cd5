//! `berth hosts-toml` as an operator runs it: the certs.d tree it writes (parsed back as TOML),
//! the docker and podman settings it prints, the CA copies, and its refusals with their exit
//! codes (2 for bad flags, 3 for a file that exists without --force), which leave nothing
//! half-written.

use std::path::Path;
use std::process::{Command, Output};

fn berth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("hosts-toml")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(args: &[&str]) -> String {
    let out = berth(args);
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs a command that must fail with `code`; returns its stderr.
fn refused(args: &[&str], code: i32) -> String {
    let out = berth(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

fn toml_file(path: &Path) -> toml::Table {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    s.parse()
        .unwrap_or_else(|e| panic!("{}: {e}\n{s}", path.display()))
}

/// Every file under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                all.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    all.sort();
    all
}

#[test]
fn writes_one_file_per_upstream_and_prints_the_other_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("certs.d");
    let out_s = out.to_str().unwrap();
    let stdout = ok(&[
        "--upstream",
        "index.docker.io",
        "--upstream",
        "quay.io",
        "--server",
        "http://10.1.2.3:5000",
        "--out",
        out_s,
        "--dial-timeout",
        "1s",
    ]);
    assert_eq!(tree(&out), ["docker.io/hosts.toml", "quay.io/hosts.toml"]);

    let hub = toml_file(&out.join("docker.io/hosts.toml"));
    assert_eq!(hub["server"].as_str(), Some("https://registry-1.docker.io"));
    let host = hub["host"]["http://10.1.2.3:5000"].as_table().unwrap();
    assert_eq!(host["capabilities"].as_array().unwrap().len(), 2);
    assert_eq!(host["dial_timeout"].as_str(), Some("1s"));
    let quay = toml_file(&out.join("quay.io/hosts.toml"));
    assert_eq!(quay["server"].as_str(), Some("https://quay.io"));
    assert!(quay["host"].get("http://10.1.2.3:5000").is_some());

    assert!(stdout.contains(&format!("Wrote {out_s}/docker.io/hosts.toml")));
    assert!(stdout.contains(&format!("cp -r {out_s}/. /etc/containerd/certs.d/")));
    // docker's settings: the JSON object as printed, parsed back.
    let start = stdout.find("{\n").unwrap();
    let end = start + stdout[start..].find("\n}").unwrap() + 2;
    let json: serde_json::Value = serde_json::from_str(&stdout[start..end]).unwrap();
    assert_eq!(json["registry-mirrors"][0], "http://10.1.2.3:5000");
    assert_eq!(json["insecure-registries"][0], "10.1.2.3:5000");
    assert!(stdout.contains("unprefixed = true"), "{stdout}");
    // podman's stanzas, one per upstream, berth asked by path.
    assert!(
        stdout.contains("location = \"10.1.2.3:5000/docker.io\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("location = \"10.1.2.3:5000/quay.io\""),
        "{stdout}"
    );
    assert!(stdout.contains("insecure = true"), "{stdout}");
}

#[test]
fn an_existing_file_is_kept_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("certs.d");
    let out_s = out.to_str().unwrap();
    std::fs::create_dir_all(out.join("quay.io")).unwrap();
    std::fs::write(out.join("quay.io/hosts.toml"), "# the operator's own\n").unwrap();
    let args = [
        "--upstream",
        "docker.io",
        "--upstream",
        "quay.io",
        "--out",
        out_s,
    ];

    let err = refused(&args, 3);
    assert!(err.contains("quay.io/hosts.toml already exists"), "{err}");
    assert!(err.contains("--force"), "{err}");
    // Nothing written, not even the file that did not exist.
    assert_eq!(tree(&out), ["quay.io/hosts.toml"]);
    assert_eq!(
        std::fs::read_to_string(out.join("quay.io/hosts.toml")).unwrap(),
        "# the operator's own\n"
    );

    ok(&[&args[..], &["--force"]].concat());
    assert_eq!(tree(&out), ["docker.io/hosts.toml", "quay.io/hosts.toml"]);
    let quay = toml_file(&out.join("quay.io/hosts.toml"));
    assert_eq!(quay["server"].as_str(), Some("https://quay.io"));
    assert!(quay["host"].get("http://127.0.0.1:5000").is_some());
}

#[test]
fn bad_flags_exit_2_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("certs.d");
    let out_s = out.to_str().unwrap();
    let not_pem = tmp.path().join("ca.txt");
    std::fs::write(&not_pem, "hello\n").unwrap();
    for (args, says) in [
        (vec!["--upstream", "https://quay.io"], "not a URL"),
        (
            vec!["--upstream", "no such host"],
            "not a registry host name",
        ),
        (vec!["--upstream", "registry.local:5000"], "port"),
        (
            vec!["--upstream", "docker.io", "--upstream", "index.docker.io"],
            "twice",
        ),
        (
            vec!["--upstream", "docker.io", "--server", "127.0.0.1:5000"],
            "http://",
        ),
        (
            vec!["--upstream", "docker.io", "--server", "http://h:5000/v2"],
            "no path",
        ),
        (
            vec!["--upstream", "docker.io", "--dial-timeout", "0"],
            "above zero",
        ),
        (
            vec!["--upstream", "docker.io", "--ca", not_pem.to_str().unwrap()],
            "https://",
        ),
        (
            vec![
                "--upstream",
                "docker.io",
                "--server",
                "https://berth.internal",
                "--ca",
                not_pem.to_str().unwrap(),
            ],
            "not a PEM certificate",
        ),
        // Neither --upstream nor --default: clap's own usage error.
        (vec![], "--upstream"),
    ] {
        let all = [&args[..], &["--out", out_s]].concat();
        let err = refused(&all, 2);
        assert!(err.contains(says), "{all:?}: {err}");
        assert!(!out.exists(), "{all:?} wrote something");
    }
}

#[test]
fn default_covers_every_registry_and_the_ca_is_copied_beside_it() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("certs.d");
    let ca = tmp.path().join("my-ca.pem");
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    std::fs::write(&ca, pem).unwrap();
    let stdout = ok(&[
        "--default",
        "--server",
        "https://berth.internal:8443",
        "--ca",
        ca.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(tree(&out), ["_default/berth-ca.crt", "_default/hosts.toml"]);
    let file = toml_file(&out.join("_default/hosts.toml"));
    assert!(
        file.get("server").is_none(),
        "_default must not pin a server"
    );
    let host = file["host"]["https://berth.internal:8443"]
        .as_table()
        .unwrap();
    assert_eq!(host["skip_verify"].as_bool(), Some(false));
    // Relative: containerd resolves it beside the hosts.toml wherever the tree is installed.
    assert_eq!(host["ca"].as_str(), Some("berth-ca.crt"));
    assert_eq!(
        std::fs::read_to_string(out.join("_default/berth-ca.crt")).unwrap(),
        pem
    );
    assert!(stdout.contains("\"registry-mirrors\""), "{stdout}");
    assert!(!stdout.contains("insecure"), "{stdout}");
    assert!(
        stdout.contains("/etc/docker/certs.d/berth.internal:8443/ca.crt"),
        "{stdout}"
    );

    // Per-upstream files get a copy each, so each directory stands alone.
    let out2 = tmp.path().join("per-ns");
    ok(&[
        "--upstream",
        "docker.io",
        "--upstream",
        "ghcr.io",
        "--server",
        "https://berth.internal:8443",
        "--ca",
        ca.to_str().unwrap(),
        "--out",
        out2.to_str().unwrap(),
    ]);
    assert_eq!(
        tree(&out2),
        [
            "docker.io/berth-ca.crt",
            "docker.io/hosts.toml",
            "ghcr.io/berth-ca.crt",
            "ghcr.io/hosts.toml"
        ]
    );
    let ghcr = toml_file(&out2.join("ghcr.io/hosts.toml"));
    assert_eq!(ghcr["server"].as_str(), Some("https://ghcr.io"));
    assert_eq!(
        ghcr["host"]["https://berth.internal:8443"]["ca"].as_str(),
        Some("berth-ca.crt")
    );
}
