//! The claim set of a registry token (distribution's token JWT spec): who, for which service,
//! until when, and the `access` list of resources and actions it grants.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Number;

/// One resource and the actions granted (in a token) or asked for (in a `scope`) on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceActions {
    /// `repository`, `registry`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The resource class of `repository(plugin):...` scopes. It narrows nothing in
    /// [`Claims::allows`], as in CNCF distribution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    pub name: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub actions: Vec<String>,
}

/// A verified (or to-be-signed) token's claims. Times are seconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    /// One or more audiences; encoded as a plain string when there is exactly one.
    #[serde(serialize_with = "audience_out")]
    pub aud: Vec<String>,
    pub exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    pub access: Vec<ResourceActions>,
}

impl Claims {
    /// Whether the token grants `action` on the resource `kind`/`name`. Names match exactly: a
    /// grant for one repository says nothing about any other. `*` among the actions grants all.
    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|r| {
            r.kind == kind && r.name == name && r.actions.iter().any(|a| a == action || a == "*")
        })
    }
}

/// Claims as they arrive: `exp` may be missing (refused by the verifier with its own error),
/// `aud` may be a string or an array, `access` may be null, times may be fractional. Repeated
/// member names are refused by serde, so a claim cannot be stated twice with different values.
#[derive(Deserialize)]
pub(crate) struct WireClaims {
    #[serde(default)]
    pub iss: String,
    #[serde(default)]
    pub sub: String,
    #[serde(default, deserialize_with = "audience_in")]
    pub aud: Vec<String>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub exp: Option<u64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub nbf: Option<u64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub iat: Option<u64>,
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub access: Vec<ResourceActions>,
}

impl WireClaims {
    /// The claims, once the verifier has checked `exp` is present.
    pub fn into_claims(self, exp: u64) -> Claims {
        Claims {
            iss: self.iss,
            sub: self.sub,
            aud: self.aud,
            exp,
            nbf: self.nbf,
            iat: self.iat,
            jti: self.jti,
            access: self.access,
        }
    }
}

fn audience_out<S: Serializer>(aud: &[String], s: S) -> Result<S::Ok, S::Error> {
    match aud {
        [one] => s.serialize_str(one),
        many => many.serialize(s),
    }
}

fn audience_in<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(a) => vec![a],
        OneOrMany::Many(a) => a,
    })
}

/// A JWT NumericDate: a non-negative JSON number, fractions dropped.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let n = Number::deserialize(d)?;
    let secs = match (n.as_u64(), n.as_f64()) {
        (Some(whole), _) => Some(whole),
        (None, Some(f)) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => Some(f as u64),
        _ => None,
    };
    secs.map(Some)
        .ok_or_else(|| serde::de::Error::custom("time is not a non-negative number"))
}

fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(json: &str) -> Result<WireClaims, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn audience_is_a_string_or_an_array() {
        assert_eq!(wire(r#"{"aud":"reg"}"#).unwrap().aud, ["reg"]);
        assert_eq!(wire(r#"{"aud":["a","reg"]}"#).unwrap().aud, ["a", "reg"]);
        let claims = wire(r#"{"aud":"reg"}"#).unwrap().into_claims(1);
        assert!(serde_json::to_string(&claims)
            .unwrap()
            .contains(r#""aud":"reg""#));
    }

    #[test]
    fn times_may_be_fractional_but_not_negative_or_text() {
        assert_eq!(
            wire(r#"{"exp":1700000000.75}"#).unwrap().exp,
            Some(1_700_000_000)
        );
        assert!(wire(r#"{"exp":-1}"#).is_err());
        assert!(wire(r#"{"exp":"1700000000"}"#).is_err());
        assert_eq!(wire("{}").unwrap().exp, None);
    }

    #[test]
    fn repeated_claims_are_refused() {
        assert!(wire(r#"{"iss":"berth","iss":"evil"}"#).is_err());
    }

    #[test]
    fn null_access_is_empty_and_access_round_trips() {
        assert!(wire(r#"{"access":null}"#).unwrap().access.is_empty());
        let json = r#"{"access":[{"type":"repository","class":"plugin","name":"a/b","actions":["pull"]}]}"#;
        let access = wire(json).unwrap().access;
        assert_eq!(access[0].class.as_deref(), Some("plugin"));
        assert_eq!(
            serde_json::to_string(&access).unwrap(),
            &json[10..json.len() - 1]
        );
    }

    #[test]
    fn grants_are_per_resource_and_action() {
        let grant = |kind: &str, name: &str, actions: &[&str]| ResourceActions {
            kind: kind.into(),
            class: None,
            name: name.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        };
        let claims = Claims {
            access: vec![
                grant("repository", "team/a", &["pull"]),
                grant("registry", "catalog", &["*"]),
            ],
            ..wire("{}").unwrap().into_claims(0)
        };
        assert!(claims.allows("repository", "team/a", "pull"));
        assert!(
            !claims.allows("repository", "team/a", "push"),
            "push not granted"
        );
        assert!(
            !claims.allows("repository", "team/b", "pull"),
            "repository A does not grant B"
        );
        assert!(!claims.allows("repository", "team/a/sub", "pull"));
        assert!(
            !claims.allows("registry", "team/a", "pull"),
            "type must match"
        );
        assert!(
            claims.allows("registry", "catalog", "anything"),
            "* grants every action"
        );
    }
}
