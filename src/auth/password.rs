//! Password hashing (argon2id, PHC strings), verification of argon2 and bcrypt hashes, random
//! secrets, and where the first administrator's password comes from.

use std::path::PathBuf;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::auth::error::AuthError;

/// argon2id cost. The defaults are OWASP's first recommendation (19 MiB, 2 passes, 1 lane):
/// about 20–40 ms on a small server core, paid once per credential thanks to the login cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> HashParams {
        HashParams {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: Params::DEFAULT_P_COST,
        }
    }
}

impl HashParams {
    /// The cheapest parameters argon2 accepts, for tests only.
    pub fn insecure_fast() -> HashParams {
        HashParams {
            memory_kib: Params::MIN_M_COST,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn hasher(&self) -> Result<Argon2<'static>, AuthError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| AuthError::Hash(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// The shortest password a user may be given.
pub const MIN_PASSWORD_LEN: usize = 8;

/// Hashes `password` with argon2id and a random salt into a PHC string.
pub fn hash_password(password: &str, params: &HashParams) -> Result<String, AuthError> {
    if password.len() < MIN_PASSWORD_LEN {
        return Err(AuthError::Refused(format!(
            "a password needs at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    let salt = SaltString::encode_b64(&random_bytes::<16>()?)
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    let hash = params
        .hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    Ok(hash.to_string())
}

/// Whether `password` matches `hash`: an argon2 PHC string (its own parameters apply) or a
/// bcrypt `$2a$`/`$2b$`/`$2y$` hash. Anything else never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    if is_bcrypt(hash) {
        return bcrypt::verify(password, hash).unwrap_or(false);
    }
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

pub(crate) fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p))
}

/// `N` bytes from the operating system's generator; an error, never a weaker fallback.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], AuthError> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(b)
}

/// A robot secret: 32 random bytes as 64 hex digits.
pub fn random_secret() -> Result<String, AuthError> {
    Ok(hex::encode(random_bytes::<32>()?))
}

/// A password for the first administrator: 24 characters of letters and digits (about 143
/// bits), easy to copy from a log line.
pub fn random_password() -> Result<String, AuthError> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut out = String::with_capacity(24);
    while out.len() < 24 {
        for b in random_bytes::<32>()? {
            // Rejection sampling keeps every character equally likely.
            let limit = 256 - 256 % ALPHABET.len();
            if (b as usize) < limit && out.len() < 24 {
                out.extend(
                    ALPHABET
                        .get(b as usize % ALPHABET.len())
                        .map(|&c| char::from(c)),
                );
            }
        }
    }
    Ok(out)
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha256(data))
}

/// Equality whose time does not depend on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Where the first administrator's password comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordSource {
    /// Given (from `BERTH_ADMIN_PASSWORD`, or by the caller).
    Given(String),
    /// The first line of a file (`BERTH_ADMIN_PASSWORD_FILE`, e.g. a mounted secret).
    File(PathBuf),
    /// Generated; returned once so the caller can show it.
    Random,
}

impl PasswordSource {
    /// `BERTH_ADMIN_PASSWORD`, else `BERTH_ADMIN_PASSWORD_FILE`, else a random password.
    pub fn from_env() -> PasswordSource {
        if let Some(p) = std::env::var("BERTH_ADMIN_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty())
        {
            return PasswordSource::Given(p);
        }
        match std::env::var_os("BERTH_ADMIN_PASSWORD_FILE") {
            Some(f) if !f.is_empty() => PasswordSource::File(PathBuf::from(f)),
            _ => PasswordSource::Random,
        }
    }

    /// The password, and whether it was generated (and so must be shown).
    pub fn resolve(&self) -> Result<(String, bool), AuthError> {
        match self {
            PasswordSource::Given(p) => Ok((p.clone(), false)),
            PasswordSource::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| AuthError::Io {
                    path: path.clone(),
                    source,
                })?;
                Ok((first_line(&text).to_owned(), false))
            }
            PasswordSource::Random => Ok((random_password()?, true)),
        }
    }
}

/// The first line without its line ending, as secrets files and `echo pw |` deliver it.
pub fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip() {
        let h = hash_password("correct horse", &HashParams::insecure_fast()).unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct horsf", &h));
        assert!(!verify_password("x", "not a hash"));
        assert!(hash_password("short", &HashParams::insecure_fast()).is_err());
    }

    #[test]
    fn bcrypt_hashes_verify() {
        let h = bcrypt::hash("s3cret-pw", 4).unwrap();
        assert!(is_bcrypt(&h));
        assert!(verify_password("s3cret-pw", &h));
        assert!(!verify_password("s3cret-px", &h));
    }

    #[test]
    fn random_material_looks_right() {
        let p = random_password().unwrap();
        assert_eq!(p.len(), 24);
        assert!(p.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(p, random_password().unwrap());
        assert_eq!(random_secret().unwrap().len(), 64);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn password_file_gives_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "from-the-file\nignored\n").unwrap();
        let (pw, generated) = PasswordSource::File(f).resolve().unwrap();
        assert_eq!(pw, "from-the-file");
        assert!(!generated);
        let (pw, generated) = PasswordSource::Random.resolve().unwrap();
        assert!(generated && pw.len() == 24);
    }
}
