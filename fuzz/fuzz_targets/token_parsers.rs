//! Arbitrary text through what access control reads from clients: a bearer token (verified
//! against a real key), `scope` parameters and Basic credentials. Never a panic, and a random
//! string never verifies.
#![no_main]

use std::sync::OnceLock;
use std::time::SystemTime;

use berth::api::guard::basic_credentials;
use berth::auth::{parse_scopes, SigningKey, TokenKind, Verifier, VerifyingKeys};
use libfuzzer_sys::fuzz_target;

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let key = SigningKey::generate(berth::auth::Alg::EdDSA).unwrap();
        Verifier::new(VerifyingKeys::own(&key), "berth", "berth")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for kind in [TokenKind::Access, TokenKind::Refresh] {
        assert!(verifier().verify(&text, kind, SystemTime::now()).is_err());
    }
    if let Ok(scopes) = parse_scopes(text.split('&')) {
        for s in &scopes {
            assert!(!s.actions.is_empty());
            let _ = berth::auth::scope::format_scope(s);
        }
        let _ = berth::auth::challenge("https://r/token", "berth", &scopes, Some("insufficient_scope"));
    }
    let _ = basic_credentials(&text);
});
