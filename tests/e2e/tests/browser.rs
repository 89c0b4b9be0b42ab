//! The dashboard and the portal in a real headless Chromium, against real processes: a
//! controller, agents on simulated panels, and the Stripe double's hosted payment page. Nothing
//! reloads a page while a test waits for it to change: the live updates must do it. Each test
//! screenshots its pages at desktop and phone widths, fails on a console error, and validates
//! the served HTML of every page it visited.

mod support;

use std::time::{Duration, Instant};

use mpanel_e2e::browser::{Browser, html_problems};
use mpanel_e2e::cluster::{ControllerProcess, TestDir};
use mpanel_e2e::databases::TestSqlite;
use mpanel_e2e::stripe::{STRIPE_TEST_KEY, STRIPE_WEBHOOK_SECRET, StripeDouble};
use reqwest::Method;
use serde_json::{Value, json};
use support::{secs, servers};

const ADMIN_EMAIL: &str = "ops@hostco.example";
const ADMIN_PASSWORD: &str = "a long admin passphrase";

fn assert_valid(dir: &TestDir, pages: &[(String, String)]) {
    assert!(!pages.is_empty());
    let problems = html_problems(dir, pages);
    assert!(problems.is_empty(), "invalid HTML: {problems:#?}");
}

async fn sign_in_admin(browser: &mut Browser, http: &str) {
    browser.goto(&format!("{http}/admin")).await;
    // Not signed in: sent to the sign-in form.
    browser
        .find(
            "#login-form, form[action='/admin/login']",
            Duration::from_secs(5),
        )
        .await;
    browser.capture("admin-sign-in").await;
    browser.fill("#email", ADMIN_EMAIL).await;
    browser.fill("#password", ADMIN_PASSWORD).await;
    browser
        .click("form[action='/admin/login'] button[type=submit]")
        .await;
    browser.find("#fleet", Duration::from_secs(10)).await;
    assert_eq!(browser.current_url().await, format!("{http}/admin"));
}

