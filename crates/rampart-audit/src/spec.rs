//! Just enough of an OpenAPI 3 (or Swagger 2) document to aim the checks: each operation's
//! method, path template, whether it requires credentials, its parameters and the fields and
//! content types of its request body, and which operation is the login.
//!
//! Defends against the scanners' most common complaint, fragile spec import: everything is read
//! leniently from JSON values (YAML documents are converted first), and whatever is not
//! understood is skipped rather than fatal. A document is something the target sent, so the
//! YAML reader refuses alias bombs and deep nesting before building anything.

use std::collections::BTreeMap;

use http::Method;
use serde_json::Value;

use crate::yaml;

/// One operation of the API.
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: Method,
    /// The path template, e.g. `/v1/items/{id}`.
    pub path: String,
    /// Whether the document says the operation needs credentials.
    pub secured: bool,
    pub path_params: Vec<String>,
    pub query_params: Vec<String>,
    /// The request body's media types (`application/json`, a form, ...), as listed.
    pub body_types: Vec<String>,
    /// The top-level fields of the request body's schema (`$ref`s and `allOf` followed).
    pub body_fields: Vec<String>,
    /// The declared type of each parameter that has one: `integer`, `number`, `boolean`,
    /// `string`, or `uuid` for a string of format uuid.
    pub param_types: BTreeMap<String, String>,
}

impl Operation {
    /// The path with every `{param}` replaced by `value`.
    pub fn fill(&self, value: &str) -> String {
        let mut out = String::with_capacity(self.path.len());
        let mut rest = self.path.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let Some(close) = rest[open..].find('}') else {
                rest = &rest[open..];
                break;
            };
            out.push_str(value);
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        out
    }

    /// The query parameter that sets a page size, if the operation has one.
    pub fn page_size_param(&self) -> Option<&str> {
        const NAMES: [&str; 8] = [
            "limit",
            "page_size",
            "pagesize",
            "per_page",
            "perpage",
            "size",
            "take",
            "max",
        ];
        self.query_params
            .iter()
            .find(|p| NAMES.contains(&p.to_ascii_lowercase().as_str()))
            .map(String::as_str)
    }
}

/// Whether the value is an OpenAPI or Swagger document.
pub fn is_spec(doc: &Value) -> bool {
    doc.get("openapi").is_some_and(Value::is_string)
        || doc.get("swagger").is_some_and(Value::is_string)
}

/// Operations read from one document, at most: far more than any real API has, and a bound on
/// the checks' work (some pair routes with each other) whatever a document holds.
pub const MAX_OPERATIONS: usize = 2_000;

/// Every operation the document describes, in document order (the first [`MAX_OPERATIONS`]).
pub fn operations(doc: &Value) -> Vec<Operation> {
    let global = doc.get("security").map(requires_credentials);
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (path, item) in paths {
        // A path that names one route and reaches another (dot segments, a tab the URL parser
        // drops, a route hidden after `#`): never aimed at.
        let Some(item) = item
            .as_object()
            .filter(|_| crate::paths::is_sendable_template(path))
        else {
            continue;
        };
        let shared = item.get("parameters");
        for (method, operation) in item {
            let Ok(method) = method.to_ascii_uppercase().parse::<Method>() else {
                continue;
            };
            if !matches!(
                method,
                Method::GET
                    | Method::POST
                    | Method::PUT
                    | Method::PATCH
                    | Method::DELETE
                    | Method::HEAD
            ) {
                continue;
            }
            // A read whose name or summary says it changes something is not one to send.
            let says = ["operationId", "summary"]
                .iter()
                .filter_map(|k| operation.get(*k).and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" ");
            if matches!(method, Method::GET | Method::HEAD)
                && crate::paths::says_it_changes_state(&says)
            {
                continue;
            }
            let secured = operation
                .get("security")
                .map(requires_credentials)
                .or(global)
                .unwrap_or(false);
            let mut path_params = Vec::new();
            let mut query_params = Vec::new();
            let mut param_types = BTreeMap::new();
            for parameter in [shared, operation.get("parameters")]
                .into_iter()
                .flatten()
                .filter_map(Value::as_array)
                .flatten()
            {
                let name = parameter.get("name").and_then(Value::as_str);
                if let (Some(name), Some(kind)) = (name, declared_type(parameter)) {
                    param_types.insert(name.to_owned(), kind.to_owned());
                }
                match (parameter.get("in").and_then(Value::as_str), name) {
                    (Some("path"), Some(name)) => path_params.push(name.to_owned()),
                    (Some("query"), Some(name)) => query_params.push(name.to_owned()),
                    _ => {}
                }
            }
            if out.len() >= MAX_OPERATIONS {
                return out;
            }
            let (body_types, body_fields) = request_body(doc, operation);
            out.push(Operation {
                method,
                path: path.clone(),
                secured,
                path_params,
                query_params,
                body_types,
                body_fields,
                param_types,
            });
        }
    }
    out
}

