//! The shipped systemd unit `tools/systemd/berth.service`: systemd accepts every line of it, and
//! its command line, run as systemd runs it (`Type=notify`), with the example settings file,
//! tells systemd it is ready only when the registry answers, and that it is stopping on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const INSTALLED_BINARY: &str = "/usr/local/bin/berth";
const INSTALLED_SETTINGS: &str = "/etc/berth/berth.toml";

fn unit_text() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/systemd/berth.service"),
    )
    .unwrap()
}

fn setting<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in the unit"))
}

#[test]
fn systemd_accepts_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_text().replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_berth"));
    let path = dir.path().join("berth.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian package systemd; tools/install-test-deps.sh installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 even for unknown keys; what it says about the unit file is the verdict.
    let about_the_unit: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("berth.service"))
        .collect();
    assert!(
        out.status.success() && about_the_unit.is_empty(),
        "{stderr}"
    );
}

#[test]
fn exec_start_with_the_example_settings_notifies_ready_then_stopping() {
    let unit = unit_text();
    assert_eq!(setting(&unit, "Type"), "notify");
    let dir = tempfile::tempdir().unwrap();
    let settings = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/berth.toml");
    let exec_start = setting(&unit, "ExecStart")
        .replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_berth"))
        .replace(INSTALLED_SETTINGS, settings.to_str().unwrap());
    let mut words = exec_start.split_whitespace();
    let program = words.next().unwrap();

    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    // Variables win over the settings file: a free port and a private data directory instead of
    // 0.0.0.0:5000 and /var/lib/berth.
    let mut child = Command::new(program)
        .args(words)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("BERTH_LISTEN", "127.0.0.1:0")
        .env("BERTH_DATA", dir.path().join("data"))
        .env("BERTH_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

    let mut message = [0u8; 256];
    let n = socket.recv(&mut message).expect("READY=1 within a minute");
    assert_eq!(&message[..n], b"READY=1");
    // Ready means serving: the address is logged and /v2/ answers.
    let serving = lines
        .by_ref()
        .map(|l| serde_json::from_str::<serde_json::Value>(&l.unwrap()).unwrap())
        .find(|v| v["fields"]["message"] == "berth serving")
        .expect("the serving line");
    let addr = serving["fields"]["listen"].as_str().unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.write_all(b"GET /v2/ HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let n = socket.recv(&mut message).expect("STOPPING=1 after SIGTERM");
    assert_eq!(&message[..n], b"STOPPING=1");
    assert!(child.wait().unwrap().success());
}
