//! Black-box tests of the running service: each starts it on port 0 with a fresh database and
//! attacks it over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::TestApp;
use reqwest::{header, Method, StatusCode};

const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "strict-transport-security",
        "max-age=63072000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
];

fn assert_hardened(response: &reqwest::Response) {
    let h = response.headers();
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(
            h.get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{} {name}",
            response.url()
        );
    }
    assert!(h.contains_key("content-security-policy"));
    assert!(h.contains_key("permissions-policy"));
    assert!(h.contains_key("x-request-id"));
    assert!(
        !h.contains_key("server"),
        "server banner on {}",
        response.url()
    );
    assert!(!h.contains_key("x-powered-by"));
}

async fn problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "{}", response.url());
    assert_hardened(&response);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    let body: serde_json::Value = response.json().await.expect("problem json");
    assert_eq!(body["status"], status);
    assert_eq!(body["request_id"], id.as_str());
    body
}

#[tokio::test]
async fn health_and_ready_answer() {
    let app = TestApp::spawn(&[]).await;
    let health = app.get("/health").await;
    assert_eq!(health.status(), StatusCode::OK);
    assert_hardened(&health);
    assert_eq!(
        health.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"status": "ok"})
    );
    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        ready.json::<serde_json::Value>().await.unwrap()["checks"]["database"],
        "ok"
    );
}

#[tokio::test]
async fn anonymous_callers_get_401_everywhere_but_public_routes() {
    let app = TestApp::spawn(&[]).await;
    let probes = [
        (Method::GET, "/v1/users/me"),
        (Method::GET, "/v1/items"),
        (Method::DELETE, "/v1/items/1"),
        (Method::POST, "/v1/auth/logout"),
        (Method::GET, "/v1/admin/users"),
        (Method::GET, "/.env"),
        (Method::GET, "/health/"),
        (Method::PUT, "/anything"),
    ];
    for (method, path) in probes {
        for token in [
            None,
            Some("Bearer forged.jwt.value"),
            Some("Basic YWRtaW46YWRtaW4="),
        ] {
            let mut request = app.client.request(method.clone(), app.url(path));
            if let Some(token) = token {
                request = request.header(header::AUTHORIZATION, token);
            }
            let body = problem(request.send().await.unwrap(), 401).await;
            assert_eq!(body["title"], "Unauthorized", "{method} {path}");
        }
    }
}

/// What the server sends back for `request`, written to a socket as it is (no client library
/// to normalise it); whatever arrived before the server closed the connection.
async fn raw_exchange(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    // A refusal may close the connection before the request is all read (a reset): what
    // arrived is the answer.
    let _ = stream.read_to_string(&mut response).await;
    response
}

/// The status line and header names of the answer to `head` (a raw request head), in the
/// order they came on the wire.
async fn answer_shape(app: &TestApp, head: &str) -> Vec<String> {
    let response = raw_exchange(app.addr, head).await;
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_owned();
    std::iter::once(status)
        .chain(lines.filter_map(|line| Some(line.split_once(':')?.0.to_ascii_lowercase())))
        .collect()
}

/// A refusal on a real path with a method it lacks is the refusal of a made-up path header
/// for header, in the same order: the order was enough to map the routes (an outside review
/// found the removed `Allow` leaving the last header in its place), for anonymous callers
/// and, on admin routes, for users.
#[tokio::test]
async fn a_wrong_method_is_refused_exactly_like_a_made_up_path() {
    let app = TestApp::spawn(&[]).await;
    let request = |method: &str, path: &str, token: Option<&str>| {
        let credentials = token.map_or(String::new(), |token| {
            format!("Authorization: Bearer {token}\r\n")
        });
        format!("{method} {path} HTTP/1.1\r\nHost: t\r\n{credentials}Connection: close\r\n\r\n")
    };
    for token in [None, Some("forged.jwt.value")] {
        let made_up = answer_shape(&app, &request("FOO", "/v1/admin/nope", token)).await;
        assert!(made_up[0].contains(" 401 "), "{made_up:?}");
        for (method, path) in [
            ("FOO", "/v1/admin/users"),
            ("PUT", "/v1/users/me"),
            ("TRACE", "/v1/items"),
            ("GET", "/v1/admin/nope"),
        ] {
            let real = answer_shape(&app, &request(method, path, token)).await;
            assert_eq!(real, made_up, "{method} {path} as {token:?}");
        }
    }
    let password = app.register("ursula").await;
    let token = app.access_token("ursula", &password).await;
    let method_taken = answer_shape(&app, &request("GET", "/v1/admin/users", Some(&token))).await;
    assert!(method_taken[0].contains(" 403 "), "{method_taken:?}");
    for method in ["DELETE", "FOO", "PATCH"] {
        let lacked = answer_shape(&app, &request(method, "/v1/admin/users", Some(&token))).await;
        assert_eq!(lacked, method_taken, "{method} /v1/admin/users as a user");
    }
}

