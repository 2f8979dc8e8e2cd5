//! Running the real client binaries: a missing client fails the test (never skips it), a failing
//! command fails it with the full command line and output, and a hung command is killed.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// No client step in these scenarios legitimately takes this long; past it the command is stuck.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// The absolute path of `tool` on PATH; panics with the fix when it is missing, because an
/// end-to-end test that silently skips its client proves nothing.
pub fn require(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(tool);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("required client `{tool}` is not installed: run tools/install-test-deps.sh");
}

/// Starts a command for `tool` after checking that it is installed.
pub fn tool(tool: &str) -> Command {
    Command::new(require(tool))
}

/// Runs `cmd` to completion (killing it if it hangs) and returns its output whatever the status.
pub fn output(cmd: &mut Command) -> Output {
    output_with_input(cmd, None)
}

/// [`output`], with `input` written to the command's stdin (a password, say) instead of none.
pub fn output_with_input(cmd: &mut Command, input: Option<&[u8]>) -> Output {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", describe(cmd)));
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        // A command that exits without reading its stdin is not an error here.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        out.read_to_end(&mut buf).map(|_| buf)
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        err.read_to_end(&mut buf).map(|_| buf)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > HANG_GUARD {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} hung for {HANG_GUARD:?} and was killed", describe(cmd));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap().unwrap(),
        stderr: err_reader.join().unwrap().unwrap(),
    }
}

/// Runs `cmd` and panics with its output unless it succeeds; returns stdout as text.
pub fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    if !out.status.success() {
        panic!("{} failed ({})\n{}", describe(cmd), out.status, show(&out));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`run`] with `input` on the command's stdin.
pub fn run_with_input(cmd: &mut Command, input: &str) -> String {
    let out = output_with_input(cmd, Some(input.as_bytes()));
    if !out.status.success() {
        panic!("{} failed ({})\n{}", describe(cmd), out.status, show(&out));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd` and panics unless it fails; returns stdout and stderr together.
pub fn run_expect_failure(cmd: &mut Command) -> String {
    let out = output(cmd);
    if out.status.success() {
        panic!(
            "{} succeeded but should have failed\n{}",
            describe(cmd),
            show(&out)
        );
    }
    show(&out)
}

fn show(out: &Output) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Path of a file in this repository (scripts under `tools/`).
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// sha256 of a file's bytes as lowercase hex.
pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest as _;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    hex::encode(sha2::Sha256::digest(&bytes))
}

/// sha256 of bytes as an OCI digest string.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
