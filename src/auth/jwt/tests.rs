//! One test per verification rule, each minting the offending token by hand with ring.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::*;
use crate::auth::claims::ResourceActions;
use crate::auth::public::Alg;

pub(super) const T: u64 = 1_700_000_000;

pub(super) fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T)
}

pub(super) fn claims() -> Value {
    json!({
        "iss": "berth", "sub": "alice", "aud": "registry", "exp": T + 300, "nbf": T, "iat": T,
        "jti": "j1", "access": [{"type": "repository", "name": "team/a", "actions": ["pull", "push"]}]
    })
}

pub(super) fn with(mut base: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

/// Builds a token from raw header and claims JSON, signed by `sign` over the signing input.
pub(super) fn forge(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        b64::encode_url(header.to_string().as_bytes()),
        b64::encode_url(claims.to_string().as_bytes())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64::encode_url(&sig))
}

pub(super) fn own() -> (SigningKey, Verifier) {
    let key = SigningKey::generate(Alg::EdDSA).unwrap();
    let verifier = Verifier::new(VerifyingKeys::own(&key), "berth", "registry");
    (key, verifier)
}

pub(super) fn signed_by(key: &SigningKey, header: Value, claims: &Value) -> String {
    let header = with(
        json!({"alg": key.alg().as_str(), "typ": "JWT", "kid": key.kid()}),
        header,
    );
    forge(&header, claims, |m| key.sign(m).unwrap())
}

pub(super) fn hs256(secret: &[u8], m: &[u8]) -> Vec<u8> {
    ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret), m)
        .as_ref()
        .to_vec()
}

fn typed_claims() -> Claims {
    Claims {
        iss: "berth".into(),
        sub: "alice".into(),
        aud: vec!["registry".into()],
        exp: T + 300,
        nbf: Some(T),
        iat: Some(T),
        jti: Some("j1".into()),
        access: vec![ResourceActions {
            kind: "repository".into(),
            class: None,
            name: "team/a".into(),
            actions: vec!["pull".into(), "push".into()],
        }],
    }
}

#[test]
fn signed_tokens_verify_with_both_algorithms() {
    for alg in [Alg::EdDSA, Alg::ES256] {
        let key = SigningKey::generate(alg).unwrap();
        let verifier = Verifier::new(VerifyingKeys::own(&key), "berth", "registry");
        let token = sign(&key, &typed_claims(), TokenKind::Access).unwrap();
        let claims = verifier.verify(&token, TokenKind::Access, now()).unwrap();
        assert_eq!(claims, typed_claims());
        assert!(claims.allows("repository", "team/a", "push"));
        assert!(
            !claims.allows("repository", "team/b", "pull"),
            "repository A grants nothing on B"
        );
    }
}

#[test]
fn alg_none_is_refused() {
    let (key, verifier) = own();
    for alg in ["none", "None", "NONE"] {
        let token = forge(&json!({"alg": alg, "kid": key.kid()}), &claims(), |_| {
            Vec::new()
        });
        assert_eq!(
            verifier.verify(&token, TokenKind::Access, now()),
            Err(TokenError::ForbiddenAlgorithm)
        );
    }
}

#[test]
fn hmac_signed_with_the_public_key_as_secret_is_refused() {
    let (key, verifier) = own();
    let secrets = [
        key.public_pem().into_bytes(),
        key.public_key().spki_der(),
        key.public_key().jwk().to_string().into_bytes(),
    ];
    for secret in secrets {
        for alg in ["HS256", "hs256", "HS512"] {
            let token = forge(&json!({"alg": alg, "kid": key.kid()}), &claims(), |m| {
                hs256(&secret, m)
            });
            assert_eq!(
                verifier.verify(&token, TokenKind::Access, now()),
                Err(TokenError::ForbiddenAlgorithm)
            );
        }
    }
}