/// Paths a client library would normalise before sending, written to the socket as they are.
#[tokio::test]
async fn raw_path_tricks_still_meet_default_deny() {
    let app = TestApp::spawn(&[]).await;
    let probes = [
        "/%2e%2e/etc/passwd",
        "/v1/users/%6de",
        "//v1/users/me",
        "/V1/USERS/ME",
        "/health/..%2f..%2fv1/users/me",
        "/v1/users/me%00",
        "/v1/users/me;jsessionid=x",
        "/v1/users/me/.",
    ];
    for path in probes {
        let head = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let response = raw_exchange(app.addr, &head).await;
        let status = response.split(' ').nth(1).unwrap_or_default().to_owned();
        assert!(
            status == "401" || status == "400",
            "{path}: {status}\n{response}"
        );
        assert!(
            !response.contains("\"username\""),
            "{path} reached a protected handler"
        );
    }
}

#[tokio::test]
async fn wrong_method_is_a_problem_document() {
    let app = TestApp::spawn(&[]).await;
    let response = app.client.post(app.url("/health")).send().await.unwrap();
    assert!(response.headers().contains_key(header::ALLOW));
    problem(response, 405).await;
}

#[tokio::test]
async fn two_mebibyte_body_is_refused_with_413() {
    let app = TestApp::spawn(&[]).await;
    for path in ["/health", "/v1/auth/login", "/nowhere"] {
        let response = app
            .client
            .post(app.url(path))
            .header(header::CONTENT_TYPE, "application/json")
            .body(vec![b'{'; 2 * 1024 * 1024])
            .send()
            .await
            .unwrap();
        problem(response, 413).await;
    }
}

/// An encoded body is refused 415 on arrival, as the contract says: before credentials (an
/// anonymous caller gets 415, not 401, on every path alike) and uncharged (no rate-limit
/// headers, and a login budget is not spent by them: the login after eleven of them is
/// answered, not 429).
#[tokio::test]
async fn an_encoded_body_is_refused_415_before_credentials_and_uncharged() {
    let app = TestApp::spawn_with_shipped_limits(&[]).await;
    let encoded = |path: &str| {
        app.client
            .post(app.url(path))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_ENCODING, "gzip")
            .body(r#"{"title":"x"}"#)
            .send()
    };
    for path in ["/v1/items", "/v1/admin/users", "/nowhere", "/v1/auth/login"] {
        let response = encoded(path).await.unwrap();
        assert!(!response.headers().contains_key("ratelimit"), "{path}");
        problem(response, 415).await;
    }
    for _ in 0..11 {
        let response = encoded("/v1/auth/login").await.unwrap();
        problem(response, 415).await;
    }
    let password = app.register("gzip-sender").await;
    let login = app
        .post_json(
            "/v1/auth/login",
            &serde_json::json!({"username": "gzip-sender", "password": password}),
        )
        .await;
    assert_eq!(
        login.status().as_u16(),
        200,
        "the 415s spent the login budget"
    );
}

#[tokio::test]
async fn docs_are_served_offline_in_development() {
    let app = TestApp::spawn(&[]).await;
    let page = app.get("/docs/").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_hardened(&page);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("http"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("https://"),
        "docs must not load assets from a CDN"
    );
    let script = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(script.status(), StatusCode::OK);

    let missing = app.get("/docs/no-such-asset.js").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_hardened(&missing);
}

