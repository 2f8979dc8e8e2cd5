//! `berth gc` and `berth verify` as an operator runs them: refused with advice on a directory
//! a registry holds, refused on a directory without a store, reports as text or JSON, exit
//! codes (1 for damage), quarantine, and the same commands through a running registry.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use berth::oci::digest::{Algorithm, Digest};
use berth::storage::{Store, StoreOptions};
use serde_json::Value;

fn berth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A store in `dir` holding `blobs` in repository `r`; returns their digests.
fn store_with(dir: &Path, blobs: &[&[u8]]) -> Vec<Digest> {
    let s = Store::open(dir, StoreOptions::default()).unwrap();
    let digests = blobs
        .iter()
        .map(|b| {
            let d = Digest::of(Algorithm::Sha256, b);
            s.put_blob("r", &d, b).unwrap();
            d
        })
        .collect();
    s.close().unwrap();
    digests
}

/// Flips one byte of `needle` where it sits in the first segment.
fn damage(dir: &Path, needle: &[u8]) {
    let seg = dir.join("segments/0000000000000001.seg");
    let bytes = std::fs::read(&seg).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap() as u64
        + 10;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 1;
    f.write_all_at(&b, at).unwrap();
}

fn victim() -> Vec<u8> {
    (0..5000u32).map(|i| (i % 251) as u8).collect()
}

/// `berth serve` on `data`, with its listen address; stopped with SIGTERM on drop.
struct Serving {
    child: Child,
    addr: String,
}

impl Serving {
    fn start(data: &Path) -> Serving {
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--data")
            .arg(data)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        let addr = first["fields"]["listen"].as_str().unwrap().to_owned();
        // Keep reading the log so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Serving { child, addr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        // SAFETY: signalling a child process this test spawned and still owns.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

#[test]
fn a_directory_a_registry_holds_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    store_with(&data, &[b"x"]);
    let server = Serving::start(&data);

    for (command, extra) in [("gc", &["--dry-run"][..]), ("verify", &[][..])] {
        let mut args = vec![command, "--data", arg(&data)];
        args.extend_from_slice(extra);
        let out = berth(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{command}: {err}");
        assert!(err.contains("in use by a running registry"), "{err}");
        assert!(err.contains(&format!("berth {command} --url")), "{err}");
        assert!(out.stdout.is_empty());
    }
    drop(server);
}

#[test]
fn a_directory_without_a_store_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    for target in [dir.path(), missing.as_path()] {
        let out = berth(&["gc", "--data", arg(target)]);
        assert_eq!(out.status.code(), Some(3));
        assert!(
            text(&out.stderr).contains("is not a berth data directory"),
            "{}",
            text(&out.stderr)
        );
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert!(!missing.exists());
}

#[test]
fn usage_errors_exit_2() {
    let out = berth(&["gc"]);
    assert_eq!(out.status.code(), Some(2));
    let out = berth(&["gc", "--url", "127.0.0.1:5000"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let out = berth(&["verify", "--url", "https://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--ca-cert"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn verify_reports_a_clean_store_as_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    store_with(dir.path(), &[b"one", b"two"]);
    let out = berth(&["verify", "--data", arg(dir.path())]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("Result: clean"), "{stdout}");
    assert!(stdout.contains("damaged blobs    0"), "{stdout}");

    let out = berth(&["verify", "--data", arg(dir.path()), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["clean"], true);
    assert!(v["records"].as_u64().unwrap() >= 2, "{v}");
}

#[test]
fn verify_exits_1_and_names_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    let victim = victim();
    let digests = store_with(dir.path(), &[b"an intact neighbour", &victim]);
    damage(dir.path(), &victim[100..164]);

    let out = berth(&["verify", "--data", arg(dir.path()), "--no-quarantine"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("Result: DAMAGED"), "{stdout}");
    assert!(stdout.contains("damaged records  1"), "{stdout}");
    assert!(stdout.contains(&digests[1].to_string()), "{stdout}");
    assert!(stdout.contains("left in service"), "{stdout}");
    // Left in service: still reported present.
    let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(s.stat(&digests[1]).unwrap().is_some());
    s.close().unwrap();
}

/// Needs `Store::quarantine` from the garbage collection engine.
#[test]
fn verify_takes_damaged_blobs_out_of_service() {
    let dir = tempfile::tempdir().unwrap();
    let victim = victim();
    let digests = store_with(dir.path(), &[b"an intact neighbour", &victim]);
    damage(dir.path(), &victim[100..164]);

    let out = berth(&["verify", "--data", arg(dir.path()), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["damaged_blobs"][0], digests[1].to_string());
    assert_eq!(v["quarantined"], 1, "{v}");
    let s = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert!(s.stat(&digests[1]).unwrap().is_none());
    assert!(s.stat(&digests[0]).unwrap().is_some());
    s.close().unwrap();
}

#[test]
fn verify_through_a_running_registry() {
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("data");
    store_with(&data, &[b"x", b"y"]);
    let server = Serving::start(&data);
    let out = berth(&["verify", "--url", &server.url()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("Result: clean"), "{stdout}");
    let out = berth(&["verify", "--url", &server.url(), "--json", "--rate", "1GB"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["records"].as_u64().unwrap() >= 2, "{v}");
    drop(server);
}

/// Needs `Store::gc` from the garbage collection engine.
#[test]
fn gc_on_a_stopped_directory_and_through_a_registry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    store_with(&data, &[b"linked to no manifest"]);

    let out = berth(&["gc", "--data", arg(&data), "--dry-run"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("dry run: nothing was changed"), "{stdout}");

    let server = Serving::start(&data);
    let out = berth(&["gc", "--url", &server.url(), "--json", "--no-compact"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dry_run"], false);
    assert!(v["blobs_removed"].as_u64().unwrap() >= 1, "{v}");
    drop(server);
}
