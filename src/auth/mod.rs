//! Harbor's access model, as a library with no HTTP in it: users, projects and their members,
//! robot accounts, immutable tag rules, quotas and the audit trail, kept in `auth.redb` in the
//! data directory; and what each request needs from them: who is asking (`login`) and whether
//! they may (`policy`).
//!
//! Layout: `model`, `roles` and `robot` (validated names, roles, actions, rows), `password` and
//! `htpasswd` (hashing and imported bcrypt files), `db`, `users`, `projects`, `robots`
//! (the database and its writes), `snapshot` (the in-memory view requests read), `policy`,
//! `login` with `ratelimit`, `audit` with `audit_event`, `ops` (the administrative operations as data, for the
//! command line and a future admin endpoint), `clock` and `error`.

pub mod audit;
pub mod audit_event;
pub mod clock;
pub mod db;
pub mod error;
pub mod htpasswd;
pub mod login;
pub mod model;
pub mod ops;
pub mod password;
pub mod policy;
pub mod projects;
pub mod ratelimit;
pub mod robot;
pub mod robots;
pub mod roles;
pub mod snapshot;
pub mod users;