#[tokio::test]
async fn openapi_documents_every_route_with_its_policy() {
    let app = TestApp::spawn(&[]).await;
    let doc: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    for (path, access) in rampart_server::routes::routes(true).table() {
        let item = &doc["paths"][path.as_str()];
        assert!(item.is_object(), "{path} is mounted but not documented");
        for (_method, operation) in item.as_object().unwrap() {
            let secured = operation.get("security").is_some();
            assert_eq!(
                secured,
                *access != rampart::Access::Public,
                "{path}: security must follow the policy"
            );
            let responses = &operation["responses"];
            assert!(
                responses.get("default").is_none(),
                "{path}: a catch-all response hides undocumented statuses"
            );
            for status in ["408", "429", "500", "503"] {
                assert!(
                    responses[status]["content"]["application/problem+json"].is_object(),
                    "{path}: {status} undocumented"
                );
            }
            if operation.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(
                        responses[status].is_object(),
                        "{path}: {status} undocumented"
                    );
                }
            }
            if path.contains('{') {
                assert!(responses["404"].is_object(), "{path}: 404 undocumented");
            }
        }
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

#[tokio::test]
async fn docs_disabled_look_like_any_unknown_path() {
    let app = TestApp::spawn(&[("RAMPART_DOCS", "false")]).await;
    for path in [
        "/docs",
        "/docs/",
        "/openapi.json",
        "/docs/swagger-ui-bundle.js",
    ] {
        problem(app.get(path).await, 401).await;
    }
}

#[tokio::test]
async fn cors_preflight_only_for_listed_origins() {
    let app = TestApp::spawn(&[("RAMPART_CORS_ORIGINS", "https://app.example.com")]).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, app.url("/v1/users/me"))
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
            .send()
    };
    let ok = preflight("https://app.example.com").await.unwrap();
    assert!(ok.status().is_success());
    assert_eq!(
        ok.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.com"
    );
    assert!(!ok
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
    assert_hardened(&ok);
    for evil in [
        "https://evil.example",
        "null",
        "https://app.example.com.evil.example",
    ] {
        let refused = preflight(evil).await.unwrap();
        assert!(
            !refused
                .headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
            "{evil}"
        );
    }
}

#[tokio::test]
async fn closed_cors_sends_no_cors_headers() {
    let app = TestApp::spawn(&[]).await;
    let response = app
        .client
        .get(app.url("/health"))
        .header(header::ORIGIN, "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!response
        .headers()
        .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
}

#[tokio::test]
async fn request_id_is_echoed_when_sane_and_replaced_when_not() {
    let app = TestApp::spawn(&[]).await;
    let sent = |id: &'static str| {
        app.client
            .get(app.url("/nope"))
            .header("x-request-id", id)
            .send()
    };
    let echoed = sent("trace-abc.123").await.unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-abc.123");
    assert_eq!(problem(echoed, 401).await["request_id"], "trace-abc.123");
    let replaced = sent("evil\" id").await.unwrap();
    assert_ne!(replaced.headers()["x-request-id"], "evil\" id");
}

#[tokio::test]
async fn a_body_with_two_content_types_is_refused_unread() {
    let app = TestApp::spawn(&[]).await;
    let password = app.register("carol").await;
    let token = app.access_token("carol", &password).await;
    // A proxy in front may take the body for the other type than this server would.
    for (first, second) in [
        ("application/json", "text/plain"),
        ("text/plain", "application/json"),
        ("application/json", "application/json"),
    ] {
        let created = app
            .client
            .post(app.url("/v1/items"))
            .bearer_auth(&token)
            .header("content-type", first)
            .header("content-type", second)
            .body(r#"{"title":"t","body":"b"}"#)
            .send()
            .await
            .unwrap();
        problem(created, 415).await;
    }
    // One header holding a list (what a proxy that merges repeated headers sends on).
    for joined in [
        "application/json; x=1, text/plain",
        "application/json;application/x-www-form-urlencoded",
    ] {
        let created = app
            .client
            .post(app.url("/v1/items"))
            .bearer_auth(&token)
            .header("content-type", joined)
            .body(r#"{"title":"t","body":"b"}"#)
            .send()
            .await
            .unwrap();
        problem(created, 415).await;
    }
    let joined_form = app
        .client
        .post(app.url("/v1/auth/login"))
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8, application/json",
        )
        .body(format!(
            "grant_type=password&username=carol&password={password}"
        ))
        .send()
        .await
        .unwrap();
    problem(joined_form, 415).await;
    let form_and_json = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("content-type", "application/json")
        .body(format!(
            "grant_type=password&username=carol&password={password}"
        ))
        .send()
        .await
        .unwrap();
    problem(form_and_json, 415).await;
    let listed: serde_json::Value = app.get_as("/v1/items", &token).await.json().await.unwrap();
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );
}

