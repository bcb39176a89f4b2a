//! Finding the API's description before any check runs: the interactive docs page, the
//! OpenAPI document it loads (or the one at a usual path, under the usual prefixes), in JSON or
//! YAML. The document aims every later check (which routes exist, which need credentials,
//! where the login is), so a run without `--spec` sees what a run with one sees.
//!
//! Defends the run against shrinking silently: without the document most checks have nothing to
//! aim at. Read-only and bounded: only GETs, at most [`MAX_REQUESTS`] of them, and a page
//! naming a document elsewhere is followed only on the target's own origin.

use crate::client::{Answer, Probe, ProbeError, Req};
use crate::spec::{self, Operation};

/// Interactive docs pages, in the order frameworks put them (FastAPI, connexion, Spring,
/// Express's swagger-ui-express, ASP.NET, Rails' rswag, NestJS).
const DOCS_PAGES: [&str; 10] = [
    "/docs",
    "/docs/",
    "/redoc",
    "/ui/",
    "/swagger-ui/",
    "/swagger-ui.html",
    "/api/docs",
    "/api-docs/",
    "/swagger/",
    "/swagger/index.html",
];
/// Document names tried at the target's base.
const SPEC_NAMES: [&str; 7] = [
    "/openapi.json",
    "/swagger.json",
    "/openapi.yaml",
    "/v3/api-docs",
    "/swagger.yaml",
    "/api-docs.json",
    "/openapi.yml",
];
/// Prefixes APIs mount their document under, each tried with the two commonest names.
const PREFIXES: [&str; 6] = ["/api", "/api/v1", "/v1", "/api/v2", "/v2", "/api/v3"];
/// The most requests discovery spends (and never more than a quarter of the budget).
pub const MAX_REQUESTS: usize = 30;

/// What discovery found.
#[derive(Debug, Default)]
pub struct Discovered {
    /// The document: where it was served, its operations.
    pub spec: Option<ServedSpec>,
    /// An interactive docs page that answered 2xx: its path and status.
    pub docs_page: Option<(String, u16)>,
    /// A document too large to read from the target: where it was.
    pub too_large: Option<String>,
}

#[derive(Debug)]
pub struct ServedSpec {
    pub path: String,
    pub status: u16,
    pub operations: Vec<Operation>,
}

/// Looks for the docs page and the document (see the module header).
pub async fn discover(probe: &mut Probe) -> Result<Discovered, ProbeError> {
    let mut found = Discovered::default();
    let most = MAX_REQUESTS.min(probe.remaining() as usize / 4);
    let mut sent = 0;
    let mut named = Vec::new();
    for page in DOCS_PAGES.iter().take(most / 2) {
        sent += 1;
        let answer = probe.send(&Req::get(*page)).await?;
        if answer.is_success() && is_docs_page(&answer.body) {
            named = spec_urls_in_page(&answer.body, page);
            found.docs_page = Some(((*page).to_owned(), answer.status));
            break;
        }
    }
    let guesses = SPEC_NAMES.iter().map(|n| (*n).to_owned()).chain(
        PREFIXES
            .iter()
            .flat_map(|p| [format!("{p}/openapi.json"), format!("{p}/swagger.json")]),
    );
    let mut tried = Vec::new();
    for path in named.into_iter().chain(guesses) {
        // A page can name any URL: one that reads as a change is not fetched.
        if sent >= most
            || tried.contains(&path)
            || !crate::paths::is_sendable(&path)
            || crate::paths::is_state_changing_path(&path)
        {
            continue;
        }
        sent += 1;
        let answer = probe.send(&Req::get(&path)).await?;
        if answer.is_success() && answer.body.len() >= crate::client::MAX_BODY {
            found.too_large.get_or_insert_with(|| path.clone());
        }
        if let Some(operations) = served_spec(&answer) {
            found.spec = Some(ServedSpec {
                path,
                status: answer.status,
                operations,
            });
            break;
        }
        tried.push(path);
    }
    Ok(found)
}

