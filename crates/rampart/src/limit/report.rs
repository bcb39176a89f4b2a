//! The IETF `RateLimit-Policy` and `RateLimit` response headers.
//!
//! Defends clients from guessing: a well-behaved client reads how much quota it has left and
//! when it returns, and slows down before it is refused. Written per
//! draft-ietf-httpapi-ratelimit-headers (structured-field lists, one item per policy):
//! `RateLimit-Policy: "auth";q=10;w=60` and `RateLimit: "auth";r=3;t=42`.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::gcra::Quota;

pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// A named limit. The name appears in headers and audit events, so it is a short lower-case
/// word (`[a-z0-9-]`), checked when the policy is made.
#[derive(Debug, Clone)]
pub struct Policy(std::sync::Arc<PolicyParts>);

#[derive(Debug)]
struct PolicyParts {
    name: &'static str,
    quota: Quota,
    header: HeaderValue,
}

impl Policy {
    /// `None` when `name` is not a short `[a-z0-9-]` word.
    pub fn new(name: &'static str, quota: Quota) -> Option<Self> {
        let valid = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return None;
        }
        let header = HeaderValue::from_str(&format!(
            "\"{name}\";q={};w={}",
            quota.burst(),
            seconds_up(quota.window())
        ))
        .ok()?;
        Some(Self(std::sync::Arc::new(PolicyParts {
            name,
            quota,
            header,
        })))
    }

    pub fn name(&self) -> &'static str {
        self.0.name
    }

    pub fn quota(&self) -> Quota {
        self.0.quota
    }
}

/// One policy's state for one client, as a response reports it.
#[derive(Debug, Clone)]
pub struct QuotaReport {
    pub policy: Policy,
    pub remaining: u32,
    /// Until the quota is whole again.
    pub reset: Duration,
}

impl QuotaReport {
    /// Appends this policy to the response's `RateLimit-Policy` and `RateLimit` lists.
    pub fn apply(&self, headers: &mut HeaderMap) {
        headers.append(RATELIMIT_POLICY, self.policy.0.header.clone());
        // `"name";r=N;t=N`, written directly: through `format!` this cost more than the
        // limit check it reports on.
        let name = self.policy.0.name;
        let mut digits = itoa::Buffer::new();
        let mut state = Vec::with_capacity(name.len() + 2 + 3 + 10 + 3 + 20);
        state.push(b'"');
        state.extend_from_slice(name.as_bytes());
        state.extend_from_slice(b"\";r=");
        state.extend_from_slice(digits.format(self.remaining).as_bytes());
        state.extend_from_slice(b";t=");
        state.extend_from_slice(digits.format(seconds_up(self.reset)).as_bytes());
        // Taken over without a copy: a policy name and two numbers are always a valid value.
        if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(state)) {
            headers.append(RATELIMIT, value);
        }
    }
}

/// Whole seconds, rounded up: a client told 0 while time remains would be refused again.
pub fn seconds_up(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_the_draft() {
        let quota = Quota::new(10, Duration::from_secs(60)).unwrap_or_else(|| unreachable!());
        let policy = Policy::new("auth", quota).unwrap_or_else(|| unreachable!());
        let mut headers = HeaderMap::new();
        QuotaReport {
            policy,
            remaining: 3,
            reset: Duration::from_millis(41_200),
        }
        .apply(&mut headers);
        assert_eq!(headers[RATELIMIT_POLICY], "\"auth\";q=10;w=60");
        assert_eq!(headers[RATELIMIT], "\"auth\";r=3;t=42");
    }

    #[test]
    fn policy_names_are_plain_words() {
        let quota = Quota::new(1, Duration::from_secs(1)).unwrap_or_else(|| unreachable!());
        let long: &'static str = "x".repeat(33).leak();
        for bad in ["", "Auth", "a\"b", "a;b", "a b", long] {
            assert!(Policy::new(bad, quota).is_none(), "{bad:?}");
        }
        assert!(Policy::new("login-account", quota).is_some());
    }
}
