//! Parsers for the value types settings are written in: durations, rates, hash parameters,
//! sizes, booleans, CORS origins and proxy networks.
//!
//! Defends against misconfiguration passing silently: every value is parsed into a type whose
//! constructor is the only way to build it, and anything that is not exactly one of the
//! documented forms is refused with a message that says which form was expected.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use http::HeaderValue;

/// A whole number written in ASCII digits only. `str::parse` also takes a leading `+`, which is
/// not one of the documented forms; every number in a setting goes through here instead.
pub fn whole_number<T: FromStr>(raw: &str) -> Option<T> {
    (!raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()))
        .then(|| raw.parse().ok())
        .flatten()
}

/// A duration written as a whole number and a unit: `90s`, `15m`, `12h`, `14d`.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{raw}` has no unit; write it like 90s, 15m, 12h or 14d"))?;
    let (number, unit) = raw.split_at(split);
    let n: u64 = whole_number(number)
        .ok_or_else(|| format!("`{raw}` is not a duration like 90s, 15m, 12h or 14d"))?;
    let per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{raw}` has unit `{unit}`; use s, m, h or d")),
    };
    n.checked_mul(per_unit)
        .filter(|secs| *secs <= 10 * 365 * 86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{raw}` is longer than ten years"))
}

/// Renders a duration in the same unit syntax it is parsed from (largest exact unit).
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s != 0 && s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s != 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s != 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// `true` or `false`, nothing else (no `1`, `yes`, `on`: ambiguity is how posture drifts).
pub fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("`{other}` is not a boolean; write true or false")),
    }
}

