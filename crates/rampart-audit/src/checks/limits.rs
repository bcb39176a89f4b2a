//! Resource limits: an oversized body sent to the login route (the one write the auditor is
//! allowed), and a huge page size asked of list endpoints (read-only).

use http::Method;

use super::session::{login_request, says_login_failed};
use super::{excerpt, is_state_changing_path, random_hex, Ctx, LoginFormat};
use crate::client::{ProbeError, Req};
use crate::findings::{self, Finding, Severity};

/// Just over 2 MiB: above any sensible JSON body limit, small enough to send quickly.
const OVERSIZED: usize = 2 * 1024 * 1024 + 1024;
/// Far above any sane cap (100), small enough not to load the target.
const HUGE_PAGE: u32 = 1000;
const LISTS_PROBED: usize = 3;

pub(crate) async fn run(ctx: &mut Ctx<'_>) -> Result<(), ProbeError> {
    body(ctx).await?;
    pages(ctx).await
}

/// A failed login whose password is 2 MiB, in the login's own format (JSON or form): an API
/// with a body limit refuses it with 413 (or closes the connection) before reading it.
async fn body(ctx: &mut Ctx<'_>) -> Result<(), ProbeError> {
    let login = ctx.login_path.clone();
    let format = ctx
        .login_format
        .or_else(|| ctx.login_formats.first().copied())
        .unwrap_or(LoginFormat::Json);
    let padding = "a".repeat(OVERSIZED);
    let name = format!("rampart-audit-{}", random_hex(6));
    let req = login_request(&login, format, ctx.login_name_field, &name, &padding);
    let kind = match format {
        LoginFormat::Json => "JSON",
        LoginFormat::Form => "form",
    };
    match ctx.send(&req).await {
        Ok(answer) if answer.status == 413 => {}
        Ok(answer) if matches!(answer.status, 404 | 405) => {
            ctx.note(format!("POST {login} -> {}: no login route there (--login-path), the body limit was not checked", answer.status));
        }
        Ok(answer) if answer.status == 429 || answer.status >= 500 => {
            ctx.note(format!(
                "POST {login} with a 2 MiB body -> {}: inconclusive for the body limit",
                answer.status
            ));
        }
        Ok(answer) => {
            // What shows the body was read: the login's own failure answer, or a validation
            // error about its fields, rather than a refusal of its size.
            let read_as = if says_login_failed(&answer) || matches!(answer.status, 400 | 401 | 403)
            {
                "answered as a failed login, so the whole body was read and the password checked"
            } else if answer.status == 422 {
                "a validation error about its fields, so the whole body was read and parsed"
            } else {
                "read and processed"
            };
            ctx.report(Finding::new(
                &findings::OVERSIZED_BODY,
                Severity::Medium,
                format!(
                    "POST {login} with a 2 MiB {kind} body (the login's own format) -> {} `{}`: {read_as}, instead of 413",
                    answer.status,
                    excerpt(&answer.body, 100)
                ),
            ));
        }
        Err(ProbeError::Network(_)) => {
            // Closing the connection on an oversized body is a refusal too.
        }
        Err(err) => return Err(err),
    }
    Ok(())
}

async fn pages(ctx: &mut Ctx<'_>) -> Result<(), ProbeError> {
    let token = ctx.token.clone();
    let lists: Vec<(String, String, bool)> = ctx
        .operations
        .iter()
        .filter(|o| {
            o.method == Method::GET && o.path_params.is_empty() && !is_state_changing_path(&o.path)
        })
        .filter_map(|o| {
            o.page_size_param()
                .map(|p| (o.path.clone(), p.to_owned(), o.secured))
        })
        .filter(|(_, _, secured)| !secured || token.is_some())
        .take(LISTS_PROBED)
        .collect();
    if lists.is_empty() {
        ctx.note("no list operation with a page-size parameter (limit, per_page, ...) that the auditor can call: page caps were not checked");
        return Ok(());
    }
    for (path, param, secured) in lists {
        let request = |size: u32| {
            let req = Req::get(format!("{path}?{param}={size}"));
            match (&token, secured) {
                (Some(t), true) => req.bearer(t),
                _ => req,
            }
        };
        let huge = ctx.send(&request(HUGE_PAGE)).await?;
        if !huge.is_success() {
            continue;
        }
        let served = huge.json().as_ref().map_or(0, longest_array);
        if served > 100 {
            ctx.report(Finding::new(
                &findings::HUGE_PAGE,
                Severity::Medium,
                format!(
                    "GET {path}?{param}={HUGE_PAGE} -> {} with {served} records in one page",
                    huge.status
                ),
            ));
        } else {
            ctx.note(format!(
                "GET {path}?{param}={HUGE_PAGE} was accepted ({}) and returned {served} records: whether it caps the page size cannot be told with 100 or fewer records",
                huge.status
            ));
        }
    }
    Ok(())
}

/// The length of the longest array anywhere in the document (a page's records).
pub(crate) fn longest_array(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => items
            .len()
            .max(items.iter().map(longest_array).max().unwrap_or(0)),
        serde_json::Value::Object(fields) => fields.values().map(longest_array).max().unwrap_or(0),
        _ => 0,
    }
}
