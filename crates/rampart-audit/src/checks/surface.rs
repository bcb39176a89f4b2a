//! Passive and read-only checks of what every response carries: security headers (on success
//! and on errors), software banners, TLS and HSTS, the TRACE method, exposed docs and OpenAPI
//! documents, and cookie flags.

use http::Method;

use super::{excerpt, random_hex, Ctx};
use crate::client::{Answer, ProbeError, Req};
use crate::findings::{self, Finding, Severity};

pub(crate) async fn run(ctx: &mut Ctx<'_>) -> Result<(), ProbeError> {
    docs(ctx);

    let success = first_success(ctx).await?;
    let (unknown_path, error) = ctx.unknown_path().await?;
    match &success {
        Some((line, answer)) => {
            let missing = missing_headers(answer);
            if !missing.is_empty() {
                ctx.report(Finding::new(
                    &findings::HEADERS_SUCCESS,
                    Severity::Low,
                    format!("{line} -> {}: missing {}", answer.status, missing.join(", ")),
                ));
            }
        }
        None => ctx.note("no public GET answered 2xx (tried the spec's, /health and /): headers on success responses not checked"),
    }
    let missing = missing_headers(&error);
    if !missing.is_empty() {
        ctx.report(Finding::new(
            &findings::HEADERS_ERROR,
            Severity::Low,
            format!(
                "GET {unknown_path} -> {}: missing {}",
                error.status,
                missing.join(", ")
            ),
        ));
    }

    let reference = success.as_ref().map_or(&error, |(_, a)| a);
    transport(ctx, reference);
    banners(ctx);
    trace(ctx).await
}

/// The first 2xx among the public GETs the spec lists, `/health` and `/`. Documents under
/// `/.well-known/` (JWKS, discovery) are skipped: they are public and meant to be cached.
async fn first_success(ctx: &mut Ctx<'_>) -> Result<Option<(String, Answer)>, ProbeError> {
    let mut candidates: Vec<String> = ctx
        .plain_gets(false)
        .filter(|o| !o.path.starts_with("/.well-known/"))
        .take(2)
        .map(|o| o.path.clone())
        .collect();
    for fallback in ["/health", "/"] {
        if !candidates.iter().any(|c| c == fallback) {
            candidates.push(fallback.to_owned());
        }
    }
    for path in candidates {
        let req = Req::get(&path);
        let answer = ctx.send(&req).await?;
        if answer.is_success() {
            return Ok(Some((req.line(), answer)));
        }
    }
    Ok(None)
}

/// The security headers an API response should carry and this one lacks.
pub(crate) fn missing_headers(answer: &Answer) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if !answer
        .header("x-content-type-options")
        .is_some_and(|v| v.eq_ignore_ascii_case("nosniff"))
    {
        missing.push("X-Content-Type-Options: nosniff");
    }
    let framing = answer.header("x-frame-options").is_some()
        || answer
            .header("content-security-policy")
            .is_some_and(|v| v.contains("frame-ancestors"));
    if !framing {
        missing.push("frame protection (X-Frame-Options or CSP frame-ancestors)");
    }
    if !answer
        .header("cache-control")
        .is_some_and(|v| v.contains("no-store"))
    {
        missing.push("Cache-Control: no-store");
    }
    if answer.header("referrer-policy").is_none() {
        missing.push("Referrer-Policy");
    }
    missing
}

fn transport(ctx: &mut Ctx<'_>, answer: &Answer) {
    let host = ctx.probe.origin().host_str().unwrap_or_default().to_owned();
    if ctx.probe.is_https() {
        if let Some(finding) = hsts_finding(answer) {
            ctx.report(finding);
        }
    } else {
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let (severity, evidence) = if loopback {
            (Severity::Info, format!("{host} is a loopback address: fine for a local run; HSTS cannot be checked over plain HTTP"))
        } else {
            (
                Severity::Medium,
                format!("the target {} is plain HTTP", ctx.probe.origin()),
            )
        };
        ctx.report(Finding::new(&findings::PLAIN_HTTP, severity, evidence));
    }
}

/// What is wrong with an HTTPS response's HSTS, if anything.
fn hsts_finding(answer: &Answer) -> Option<Finding> {
    match answer.header("strict-transport-security") {
        None => Some(Finding::new(
            &findings::HSTS,
            Severity::Medium,
            format!(
                "HTTPS response ({}) without Strict-Transport-Security",
                answer.status
            ),
        )),
        Some(value) if hsts_max_age(value) < 15_552_000 => Some(Finding::new(
            &findings::HSTS,
            Severity::Low,
            format!("Strict-Transport-Security: {value} (max-age under 180 days)"),
        )),
        Some(_) => None,
    }
}

fn hsts_max_age(value: &str) -> u64 {
    value
        .split(';')
        .filter_map(|part| {
            let part = part.trim();
            part.get(..8)
                .filter(|key| key.eq_ignore_ascii_case("max-age="))
                .map(|_| &part[8..])
        })
        .find_map(|v| v.trim_matches('"').parse().ok())
        .unwrap_or(0)
}

