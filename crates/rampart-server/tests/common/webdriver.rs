//! A headless Chromium driven over the W3C WebDriver protocol (ChromeDriver), for tests that
//! must see what a real browser does with the account page: its cookies, its CSP, its
//! cross-site rules. Just the commands the tests use, over plain HTTP with reqwest.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// The key W3C WebDriver names element references by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running ChromeDriver with one browser session; both end when dropped.
pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
    profile: tempfile::TempDir,
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium (flags that keep it off the network it
    /// cannot reach here, and a fresh profile).
    pub async fn start(chromium: &std::path::Path, chromedriver: &std::path::Path) -> Self {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let http = reqwest::Client::new();
        let root = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if http.get(format!("{root}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=420,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let created: Value = http
            .post(format!("{root}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {created}"));
        Self {
            driver,
            base: format!("{root}/session/{id}"),
            http,
            profile,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(
            answer["value"].get("error").is_none(),
            "webdriver {path}: {answer}"
        );
        answer["value"].clone()
    }

    pub async fn go(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// Runs `script` in the page (its arguments as `arguments[i]`); returns what it returns.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    async fn element(&self, selector: &str) -> String {
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": selector})),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {selector}: {found}"))
            .to_owned()
    }

    /// Types `text` into the field `selector`, as a user would (key events).
    pub async fn type_into(&self, selector: &str, text: &str) {
        let element = self.element(selector).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub async fn click(&self, selector: &str) {
        let element = self.element(selector).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Waits until `condition` (a script returning a boolean) holds; panics with `what` after
    /// ten seconds, showing the page's status line.
    pub async fn wait_for(&self, condition: &str, what: &str) {
        for _ in 0..100 {
            if self.run(condition, json!([])).await == json!(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let status = self
            .run(
                "return (document.getElementById('status') || document.body).textContent",
                json!([]),
            )
            .await;
        panic!("timed out waiting for {what}; the page says: {status}");
    }

    /// The text of the element `selector`.
    pub async fn text(&self, selector: &str) -> String {
        self.run(
            "return document.querySelector(arguments[0]).textContent",
            json!([selector]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Ends the browser session (closing Chromium); the driver ends when dropped.
    pub async fn quit(self) {
        let _ = self.http.delete(&self.base).send().await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let encoded = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A test that failed before `quit` leaves Chromium running: its processes are found by
        // this browser's own profile directory (no other process names it) and ended.
        let _ = Command::new("pkill")
            .arg("-f")
            .arg(self.profile.path())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
