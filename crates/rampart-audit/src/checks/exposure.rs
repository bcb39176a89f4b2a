//! Excessive data exposure: answers whose records carry passwords, password hashes, other
//! secrets, keys, tokens, social security or card numbers.
//!
//! Defends against the API serialising its rows instead of an output type (VAmPI's anonymous
//! `GET /users/v1/_debug` lists every user with a plaintext password). Every read operation the
//! document lists is asked anonymously and with the token, secured or not (an id for a path
//! parameter is taken from a list answer already seen); then every answer any check saw is
//! judged. Not judged: answers that are not JSON, OpenAPI documents (a schema is not a
//! response), error answers (they may echo the auditor's own input), and the access or refresh
//! token a login answer hands the operator. Values are masked in the evidence, never printed.

use std::collections::BTreeMap;

use http::Method;
use serde_json::Value;

use super::sensitive::{sensitive_fields, Field, Kind};
use super::{is_state_changing_path, Ctx};
use crate::client::{ProbeError, Req};
use crate::findings::{self, Finding, Severity};

/// Requests this check sends at most.
const MAX_REQUESTS: usize = 30;
/// The share of what is left of the budget this check may take, at most (one in this many).
const BUDGET_SHARE: u32 = 4;
/// Answers listed per finding, at most.
const MAX_LINES: usize = 5;
/// Sends every read operation anonymously and with the token; what comes back is judged with
/// every other answer by [`judge_seen`].
pub(crate) async fn run(ctx: &mut Ctx<'_>) -> Result<(), ProbeError> {
    let mut plain: Vec<String> = Vec::new();
    let mut with_id: Vec<(String, String)> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for operation in &ctx.operations {
        if operation.method != Method::GET {
            continue;
        }
        if is_state_changing_path(&operation.path) {
            skipped.push(format!("GET {} (reads as state-changing)", operation.path));
            continue;
        }
        match operation.path_params.as_slice() {
            [] if !plain.contains(&operation.path) => plain.push(operation.path.clone()),
            [param] => with_id.push((operation.path.clone(), param.clone())),
            [] => {}
            _ => skipped.push(format!("GET {} (several path parameters)", operation.path)),
        }
    }
    if plain.is_empty() && with_id.is_empty() {
        return Ok(());
    }
    let token = ctx.token.clone();
    let per_path = if token.is_some() { 2 } else { 1 };
    let mut allowance = MAX_REQUESTS.min((ctx.probe.remaining() / BUDGET_SHARE) as usize);
    let mut lists: BTreeMap<String, Value> = BTreeMap::new();
    for path in &plain {
        if allowance < per_path {
            skipped.push(format!("GET {path} (request cap)"));
            continue;
        }
        allowance -= per_path;
        for json in read_both_ways(ctx, path, token.as_deref())
            .await?
            .into_iter()
            .flatten()
        {
            lists
                .entry(path.trim_end_matches('/').to_owned())
                .or_insert(json);
        }
    }
    for (template, param) in &with_id {
        let list_path =
            template[..template.find('{').unwrap_or(template.len())].trim_end_matches('/');
        let Some(id) = lists
            .get(list_path)
            .and_then(|list| super::objects::ids_in(list, param, None).into_iter().next())
        else {
            skipped.push(format!(
                "GET {template} (no id for {{{param}}} in a list answer)"
            ));
            continue;
        };
        if allowance < per_path {
            skipped.push(format!("GET {template} (request cap)"));
            continue;
        }
        let Some(segment) = super::id_segment(&id) else {
            skipped.push(format!(
                "GET {template} (the id in the list answer is a path)"
            ));
            continue;
        };
        allowance -= per_path;
        let path = super::params::fill_each(template, |_| segment.clone());
        read_both_ways(ctx, &path, token.as_deref()).await?;
    }
    if !skipped.is_empty() {
        ctx.note(format!(
            "data exposure: not read: {}",
            super::excerpt(&skipped.join(", "), 400)
        ));
    }
    Ok(())
}

/// GET `path` anonymously and, when there is one, with the token; the JSON of each success.
async fn read_both_ways(
    ctx: &mut Ctx<'_>,
    path: &str,
    token: Option<&str>,
) -> Result<Vec<Option<Value>>, ProbeError> {
    let mut requests = vec![Req::get(path)];
    if let Some(token) = token {
        requests.push(Req::get(path).bearer(token));
    }
    let mut out = Vec::new();
    for req in &requests {
        let answer = ctx.send(req).await?;
        out.push(answer.json().filter(|_| answer.is_success()));
    }
    Ok(out)
}

/// Judges every answer the run kept: at most one finding for anonymous callers and one for
/// answers seen only with credentials.
pub(crate) fn judge_seen(ctx: &mut Ctx<'_>) {
    let login_line = format!("POST {}", ctx.login_path);
    let mut anonymous: BTreeMap<String, Vec<Field>> = BTreeMap::new();
    let mut credentialed: BTreeMap<String, Vec<Field>> = BTreeMap::new();
    for (line, answer) in &ctx.seen {
        let is_login = line.split('?').next() == Some(login_line.as_str());
        if !answer.is_success() || !(line.starts_with("GET ") || is_login) {
            continue;
        }
        let body = answer.body.trim_start();
        if !(body.starts_with('{') || body.starts_with('[')) || is_api_document(body) {
            continue;
        }
        let fields = sensitive_fields(body, is_login);
        if fields.is_empty() {
            continue;
        }
        let key = format!("{line} -> {}", answer.status);
        if answer.credentialed || is_login {
            credentialed.entry(key).or_insert(fields);
        } else {
            anonymous.entry(key).or_insert(fields);
        }
    }
    credentialed.retain(|line, _| !anonymous.contains_key(line));
    if !anonymous.is_empty() {
        let plaintext = anonymous.values().flatten().any(|f| f.plaintext);
        let why = if plaintext {
            "anonymous callers get passwords in plain text (stored unhashed, readable by anyone)"
        } else {
            "anonymous callers get secret fields"
        };
        ctx.report(Finding::new(
            &findings::EXPOSURE_ANONYMOUS,
            if plaintext {
                Severity::Critical
            } else {
                Severity::High
            },
            format!("{why}: {}", evidence(&anonymous, "anonymous")),
        ));
    }
    if !credentialed.is_empty() {
        // A password (hashed or not) never belongs in an answer; any other secret-named field
        // shown to a logged-in caller may be that caller's own data, so it is for review.
        let password = credentialed
            .values()
            .flatten()
            .any(|f| matches!(f.kind, Kind::Password | Kind::PasswordHash));
        ctx.report(Finding::new(
            &findings::EXPOSURE_AUTHENTICATED,
            if password {
                Severity::Medium
            } else {
                Severity::Low
            },
            evidence(&credentialed, "with credentials"),
        ));
    }
}

