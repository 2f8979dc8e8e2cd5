//! `berth export`, `berth import` and `berth inventory`: the bundle formats (`crate::bundle`)
//! on a stopped data directory, or through the distribution API of a running registry
//! (`registry`), with files, progress and a short report.

use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::bundle::contents::read_contents;
use crate::bundle::names::RepoOverride;
use crate::bundle::origin::Origin;
use crate::bundle::select::select;
use crate::bundle::sign::{Signer, Verifier};
use crate::bundle::{export as write_bundle, import as read_bundle, Inventory, RefSpec};
use crate::bundle::{BundleError, ImportOptions, ImportReport};
use crate::config::units::format_bytes;
use crate::config::{ExportCommand, ImportCommand, InventoryCommand};
use crate::oci::digest::Digest;

use super::registry::Remote;
use super::split::Output;
use super::transfer::Transfer;
use super::{finish, local, CliError};
use super::{push, stream};

/// Output buffer: tar headers and blob chunks go out in large writes.
const OUT_BUFFER: usize = 1 << 20;

pub fn export(cmd: &ExportCommand) -> ExitCode {
    finish(run_export(cmd).map(|()| 0))
}

pub fn import(cmd: &ImportCommand) -> ExitCode {
    finish(run_import(cmd).map(|()| 0))
}

pub fn inventory(cmd: &InventoryCommand) -> ExitCode {
    finish(run_inventory(cmd).map(|()| 0))
}