#[test]
fn alg_other_than_the_keys_own_is_refused() {
    let (key, verifier) = own();
    for alg in ["ES256", "RS256", "PS256", "eddsa"] {
        let token = signed_by(&key, json!({"alg": alg}), &claims());
        assert_eq!(
            verifier.verify(&token, TokenKind::Access, now()),
            Err(TokenError::AlgorithmMismatch),
            "{alg}"
        );
    }
}

#[test]
fn token_bringing_its_own_key_is_refused() {
    let (_, verifier) = own();
    let attacker = SigningKey::generate(Alg::EdDSA).unwrap();
    let embedded = [
        json!({"jwk": attacker.public_jwk()}),
        json!({"jwk": attacker.public_jwk(), "kid": null}),
        json!({"jku": "https://evil.example/jwks.json"}),
        json!({"x5u": "https://evil.example/cert.pem"}),
    ];
    for header in embedded {
        let token = signed_by(&attacker, header, &claims());
        assert_eq!(
            verifier.verify(&token, TokenKind::Access, now()),
            Err(TokenError::EmbeddedKey)
        );
    }
    // Without the embedded key, the attacker's kid selects nothing.
    let token = signed_by(&attacker, json!({}), &claims());
    assert_eq!(
        verifier.verify(&token, TokenKind::Access, now()),
        Err(TokenError::UnknownKey)
    );
}

#[test]
fn another_key_claiming_the_trusted_kid_fails_the_signature() {
    let (key, verifier) = own();
    let attacker = SigningKey::generate(Alg::EdDSA).unwrap();
    let token = signed_by(&attacker, json!({"kid": key.kid()}), &claims());
    assert_eq!(
        verifier.verify(&token, TokenKind::Access, now()),
        Err(TokenError::BadSignature)
    );
    let token = signed_by(&attacker, json!({"kid": null}), &claims());
    assert_eq!(
        verifier.verify(&token, TokenKind::Access, now()),
        Err(TokenError::BadSignature),
        "lone key, no kid"
    );
}

#[test]
fn crit_header_is_refused() {
    let (key, verifier) = own();
    for crit in [json!(["exp"]), json!([])] {
        let token = signed_by(&key, json!({"crit": crit}), &claims());
        assert_eq!(
            verifier.verify(&token, TokenKind::Access, now()),
            Err(TokenError::CriticalHeader)
        );
    }
}

#[test]
fn issuer_and_audience_must_match() {
    let (key, verifier) = own();
    let check = |c: Value| {
        verifier.verify(
            &signed_by(&key, json!({}), &with(claims(), c)),
            TokenKind::Access,
            now(),
        )
    };
    assert_eq!(check(json!({"iss": "evil"})), Err(TokenError::WrongIssuer));
    assert_eq!(check(json!({"iss": null})), Err(TokenError::WrongIssuer));
    assert_eq!(
        check(json!({"aud": "other-registry"})),
        Err(TokenError::WrongAudience),
        "token for another service"
    );
    assert_eq!(check(json!({"aud": null})), Err(TokenError::WrongAudience));
    assert_eq!(
        check(json!({"aud": ["other", "registry"]})).unwrap().aud,
        ["other", "registry"]
    );
}

#[test]
fn expiry_is_required_and_checked_with_leeway() {
    let (key, verifier) = own();
    let token = |c: Value| signed_by(&key, json!({}), &with(claims(), c));
    let check = |v: &Verifier, c: Value| v.verify(&token(c), TokenKind::Access, now());
    assert_eq!(
        check(&verifier, json!({"exp": null})),
        Err(TokenError::MissingExpiry)
    );
    assert_eq!(
        check(&verifier, json!({"exp": T - 61})),
        Err(TokenError::Expired)
    );
    assert!(
        check(&verifier, json!({"exp": T - 30})).is_ok(),
        "within the default leeway"
    );
    let strict = verifier.clone().with_leeway(Duration::ZERO);
    assert_eq!(
        check(&strict, json!({"exp": T - 30})),
        Err(TokenError::Expired)
    );
    assert_eq!(
        check(&strict, json!({"exp": T})),
        Err(TokenError::Expired),
        "exp is exclusive"
    );
}

