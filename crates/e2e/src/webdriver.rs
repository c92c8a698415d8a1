//! A small W3C WebDriver client over `reqwest`, enough to drive headless
//! Chromium through `chromedriver`: open a page, find elements, type, click,
//! run a script, take a screenshot.
//!
//! The protocol is plain JSON over HTTP on loopback, so a few dozen lines do
//! what a full client crate would, without bringing a second TLS stack into
//! the test binary.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// The key W3C WebDriver uses for element references in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running `chromedriver`, killed with the browsers it started when
/// dropped.
#[derive(Debug)]
pub struct Driver {
    /// Held so the process lives as long as the driver; `kill_on_drop` ends it.
    _child: Child,
    /// The process group of `chromedriver` and the browsers it starts. A test
    /// that panics never reaches `quit`, and killing `chromedriver` alone
    /// would leave its browser running, so `Drop` ends the whole group.
    group: Option<u32>,
    /// `http://127.0.0.1:PORT`.
    url: String,
    /// Where Chromium keeps its profile; removed when dropped.
    _profile: tempfile::TempDir,
}

/// One browser session.
#[derive(Debug)]
pub struct Session {
    http: reqwest::Client,
    /// `{driver}/session/{id}`.
    base: String,
}

/// A reference to an element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

/// Finds `chromedriver` and `chromium` on this machine.
pub fn find_browser() -> Option<(String, String)> {
    let driver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let browser = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    Some((driver.to_owned(), browser.to_owned()))
}

impl Driver {
    /// Starts `chromedriver` on a free loopback port and waits until it
    /// answers.
    pub async fn start(driver_path: &str) -> Result<Self> {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let child = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("failed to start {driver_path}"))?;
        let group = child.id();
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{url}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not answer on {url}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            _child: child,
            group,
            url,
            _profile: tempfile::tempdir()?,
        })
    }

    /// Opens a headless Chromium session with a fresh profile.
    pub async fn session(&self, browser_path: &str) -> Result<Session> {
        let profile = self._profile.path().display().to_string();
        let caps = json!({
            "capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": browser_path,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--disable-quic",
                        "--no-first-run", "--window-size=1200,1400",
                        // Names other than loopback resolve to nothing, inside
                        // the browser: no lookup leaves the machine.
                        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
                        format!("--user-data-dir={profile}"),
                    ]
                },
                "goog:loggingPrefs": {"browser": "ALL"}
            }}
        });
        let http = reqwest::Client::new();
        let v = call(
            &http,
            reqwest::Method::POST,
            &format!("{}/session", self.url),
            Some(caps),
        )
        .await?;
        let id = v["sessionId"]
            .as_str()
            .context("no sessionId in the new-session answer")?;
        Ok(Session {
            http,
            base: format!("{}/session/{id}", self.url),
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(pgid) = self.group {
            // The negative id names the group; `kill` keeps this crate free of
            // a libc dependency.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Sends one WebDriver command and returns its `value`, turning protocol
/// errors into `Err`.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value> {
    let mut req = http.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("WebDriver {url}"))?;
    let status = resp.status();
    let v: Value = resp.json().await.context("WebDriver answered no JSON")?;
    let value = v.get("value").cloned().unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "WebDriver error {status}: {} {}",
            value["error"].as_str().unwrap_or(""),
            value["message"].as_str().unwrap_or("")
        );
    }
    // A new session answers {value: {sessionId, capabilities}}.
    Ok(value)
}

impl Session {
    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value> {
        call(&self.http, method, &format!("{}{path}", self.base), body).await
    }

    /// Loads `url` and waits for it.
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await
            .map(drop)
    }

    /// Resizes the window, to check narrow (phone) layouts.
    pub async fn set_window(&self, width: u32, height: u32) -> Result<()> {
        self.cmd(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await
        .map(drop)
    }

    /// The first element matching a CSS selector.
    pub async fn find(&self, css: &str) -> Result<Element> {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await
            .with_context(|| format!("no element matches {css}"))?;
        Ok(Element(
            v[ELEMENT_KEY]
                .as_str()
                .context("element reference")?
                .to_owned(),
        ))
    }

    /// Types `text` into an element.
    pub async fn type_into(&self, el: &Element, text: &str) -> Result<()> {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{}/value", el.0),
            Some(json!({"text": text})),
        )
        .await
        .map(drop)
    }

    /// Clears an input.
    pub async fn clear(&self, el: &Element) -> Result<()> {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{}/clear", el.0),
            Some(json!({})),
        )
        .await
        .map(drop)
    }

    /// Clicks an element.
    pub async fn click(&self, el: &Element) -> Result<()> {
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{}/click", el.0),
            Some(json!({})),
        )
        .await
        .map(drop)
    }

    /// Runs a script in the page and returns its result.
    pub async fn script(&self, body: &str) -> Result<Value> {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": body, "args": []})),
        )
        .await
    }

    /// Polls a script until it returns something truthy, or fails after
    /// `timeout` with `what` in the message.
    pub async fn wait_for(&self, what: &str, script: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.script(script).await?;
            let truthy =
                !matches!(&v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if truthy {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {what} (last value {v})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG of the viewport.
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().context("screenshot is not a string")?)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png)?;
        Ok(())
    }

    /// The browser console's entries so far (Chromium's log extension).
    pub async fn console_log(&self) -> Result<Vec<Value>> {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/se/log",
                Some(json!({"type": "browser"})),
            )
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// Ends the session.
    pub async fn quit(self) -> Result<()> {
        self.cmd(reqwest::Method::DELETE, "", None).await.map(drop)
    }
}
