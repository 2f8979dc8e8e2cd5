//! Tokens from external issuers (certificates, public keys, JWKS; RS256, ES256, ES384), and
//! the limits on what those issuers are trusted for.

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde_json::json;

use super::tests::*;
use super::*;

const RSA_KEY: &[u8] = include_bytes!("../../../tests/fixtures/auth/rsa-key.pem");
const RSA_CERT: &[u8] = include_bytes!("../../../tests/fixtures/auth/rsa-cert.pem");
const EC_KEY: &[u8] = include_bytes!("../../../tests/fixtures/auth/ec-p256-key.pem");
const EC_CERT: &[u8] = include_bytes!("../../../tests/fixtures/auth/ec-p256-cert.pem");
const P384_KEY: &[u8] = include_bytes!("../../../tests/fixtures/auth/ec-p384-key.pem");
const JWKS: &[u8] = include_bytes!("../../../tests/fixtures/auth/jwks.json");
const RSA_LIBTRUST_KID: &str = "R5DT:QJFA:HNMW:VL4B:QUDZ:74D4:PRKK:EZZF:ROLY:XJZP:JR4W:VKAW";

fn pkcs8(pem: &[u8]) -> Vec<u8> {
    PrivatePkcs8KeyDer::from_pem_slice(pem)
        .expect("a PKCS#8 key")
        .secret_pkcs8_der()
        .to_vec()
}

fn rsa_sign(m: &[u8]) -> Vec<u8> {
    let pair = RsaKeyPair::from_pkcs8(&pkcs8(RSA_KEY)).unwrap();
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(
        &signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        m,
        &mut sig,
    )
    .unwrap();
    sig
}

fn ec_sign(alg: &'static signature::EcdsaSigningAlgorithm, pem: &[u8], m: &[u8]) -> Vec<u8> {
    let rng = SystemRandom::new();
    let pair = EcdsaKeyPair::from_pkcs8(alg, &pkcs8(pem), &rng).unwrap();
    pair.sign(&rng, m).unwrap().as_ref().to_vec()
}

#[test]
fn external_issuers_cannot_mint_refresh_tokens() {
    let verifier = Verifier::new(
        VerifyingKeys::from_pem_bundle(EC_CERT).unwrap(),
        "berth",
        "registry",
    );
    let header = json!({"alg": "ES256", "typ": REFRESH_TYP});
    let token = forge(&header, &claims(), |m| {
        ec_sign(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, EC_KEY, m)
    });
    assert_eq!(
        verifier.verify(&token, TokenKind::Refresh, now()),
        Err(TokenError::WrongKind {
            expected: TokenKind::Refresh
        })
    );
}

#[test]
fn rs256_from_a_certificate_verifies_by_libtrust_kid_thumbprint_or_alone() {
    let keys = VerifyingKeys::from_pem_bundle(RSA_CERT).unwrap();
    let verifier = Verifier::new(keys, "harbor-token-issuer", "harbor-registry");
    let claims = with(
        claims(),
        json!({"iss": "harbor-token-issuer", "aud": "harbor-registry"}),
    );
    let thumb = "wanfvrgSXdVvWrCWpBFjJUX9pdW4BgZL2AoyzfCzO_E";
    for header in [
        json!({"alg": "RS256", "typ": "JWT", "kid": RSA_LIBTRUST_KID}),
        json!({"alg": "RS256", "kid": thumb}),
        json!({"alg": "RS256"}),
    ] {
        let token = forge(&header, &claims, rsa_sign);
        let got = verifier.verify(&token, TokenKind::Access, now()).unwrap();
        assert!(got.allows("repository", "team/a", "pull"));
    }
    let forged = forge(
        &json!({"alg": "HS256", "kid": RSA_LIBTRUST_KID}),
        &claims,
        |m| hs256(RSA_CERT, m),
    );
    assert_eq!(
        verifier.verify(&forged, TokenKind::Access, now()),
        Err(TokenError::ForbiddenAlgorithm)
    );
}

#[test]
fn jwks_keys_verify_rs256_and_es384() {
    let verifier = Verifier::new(VerifyingKeys::from_jwks(JWKS).unwrap(), "berth", "registry");
    let rsa = forge(
        &json!({"alg": "RS256", "kid": "gitlab-rsa-1"}),
        &claims(),
        rsa_sign,
    );
    assert!(verifier.verify(&rsa, TokenKind::Access, now()).is_ok());
    let ec = forge(&json!({"alg": "ES384", "kid": "kc-p384"}), &claims(), |m| {
        ec_sign(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, P384_KEY, m)
    });
    assert!(verifier.verify(&ec, TokenKind::Access, now()).is_ok());
    let no_kid = forge(&json!({"alg": "RS256"}), &claims(), rsa_sign);
    assert_eq!(
        verifier.verify(&no_kid, TokenKind::Access, now()),
        Err(TokenError::AmbiguousKey)
    );
}

#[test]
fn own_and_external_keys_combine() {
    let (key, _) = own();
    let keys = VerifyingKeys::own(&key)
        .merge(VerifyingKeys::from_pem_bundle(EC_CERT).unwrap())
        .unwrap();
    let verifier = Verifier::new(keys, "berth", "registry");
    assert!(verifier
        .verify(
            &signed_by(&key, json!({}), &claims()),
            TokenKind::Access,
            now()
        )
        .is_ok());
    let ec = forge(&json!({"alg": "ES256", "kid": EC_THUMB}), &claims(), |m| {
        ec_sign(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, EC_KEY, m)
    });
    assert!(verifier.verify(&ec, TokenKind::Access, now()).is_ok());
}

const EC_THUMB: &str = "AUvjStZINTau6GDJqfbkFCWvn3t9XAy9skGXPYGv2a0";
