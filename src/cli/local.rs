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
    Store::open(dir, StoreOptions::default()).map_err(|e| match e {
        StorageError::Locked => CliError::Locked {
            dir: dir.to_owned(),
            command,
        },
        other => CliError::Storage(other),
    })
}
