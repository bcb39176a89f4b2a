//! Error leakage from the parameters of read operations: each path and query parameter of the
//! document's GET operations gets a lone quote, a lone backslash, a 2,000-character value and
//! a value of the wrong type, and every answer is searched for debug pages, SQL errors and
//! stack traces ([`super::signatures`]).
//!
//! Defends against the classic error-based findings (VAmPI's `GET /users/v1/name1'` answers
//! with the Werkzeug debugger and the SQLite error quoting the query) while keeping the target
//! safe: GET only, never a path that reads as state-changing, at most [`MAX_REQUESTS`].

use http::Method;

use super::errors::Leaks;
use super::{is_state_changing_path, Ctx};
use crate::client::{ProbeError, Req};
use crate::spec::Operation;

/// Requests this check sends at most (of the default budget of 300).
pub(crate) const MAX_REQUESTS: usize = 40;
/// The share of what is left of the budget this check may take, at most (one in this many).
const BUDGET_SHARE: u32 = 4;
/// A lone quote and a lone backslash, percent-encoded (a raw `\` would read as `/` in a URL).
const FIXED_PROBES: [&str; 2] = ["1%27", "1%5C"];
const LONG_VALUE_LEN: usize = 2000;
const PROBES_PER_PARAMETER: usize = FIXED_PROBES.len() + 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Path,
    Query,
}

/// One parameter to probe.
#[derive(Debug, Clone)]
struct Target {
    operation: Operation,
    name: String,
    place: Place,
}

impl Target {
    /// The request with `value` (percent-encoded) in this parameter and `1` in every other
    /// path parameter.
    fn request(&self, value: &str, token: Option<&str>) -> Req {
        let path = fill_each(&self.operation.path, |name| {
            if self.place == Place::Path && name == self.name {
                value.to_owned()
            } else {
                "1".to_owned()
            }
        });
        let path = match self.place {
            Place::Path => path,
            Place::Query => format!("{path}?{}={value}", self.name),
        };
        let req = Req::get(path);
        match (self.operation.secured, token) {
            (true, Some(token)) => req.bearer(token),
            _ => req,
        }
    }

    /// A value of the wrong type: text where the document (or the name) says a number, a uuid
    /// or a boolean, a number where it says text.
    fn wrong_type(&self) -> &'static str {
        let declared = self
            .operation
            .param_types
            .get(&self.name)
            .map(String::as_str);
        let numeric_name = {
            let name = self.name.to_ascii_lowercase();
            name == "id"
                || name.ends_with("_id")
                || self.name.ends_with("Id")
                || ["limit", "offset", "page", "skip", "size", "count"].contains(&name.as_str())
        };
        let expects_text = match declared {
            Some(kind) => !matches!(kind, "integer" | "number" | "uuid" | "boolean"),
            None => !numeric_name,
        };
        if expects_text {
            "12345"
        } else {
            "rampart"
        }
    }
}

/// `template` with each `{name}` replaced by `value(name)`.
pub(crate) fn fill_each(template: &str, mut value: impl FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            rest = &rest[open..];
            break;
        };
        out.push_str(&value(&rest[open + 1..open + close]));
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// Every parameter of the read operations, taken in turns (each operation's first parameter,
/// then each one's second, ...) so a cap spreads over operations; path parameters first.
fn targets(operations: &[Operation]) -> Vec<Target> {
    let mut reads: Vec<&Operation> = Vec::new();
    for operation in operations {
        if operation.method == Method::GET
            && !is_state_changing_path(&operation.path)
            && !reads.iter().any(|r| r.path == operation.path)
        {
            reads.push(operation);
        }
    }
    let per_operation: Vec<Vec<Target>> = reads
        .iter()
        .map(|operation| {
            let path = operation.path_params.iter().map(|n| (n, Place::Path));
            let query = operation.query_params.iter().map(|n| (n, Place::Query));
            path.chain(query)
                .map(|(name, place)| Target {
                    operation: (*operation).clone(),
                    name: name.clone(),
                    place,
                })
                .collect()
        })
        .collect();
    let rounds = per_operation.iter().map(Vec::len).max().unwrap_or(0);
    (0..rounds)
        .flat_map(|round| per_operation.iter().filter_map(move |ts| ts.get(round)))
        .cloned()
        .collect()
}

