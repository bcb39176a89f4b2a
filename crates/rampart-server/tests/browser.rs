//! Browser sessions, attacked: cross-site requests riding the cookie (no CSRF header, another
//! session's value, a foreign origin, no origin at all), a cross-site sign-in form, planted
//! duplicate cookies, and revocation of a cookie session from elsewhere. Cookies are handled
//! by hand here, as a browser would send them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A signed-in browser: its two cookie values.
struct Browser {
    session: String,
    csrf: String,
}

impl Browser {
    fn cookie_header(&self) -> String {
        format!(
            "__Host-rampart_session={}; __Host-rampart_csrf={}",
            self.session, self.csrf
        )
    }
}

fn own_origin(app: &TestApp) -> String {
    format!("http://{}", app.addr)
}

/// The value of cookie `name` among a response's `Set-Cookie` headers, with its attributes.
fn set_cookie<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
}

fn value_of(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .map(|(_, v)| v.to_owned())
        .unwrap()
}

async fn browser_login(app: &TestApp, username: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/v1/browser/login"))
        .header("origin", own_origin(app))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn signed_in(app: &TestApp, username: &str, password: &str) -> Browser {
    let answer = browser_login(app, username, password).await;
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    let session = set_cookie(&answer, "__Host-rampart_session").unwrap();
    let csrf = set_cookie(&answer, "__Host-rampart_csrf").unwrap();
    Browser {
        session: value_of(session),
        csrf: value_of(csrf),
    }
}

/// A cookie request: `csrf` as the header's value, `origin` as the Origin header.
async fn as_browser(
    app: &TestApp,
    browser: &Browser,
    method: Method,
    path: &str,
    csrf: Option<&str>,
    origin: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(method, app.url(path))
        .header("cookie", browser.cookie_header());
    if let Some(csrf) = csrf {
        request = request.header("x-csrf-token", csrf);
    }
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn assert_csrf_refusal(response: reqwest::Response) {
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:rampart:problem:csrf");
}

#[tokio::test]
async fn a_browser_signs_in_with_cookies_no_script_can_read() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let password = app.register("ann").await;
    let answer = browser_login(&app, "ann", &password).await;
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    let session = set_cookie(&answer, "__Host-rampart_session")
        .unwrap()
        .to_owned();
    let csrf = set_cookie(&answer, "__Host-rampart_csrf")
        .unwrap()
        .to_owned();
    for flag in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(session.contains(flag), "{session}");
    }
    assert!(
        csrf.contains("Secure") && csrf.contains("SameSite=Strict"),
        "{csrf}"
    );
    assert!(
        !csrf.contains("HttpOnly"),
        "the page's script reads the CSRF value"
    );
    assert!(
        answer.bytes().await.unwrap().is_empty(),
        "no token in the body"
    );

    let browser = Browser {
        session: value_of(&session),
        csrf: value_of(&csrf),
    };
    // Reads need no CSRF header; the session is listed like any other, as the current one.
    let me = as_browser(
        &app,
        &browser,
        Method::GET,
        "/v1/users/me",
        None,
        None,
        None,
    )
    .await;
    assert_eq!(me.status(), StatusCode::OK);
    let list: Value = as_browser(
        &app,
        &browser,
        Method::GET,
        "/v1/auth/sessions",
        None,
        None,
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(list["sessions"][0]["current"], true);

    let origin = own_origin(&app);
    let out = as_browser(
        &app,
        &browser,
        Method::POST,
        "/v1/browser/logout",
        Some(&browser.csrf),
        Some(&origin),
        None,
    )
    .await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    for name in ["__Host-rampart_session", "__Host-rampart_csrf"] {
        let cleared = set_cookie(&out, name).unwrap();
        assert!(cleared.contains("Max-Age=0"), "{cleared}");
    }
    let after = as_browser(
        &app,
        &browser,
        Method::GET,
        "/v1/users/me",
        None,
        None,
        None,
    )
    .await;
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_cookie_request_needs_its_csrf_value_and_this_sites_origin() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let password = app.register("ben").await;
    let browser = signed_in(&app, "ben", &password).await;
    let other = signed_in(&app, "ben", &password).await;
    let origin = own_origin(&app);
    let item = || Some(json!({"title": "forged", "body": "b"}));

    // No header, another session's value, a made-up one: refused, and nothing is created.
    for csrf in [None, Some(other.csrf.as_str()), Some("AAAA")] {
        let forged = as_browser(
            &app,
            &browser,
            Method::POST,
            "/v1/items",
            csrf,
            Some(&origin),
            item(),
        )
        .await;
        assert_csrf_refusal(forged).await;
    }
    // The right value from another site, or with no origin to tell: refused.
    for origin in [Some("https://evil.example"), Some("null"), None] {
        let forged = as_browser(
            &app,
            &browser,
            Method::POST,
            "/v1/items",
            Some(&browser.csrf),
            origin,
            item(),
        )
        .await;
        assert_csrf_refusal(forged).await;
    }
    let cross_site = app
        .client
        .post(app.url("/v1/items"))
        .header("cookie", browser.cookie_header())
        .header("x-csrf-token", &browser.csrf)
        .header("sec-fetch-site", "cross-site")
        .json(&json!({"title": "forged", "body": "b"}))
        .send()
        .await
        .unwrap();
    assert_csrf_refusal(cross_site).await;
    // Two Origin headers (one of them this site's) are not a browser's: refused.
    let doubled = app
        .client
        .post(app.url("/v1/items"))
        .header("cookie", browser.cookie_header())
        .header("x-csrf-token", &browser.csrf)
        .header("origin", origin.as_str())
        .header("origin", "https://evil.example")
        .json(&json!({"title": "forged", "body": "b"}))
        .send()
        .await
        .unwrap();
    assert_csrf_refusal(doubled).await;
    // Two CSRF values, the right one first: a second is not the page's, refused.
    for second in ["AAAA", browser.csrf.as_str()] {
        let doubled = app
            .client
            .post(app.url("/v1/items"))
            .header("cookie", browser.cookie_header())
            .header("x-csrf-token", &browser.csrf)
            .header("x-csrf-token", second)
            .header("origin", origin.as_str())
            .json(&json!({"title": "forged", "body": "b"}))
            .send()
            .await
            .unwrap();
        assert_csrf_refusal(doubled).await;
    }
    let list: Value = as_browser(&app, &browser, Method::GET, "/v1/items", None, None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        0,
        "no forged request had an effect"
    );
    // The campaign is on the security trail (sampled: one row per caller a minute).
    let admin = app.admin_token().await;
    let denied = app.audit_events(&admin, Some("access_denied")).await;
    assert!(
        denied.iter().any(|e| e["detail"]["reason"] == "csrf"),
        "{denied:?}"
    );

    // The page's own request: its origin (or Sec-Fetch-Site) and its value.
    let made = as_browser(
        &app,
        &browser,
        Method::POST,
        "/v1/items",
        Some(&browser.csrf),
        Some(&origin),
        item(),
    )
    .await;
    assert_eq!(made.status(), StatusCode::CREATED);
    let same_origin = app
        .client
        .post(app.url("/v1/items"))
        .header("cookie", browser.cookie_header())
        .header("x-csrf-token", &browser.csrf)
        .header("sec-fetch-site", "same-origin")
        .json(&json!({"title": "t", "body": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(same_origin.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_cross_site_sign_in_form_is_refused() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let password = app.register("cleo").await;
    let form = format!(
        "grant_type=password&username=cleo&password={}",
        password.replace(' ', "+")
    );
    // A browser attaches the HTTP credentials it holds for this origin (Basic, Negotiate) to
    // a cross-site form post on its own: an `Authorization` header says nothing about where
    // a sign-in came from (outside review). Nor does a bearer token on a route that reads
    // none.
    for authorization in [
        None,
        Some("Basic dXNlcjpwYXNz"),
        Some("Negotiate YIIC"),
        Some("Bearer not-a-token"),
    ] {
        for origin in [Some("https://evil.example"), None] {
            let mut request = app
                .client
                .post(app.url("/v1/browser/login"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("sec-fetch-site", "cross-site")
                .body(form.clone());
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            if let Some(authorization) = authorization {
                request = request.header("authorization", authorization);
            }
            let response = request.send().await.unwrap();
            assert!(
                response.headers().get("set-cookie").is_none(),
                "{authorization:?} from {origin:?} signed a browser in"
            );
            assert_csrf_refusal(response).await;
        }
        let mut second_factor = app
            .client
            .post(app.url("/v1/browser/mfa"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", "https://evil.example")
            .body("challenge=x&code=123456");
        if let Some(authorization) = authorization {
            second_factor = second_factor.header("authorization", authorization);
        }
        assert_csrf_refusal(second_factor.send().await.unwrap()).await;
    }
}

#[tokio::test]
async fn bearer_clients_are_judged_by_their_token_alone() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let password = app.register("dirk").await;
    let token = app.access_token("dirk", &password).await;
    let browser = signed_in(&app, "dirk", &password).await;
    // A bearer request needs no CSRF header, whatever its origin, cookie or not.
    let made = app
        .client
        .post(app.url("/v1/items"))
        .bearer_auth(&token)
        .header("origin", "https://other.example")
        .header("cookie", browser.cookie_header())
        .json(&json!({"title": "t", "body": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), StatusCode::CREATED);
    // An API client whose cookie jar holds someone else's cookies (a load balancer's) signs
    // in without any browser header.
    let api_login = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("cookie", "AWSALB=sticky; other=1")
        .json(&json!({"username": "dirk", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(api_login.status(), StatusCode::OK);
    // A bad token is not rescued by a good cookie.
    let bad = app
        .client
        .get(app.url("/v1/users/me"))
        .header("authorization", "Bearer not-a-token")
        .header("cookie", browser.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    // Nor are the credentials a browser attaches on its own to another site's form: a
    // cross-site sign-out with the cookie and Basic credentials ends nothing.
    let forged_sign_out = app
        .client
        .post(app.url("/v1/browser/logout"))
        .header("authorization", "Basic dXNlcjpwYXNz")
        .header("origin", "https://evil.example")
        .header("cookie", browser.cookie_header())
        .send()
        .await
        .unwrap();
    assert_eq!(forged_sign_out.status(), StatusCode::UNAUTHORIZED);
    let still_signed_in = as_browser(
        &app,
        &browser,
        Method::GET,
        "/v1/users/me",
        None,
        None,
        None,
    )
    .await;
    assert_eq!(still_signed_in.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_cookie_session_ends_like_any_other_and_a_planted_twin_is_not_trusted() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let password = app.register("edda").await;
    let token = app.access_token("edda", &password).await;
    let browser = signed_in(&app, "edda", &password).await;
    let me = |cookie: String| {
        let app = &app;
        async move {
            app.client
                .get(app.url("/v1/users/me"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(me(browser.cookie_header()).await, StatusCode::OK);
    let planted = format!(
        "__Host-rampart_session=planted; {}",
        browser.cookie_header()
    );
    assert_eq!(me(planted).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        me("__Host-rampart_session=made-up".into()).await,
        StatusCode::UNAUTHORIZED
    );
    // Ended from the API client's session list: the cookie stops working at once.
    let cookie_session = app.other_session_id(&token).await;
    let ended = app
        .call(
            Method::DELETE,
            &format!("/v1/auth/sessions/{cookie_session}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    assert_eq!(me(browser.cookie_header()).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_browser_completes_a_second_factor_to_get_its_cookies() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let password = app.register("finn").await;
    let token = app.access_token("finn", &password).await;
    // Recovery codes stand in for the app here (mfa.rs computes codes).
    let started: Value = app
        .call(Method::POST, "/v1/auth/mfa/totp", Some(&token), None)
        .await
        .json()
        .await
        .unwrap();
    let uri = started["otpauth_uri"].as_str().unwrap().to_owned();
    assert!(uri.contains("secret="));
    let pending = browser_login(&app, "finn", &password).await;
    assert_eq!(
        pending.status(),
        StatusCode::NO_CONTENT,
        "not on until confirmed"
    );

    // Confirm with a code computed from the secret (RFC 6238, SHA-1).
    let secret = started["secret"].as_str().unwrap();
    let code = common::totp::code_at(&common::totp::base32(secret), common::totp::now_step());
    let confirmed: Value = app
        .call(
            Method::POST,
            "/v1/auth/mfa/totp/confirm",
            Some(&token),
            Some(&json!({"code": code})),
        )
        .await
        .json()
        .await
        .unwrap();
    let recovery = confirmed["recovery_codes"][0].as_str().unwrap().to_owned();

    let step: Value = browser_login(&app, "finn", &password)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(step["mfa_required"], true);
    let done = app
        .client
        .post(app.url("/v1/browser/mfa"))
        .header("origin", own_origin(&app))
        .json(&json!({"mfa_token": step["mfa_token"], "code": recovery}))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::NO_CONTENT);
    assert!(set_cookie(&done, "__Host-rampart_session").is_some());
}

#[tokio::test]
async fn the_account_page_is_served_under_its_own_policy_and_can_be_turned_off() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    for path in [
        "/account",
        "/account/reset",
        "/account/app.js",
        "/account/app.css",
    ] {
        let page = app.get(path).await;
        assert_eq!(page.status(), StatusCode::OK, "{path}");
        assert_eq!(
            page.headers()["content-security-policy"],
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
        );
        assert_eq!(page.headers()["x-frame-options"], "DENY");
        assert_eq!(page.headers()["cross-origin-opener-policy"], "same-origin");
    }
    let html = app.get("/account").await.text().await.unwrap();
    // No inline script or style, and nothing from another origin.
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "{html}"
    );
    assert!(!html.contains("://"), "{html}");
    let off = TestApp::spawn(&[("RAMPART_ACCOUNT_PAGE", "false")]).await;
    assert_eq!(off.get("/account").await.status(), StatusCode::UNAUTHORIZED);
}
