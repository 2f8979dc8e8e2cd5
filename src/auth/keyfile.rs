//! The private key file on disk: read only if no one but its owner can reach it, created
//! atomically with mode 0600 and never overwritten.
//!
//! A file with looser permissions is refused rather than fixed: it may already have leaked, and a
//! silent `chmod` would hide that from the operator (the rule `ssh` applies to its keys).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::token_error::KeyError;
use crate::owner_only::OwnerOnlyError;

/// The outcome of [`create`].
#[derive(Debug, PartialEq, Eq)]
pub enum Created {
    Written,
    /// Another process created the file first; its key is the one to use.
    AlreadyExists,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads the key file, or `None` if it does not exist.
pub fn read(path: &Path) -> Result<Option<Vec<u8>>, KeyError> {
    crate::owner_only::read(path).map_err(|e| match e {
        OwnerOnlyError::Io(source) => io_error(path)(source),
        OwnerOnlyError::Loose(mode) => KeyError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        },
    })
}

/// Creates `path` holding `contents`, unless it exists.
///
/// The bytes go to a uniquely named temporary file opened with mode 0600, are synced, and are
/// then hard-linked to `path`; unlike `rename`, `link` fails if `path` exists, so two processes
/// starting at once agree on one key instead of each keeping its own. The directory is synced
/// so the new name survives a power cut. A crash before the link leaves only the temporary file.
pub fn create(path: &Path, contents: &[u8]) -> Result<Created, KeyError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = temp_path(path)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_error(&tmp))?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    drop(file);
    let linked = written.and_then(|()| fs::hard_link(&tmp, path));
    let removed = fs::remove_file(&tmp);
    let outcome = match linked {
        Ok(()) => Created::Written,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Created::AlreadyExists,
        Err(e) => return Err(io_error(path)(e)),
    };
    removed.map_err(io_error(&tmp))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))?;
    Ok(outcome)
}

fn temp_path(path: &Path) -> Result<PathBuf, KeyError> {
    let mut nonce = [0u8; 8];
    getrandom::getrandom(&mut nonce).map_err(|_| KeyError::Generate)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("key");
    Ok(path.with_file_name(format!(".{name}.tmp-{}", hex::encode(nonce))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_file_is_private_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        assert_eq!(create(&path, b"secret").unwrap(), Created::Written);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(read(&path).unwrap().unwrap(), b"secret");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn existing_file_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        create(&path, b"first").unwrap();
        assert_eq!(create(&path, b"second").unwrap(), Created::AlreadyExists);
        assert_eq!(read(&path).unwrap().unwrap(), b"first");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_file_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(&dir.path().join("absent")).unwrap().is_none());
    }

    #[test]
    fn group_or_world_access_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        create(&path, b"secret").unwrap();
        for loose in [0o640, 0o604, 0o660] {
            fs::set_permissions(&path, fs::Permissions::from_mode(loose)).unwrap();
            let err = read(&path).unwrap_err();
            assert!(
                matches!(err, KeyError::InsecurePermissions { mode, .. } if mode == loose),
                "{err}"
            );
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(
            read(&path).unwrap().is_some(),
            "read-only for the owner is fine"
        );
    }
}
