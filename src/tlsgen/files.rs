//! Key and certificate files. Every file is written whole: a uniquely named temporary file
//! (created with its final mode, so a key is never readable by others even for a moment) is
//! synced, then linked or renamed into place, then the directory is synced. A crash leaves the
//! old file or the new one, never half of one.
//!
//! A CA key that group or others can reach is refused rather than fixed: it may already have
//! leaked, and a silent `chmod` would hide that (the rule `ssh` applies to its keys).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::TlsGenError;
use crate::owner_only::OwnerOnlyError;

/// Private keys: the owner only.
pub const KEY_MODE: u32 = 0o600;
/// Certificates are public.
pub const CERT_MODE: u32 = 0o644;

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> TlsGenError + '_ {
    move |source| TlsGenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` (mode 0700: it holds keys) and missing parents, syncing the parent of the
/// directory it creates.
pub fn ensure_dir(dir: &Path) -> Result<(), TlsGenError> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(dir))?;
    sync_dir(parent(dir))
}

/// The file's contents, or `None` if it does not exist.
pub fn read(path: &Path) -> Result<Option<Vec<u8>>, TlsGenError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// Reads a private key only the owner can reach, or `None` if it does not exist.
pub fn read_private(path: &Path) -> Result<Option<Vec<u8>>, TlsGenError> {
    crate::owner_only::read(path).map_err(|e| match e {
        OwnerOnlyError::Io(source) => io_error(path)(source),
        OwnerOnlyError::Loose(mode) => TlsGenError::LooseKey {
            path: path.to_path_buf(),
            mode,
        },
    })
}

/// Creates `path` holding `contents`; fails with `Exists` if it is there already. `link`,
/// unlike `rename`, never replaces: two runs at once cannot each leave a CA of their own.
pub fn create_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsGenError> {
    let tmp = write_temp(path, contents, mode)?;
    let linked = fs::hard_link(&tmp, path);
    let removed = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(TlsGenError::Exists(path.to_path_buf()))
        }
        Err(e) => return Err(io_error(path)(e)),
    }
    removed.map_err(io_error(&tmp))?;
    sync_dir(parent(path))
}

/// Writes `contents` to `path`, replacing what was there.
pub fn replace(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsGenError> {
    let tmp = write_temp(path, contents, mode)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io_error(path)(e));
    }
    sync_dir(parent(path))
}

/// A synced temporary file beside `path` with `contents`, created with `mode`.
fn write_temp(path: &Path, contents: &[u8], mode: u32) -> Result<PathBuf, TlsGenError> {
    let mut nonce = [0u8; 8];
    getrandom::getrandom(&mut nonce).map_err(|e| TlsGenError::Random(e.to_string()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", hex::encode(nonce)));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_error(&tmp))?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_error(&tmp)(e));
    }
    Ok(tmp)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn sync_dir(dir: &Path) -> Result<(), TlsGenError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_get_their_mode_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.key");
        create_new(&key, b"secret", KEY_MODE).unwrap();
        assert_eq!(mode(&key), 0o600);
        let cert = dir.path().join("c.crt");
        replace(&cert, b"one", CERT_MODE).unwrap();
        replace(&cert, b"two", CERT_MODE).unwrap();
        assert_eq!(fs::read(&cert).unwrap(), b"two");
        assert_eq!(read_private(&key).unwrap().unwrap(), b"secret");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn create_new_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.key");
        create_new(&key, b"first", KEY_MODE).unwrap();
        let err = create_new(&key, b"second", KEY_MODE).unwrap_err();
        assert!(matches!(err, TlsGenError::Exists(_)), "{err}");
        assert_eq!(fs::read(&key).unwrap(), b"first");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_key_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.key");
        create_new(&key, b"secret", KEY_MODE).unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_private(&key).unwrap_err();
        assert!(
            matches!(err, TlsGenError::LooseKey { mode: 0o640, .. }),
            "{err}"
        );
        assert!(read_private(&dir.path().join("absent")).unwrap().is_none());
    }
}
