//! Every route and method of the service, called by its owner, another user and an anonymous
//! caller, against a table of expected statuses. A route added to the router without a row here
//! fails the test, so no endpoint ships without its access rules being written down and
//! attacked.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeSet;

use common::TestApp;
use rampart::Access;
use reqwest::Method;
use serde_json::{json, Value};

/// Expected statuses for (the owner of the resource, another user, an anonymous caller).
type Expect = [u16; 3];

/// Each mounted method of each route, with the body it is sent and what each caller gets.
fn table() -> Vec<(&'static str, Method, Option<Value>, Expect)> {
    let empty = Some(json!({}));
    vec![
        ("/health", Method::GET, None, [200, 200, 200]),
        ("/ready", Method::GET, None, [200, 200, 200]),
        ("/.well-known/jwks.json", Method::GET, None, [200, 200, 200]),
        // Public writes, sent an empty object: reached and validated for everyone.
        (
            "/v1/auth/register",
            Method::POST,
            empty.clone(),
            [422, 422, 422],
        ),
        (
            "/v1/auth/login",
            Method::POST,
            empty.clone(),
            [422, 422, 422],
        ),
        (
            "/v1/auth/refresh",
            Method::POST,
            empty.clone(),
            [422, 422, 422],
        ),
        ("/v1/users/me", Method::GET, None, [200, 200, 401]),
        ("/v1/auth/logout", Method::POST, None, [204, 204, 401]),
        ("/v1/auth/logout-all", Method::POST, None, [204, 204, 401]),
        ("/v1/auth/sessions", Method::GET, None, [200, 200, 401]),
        (
            "/v1/auth/sessions/{id}",
            Method::DELETE,
            None,
            [204, 404, 401],
        ),
        (
            "/v1/auth/password",
            Method::POST,
            empty.clone(),
            [422, 422, 401],
        ),
        (
            "/v1/auth/mfa/verify",
            Method::POST,
            empty.clone(),
            [422, 422, 422],
        ),
        // Enrolling starts a pending secret for whoever calls; removing needs its fields.
        ("/v1/auth/mfa/totp", Method::POST, None, [201, 201, 401]),
        (
            "/v1/auth/mfa/totp/confirm",
            Method::POST,
            empty.clone(),
            [422, 422, 401],
        ),
        (
            "/v1/auth/mfa/totp",
            Method::DELETE,
            empty.clone(),
            [422, 422, 401],
        ),
        // Mailed links: public, validated for everyone; resending needs a caller.
        (
            "/v1/auth/password/forgot",
            Method::POST,
            empty.clone(),
            [422, 422, 422],
        ),
        (
            "/v1/auth/password/reset",
            Method::POST,
            empty.clone(),
            [422, 422, 422],
        ),
        (
            "/v1/auth/email/verify",
            Method::POST,
            empty,
            [422, 422, 422],
        ),
        (
            "/v1/auth/email/verify/resend",
            Method::POST,
            None,
            [202, 202, 401],
        ),
        // Browser sign-in from no origin at all: refused as cross-site, whatever
        // `Authorization` it carries (the sign-in routes read none, and a browser attaches
        // Basic or Negotiate credentials to another site's form on its own).
        (
            "/v1/browser/login",
            Method::POST,
            Some(json!({})),
            [403, 403, 403],
        ),
        (
            "/v1/browser/mfa",
            Method::POST,
            Some(json!({})),
            [403, 403, 403],
        ),
        // A bearer caller signs its own session out (its token stops working).
        ("/v1/browser/logout", Method::POST, None, [204, 204, 401]),
        ("/v1/items", Method::GET, None, [200, 200, 401]),
        (
            "/v1/items",
            Method::POST,
            Some(json!({"title": "t", "body": "b"})),
            [201, 201, 401],
        ),
        ("/v1/items/{id}", Method::GET, None, [200, 404, 401]),
        (
            "/v1/items/{id}",
            Method::PATCH,
            Some(json!({"title": "changed"})),
            [200, 404, 401],
        ),
        ("/v1/items/{id}", Method::DELETE, None, [204, 404, 401]),
        // Admin routes: neither user is an admin.
        ("/v1/admin/users", Method::GET, None, [403, 403, 401]),
        ("/v1/admin/audit", Method::GET, None, [403, 403, 401]),
        (
            "/v1/admin/users/{id}",
            Method::PATCH,
            Some(json!({"role": "admin"})),
            [403, 403, 401],
        ),
        (
            "/v1/admin/users/{id}/lock",
            Method::POST,
            None,
            [403, 403, 401],
        ),
        (
            "/v1/admin/users/{id}/unlock",
            Method::POST,
            None,
            [403, 403, 401],
        ),
    ]
}

