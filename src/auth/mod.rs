//! Access control with no HTTP in it: Harbor's model (users, projects and their members, robot
//! accounts, immutable tag rules, quotas, the audit trail) kept in `auth.redb` in the data
//! directory; who is asking (a login, or a token of the docker token flow) and whether they may.
//!
//! # Layout
//! - [`access`]: the service the registry holds: credentials to callers, verdicts, tokens.
//! - The model: [`model`], [`roles`] and [`robot`] (validated names, roles, actions, rows),
//!   [`password`] and [`htpasswd`] (hashing, imported bcrypt files), [`db`], [`users`],
//!   [`projects`], [`robots`] (the database and its writes), [`snapshot`] (the in-memory view
//!   requests read), [`policy`], [`login`] with [`ratelimit`], [`audit`] with [`audit_event`],
//!   [`ops`] (the administrative operations as data, for the command line and `/api/v1/`),
//!   [`clock`] and [`error`].
//! - Tokens: [`keys`] (berth's own signing key, created once, stored 0600), [`verifying`]
//!   (trusted keys, own and external: PEM certificates, public keys, JWKS), [`public`] (one
//!   public key, its fixed algorithm, its key ids), [`jwt`] (signing, and every check a token
//!   must pass), [`claims`], [`scope`] (`scope` parameters and the `WWW-Authenticate`
//!   challenge), [`cache`] (verified tokens kept until they expire), [`token_error`].
//! - Helpers: [`b64`] (strict base64), `der` (the few DER structures keys come in), `keyfile`
//!   (the private key file on disk).

pub mod access;
pub mod audit;
pub mod audit_event;
pub mod audit_queue;
pub mod b64;
pub mod cache;
pub mod claims;
pub mod clock;
pub mod db;
mod der;
pub mod error;
pub mod htpasswd;
pub mod jwt;
mod keyfile;
pub mod keys;
pub mod login;
pub mod model;
pub mod ops;
pub mod password;
pub mod policy;
pub mod projects;
pub mod public;
pub mod ratelimit;
pub mod robot;
pub mod robots;
pub mod roles;
pub mod scope;
pub mod snapshot;
pub mod token_error;
pub mod users;
pub mod verifying;

pub use cache::TokenCache;
pub use claims::{Claims, ResourceActions};
pub use jwt::{sign, TokenKind, Verifier};
pub use keys::SigningKey;
pub use public::{Alg, PublicKey};
pub use scope::{challenge, parse_scopes};
pub use token_error::{KeyError, ScopeError, TokenError};
pub use verifying::{KeyOrigin, VerifyingKey, VerifyingKeys};