/// The media types and top-level field names of an operation's request body: OpenAPI 3's
/// `requestBody`, or Swagger 2's `body` and `formData` parameters.
fn request_body(doc: &Value, operation: &Value) -> (Vec<String>, Vec<String>) {
    let mut types = Vec::new();
    let mut fields = Vec::new();
    let body = operation.get("requestBody").map(|b| resolve(doc, b, 0));
    if let Some(content) = body
        .and_then(|b| b.get("content"))
        .and_then(Value::as_object)
    {
        for (media, entry) in content {
            types.push(media.to_ascii_lowercase());
            if let Some(schema) = entry.get("schema") {
                schema_fields(doc, schema, 0, &mut fields);
            }
        }
    }
    for parameter in operation
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match parameter.get("in").and_then(Value::as_str) {
            Some("body") => {
                if let Some(schema) = parameter.get("schema") {
                    schema_fields(doc, schema, 0, &mut fields);
                }
                types.push("application/json".into());
            }
            Some("formData") => {
                if let Some(name) = parameter.get("name").and_then(Value::as_str) {
                    fields.push(name.to_owned());
                }
                types.push("application/x-www-form-urlencoded".into());
            }
            _ => {}
        }
    }
    types.dedup();
    fields.dedup();
    (types, fields)
}

/// Follows a local `$ref` (`#/components/schemas/X`), a few levels at most.
fn resolve<'a>(doc: &'a Value, value: &'a Value, depth: usize) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) if depth < 8 => reference
            .strip_prefix('#')
            .and_then(|pointer| doc.pointer(pointer))
            .map_or(value, |target| resolve(doc, target, depth + 1)),
        _ => value,
    }
}

fn schema_fields(doc: &Value, schema: &Value, depth: usize, out: &mut Vec<String>) {
    if depth > 8 {
        return;
    }
    let schema = resolve(doc, schema, 0);
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        out.extend(properties.keys().cloned());
    }
    for combined in ["allOf", "oneOf", "anyOf"] {
        for part in schema
            .get(combined)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            schema_fields(doc, part, depth + 1, out);
        }
    }
}

/// Words in a path that say an operation creates an account or changes a password rather than
/// logging in.
const NOT_A_LOGIN: [&str; 9] = [
    "register", "signup", "sign-up", "reset", "forgot", "recover", "change", "users/", "refresh",
];
/// Words in a path that say it is a login, strongest first.
const LOGIN_WORDS: [&str; 7] = [
    "login",
    "signin",
    "sign-in",
    "token",
    "session",
    "auth",
    "authenticate",
];

