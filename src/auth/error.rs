//! The one error type of the access model's storage and administration.

use std::path::PathBuf;

/// What a read or write of `auth.redb`, or an administrative change, can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error(
        "{} is in use by a running registry (auth.redb is locked); stop it first",
        .0.display()
    )]
    Locked(PathBuf),
    #[error("auth.redb has format version {found}, newer than this build's {supported}")]
    Newer { found: u64, supported: u64 },
    /// Boxed: redb's error is large and would make every `Result` of this layer large.
    #[error("auth database: {0}")]
    Db(Box<redb::Error>),
    #[error("auth database: a row of table {table} does not decode: {reason}")]
    Corrupt { table: &'static str, reason: String },
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("{kind} {name} does not exist")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} {name} already exists")]
    Exists { kind: &'static str, name: String },
    #[error("password hashing: {0}")]
    Hash(String),
    /// The operating system's random source failed: no salt, secret or id is made without it.
    #[error("the operating system's random source failed: {0}")]
    Random(String),
    #[error("{0}")]
    Refused(String),
    #[error("I/O on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for AuthError {
            fn from(e: $t) -> AuthError {
                AuthError::Db(Box::new(e.into()))
            }
        }
    )*};
}

from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl AuthError {
    pub(crate) fn invalid(what: &'static str, value: &str, reason: &'static str) -> AuthError {
        AuthError::Invalid {
            what,
            value: value.to_owned(),
            reason,
        }
    }

    pub(crate) fn not_found(kind: &'static str, name: impl ToString) -> AuthError {
        AuthError::NotFound {
            kind,
            name: name.to_string(),
        }
    }
}
