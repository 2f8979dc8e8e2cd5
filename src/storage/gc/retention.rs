//! Retention rules: which tags and untagged manifests a repository's policy lets go.

use crate::storage::types::RetentionRule;

/// Whether `text` matches `pattern`, where `*` matches any run of characters except `/`, `**`
/// matches any run including `/`, and `?` one character other than `/`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    /// `t`, then `t` without its first byte, and so on down to the empty slice.
    fn suffixes(t: &[u8]) -> impl Iterator<Item = &[u8]> {
        std::iter::successors(Some(t), |s| s.split_first().map(|(_, rest)| rest))
    }
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p {
            [] => t.is_empty(),
            [b'*', b'*', rest @ ..] => suffixes(t).any(|s| go(rest, s)),
            [b'*', rest @ ..] => {
                for s in suffixes(t) {
                    if go(rest, s) {
                        return true;
                    }
                    if s.first() == Some(&b'/') {
                        break;
                    }
                }
                false
            }
            [b'?', rest @ ..] => matches!(t, [c, t_rest @ ..] if *c != b'/' && go(rest, t_rest)),
            [c, rest @ ..] => matches!(t, [d, t_rest @ ..] if d == c && go(rest, t_rest)),
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// The first rule whose repository glob matches `repo`.
pub fn rule_for<'r>(rules: &'r [RetentionRule], repo: &str) -> Option<&'r RetentionRule> {
    rules.iter().find(|r| glob_match(&r.repositories, repo))
}

/// Which of a repository's tags (name, tagged-at ms) its rule deletes: all but the newest
/// `keep_newest_tags`, never a protected one. Protected tags count towards the kept ones.
pub fn expired_tags<'t>(rule: &RetentionRule, tags: &'t [(String, u64)]) -> Vec<&'t str> {
    let Some(keep) = rule.keep_newest_tags else {
        return Vec::new();
    };
    let mut by_age: Vec<&(String, u64)> = tags.iter().collect();
    // Newest first; ties by name so a run is reproducible.
    by_age.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    by_age
        .into_iter()
        .skip(keep)
        .filter(|(name, _)| !rule.protect_tags.iter().any(|p| glob_match(p, name)))
        .map(|(name, _)| name.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("**", "a/b/c"));
        assert!(glob_match("team/*", "team/app"));
        assert!(!glob_match("team/*", "team/app/sub"));
        assert!(glob_match("team/**", "team/app/sub"));
        assert!(glob_match("v1.*", "v1.2.3"));
        assert!(glob_match("release-?", "release-7"));
        assert!(!glob_match("release-?", "release-10"));
        assert!(!glob_match("prod", "production"));
    }

    #[test]
    fn keeps_the_newest_tags_and_the_protected_ones() {
        let rule = RetentionRule {
            repositories: "**".into(),
            keep_newest_tags: Some(2),
            protect_tags: vec!["stable*".into()],
            ..Default::default()
        };
        let tags: Vec<(String, u64)> = [("a", 1), ("b", 5), ("c", 3), ("stable", 0), ("d", 4)]
            .iter()
            .map(|(n, t)| (n.to_string(), *t))
            .collect();
        let mut gone = expired_tags(&rule, &tags);
        gone.sort();
        assert_eq!(gone, vec!["a", "c"]);
    }
}