/// The login among `operations`: a POST taking a password and a name (or email), whose path
/// reads like a login; `None` when nothing fits.
pub fn login_operation(operations: &[Operation]) -> Option<&Operation> {
    let has = |o: &Operation, names: &[&str]| {
        o.body_fields
            .iter()
            .any(|f| names.contains(&f.to_ascii_lowercase().as_str()))
    };
    operations
        .iter()
        .filter(|o| {
            // A login with a path parameter would need a value the auditor does not have.
            o.method == Method::POST
                && o.path_params.is_empty()
                && !o.path.contains('{')
                && has(o, &["password", "pass", "passwd"])
        })
        .filter(|o| {
            has(
                o,
                &["username", "email", "login", "user", "name", "user_name"],
            )
        })
        .filter(|o| {
            let path = o.path.to_ascii_lowercase();
            (!NOT_A_LOGIN.iter().any(|w| path.contains(w)) || path.contains("login"))
                && last_segment_is(&o.path, LOGIN_PIECES)
        })
        .filter_map(|o| {
            let path = o.path.to_ascii_lowercase();
            let rank = LOGIN_WORDS.iter().position(|w| path.contains(w))?;
            Some((rank, o))
        })
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, o)| o)
}

/// The field a login body names the account with: `username` unless the schema only has an
/// email (or another name field).
pub fn login_name_field(login: &Operation) -> &'static str {
    const NAMES: [&str; 5] = ["username", "email", "login", "user", "user_name"];
    NAMES
        .into_iter()
        .find(|name| {
            login
                .body_fields
                .iter()
                .any(|f| f.eq_ignore_ascii_case(name))
        })
        .unwrap_or("username")
}

/// The logout among `operations`: a POST whose path says logout or sign-out.
pub fn logout_operation(operations: &[Operation]) -> Option<&Operation> {
    operations.iter().find(|o| {
        o.method == Method::POST
            && o.path_params.is_empty()
            && last_segment_is(&o.path, LOGOUT_PIECES)
            && !o.path.to_ascii_lowercase().contains("all")
    })
}

/// Words a login's last path segment is made of (`/login`, `/login/access-token`, `/token`,
/// `/auth/sign-in`); a segment with any other word (`/login-history/purge`, `/login-as`,
/// `/token/revoke`) is another operation that merely mentions logins.
const LOGIN_PIECES: &[&str] = &[
    "login",
    "signin",
    "sign",
    "in",
    "log",
    "token",
    "access",
    "auth",
    "authenticate",
    "session",
    "sessions",
    "jwt",
    "oauth",
    "oauth2",
    "password",
    "credentials",
];
/// Words a logout's last path segment is made of.
const LOGOUT_PIECES: &[&str] = &["logout", "signout", "sign", "out", "log", "session"];

/// Whether `path`'s last segment, split at `-`, `_` and `.`, holds only `pieces` (and at least
/// one of the first few, the verbs).
fn last_segment_is(path: &str, pieces: &[&str]) -> bool {
    let last = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let words: Vec<&str> = last
        .split(['-', '_', '.'])
        .filter(|w| !w.is_empty())
        .collect();
    !words.is_empty() && words.iter().all(|w| pieces.contains(w))
}

/// Whether the login takes a form rather than JSON (the OAuth2 password flow, most often).
pub fn takes_form(login: &Operation) -> bool {
    !login.body_types.iter().any(|t| t.contains("json"))
        && login
            .body_types
            .iter()
            .any(|t| t.contains("x-www-form-urlencoded") || t.contains("form-data"))
}

/// A document the target served (or `--spec` named), JSON or YAML, as JSON; `None` when it is
/// neither, or is not an OpenAPI or Swagger document.
pub fn parse_document(text: &str) -> Option<Value> {
    let doc = match serde_json::from_str::<Value>(text) {
        Ok(doc) => doc,
        Err(_) => yaml::to_json(text)?,
    };
    is_spec(&doc).then_some(doc)
}

/// A parameter's type: OpenAPI 3 keeps it in `schema`, Swagger 2 on the parameter itself.
fn declared_type(parameter: &Value) -> Option<&str> {
    let schema = parameter.get("schema").unwrap_or(parameter);
    if schema.get("format").and_then(Value::as_str) == Some("uuid") {
        return Some("uuid");
    }
    schema
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| matches!(*t, "integer" | "number" | "boolean" | "string"))
}