#[test]
fn not_before_and_issued_at_in_the_future_are_refused() {
    let (key, verifier) = own();
    let check = |c: Value| {
        verifier.verify(
            &signed_by(&key, json!({}), &with(claims(), c)),
            TokenKind::Access,
            now(),
        )
    };
    assert_eq!(check(json!({"nbf": T + 61})), Err(TokenError::NotYetValid));
    assert!(check(json!({"nbf": T + 59})).is_ok(), "within leeway");
    assert_eq!(
        check(json!({"iat": T + 61})),
        Err(TokenError::IssuedInFuture)
    );
    assert!(
        check(json!({"nbf": null, "iat": null})).is_ok(),
        "both optional"
    );
}

#[test]
fn tampered_signature_or_claims_are_refused() {
    let (key, verifier) = own();
    let token = signed_by(&key, json!({}), &claims());
    let (input, sig) = token.rsplit_once('.').unwrap();
    let mut bad_sig = b64::decode_url(sig).unwrap();
    bad_sig[0] ^= 1;
    let flipped = format!("{input}.{}", b64::encode_url(&bad_sig));
    assert_eq!(
        verifier.verify(&flipped, TokenKind::Access, now()),
        Err(TokenError::BadSignature)
    );
    let header = token.split('.').next().unwrap();
    let more = with(
        claims(),
        json!({"access": [{"type": "repository", "name": "team/b", "actions": ["*"]}]}),
    );
    let swapped = format!(
        "{header}.{}.{sig}",
        b64::encode_url(more.to_string().as_bytes())
    );
    assert_eq!(
        verifier.verify(&swapped, TokenKind::Access, now()),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn malformed_and_non_canonical_tokens_are_refused() {
    let (key, verifier) = own();
    let token = signed_by(&key, json!({}), &claims());
    let (input, sig) = token.rsplit_once('.').unwrap();
    // An Ed25519 signature is 86 characters; the last carries 4 unused bits a lax decoder
    // ignores. Flipping the lowest one spells the same bytes differently.
    const URL: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = URL.find(&sig[85..]).unwrap();
    let respelled = &URL[(last ^ 1)..=(last ^ 1)];
    let cases = [
        String::new(),
        input.to_string(),
        format!("{input}."),
        format!("{token}.x"),
        format!("{input}.{sig}=="),
        format!("{input}.{}{respelled}", &sig[..85]),
        format!(
            "{}.{}",
            b64::encode_url(br#"{"alg":"EdDSA","alg":"none"}"#),
            &token[token.find('.').unwrap() + 1..]
        ),
        format!("{input}.{}+", &sig[..85]),
    ];
    for bad in cases {
        let err = verifier.verify(&bad, TokenKind::Access, now()).unwrap_err();
        assert!(matches!(err, TokenError::Malformed(_)), "{bad}: {err}");
        assert!(!err.to_string().contains(sig), "no token text in messages");
    }
    let huge = "a".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(
        verifier.verify(&huge, TokenKind::Access, now()),
        Err(TokenError::TooLarge)
    );
}

#[test]
fn refresh_and_access_tokens_never_stand_in_for_each_other() {
    let (key, verifier) = own();
    let refresh = sign(&key, &typed_claims(), TokenKind::Refresh).unwrap();
    let access = sign(&key, &typed_claims(), TokenKind::Access).unwrap();
    let wrong = |expected| Err(TokenError::WrongKind { expected });
    assert_eq!(
        verifier.verify(&refresh, TokenKind::Access, now()),
        wrong(TokenKind::Access)
    );
    assert_eq!(
        verifier.verify(&access, TokenKind::Refresh, now()),
        wrong(TokenKind::Refresh)
    );
    assert!(verifier.verify(&refresh, TokenKind::Refresh, now()).is_ok());
    let untyped = signed_by(&key, json!({"typ": null}), &claims());
    assert_eq!(
        verifier.verify(&untyped, TokenKind::Refresh, now()),
        wrong(TokenKind::Refresh)
    );
}
