//! Durations and byte rates as people write them in flags and TOML (`10m`, `7d`, `50MB`), and
//! the same units back for reports and progress lines.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A duration written as one or more `<integer><unit>` groups (`30s`, `10m`, `1h30m`, `7d`;
/// units `ms`, `s`, `m`, `h`, `d`, `w`). A bare `0` is zero; any other bare number is refused
/// on the command line because minutes and seconds are easy to confuse, but a TOML integer is
/// read as seconds like the other timeouts of the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<HumanDuration, String> {
        parse_duration(s).map(HumanDuration)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"10m\", \"1h\" or \"7d\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HumanDuration, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, secs: u64) -> Result<HumanDuration, E> {
                Ok(HumanDuration(Duration::from_secs(secs)))
            }
            fn visit_i64<E: de::Error>(self, secs: i64) -> Result<HumanDuration, E> {
                u64::try_from(secs)
                    .map(|s| HumanDuration(Duration::from_secs(s)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
        }
        d.deserialize_any(V)
    }
}

/// Written as whole milliseconds (`"1500ms"`), which every reader of this type parses back
/// exactly.
impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", self.0.as_millis()))
    }
}

/// How often a background task runs: a duration, or `off` (also `0`) for never.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Interval(pub Option<Duration>);

impl FromStr for Interval {
    type Err = String;

    fn from_str(s: &str) -> Result<Interval, String> {
        if s.trim().eq_ignore_ascii_case("off") {
            return Ok(Interval(None));
        }
        let d = parse_duration(s)?;
        Ok(Interval((!d.is_zero()).then_some(d)))
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Interval, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Interval;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an interval such as \"1h\" or \"7d\", or \"off\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Interval, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Interval, E> {
                Ok(Interval((secs > 0).then(|| Duration::from_secs(secs))))
            }
            fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Interval, E> {
                u64::try_from(secs)
                    .map_err(|_| E::custom("an interval cannot be negative"))
                    .and_then(|s| self.visit_u64(s))
            }
        }
        d.deserialize_any(V)
    }
}

/// A byte rate (`50MB`, `50MB/s`, `1.5GiB`, `800k`), or `unlimited`. Decimal units (`k`,
/// `M`, `G`, `T`, with or without `B`) are powers of 1000 and binary ones (`KiB`, `MiB`,
/// `GiB`, `TiB`) powers of 1024; a bare number is bytes per second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ByteRate(pub Option<u64>);

impl FromStr for ByteRate {
    type Err = String;

    fn from_str(s: &str) -> Result<ByteRate, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("unlimited") {
            return Ok(ByteRate(None));
        }
        let t = t.strip_suffix("/s").unwrap_or(t).trim_end();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = (&t[..split], t[split..].trim());
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{s:?} is not a rate such as \"50MB\" or \"unlimited\""))?;
        let scale = unit_scale(unit).ok_or_else(|| {
            format!("unknown unit {unit:?} in {s:?} (B, kB, MB, GB, KiB, MiB, GiB …)")
        })?;
        let bytes = (value * scale as f64).round();
        if bytes < 1.0 || !bytes.is_finite() || bytes > u64::MAX as f64 {
            return Err(format!(
                "{s:?} is not a usable rate; say \"unlimited\" for no limit"
            ));
        }
        Ok(ByteRate(Some(bytes as u64)))
    }
}

impl fmt::Display for ByteRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("unlimited"),
            Some(n) => write!(f, "{}/s", format_bytes(n)),
        }
    }
}

impl<'de> Deserialize<'de> for ByteRate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteRate, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteRate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate such as \"50MB\" or \"unlimited\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ByteRate, E> {
                s.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ByteRate, E> {
                if n == 0 {
                    return Err(E::custom(
                        "a rate of 0 never finishes; say \"unlimited\" for no limit",
                    ));
                }
                Ok(ByteRate(Some(n)))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ByteRate, E> {
                u64::try_from(n)
                    .map_err(|_| E::custom("a rate cannot be negative"))
                    .and_then(|n| self.visit_u64(n))
            }
        }
        d.deserialize_any(V)
    }
}

/// Bytes per second as a number, or `"unlimited"`.
impl Serialize for ByteRate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(n) => s.serialize_u64(n),
            None => s.serialize_str("unlimited"),
        }
    }
}

fn unit_scale(unit: &str) -> Option<u64> {
    let scale = match unit {
        "" | "B" | "b" => 1,
        "KiB" | "Ki" => 1 << 10,
        "MiB" | "Mi" => 1 << 20,
        "GiB" | "Gi" => 1 << 30,
        "TiB" | "Ti" => 1 << 40,
        _ => match unit.to_ascii_lowercase().as_str() {
            "k" | "kb" => 1_000,
            "m" | "mb" => 1_000_000,
            "g" | "gb" => 1_000_000_000,
            "t" | "tb" => 1_000_000_000_000,
            _ => return None,
        },
    };
    Some(scale)
}