#[tokio::test]
async fn an_admin_watches_an_agent_drop_and_retries_a_failed_task_from_the_dashboard() {
    let start = Instant::now();
    let dir = TestDir::create("browser-admin");
    let db = TestSqlite::create();
    let controller =
        ControllerProcess::start(&dir, "controller", &[("DATABASE_URL", &db.url)]).await;
    controller.create_admin(ADMIN_EMAIL, ADMIN_PASSWORD);
    let http = controller.http_url();
    let mut fleet = servers(
        &dir,
        &[&controller],
        &[("cpanel", &[]), ("plesk", &[]), ("directadmin", &[])],
    )
    .await;
    let mut browser = Browser::start(&dir, "admin").await;
    sign_in_admin(&mut browser, &http).await;

    // Three agents online.
    for s in &fleet {
        browser
            .wait_for_attr(
                &format!("#server-{}", s.id),
                "data-status",
                &["online"],
                Duration::from_secs(10),
            )
            .await;
    }
    browser.wait_live().await;
    browser.capture("admin-dashboard").await;

    // An enrollment token is shown once, on the page the form answers with.
    browser
        .click(&format!(
            "#enrollment-token-server-{} button[type=submit]",
            fleet[2].id
        ))
        .await;
    let token = browser
        .find("#enrollment-token", Duration::from_secs(5))
        .await
        .prop("value")
        .await
        .expect("token field")
        .unwrap_or_default();
    assert!(!token.is_empty(), "an enrollment token is shown");
    browser.capture("admin-enrollment-token").await;
    browser.goto(&format!("{http}/admin")).await;
    browser.wait_live().await;

    // An agent process dies: its row turns suspect, then offline, with no reload.
    let dropped = fleet[1].id;
    fleet[1].agent.kill9();
    let killed = Instant::now();
    let row = format!("#server-{dropped}");
    let (_, to_suspect) = browser
        .wait_for_attr(&row, "data-status", &["suspect"], Duration::from_secs(15))
        .await;
    browser
        .wait_for_attr(&row, "data-status", &["offline"], Duration::from_secs(15))
        .await;
    eprintln!(
        "agent killed: suspect after {:.1}s, offline after {:.1}s",
        to_suspect.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    for s in [&fleet[0], &fleet[2]] {
        assert_eq!(
            browser
                .attr(&format!("#server-{}", s.id), "data-status")
                .await
                .as_deref(),
            Some("online"),
            "the other agents stay online"
        );
    }

    // A task fails while the first panel's DNS API is down (three attempts), shows as failed
    // without a reload, and a click on Retry after the outage completes it.
    fleet[0]
        .sim
        .script_faults(json!({"kind": "server_error", "pathContains": "dns_zone", "times": 3}))
        .await;
    let (status, customer) = controller
        .api(
            Method::POST,
            "/api/customers",
            Some(json!({"email": "retry@example.com", "name": "Retry"})),
        )
        .await;
    assert_eq!(status, 201, "{customer}");
    let (status, product) = controller
        .api(
            Method::POST,
            "/api/products",
            Some(json!({"name": "Basic", "prices": [{"cycle": "monthly", "amount": 500, "currency": "USD"}]})),
        )
        .await;
    assert_eq!(status, 201, "{product}");
    // Only the first server takes accounts, so the task meets its DNS outage.
    for s in &fleet[1..] {
        let (status, body) = controller
            .api(
                Method::PATCH,
                &format!("/api/servers/{}", s.id),
                Some(json!({"status": "disabled"})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, created) = controller
        .api(
            Method::POST,
            "/api/services",
            Some(json!({
                "customerId": customer["id"], "productId": product["id"],
                "domain": "retry.example.com", "billingCycle": "monthly",
            })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let task = task_id(&controller, &created).await;
    let task_row = format!("#task-{task}");
    browser
        .wait_for_attr(
            &task_row,
            "data-status",
            &["failed"],
            Duration::from_secs(30),
        )
        .await;
    browser.capture("admin-failed-task").await;
    browser
        .click(&format!("#retry-task-{task} button[type=submit]"))
        .await;
    let service_id = created["service"]["id"].as_i64().unwrap();
    dir.wait_for(
        Duration::from_secs(30),
        "the retried service active",
        async || {
            let (_, s) = controller
                .api(Method::GET, &format!("/api/services/{service_id}"), None)
                .await;
            if s["status"] == "active" {
                Ok(())
            } else {
                Err(s.to_string())
            }
        },
    )
    .await;
    // The page that the retry returned to follows the task to its end by itself.
    browser.wait_live().await;
    let gone_or_done = Duration::from_secs(10);
    let began = Instant::now();
    loop {
        let status = browser.attr(&task_row, "data-status").await;
        if status.is_none() || status.as_deref() == Some("completed") {
            break;
        }
        assert!(
            began.elapsed() < gone_or_done,
            "{task_row} still {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.capture("admin-after-retry").await;

    let pages = browser.captured_html();
    assert_valid(&dir, &pages);
    browser.close().await;
    eprintln!("admin browser test took {:.1}s", secs(start));
    db.remove();
}

/// The id of the provisioning task the service's creation queued.
async fn task_id(controller: &ControllerProcess, created: &Value) -> i64 {
    let job = created["jobId"].as_str().unwrap_or_default();
    let (status, task) = controller
        .api(Method::GET, &format!("/api/provisioning/tasks/{job}"), None)
        .await;
    assert_eq!(status, 200, "{task}");
    task["id"]
        .as_i64()
        .or_else(|| task["task"]["id"].as_i64())
        .unwrap_or_else(|| panic!("no task id in {task}"))
}

struct Shop {
    dir: TestDir,
    controller: ControllerProcess,
    http: String,
    _stripe: StripeDouble,
    _db: TestSqlite,
    _servers: Vec<support::Server>,
    product: i64,
}

async fn shop(name: &str) -> Shop {
    let dir = TestDir::create(name);
    let stripe = StripeDouble::start(&dir, "stripedouble", None).await;
    let db = TestSqlite::create();
    let controller = ControllerProcess::start(
        &dir,
        "controller",
        &[
            ("DATABASE_URL", &db.url),
            ("STRIPE_API_BASE", &stripe.url),
            ("STRIPE_SECRET_KEY", STRIPE_TEST_KEY),
            ("STRIPE_WEBHOOK_SECRET", STRIPE_WEBHOOK_SECRET),
            ("EMAIL_FROM", "billing@hostco.example"),
        ],
    )
    .await;
    let http = controller.http_url();
    stripe
        .set_webhook(&format!("{http}/api/webhooks/stripe"))
        .await;
    let fleet = servers(&dir, &[&controller], &[("cpanel", &[])]).await;
    let (status, product) = controller
        .api(
            Method::POST,
            "/api/products",
            Some(json!({
                "name": "Starter",
                "prices": [
                    {"cycle": "monthly", "amount": 999, "currency": "USD"},
                    {"cycle": "annually", "amount": 9990, "currency": "USD"},
                ],
            })),
        )
        .await;
    assert_eq!(status, 201, "{product}");
    Shop {
        product: product["id"].as_i64().unwrap(),
        dir,
        controller,
        http,
        _stripe: stripe,
        _db: db,
        _servers: fleet,
    }
}

impl Shop {
    /// Buys the product through the portal as a new customer; returns the service id once the
    /// success page showed it active (without a reload).
    async fn buy(&self, browser: &mut Browser, email: &str, domain: &str) -> i64 {
        let http = &self.http;
        browser.goto(&format!("{http}/")).await;
        browser.capture("portal-products").await;
        browser
            .click(&format!("a[href='/order?product={}']", self.product))
            .await;
        browser.find("#order-form", Duration::from_secs(5)).await;
        browser.capture("portal-order").await;
        browser.fill("#domain", domain).await;
        browser.fill("#email", email).await;
        browser.fill("#name", "Pat Customer").await;
        browser.fill("#password", "customer passphrase 1").await;
        browser.click("#order-form button[type=submit]").await;
        // The Stripe double's hosted payment page.
        browser
            .find("button[value=pay]", Duration::from_secs(10))
            .await;
        assert!(browser.current_url().await.contains("/pay/cs_"));
        browser.click("button[value=pay]").await;
        // Back on the portal's success page, which follows the order by itself.
        browser.find("#order-status", Duration::from_secs(10)).await;
        browser.wait_live().await;
        browser.capture("portal-order-placed").await;
        let (_, took) = browser
            .wait_for_attr(
                "#service-status",
                "data-status",
                &["active"],
                Duration::from_secs(30),
            )
            .await;
        eprintln!(
            "order active on the success page {:.1}s after it loaded",
            took.as_secs_f64()
        );
        assert_eq!(
            browser
                .attr("#order-status", "data-status")
                .await
                .as_deref(),
            Some("fulfilled")
        );
        browser.capture("portal-order-active").await;
        let (_, services) = self
            .controller
            .api(Method::GET, "/api/services", None)
            .await;
        services["services"]
            .as_array()
            .and_then(|all| all.iter().find(|s| s["domain"] == domain))
            .and_then(|s| s["id"].as_i64())
            .unwrap_or_else(|| panic!("no service for {domain}: {services}"))
    }

    async fn sign_in(&self, browser: &mut Browser, email: &str) {
        browser.goto(&format!("{}/login", self.http)).await;
        browser.fill("#email", email).await;
        browser.fill("#password", "customer passphrase 1").await;
        browser.click("#login-form button[type=submit]").await;
        browser
            .find("a[href='/services']", Duration::from_secs(10))
            .await;
    }
}

#[tokio::test]
async fn a_customer_buys_a_plan_watches_it_go_live_and_finds_it_later() {
    let start = Instant::now();
    let shop = shop("browser-portal").await;
    let mut browser = Browser::start(&shop.dir, "portal").await;
    let email = "pat@example.com";
    let service = shop.buy(&mut browser, email, "pat-shop.example.com").await;

    // Later, signed out: sign in and find the service and its paid invoice.
    browser
        .client
        .delete_all_cookies()
        .await
        .expect("clear cookies");
    shop.sign_in(&mut browser, email).await;
    browser.goto(&format!("{}/services", shop.http)).await;
    browser
        .find(&format!("#service-{service}"), Duration::from_secs(5))
        .await;
    browser.capture("portal-services").await;
    browser
        .goto(&format!("{}/services/{service}", shop.http))
        .await;
    assert!(browser.text("main").await.contains("pat-shop.example.com"));
    browser.capture("portal-service").await;
    browser.goto(&format!("{}/invoices", shop.http)).await;
    let paid = browser
        .find(
            "tr[id^='invoice-'][data-status='paid']",
            Duration::from_secs(5),
        )
        .await;
    let invoice_row = paid.attr("id").await.unwrap().unwrap_or_default();
    let invoice: i64 = invoice_row.trim_start_matches("invoice-").parse().unwrap();
    browser.capture("portal-invoices").await;
    browser
        .goto(&format!("{}/invoices/{invoice}", shop.http))
        .await;
    browser.capture("portal-invoice").await;

    let pages = browser.captured_html();
    assert_valid(&shop.dir, &pages);
    browser.close().await;
    eprintln!("portal browser test took {:.1}s", secs(start));
}

#[tokio::test]
async fn a_forged_form_and_another_customers_urls_are_refused() {
    let shop = shop("browser-refusals").await;
    let mut first = Browser::start(&shop.dir, "refusals-first").await;
    let service = shop
        .buy(&mut first, "first@example.com", "first.example.com")
        .await;
    let (_, invoices) = shop
        .controller
        .api(
            Method::GET,
            &format!("/api/invoices?serviceId={service}"),
            None,
        )
        .await;
    let invoice = invoices["invoices"][0]["id"].as_i64().unwrap();
    first.close().await;

    // A second customer, signed in, opens the first one's service and invoice.
    let mut second = Browser::start(&shop.dir, "refusals-second").await;
    shop.buy(&mut second, "second@example.com", "second.example.com")
        .await;
    for path in [
        format!("/services/{service}"),
        format!("/invoices/{invoice}"),
        format!("/invoices/{invoice}.pdf"),
    ] {
        let url = format!("{}{path}", shop.http);
        let (status, html) = second.served_html(&url).await;
        assert_eq!(status, 404, "{path}: {html}");
        assert!(!html.contains("first.example.com"), "{path} leaks: {html}");
        second.goto(&url).await;
        assert!(!second.text("main").await.contains("first.example.com"));
        // The browser reports the 404 itself, and nothing else.
        let errors = second.console_errors().await;
        assert!(
            errors.iter().all(|e| e.starts_with(&format!(
                "{url} - Failed to load resource: the server responded with a status of 404"
            ))),
            "{errors:#?}"
        );
    }
    second
        .goto(&format!("{}/services/{service}", shop.http))
        .await;
    second.capture_with_status("portal-not-found", 404).await;

    // The portal's own forms, posted without their CSRF token, are refused and change
    // nothing: here the hosting password of the second customer's own service.
    let (_, services) = shop
        .controller
        .api(Method::GET, "/api/services", None)
        .await;
    let own = services["services"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["domain"] == "second.example.com"))
        .and_then(|s| s["id"].as_i64())
        .expect("the second customer's service");
    second.goto(&format!("{}/services/{own}", shop.http)).await;
    second
        .client
        .execute(
            "document.querySelectorAll('input[name=csrf]').forEach(e => e.remove());",
            vec![],
        )
        .await
        .expect("remove the token");
    second.fill("#new_password", "a new hosting password").await;
    second
        .click("#change-password-form button[type=submit]")
        .await;
    let refused = second.text("main").await;
    assert!(refused.contains("Form refused"), "{refused}");
    second.capture_with_status("portal-form-refused", 403).await;
    let (_, tasks) = shop
        .controller
        .api(Method::GET, "/api/provisioning/tasks", None)
        .await;
    assert!(
        !tasks.to_string().contains("change_password"),
        "no password change was queued: {tasks}"
    );

    // The pages a signed-out visitor reaches, for the validator and the screenshots.
    second
        .client
        .delete_all_cookies()
        .await
        .expect("clear cookies");
    for (page, path) in [
        ("portal-sign-in", "/login"),
        ("portal-sign-up", "/signup"),
        ("portal-reset-request", "/password/reset"),
    ] {
        second.goto(&format!("{}{path}", shop.http)).await;
        second.find("main form", Duration::from_secs(5)).await;
        second.capture(page).await;
    }

    // The admin sign-in form, posted without its CSRF token, is refused too.
    second.goto(&format!("{}/admin/login", shop.http)).await;
    second
        .client
        .execute(
            "document.querySelectorAll('input[name=csrf]').forEach(e => e.remove());",
            vec![],
        )
        .await
        .expect("remove the token");
    second.fill("#email", ADMIN_EMAIL).await;
    second.fill("#password", ADMIN_PASSWORD).await;
    second
        .click("form[action='/admin/login'] button[type=submit]")
        .await;
    let refused = second.text("main").await;
    assert!(refused.contains("Form refused"), "{refused}");
    let (_, log) = shop
        .controller
        .api(Method::GET, "/api/activity?limit=5", None)
        .await;
    assert!(
        !log.to_string().contains("admin.sign_in_failed"),
        "a refused form is not even a failed sign-in: {log}"
    );
    let pages = second.captured_html();
    assert_valid(&shop.dir, &pages);
    second.close().await;
}

#[test]
fn the_validator_reports_a_page_that_is_not_valid_html() {
    let dir = TestDir::create("browser-validator");
    let valid = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>ok</title></head><body><main><h1>ok</h1></main></body></html>";
    let invalid = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>bad</title></head><body><label for=\"nowhere\">x</label><p id=\"a\"></p><p id=\"a\"></p></body></html>";
    let problems = html_problems(
        &dir,
        &[
            ("valid".to_owned(), valid.to_owned()),
            ("invalid".to_owned(), invalid.to_owned()),
        ],
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("invalid.html") && p.contains("Duplicate ID")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().all(|p| !p.contains("/valid.html")),
        "{problems:#?}"
    );
}
