//! Cross-origin reads: whether a page on another site could read the API's answers with the
//! user's credentials. Sends only GET and OPTIONS with made-up `Origin` headers.

use http::Method;

use super::Ctx;
use crate::client::{Answer, ProbeError, Req};
use crate::findings::{self, Finding, Severity};

/// A origin no deployment lists (`.invalid` never resolves).
const EVIL: &str = "https://evil.rampart-audit.invalid";

pub(crate) async fn run(ctx: &mut Ctx<'_>) -> Result<(), ProbeError> {
    // A path that answers: a secured one with the token when there is one, else a public one.
    let token = ctx.token.clone();
    let path = match (&token, ctx.plain_gets(true).next()) {
        (Some(_), Some(op)) => op.path.clone(),
        _ => ctx
            .plain_gets(false)
            .next()
            .map_or_else(|| "/".to_owned(), |o| o.path.clone()),
    };
    let with_auth = |req: Req| match &token {
        Some(t) => req.bearer(t),
        None => req,
    };

    let answer = ctx
        .send(&with_auth(Req::get(&path).header("origin", EVIL)))
        .await?;
    let credentials = allows_credentials(&answer);
    match answer.header("access-control-allow-origin") {
        Some(EVIL) => ctx.report(Finding::new(
            &findings::CORS_REFLECTED,
            if credentials { Severity::High } else { Severity::Medium },
            format!(
                "GET {path} with Origin: {EVIL} -> Access-Control-Allow-Origin: {EVIL}{}",
                if credentials { ", Access-Control-Allow-Credentials: true" } else { "" }
            ),
        )),
        Some("*") if credentials => ctx.report(Finding::new(
            &findings::CORS_WILDCARD_CREDENTIALS,
            Severity::Medium,
            format!("GET {path} -> Access-Control-Allow-Origin: * with Access-Control-Allow-Credentials: true"),
        )),
        _ => {}
    }

    let answer = ctx
        .send(&with_auth(Req::get(&path).header("origin", "null")))
        .await?;
    if answer.header("access-control-allow-origin") == Some("null") {
        let credentials = allows_credentials(&answer);
        ctx.report(Finding::new(
            &findings::CORS_NULL,
            if credentials {
                Severity::High
            } else {
                Severity::Medium
            },
            format!("GET {path} with Origin: null -> Access-Control-Allow-Origin: null"),
        ));
    }

    let preflight = Req::new(Method::OPTIONS, &path)
        .header("origin", EVIL)
        .header("access-control-request-method", "DELETE")
        .header(
            "access-control-request-headers",
            "authorization, x-rampart-audit",
        );
    let answer = ctx.send(&preflight).await?;
    if permissive_preflight(&answer) {
        ctx.report(Finding::new(
            &findings::CORS_PREFLIGHT,
            Severity::Medium,
            format!(
                "OPTIONS {path} from {EVIL} asking for DELETE with authorization, x-rampart-audit -> {}: allow-origin {}, allow-methods {}, allow-headers {}",
                answer.status,
                answer.header("access-control-allow-origin").unwrap_or("-"),
                answer.header("access-control-allow-methods").unwrap_or("-"),
                answer.header("access-control-allow-headers").unwrap_or("-"),
            ),
        ));
    }
    Ok(())
}

fn allows_credentials(answer: &Answer) -> bool {
    answer
        .header("access-control-allow-credentials")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// A preflight from an unlisted origin that grants a destructive method and a made-up header.
fn permissive_preflight(answer: &Answer) -> bool {
    // `*` without credentials is the common public-API default and exposes nothing a page
    // could not fetch anyway; the evil origin echoed, or any origin with credentials, does.
    let origin_ok = match answer.header("access-control-allow-origin") {
        Some(EVIL) => true,
        Some("*") => allows_credentials(answer),
        _ => false,
    };
    let grants = |name: &str, wanted: &str| {
        answer.header(name).is_some_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|item| item == "*" || item.eq_ignore_ascii_case(wanted))
        })
    };
    answer.status < 400
        && origin_ok
        && grants("access-control-allow-methods", "DELETE")
        && grants("access-control-allow-headers", "x-rampart-audit")
}
