//! The auth layer's error enums: one for key material, one for tokens, one for scopes.
//!
//! No message carries a token, a signature, key bytes or any other secret, and none repeats
//! attacker-chosen header values: a message names only what was wrong.

use std::path::PathBuf;

use super::der::BadDer;
use super::jwt::TokenKind;
use super::public::Alg;

/// Loading, creating or parsing keys failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("token key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The private key file is readable or writable by group or others (mode shown in octal).
    #[error("token key file {path} has mode {mode:o}; it must be accessible to its owner only (chmod 600)")]
    InsecurePermissions { path: PathBuf, mode: u32 },
    #[error("token key file {path} holds no PKCS#8 private key")]
    NotAPrivateKey { path: PathBuf },
    /// The key file holds a key of another type than the configured algorithm signs with.
    #[error("token key file {path} holds a {found} key but {configured} is configured")]
    AlgorithmMismatch {
        path: PathBuf,
        configured: Alg,
        found: &'static str,
    },
    #[error("{0} cannot sign tokens; berth signs with EdDSA or ES256")]
    CannotSign(Alg),
    #[error("unsupported key: {0}")]
    UnsupportedKey(&'static str),
    #[error("malformed key encoding: {0}")]
    BadDer(&'static str),
    #[error("malformed PEM: {0}")]
    BadPem(String),
    #[error("malformed JWKS: {0}")]
    BadJwks(String),
    #[error("malformed JWK member {0}")]
    BadJwk(&'static str),
    #[error("no usable verification key found")]
    NoKeys,
    /// Two configured keys answer to the same `kid`, so a token could not name one of them.
    #[error("two verification keys share a key id")]
    DuplicateKid,
    #[error("key generation failed")]
    Generate,
    #[error("signing failed")]
    Sign,
}

impl From<BadDer> for KeyError {
    fn from(e: BadDer) -> KeyError {
        KeyError::BadDer(e.0)
    }
}

/// A token was refused, or could not be made.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token too large")]
    TooLarge,
    /// Not three canonical base64url parts holding JSON of the expected shape.
    #[error("malformed token {0}")]
    Malformed(&'static str),
    /// `none` and the HMAC family: berth holds no shared secrets, so these are never valid.
    #[error("token algorithm not allowed")]
    ForbiddenAlgorithm,
    /// The `alg` header differs from the one algorithm of the selected key.
    #[error("token algorithm does not match its key")]
    AlgorithmMismatch,
    #[error("token signed by an unknown key")]
    UnknownKey,
    #[error("token names no key and several are configured")]
    AmbiguousKey,
    /// `jwk`, `jku` or `x5u`: a token may not bring or point at its own key.
    #[error("token carries its own key")]
    EmbeddedKey,
    #[error("token has critical header extensions")]
    CriticalHeader,
    #[error("not a valid {expected} token")]
    WrongKind { expected: TokenKind },
    #[error("token signature invalid")]
    BadSignature,
    #[error("token issuer not trusted")]
    WrongIssuer,
    #[error("token not meant for this service")]
    WrongAudience,
    #[error("token has no expiry")]
    MissingExpiry,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("token issued in the future")]
    IssuedInFuture,
    #[error("token signing failed")]
    Signing,
}

/// A `scope` parameter of a token request could not be read.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// The 1-based position among all requested scopes, and what is wrong with it.
    #[error("scope {index} is malformed: {reason}")]
    Malformed { index: usize, reason: &'static str },
    #[error("too many scopes requested")]
    TooMany,
}
