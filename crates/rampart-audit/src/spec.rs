//! Just enough of an OpenAPI 3 (or Swagger 2) document to aim the checks: each operation's
//! method, path template, whether it requires credentials, and its parameters.
//!
//! Defends against the scanners' most common complaint, fragile spec import: everything is read
//! leniently from JSON values, and whatever is not understood is skipped rather than fatal.

use std::collections::BTreeMap;

use http::Method;
use serde_json::Value;

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

/// Every operation the document describes, in document order.
pub fn operations(doc: &Value) -> Vec<Operation> {
    let global = doc.get("security").map(requires_credentials);
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (path, item) in paths {
        let Some(item) = item.as_object() else {
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
            out.push(Operation {
                method,
                path: path.clone(),
                secured,
                path_params,
                query_params,
                param_types,
            });
        }
    }
    out
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
}
