//! Users of `auth.redb`: adding, password changes, deletion (with their memberships), and
//! the system administrator created at first start.

use redb::ReadableTable;

use crate::auth::db::{self, AuthDb, MEMBERS, META, META_ADMIN_CREATED, USERS};
use crate::auth::error::AuthError;
use crate::auth::model::{User, UserInfo, UserName};
use crate::auth::password::{hash_password, PasswordSource};

/// The name of the administrator created at first start.
pub const ADMIN_USER: &str = "admin";

impl AuthDb {
    pub fn add_user(
        &self,
        name: &UserName,
        password: &str,
        admin: bool,
    ) -> Result<UserInfo, AuthError> {
        let user = User {
            name: name.clone(),
            password_hash: hash_password(password, self.hash_params())?,
            admin,
            created_at_ms: self.now_ms(),
        };
        self.write(|txn| {
            let mut users = txn.open_table(USERS)?;
            if users.get(name.as_str())?.is_some() {
                return Err(AuthError::Exists {
                    kind: "user",
                    name: name.to_string(),
                });
            }
            users.insert(name.as_str(), db::to_json(&user).as_slice())?;
            Ok(UserInfo::from(&user))
        })
    }

    pub fn set_password(&self, name: &UserName, password: &str) -> Result<(), AuthError> {
        let hash = hash_password(password, self.hash_params())?;
        self.update_user(name, |u| u.password_hash = hash)
    }

    pub fn set_admin(&self, name: &UserName, admin: bool) -> Result<(), AuthError> {
        self.update_user(name, |u| u.admin = admin)
    }

    fn update_user(
        &self,
        name: &UserName,
        change: impl FnOnce(&mut User),
    ) -> Result<(), AuthError> {
        self.write(|txn| {
            let mut users = txn.open_table(USERS)?;
            let mut user: User = match users.get(name.as_str())? {
                Some(v) => db::from_json(v.value(), "users")?,
                None => return Err(AuthError::not_found("user", name)),
            };
            change(&mut user);
            users.insert(name.as_str(), db::to_json(&user).as_slice())?;
            Ok(())
        })
    }

    /// Deletes the user and every membership of theirs.
    pub fn delete_user(&self, name: &UserName) -> Result<(), AuthError> {
        self.write(|txn| {
            if txn.open_table(USERS)?.remove(name.as_str())?.is_none() {
                return Err(AuthError::not_found("user", name));
            }
            let mut members = txn.open_table(MEMBERS)?;
            let theirs: Vec<String> = members
                .iter()?
                .filter_map(|row| row.ok())
                .filter(|(k, _)| k.value().1 == name.as_str())
                .map(|(k, _)| k.value().0.to_owned())
                .collect();
            for project in theirs {
                members.remove((project.as_str(), name.as_str()))?;
            }
            Ok(())
        })
    }

    pub fn user(&self, name: &UserName) -> Result<Option<UserInfo>, AuthError> {
        self.read(|txn| {
            let users = txn.open_table(USERS)?;
            let found = users.get(name.as_str())?;
            found
                .map(|v| db::from_json::<User>(v.value(), "users").map(|u| UserInfo::from(&u)))
                .transpose()
        })
    }

    pub fn users(&self) -> Result<Vec<UserInfo>, AuthError> {
        self.read(|txn| {
            let rows: Vec<User> = db::all_rows(&txn.open_table(USERS)?, "users")?;
            Ok(rows.iter().map(UserInfo::from).collect())
        })
    }

    /// At first start, creates the system administrator `admin` with the password from
    /// `source`. Returns the password only when it was generated, for the caller to show once;
    /// `None` when an administrator was created before (even if since deleted: an operator's
    /// deletion is not undone behind their back) or when an admin user already exists.
    pub fn ensure_admin(&self, source: &PasswordSource) -> Result<Option<String>, AuthError> {
        let snapshot = self.snapshot();
        let created_before =
            self.read(|txn| Ok(txn.open_table(META)?.get(META_ADMIN_CREATED)?.is_some()))?;
        if created_before || snapshot.users.values().any(|u| u.admin) {
            return Ok(None);
        }
        let (password, generated) = source.resolve()?;
        let name = UserName::parse(ADMIN_USER)?;
        let user = User {
            name: name.clone(),
            password_hash: hash_password(&password, self.hash_params())?,
            admin: true,
            created_at_ms: self.now_ms(),
        };
        self.write(|txn| {
            txn.open_table(USERS)?
                .insert(name.as_str(), db::to_json(&user).as_slice())?;
            txn.open_table(META)?.insert(
                META_ADMIN_CREATED,
                db::to_json(&user.created_at_ms).as_slice(),
            )?;
            Ok(())
        })?;
        Ok(generated.then_some(password))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::db::AuthDbOptions;
    use crate::auth::password::{verify_password, HashParams};

    fn open(dir: &std::path::Path) -> AuthDb {
        let options = AuthDbOptions {
            hash: HashParams::insecure_fast(),
            ..AuthDbOptions::default()
        };
        AuthDb::open_with(dir, options).unwrap()
    }

    #[test]
    fn users_round_trip_and_passwords_change() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let alice = UserName::parse("alice").unwrap();
        let g0 = db.generation();
        db.add_user(&alice, "first-password", false).unwrap();
        assert!(db.generation() > g0);
        assert!(matches!(
            db.add_user(&alice, "again-password", false),
            Err(AuthError::Exists { .. })
        ));
        let hash = db.snapshot().users["alice"].password_hash.clone();
        assert!(verify_password("first-password", &hash));
        db.set_password(&alice, "second-password").unwrap();
        let hash = db.snapshot().users["alice"].password_hash.clone();
        assert!(verify_password("second-password", &hash));
        assert!(!verify_password("first-password", &hash));
        assert_eq!(db.users().unwrap().len(), 1);
        db.delete_user(&alice).unwrap();
        assert!(db.user(&alice).unwrap().is_none());
        assert!(matches!(
            db.delete_user(&alice),
            Err(AuthError::NotFound { .. })
        ));
    }

    #[test]
    fn admin_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let pw = db.ensure_admin(&PasswordSource::Random).unwrap().unwrap();
        assert!(verify_password(
            &pw,
            &db.snapshot().users["admin"].password_hash
        ));
        assert_eq!(db.ensure_admin(&PasswordSource::Random).unwrap(), None);
        db.delete_user(&UserName::parse("admin").unwrap()).unwrap();
        assert_eq!(db.ensure_admin(&PasswordSource::Random).unwrap(), None);
        assert!(db.snapshot().users.is_empty());

        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let given = PasswordSource::Given("from-the-env".into());
        assert_eq!(db.ensure_admin(&given).unwrap(), None);
        assert!(verify_password(
            "from-the-env",
            &db.snapshot().users["admin"].password_hash
        ));
    }
}
