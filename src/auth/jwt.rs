//! Signing and verifying registry tokens (compact JWS, RFC 7515/7519), with the checks that
//! matter for an access-control token spelled out in [`Verifier::verify`].

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize};

use super::b64;
use super::claims::{Claims, WireClaims};
use super::keys::SigningKey;
use super::token_error::TokenError;
use super::verifying::{KeyOrigin, VerifyingKeys};

/// Tokens longer than this are refused before any decoding. Large `access` lists fit easily.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// The `typ` header of refresh tokens. Access tokens carry `JWT` (or, from external issuers,
/// nothing or `at+jwt`), so neither kind can pass as the other (RFC 8725 §3.11).
pub const REFRESH_TYP: &str = "berth-refresh+jwt";
const ACCESS_TYP: &str = "JWT";

/// Which of berth's two token kinds a token is, or is expected to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// Presented as `Authorization: Bearer` to the registry API.
    Access,
    /// Presented only to berth's token endpoint to obtain new access tokens.
    Refresh,
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenKind::Access => "access",
            TokenKind::Refresh => "refresh",
        })
    }
}

impl TokenKind {
    fn accepts_typ(self, typ: Option<&str>) -> bool {
        match self {
            TokenKind::Access => typ
                .is_none_or(|t| t.eq_ignore_ascii_case("JWT") || t.eq_ignore_ascii_case("at+jwt")),
            TokenKind::Refresh => typ == Some(REFRESH_TYP),
        }
    }
}

#[derive(Serialize)]
struct OutHeader<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// The header members berth reads. Unknown members are ignored, except those that would
/// bring a key (`jwk`, `jku`, `x5u`) or demand extensions (`crit`); `x5c` is ignored and
/// never used. Repeated member names are refused by serde.
#[derive(Deserialize)]
struct InHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
    #[serde(default, deserialize_with = "present")]
    jwk: bool,
    #[serde(default, deserialize_with = "present")]
    jku: bool,
    #[serde(default, deserialize_with = "present")]
    x5u: bool,
}

/// True for any value, `null` included: the member's presence is what counts.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// `none` and HMAC (`HS*`), in any letter case. Refused before any key is looked at, although
/// the key's fixed algorithm would refuse them too: HMAC with a public key as the secret is the
/// classic forgery, and deserves its own unmistakable error.
fn forbidden_alg(alg: &str) -> bool {
    alg.eq_ignore_ascii_case("none") || alg.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("HS"))
}

/// Signs `claims` as a token of `kind`, naming the key by its `kid`.
pub fn sign(key: &SigningKey, claims: &Claims, kind: TokenKind) -> Result<String, TokenError> {
    let typ = match kind {
        TokenKind::Access => ACCESS_TYP,
        TokenKind::Refresh => REFRESH_TYP,
    };
    let header = OutHeader {
        alg: key.alg().as_str(),
        typ,
        kid: key.kid(),
    };
    let header = serde_json::to_vec(&header).map_err(|_| TokenError::Signing)?;
    let payload = serde_json::to_vec(claims).map_err(|_| TokenError::Signing)?;
    let mut token = format!("{}.{}", b64::encode_url(&header), b64::encode_url(&payload));
    let sig = key
        .sign(token.as_bytes())
        .map_err(|_| TokenError::Signing)?;
    token.push('.');
    token.push_str(&b64::encode_url(&sig));
    Ok(token)
}

/// Checks tokens against trusted keys, one issuer and one audience (the registry's service name).
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: VerifyingKeys,
    issuer: String,
    audience: String,
    leeway: Duration,
}

impl Verifier {
    /// Clock skew tolerated on `exp`, `nbf` and `iat` unless [`Verifier::with_leeway`] says otherwise.
    pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

    pub fn new(
        keys: VerifyingKeys,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Verifier {
        Verifier {
            keys,
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: Verifier::DEFAULT_LEEWAY,
        }
    }

    pub fn with_leeway(mut self, leeway: Duration) -> Verifier {
        self.leeway = leeway;
        self
    }

    /// Returns the claims of a valid token of `kind`, in this order of checks:
    /// shape and canonical base64url; no `crit`, no embedded or linked key; `alg` neither
    /// `none` nor HMAC; the key chosen by `kid` alone (or the only key), and `alg` equal to that
    /// key's one algorithm; `typ` fits `kind` (refresh tokens only under berth's own key); the
    /// signature; then `iss`, `aud`, `exp` (required), `nbf` and `iat`, times with leeway.
    pub fn verify(
        &self,
        token: &str,
        kind: TokenKind,
        now: SystemTime,
    ) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("structure"));
        };
        let header = b64::decode_url(header_b64).map_err(|_| TokenError::Malformed("header"))?;
        let header: InHeader =
            serde_json::from_slice(&header).map_err(|_| TokenError::Malformed("header"))?;
        if header.crit {
            return Err(TokenError::CriticalHeader);
        }
        if header.jwk || header.jku || header.x5u {
            return Err(TokenError::EmbeddedKey);
        }
        if forbidden_alg(&header.alg) {
            return Err(TokenError::ForbiddenAlgorithm);
        }
        let key = self.keys.select(header.kid.as_deref())?;
        if header.alg != key.key().alg().as_str() {
            return Err(TokenError::AlgorithmMismatch);
        }
        if !kind.accepts_typ(header.typ.as_deref())
            || (kind == TokenKind::Refresh && key.origin() != KeyOrigin::Own)
        {
            return Err(TokenError::WrongKind { expected: kind });
        }
        let sig = b64::decode_url(sig_b64)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or(TokenError::Malformed("signature"))?;
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        if !key.key().verify(signing_input.as_bytes(), &sig) {
            return Err(TokenError::BadSignature);
        }
        let payload = b64::decode_url(payload_b64).map_err(|_| TokenError::Malformed("claims"))?;
        let claims: WireClaims =
            serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed("claims"))?;
        self.check_claims(claims, now)
    }

    fn check_claims(&self, claims: WireClaims, now: SystemTime) -> Result<Claims, TokenError> {
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if !claims.aud.contains(&self.audience) {
            return Err(TokenError::WrongAudience);
        }
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let leeway = self.leeway.as_secs();
        let exp = claims.exp.ok_or(TokenError::MissingExpiry)?;
        if now >= exp.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(leeway))
        {
            return Err(TokenError::NotYetValid);
        }
        if claims
            .iat
            .is_some_and(|iat| iat > now.saturating_add(leeway))
        {
            return Err(TokenError::IssuedInFuture);
        }
        Ok(claims.into_claims(exp))
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_external;
