//! Object-level authorization (BOLA, IDOR) with two identities the operator owns: each object
//! the first identity can read (ids taken from its own list answers) is read again as the
//! second, and access to it is reported. And account lookups by name (`/users/{username}`)
//! that answer the operator's own name unlike a made-up one: a list of which accounts exist.
//!
//! Defends the operator against false alarms and the target against harm: it only runs when a
//! second account is given (`--username2`), it only reads (GET), and an object counts as the
//! first identity's only when its answer names that account; an object anonymous callers can
//! read as well is public, not a finding.

use http::Method;
use serde_json::Value;

use super::{excerpt, Ctx};
use crate::client::{ProbeError, Req};
use crate::findings::{self, Finding, Severity};
use crate::spec::Operation;

/// Object routes tried, and ids tried per route.
const ROUTES: usize = 4;
const IDS_PER_ROUTE: usize = 3;

pub(crate) async fn run(ctx: &mut Ctx<'_>) -> Result<(), ProbeError> {
    let (Some(first), Some(second)) = (ctx.token.clone(), ctx.second_token.clone()) else {
        if ctx.token.is_some() {
            ctx.note("no second identity (--username2 with RAMPART_AUDIT_PASSWORD2): access to another user's objects (BOLA) was not checked");
        }
        return Ok(());
    };
    let owner = ctx
        .credentials
        .as_ref()
        .map(|c| c.username.clone())
        .unwrap_or_default();
    let routes: Vec<(Operation, Operation)> = object_routes(&ctx.operations)
        .into_iter()
        .take(ROUTES)
        .collect();
    if routes.is_empty() {
        ctx.note("no object route (GET /things/{id}) with a list route beside it in the document: access to another user's objects was not checked");
        return Ok(());
    }
    for (list, object) in routes {
        let answer = ctx.send(&Req::get(&list.path).bearer(&first)).await?;
        let Some(json) = answer.is_success().then(|| answer.json()).flatten() else {
            continue;
        };
        let param = object.path_params[0].clone();
        for id in ids_in(&json, &param, Some(&owner))
            .into_iter()
            .take(IDS_PER_ROUTE)
        {
            let Some(segment) = super::id_segment(&id) else {
                continue;
            };
            let path = object.fill(&segment);
            let mine = ctx.send(&Req::get(&path).bearer(&first)).await?;
            if !mine.is_success() || owner.is_empty() || !names(&mine.body, &owner) {
                continue;
            }
            let theirs = ctx.send(&Req::get(&path).bearer(&second)).await?;
            if !theirs.is_success() || !names(&theirs.body, &owner) {
                continue;
            }
            let anonymous = ctx.send(&Req::get(&path)).await?;
            if anonymous.is_success() {
                continue;
            }
            ctx.report(Finding::new(
                &findings::BOLA,
                Severity::High,
                format!(
                    "GET {path} (an object of `{owner}`, id from GET {}) as the second identity -> {} `{}`; anonymous -> {}",
                    list.path,
                    theirs.status,
                    excerpt(&theirs.body, 160),
                    anonymous.status
                ),
            ));
            break;
        }
    }
    Ok(())
}

/// GET routes that look an account up by name (`/users/v1/{username}`, `/accounts/{email}`),
/// asked for a real name and a made-up one, as the route's own callers would be: anonymously
/// for the operator's name, or, when the document says the route needs a token, with the
/// operator's token for the second account's name (a caller may well see their own account).
/// A different status tells anyone which names have accounts.
pub(crate) async fn account_lookups(ctx: &mut Ctx<'_>) -> Result<(), ProbeError> {
    let own = ctx.credentials.as_ref().map(|c| c.username.clone());
    let other = ctx.second_username.clone();
    let lookups: Vec<Operation> = ctx
        .operations
        .iter()
        .filter(|o| {
            o.method == Method::GET
                && o.path_params.len() == 1
                && !super::is_state_changing_path(&o.path)
                && ["user", "name", "email", "login", "account"]
                    .iter()
                    .any(|w| o.path_params[0].to_ascii_lowercase().contains(w))
        })
        .take(2)
        .cloned()
        .collect();
    for lookup in lookups {
        let (token, name) = if lookup.secured {
            (ctx.token.clone(), other.clone())
        } else {
            (None, own.clone())
        };
        let Some(name) = name.filter(|_| token.is_some() || !lookup.secured) else {
            continue;
        };
        let made_up = format!("rampart-audit-{}", super::random_hex(5));
        let Some(name) = super::id_segment(&name) else {
            continue;
        };
        let ask = |who: &str| {
            let req = Req::get(lookup.fill(who));
            match &token {
                Some(t) => req.bearer(t),
                None => req,
            }
        };
        let (real, fake) = (ask(&name), ask(&made_up));
        let known = ctx.send(&real).await?;
        let unknown = ctx.send(&fake).await?;
        if known.status != unknown.status && unknown.status != 429 && known.status != 429 {
            let who = if token.is_some() {
                "with the token"
            } else {
                "anonymously"
            };
            ctx.report(Finding::new(
                &findings::ACCOUNT_PROBE,
                Severity::Medium,
                format!(
                    "{} -> {} but {} (a made-up name) -> {}, {who}: `{}`",
                    real.line(),
                    known.status,
                    fake.line(),
                    unknown.status,
                    excerpt(&unknown.body, 80)
                ),
            ));
        }
    }
    Ok(())
}

