//! The bundle commands against a running registry, through the distribution API.

use std::collections::HashSet;

use crate::bundle::sign::Signer;
use crate::bundle::{ImportOptions, Inventory, RefSpec};
use crate::config::commands::BundleTarget;
use crate::config::{ExportCommand, ImportCommand};
use crate::oci::digest::Digest;

use super::CliError;

pub fn export(
    _cmd: &ExportCommand,
    _specs: &[RefSpec],
    _have: &HashSet<Digest>,
    _signer: Option<&Signer>,
) -> Result<(), CliError> {
    Err(CliError::Usage("export --url is not available yet".into()))
}

pub fn import(_cmd: &ImportCommand, _opts: &ImportOptions<'_>) -> Result<(), CliError> {
    Err(CliError::Usage("import --url is not available yet".into()))
}

pub fn inventory(_t: &BundleTarget) -> Result<Inventory, CliError> {
    Err(CliError::Usage(
        "inventory --url is not available yet".into(),
    ))
}
