//! The `scope` parameters of a token request (`repository:team/app:pull,push`) and the
//! `WWW-Authenticate: Bearer` challenge that asks a client for them.

use super::claims::ResourceActions;
use super::token_error::ScopeError;

/// More scopes than any client asks for at once; bounds the work one request can cause.
pub const MAX_SCOPES: usize = 64;

/// Reads every `scope` parameter of a token request. A parameter may hold several scopes
/// separated by spaces. Scopes on the same resource are merged; actions come out sorted and
/// without repeats.
///
/// Each scope splits at its first ':' (the type, optionally with a `(class)`) and at its last
/// ':' (the comma-separated actions); whatever lies between is the name, colons included, as
/// Docker's token services read it. A scope that does not split so is an error rather than
/// being skipped, so a client learns why its request was not granted.
pub fn parse_scopes<'a>(
    params: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<ResourceActions>, ScopeError> {
    let mut out: Vec<ResourceActions> = Vec::new();
    let scopes = params
        .into_iter()
        .flat_map(|p| p.split(' '))
        .filter(|s| !s.is_empty());
    for (index, scope) in scopes.enumerate() {
        if index == MAX_SCOPES {
            return Err(ScopeError::TooMany);
        }
        let parsed = parse_one(scope).map_err(|reason| ScopeError::Malformed {
            index: index + 1,
            reason,
        })?;
        match out
            .iter_mut()
            .find(|r| r.kind == parsed.kind && r.class == parsed.class && r.name == parsed.name)
        {
            Some(existing) => existing.actions.extend(parsed.actions),
            None => out.push(parsed),
        }
    }
    for r in &mut out {
        r.actions.sort();
        r.actions.dedup();
    }
    Ok(out)
}

fn parse_one(scope: &str) -> Result<ResourceActions, &'static str> {
    let (kind, rest) = scope.split_once(':').ok_or("expected type:name:actions")?;
    let (name, actions) = rest.rsplit_once(':').ok_or("expected type:name:actions")?;
    let (kind, class) = match kind.split_once('(') {
        Some((kind, class)) => (
            kind,
            Some(class.strip_suffix(')').ok_or("unclosed resource class")?),
        ),
        None => (kind, None),
    };
    let word = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if !word(kind) || !class.is_none_or(word) {
        return Err("resource type must be lowercase letters and digits");
    }
    if name.is_empty() || name.bytes().any(|b| b.is_ascii_control()) {
        return Err("empty or invalid resource name");
    }
    let actions: Vec<String> = actions
        .split(',')
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    if actions.is_empty()
        || actions
            .iter()
            .any(|a| a.bytes().any(|b| b.is_ascii_control() || b == b'"'))
    {
        return Err("missing or invalid actions");
    }
    Ok(ResourceActions {
        kind: kind.to_string(),
        class: class.map(str::to_string),
        name: name.to_string(),
        actions,
    })
}

/// Writes a scope back in request form, e.g. `repository(plugin):team/app:pull,push`.
pub fn format_scope(r: &ResourceActions) -> String {
    let class = r
        .class
        .as_ref()
        .map(|c| format!("({c})"))
        .unwrap_or_default();
    format!("{}{class}:{}:{}", r.kind, r.name, r.actions.join(","))
}

/// Keeps the requested actions `granted` approves; resources left with none are dropped.
pub fn intersect(
    requested: &[ResourceActions],
    mut granted: impl FnMut(&ResourceActions, &str) -> bool,
) -> Vec<ResourceActions> {
    requested
        .iter()
        .filter_map(|r| {
            let actions: Vec<String> = r
                .actions
                .iter()
                .filter(|a| granted(r, a))
                .cloned()
                .collect();
            (!actions.is_empty()).then(|| ResourceActions {
                actions,
                ..r.clone()
            })
        })
        .collect()
}

/// The value of a `WWW-Authenticate` header sending a client to the token service, e.g.
/// `Bearer realm="https://reg/token",service="reg",scope="repository:a:pull"`. Several scopes
/// share one space-separated `scope` parameter; `error` is e.g. `insufficient_scope`.
pub fn challenge(
    realm: &str,
    service: &str,
    scopes: &[ResourceActions],
    error: Option<&str>,
) -> String {
    let mut out = format!("Bearer realm={},service={}", quoted(realm), quoted(service));
    if !scopes.is_empty() {
        let joined: Vec<String> = scopes.iter().map(format_scope).collect();
        out.push_str(&format!(",scope={}", quoted(&joined.join(" "))));
    }
    if let Some(error) = error {
        out.push_str(&format!(",error={}", quoted(error)));
    }
    out
}

/// An RFC 9110 quoted-string. Control characters (CR and LF above all) are dropped: no value
/// may end the header line early.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ra(kind: &str, class: Option<&str>, name: &str, actions: &[&str]) -> ResourceActions {
        ResourceActions {
            kind: kind.into(),
            class: class.map(Into::into),
            name: name.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn repeated_and_space_separated_scopes_merge_per_resource() {
        let got = parse_scopes([
            "repository:team/app:push",
            "repository:team/app:pull,push registry:catalog:*",
        ])
        .unwrap();
        assert_eq!(
            got,
            [
                ra("repository", None, "team/app", &["pull", "push"]),
                ra("registry", None, "catalog", &["*"])
            ]
        );
    }

    #[test]
    fn resource_class_and_colons_in_names() {
        let got = parse_scopes(["repository(plugin):vieux/sshfs:pull"]).unwrap();
        assert_eq!(
            got,
            [ra("repository", Some("plugin"), "vieux/sshfs", &["pull"])]
        );
        let got = parse_scopes(["repository:host:5000/app:pull"]).unwrap();
        assert_eq!(got[0].name, "host:5000/app");
    }

    #[test]
    fn malformed_scopes_are_refused_with_their_position() {
        for bad in [
            "repository",
            "repository:app",
            "repository::pull",
            "repository:app:",
            "Repo:app:pull",
            "repository(x:app:pull",
        ] {
            let err = parse_scopes(["registry:catalog:*", bad]).unwrap_err();
            assert!(
                matches!(err, ScopeError::Malformed { index: 2, .. }),
                "{bad}: {err}"
            );
        }
        let many = vec!["repository:a:pull"; MAX_SCOPES + 1];
        assert_eq!(parse_scopes(many), Err(ScopeError::TooMany));
        assert!(parse_scopes(["", "  "]).unwrap().is_empty());
    }

    #[test]
    fn intersect_keeps_only_granted_actions() {
        let requested = parse_scopes(["repository:a:pull,push repository:b:pull"]).unwrap();
        let kept = intersect(&requested, |r, action| r.name == "a" && action == "pull");
        assert_eq!(kept, [ra("repository", None, "a", &["pull"])]);
    }

    #[test]
    fn challenge_quotes_values_and_lists_scopes() {
        let scopes = [
            ra("repository", None, "team/app", &["pull", "push"]),
            ra("repository", Some("plugin"), "p", &["pull"]),
        ];
        let header = challenge(
            "https://reg.example/token",
            "reg",
            &scopes,
            Some("insufficient_scope"),
        );
        assert_eq!(
            header,
            r#"Bearer realm="https://reg.example/token",service="reg",scope="repository:team/app:pull,push repository(plugin):p:pull",error="insufficient_scope""#
        );
        assert_eq!(
            challenge("a\"b\\c\r\nX: y", "s", &[], None),
            r#"Bearer realm="a\"b\\cX: y",service="s""#
        );
    }
}