/// A byte size: a whole number of bytes, or with a `KiB` / `MiB` suffix.
pub fn parse_size(raw: &str) -> Result<usize, String> {
    let raw = raw.trim();
    let (number, mult) = if let Some(n) = raw.strip_suffix("MiB") {
        (n, 1024 * 1024)
    } else if let Some(n) = raw.strip_suffix("KiB") {
        (n, 1024)
    } else {
        (raw, 1)
    };
    whole_number::<usize>(number.trim())
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{raw}` is not a size like 1048576, 64KiB or 1MiB"))
}

/// A rate limit: `N/second`, `N/minute` or `N/hour`, N at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: u32,
    per: Duration,
}

impl Rate {
    /// `count` per `per_secs` seconds, for defaults written as literals. A zero is raised to
    /// one, so every `Rate` is a usable limit.
    pub const fn fixed(count: u32, per_secs: u64) -> Self {
        Self {
            count: if count == 0 { 1 } else { count },
            per: Duration::from_secs(if per_secs == 0 { 1 } else { per_secs }),
        }
    }

    pub fn new(count: u32, per: Duration) -> Option<Self> {
        (count > 0 && !per.is_zero()).then_some(Self { count, per })
    }
    pub fn count(self) -> u32 {
        self.count
    }
    pub fn period(self) -> Duration {
        self.per
    }
    /// Requests per minute, for comparing policies of different periods.
    #[allow(clippy::cast_precision_loss)]
    pub fn per_minute(self) -> f64 {
        f64::from(self.count) * 60.0 / self.per.as_secs_f64()
    }
}

impl FromStr for Rate {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let bad = || format!("`{raw}` is not a rate like 10/minute (units: second, minute, hour)");
        let (count, unit) = raw.split_once('/').ok_or_else(bad)?;
        let count: u32 = whole_number(count.trim()).ok_or_else(bad)?;
        let per = match unit.trim() {
            "second" => Duration::from_secs(1),
            "minute" => Duration::from_secs(60),
            "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Self::new(count, per)
            .ok_or_else(|| format!("`{raw}` allows nothing; the count must be at least 1"))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "second",
            60 => "minute",
            _ => "hour",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// Argon2id cost parameters, written `argon2id:m=19456,t=2,p=1` (m in KiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl HashParams {
    /// The OWASP minimum for argon2id, and rampart's default. Production refuses anything weaker.
    pub const OWASP_MINIMUM: Self = Self {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };
    /// Above this, one login could take a gigabyte: a self-inflicted denial of service.
    const MAX_MEMORY_KIB: u32 = 1024 * 1024;

    /// OWASP's equivalent argon2id configurations (memory KiB, iterations), all as strong as
    /// the minimum: more memory buys fewer iterations.
    const OWASP_EQUIVALENTS: [(u32, u32); 5] = [
        (47_104, 1),
        (19_456, 2),
        (12_288, 3),
        (9_216, 4),
        (7_168, 5),
    ];

    /// At least as costly as `other` in memory and time (parallelism does not add cost to an
    /// attacker, so it is not compared).
    pub fn at_least(self, other: Self) -> bool {
        self.memory_kib >= other.memory_kib && self.iterations >= other.iterations
    }

    /// Meets one of OWASP's equivalent minimum configurations.
    pub fn meets_owasp_minimum(self) -> bool {
        Self::OWASP_EQUIVALENTS
            .iter()
            .any(|&(m, t)| self.memory_kib >= m && self.iterations >= t)
    }
}

impl Default for HashParams {
    fn default() -> Self {
        Self::OWASP_MINIMUM
    }
}

impl FromStr for HashParams {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let params = raw.strip_prefix("argon2id:").ok_or_else(|| {
            format!("`{raw}` is not supported; only argon2id is, written argon2id:m=19456,t=2,p=1")
        })?;
        let (mut m, mut t, mut p) = (None, None, None);
        for part in params.split(',') {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` should be key=value (m, t or p)"))?;
            let value: u32 = whole_number(value.trim())
                .ok_or_else(|| format!("`{part}`: the value must be a whole number"))?;
            let slot = match key.trim() {
                "m" => &mut m,
                "t" => &mut t,
                "p" => &mut p,
                other => {
                    return Err(format!(
                        "unknown argon2 parameter `{other}`; use m, t and p"
                    ))
                }
            };
            if slot.replace(value).is_some() {
                return Err(format!("parameter `{}` is given twice", key.trim()));
            }
        }
        let params = Self {
            memory_kib: m.ok_or("missing m= (memory in KiB)")?,
            iterations: t.ok_or("missing t= (iterations)")?,
            parallelism: p.ok_or("missing p= (parallelism)")?,
        };
        if params.iterations == 0 || params.parallelism == 0 || params.parallelism > 16 {
            return Err("t must be at least 1 and p between 1 and 16".into());
        }
        if params.memory_kib < 8 * params.parallelism || params.memory_kib > Self::MAX_MEMORY_KIB {
            return Err(format!(
                "m must be between {} and {} KiB",
                8 * params.parallelism,
                Self::MAX_MEMORY_KIB
            ));
        }
        Ok(params)
    }
}

impl fmt::Display for HashParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "argon2id:m={},t={},p={}",
            self.memory_kib, self.iterations, self.parallelism
        )
    }
}

/// Cross-origin policy: which browser origins may read responses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CorsOrigins {
    /// No cross-origin access at all (the default).
    #[default]
    None,
    /// Exact origins (`scheme://host[:port]`), compared byte for byte.
    List(Vec<HeaderValue>),
    /// `*`: any origin may read responses; refused together with credentials.
    Any,
}

impl FromStr for CorsOrigins {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        let entries: Vec<&str> = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if entries.is_empty() {
            return Ok(Self::None);
        }
        if entries.contains(&"*") {
            return if entries.len() == 1 {
                Ok(Self::Any)
            } else {
                Err("`*` cannot be combined with listed origins".into())
            };
        }
        entries
            .into_iter()
            .map(parse_origin)
            .collect::<Result<Vec<_>, _>>()
            .map(Self::List)
    }
}

