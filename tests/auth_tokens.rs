//! A registry's first start creates its token key (mode 0600); a restart reopens the same key
//! with the same `kid`; a token it signs verifies once and is then answered from the cache.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth::auth::keys::KEY_FILE;
use berth::auth::*;

#[test]
fn key_survives_restart_and_verified_tokens_are_cached() {
    let dir = tempfile::tempdir().unwrap();
    let first = SigningKey::load_or_create(dir.path(), Alg::EdDSA).unwrap();
    let mode = std::fs::metadata(dir.path().join(KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "private key readable by its owner only"
    );
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "no temporary file left behind");
    let kid = first.kid().to_string();
    drop(first);

    let key = SigningKey::load_or_create(dir.path(), Alg::EdDSA).unwrap();
    assert_eq!(key.kid(), kid, "restart keeps the key and its kid");
    assert_eq!(key.jwks()["keys"][0]["kid"], kid.as_str());

    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let access = parse_scopes(["repository:team/app:pull,push"]).unwrap();
    let claims = Claims {
        iss: "berth".into(),
        sub: "alice".into(),
        aud: vec!["registry.local".into()],
        exp: secs + 300,
        nbf: Some(secs),
        iat: Some(secs),
        jti: Some("t1".into()),
        access,
    };
    let token = sign(&key, &claims, TokenKind::Access).unwrap();
    let header = token.split('.').next().unwrap();
    assert!(
        String::from_utf8_lossy(&b64url(header)).contains(&kid),
        "kid in the header"
    );

    let verifier = Verifier::new(VerifyingKeys::own(&key), "berth", "registry.local");
    let cache = TokenCache::default();
    let verified = cache.verify(&verifier, &token, now).unwrap();
    assert!(verified.allows("repository", "team/app", "push"));
    assert!(!verified.allows("repository", "team/other", "pull"));

    let hit = cache
        .get(&token, now + Duration::from_secs(1))
        .expect("cached");
    assert!(
        Arc::ptr_eq(&hit, &verified),
        "second use is a cache hit, not a new verification"
    );
    assert_eq!(cache.len(), 1);
    assert!(
        cache.get(&token, now + Duration::from_secs(301)).is_none(),
        "expired tokens are not served"
    );
}

/// Enough base64url decoding for a test to look inside a token header.
fn b64url(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let values: Vec<u32> = text
        .bytes()
        .map(|c| ALPHABET.iter().position(|&a| a == c).unwrap() as u32)
        .collect();
    let mut out = Vec::new();
    for chunk in values.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0, |acc, (i, v)| acc | v << (18 - 6 * i));
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8][..chunk.len() - 1]);
    }
    out
}
