//! berth's own CA end to end: `berth cert --host localhost --ip 127.0.0.1`, `berth serve` with
//! that certificate, then skopeo, podman and containerd pushing and pulling with certificate
//! verification on, each trusting the CA the way `berth cert` prints it. Each client is also
//! shown to refuse the server when not told about the CA, so trust comes from the CA alone.

mod e2e;

use std::path::Path;
use std::process::Command;

use e2e::cmd::{self, run, run_expect_failure};
use e2e::containerd::Containerd;
use e2e::engine::Engine;
use e2e::image::{assert_same_image, OciImage};
use e2e::registry::{berth_bin, Registry};
use e2e::tls::Certs;

/// What Go's TLS stack says of a certificate chain it has no root for.
const UNKNOWN_AUTHORITY: &str = "certificate signed by unknown authority";

fn berth_cert(data: &Path, extra: &[&str]) -> String {
    run(Command::new(berth_bin())
        .arg("cert")
        .arg("--data")
        .arg(data)
        .args(["--host", "localhost", "--ip", "127.0.0.1"])
        .args(extra))
}

fn assert_unknown_authority(out: &str) {
    assert!(
        out.contains(UNKNOWN_AUTHORITY),
        "refused, but not for the CA:\n{out}"
    );
}

/// The `hosts.toml` `berth cert` prints for containerd: the lines of its heredoc.
fn printed_hosts_toml(printed: &str) -> String {
    let start = printed
        .lines()
        .position(|l| l.contains("/hosts.toml <<'EOF'"))
        .unwrap_or_else(|| panic!("no hosts.toml in\n{printed}"));
    let body: Vec<&str> = printed
        .lines()
        .skip(start + 1)
        .take_while(|l| *l != "EOF")
        .collect();
    body.join("\n") + "\n"
}