/// Probes the parameters, filing what the answers reveal in `leaks`.
pub(crate) async fn probe(ctx: &mut Ctx<'_>, leaks: &mut Leaks) -> Result<(), ProbeError> {
    let all = targets(&ctx.operations);
    if all.is_empty() {
        if !ctx.operations.is_empty() {
            ctx.note("the OpenAPI document lists no GET operation with parameters: error leakage from parameters was not checked");
        }
        return Ok(());
    }
    let affordable = (ctx.probe.remaining() / BUDGET_SHARE) as usize;
    let capacity = MAX_REQUESTS.min(affordable) / PROBES_PER_PARAMETER;
    if all.len() > capacity {
        let left: Vec<String> = all[capacity..]
            .iter()
            .map(|t| format!("{} of GET {}", t.name, t.operation.path))
            .collect();
        ctx.note(format!(
            "error leakage: {} of {} GET parameters were not probed (at most {MAX_REQUESTS} requests, {PROBES_PER_PARAMETER} per parameter): {}",
            left.len(),
            all.len(),
            super::excerpt(&left.join(", "), 300)
        ));
    }
    let token = ctx.token.clone();
    let long = "A".repeat(LONG_VALUE_LEN);
    for target in all.iter().take(capacity) {
        let probes = FIXED_PROBES
            .iter()
            .map(|value| (*value, true))
            .chain([(long.as_str(), false), (target.wrong_type(), false)]);
        for (value, quote) in probes {
            let req = target.request(value, token.as_deref());
            let answer = ctx.send(&req).await?;
            leaks.record(&req.line(), &answer, quote);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operation(path: &str, path_params: &[&str], query: &[&str], secured: bool) -> Operation {
        Operation {
            method: Method::GET,
            path: path.to_owned(),
            secured,
            path_params: path_params.iter().map(|s| (*s).to_owned()).collect(),
            query_params: query.iter().map(|s| (*s).to_owned()).collect(),
            param_types: [("id".to_owned(), "uuid".to_owned())].into(),
            body_types: Vec::new(),
            body_fields: Vec::new(),
        }
    }

    #[test]
    fn parameters_are_taken_in_turns_and_state_changing_paths_skipped() {
        let ops = [
            operation("/items/{id}", &["id"], &["fields"], true),
            operation("/users", &[], &["limit", "q"], false),
            operation("/createdb", &[], &["force"], false),
            Operation {
                method: Method::DELETE,
                ..operation("/users/{name}", &["name"], &[], true)
            },
        ];
        let order: Vec<String> = targets(&ops)
            .iter()
            .map(|t| format!("{} {}", t.operation.path, t.name))
            .collect();
        assert_eq!(
            order,
            [
                "/items/{id} id",
                "/users limit",
                "/items/{id} fields",
                "/users q"
            ]
        );
    }

    #[test]
    fn requests_put_the_value_in_one_place_and_the_token_only_where_secured() {
        let ops = [
            operation("/a/{id}/b/{other}", &["id", "other"], &["q"], true),
            operation("/users", &[], &["name"], false),
        ];
        let all = targets(&ops);
        let path = all[0].request("1%27", Some("tok"));
        assert_eq!(path.line(), "GET /a/1%27/b/1");
        assert!(path
            .headers
            .iter()
            .any(|(n, v)| *n == "authorization" && v == "Bearer tok"));
        let query = all.iter().find(|t| t.name == "name").unwrap();
        let req = query.request("1%5C", Some("tok"));
        assert_eq!(req.line(), "GET /users?name=1%5C");
        assert!(req.headers.is_empty(), "a public operation gets no token");
        assert_eq!(all[0].wrong_type(), "rampart", "uuid declared");
        assert_eq!(query.wrong_type(), "12345", "text expected");
    }

    #[test]
    fn fill_each_names_each_parameter() {
        assert_eq!(fill_each("/a/{x}/b/{y}", str::to_uppercase), "/a/X/b/Y");
        assert_eq!(fill_each("/a/{broken", |_| "v".into()), "/a/{broken");
    }
}