#[tokio::test]
async fn an_encoded_body_is_refused_not_read_as_plain() {
    let app = TestApp::spawn(&[]).await;
    let password = app.register("dora").await;
    let token = app.access_token("dora", &password).await;
    let body = r#"{"title":"plain","body":"b"}"#;
    let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    // (extra head lines, body): a proxy that decodes would inspect another body than this
    // server would act on, so none of these is read.
    let encoded = [
        (
            "Transfer-Encoding: gzip, chunked\r\n".to_owned(),
            chunked.clone(),
        ),
        (
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n".to_owned(),
            chunked.clone(),
        ),
        (
            "Transfer-Encoding: foo, chunked\r\n".to_owned(),
            chunked.clone(),
        ),
        (
            "Transfer-Encoding: chunked, chunked\r\n".to_owned(),
            chunked.clone(),
        ),
        (
            format!(
                "Content-Encoding: gzip\r\nContent-Length: {}\r\n",
                body.len()
            ),
            body.to_owned(),
        ),
        (
            format!(
                "Content-Encoding: identity\r\nContent-Encoding: br\r\nContent-Length: {}\r\n",
                body.len()
            ),
            body.to_owned(),
        ),
    ];
    let send = |extra: String, payload: String| {
        let request = format!(
            "POST /v1/items HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nConnection: close\r\n{extra}\r\n{payload}"
        );
        let addr = app.addr;
        async move { raw_exchange(addr, &request).await }
    };
    for (extra, payload) in encoded {
        let response = send(extra.clone(), payload).await;
        assert!(response.starts_with("HTTP/1.1 415 "), "{extra}\n{response}");
        assert!(response.contains("application/problem+json"), "{response}");
    }
    let listed: serde_json::Value = app.get_as("/v1/items", &token).await.json().await.unwrap();
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );
    // Plain chunked, and an identity coding, are bodies as they are.
    for extra in [
        "Transfer-Encoding: chunked\r\n".to_owned(),
        "Content-Encoding: identity\r\nTransfer-Encoding: chunked\r\n".to_owned(),
    ] {
        let response = send(extra.clone(), chunked.clone()).await;
        assert!(response.starts_with("HTTP/1.1 201 "), "{extra}\n{response}");
    }
}

#[tokio::test]
async fn error_answers_say_what_to_fix() {
    let app = TestApp::spawn(&[]).await;
    // `curl -d '{...}'` without -H: JSON labelled as a form. Login says so (and register's 415
    // says to send JSON), instead of blaming the form's fields.
    let json_as_form = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(r#"{"username":"alice","password":"secret"}"#)
        .send()
        .await
        .unwrap();
    let body = problem(json_as_form, 415).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("application/json"),
        "{body}"
    );
    // A missing field is named as the field.
    let missing = app
        .post_json(
            "/v1/auth/register",
            &serde_json::json!({"email": "a@example.com", "username": "alice"}),
        )
        .await;
    let body = problem(missing, 422).await;
    assert_eq!(body["errors"][0]["field"], "password", "{body}");
    assert_eq!(body["errors"][0]["message"], "is required", "{body}");
    // RFC 6750: a bad token is `invalid_token`; no token at all, the bare challenge.
    let forged = app.get_as("/v1/users/me", "not.a.token").await;
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        forged.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    let none = app.get("/v1/users/me").await;
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
}