#[test]
fn skopeo_podman_and_containerd_trust_berths_own_ca() {
    let work = e2e::workdir();
    let trust = work.path().join("trust");
    let reg = Registry::start_berth_own_cert(|data| {
        let out = berth_cert(data, &[]);
        assert!(out.contains("issued for localhost, 127.0.0.1"), "{out}");
        Certs::of_berth(data, &trust)
    });
    let port = reg.host().rsplit_once(':').unwrap().1.to_owned();
    let by_name = format!("localhost:{port}");
    let by_ip = reg.host().to_owned();
    // Asked again with the real port: the certificate is kept, the commands are for this port.
    let printed = berth_cert(&reg.data_dir(), &["--port", &port]);
    assert!(printed.contains(": reused"), "{printed}");
    let no_ca = work.path().join("no-ca");
    std::fs::create_dir_all(&no_ca).unwrap();
    let (trust, no_ca) = (trust.to_str().unwrap(), no_ca.to_str().unwrap());
    let image = OciImage::build(&work.path().join("layout"), "v1", &[2048, 512]);

    // skopeo: in by name, out by address, with the CA in --dest-cert-dir / --src-cert-dir.
    let remote = format!("docker://{by_name}/e2e/own-ca:v1");
    let refused = run_expect_failure(
        cmd::tool("skopeo")
            .args(["copy", "--dest-cert-dir", no_ca])
            .arg(image.transport_ref())
            .arg(&remote),
    );
    assert_unknown_authority(&refused);
    run(cmd::tool("skopeo")
        .args(["copy", "--dest-cert-dir", trust])
        .arg(image.transport_ref())
        .arg(&remote));
    let by_ip_remote = format!("docker://{by_ip}/e2e/own-ca:v1");
    let refused = run_expect_failure(
        cmd::tool("skopeo")
            .args(["inspect", "--raw", "--cert-dir", no_ca])
            .arg(&by_ip_remote),
    );
    assert_unknown_authority(&refused);
    let out = work.path().join("out");
    run(cmd::tool("skopeo")
        .args(["copy", "--src-cert-dir", trust])
        .arg(&by_ip_remote)
        .arg(format!("oci:{}:v1", out.display())));
    assert_same_image(&image.layout, &out, "v1");

    // podman: the CA as certs.d/<host:port>/ca.crt, in the per-user certs.d of a private HOME.
    let home = work.path().join("home");
    let certs_d = home.join(".config/containers/certs.d").join(&by_name);
    let engine = Engine::new(&work.path().join("podman"));
    let pulled = format!("{by_name}/e2e/own-ca:v1");
    let refused = run_expect_failure(
        engine
            .podman()
            .env("HOME", &home)
            .args(["pull", "-q"])
            .arg(&pulled),
    );
    assert_unknown_authority(&refused);
    std::fs::create_dir_all(&certs_d).unwrap();
    std::fs::copy(reg.data_dir().join("tls/ca.crt"), certs_d.join("ca.crt")).unwrap();
    run(engine
        .podman()
        .env("HOME", &home)
        .args(["pull", "-q"])
        .arg(&pulled));
    let pushed = format!("{by_name}/e2e/own-ca-podman:v1");
    run(engine
        .podman()
        .env("HOME", &home)
        .args(["push", "-q"])
        .arg(&pulled)
        .arg(&pushed));
    let fresh = Engine::new(&work.path().join("podman2"));
    run(fresh
        .podman()
        .env("HOME", &home)
        .args(["pull", "-q"])
        .arg(&pushed));
    let id = |engine: &Engine, name: &str| {
        run(engine
            .podman()
            .args(["image", "inspect", "--format", "{{.Id}}"])
            .arg(name))
    };
    assert_eq!(id(&fresh, &pushed), id(&engine, &pulled));

    // containerd: the hosts.toml berth cert printed, `ca = "<path>"` pointing at the CA copied
    // beside it, as printed. Without the `ca` line the same pull is refused.
    let ctrd = Containerd::start(&work.path().join("ctrd"));
    let host_dir = ctrd.hosts_dir.join(&by_name);
    std::fs::create_dir_all(&host_dir).unwrap();
    let printed_toml = printed_hosts_toml(&printed);
    let etc = format!("/etc/containerd/certs.d/{by_name}");
    assert!(
        printed_toml.contains(&format!("ca = \"{etc}/ca.crt\"")),
        "{printed_toml}"
    );
    let without_ca: String = printed_toml
        .lines()
        .filter(|l| !l.trim_start().starts_with("ca ="))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(host_dir.join("hosts.toml"), &without_ca).unwrap();
    let pull = |ctrd: &Containerd| {
        let mut c = ctrd.ctr();
        c.args(["images", "pull", "--hosts-dir"])
            .arg(&ctrd.hosts_dir)
            .arg(&pulled);
        c
    };
    assert_unknown_authority(&run_expect_failure(&mut pull(&ctrd)));
    assert!(
        printed.lines().any(|l| l
            == format!(
                "cp {} {etc}/ca.crt",
                std::fs::canonicalize(reg.data_dir().join("tls/ca.crt"))
                    .unwrap()
                    .display()
            )),
        "{printed}"
    );
    std::fs::copy(reg.data_dir().join("tls/ca.crt"), host_dir.join("ca.crt")).unwrap();
    let toml = printed_toml.replace(&etc, host_dir.to_str().unwrap());
    std::fs::write(host_dir.join("hosts.toml"), toml).unwrap();
    run(&mut pull(&ctrd));
    let listing = run(ctrd.ctr().args(["images", "ls"]));
    let line = listing
        .lines()
        .find(|l| l.split_whitespace().next() == Some(pulled.as_str()))
        .unwrap_or_else(|| panic!("{pulled} not in ctr images ls:\n{listing}"));
    assert!(line.contains(&image.manifest_digest()), "{line}");
    // And back: the push capability of the same hosts.toml.
    let ctr_pushed = format!("{by_name}/e2e/own-ca-ctr:v1");
    run(ctrd.ctr().args(["images", "tag", &pulled, &ctr_pushed]));
    run(ctrd
        .ctr()
        .args(["images", "push", "--hosts-dir"])
        .arg(&ctrd.hosts_dir)
        .arg(&ctr_pushed));
    let raw = run(cmd::tool("skopeo")
        .args(["inspect", "--raw", "--cert-dir", trust])
        .arg(format!("docker://{ctr_pushed}")));
    assert_eq!(cmd::sha256_digest(raw.as_bytes()), image.manifest_digest());
}
