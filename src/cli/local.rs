//! Opens the store of a data directory for a one-off job. The directory must already hold a
//! store (`Store::open` would create one in any directory, and a mistyped path should not
//! become an empty registry), and no server may hold it: its lock makes `Store::open` fail
//! with `Locked`, which is turned into advice to go through the server instead.

use std::path::Path;

use crate::cli::CliError;
use crate::storage::{StorageError, Store, StoreOptions};

pub fn open(dir: &Path, command: &'static str) -> Result<Store, CliError> {
    if !dir.join("segments").is_dir() {
        return Err(CliError::NotAStore(dir.to_owned()));
    }
    open_store(dir, command)
}

/// Like [`open`], but a directory that does not exist yet, or is empty, becomes a new store:
/// importing into a fresh data directory is how an air-gapped registry is first filled.
pub fn open_or_create(dir: &Path, command: &'static str) -> Result<Store, CliError> {
    let empty = match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(e.into()),
    };
    if empty {
        return open_store(dir, command);
    }
    open(dir, command)
}

fn open_store(dir: &Path, command: &'static str) -> Result<Store, CliError> {
    Store::open(dir, StoreOptions::default()).map_err(|e| match e {
        StorageError::Locked => CliError::Locked {
            dir: dir.to_owned(),
            command,
        },
        other => CliError::Storage(other),
    })
}
