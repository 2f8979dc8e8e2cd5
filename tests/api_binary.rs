//! The `berth serve` binary: JSON logs with one line per request, the listen address it
//! reports, and a clean exit on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use berth::oci::digest::{Algorithm, Digest};
use serde_json::Value;

fn next_json(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> Value {
    let line = lines.next().expect("log line").expect("readable log");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn serve_logs_json_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--data",
        ])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = next_json(&mut lines);
    let addr = started["fields"]["listen"].as_str().unwrap().to_owned();

    let mut tcp = TcpStream::connect(&addr).unwrap();
    tcp.write_all(b"GET /v2/ HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("docker-distribution-api-version: registry/2.0"));

    let access = next_json(&mut lines);
    assert_eq!(access["target"], "berth::access");
    assert_eq!(access["fields"]["method"], "GET");
    assert_eq!(access["fields"]["path"], "/v2/");
    assert_eq!(access["fields"]["status"], 200);
    assert_eq!(access["fields"]["bytes_in"], 0);
    assert_eq!(access["fields"]["bytes_out"], 2);
    assert!(access["fields"]["duration_ms"].is_number());

    let digest = Digest::of(Algorithm::Sha256, b"hello");
    let mut tcp = TcpStream::connect(&addr).unwrap();
    let req = format!(
        "POST /v2/t/blobs/uploads/?digest={digest} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 5\r\n\r\nhello"
    );
    tcp.write_all(req.as_bytes()).unwrap();
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
    let access = next_json(&mut lines);
    assert_eq!(access["fields"]["method"], "POST");
    assert_eq!(access["fields"]["status"], 201);
    assert_eq!(access["fields"]["bytes_in"], 5);

    // SAFETY: signalling a child process this test spawned and still owns.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("store closed")), "{rest:?}");
}

/// Log lines are written by a thread of their own; a SIGTERM right after a burst of requests
/// still finds every one of their lines in the output.
#[test]
fn every_request_line_is_written_out_before_a_graceful_exit() {
    const REQUESTS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .arg("--data")
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = next_json(&mut lines);
    let addr = started["fields"]["listen"].as_str().unwrap().to_owned();
    // The log is read as it comes: the lines outgrow a pipe's buffer.
    let reader = std::thread::spawn(move || {
        lines
            .map_while(Result::ok)
            .filter(|l| l.contains("berth::access"))
            .collect::<Vec<String>>()
    });

    let mut tcp = TcpStream::connect(&addr).unwrap();
    let mut burst = String::new();
    for i in 0..REQUESTS {
        let close = if i + 1 == REQUESTS {
            "connection: close\r\n"
        } else {
            ""
        };
        burst.push_str(&format!(
            "HEAD /v2/r/manifests/t{i} HTTP/1.1\r\nhost: x\r\n{close}\r\n"
        ));
    }
    tcp.write_all(burst.as_bytes()).unwrap();
    let mut replies = String::new();
    tcp.read_to_string(&mut replies).unwrap();
    assert_eq!(replies.matches("HTTP/1.1 404").count(), REQUESTS);

    // SAFETY: signalling a child process this test spawned and still owns.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    assert!(child.wait().unwrap().success());
    let logged = reader.join().unwrap();
    assert_eq!(logged.len(), REQUESTS);
    for (i, line) in logged.iter().enumerate() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["fields"]["path"], format!("/v2/r/manifests/t{i}"));
        assert_eq!(v["fields"]["status"], 404);
    }
}

#[test]
fn bad_settings_exit_with_usage_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--tls-cert", "only-a-cert.pem"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--config", "/nonexistent/berth.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/berth.toml"));
}

#[test]
fn serving_is_said_only_once_the_store_is_open_and_bad_addresses_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut first = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--data",
        ])
        .arg(&data)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    // The first instance holds the store's lock once it says it is serving.
    loop {
        let line = next_json(&mut lines);
        if line["fields"]["message"] == "berth serving" {
            break;
        }
    }
    // A second one on the same data directory fails on the lock, and never said it served.
    let second = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(!second.status.success());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&second.stdout),
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(!said.contains("berth serving"), "{said}");
    // SAFETY: signalling a child process this test spawned and still owns.
    unsafe { libc::kill(first.id() as libc::pid_t, libc::SIGTERM) };
    assert!(first.wait().unwrap().success());

    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--listen", "nope", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--listen \"nope\""), "{stderr}");
}