/// Pairs of a list route and the object route below it (`/books/v1` and
/// `/books/v1/{book_title}`): GETs only, one path parameter, nothing that reads as a change.
fn object_routes(operations: &[Operation]) -> Vec<(Operation, Operation)> {
    let gets = || {
        operations
            .iter()
            .filter(|o| o.method == Method::GET && !super::is_state_changing_path(&o.path))
    };
    gets()
        .filter(|o| o.path_params.len() == 1 && o.path.trim_end_matches('/').ends_with('}'))
        .filter_map(|object| {
            let parent = object.path.trim_end_matches('/').rsplit_once('/')?.0;
            let list = gets()
                .find(|l| l.path_params.is_empty() && l.path.trim_end_matches('/') == parent)?;
            Some((list.clone(), object.clone()))
        })
        .collect()
}

/// Values that may name an object in a list answer (the records of its first array of objects,
/// found up to three levels down): per record, the field named like the path parameter, else,
/// for an id-like parameter (`id`, `item_id`, `itemId`), `id`, `uuid` or `_id`; records that
/// name `owner` first (a list may hold everyone's objects). Used by every check that fills a
/// path parameter from a list.
pub(crate) fn ids_in(json: &Value, param: &str, owner: Option<&str>) -> Vec<String> {
    let idish = param.eq_ignore_ascii_case("id") || param.ends_with("_id") || param.ends_with("Id");
    let wanted: &[&str] = if idish {
        &[param, "id", "uuid", "_id"]
    } else {
        &[param]
    };
    let mut ids: Vec<(bool, String)> = records(json, 3)
        .iter()
        .filter_map(|record| {
            let fields = record.as_object()?;
            let id = wanted.iter().find_map(|name| match fields.get(*name)? {
                Value::String(s) if !s.is_empty() && s.len() <= 200 => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })?;
            let theirs_too = !owner.is_some_and(|o| fields.values().any(|v| v.as_str() == Some(o)));
            Some((theirs_too, id))
        })
        .collect();
    ids.sort_by_key(|(not_owned, _)| *not_owned);
    ids.into_iter().map(|(_, id)| id).collect()
}

/// The first array of objects in `value`, searched `depth` levels down.
fn records(value: &Value, depth: usize) -> &[Value] {
    match value {
        Value::Array(items) if items.first().is_some_and(Value::is_object) => items,
        Value::Object(map) if depth > 0 => map
            .values()
            .map(|v| records(v, depth - 1))
            .find(|found| !found.is_empty())
            .unwrap_or_default(),
        _ => &[],
    }
}

/// Whether an answer names `owner` as a whole string value (an `owner`, `username` or `email`
/// field, say), not just somewhere inside other text.
fn names(body: &str, owner: &str) -> bool {
    fn walk(value: &Value, owner: &str, depth: usize) -> bool {
        match value {
            Value::String(s) => s == owner,
            Value::Array(items) if depth < 8 => items.iter().any(|v| walk(v, owner, depth + 1)),
            Value::Object(fields) if depth < 8 => {
                fields.values().any(|v| walk(v, owner, depth + 1))
            }
            _ => false,
        }
    }
    serde_json::from_str::<Value>(body).is_ok_and(|v| walk(&v, owner, 0))
}

/// An id as one path segment.
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(path: &str, params: &[&str]) -> Operation {
        Operation {
            method: Method::GET,
            path: path.into(),
            secured: true,
            path_params: params.iter().map(|p| (*p).to_owned()).collect(),
            query_params: Vec::new(),
            body_types: Vec::new(),
            body_fields: Vec::new(),
            param_types: std::collections::BTreeMap::new(),
        }
    }

    #[test]
    fn object_routes_pair_with_the_list_above_them() {
        let ops = [
            op("/books/v1", &[]),
            op("/books/v1/{book_title}", &["book_title"]),
            op("/api/v1/items/", &[]),
            op("/api/v1/items/{id}", &["id"]),
            op("/users/v1/{username}/delete", &["username"]),
            op("/orphans/{id}", &["id"]),
        ];
        let pairs: Vec<(String, String)> = object_routes(&ops)
            .into_iter()
            .map(|(l, o)| (l.path, o.path))
            .collect();
        assert_eq!(
            pairs,
            [
                ("/books/v1".to_owned(), "/books/v1/{book_title}".to_owned()),
                ("/api/v1/items/".to_owned(), "/api/v1/items/{id}".to_owned()),
            ]
        );
    }

    #[test]
    fn ids_come_from_the_field_named_like_the_parameter_or_id() {
        let books = json!({"Books": [{"book_title": "b 2", "user": "name1"}, {"book_title": "user1-book", "user": "user1"}]});
        assert_eq!(
            ids_in(&books, "book_title", Some("user1")),
            ["user1-book", "b 2"]
        );
        let items = json!({"data": [{"id": "941a", "owner_id": "x"}], "count": 1});
        assert_eq!(ids_in(&items, "item_id", Some("user1")), ["941a"]);
        assert_eq!(ids_in(&json!([{"id": 7}]), "id", None), ["7"]);
        // Found a few levels down; a parameter that is not id-like takes only its own field.
        let users = json!({"users": [{"username": "name1", "email": "a@b.c"}]});
        assert_eq!(ids_in(&users, "username", None), ["name1"]);
        assert_eq!(
            ids_in(&json!({"data": [{"id": "1", "title": "x"}]}), "title", None),
            ["x"]
        );
        assert!(ids_in(&json!({"ok": true}), "id", None).is_empty());
        assert_eq!(crate::checks::id_segment("b 2").as_deref(), Some("b%202"));
        assert_eq!(crate::checks::id_segment("b 2/../x"), None);
    }

    #[test]
    fn an_object_is_the_owners_only_when_a_value_names_them() {
        assert!(names(r#"{"owner": "user1", "secret": "s"}"#, "user1"));
        assert!(!names(r#"{"owner": "user10"}"#, "user1"));
        assert!(!names(r#"{"note": "shared with user1 later"}"#, "user1"));
        assert!(!names("not json user1", "user1"));
    }
}
