//! Default deny, seen from outside: routes the document marks as secured must refuse anonymous
//! callers, and an anonymous caller must not be able to tell which paths exist.

use http::Method;

use super::{excerpt, is_state_changing_path, random_id, Ctx};
use crate::client::{ProbeError, Req};
use crate::findings::{self, Finding, Severity};

/// Secured operations probed anonymously, at most.
const MAX_PROBED: usize = 12;

pub(crate) async fn run(ctx: &mut Ctx<'_>) -> Result<(), ProbeError> {
    let secured: Vec<(Method, String)> = ctx
        .operations
        .iter()
        .filter(|o| {
            o.secured
                && matches!(o.method, Method::GET | Method::HEAD)
                && !is_state_changing_path(&o.path)
        })
        .take(MAX_PROBED)
        .map(|o| (o.method.clone(), o.fill(&random_id())))
        .collect();
    if secured.is_empty() {
        ctx.note(if ctx.operations.is_empty() {
            "no OpenAPI document (give --spec FILE): anonymous access to secured routes was not checked"
        } else {
            "the OpenAPI document marks no GET operation as secured: anonymous access was not checked"
        });
        return Ok(());
    }
    // An unknown path first: what the target answers for nothing at all. A single-page app or a
    // gateway answering 2xx to every path is not an open route.
    let (unknown, control) = ctx.unknown_path().await?;
    let mut refused_status = None;
    let mut catch_all = Vec::new();
    for (method, path) in &secured {
        let answer = ctx.send(&Req::new(method.clone(), path)).await?;
        if answer.is_success() {
            if control.is_success() && control.body == answer.body {
                catch_all.push(path.clone());
                continue;
            }
            ctx.report(Finding::new(
                &findings::ANONYMOUS_ACCESS,
                Severity::High,
                format!(
                    "{method} {path} without credentials -> {} (the document requires credentials): {}",
                    answer.status,
                    excerpt(&answer.body, 160)
                ),
            ));
        } else if matches!(answer.status, 401 | 403) {
            refused_status.get_or_insert(answer.status);
        }
    }
    if !catch_all.is_empty() {
        ctx.note(format!(
            "{} answered anonymous callers exactly as the unknown path {unknown} did ({}): a catch-all, so not judged",
            catch_all.join(", "),
            control.status
        ));
    }

    // The route map: an unknown path should look like a secured one to an anonymous caller.
    if let (Some(secured_status), 404) = (refused_status, control.status) {
        ctx.report(Finding::new(
            &findings::ROUTE_MAP,
            Severity::Low,
            format!(
                "anonymous GET {unknown} -> 404 but secured routes -> {secured_status}: existing paths can be told from missing ones"
            ),
        ));
    }
    Ok(())
}