fn served_spec(answer: &Answer) -> Option<Vec<Operation>> {
    if !answer.is_success() {
        return None;
    }
    spec::parse_document(&answer.body).map(|doc| spec::operations(&doc))
}

/// Whether a page is Swagger UI, ReDoc, RapiDoc or Scalar.
pub fn is_docs_page(body: &str) -> bool {
    let page = body.to_ascii_lowercase();
    [
        "swagger-ui",
        "swaggeruibundle",
        "redoc",
        "rapi-doc",
        "scalar",
    ]
    .iter()
    .any(|marker| page.contains(marker))
        && page.contains('<')
}

/// The document URLs a docs page names (`url: '/api/v1/openapi.json'` in Swagger UI's
/// configuration, `spec-url="..."` for ReDoc and RapiDoc, `data-url` for Scalar), as paths on
/// the same origin; URLs to another origin are dropped. A relative URL is taken relative to
/// the page.
pub fn spec_urls_in_page(body: &str, page: &str) -> Vec<String> {
    let mut out = Vec::new();
    for key in [
        "url:",
        "url =",
        "\"url\":",
        "spec-url=",
        "data-url=",
        "specurl:",
    ] {
        let mut rest = body;
        while let Some(at) = rest.find(key) {
            rest = &rest[at + key.len()..];
            let value = rest.trim_start();
            let Some(quote) = value.chars().next().filter(|c| matches!(c, '"' | '\'')) else {
                continue;
            };
            let Some(end) = value[1..].find(quote) else {
                continue;
            };
            if let Some(path) = same_origin_path(&value[1..=end], page) {
                if !out.contains(&path) {
                    out.push(path);
                }
            }
        }
    }
    out
}

/// `url` as a path on the target: absolute paths kept, relative ones resolved against the
/// page's folder, anything with a scheme or host (another origin) dropped.
fn same_origin_path(url: &str, page: &str) -> Option<String> {
    let url = url.trim();
    let looks_like_document = [".json", ".yaml", ".yml", "api-docs", "openapi", "swagger"]
        .iter()
        .any(|hint| url.to_ascii_lowercase().contains(hint));
    if url.is_empty() || url.contains("://") || url.starts_with("//") || !looks_like_document {
        return None;
    }
    if url.starts_with('/') {
        return Some(url.to_owned());
    }
    let folder = page.rsplit_once('/').map_or("", |(folder, _)| folder);
    let relative = url.trim_start_matches("./");
    Some(format!("{folder}/{relative}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_urls_are_read_from_swagger_ui_and_redoc_pages() {
        let fastapi = "<script>const ui = SwaggerUIBundle({\n        url: '/api/v1/openapi.json',\n\"dom_id\": \"#swagger-ui\",\noauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect',";
        assert!(is_docs_page(&format!("<html>{fastapi}")));
        assert_eq!(
            spec_urls_in_page(fastapi, "/docs"),
            ["/api/v1/openapi.json"]
        );
        let connexion = "window.onload = function() { const ui = SwaggerUIBundle({\n        url: \"/openapi.json\",\n        validatorUrl: null,";
        assert_eq!(spec_urls_in_page(connexion, "/ui/"), ["/openapi.json"]);
        let redoc = r#"<redoc spec-url="/api/v1/openapi.json"></redoc>"#;
        assert_eq!(spec_urls_in_page(redoc, "/redoc"), ["/api/v1/openapi.json"]);
        // Relative to the page; other origins and non-documents are not followed.
        let relative = r#"url: "./swagger.yaml", x: 1, url: "https://evil.example/openapi.json", url: "//evil.example/a.json", url: "/favicon.png""#;
        assert_eq!(
            spec_urls_in_page(relative, "/api/docs/index.html"),
            ["/api/docs/swagger.yaml"]
        );
        assert!(!is_docs_page("{\"detail\":\"Not Found\"}"));
    }
}
