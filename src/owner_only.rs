//! Reading a private key file that only its owner may reach (the token key, the CA key).
//!
//! A file with looser permissions is refused rather than fixed: it may already have leaked, and
//! a silent `chmod` would hide that from the operator (the rule `ssh` applies to its keys).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Bits that must be clear in a private key file's mode.
const GROUP_OR_OTHER: u32 = 0o077;

/// Why a private key file could not be read.
#[derive(Debug)]
pub enum OwnerOnlyError {
    Io(io::Error),
    /// Group or others may reach it; its mode (permission bits).
    Loose(u32),
}

/// The file's contents, or `None` if it does not exist.
pub fn read(path: &Path) -> Result<Option<Vec<u8>>, OwnerOnlyError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(OwnerOnlyError::Io(e)),
    };
    // The mode of the open file, not of the path, so a swap between check and read changes nothing.
    let mode = file
        .metadata()
        .map_err(OwnerOnlyError::Io)?
        .permissions()
        .mode();
    if mode & GROUP_OR_OTHER != 0 {
        return Err(OwnerOnlyError::Loose(mode & 0o7777));
    }
    let mut contents = Vec::new();
    file.read_to_end(&mut contents)
        .map_err(OwnerOnlyError::Io)?;
    Ok(Some(contents))
}