fn banners(ctx: &mut Ctx<'_>) {
    let mut seen = std::collections::BTreeSet::new();
    for (_, answer) in &ctx.seen {
        for name in ["server", "x-powered-by", "x-aspnet-version"] {
            if let Some(value) = answer.header(name) {
                seen.insert(format!("{name}: {value}"));
            }
        }
    }
    if seen.is_empty() {
        return;
    }
    let versioned = seen.iter().any(|b| b.chars().any(|c| c.is_ascii_digit()));
    let severity = if versioned {
        Severity::Low
    } else {
        Severity::Info
    };
    let evidence = seen.into_iter().collect::<Vec<_>>().join("; ");
    ctx.report(Finding::new(&findings::BANNER, severity, evidence));
}

async fn trace(ctx: &mut Ctx<'_>) -> Result<(), ProbeError> {
    let marker = random_hex(8);
    let answer = ctx
        .send(&Req::new(Method::TRACE, "/").header("x-rampart-audit", marker.clone()))
        .await?;
    if answer.is_success() && answer.body.contains(&marker) {
        ctx.report(Finding::new(
            &findings::TRACE,
            Severity::Low,
            format!(
                "TRACE / -> {}: the request, headers included, was echoed back",
                answer.status
            ),
        ));
    }
    Ok(())
}

/// Interactive docs and OpenAPI documents, as discovery found them before the checks ran
/// (`crate::discover`).
fn docs(ctx: &mut Ctx<'_>) {
    if let Some(spec) = &ctx.discovered.spec {
        let evidence = format!(
            "GET {} -> {}: an OpenAPI document with {} operations",
            spec.path,
            spec.status,
            spec.operations.len()
        );
        ctx.report(Finding::new(&findings::DOCS_SPEC, Severity::Low, evidence));
    }
    if let Some((page, status)) = &ctx.discovered.docs_page {
        let evidence = format!("GET {page} -> {status}: an interactive docs page");
        ctx.report(Finding::new(&findings::DOCS_UI, Severity::Low, evidence));
    }
}

/// Flags of every cookie the target set during the run.
pub(crate) async fn cookies(ctx: &mut Ctx<'_>) -> Result<(), ProbeError> {
    let mut problems = Vec::new();
    let mut sensitive = false;
    for (line, answer) in &ctx.seen {
        for cookie in answer.headers.get_all("set-cookie") {
            let Ok(cookie) = cookie.to_str() else {
                continue;
            };
            let lower = cookie.to_ascii_lowercase();
            let attributes: Vec<&str> = lower.split(';').map(str::trim).collect();
            let mut lacks = Vec::new();
            if !attributes.contains(&"secure") {
                lacks.push("Secure");
            }
            if !attributes.contains(&"httponly") {
                lacks.push("HttpOnly");
            }
            if !attributes.iter().any(|a| a.starts_with("samesite=")) {
                lacks.push("SameSite");
            }
            if lacks.is_empty() {
                continue;
            }
            let name = cookie.split('=').next().unwrap_or_default().trim();
            let lname = name.to_ascii_lowercase();
            sensitive |= ["session", "token", "auth", "sid", "jwt"]
                .iter()
                .any(|s| lname.contains(s));
            problems.push(format!(
                "{line}: cookie `{}` lacks {}",
                excerpt(name, 40),
                lacks.join(", ")
            ));
        }
    }
    problems.dedup();
    if !problems.is_empty() {
        let severity = if sensitive {
            Severity::Medium
        } else {
            Severity::Low
        };
        ctx.report(Finding::new(
            &findings::COOKIE_FLAGS,
            severity,
            problems.join("; "),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(headers: &[(&'static str, &str)]) -> Answer {
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, value.parse().unwrap());
        }
        Answer {
            status: 200,
            headers: map,
            body: String::new(),
            elapsed: std::time::Duration::ZERO,
            credentialed: false,
        }
    }

    #[test]
    fn headers_are_judged_by_value_not_presence() {
        let good = answer(&[
            ("x-content-type-options", "nosniff"),
            (
                "content-security-policy",
                "default-src 'none'; frame-ancestors 'none'",
            ),
            ("cache-control", "no-store"),
            ("referrer-policy", "no-referrer"),
        ]);
        assert!(missing_headers(&good).is_empty());
        let weak = answer(&[
            ("x-content-type-options", "sniff-away"),
            ("cache-control", "max-age=60"),
        ]);
        assert_eq!(missing_headers(&weak).len(), 4);
    }

    #[test]
    fn https_answers_need_a_long_hsts() {
        assert_eq!(
            hsts_finding(&answer(&[])).map(|f| f.severity),
            Some(Severity::Medium)
        );
        let short = answer(&[("strict-transport-security", "max-age=300")]);
        assert_eq!(
            hsts_finding(&short).map(|f| f.severity),
            Some(Severity::Low)
        );
        let good = answer(&[(
            "strict-transport-security",
            "max-age=63072000; includeSubDomains",
        )]);
        assert!(hsts_finding(&good).is_none());
    }

    #[test]
    fn hsts_max_age_is_read_from_any_position() {
        assert_eq!(
            hsts_max_age("includeSubDomains; max-age=63072000"),
            63_072_000
        );
        assert_eq!(hsts_max_age("max-age=\"300\""), 300);
        assert_eq!(hsts_max_age("preload"), 0);
    }
}