/// `security: [{scheme: []}, ...]` requires credentials unless empty or holding `{}` (which
/// OpenAPI uses to mean "anonymous is also fine").
fn requires_credentials(security: &Value) -> bool {
    security.as_array().is_some_and(|alternatives| {
        !alternatives.is_empty()
            && alternatives
                .iter()
                .all(|a| a.as_object().is_some_and(|o| !o.is_empty()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_security_parameters_and_fills_paths() {
        let doc = serde_json::json!({
            "openapi": "3.1.0",
            "security": [{"bearer": []}],
            "paths": {
                "/health": {"get": {"security": []}},
                "/v1/items/{id}": {
                    "parameters": [{"name": "id", "in": "path", "schema": {"type": "string", "format": "uuid"}}],
                    "get": {}, "delete": {}, "summary": "not an operation"
                },
                "/v1/items": {"get": {"parameters": [{"name": "limit", "in": "query", "type": "integer"}, {"in": "query"}]}},
                "/maybe": {"get": {"security": [{}, {"bearer": []}]}},
                "/broken": "not an object"
            }
        });
        assert!(is_spec(&doc));
        let ops = operations(&doc);
        let find = |m: Method, p: &str| ops.iter().find(|o| o.method == m && o.path == p).unwrap();
        assert!(!find(Method::GET, "/health").secured);
        assert!(find(Method::DELETE, "/v1/items/{id}").secured);
        assert_eq!(find(Method::GET, "/v1/items/{id}").path_params, ["id"]);
        assert_eq!(
            find(Method::GET, "/v1/items").page_size_param(),
            Some("limit")
        );
        assert!(!find(Method::GET, "/maybe").secured);
        assert_eq!(ops.len(), 5);
        assert_eq!(find(Method::GET, "/v1/items/{id}").fill("x"), "/v1/items/x");
        assert_eq!(
            find(Method::GET, "/v1/items/{id}").param_types["id"],
            "uuid"
        );
        assert_eq!(
            find(Method::GET, "/v1/items").param_types["limit"],
            "integer"
        );
    }

    #[test]
    fn the_login_is_found_with_its_format_and_name_field() {
        // As VAmPI (connexion) and the FastAPI template describe theirs.
        let doc = serde_json::json!({
            "openapi": "3.1.0",
            "components": {"schemas": {"Body_login": {"properties": {
                "grant_type": {}, "username": {}, "password": {}, "scope": {}}}}},
            "paths": {
                "/users/v1/register": {"post": {"requestBody": {"content": {"application/json": {
                    "schema": {"properties": {"username": {}, "password": {}, "email": {}}}}}}}},
                "/api/v1/private/users/": {"post": {"requestBody": {"content": {"application/json": {
                    "schema": {"properties": {"email": {}, "password": {}}}}}}}},
                "/api/v1/login/access-token": {"post": {"requestBody": {"content": {
                    "application/x-www-form-urlencoded": {"schema": {"$ref": "#/components/schemas/Body_login"}}}}}},
                "/api/v1/auth/logout": {"post": {}},
            }
        });
        let ops = operations(&doc);
        let login = login_operation(&ops).unwrap();
        assert_eq!(login.path, "/api/v1/login/access-token");
        assert!(takes_form(login));
        assert_eq!(login_name_field(login), "username");
        assert_eq!(logout_operation(&ops).unwrap().path, "/api/v1/auth/logout");

        let json_login = serde_json::json!({"openapi": "3.0.1", "paths": {
            "/users/v1/login": {"post": {"requestBody": {"content": {"application/json": {
                "schema": {"properties": {"email": {}, "password": {}}}}}}}}}});
        let ops = operations(&json_login);
        let login = login_operation(&ops).unwrap();
        assert!(!takes_form(login));
        assert_eq!(login_name_field(login), "email");
        // A YAML document reads the same.
        let yaml = "openapi: 3.0.1\npaths:\n  /login:\n    post:\n      requestBody:\n        content:\n          application/json:\n            schema:\n              properties: {username: {}, password: {}}\n";
        let doc = parse_document(yaml).unwrap();
        assert_eq!(login_operation(&operations(&doc)).unwrap().path, "/login");
        assert!(parse_document("{\"not\": \"a spec\"}").is_none());
    }
}
