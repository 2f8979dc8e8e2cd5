//! `berth gc` and `berth verify`: run a collection or a scrub on a stopped data directory, or
//! ask a running registry to run one, and print the report (text, or JSON with `--json`).
//! `auth` runs the access model's commands (`berth user`, `project`, `member`, `robot`,
//! `immutable`, `audit`) on a stopped data directory; `hosts_toml` writes containerd's mirror
//! settings (`berth hosts-toml`); `cert` makes berth's own CA and server certificate and prints
//! how clients trust it.
//!
//! Exit codes: 0 done (and, for verify, nothing damaged), 1 verify found damage, 2 bad flags
//! or settings, 3 the job could not run or failed (a locked directory, an I/O error, a
//! refusal from the registry, a file that exists without `--force`).
//!
//! Layout: `local` (open a data directory), `remote` (the admin endpoint client), `progress`
//! (bar or lines on stderr), `render` (text reports), `cert_render` (`berth cert`'s printout).
//! `bundle` runs `berth export`, `import` and `inventory`, writing through `split` and showing
//! `transfer` progress; `registry` is their distribution API client for `--url`, `push` what
//! `import --url` sends (a berth bundle `stream`s through as it is read).

pub mod auth;
mod auth_render;
pub mod bundle;
pub mod cert;
mod cert_render;
pub mod hosts_toml;
mod local;
pub mod progress;
mod push;
mod registry;
pub mod remote;
pub mod render;
mod split;
mod stream;
pub mod transfer;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::commands::Target;
use crate::config::{ConfigError, GcCommand, VerifyCommand};
use crate::maintenance::scrub_and_quarantine;
use crate::maintenance::wire::{GcReportJson, GcRequest, VerifyJson, VerifyRequest};
use crate::storage::StorageError;
use progress::Progress;
use remote::{Answer, Endpoint};

pub const EXIT_DAMAGED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_FAILED: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error(
        "{} is in use by a running registry (its store is locked). Stop the registry first, \
         or ask it to do this: berth {command} --url http://<its listen address>",
        dir.display()
    )]
    Locked { dir: PathBuf, command: &'static str },
    #[error("{} is not a berth data directory (it has no segments/)", .0.display())]
    NotAStore(PathBuf),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Bundle(#[from] crate::bundle::BundleError),
    /// An input `berth import` refused whole.
    #[error("{path}: refused, nothing imported: {reason}")]
    Refused {
        path: PathBuf,
        reason: crate::bundle::BundleError,
    },
    #[error("{0}")]
    Auth(crate::auth::error::AuthError),
    #[error("{0}")]
    Remote(String),
    #[error("{} already exists; give --force to replace it", .0.display())]
    Exists(PathBuf),
    #[error("{0}")]
    Cert(#[from] crate::tlsgen::TlsGenError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) | CliError::Usage(_) => EXIT_USAGE,
            CliError::Cert(crate::tlsgen::TlsGenError::BadName(_)) => EXIT_USAGE,
            _ => EXIT_FAILED,
        }
    }
}

/// `berth gc`.
pub fn gc(cmd: &GcCommand) -> ExitCode {
    finish(run_gc(cmd).map(|()| 0))
}

/// `berth verify`.
pub fn verify(cmd: &VerifyCommand) -> ExitCode {
    finish(run_verify(cmd).map(|clean| if clean { 0 } else { EXIT_DAMAGED }))
}

fn finish(result: Result<u8, CliError>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("berth: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run_gc(cmd: &GcCommand) -> Result<(), CliError> {
    let (target, opts) = cmd.resolve()?;
    let report = match target {
        Target::Data(dir) => {
            let store = local::open(&dir, "gc")?;
            let mut progress = Progress::for_stderr();
            let result = store.gc(&opts, &mut |p| progress.update(p));
            progress.finish();
            let closed = store.close();
            let report = result?;
            closed?;
            GcReportJson::from(&report)
        }
        Target::Url { url, ca_cert } => {
            let request = GcRequest {
                dry_run: cmd.dry_run,
                grace: cmd.grace,
                compact: cmd.no_compact.then_some(false),
                compact_threshold: cmd.compact_threshold,
                rate: cmd.rate,
            };
            let answer = ask(&url, ca_cert, "/admin/gc", &request, "garbage collection")?;
            parse(&answer)?
        }
    };
    print(cmd.json, &report, render::gc_report)
}

/// Whether the store is clean.
fn run_verify(cmd: &VerifyCommand) -> Result<bool, CliError> {
    let quarantine = !cmd.no_quarantine;
    let report = match cmd.target() {
        Target::Data(dir) => {
            let store = local::open(&dir, "verify")?;
            let space = store.space();
            eprintln!(
                "verify: checking {} segments ({})…",
                space.segments.len(),
                crate::config::units::format_bytes(space.segments.iter().map(|s| s.size).sum())
            );
            let result = scrub_and_quarantine(&store, cmd.rate.and_then(|r| r.0), quarantine);
            let closed = store.close();
            let outcome = result?;
            closed?;
            VerifyJson::from(&outcome)
        }
        Target::Url { url, ca_cert } => {
            let request = VerifyRequest {
                quarantine: Some(quarantine),
                rate: cmd.rate,
            };
            let answer = ask(&url, ca_cert, "/admin/verify", &request, "scrub")?;
            parse(&answer)?
        }
    };
    print(cmd.json, &report, render::verify_report)?;
    Ok(report.clean)
}

/// POSTs `request` to the registry at `url`, showing how long it has been waiting.
fn ask(
    url: &str,
    ca_cert: Option<PathBuf>,
    path: &str,
    request: &impl Serialize,
    what: &str,
) -> Result<Answer, CliError> {
    let endpoint = Endpoint::parse(url)?;
    let body = serde_json::to_vec(request).map_err(|e| CliError::Usage(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer = runtime.block_on(async {
        let waiting = tokio::spawn(show_waiting(format!("{url}: {what} running")));
        let answer = remote::post(&endpoint, ca_cert.as_deref(), path, body).await;
        waiting.abort();
        if std::io::stderr().is_terminal() {
            eprint!("\r\x1b[K");
        }
        answer
    })?;
    if answer.status == http::StatusCode::OK {
        Ok(answer)
    } else {
        Err(CliError::Remote(format!(
            "the registry answered {}: {}",
            answer.status,
            answer.error_text()
        )))
    }
}

/// On a terminal, the time waited so far, redrawn each second; elsewhere one line.
async fn show_waiting(what: String) {
    if !std::io::stderr().is_terminal() {
        eprintln!("{what}; waiting for its report");
        return;
    }
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let waited = Duration::from_secs(start.elapsed().as_secs());
        eprint!(
            "\r{what}… {}\x1b[K",
            crate::config::units::format_duration(waited)
        );
        let _ = std::io::stderr().flush();
    }
}

fn parse<T: serde::de::DeserializeOwned>(answer: &Answer) -> Result<T, CliError> {
    serde_json::from_slice(&answer.body)
        .map_err(|e| CliError::Remote(format!("the registry's report does not parse: {e}")))
}

fn print<T: Serialize>(json: bool, report: &T, text: fn(&T) -> String) -> Result<(), CliError> {
    let out = if json {
        let mut s =
            serde_json::to_string_pretty(report).map_err(|e| CliError::Usage(e.to_string()))?;
        s.push('\n');
        s
    } else {
        text(report)
    };
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(())
}