const PROBED: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

struct Callers {
    owner: String,
    other: String,
    owner_password: String,
}

impl Callers {
    /// Logs the users in again when the previous row ended their sessions.
    async fn refresh(&mut self, app: &TestApp) {
        if app.get_as("/v1/users/me", &self.owner).await.status() != 200 {
            self.owner = app.access_token("owner", &self.owner_password).await;
        }
        if app.get_as("/v1/users/me", &self.other).await.status() != 200 {
            self.other = app.access_token("other", &self.owner_password).await;
        }
    }
}

/// `path` with its `{id}` filled with a resource of the owner's.
async fn concrete(app: &TestApp, path: &str, owner: &str) -> String {
    let id = match path {
        "/v1/items/{id}" => {
            let item: Value = app
                .call(
                    Method::POST,
                    "/v1/items",
                    Some(owner),
                    Some(&json!({"title": "owned", "body": ""})),
                )
                .await
                .json()
                .await
                .unwrap();
            item["id"].as_str().unwrap().to_owned()
        }
        "/v1/auth/sessions/{id}" => app.current_session_id(owner).await,
        _ if path.starts_with("/v1/admin/users/{id}") => app.user_id(owner).await,
        _ => return path.to_owned(),
    };
    path.replace("{id}", &id)
}

#[tokio::test]
async fn every_route_and_method_answers_each_caller_as_the_table_says() {
    crate::require!(common::backend_ready().await);
    let app = TestApp::spawn(&[]).await;
    let owner_password = app.register("owner").await;
    app.register("other").await;
    let mut callers = Callers {
        owner: app.access_token("owner", &owner_password).await,
        other: app.access_token("other", &owner_password).await,
        owner_password,
    };

    let mounted = rampart_server::routes::routes(true);
    let table = table();
    let listed: BTreeSet<&str> = table.iter().map(|row| row.0).collect();
    let routes: BTreeSet<&str> = mounted.table().iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        routes, listed,
        "every mounted route needs rows in this table (and only mounted ones)"
    );

    let mut failures = Vec::new();
    for (path, access) in mounted.table() {
        for method in PROBED {
            let row = table
                .iter()
                .find(|row| row.0 == path.as_str() && row.1 == method);
            let (body, expect) = match row {
                Some((_, _, body, expect)) => (body.clone(), *expect),
                // A method the route does not have: 405 to whoever may reach the route. The
                // access check runs first, so anonymous callers still get 401 and users 403.
                None => match access {
                    Access::Public => (None, [405, 405, 405]),
                    Access::Authenticated => (None, [405, 405, 401]),
                    Access::Admin => (None, [403, 403, 401]),
                },
            };
            // The owner goes last: it may delete the resource or end its own session.
            for (who, index) in [("anonymous", 2), ("other", 1), ("owner", 0)] {
                callers.refresh(&app).await;
                let target = concrete(&app, path, &callers.owner).await;
                let token = match index {
                    0 => Some(callers.owner.as_str()),
                    1 => Some(callers.other.as_str()),
                    _ => None,
                };
                let status = app
                    .call(method.clone(), &target, token, body.as_ref())
                    .await
                    .status()
                    .as_u16();
                if status != expect[index] {
                    failures.push(format!(
                        "{method} {path} as {who}: expected {}, got {status}",
                        expect[index]
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
