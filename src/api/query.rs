//! Query-string decoding (`application/x-www-form-urlencoded`). Unknown parameters are kept
//! but never looked at, so containerd's mirror `?ns=docker.io` passes through.

/// Decoded query parameters in request order; a key may repeat (`?tag=a&tag=b`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        let pairs = query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect();
        Query { pairs }
    }

    /// First value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every key, in order (repeated keys repeat).
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.pairs.iter().map(|(k, _)| k.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Percent-decodes a query key or value, `+` meaning space.
fn decode(s: &str) -> String {
    percent_decode(s, true)
}

/// Percent-decodes a request path (some clients escape the `:` of a digest); `+` stays `+`.
///
/// An escaped `/` (`%2F`) stays escaped: it is data, not a separator, and decoding it would
/// turn `a%2Fb` into the repository `a/b` after the router has split the path. Left as is,
/// its `%` fails the name, tag and digest grammars, so the request is refused instead.
pub fn decode_path(s: &str) -> String {
    if s.contains('%') {
        percent_decode(s, false)
    } else {
        s.to_owned()
    }
}

/// Malformed escapes are kept literally; invalid UTF-8 is replaced, which then fails whatever
/// grammar the value must match. In a path (`plus_is_space` false) `%2F` is kept literally.
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let [b, tail @ ..] = rest {
        rest = tail;
        match (b, tail) {
            (b'%', [h, l, after @ ..]) => match (hex_val(*h), hex_val(*l)) {
                (Some(h), Some(l)) if plus_is_space || h << 4 | l != b'/' => {
                    out.push(h << 4 | l);
                    rest = after;
                }
                _ => out.push(b'%'),
            },
            (b'+', _) if plus_is_space => out.push(b' '),
            (&b, _) => out.push(b),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes a query value (for `Link` headers); names and tags only need `:` and `+`
/// left alone, but everything outside the unreserved set is escaped to stay safe.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_repeats() {
        let q = Query::parse(Some(
            "digest=sha256%3Aab&tag=a&tag=b&ns=docker.io&flag&x=%zz%",
        ));
        assert_eq!(q.get("digest"), Some("sha256:ab"));
        assert_eq!(q.all("tag").collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(q.get("x"), Some("%zz%"));
        assert_eq!(q.get("missing"), None);
        assert_eq!(Query::parse(None), Query::default());
    }

    #[test]
    fn paths_decode_without_plus() {
        assert_eq!(
            decode_path("/v2/a/blobs/sha256%3Aab"),
            "/v2/a/blobs/sha256:ab"
        );
        assert_eq!(decode_path("/v2/a+b/%"), "/v2/a+b/%");
    }

    #[test]
    fn paths_keep_escaped_slashes() {
        assert_eq!(decode_path("/v2/a%2Fb/tags/list"), "/v2/a%2Fb/tags/list");
        assert_eq!(decode_path("/v2/a%2fb%3A"), "/v2/a%2fb:");
        // One pass only: an escaped escape is not decoded twice.
        assert_eq!(decode_path("/v2/a%252Fb"), "/v2/a%2Fb");
        assert_eq!(decode("a%2Fb"), "a/b");
    }

    #[test]
    fn encode_round_trips() {
        let s = "a/b:c d+e";
        assert_eq!(decode(&encode(s)), s);
    }
}
