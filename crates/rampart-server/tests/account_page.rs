//! The account page in a real browser (headless Chromium over WebDriver): the whole flow a
//! person goes through, and a cross-site form post refused. The test computes TOTP codes from
//! the key the page shows, and reads its mail from the file outbox.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::path::Path;
use std::time::Duration;

use common::totp::now_step;
use common::webdriver::Browser;
use common::TestApp;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "violet tandem bicycles rarely whistle";
const NEW_PASSWORD: &str = "amber otters juggle quiet lanterns";

fn totp(secret_base32: &str, step: u64) -> String {
    common::totp::code_at(&common::totp::base32(secret_base32), step)
}

/// The newest link under `path` in the outbox's messages to `to`.
async fn link_in_mail(outbox: &Path, to: &str, path: &str) -> String {
    for _ in 0..100 {
        let mut newest: Option<(std::time::SystemTime, String)> = None;
        for entry in std::fs::read_dir(outbox).into_iter().flatten() {
            let file = entry.unwrap().path();
            let text = std::fs::read_to_string(&file)
                .unwrap()
                .replace("=\r\n", "")
                .replace("=3D", "=");
            if !text.contains(&format!("To: {to}")) {
                continue;
            }
            let Some(at) = text.find(path) else { continue };
            let start = text[..at].rfind("http").unwrap();
            let link: String = text[start..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
            if newest.as_ref().is_none_or(|(when, _)| modified > *when) {
                newest = Some((modified, link));
            }
        }
        if let Some((_, link)) = newest {
            return link;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {path} link to {to}");
}

/// Serves `html` to every request on another origin (`localhost`, a different site from the
/// app's `127.0.0.1`): the attacker's page.
async fn attacker_site(html: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let html = html.clone();
            tokio::spawn(async move {
                let mut buffer = [0u8; 4096];
                let _ = socket.read(&mut buffer).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{html}",
                    html.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    format!("http://localhost:{port}/")
}

/// An API client's session for `pageuser` (two-factor: `code` completes it); its access token.
async fn api_session(app: &TestApp, password: &str, code: &str) -> String {
    let challenge: Value = app
        .post_json(
            "/v1/auth/login",
            &json!({"username": "pageuser", "password": password}),
        )
        .await
        .json()
        .await
        .unwrap();
    let pair: Value = app
        .post_json(
            "/v1/auth/mfa/verify",
            &json!({"mfa_token": challenge["mfa_token"], "code": code}),
        )
        .await
        .json()
        .await
        .unwrap();
    pair["access_token"].as_str().unwrap().to_owned()
}

async fn sign_in(browser: &Browser, base: &str, name: &str, password: &str) {
    browser.go(&format!("{base}/account")).await;
    browser
        .wait_for(
            "return !document.getElementById('signin').hidden",
            "the sign-in form",
        )
        .await;
    browser.type_into("#signin-name", name).await;
    browser.type_into("#signin-password", password).await;
    browser.click("#signin-form button").await;
}

async fn signed_in(browser: &Browser) {
    browser
        .wait_for(
            "return !document.getElementById('account').hidden",
            "the account view",
        )
        .await;
}

async fn save_screenshot(browser: &Browser, name: &str) {
    let png = browser.screenshot().await;
    assert_eq!(&png[1..4], b"PNG");
    // Set to refresh the README's pictures.
    if let Ok(dir) = std::env::var("RAMPART_SCREENSHOTS") {
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_runs_their_account_from_the_page_in_chromium() {
    let (chromium, chromedriver) = crate::require!(common::services::chromium());
    crate::require!(common::backend_ready().await);
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let mail = format!("file:{}", outbox.display());
    let app = TestApp::spawn_in(dir, &[("RAMPART_MAIL", &mail)]).await;
    let base = format!("http://{}", app.addr);
    let browser = Browser::start(&chromium, &chromedriver).await;

    // Sign up (through the API), then verify the address from the mailed link.
    app.post_json(
        "/v1/auth/register",
        &json!({"email": "page@example.com", "username": "pageuser", "password": PASSWORD}),
    )
    .await;
    let verify = link_in_mail(&outbox, "page@example.com", "/account/verify-email").await;
    browser.go(&verify).await;
    browser
        .wait_for(
            "return document.getElementById('status').textContent.includes('verified')",
            "the verification",
        )
        .await;
    let address_bar = browser.run("return window.location.href", json!([])).await;
    assert!(
        !address_bar.as_str().unwrap().contains("token="),
        "the token is taken out of the address bar: {address_bar}"
    );

    // Every field is labelled (screen readers, and a tap on the label focuses it).
    browser.go(&format!("{base}/account")).await;
    let unlabelled = browser
        .run(
            "return [...document.querySelectorAll('input')].filter(i => i.labels.length === 0).map(i => i.id)",
            json!([]),
        )
        .await;
    assert_eq!(unlabelled, json!([]), "inputs without a label");

    // Sign in: cookies only, nothing a script can read but the CSRF value.
    sign_in(&browser, &base, "pageuser", PASSWORD).await;
    signed_in(&browser).await;
    assert_eq!(browser.text("#me-verified").await, "verified");
    let visible = browser.run("return document.cookie", json!([])).await;
    let visible = visible.as_str().unwrap();
    assert!(visible.contains("__Host-rampart_csrf="), "{visible}");
    assert!(
        !visible.contains("__Host-rampart_session"),
        "HttpOnly: {visible}"
    );

    // Enrol TOTP: the key shown, a code computed from it, ten recovery codes back.
    browser.click("#mfa-start").await;
    browser
        .wait_for(
            "return !document.getElementById('mfa-enrol').hidden && document.querySelector('#mfa-qr svg') !== null",
            "the QR code",
        )
        .await;
    save_screenshot(&browser, "account-enrol").await;
    let secret = browser.text("#mfa-secret").await;
    let confirmed_at = now_step();
    browser
        .type_into("#mfa-confirm-code", &totp(&secret, confirmed_at))
        .await;
    browser.click("#mfa-confirm-form button").await;
    browser
        .wait_for(
            "return document.querySelectorAll('#mfa-codes li').length === 10",
            "the recovery codes",
        )
        .await;
    let recovery: Vec<String> = serde_json::from_value(
        browser
            .run(
                "return [...document.querySelectorAll('#mfa-codes li')].map(li => li.textContent)",
                json!([]),
            )
            .await,
    )
    .unwrap();

    // Sign out: nothing of this person (the key, the recovery codes) stays in the page for
    // whoever uses the browser next (an outside review found them still shown).
    browser.click("#signout").await;
    browser
        .wait_for(
            "return !document.getElementById('signin').hidden && document.getElementById('status').textContent.includes('Signed out')",
            "the signed-out page",
        )
        .await;
    let left = browser
        .run(
            "return [document.querySelectorAll('#mfa-codes li').length, document.getElementById('mfa-secret').textContent, document.querySelectorAll('#mfa-qr svg').length]",
            json!([]),
        )
        .await;
    assert_eq!(
        left,
        json!([0, "", 0]),
        "the previous person's key or codes"
    );

    // A wrong code returns to the password step with a message, not a dead end.
    sign_in(&browser, &base, "pageuser", PASSWORD).await;
    browser
        .wait_for(
            "return !document.getElementById('mfa-form').hidden",
            "the code step",
        )
        .await;
    let wrong = common::totp::wrong_code(&totp(&secret, confirmed_at + 1));
    browser.type_into("#mfa-code", &wrong).await;
    browser.click("#mfa-form button").await;
    browser
        .wait_for(
            "return !document.getElementById('signin-form').hidden && document.getElementById('mfa-form').hidden",
            "the way back to the password",
        )
        .await;

    // And back in with the next code.
    sign_in(&browser, &base, "pageuser", PASSWORD).await;
    browser
        .wait_for(
            "return !document.getElementById('mfa-form').hidden",
            "the code step",
        )
        .await;
    browser
        .type_into("#mfa-code", &totp(&secret, confirmed_at + 1))
        .await;
    browser.click("#mfa-form button").await;
    signed_in(&browser).await;

    // End another session (an API client's) from the page.
    let other = api_session(&app, PASSWORD, &recovery[0]).await;
    assert_eq!(app.get_as("/v1/users/me", &other).await.status(), 200);
    browser.go(&format!("{base}/account")).await;
    signed_in(&browser).await;
    browser
        .wait_for(
            "return document.querySelectorAll('#sessions li').length === 2",
            "two sessions listed",
        )
        .await;
    save_screenshot(&browser, "account-sessions").await;
    browser
        .run(
            "[...document.querySelectorAll('#sessions li')].find(li => !li.textContent.includes('this browser')).querySelector('button').click()",
            json!([]),
        )
        .await;
    browser
        .wait_for(
            "return document.getElementById('status').textContent.includes('ended')",
            "the session's end",
        )
        .await;
    assert_eq!(app.get_as("/v1/users/me", &other).await.status(), 401);

    // A cross-site form post, with the browser signed in: refused, and nothing created.
    let forged = attacker_site(format!(
        r#"<form id="f" method="post" action="{base}/v1/items" enctype="text/plain"><input name='{{"title":"forged","body":"' value='"}}'></form><form id="g" method="post" action="{base}/v1/browser/login"><input name="username" value="pageuser"><input name="password" value="{PASSWORD}"><input name="grant_type" value="password"></form><script>document.getElementById(location.hash === '#login' ? 'g' : 'f').submit()</script>"#
    ))
    .await;
    browser.go(&forged).await;
    browser
        .wait_for(
            &format!("return window.location.href.startsWith('{base}')"),
            "the forged post's answer",
        )
        .await;
    let answer = browser
        .run("return document.body.textContent", json!([]))
        .await;
    assert!(
        answer.as_str().unwrap().contains("\"status\":401"),
        "SameSite=Strict: no cookie on a cross-site post: {answer}"
    );
    browser.go(&format!("{forged}#login")).await;
    browser
        .wait_for(
            &format!("return window.location.href.startsWith('{base}')"),
            "the forged sign-in's answer",
        )
        .await;
    let answer = browser
        .run("return document.body.textContent", json!([]))
        .await;
    assert!(
        answer
            .as_str()
            .unwrap()
            .contains("urn:rampart:problem:csrf"),
        "a sign-in form on another site is refused: {answer}"
    );
    let items: Value = {
        browser.go(&format!("{base}/v1/items")).await;
        serde_json::from_str(
            browser
                .run("return document.body.textContent", json!([]))
                .await
                .as_str()
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(items["items"].as_array().unwrap().len(), 0);

    // Forgotten password: the mailed link, a new password, every session ended.
    browser.go(&format!("{base}/account/forgot")).await;
    browser
        .wait_for(
            "return !document.getElementById('forgot').hidden",
            "the forgot form",
        )
        .await;
    browser.type_into("#forgot-email", "page@example.com").await;
    browser.click("#forgot-form button").await;
    let reset = link_in_mail(&outbox, "page@example.com", "/account/reset").await;
    browser.go(&reset).await;
    browser
        .wait_for(
            "return !document.getElementById('reset').hidden",
            "the reset form",
        )
        .await;
    browser.type_into("#reset-password", NEW_PASSWORD).await;
    browser.click("#reset-form button").await;
    browser
        .wait_for(
            "return document.getElementById('status').textContent.includes('password is set')",
            "the reset",
        )
        .await;
    sign_in(&browser, &base, "pageuser", NEW_PASSWORD).await;
    browser
        .wait_for(
            "return !document.getElementById('mfa-form').hidden",
            "the code step",
        )
        .await;
    browser.type_into("#mfa-code", &recovery[1]).await;
    browser.click("#mfa-form button").await;
    signed_in(&browser).await;
    save_screenshot(&browser, "account-signed-in").await;

    // The page's session ended elsewhere: Sign out still starts the page over (an outside
    // review found the previous view kept when the sign-out itself was refused).
    let api_token = api_session(&app, NEW_PASSWORD, &recovery[2]).await;
    let ended = app
        .call(
            reqwest::Method::POST,
            "/v1/auth/logout-all",
            Some(&api_token),
            None,
        )
        .await;
    assert_eq!(ended.status(), 204);
    browser.click("#signout").await;
    browser
        .wait_for(
            "return !document.getElementById('signin').hidden && document.getElementById('status').textContent.includes('already ended')",
            "the page starting over",
        )
        .await;
    browser.quit().await;
}
