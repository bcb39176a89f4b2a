//! What a team has already looked at: suppressions (a finding on a route, with the reason and
//! an expiry date) and a baseline (a previous JSON report), so a run in CI fails only on what
//! is new.
//!
//! Defends against two opposite failures: alert fatigue (a known, accepted finding failing
//! every build until the check is switched off altogether) and silent hiding (a suppression
//! nobody revisits). Every suppression needs a reason and an expiry; an expired one stops
//! applying and the report says so; suppressed and baselined findings are listed and counted in
//! the report, never dropped without a trace.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::findings::Finding;

/// One accepted finding, as the suppression file lists it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Suppression {
    /// The check, e.g. `RA-DOCS-1`.
    pub id: String,
    /// `METHOD /path` the finding is about; `*` at the end matches any rest. Absent: the
    /// finding on every route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Why it is accepted: shown in every report it applies to.
    pub reason: String,
    /// `YYYY-MM-DD`; from that day on it no longer applies.
    pub expires: String,
}

/// The suppressions in `path` (YAML or JSON: a list of `{id, route, reason, expires}`).
pub fn load_suppressions(path: &Path) -> Result<Vec<Suppression>, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let value = serde_json::from_str(&text)
        .ok()
        .or_else(|| crate::yaml::to_json(&text))
        .ok_or_else(|| format!("{shown} is neither JSON nor YAML"))?;
    let list: Vec<Suppression> = serde_json::from_value(value).map_err(|e| {
        format!("{shown}: expected a list of {{id, route, reason, expires}} entries: {e}")
    })?;
    for (n, entry) in list.iter().enumerate() {
        let at = format!("{shown}, entry {}", n + 1);
        if !entry.id.starts_with("RA-") {
            return Err(format!("{at}: `{}` is not a check id (RA-...)", entry.id));
        }
        if entry.reason.trim().is_empty() {
            return Err(format!("{at}: a suppression needs a reason"));
        }
        if parse_date(&entry.expires).is_none() {
            return Err(format!(
                "{at}: expires `{}` is not a date (YYYY-MM-DD)",
                entry.expires
            ));
        }
    }
    Ok(list)
}

/// The findings of a previous JSON report (`--format json`), by check and route.
pub fn load_baseline(path: &Path) -> Result<Vec<(String, Option<String>)>, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let report: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{shown} is not a JSON report of rampart audit: {e}"))?;
    let findings = report
        .get("findings")
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| {
            format!("{shown} has no `findings` list: give a report written with --format json")
        })?;
    Ok(findings
        .iter()
        .filter_map(|f| {
            let id = f.get("id")?.as_str()?.to_owned();
            let route = f
                .get("route")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .or_else(|| f.get("evidence")?.as_str().and_then(route_in));
            Some((id, route))
        })
        .collect())
}

/// A finding set aside by a suppression.
#[derive(Debug, Clone, Serialize)]
pub struct Suppressed {
    pub finding: Finding,
    pub reason: String,
    pub expires: String,
}

/// What triage did to a run's findings.
#[derive(Debug, Default)]
pub struct Triaged {
    pub kept: Vec<Finding>,
    pub suppressed: Vec<Suppressed>,
    /// Findings already in the baseline.
    pub baselined: Vec<Finding>,
    /// Suppressions past their date (they did not apply).
    pub expired: Vec<Suppression>,
}

/// Splits `findings` into those still to report, those suppressed, and those the baseline
/// already held, as of `today` (`YYYY-MM-DD`).
pub fn triage(
    findings: Vec<Finding>,
    suppressions: &[Suppression],
    baseline: Option<&[(String, Option<String>)]>,
    today: &str,
) -> Triaged {
    let (live, expired): (Vec<&Suppression>, Vec<&Suppression>) = suppressions
        .iter()
        .partition(|s| s.expires.as_str() > today);
    let mut out = Triaged {
        expired: expired.into_iter().cloned().collect(),
        ..Triaged::default()
    };
    for finding in findings {
        if let Some(s) = live.iter().find(|s| covers(s, &finding)) {
            out.suppressed.push(Suppressed {
                finding,
                reason: s.reason.clone(),
                expires: s.expires.clone(),
            });
        } else if baseline.is_some_and(|known| {
            known
                .iter()
                .any(|(id, route)| *id == finding.id && *route == finding.route)
        }) {
            out.baselined.push(finding);
        } else {
            out.kept.push(finding);
        }
    }
    out
}

fn covers(suppression: &Suppression, finding: &Finding) -> bool {
    if suppression.id != finding.id {
        return false;
    }
    let Some(wanted) = &suppression.route else {
        return true;
    };
    let Some(route) = &finding.route else {
        return false;
    };
    match wanted.strip_suffix('*') {
        Some(prefix) => route.starts_with(prefix),
        None => route == wanted,
    }
}