/// An origin as browsers send it: scheme, host, optional port; no path, no trailing slash, no
/// wildcard. Anything else would never match, or would match more than intended.
fn parse_origin(raw: &str) -> Result<HeaderValue, String> {
    let rest = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .ok_or_else(|| format!("origin `{raw}` must start with https:// or http://"))?;
    let valid_host = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !valid_host || rest.starts_with(':') {
        return Err(format!(
            "origin `{raw}` must be exactly scheme://host[:port] (no path, wildcard or trailing slash)"
        ));
    }
    HeaderValue::from_str(&raw.to_ascii_lowercase())
        .map_err(|_| format!("origin `{raw}` is not valid"))
}

/// Networks of reverse proxies whose forwarding headers are believed, comma-separated CIDRs or
/// single addresses.
pub fn parse_networks(raw: &str) -> Result<Vec<ipnet::IpNet>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|entry| {
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("`{entry}` is not an IP address or CIDR like 10.0.0.0/8"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit_and_stay_bounded() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("14d"), Ok(Duration::from_secs(14 * 86_400)));
        for bad in [
            "",
            "15",
            "m",
            "15x",
            "-1s",
            "1.5h",
            "99999999999999999999d",
            "4000d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(format_duration(Duration::from_secs(900)), "15m");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
    }

    #[test]
    fn rates_parse_exactly() {
        let r: Rate = "10/minute".parse().unwrap_or(Rate {
            count: 0,
            per: Duration::ZERO,
        });
        assert_eq!((r.count(), r.period()), (10, Duration::from_secs(60)));
        assert_eq!(r.to_string(), "10/minute");
        for bad in [
            "0/minute",
            "10/min",
            "10",
            "/minute",
            "-1/second",
            "10/minute/x",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn hash_params_parse_and_compare() {
        let p: HashParams = "argon2id:m=19456,t=2,p=1".parse().unwrap_or(HashParams {
            memory_kib: 0,
            iterations: 0,
            parallelism: 0,
        });
        assert_eq!(p, HashParams::OWASP_MINIMUM);
        let weak: HashParams = "argon2id:t=1,p=1,m=4096".parse().unwrap_or_default();
        assert!(!weak.at_least(HashParams::OWASP_MINIMUM));
        assert!(!weak.meets_owasp_minimum());
        let owasp_first: HashParams = "argon2id:m=47104,t=1,p=1".parse().unwrap_or(weak);
        assert!(
            owasp_first.meets_owasp_minimum(),
            "OWASP's m=46MiB,t=1 is as strong as the minimum"
        );
        let too_little_memory: HashParams = "argon2id:m=19455,t=2,p=1".parse().unwrap_or_default();
        assert!(!too_little_memory.meets_owasp_minimum());
        for bad in [
            "bcrypt:12",
            "argon2i:m=19456,t=2,p=1",
            "argon2id:m=19456,t=2",
            "argon2id:m=19456,t=0,p=1",
            "argon2id:m=99999999,t=2,p=1",
            "argon2id:m=1,m=2,t=2,p=1",
        ] {
            assert!(bad.parse::<HashParams>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn origins_are_exact() {
        assert_eq!("".parse::<CorsOrigins>(), Ok(CorsOrigins::None));
        assert_eq!("*".parse::<CorsOrigins>(), Ok(CorsOrigins::Any));
        assert!(matches!(
            "https://app.example.com, http://localhost:3000".parse::<CorsOrigins>(),
            Ok(CorsOrigins::List(v)) if v.len() == 2
        ));
        for bad in [
            "https://app.example.com/",
            "https://*.example.com",
            "app.example.com",
            "*, https://a.example",
            "https://a.example/path",
        ] {
            assert!(bad.parse::<CorsOrigins>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn sizes_and_bools() {
        assert_eq!(parse_size("1MiB"), Ok(1_048_576));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert!(parse_size("0").is_err());
        assert!(parse_size("1GB").is_err());
        assert_eq!(parse_bool("true"), Ok(true));
        assert!(parse_bool("yes").is_err());
        assert!(parse_networks("10.0.0.0/8, 127.0.0.1, ::1").is_ok_and(|n| n.len() == 3));
        assert!(parse_networks("10.0.0.0/33").is_err());
    }
}
