//! Who may use `/admin/…`. There are no credentials yet, so the default trusts only peers on
//! the same host: anyone who can reach the loopback interface can also read the data
//! directory. A reverse proxy on the same host makes every client a loopback peer, so such a
//! proxy must not forward `/admin/` (the nginx configuration in `tools/nginx/` does not).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// `[admin] allow` / `--admin-allow`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminAccess {
    /// Only peers connecting from a loopback address.
    #[default]
    Loopback,
    /// Every peer (for a registry on a trusted network).
    Any,
    /// Nobody: `/admin/` answers 403 to everyone.
    Off,
}

impl AdminAccess {
    /// Whether a request from `peer` may use the admin endpoint; an unknown peer may not.
    pub fn allows(self, peer: Option<SocketAddr>) -> bool {
        match self {
            AdminAccess::Any => true,
            AdminAccess::Off => false,
            AdminAccess::Loopback => peer.is_some_and(|p| is_loopback(p.ip())),
        }
    }
}

/// Loopback, including an IPv4 loopback peer seen through a dual-stack (`[::]`) listener as
/// `::ffff:127.x.y.z`.
fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

impl FromStr for AdminAccess {
    type Err = String;

    fn from_str(s: &str) -> Result<AdminAccess, String> {
        match s {
            "loopback" => Ok(AdminAccess::Loopback),
            "any" => Ok(AdminAccess::Any),
            "off" => Ok(AdminAccess::Off),
            other => Err(format!(
                "unknown admin access {other:?} (loopback, any or off)"
            )),
        }
    }
}

impl fmt::Display for AdminAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AdminAccess::Loopback => "loopback",
            AdminAccess::Any => "any",
            AdminAccess::Off => "off",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn loopback_only_by_default() {
        let a = AdminAccess::default();
        assert!(a.allows(peer("127.0.0.1:4000")));
        assert!(a.allows(peer("127.8.9.10:4000")));
        assert!(a.allows(peer("[::1]:4000")));
        assert!(a.allows(peer("[::ffff:127.0.0.1]:4000")));
        assert!(!a.allows(peer("192.0.2.7:4000")));
        assert!(!a.allows(peer("[::ffff:192.0.2.7]:4000")));
        assert!(!a.allows(peer("[2001:db8::1]:4000")));
        assert!(!a.allows(None));
    }

    #[test]
    fn any_and_off() {
        assert!(AdminAccess::Any.allows(peer("192.0.2.7:4000")));
        assert!(!AdminAccess::Off.allows(peer("127.0.0.1:4000")));
        assert_eq!("any".parse(), Ok(AdminAccess::Any));
        assert!("everyone".parse::<AdminAccess>().is_err());
    }
}