/// An OpenAPI or Swagger document (its schemas name fields, they are not data).
fn is_api_document(body: &str) -> bool {
    let head: String = body.chars().take(400).collect();
    head.contains("\"openapi\"") || head.contains("\"swagger\"")
}

fn evidence(lines: &BTreeMap<String, Vec<Field>>, how: &str) -> String {
    let mut items: Vec<String> = lines
        .iter()
        .take(MAX_LINES)
        .map(|(line, fields)| {
            let described: Vec<String> = fields.iter().map(Field::describe).collect();
            format!("{line} ({how}): {}", described.join(", "))
        })
        .collect();
    if lines.len() > MAX_LINES {
        items.push(format!("and {} more answers", lines.len() - MAX_LINES));
    }
    items.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::sensitive::{kind_of, looks_like_hash, looks_like_ssn, mask};

    fn keys(body: &str, skip_own: bool) -> Vec<(String, bool)> {
        sensitive_fields(body, skip_own)
            .into_iter()
            .map(|f| (f.key, f.plaintext))
            .collect()
    }

    #[test]
    fn secrets_are_found_and_lookalikes_are_not() {
        let body = r#"{"users":[{"username":"admin","password":"pass1","admin":true},{"username":"n","password":"pass2"}],
            "token_type":"bearer","password_changed_at":"2024-01-01","has_password":true,"passwordHash":null,
            "hashed_password":"$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA","api_key":"sk_live_abcdef123456",
            "note":"ssn 123-45-6789","phone":"555-123-4567","card_number":4111111111111111,"secret":"********"}"#;
        assert_eq!(
            keys(body, false),
            [
                ("password".to_owned(), true),
                ("hashed_password".to_owned(), false),
                ("api_key".to_owned(), false),
                ("note".to_owned(), false),
                ("card_number".to_owned(), false),
            ]
        );
        let fields = sensitive_fields(body, false);
        assert_eq!(fields[0].count, 2);
        assert_eq!(
            fields[0].describe(),
            "password (password) = \"p***\" (5 chars), plaintext-looking in 2 records"
        );
        assert!(!fields.iter().any(|f| f.describe().contains("pass1")));
    }

    #[test]
    fn a_login_answer_keeps_its_own_tokens_but_not_other_secrets() {
        let body = r#"{"access_token":"eyJhbGciOi.x.y","refresh_token":"r123456789","token_type":"bearer","user":{"password_hash":"$2b$12$abc"}}"#;
        assert_eq!(keys(body, true), [("password_hash".to_owned(), false)]);
        assert_eq!(keys(body, false).len(), 3);
    }

    #[test]
    fn cut_bodies_and_schemas() {
        let cut = r#"{"users":[{"password":"hunter22","email":"a@b.c"},{"password":"hun"#;
        assert_eq!(keys(cut, false), [("password".to_owned(), true)]);
        // A schema's properties are objects, not values.
        let schema =
            r#"{"type":"object","properties":{"password":{"type":"string","writeOnly":true}}}"#;
        assert!(keys(schema, false).is_empty());
        assert!(is_api_document(r#"{"openapi":"3.1.0","paths":{}}"#));
        assert!(!is_api_document(r#"{"users":[]}"#));
    }

    #[test]
    fn values_are_classified_and_masked() {
        assert!(looks_like_hash(
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"
        ));
        assert!(looks_like_hash("pbkdf2_sha256$260000$salt$hash"));
        assert!(looks_like_hash("5f4dcc3b5aa765d61d8327deb882cf99"));
        assert!(!looks_like_hash("user1Pass!23"));
        assert!(looks_like_ssn("123-45-6789") && looks_like_ssn("SSN: 078-05-1120."));
        assert!(!looks_like_ssn("2024-01-15") && !looks_like_ssn("1123-45-67890"));
        assert_eq!(mask("pass1"), "\"p***\" (5 chars)");
        assert_eq!(mask("abc"), "\"***\" (3 chars)");
        assert_eq!(mask("sk_live_abcdef123456"), "\"sk***\" (20 chars)");
        for key in [
            "token_type",
            "password_changed_at",
            "has_password",
            "hashtag",
            "secret_question",
            "is_secret",
        ] {
            assert_eq!(kind_of(key), None, "{key}");
        }
        assert_eq!(kind_of("passwordHash"), Some(Kind::PasswordHash));
        assert_eq!(kind_of("clientSecret"), Some(Kind::Secret));
        assert_eq!(kind_of("x-api-key"), Some(Kind::Key));
    }

    #[test]
    fn ids_are_encoded_as_one_segment() {
        assert_eq!(
            crate::checks::id_segment("a b'").as_deref(),
            Some("a%20b%27")
        );
    }
}
