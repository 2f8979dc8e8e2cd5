//! Grammar of repository names, tags and manifest references (OCI distribution spec v1.1).
//!
//! Everything here is pure string checking: a value that passes can be handed to the store
//! as `&str` without further escaping.

use crate::oci::digest::{Digest, DigestError};

/// Longest repository name accepted. The spec asks clients to keep `host/name` under 255
/// characters; distribution enforces 255 on the name alone, which we match.
pub const MAX_NAME_LEN: usize = 255;

/// Longest tag the spec's grammar `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}` allows.
pub const MAX_TAG_LEN: usize = 128;

/// Why a name, tag or reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("invalid repository name")]
    InvalidName,
    #[error("invalid tag")]
    InvalidTag,
    #[error("invalid digest")]
    InvalidDigest,
    #[error("unsupported digest algorithm {0}")]
    UnsupportedDigest(String),
}

/// True when `name` matches
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.split('/').all(is_valid_component)
}

/// One path component: alphanumeric runs joined by `.`, `_`, `__` or any number of `-`.
fn is_valid_component(component: &str) -> bool {
    /// `s` without its leading bytes that satisfy `keep`.
    fn skip(s: &[u8], keep: impl Fn(u8) -> bool) -> &[u8] {
        s.split_at(s.iter().take_while(|&&b| keep(b)).count()).1
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut rest = component.as_bytes();
    loop {
        // An alphanumeric run is required here (start, or after a separator).
        let after = skip(rest, alnum);
        if after.len() == rest.len() {
            return false;
        }
        // A separator: ".", "_", "__" or "-+".
        rest = match after {
            [] => return true,
            [b'.', tail @ ..] | [b'_', b'_', tail @ ..] | [b'_', tail @ ..] => tail,
            [b'-', ..] => skip(after, |b| b == b'-'),
            _ => return false,
        };
    }
}

/// True when `tag` matches `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let Some((&first, rest)) = bytes.split_first() else {
        return false;
    };
    bytes.len() <= MAX_TAG_LEN
        && (first.is_ascii_alphanumeric() || first == b'_')
        && rest
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A validated `<reference>` of `/v2/<name>/manifests/<reference>`: a digest when it contains
/// a colon (tags never do), a tag otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestRef {
    Tag(String),
    Digest(Digest),
}

impl ManifestRef {
    pub fn parse(s: &str) -> Result<ManifestRef, NameError> {
        if s.contains(':') {
            parse_digest(s).map(ManifestRef::Digest)
        } else if is_valid_tag(s) {
            Ok(ManifestRef::Tag(s.to_owned()))
        } else {
            Err(NameError::InvalidTag)
        }
    }
}

/// Parses a digest, keeping apart a malformed value from a well-formed one of an algorithm we
/// do not implement (the spec answers the two differently).
pub fn parse_digest(s: &str) -> Result<Digest, NameError> {
    Digest::parse(s).map_err(|e| match e {
        DigestError::UnsupportedAlgorithm(alg) => NameError::UnsupportedDigest(alg),
        _ => NameError::InvalidDigest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec_grammar() {
        for ok in [
            "a",
            "library/ubuntu",
            "a/b/c/d",
            "foo.bar",
            "foo_bar",
            "foo__bar",
            "foo---bar",
            "0abc/x-y.z",
        ] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "A",
            "foo/",
            "/foo",
            "foo//bar",
            "foo___bar",
            "-foo",
            "foo-",
            "foo..bar",
            "foo._bar",
            "fo o",
            "foo/Bar",
            "foo:bar",
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
        assert!(is_valid_name(&"a".repeat(MAX_NAME_LEN)));
        assert!(!is_valid_name(&"a".repeat(MAX_NAME_LEN + 1)));
    }

    #[test]
    fn tags_follow_the_spec_grammar() {
        for ok in ["latest", "_x", "1.0.0-rc.1", "V_1", "1.2.3_build.4"] {
            assert!(is_valid_tag(ok), "{ok}");
        }
        for bad in ["", ".x", "-x", "a+b", "a/b", "a:b", "ä"] {
            assert!(!is_valid_tag(bad), "{bad}");
        }
        assert!(is_valid_tag(&"t".repeat(MAX_TAG_LEN)));
        assert!(!is_valid_tag(&"t".repeat(MAX_TAG_LEN + 1)));
    }

    #[test]
    fn references_split_on_the_colon() {
        let hex = "a".repeat(64);
        assert!(matches!(
            ManifestRef::parse(&format!("sha256:{hex}")),
            Ok(ManifestRef::Digest(_))
        ));
        assert_eq!(
            ManifestRef::parse("v1"),
            Ok(ManifestRef::Tag("v1".to_owned()))
        );
        assert_eq!(
            ManifestRef::parse("sha256:xyz"),
            Err(NameError::InvalidDigest)
        );
        assert_eq!(ManifestRef::parse("-bad"), Err(NameError::InvalidTag));
    }
}