/// Parses `30s`, `10m`, `1h30m`, `7d`, `250ms`; `0` alone is zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let bad = || format!("{s:?} is not a duration such as \"30s\", \"10m\", \"1h\" or \"7d\"");
    if t.is_empty() {
        return Err(bad());
    }
    let mut rest = t;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            "w" => Duration::from_secs(n.saturating_mul(7 * 86_400)),
            _ => return Err(bad()),
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// `1d2h`, `10m`, `12.3s`, `450ms`: the two largest units that matter, for reports.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 86_400 {
        let (days, hours) = (secs / 86_400, secs % 86_400 / 3600);
        if hours == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{hours}h")
        }
    } else if secs >= 3600 {
        let (hours, mins) = (secs / 3600, secs % 3600 / 60);
        if mins == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{mins}m")
        }
    } else if secs >= 60 {
        let (mins, s) = (secs / 60, secs % 60);
        if s == 0 {
            format!("{mins}m")
        } else {
            format!("{mins}m{s}s")
        }
    } else if d >= Duration::from_secs(1) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let (mut value, mut unit) = (n as f64 / 1024.0, UNITS[0]);
    for next in &UNITS[1..] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Result<Duration, String> {
        parse_duration(s)
    }

    #[test]
    fn durations() {
        assert_eq!(d("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(d("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(d("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(d("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(d("2w"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(d("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(d("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(d(" 0 "), Ok(Duration::ZERO));
        assert_eq!(d("0s"), Ok(Duration::ZERO));
        for bad in ["", "10", "m", "10x", "1.5h", "-1s", "h1", "10 m", "1h30"] {
            assert!(d(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn intervals_may_be_off() {
        assert_eq!("off".parse(), Ok(Interval(None)));
        assert_eq!("0".parse(), Ok(Interval(None)));
        assert_eq!("1h".parse(), Ok(Interval(Some(Duration::from_secs(3600)))));
        assert!("often".parse::<Interval>().is_err());
    }

    #[test]
    fn rates() {
        let r = |s: &str| s.parse::<ByteRate>().map(|r| r.0);
        assert_eq!(r("50MB"), Ok(Some(50_000_000)));
        assert_eq!(r("50MB/s"), Ok(Some(50_000_000)));
        assert_eq!(r("50 mb"), Ok(Some(50_000_000)));
        assert_eq!(r("100M"), Ok(Some(100_000_000)));
        assert_eq!(r("64MiB"), Ok(Some(64 << 20)));
        assert_eq!(r("1.5GiB"), Ok(Some(3 << 29)));
        assert_eq!(r("800k"), Ok(Some(800_000)));
        assert_eq!(r("4096"), Ok(Some(4096)));
        assert_eq!(r("2GB"), Ok(Some(2_000_000_000)));
        assert_eq!(r("unlimited"), Ok(None));
        for bad in ["0", "0MB", "fast", "10 parsecs", "MB", "-5MB", ""] {
            assert!(r(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn toml_integers_are_seconds_and_bytes() {
        #[derive(Deserialize)]
        struct T {
            a: HumanDuration,
            b: HumanDuration,
            c: ByteRate,
            d: ByteRate,
            e: Interval,
        }
        let t: T = toml::from_str("a = 90\nb = \"1m\"\nc = 1000\nd = \"1kB\"\ne = 0").unwrap();
        assert_eq!(t.a.0, Duration::from_secs(90));
        assert_eq!(t.b.0, Duration::from_secs(60));
        assert_eq!(t.c.0, Some(1000));
        assert_eq!(t.d.0, Some(1000));
        assert_eq!(t.e.0, None);
        assert!(toml::from_str::<T>("a = -1\nb = 1\nc = 1\nd = 1\ne = 1").is_err());
        assert!(toml::from_str::<T>("a = 1\nb = 1\nc = 0\nd = 1\ne = 1").is_err());
    }

    #[test]
    fn json_round_trips() {
        let d = HumanDuration(Duration::from_millis(90_500));
        let text = serde_json::to_string(&d).unwrap();
        assert_eq!(text, "\"90500ms\"");
        assert_eq!(serde_json::from_str::<HumanDuration>(&text).unwrap(), d);
        for r in [ByteRate(Some(5_000_000)), ByteRate(None)] {
            let text = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<ByteRate>(&text).unwrap(), r);
        }
    }

    #[test]
    fn formats() {
        assert_eq!(format_duration(Duration::from_millis(450)), "450ms");
        assert_eq!(format_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(format_duration(Duration::from_secs(600)), "10m");
        assert_eq!(format_duration(Duration::from_secs(5430)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(7 * 86_400)), "7d");
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(3 << 30), "3.0 GiB");
        assert_eq!(ByteRate(Some(100_000_000)).to_string(), "95.4 MiB/s");
        // Reports print what the parser reads back.
        for s in ["450ms", "10m", "1h30m", "7d"] {
            assert_eq!(s.parse::<HumanDuration>().unwrap().to_string(), s);
        }
    }
}
