//! `berth cert`: makes (or keeps) berth's private CA in DATA/tls and a server certificate it
//! signs, then prints how to serve with it and how each kind of client is told to trust the CA.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::cert_render::{self, Shown};
use crate::cli::CliError;
use crate::config::commands::CertCommand;
use crate::tlsgen::{self, Names, Request, SERVER_CERT, SERVER_KEY};

pub fn run(cmd: &CertCommand) -> ExitCode {
    super::finish(issue(cmd).map(|()| 0))
}

fn issue(cmd: &CertCommand) -> Result<(), CliError> {
    let names = Names::new(&cmd.host, &cmd.ip)?;
    let tls_dir = cmd.data.join("tls");
    let (cert, key) = match (&cmd.out_cert, &cmd.out_key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        _ => (tls_dir.join(SERVER_CERT), tls_dir.join(SERVER_KEY)),
    };
    for out in [&cmd.out_cert, &cmd.out_key].into_iter().flatten() {
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
    }
    let request = Request {
        names: &names,
        days: cmd.days,
        renew: cmd.renew,
        cert: &cert,
        key: &key,
    };
    let report = tlsgen::run(&tls_dir, &request, tlsgen::now())?;
    // Absolute paths: the printed commands are copied to other machines and directories.
    let shown = Shown {
        data: &absolute(&cmd.data),
        ca: &absolute(&report.ca.cert_path),
        ca_key: &absolute(&report.ca.key_path),
        cert: &absolute(&cert),
        key: &absolute(&key),
        names: &names,
        port: cmd.port,
    };
    let text = format!(
        "{}{}",
        cert_render::status(&shown, &report),
        cert_render::instructions(&shown)
    );
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
