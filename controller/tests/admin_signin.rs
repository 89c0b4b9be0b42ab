//! The dashboard's sign-in against a real controller on loopback, driven as a browser would
//! (cookies kept by hand, redirects not followed), and `mpanel-controller admin …` run as the
//! built binary. Admins are made through the store, as `admin create` does.

mod fleet_support;
mod web_support;

use std::time::Duration;

use fleet_support::Controller;
use mpanel_controller::store::{self, DynStore};
use mpanel_controller::web::credentials::hash_password;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use web_support::{Browser, Page};

const PASSWORD: &str = "correct horse battery staple";

async fn start(overrides: &[(&str, &str)]) -> (Controller, DynStore) {
    let c = Controller::start(overrides).await;
    let store = store::connect(&c.env["DATABASE_URL"]).await.unwrap();
    (c, store)
}

async fn admin(store: &DynStore, email: &str) -> i64 {
    let hash = hash_password(PASSWORD).unwrap();
    store
        .create_admin_user(email, &hash, "cli")
        .await
        .unwrap()
        .id
}

async fn actions(c: &Controller, target: &str) -> Vec<String> {
    let (status, body) = c
        .request(Method::GET, &format!("/api/activity?target={target}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let mut actions: Vec<String> = body["activity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    actions.reverse();
    actions
}

async fn sessions(c: &Controller) -> Vec<Value> {
    let (status, body) = c.request(Method::GET, "/api/admin/sessions", None).await;
    assert_eq!(status, 200, "{body}");
    body["sessions"].as_array().unwrap().clone()
}

fn assert_security_headers(page: &Page) {
    assert_eq!(
        page.header("content-security-policy"),
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    );
    assert_eq!(page.header("x-content-type-options"), "nosniff");
    assert_eq!(page.header("referrer-policy"), "no-referrer");
    assert_eq!(page.header("cache-control"), "no-store");
    // The one script a page may load is the live-update script, from this origin.
    let without_live = page
        .body
        .replace("<script src=\"/assets/live.js\" defer></script>", "");
    assert!(!without_live.contains("<script"), "{}", page.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_sets_a_session_cookie_and_reaches_the_dashboard() {
    let (c, store) = start(&[]).await;
    admin(&store, "ops@example.com").await;
    let mut browser = Browser::new(&c);

    let anonymous = browser.get("/admin").await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert_eq!(anonymous.header("location"), "/admin/login");

    let form = browser.get("/admin/login").await;
    assert_eq!(form.status, StatusCode::OK);
    assert_security_headers(&form);
    for needle in [
        "<label for=\"email\">",
        "autocomplete=\"email\"",
        "<label for=\"password\">",
        "autocomplete=\"current-password\"",
        "type=\"password\"",
        "method=\"post\"",
    ] {
        assert!(form.body.contains(needle), "{needle} in {}", form.body);
    }

    let signed_in = browser.sign_in("Ops@Example.com", PASSWORD).await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.body
    );
    assert_eq!(signed_in.header("location"), "/admin");
    let cookie = signed_in
        .set_cookie("mpanel_admin_session")
        .expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain-HTTP public URL: {cookie}"
    );

    let home = browser.get("/admin").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("ops@example.com"), "{}", home.body);
    assert!(home.body.contains("action=\"/admin/logout\""));
    assert_security_headers(&home);
    // Signed in, the sign-in page sends the admin on.
    assert_eq!(
        browser.get("/admin/login").await.status,
        StatusCode::SEE_OTHER
    );

    let listed = sessions(&c).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["email"], "ops@example.com");
    assert_eq!(listed[0]["status"], "active");
    assert_eq!(listed[0]["userAgent"], "signin-test/1");
    assert_eq!(listed[0]["ipAddress"], "127.0.0.1");
    let id = listed[0]["id"].as_i64().unwrap();
    assert_eq!(
        actions(&c, &format!("admin_session:{id}")).await,
        ["admin.signed_in"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_is_secure_when_the_public_url_is_https() {
    let (c, store) = start(&[("PUBLIC_URL", "https://panel.example.com")]).await;
    admin(&store, "ops@example.com").await;
    let mut browser = Browser::new(&c);
    let form = browser.get("/admin/login").await;
    let csrf_cookie = form.set_cookie("mpanel_login_csrf").unwrap();
    assert!(csrf_cookie.contains("; Secure"), "{csrf_cookie}");
    let signed_in = browser.sign_in("ops@example.com", PASSWORD).await;
    let cookie = signed_in.set_cookie("mpanel_admin_session").unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_and_an_unknown_email_get_the_same_answer() {
    let (c, store) = start(&[]).await;
    let id = admin(&store, "ops@example.com").await;
    let mut browser = Browser::new(&c);
    let wrong = browser.sign_in("ops@example.com", "not the password").await;
    let unknown = browser.sign_in("nobody@example.com", PASSWORD).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.body, unknown.body);
    assert!(wrong.body.contains("The email or password is incorrect."));
    assert!(wrong.set_cookie("mpanel_admin_session").is_none());
    assert!(unknown.set_cookie("mpanel_admin_session").is_none());
    assert_security_headers(&wrong);
    assert!(sessions(&c).await.is_empty());
    assert_eq!(
        actions(&c, &format!("admin_user:{id}")).await,
        ["admin_user.created", "admin.sign_in_failed"]
    );
    // A disabled admin is refused the same way, with the right password.
    store
        .disable_admin_user("ops@example.com", "cli")
        .await
        .unwrap();
    let disabled = browser.sign_in("ops@example.com", PASSWORD).await;
    assert_eq!(disabled.status, StatusCode::UNAUTHORIZED);
    assert_eq!(disabled.body, unknown.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_without_the_right_csrf_token_are_refused_and_change_nothing() {
    let (c, store) = start(&[]).await;
    admin(&store, "ops@example.com").await;
    let mut browser = Browser::new(&c);
    let form = browser.get("/admin/login").await;
    let csrf = form.csrf();
    let credentials = [("email", "ops@example.com"), ("password", PASSWORD)];

    let missing = browser.post("/admin/login", &credentials).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert_security_headers(&missing);
    let mut wrong_token = csrf.clone();
    wrong_token.replace_range(0..2, if csrf.starts_with("00") { "11" } else { "00" });
    let wrong = browser
        .post(
            "/admin/login",
            &[credentials[0], credentials[1], ("csrf", &wrong_token)],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    // The right token without the cookie it belongs to (a cross-site post) is refused too.
    let mut other = Browser::new(&c);
    let forged = other
        .post(
            "/admin/login",
            &[credentials[0], credentials[1], ("csrf", &csrf)],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    for page in [&missing, &wrong, &forged] {
        assert!(page.set_cookie("mpanel_admin_session").is_none());
    }
    assert!(sessions(&c).await.is_empty());

    // Signed in, sign-out without its token leaves the session alive.
    let signed_in = browser
        .post(
            "/admin/login",
            &[credentials[0], credentials[1], ("csrf", &csrf)],
        )
        .await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    let refused = browser.post("/admin/logout", &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let refused = browser.post("/admin/logout", &[("csrf", &csrf)]).await;
    assert_eq!(
        refused.status,
        StatusCode::FORBIDDEN,
        "the login token is not the session's"
    );
    assert_eq!(browser.get("/admin").await.status, StatusCode::OK);
    assert_eq!(sessions(&c).await[0]["status"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_lock_an_email_until_the_window_passes() {
    let (c, store) = start(&[
        ("ADMIN_LOGIN_MAX_FAILURES", "3"),
        ("ADMIN_LOGIN_WINDOW_SECS", "2"),
    ])
    .await;
    admin(&store, "ops@example.com").await;
    let mut browser = Browser::new(&c);
    for _ in 0..3 {
        let failed = browser
            .sign_in("ops@example.com", "guess guess guess")
            .await;
        assert_eq!(failed.status, StatusCode::UNAUTHORIZED);
    }
    let locked = browser.sign_in("ops@example.com", PASSWORD).await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.body
    );
    let retry: u64 = locked.header("retry-after").parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert!(locked.set_cookie("mpanel_admin_session").is_none());
    assert!(locked.body.contains("Too many failed sign-ins"));
    assert!(sessions(&c).await.is_empty());

    tokio::time::sleep(Duration::from_millis(2200)).await;
    let signed_in = browser.sign_in("ops@example.com", PASSWORD).await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_from_one_address_lock_it_for_every_email() {
    let (c, store) = start(&[
        ("ADMIN_LOGIN_MAX_FAILURES", "3"),
        ("ADMIN_LOGIN_WINDOW_SECS", "60"),
    ])
    .await;
    admin(&store, "ops@example.com").await;
    let mut browser = Browser::new(&c);
    for email in ["a@example.com", "b@example.com", "c@example.com"] {
        let failed = browser.sign_in(email, PASSWORD).await;
        assert_eq!(failed.status, StatusCode::UNAUTHORIZED);
    }
    let locked = browser.sign_in("ops@example.com", PASSWORD).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = locked.header("retry-after").parse().unwrap();
    assert!((50..=60).contains(&retry), "{retry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_revokes_the_session() {
    let (c, store) = start(&[]).await;
    admin(&store, "ops@example.com").await;
    let mut browser = Browser::new(&c);
    browser.sign_in("ops@example.com", PASSWORD).await;
    let old_cookie = browser.cookies["mpanel_admin_session"].clone();
    let home = browser.get("/admin").await;
    let out = browser
        .post("/admin/logout", &[("csrf", &home.csrf())])
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.header("location"), "/admin/login");
    let cleared = out.set_cookie("mpanel_admin_session").unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_security_headers(&out);

    // The old cookie, replayed, no longer works.
    browser
        .cookies
        .insert("mpanel_admin_session".into(), old_cookie);
    let after = browser.get("/admin").await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.header("location"), "/admin/login");
    let listed = sessions(&c).await;
    assert_eq!(listed[0]["status"], "revoked");
    let id = listed[0]["id"].as_i64().unwrap();
    assert_eq!(
        actions(&c, &format!("admin_session:{id}")).await,
        ["admin.signed_in", "admin.signed_out"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_revoked_through_the_api_stops_working() {
    let (c, store) = start(&[]).await;
    admin(&store, "ops@example.com").await;
    let mut browser = Browser::new(&c);
    browser.sign_in("ops@example.com", PASSWORD).await;
    assert_eq!(browser.get("/admin").await.status, StatusCode::OK);
    let id = sessions(&c).await[0]["id"].as_i64().unwrap();

    let (status, body) = c
        .request(Method::DELETE, &format!("/api/admin/sessions/{id}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "revoked");
    assert!(body["revokedAt"].is_string());
    assert_eq!(browser.get("/admin").await.status, StatusCode::SEE_OTHER);

    let (status, body) = c
        .request(Method::DELETE, &format!("/api/admin/sessions/{id}"), None)
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = c
        .request(Method::DELETE, "/api/admin/sessions/999999", None)
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        actions(&c, &format!("admin_session:{id}")).await,
        ["admin.signed_in", "admin_session.revoked"]
    );

    // Listing and revoking sessions needs every scope.
    let (status, made) = c
        .request(
            Method::POST,
            "/api/tokens",
            Some(serde_json::json!({ "name": "reader", "scopes": ["read"] })),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let reader = reqwest::Client::new()
        .get(format!("{}/api/admin/sessions", c.http))
        .bearer_auth(made["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(reader.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_does_not_authorise_the_api() {
    let (c, store) = start(&[]).await;
    admin(&store, "ops@example.com").await;
    let mut browser = Browser::new(&c);
    browser.sign_in("ops@example.com", PASSWORD).await;
    assert_eq!(browser.get("/admin").await.status, StatusCode::OK);
    for path in ["/api/admin/sessions", "/api/servers", "/api/tokens"] {
        let page = browser.get(path).await;
        assert_eq!(
            page.status,
            StatusCode::UNAUTHORIZED,
            "{path}: {}",
            page.body
        );
    }
    let id = sessions(&c).await[0]["id"].as_i64().unwrap();
    let page = browser
        .send(Method::DELETE, &format!("/api/admin/sessions/{id}"), None)
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert_eq!(sessions(&c).await[0]["status"], "active");
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `mpanel-controller` with only DATABASE_URL set, in an empty directory so no
/// `.env` is read, with `stdin` as its input.
async fn controller_cli(database_url: &str, args: &[&str], stdin: &str) -> Run {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mpanel-controller"))
        .args(args)
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

impl Run {
    #[track_caller]
    fn refused(&self, needle: &str) {
        assert_eq!(
            self.code, 1,
            "stdout: {} stderr: {}",
            self.stdout, self.stderr
        );
        assert_eq!(self.stdout, "");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{:?}", self.stderr);
        assert!(lines[0].contains(needle), "{needle} in {:?}", lines[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_admins_and_refuses_duplicates_and_bad_input() {
    let db = mpanel_e2e::databases::TestSqlite::create();
    let url = db.url.clone();

    let made = controller_cli(
        &url,
        &[
            "admin",
            "create",
            "--email",
            "Ops@Example.com",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    )
    .await;
    assert_eq!(made.code, 0, "{}", made.stderr);
    assert_eq!(made.stdout, "", "a password read from stdin is not printed");
    assert!(!made.stderr.contains(PASSWORD));

    let generated =
        controller_cli(&url, &["admin", "create", "--email", "two@example.com"], "").await;
    assert_eq!(generated.code, 0, "{}", generated.stderr);
    let password = generated.stdout.trim().to_owned();
    assert_eq!(generated.stdout.lines().count(), 1);
    assert!(password.len() >= 32, "{password}");
    assert!(!generated.stderr.contains(&password));

    let store = store::connect(&url).await.unwrap();
    let ops = store
        .find_admin_user_by_email("ops@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ops.email, "ops@example.com");
    assert!(ops.password_hash.starts_with("$argon2id$"));
    assert!(mpanel_controller::web::credentials::verify_password(
        PASSWORD,
        &ops.password_hash
    ));
    let two = store
        .find_admin_user_by_email("two@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(mpanel_controller::web::credentials::verify_password(
        &password,
        &two.password_hash
    ));

    controller_cli(
        &url,
        &[
            "admin",
            "create",
            "--email",
            "OPS@example.COM",
            "--password-stdin",
        ],
        "another long password\n",
    )
    .await
    .refused("already exists");
    controller_cli(&url, &["admin", "create", "--email", "not-an-email"], "")
        .await
        .refused("--email");
    controller_cli(
        &url,
        &[
            "admin",
            "create",
            "--email",
            "three@example.com",
            "--password-stdin",
        ],
        "short\n",
    )
    .await
    .refused("at least 12 characters");
    assert_eq!(store.list_admin_users().await.unwrap().len(), 2);

    let disabled = controller_cli(
        &url,
        &["admin", "disable", "--email", "two@example.com"],
        "",
    )
    .await;
    assert_eq!(disabled.code, 0, "{}", disabled.stderr);
    controller_cli(
        &url,
        &["admin", "disable", "--email", "two@example.com"],
        "",
    )
    .await
    .refused("no enabled admin");
    let list = controller_cli(&url, &["admin", "list"], "").await;
    assert_eq!(list.code, 0, "{}", list.stderr);
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", list.stdout);
    assert!(lines[0].contains("ops@example.com") && lines[0].ends_with("active"));
    assert!(lines[1].contains("two@example.com") && lines[1].ends_with("disabled"));
    assert!(!list.stdout.contains("argon2"));
    store.close().await;
}
