//! `auth.redb`: the access model's own redb file in the data directory. It cannot live in the
//! store's `index.redb`, which is a cache rebuilt from the segment log; these rows exist
//! nowhere else. Values are JSON (serde_json): the rows are small, written rarely, read once
//! into the in-memory [`Snapshot`], and JSON keeps them readable with any redb tool and easy
//! to extend with optional fields. Schema and versioning: `storage-format.md`, "auth.redb".
//!
//! Every administrative write goes through [`AuthDb::write`], which commits durably, bumps
//! the generation and rebuilds the snapshot before it returns, so a request that starts after
//! a write returned sees it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use redb::{
    Database, ReadTransaction, ReadableTable, TableDefinition, TableError, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::clock::{self, Clock};
use crate::auth::error::AuthError;
use crate::auth::password::HashParams;
use crate::auth::snapshot::Snapshot;

/// The file name in the data directory.
pub const FILE_NAME: &str = "auth.redb";

/// The format this build writes, in `meta.format_version`; a newer one is refused.
pub const FORMAT_VERSION: u64 = 1;

pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
pub(crate) const PROJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("projects");
/// (project, user) → member row.
pub(crate) const MEMBERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("members");
/// `robot$<project>+<name>` → robot row.
pub(crate) const ROBOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("robots");
/// (project, tag pattern) → rule row.
pub(crate) const IMMUTABLE: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("immutable_tags");
/// (at_ms, sequence) → audit event.
pub(crate) const AUDIT: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("audit");

pub(crate) const META_FORMAT_VERSION: &str = "format_version";
pub(crate) const META_ADMIN_CREATED: &str = "admin_created_ms";

/// How to open the database.
#[derive(Clone, Debug)]
pub struct AuthDbOptions {
    pub hash: HashParams,
    pub clock: Arc<dyn Clock>,
}

impl Default for AuthDbOptions {
    fn default() -> AuthDbOptions {
        AuthDbOptions {
            hash: HashParams::default(),
            clock: clock::system(),
        }
    }
}

/// The open `auth.redb` and the snapshot of it that requests read.
pub struct AuthDb {
    db: Database,
    path: PathBuf,
    options: AuthDbOptions,
    /// Serialises write + snapshot rebuild, so snapshots appear in commit order.
    writing: Mutex<()>,
    snapshot: RwLock<Arc<Snapshot>>,
}

impl std::fmt::Debug for AuthDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthDb")
            .field("path", &self.path)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl AuthDb {
    /// Opens (or creates) `auth.redb` in `data_dir`, which must exist.
    pub fn open(data_dir: &Path) -> Result<AuthDb, AuthError> {
        AuthDb::open_with(data_dir, AuthDbOptions::default())
    }

    pub fn open_with(data_dir: &Path, options: AuthDbOptions) -> Result<AuthDb, AuthError> {
        let path = data_dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => AuthError::Locked(data_dir.to_owned()),
            other => other.into(),
        })?;
        check_version(&db)?;
        let txn = db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            if meta.get(META_FORMAT_VERSION)?.is_none() {
                meta.insert(META_FORMAT_VERSION, to_json(&FORMAT_VERSION).as_slice())?;
            }
            txn.open_table(USERS)?;
            txn.open_table(PROJECTS)?;
            txn.open_table(MEMBERS)?;
            txn.open_table(ROBOTS)?;
            txn.open_table(IMMUTABLE)?;
            txn.open_table(AUDIT)?;
        }
        txn.commit()?;
        let snapshot = Snapshot::load(&db.begin_read()?, 1)?;
        Ok(AuthDb {
            db,
            path,
            options,
            writing: Mutex::new(()),
            snapshot: RwLock::new(Arc::new(snapshot)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.options.clock
    }

    pub fn now_ms(&self) -> u64 {
        self.options.clock.now_ms()
    }

    pub(crate) fn hash_params(&self) -> &HashParams {
        &self.options.hash
    }

    /// The current view of users, projects, members, robots and rules; cheap (a lock and an
    /// `Arc` clone), meant to be taken once per request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Bumped by every administrative write; what caches of derived facts compare against.
    pub fn generation(&self) -> u64 {
        self.snapshot().generation
    }

    /// Runs `f` in a write transaction, commits it durably, then publishes a new snapshot.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, AuthError>,
    ) -> Result<T, AuthError> {
        let _serial = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let txn = self.db.begin_write()?;
        let value = f(&txn)?;
        txn.commit()?;
        let next = Snapshot::load(&self.db.begin_read()?, self.generation() + 1)?;
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        Ok(value)
    }

    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, AuthError>,
    ) -> Result<T, AuthError> {
        f(&self.db.begin_read()?)
    }

    /// The database, for writes that do not change the snapshot (audit events).
    pub(crate) fn raw(&self) -> &Database {
        &self.db
    }
}

/// Refuses a file written by a newer build before anything is changed in it.
fn check_version(db: &Database) -> Result<(), AuthError> {
    let txn = db.begin_read()?;
    let meta = match txn.open_table(META) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if let Some(v) = meta.get(META_FORMAT_VERSION)? {
        let found: u64 = from_json(v.value(), "meta")?;
        if found > FORMAT_VERSION {
            return Err(AuthError::Newer {
                found,
                supported: FORMAT_VERSION,
            });
        }
    }
    Ok(())
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("rows serialise to JSON")
}

pub(crate) fn from_json<T: DeserializeOwned>(
    bytes: &[u8],
    table: &'static str,
) -> Result<T, AuthError> {
    serde_json::from_slice(bytes).map_err(|e| AuthError::Corrupt {
        table,
        reason: e.to_string(),
    })
}

/// Every row of a `&str`-keyed JSON table, in key order.
pub(crate) fn all_rows<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &'static str,
) -> Result<Vec<T>, AuthError> {
    let mut out = Vec::new();
    for row in table.iter()? {
        let (_, v) = row?;
        out.push(from_json(v.value(), name)?);
    }
    Ok(out)
}

/// Every row of a `(project, _)`-keyed JSON table whose project is `project`.
pub(crate) fn project_rows<T: DeserializeOwned>(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    project: &str,
    name: &'static str,
) -> Result<Vec<T>, AuthError> {
    let mut out = Vec::new();
    for row in table.range((project, "")..)? {
        let (k, v) = row?;
        if k.value().0 != project {
            break;
        }
        out.push(from_json(v.value(), name)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_file_is_refused_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let db = AuthDb::open(dir.path()).unwrap();
        db.write(|txn| {
            txn.open_table(META)?.insert(
                META_FORMAT_VERSION,
                to_json(&(FORMAT_VERSION + 1)).as_slice(),
            )?;
            Ok(())
        })
        .unwrap();
        drop(db);
        let before = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        match AuthDb::open(dir.path()) {
            Err(AuthError::Newer { found, supported }) => {
                assert_eq!((found, supported), (FORMAT_VERSION + 1, FORMAT_VERSION));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read(dir.path().join(FILE_NAME)).unwrap(), before);
    }

    #[test]
    fn a_second_open_is_locked_out() {
        let dir = tempfile::tempdir().unwrap();
        let _db = AuthDb::open(dir.path()).unwrap();
        assert!(matches!(
            AuthDb::open(dir.path()),
            Err(AuthError::Locked(_))
        ));
    }
}
