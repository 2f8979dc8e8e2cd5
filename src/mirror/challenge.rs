//! `WWW-Authenticate` values (RFC 7235) as upstream registries send them: one or more
//! challenges, each a scheme with `name=value` parameters or a token68. Parameter lists and
//! challenge lists share the comma, so a comma ends a challenge only when what follows it is
//! not `name=`.

/// One challenge: `Bearer realm="…",service="…"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// As sent; compare with [`Challenge::is`], schemes are case-insensitive.
    pub scheme: String,
    /// Names in lower case (they are case-insensitive), values unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }

    /// The first parameter called `name` (lower case).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Where a value stops making sense, for the error message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed WWW-Authenticate at byte {0}")]
pub struct ChallengeError(pub usize);

/// Every challenge of one header value, in order.
pub fn parse(value: &str) -> Result<Vec<Challenge>, ChallengeError> {
    let mut p = Parser {
        s: value.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    loop {
        p.skip(|b| b == b',' || is_ws(b));
        if p.at_end() {
            return Ok(out);
        }
        let scheme = p.token().ok_or(ChallengeError(p.i))?;
        let mut challenge = Challenge {
            scheme,
            params: Vec::new(),
        };
        p.skip(is_ws);
        if !p.at_end() && p.peek() != Some(b',') {
            if p.param_ahead() {
                p.params(&mut challenge.params)?;
            } else {
                // A token68 (`Basic dXNlcjpwYXNz`); kept under an empty name.
                let start = p.i;
                p.skip(|b| is_tchar(b) || b == b'/' || b == b'=');
                if p.i == start {
                    return Err(ChallengeError(p.i));
                }
                challenge
                    .params
                    .push((String::new(), p.text(start, p.i).to_owned()));
            }
        }
        out.push(challenge);
        p.skip(is_ws);
        match p.peek() {
            None | Some(b',') => {}
            Some(_) => return Err(ChallengeError(p.i)),
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
    }

    /// The bytes `start..end`; only ever cut at ASCII positions, so always on a char boundary.
    fn text(&self, start: usize, end: usize) -> &str {
        std::str::from_utf8(self.s.get(start..end).unwrap_or_default()).unwrap_or_default()
    }

    fn token(&mut self) -> Option<String> {
        let start = self.i;
        self.skip(is_tchar);
        (self.i > start).then(|| self.text(start, self.i).to_owned())
    }

    /// Whether `name = value` starts here, and not a token68 ending in `=` padding.
    fn param_ahead(&self) -> bool {
        let mut j = self.i;
        while self.s.get(j).copied().is_some_and(is_tchar) {
            j += 1;
        }
        if j == self.i {
            return false;
        }
        while self.s.get(j).copied().is_some_and(is_ws) {
            j += 1;
        }
        if self.s.get(j) != Some(&b'=') {
            return false;
        }
        j += 1;
        while self.s.get(j).copied().is_some_and(is_ws) {
            j += 1;
        }
        !matches!(self.s.get(j), None | Some(b',') | Some(b'='))
    }

    /// `name=value` pairs up to the end or to a comma followed by the next challenge's scheme.
    fn params(&mut self, into: &mut Vec<(String, String)>) -> Result<(), ChallengeError> {
        loop {
            let name = self.token().ok_or(ChallengeError(self.i))?;
            self.skip(is_ws);
            if self.peek() != Some(b'=') {
                return Err(ChallengeError(self.i));
            }
            self.i += 1;
            self.skip(is_ws);
            let value = if self.peek() == Some(b'"') {
                self.quoted()?
            } else {
                self.token().ok_or(ChallengeError(self.i))?
            };
            into.push((name.to_ascii_lowercase(), value));
            // A comma, then either another parameter or the next challenge.
            let save = self.i;
            self.skip(is_ws);
            if self.peek() != Some(b',') {
                self.i = save;
                return Ok(());
            }
            self.skip(|b| b == b',' || is_ws(b));
            if !self.param_ahead() {
                self.i = save;
                return Ok(());
            }
        }
    }

    /// A quoted-string, with `\x` standing for `x`.
    fn quoted(&mut self) -> Result<String, ChallengeError> {
        let open = self.i;
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(ChallengeError(open)),
                Some(b'"') => {
                    self.i += 1;
                    return String::from_utf8(out).map_err(|_| ChallengeError(open));
                }
                Some(b'\\') => {
                    let escaped = self.s.get(self.i + 1).ok_or(ChallengeError(self.i))?;
                    out.push(*escaped);
                    self.i += 2;
                }
                Some(b) => {
                    out.push(b);
                    self.i += 1;
                }
            }
        }
    }
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(value: &str) -> Challenge {
        let mut all = parse(value).unwrap();
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    #[test]
    fn docker_hub_bearer() {
        let c = one(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert!(c.is("bearer"));
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("service"), Some("registry.docker.io"));
        assert_eq!(c.param("scope"), Some("repository:library/busybox:pull"));
    }

    #[test]
    fn commas_and_escapes_inside_quotes() {
        let c = one(
            r#"Bearer realm="http://h/token", scope="repository:a/b:pull,push", error="say \"no\"\\ok""#,
        );
        assert_eq!(c.param("scope"), Some("repository:a/b:pull,push"));
        assert_eq!(c.param("error"), Some(r#"say "no"\ok"#));
    }

    #[test]
    fn names_are_case_insensitive_and_spaces_allowed_round_equals() {
        let c = one(r#"BEARER Realm = "r" ,SERVICE=svc"#);
        assert!(c.is("Bearer"));
        assert_eq!(c.param("realm"), Some("r"));
        assert_eq!(c.param("service"), Some("svc"));
    }

    #[test]
    fn several_challenges_in_one_value() {
        let all =
            parse(r#"Basic realm="berth", Bearer realm="http://h/token",service="s", Negotiate"#)
                .unwrap();
        let schemes: Vec<&str> = all.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["Basic", "Bearer", "Negotiate"]);
        assert_eq!(all[0].param("realm"), Some("berth"));
        assert_eq!(all[1].param("realm"), Some("http://h/token"));
        assert_eq!(all[1].param("service"), Some("s"));
        assert!(all[2].params.is_empty());
    }

    #[test]
    fn token68_with_padding_then_another_challenge() {
        let all = parse("Newauth abc+/def==, Basic realm=x").unwrap();
        assert_eq!(all[0].params, [(String::new(), "abc+/def==".to_owned())]);
        assert!(all[1].is("basic"));
        assert_eq!(all[1].param("realm"), Some("x"));
        let c = one("Basic dXNlcjpwYXNz=");
        assert_eq!(c.params, [(String::new(), "dXNlcjpwYXNz=".to_owned())]);
    }

    #[test]
    fn empty_quoted_value_and_stray_commas() {
        let all = parse(r#", ,Bearer realm="",, service=x ,"#).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].param("realm"), Some(""));
        assert_eq!(all[0].param("service"), Some("x"));
        assert_eq!(parse("").unwrap(), []);
    }

    #[test]
    fn malformed_values_are_errors() {
        for bad in [
            r#"Bearer realm="unterminated"#,
            r#"Bearer realm="x\"#,
            "Bearer realm=a b=c",
            r#"Bearer realm="a" junk"#,
            "=oops",
            r#"Bearer realm="a", ="b""#,
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