fn run_export(cmd: &ExportCommand) -> Result<(), CliError> {
    let specs = cmd
        .refs
        .iter()
        .map(|r| RefSpec::parse(r).map_err(|e| CliError::Usage(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if cmd.split_size.is_some() && cmd.output == Path::new("-") {
        return Err(CliError::Usage(
            "--split-size writes files FILE.000, FILE.001, …: give -o FILE, not -".into(),
        ));
    }
    let have = have_list(cmd.have.as_deref(), cmd.since.as_deref())?;
    let signer = cmd
        .sign_key
        .as_deref()
        .map(Signer::from_pem_file)
        .transpose()?;
    match &cmd.target.data {
        Some(dir) => {
            let store = local::open(dir, "export")?;
            let result = write_out(&store, cmd, &specs, &have, signer.as_ref());
            let closed = store.close();
            result?;
            closed?;
        }
        None => write_out(
            &Remote::connect(&cmd.target)?,
            cmd,
            &specs,
            &have,
            signer.as_ref(),
        )?,
    }
    Ok(())
}

/// Selects `specs` in `origin` and writes the bundle where `cmd` says.
fn write_out(
    origin: &dyn Origin,
    cmd: &ExportCommand,
    specs: &[RefSpec],
    have: &HashSet<Digest>,
    signer: Option<&Signer>,
) -> Result<(), CliError> {
    let sel = select(origin, specs)?;
    let contents = write_bundle::contents(&sel, have);
    let total: u64 = contents.shipped().values().sum();
    let mut progress = Transfer::for_stderr("export", total);
    let mut tick = |n| progress.update(n);
    let written = if cmd.output == Path::new("-") {
        let out = BufWriter::with_capacity(OUT_BUFFER, std::io::stdout().lock());
        let (_, mut out) = write_bundle::write(origin, &sel, have, signer, out, &mut tick)?;
        out.flush()?;
        Vec::new()
    } else {
        let out = Output::create(&cmd.output, cmd.split_size);
        let out = BufWriter::with_capacity(OUT_BUFFER, out);
        match write_bundle::write(origin, &sel, have, signer, out, &mut tick) {
            Ok((_, out)) => out.into_inner().map_err(|e| e.into_error())?.finish()?,
            Err(e) => {
                // The writer is gone with the error; what it wrote is found by name.
                remove_partial(&cmd.output, cmd.split_size.is_some());
                return Err(e.into());
            }
        }
    };
    progress.finish();
    eprintln!(
        "exported {}: {} manifests, {} blobs; {} written{}{}",
        plural(contents.refs.len(), "reference"),
        contents.manifests.len(),
        contents.blobs.len(),
        format_bytes(total),
        if have.is_empty() {
            String::new()
        } else {
            format!(
                ", {} left out (the receiver has them)",
                contents.assumed().len()
            )
        },
        describe_files(&written)
    );
    Ok(())
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn describe_files(files: &[PathBuf]) -> String {
    match files {
        [] => String::new(),
        [one] => format!(" to {}", one.display()),
        [first, .., last] => format!(
            " to {} parts, {} … {}",
            files.len(),
            first.display(),
            last.display()
        ),
    }
}

fn remove_partial(target: &Path, split: bool) {
    if split {
        for i in 0.. {
            let p = PathBuf::from(format!("{}.{i:03}", target.display()));
            if std::fs::remove_file(&p).is_err() {
                break;
            }
        }
    } else {
        let _ = std::fs::remove_file(format!("{}.partial", target.display()));
    }
}

/// The digests the receiver already has: an inventory file, or an earlier bundle.
fn have_list(have: Option<&Path>, since: Option<&Path>) -> Result<HashSet<Digest>, CliError> {
    if let Some(path) = have {
        let bytes = std::fs::read(path)
            .map_err(|e| CliError::Usage(format!("--have {}: {e}", path.display())))?;
        let inv: Inventory = serde_json::from_slice(&bytes).map_err(|e| {
            CliError::Usage(format!(
                "--have {}: not an inventory from berth inventory ({e})",
                path.display()
            ))
        })?;
        return Ok(inv.have());
    }
    if let Some(path) = since {
        return Ok(read_contents(path)?.have());
    }
    Ok(HashSet::new())
}

fn run_import(cmd: &ImportCommand) -> Result<(), CliError> {
    let repo = cmd.repo.as_deref().map(RepoOverride::parse).transpose()?;
    let verifier = cmd
        .verify_key
        .as_deref()
        .map(Verifier::from_pem_file)
        .transpose()?;
    let opts = ImportOptions {
        repo,
        verifier: verifier.as_ref(),
    };
    let Some(dir) = &cmd.target.data else {
        let remote = Remote::connect(&cmd.target)?;
        for path in &cmd.paths {
            // A berth bundle streams straight through; anything else is checked first.
            let report = if read_contents(path).is_ok() {
                stream::import(&remote, path, &opts)
            } else {
                push::import_via_scratch(&remote, path, &opts)
            };
            let report = report.map_err(|e| refused(path, e))?;
            print_import(path, &report);
        }
        return Ok(());
    };
    let store = local::open_or_create(dir, "import")?;
    let result = (|| {
        for path in &cmd.paths {
            let mut progress = Transfer::for_stderr("import", 0);
            let report = read_bundle(&store, path, &opts, &mut |done, total| {
                progress.total_is(total);
                progress.update(done)
            });
            progress.finish();
            let report = report.map_err(|e| refused(path, e))?;
            print_import(path, &report);
        }
        Ok::<(), CliError>(())
    })();
    let closed = store.close();
    result?;
    closed?;
    Ok(())
}

/// An import refusal names the input it is about.
pub(crate) fn refused(path: &Path, e: BundleError) -> CliError {
    CliError::Refused {
        path: path.to_owned(),
        reason: e,
    }
}

pub(crate) fn print_import(path: &Path, r: &ImportReport) {
    eprintln!(
        "{}: {}, {} manifests; {} blobs written ({}), {} already present ({})",
        path.display(),
        r.format,
        r.manifests,
        r.blobs_written,
        format_bytes(r.bytes_written),
        r.blobs_present,
        format_bytes(r.bytes_present)
    );
    for name in &r.images {
        println!("{name}");
    }
}

fn run_inventory(cmd: &InventoryCommand) -> Result<(), CliError> {
    let inv = match &cmd.target.data {
        Some(dir) => {
            let store = local::open(dir, "inventory")?;
            let inv = crate::bundle::inventory::inventory(&store);
            let closed = store.close();
            let inv = inv?;
            closed?;
            inv
        }
        None => crate::bundle::inventory::inventory(&Remote::connect(&cmd.target)?)?,
    };
    let mut json = serde_json::to_vec_pretty(&inv).map_err(|e| CliError::Usage(e.to_string()))?;
    json.push(b'\n');
    if cmd.output == Path::new("-") {
        std::io::stdout().write_all(&json)?;
    } else {
        std::fs::write(&cmd.output, json)?;
    }
    eprintln!(
        "inventory: {} blobs, {} manifests",
        inv.blobs.len(),
        inv.manifests.len()
    );
    Ok(())
}