/// The first `METHOD /path` in a finding's evidence, query and made-up segments taken out
/// (`GET /rampart-audit-1a2b3c4d/5e6f7a8b -> 404` is `GET /*/*`), so the same finding has the
/// same route in every run.
pub fn route_in(evidence: &str) -> Option<String> {
    const METHODS: [&str; 8] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
    ];
    let words: Vec<&str> = evidence.split_whitespace().collect();
    words.windows(2).find_map(|pair| {
        let method = METHODS.iter().find(|m| **m == pair[0])?;
        let path = pair[1]
            .trim_end_matches([':', ',', ';', ')', '.'])
            .split(['?', '#'])
            .next()?;
        if !path.starts_with('/') {
            return None;
        }
        let segments: Vec<&str> = path
            .split('/')
            .map(|s| if looks_made_up(s) { "*" } else { s })
            .collect();
        Some(format!("{method} {}", segments.join("/")))
    })
}

/// A path segment the auditor made up, or a random id: the same finding next run has another.
fn looks_made_up(segment: &str) -> bool {
    let hex_run = segment
        .split(|c: char| !c.is_ascii_hexdigit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    segment.starts_with("rampart-audit-") || hex_run >= 8
}

/// Today in UTC as `YYYY-MM-DD`.
pub fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 as a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

fn parse_date(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then_some((y, m, d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::{self, Severity};

    fn finding(check: &findings::Check, evidence: &str) -> Finding {
        Finding::new(check, Severity::Low, evidence)
    }

    #[test]
    fn routes_are_read_from_evidence_and_made_up_parts_blanked() {
        assert_eq!(
            route_in("GET /rampart-audit-12378cc8/dc66eb6e -> 404: missing nosniff").as_deref(),
            Some("GET /*/*")
        );
        assert_eq!(
            route_in("20 failed logins at POST /users/v1/login from one address").as_deref(),
            Some("POST /users/v1/login")
        );
        assert_eq!(
            route_in("GET /api/v1/items/941aeeef-a036-49fb-a14e-660188c3e795?limit=1000: x")
                .as_deref(),
            Some("GET /api/v1/items/*")
        );
        assert_eq!(route_in("server: uvicorn"), None);
    }

    #[test]
    fn suppressions_apply_by_id_and_route_until_they_expire() {
        let docs = finding(
            &findings::DOCS_UI,
            "GET /docs -> 200: an interactive docs page",
        );
        let spec = finding(&findings::DOCS_SPEC, "GET /openapi.json -> 200: a document");
        let banner = finding(&findings::BANNER, "server: uvicorn");
        let suppressions = [
            Suppression {
                id: "RA-DOCS-1".into(),
                route: Some("GET /do*".into()),
                reason: "behind the VPN".into(),
                expires: "2027-01-01".into(),
            },
            Suppression {
                id: "RA-BANNER-1".into(),
                route: None,
                reason: "the proxy strips it".into(),
                expires: "2026-12-01".into(),
            },
        ];
        let out = triage(vec![docs, spec, banner], &suppressions, None, "2026-12-05");
        assert_eq!(out.suppressed.len(), 1);
        assert_eq!(out.suppressed[0].reason, "behind the VPN");
        let kept: Vec<&str> = out.kept.iter().map(|f| f.id).collect();
        assert_eq!(
            kept,
            ["RA-DOCS-2", "RA-BANNER-1"],
            "the banner's suppression expired"
        );
        assert_eq!(out.expired.len(), 1);
        // The day it expires, it no longer applies.
        let again = triage(
            vec![finding(&findings::DOCS_UI, "GET /docs -> 200")],
            &suppressions,
            None,
            "2027-01-01",
        );
        assert_eq!(again.kept.len(), 1);
    }

    #[test]
    fn a_baseline_keeps_only_what_is_new() {
        let old = [
            ("RA-HDR-2".to_owned(), Some("GET /*/*".to_owned())),
            ("RA-RATE-1".to_owned(), Some("POST /login".to_owned())),
        ];
        let out = triage(
            vec![
                finding(
                    &findings::HEADERS_ERROR,
                    "GET /rampart-audit-aaaabbbb/ccccdddd -> 404",
                ),
                finding(
                    &findings::NO_LOGIN_LIMIT,
                    "20 failed logins at POST /api/login",
                ),
            ],
            &[],
            Some(&old),
            "2026-12-05",
        );
        assert_eq!(out.baselined.len(), 1);
        assert_eq!(out.kept[0].id, "RA-RATE-1", "a new route is new");
    }

    #[test]
    fn a_suppression_file_must_give_reasons_and_real_dates() {
        let dir = std::env::temp_dir().join(format!("rampart-triage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("s.yaml");
        std::fs::write(
            &file,
            "- id: RA-DOCS-1\n  route: GET /docs\n  reason: internal only\n  expires: 2027-03-01\n",
        )
        .unwrap();
        assert_eq!(
            load_suppressions(&file).unwrap()[0].route.as_deref(),
            Some("GET /docs")
        );
        for bad in [
            "- id: RA-DOCS-1\n  reason: ''\n  expires: 2027-03-01\n",
            "- id: RA-DOCS-1\n  reason: x\n  expires: next year\n",
            "- id: DOCS\n  reason: x\n  expires: 2027-03-01\n",
            "- id: RA-DOCS-1\n  reason: x\n  expires: 2027-03-01\n  owner: me\n",
        ] {
            std::fs::write(&file, bad).unwrap();
            assert!(load_suppressions(&file).is_err(), "{bad}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn today_is_a_calendar_date() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_792), (2026, 12, 5));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert!(parse_date(&today()).is_some());
    }
}
