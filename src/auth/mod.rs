//! Token-based access control: the cryptography and vocabulary of the docker registry token
//! flow, with no HTTP in it.
//!
//! # Layout
//! - [`keys`]: berth's own signing key (created once, stored 0600) and its public forms.
//! - [`verifying`]: the trusted keys, own and external (PEM certificates, public keys, JWKS).
//! - [`public`]: one public key, its fixed algorithm, and the key ids derived from it.
//! - [`jwt`]: signing, and the verifier with every check a token must pass.
//! - [`claims`]: the claim set and the `access` grants it carries.
//! - [`scope`]: the `scope` parameters of token requests and the `WWW-Authenticate` challenge.
//! - [`cache`]: verified tokens kept until they expire, so each is verified once.
//! - [`error`]: the layer's error enums.
//!
//! Internal helpers: `b64` (strict base64url), `der` (the few DER structures keys come in),
//! `keyfile` (the private key file on disk).

mod b64;
pub mod cache;
pub mod claims;
mod der;
pub mod error;
pub mod jwt;
mod keyfile;
pub mod keys;
pub mod public;
pub mod scope;
pub mod verifying;

pub use cache::TokenCache;
pub use claims::{Claims, ResourceActions};
pub use error::{KeyError, ScopeError, TokenError};
pub use jwt::{sign, TokenKind, Verifier};
pub use keys::SigningKey;
pub use public::{Alg, PublicKey};
pub use scope::{challenge, parse_scopes};
pub use verifying::{KeyOrigin, VerifyingKey, VerifyingKeys};
