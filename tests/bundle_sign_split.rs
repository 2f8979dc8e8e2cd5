//! The command line around the bundle format: `--sign-key` signs the contents manifest and
//! `--verify-key` refuses unsigned or wrongly signed bundles; `--split-size` writes parts
//! that import reads back in order; a gzip- or zstd-compressed bundle imports as it is.

mod bundle_support;

use std::path::Path;
use std::process::{Command, Output};

use bundle_support::*;

fn berth(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
    for a in args {
        c.arg(a);
    }
    c.output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(out: Output) -> String {
    assert!(!out.status.success(), "succeeded but should not have");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn openssl(args: &[&dyn AsRef<std::ffi::OsStr>]) {
    let mut c = Command::new("openssl");
    for a in args {
        c.arg(a);
    }
    let out = c
        .output()
        .expect("openssl is installed (tools/install-test-deps.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn keypair(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub"));
    openssl(&[&"genpkey", &"-algorithm", &"ed25519", &"-out", &key]);
    openssl(&[&"pkey", &"-in", &key, &"-pubout", &"-out", &public]);
    (key, public)
}

#[test]
fn signed_split_and_compressed_bundles() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    {
        let store = open(&a);
        put_image(&store, "app", "v1", &[&[3u8; 40_000], b"small layer"]);
    }
    let (key, public) = keypair(tmp.path(), "signer");
    let (_, other_public) = keypair(tmp.path(), "other");

    let signed = tmp.path().join("signed.tar");
    ok(berth(&[
        &"export",
        &"--data",
        &a,
        &"app:v1",
        &"-o",
        &signed,
        &"--sign-key",
        &key,
        &"--split-size",
        &"16KiB",
    ]));
    let parts: Vec<_> = (0..)
        .map(|i| tmp.path().join(format!("signed.tar.{i:03}")))
        .take_while(|p| p.exists())
        .collect();
    assert!(parts.len() >= 3, "{parts:?}");
    assert!(parts
        .iter()
        .all(|p| std::fs::metadata(p).unwrap().len() <= 16 * 1024));
    assert!(!signed.exists());

    let b = tmp.path().join("b");
    let names = ok(berth(&[
        &"import",
        &"--data",
        &b,
        &signed,
        &"--verify-key",
        &public,
    ]));
    assert_eq!(names.trim(), "app:v1");

    // The same bundle checked against another key is refused, and so is an unsigned one.
    let c = tmp.path().join("c");
    let err = refused(berth(&[
        &"import",
        &"--data",
        &c,
        &parts[0],
        &"--verify-key",
        &other_public,
    ]));
    assert!(err.contains("not signed by the key"), "{err}");
    let unsigned = tmp.path().join("unsigned.tar");
    ok(berth(&[&"export", &"--data", &a, &"app", &"-o", &unsigned]));
    let err = refused(berth(&[
        &"import",
        &"--data",
        &c,
        &unsigned,
        &"--verify-key",
        &public,
    ]));
    assert!(err.contains("not a signed berth bundle"), "{err}");

    // A signed contents manifest changed after signing no longer verifies.
    let whole = tmp.path().join("whole.tar");
    let mut bytes = Vec::new();
    for p in &parts {
        bytes.extend(std::fs::read(p).unwrap());
    }
    std::fs::write(&whole, &bytes).unwrap();
    let forged = tmp.path().join("forged.tar");
    rewrite_tar(&whole, &forged, |path, body| {
        if path == "berth-bundle.json" {
            let text = String::from_utf8(body).unwrap();
            Some(text.replacen("\"v1\"", "\"v2\"", 1).into_bytes())
        } else {
            Some(body)
        }
    });
    let err = refused(berth(&[
        &"import",
        &"--data",
        &c,
        &forged,
        &"--verify-key",
        &public,
    ]));
    assert!(err.contains("not signed by the key"), "{err}");
    {
        let store = open(&c);
        assert!(seen(&store).tags.is_empty());
    }

    // Compressed whole: recognised by its first bytes.
    for (tool, ext) in [("gzip", "gz"), ("zstd", "zst")] {
        let out = Command::new(tool)
            .args(["-k", "-q"])
            .arg(&unsigned)
            .status()
            .expect("gzip and zstd are installed (tools/install-test-deps.sh)");
        assert!(out.success());
        let packed = tmp.path().join(format!("unsigned.tar.{ext}"));
        let d = tmp.path().join(format!("from-{ext}"));
        let names = ok(berth(&[&"import", &"--data", &d, &packed]));
        assert_eq!(names.trim(), "app:v1", "{tool}");
    }
}
