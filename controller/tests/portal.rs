//! The client portal against a real controller whose Stripe is the project's Stripe double,
//! driven as a browser without JavaScript would (cookies kept by hand, redirects not followed):
//! sign-up at checkout, payment, the success page and its live stream, sign-in and its rate
//! limit, the emailed links (read back from the mail outbox and opened with the controller's
//! key), credentials shown on request, ownership (another customer's ids answer 404), CSRF and
//! bad input in every form.

mod api_support;
mod billing_support;
mod fleet_support;
mod web_support;

use std::time::{Duration, Instant};

use billing_support::{Env, finish, start};
use mpanel_controller::config::Config;
use mpanel_controller::crypto::Cipher;
use reqwest::StatusCode;
use serde_json::Value;
use web_support::{Browser, Page};

const PASSWORD: &str = "correct horse battery staple";

fn cipher(env: &Env) -> Cipher {
    let config = Config::from_sources(&env.c.env, &std::collections::HashMap::new(), None).unwrap();
    Cipher::new(config.require_encryption_keys().unwrap())
}

/// One text column of the newest row a query finds.
async fn text(env: &Env, sql: &str) -> Option<String> {
    let url = &env.c.env["DATABASE_URL"];
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let v: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_optional(&pool)
            .await
            .unwrap();
        pool.close().await;
        v
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let v: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_optional(&pool)
            .await
            .unwrap();
        pool.close().await;
        v
    }
}

/// The link in the newest email of `template` to `to`, opened from the outbox.
async fn emailed_link(env: &Env, template: &str, to: &str) -> String {
    let sealed = text(
        env,
        &format!(
            "SELECT body_encrypted FROM email_outbox WHERE template = '{template}' AND to_address = '{to}' ORDER BY id DESC LIMIT 1"
        ),
    )
    .await
    .unwrap_or_else(|| panic!("no {template} email to {to}"));
    let context: Value = serde_json::from_str(&cipher(env).open_string(&sealed).unwrap()).unwrap();
    let link = context["link"].as_str().unwrap().to_owned();
    // Links start with PUBLIC_URL; the test's controller listens elsewhere.
    let path = link.split_once("://").unwrap().1;
    path[path.find('/').unwrap()..].to_owned()
}

async fn activity_count(env: &Env, action: &str) -> i64 {
    env.scalar(&format!(
        "SELECT COUNT(*) FROM activity_log WHERE action = '{action}'"
    ))
    .await
}

/// Rows of everything a portal form could write.
async fn written(env: &Env) -> Vec<i64> {
    let mut counts = env.counts().await.to_vec();
    for table in [
        "customer_accounts",
        "customer_sessions",
        "customer_tokens",
        "email_outbox",
        "orders",
        "activity_log",
    ] {
        counts.push(env.scalar(&format!("SELECT COUNT(*) FROM {table}")).await);
    }
    counts
}

fn assert_field_error(page: &Page, field: &str) {
    assert!(
        page.body
            .contains(&format!("<p class=\"field-error\" id=\"{field}-error\">")),
        "no error at {field}: {}",
        page.body
    );
    assert!(
        page.body.contains(&format!(
            "aria-invalid=\"true\" aria-describedby=\"{field}-error\""
        )),
        "{field} not marked invalid: {}",
        page.body
    );
}

/// A GET as a browser sends it (`Accept` ranking HTML first), with the browser's cookies.
async fn browser_get(browser: &Browser, path: &str) -> Page {
    let cookies: Vec<String> = browser
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let resp = browser
        .client
        .get(format!("{}{path}", browser.base))
        .header(
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .header("cookie", cookies.join("; "))
        .send()
        .await
        .unwrap();
    Page {
        status: resp.status(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap(),
    }
}

/// Signs up through `/signup`; the browser is then signed in.
async fn sign_up(browser: &mut Browser, email: &str) {
    let form = browser.get("/signup").await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    let page = browser
        .post(
            "/signup",
            &[
                ("name", "Ada Lovelace"),
                ("email", email),
                ("password", PASSWORD),
                ("csrf", &form.csrf()),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.header("location"), "/services");
}

async fn sign_in(browser: &mut Browser, email: &str, password: &str) -> Page {
    let form = browser.get("/login").await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert!(form.body.contains("id=\"login-form\""));
    browser
        .post(
            "/login",
            &[
                ("email", email),
                ("password", password),
                ("csrf", &form.csrf()),
            ],
        )
        .await
}

/// An SSE stream read until an event's data contains every needle.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn open(base: &str, path: &str) -> Events {
        let response = reqwest::Client::new()
            .get(format!("{base}{path}"))
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Events {
            response,
            buffer: String::new(),
        }
    }

    /// The data of the next event whose data holds every needle (events before it skipped).
    async fn until(&mut self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                    .collect();
                let data = data.join("\n");
                if !data.is_empty() && needles.iter().all(|n| data.contains(n)) {
                    return data;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no event with {needles:?}");
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                other => panic!("stream ended waiting for {needles:?}: {other:?}"),
            }
        }
    }
}

async fn buys_a_plan_by_signing_up_at_checkout(postgres: bool) {
    let env = start("portal-buy", postgres, &[]).await;
    let product = env.product("Basic", 0).await;
    let mut browser = Browser::new(&env.c);

    let home = browser.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(
        home.body.contains("Basic") && home.body.contains("9.99 USD"),
        "{}",
        home.body
    );
    assert!(
        home.body
            .contains(&format!("href=\"/order?product={product}\""))
    );

    let form = browser.get(&format!("/order?product={product}")).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    for needle in [
        "id=\"order-form\"",
        "<label for=\"domain\">",
        "id=\"domain\" name=\"domain\"",
        "<label for=\"password\">",
        "<label for=\"cycle\">",
    ] {
        assert!(form.body.contains(needle), "{needle}: {}", form.body);
    }
    // The form hands over to Stripe with a redirect, which browsers check against form-action.
    assert!(
        form.header("content-security-policy").contains(&format!(
            "form-action 'self' {}",
            env.stripe.url.trim_end_matches('/')
        )),
        "{}",
        form.header("content-security-policy")
    );
    assert!(
        home.header("content-security-policy")
            .contains("form-action 'self';")
    );
    let placed = browser
        .post(
            "/order",
            &[
                ("product", &product.to_string()),
                ("cycle", "monthly"),
                ("domain", "portal-buy.example.com"),
                ("name", "Ada Lovelace"),
                ("email", "Ada@Example.com"),
                ("password", PASSWORD),
                ("csrf", &form.csrf()),
            ],
        )
        .await;
    assert_eq!(placed.status, StatusCode::SEE_OTHER, "{}", placed.body);
    let url = placed.header("location").to_owned();
    assert!(
        url.starts_with(&format!("{}/pay/cs_", env.stripe.url)),
        "{url}"
    );
    assert!(
        placed.set_cookie("mpanel_session").is_some(),
        "signed in at checkout"
    );
    let session = url.rsplit('/').next().unwrap().to_owned();
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM customer_accounts").await,
        1
    );
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM orders WHERE status = 'open' AND customer_id IS NOT NULL")
            .await,
        1
    );

    // Back from Stripe before paying: the page follows the order.
    let success = format!("/api/checkout/success?session_id={session}");
    let waiting = browser_get(&browser, &success).await;
    assert_eq!(waiting.status, StatusCode::OK, "{}", waiting.body);
    assert!(waiting.header("content-type").starts_with("text/html"));
    assert_eq!(
        waiting.header("content-security-policy"),
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    );
    assert!(
        waiting
            .body
            .contains("<p id=\"order-status\" data-status=\"open\">"),
        "{}",
        waiting.body
    );
    // Minijinja writes the slashes of a value as character references.
    assert!(
        waiting
            .body
            .replace("&#x2f;", "/")
            .contains(&format!("data-live=\"/checkout/{session}/events\"")),
        "{}",
        waiting.body
    );
    assert!(
        waiting
            .body
            .contains("<script src=\"/assets/live.js\" defer></script>")
    );
    // A client that asks for JSON still gets the contract's answer.
    let (status, json) = env.c.request(reqwest::Method::GET, &success, None).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["order"]["status"], "open");

    let mut events = Events::open(&env.c.http, &format!("/checkout/{session}/events")).await;
    let first = events.until(&["data-status=\"open\""]).await;
    assert!(first.starts_with("order\n<section id=\"order\""), "{first}");

    env.stripe
        .complete_checkout(&session, "paid", "pm_card_visa")
        .await;
    let paid = events
        .until(&["data-status=\"fulfilled\"", "id=\"service-status\""])
        .await;
    assert!(paid.contains("data-status=\"pending\""), "{paid}");
    let service = env
        .scalar("SELECT service_id FROM orders WHERE status = 'fulfilled'")
        .await;
    // The job runner makes the service active once its account exists (no server here, so
    // the test plays that last step); the open page hears of it.
    env.exec(&format!(
        "UPDATE services SET status = 'active' WHERE id = {service}"
    ))
    .await;
    let active = events
        .until(&["id=\"service-status\"", "data-status=\"active\""])
        .await;
    assert!(active.contains("data-status=\"fulfilled\""), "{active}");
    drop(events);

    let done = browser_get(&browser, &success).await;
    assert!(
        done.body.contains("data-status=\"fulfilled\""),
        "{}",
        done.body
    );
    assert!(
        done.body.contains("<span id=\"service-status\""),
        "{}",
        done.body
    );
    assert!(!done.body.contains("data-live="), "nothing left to follow");

    // Later, signed in again: the service and its paid invoice.
    env.drain_billing().await;
    let mut later = Browser::new(&env.c);
    let signed = sign_in(&mut later, "ada@example.com", PASSWORD).await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
    let services = later.get("/services").await;
    assert!(
        services.body.contains(&format!(
            "<tr id=\"service-{service}\" data-status=\"active\">"
        )),
        "{}",
        services.body
    );
    let invoice = env.scalar("SELECT id FROM invoices").await;
    let invoices = later.get("/invoices").await;
    assert!(
        invoices.body.contains(&format!(
            "<tr id=\"invoice-{invoice}\" data-status=\"paid\">"
        )),
        "{}",
        invoices.body
    );
    assert!(
        invoices.body.contains("Visa ending 4242"),
        "{}",
        invoices.body
    );
    let pdf = later.get(&format!("/invoices/{invoice}.pdf")).await;
    assert_eq!(pdf.status, StatusCode::OK);
    assert_eq!(pdf.header("content-type"), "application/pdf");
    assert!(pdf.body.starts_with("%PDF"));

    // The address is confirmed through the emailed link, once.
    let verify = emailed_link(&env, "account_verify", "ada@example.com").await;
    assert!(verify.starts_with("/verify/"), "{verify}");
    assert!(services.body.contains("id=\"verify-notice\""));
    let confirmed = later.get(&verify).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM customer_accounts WHERE email_verified_at IS NOT NULL")
            .await,
        1
    );
    assert!(
        !later
            .get("/services")
            .await
            .body
            .contains("id=\"verify-notice\"")
    );
    let again = later.get(&verify).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "a link works once");
    if !postgres {
        browser.validate_pages();
        later.validate_pages();
    }
    finish(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_buys_a_plan_signing_up_at_checkout_and_watches_it_go_active_sqlite() {
    buys_a_plan_by_signing_up_at_checkout(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_buys_a_plan_signing_up_at_checkout_and_watches_it_go_active_postgres() {
    buys_a_plan_by_signing_up_at_checkout(true).await;
}

/// A customer made by a paid API order, given a portal password through the reset link;
/// answers (service id, invoice id) and leaves the browser signed in.
async fn customer_with_service(
    env: &Env,
    browser: &mut Browser,
    product: i64,
    domain: &str,
    email: &str,
) -> (i64, i64) {
    let (_, _, service, customer) = env.paid_order(product, domain, email, "pm_card_visa").await;
    let invoice = env
        .scalar(&format!(
            "SELECT id FROM invoices WHERE customer_id = {customer}"
        ))
        .await;
    let form = browser.get("/password/reset").await;
    let asked = browser
        .post(
            "/password/reset",
            &[("email", email), ("csrf", &form.csrf())],
        )
        .await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.body);
    assert!(asked.body.contains("id=\"reset-sent\""));
    let link = emailed_link(env, "password_reset", email).await;
    let page = browser.get(&link).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let set = browser
        .post(
            &link,
            &[
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
                ("csrf", &page.csrf()),
            ],
        )
        .await;
    assert_eq!(set.status, StatusCode::SEE_OTHER, "{}", set.body);
    assert_eq!(set.header("location"), "/services");
    let spent = browser.get(&link).await;
    assert_eq!(
        spent.status,
        StatusCode::NOT_FOUND,
        "a reset link works once"
    );
    (service, invoice)
}

async fn customers_see_only_their_own(postgres: bool) {
    let env = start("portal-own", postgres, &[]).await;
    let product = env.product("Basic", 0).await;
    let mut ann = Browser::new(&env.c);
    let mut bob = Browser::new(&env.c);
    let (ann_service, ann_invoice) = customer_with_service(
        &env,
        &mut ann,
        product,
        "ann.example.com",
        "ann@example.com",
    )
    .await;
    let (bob_service, bob_invoice) = customer_with_service(
        &env,
        &mut bob,
        product,
        "bob.example.com",
        "bob@example.com",
    )
    .await;
    // Bob's first reset request must not have reached Ann, nor Ann's link signed Bob in.
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM customer_accounts").await,
        2
    );

    let own = ann.get(&format!("/services/{ann_service}")).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    assert!(own.body.contains("ann.example.com"));
    let csrf = own.csrf();
    let before = written(&env).await;
    for (path, missing) in [
        (format!("/services/{bob_service}"), "/services/999999"),
        (format!("/invoices/{bob_invoice}"), "/invoices/999999"),
        (
            format!("/invoices/{bob_invoice}.pdf"),
            "/invoices/999999.pdf",
        ),
    ] {
        let missing = ann.get(missing).await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        let page = ann.get(&path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            page.body, missing.body,
            "{path}: the same page as a missing id"
        );
        assert!(!page.body.contains("bob"), "{path}");
    }
    for (path, form) in [
        (
            format!("/services/{bob_service}/credentials"),
            vec![("password", PASSWORD)],
        ),
        (
            format!("/services/{bob_service}/password"),
            vec![("new_password", "a brand new password")],
        ),
        (
            format!("/services/{bob_service}/cancel"),
            vec![("confirm", "yes")],
        ),
        (format!("/invoices/{bob_invoice}/pay"), vec![]),
    ] {
        let mut fields = form.clone();
        fields.push(("csrf", csrf.as_str()));
        let page = ann.post(&path, &fields).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}: {}", page.body);
        assert!(!page.body.contains("bob"), "{path}");
    }
    let lists = [ann.get("/services").await, ann.get("/invoices").await];
    for list in &lists {
        assert!(!list.body.contains("bob.example.com"));
        assert!(!list.body.contains(&format!("id=\"service-{bob_service}\"")));
        assert!(!list.body.contains(&format!("id=\"invoice-{bob_invoice}\"")));
    }
    assert!(
        lists[1]
            .body
            .contains(&format!("id=\"invoice-{ann_invoice}\""))
    );
    assert_eq!(
        written(&env).await,
        before,
        "nothing written for another's ids"
    );
    let own_pdf = ann.get(&format!("/invoices/{ann_invoice}.pdf")).await;
    assert_eq!(own_pdf.status, StatusCode::OK);

    // Pay now: a paid invoice has nothing to pay; an open one goes to Stripe Checkout.
    let paid = ann.get(&format!("/invoices/{ann_invoice}")).await;
    assert!(paid.body.contains("data-status=\"paid\""), "{}", paid.body);
    assert!(!paid.body.contains("id=\"pay-form\""));
    let refused = ann
        .post(&format!("/invoices/{ann_invoice}/pay"), &[("csrf", &csrf)])
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    let ann_customer = env
        .scalar(&format!(
            "SELECT customer_id FROM invoices WHERE id = {ann_invoice}"
        ))
        .await;
    let (status, extra) = env
        .request(
            reqwest::Method::POST,
            "/api/invoices",
            Some(serde_json::json!({
                "customerId": ann_customer,
                "currency": "USD",
                "lines": [{"description": "Setup", "amount": 2500}],
            })),
        )
        .await;
    assert_eq!(status, 201, "{extra}");
    let open = extra["id"].as_i64().unwrap();
    let page = ann.get(&format!("/invoices/{open}")).await;
    assert!(page.body.contains("id=\"pay-form\""), "{}", page.body);
    assert!(page.body.contains("25.00 USD"));
    let forged = ann
        .post(&format!("/invoices/{open}/pay"), &[("csrf", "00ff")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let pay = ann
        .post(&format!("/invoices/{open}/pay"), &[("csrf", &page.csrf())])
        .await;
    assert_eq!(pay.status, StatusCode::SEE_OTHER, "{}", pay.body);
    assert!(
        pay.header("location")
            .starts_with(&format!("{}/pay/cs_", env.stripe.url)),
        "{}",
        pay.header("location")
    );

    // Back from Stripe after paying: the invoice's page says so, and the webhook marks it paid.
    let session = pay
        .header("location")
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    env.stripe
        .complete_checkout(&session, "paid", "pm_card_visa")
        .await;
    env.wait_for("the invoice to be paid", || async {
        let i = env.store().get_invoice(open).await.unwrap()?;
        (i.status == "paid").then_some(())
    })
    .await;
    let back = browser_get(&ann, &format!("/api/checkout/success?session_id={session}")).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    assert!(
        back.body.contains("Thank you for your payment"),
        "{}",
        back.body
    );
    assert!(
        ann.get("/invoices")
            .await
            .body
            .contains(&format!("<tr id=\"invoice-{open}\" data-status=\"paid\">"))
    );

    // A signed-in customer orders without signing up again.
    let form = ann.get(&format!("/order?product={product}")).await;
    assert!(
        !form.body.contains("id=\"password\""),
        "no sign-up fields when signed in"
    );
    let customers = env.scalar("SELECT COUNT(*) FROM customers").await;
    let placed = ann
        .post(
            "/order",
            &[
                ("product", &product.to_string()),
                ("cycle", "monthly"),
                ("domain", "ann-second.example.com"),
                ("csrf", &form.csrf()),
            ],
        )
        .await;
    assert_eq!(placed.status, StatusCode::SEE_OTHER, "{}", placed.body);
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM customers").await,
        customers
    );
    assert_eq!(
        env.scalar(&format!(
            "SELECT COUNT(*) FROM orders WHERE domain = 'ann-second.example.com' AND customer_id = {ann_customer}"
        ))
        .await,
        1
    );
    let taken = ann
        .post(
            "/order",
            &[
                ("product", &product.to_string()),
                ("cycle", "monthly"),
                ("domain", "bob.example.com"),
                ("csrf", &form.csrf()),
            ],
        )
        .await;
    assert_eq!(taken.status, StatusCode::BAD_REQUEST);
    assert_field_error(&taken, "domain");
    if !postgres {
        ann.validate_pages();
        bob.validate_pages();
    }
    finish(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_customers_services_and_invoices_answer_404_sqlite() {
    customers_see_only_their_own(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_customers_services_and_invoices_answer_404_postgres() {
    customers_see_only_their_own(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_show_only_after_the_password_and_cancellation_ends_the_service_sqlite() {
    credentials_password_and_cancellation(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_show_only_after_the_password_and_cancellation_ends_the_service_postgres() {
    credentials_password_and_cancellation(true).await;
}

async fn credentials_password_and_cancellation(postgres: bool) {
    let env = start("portal-credentials", postgres, &[]).await;
    let product = env.product("Basic", 0).await;
    let mut browser = Browser::new(&env.c);
    let (service, _) = customer_with_service(
        &env,
        &mut browser,
        product,
        "cred.example.com",
        "cred@example.com",
    )
    .await;
    let secret = "panel-Secret-4711-zz";
    let sealed = cipher(&env).seal_str(secret).unwrap();
    env.exec(&format!(
        "UPDATE services SET status = 'active', username = 'credexam', password_encrypted = '{sealed}' WHERE id = {service}"
    ))
    .await;
    env.exec(&format!(
        "UPDATE provisioning_tasks SET status = 'completed' WHERE service_id = {service}"
    ))
    .await;

    let page = browser.get(&format!("/services/{service}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains(secret));
    assert!(page.body.contains("id=\"reveal-form\""));
    let wrong = browser
        .post(
            &format!("/services/{service}/credentials"),
            &[
                ("password", "not my password at all"),
                ("csrf", &page.csrf()),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_field_error(&wrong, "password");
    assert!(!wrong.body.contains(secret));
    assert_eq!(
        activity_count(&env, "service.credentials_revealed").await,
        0
    );

    let shown = browser
        .post(
            &format!("/services/{service}/credentials"),
            &[("password", PASSWORD), ("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    assert!(shown.body.contains(secret));
    assert_eq!(shown.header("cache-control"), "no-store");
    assert_eq!(
        activity_count(&env, "service.credentials_revealed").await,
        1
    );
    let again = browser.get(&format!("/services/{service}")).await;
    assert!(!again.body.contains(secret), "shown once, on request");

    // A new hosting password: a lifecycle task, and the password never in the page.
    let short = browser
        .post(
            &format!("/services/{service}/password"),
            &[("new_password", "short"), ("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    assert_field_error(&short, "new_password");
    assert!(!short.body.contains("value=\"short\""));
    let tasks = "SELECT COUNT(*) FROM provisioning_tasks WHERE task_type = 'change_password'";
    assert_eq!(env.scalar(tasks).await, 0);
    let forged = browser
        .post(
            &format!("/services/{service}/password"),
            &[("new_password", "a brand new hosting pass")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let anonymous_token = Browser::new(&env.c).get("/login").await.csrf();
    let forged = browser
        .post(
            &format!("/services/{service}/password"),
            &[
                ("new_password", "a brand new hosting pass"),
                ("csrf", &anonymous_token),
            ],
        )
        .await;
    assert_eq!(
        forged.status,
        StatusCode::FORBIDDEN,
        "another browser's token"
    );
    assert_eq!(env.scalar(tasks).await, 0);
    let changed = browser
        .post(
            &format!("/services/{service}/password"),
            &[
                ("new_password", "a brand new hosting pass"),
                ("csrf", &page.csrf()),
            ],
        )
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER, "{}", changed.body);
    assert_eq!(env.scalar(tasks).await, 1);
    let actor = text(
        &env,
        "SELECT actor FROM activity_log WHERE action = 'task.change_password.queued'",
    )
    .await;
    assert!(actor.is_some_and(|a| a.starts_with("customer:")));

    // Cancellation at the end of the period: confirmed, recorded, never renewed, then ended.
    env.exec(&format!(
        "UPDATE provisioning_tasks SET status = 'completed' WHERE service_id = {service}"
    ))
    .await;
    let page = browser.get(&format!("/services/{service}")).await;
    assert!(page.body.contains("id=\"cancel-form\""), "{}", page.body);
    let unconfirmed = browser
        .post(
            &format!("/services/{service}/cancel"),
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(unconfirmed.status, StatusCode::BAD_REQUEST);
    assert_field_error(&unconfirmed, "confirm");
    let cancelled =
        format!("SELECT COUNT(*) FROM services WHERE id = {service} AND cancel_at IS NOT NULL");
    assert_eq!(env.scalar(&cancelled).await, 0);
    let done = browser
        .post(
            &format!("/services/{service}/cancel"),
            &[("confirm", "yes"), ("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(env.scalar(&cancelled).await, 1);
    assert_eq!(
        activity_count(&env, "service.cancellation_requested").await,
        1
    );
    let shown = browser.get(&format!("/services/{service}")).await;
    assert!(shown.body.contains("id=\"cancel-at\""), "{}", shown.body);
    assert!(!shown.body.contains("id=\"cancel-form\""));
    let due = env
        .scalar(&format!(
            "SELECT next_due_at FROM services WHERE id = {service}"
        ))
        .await;
    let invoices = env.scalar("SELECT COUNT(*) FROM invoices").await;
    let early = env.billing.run_recurring(due - 86_400_000).await.unwrap();
    assert_eq!(
        early.invoices_created, 0,
        "a cancelled service is not renewed"
    );
    assert_eq!(early.cancellations_ended, 0, "not before its date");
    let ended = env.billing.run_recurring(due + 1).await.unwrap();
    assert_eq!(ended.cancellations_ended, 1, "{ended:?}");
    assert_eq!(env.scalar("SELECT COUNT(*) FROM invoices").await, invoices);
    assert_eq!(
        env.scalar(&format!(
            "SELECT COUNT(*) FROM provisioning_tasks WHERE service_id = {service} AND task_type = 'terminate'"
        ))
        .await,
        1
    );
    if !postgres {
        browser.validate_pages();
    }
    finish(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_is_rate_limited_and_forms_without_their_token_are_refused_sqlite() {
    sign_in_limit_and_csrf(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_is_rate_limited_and_forms_without_their_token_are_refused_postgres() {
    sign_in_limit_and_csrf(true).await;
}

async fn sign_in_limit_and_csrf(postgres: bool) {
    let env = start(
        "portal-signin",
        postgres,
        &[
            ("ADMIN_LOGIN_MAX_FAILURES", "3"),
            ("ADMIN_LOGIN_WINDOW_SECS", "600"),
        ],
    )
    .await;
    let mut browser = Browser::new(&env.c);
    sign_up(&mut browser, "eve@example.com").await;
    assert!(browser.cookies.contains_key("mpanel_session"));
    let services = browser.get("/services").await;
    assert_eq!(services.status, StatusCode::OK);
    let out = browser.post("/logout", &[("csrf", &services.csrf())]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(browser.get("/services").await.status, StatusCode::SEE_OTHER);

    let mut stranger = Browser::new(&env.c);
    for _ in 0..3 {
        let page = sign_in(&mut stranger, "eve@example.com", "wrong password here").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
        assert!(page.body.contains("The email or password is incorrect."));
        assert!(!page.body.contains("wrong password here"));
    }
    let locked = sign_in(&mut stranger, "eve@example.com", PASSWORD).await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.body
    );
    let retry: u64 = locked.header("retry-after").parse().unwrap();
    assert!((1..=600).contains(&retry), "{retry}");
    assert_eq!(activity_count(&env, "customer.sign_in_failed").await, 3);

    let right = sign_in(&mut Browser::new(&env.c), "eve@example.com", "x").await;
    assert_eq!(
        right.status,
        StatusCode::TOO_MANY_REQUESTS,
        "a new browser is refused too"
    );

    // Forms without their token.
    let before = written(&env).await;
    let mut fresh = Browser::new(&env.c);
    let _ = fresh.get("/signup").await;
    for (path, form) in [
        (
            "/signup",
            vec![
                ("name", "Mallory"),
                ("email", "mal@example.com"),
                ("password", PASSWORD),
            ],
        ),
        (
            "/login",
            vec![("email", "eve@example.com"), ("password", PASSWORD)],
        ),
        ("/password/reset", vec![("email", "eve@example.com")]),
        ("/logout", vec![]),
    ] {
        let page = fresh.post(path, &form).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
        let mut with_wrong = form.clone();
        with_wrong.push(("csrf", "00ff"));
        let page = fresh.post(path, &with_wrong).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(written(&env).await, before, "refused forms write nothing");
    if !postgres {
        browser.validate_pages();
    }
    finish(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_in_every_form_is_shown_at_the_field_and_writes_nothing() {
    let env = start("portal-bad-input", false, &[]).await;
    let product = env.product("Basic", 0).await;
    let mut browser = Browser::new(&env.c);
    let form = browser.get("/signup").await;
    let csrf = form.csrf();
    let before = written(&env).await;

    let page = browser
        .post(
            "/signup",
            &[
                ("name", " "),
                ("email", "not-an-address"),
                ("password", "short pw"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    for field in ["name", "email", "password"] {
        assert_field_error(&page, field);
    }
    assert!(
        page.body.contains("value=\"not-an-address\""),
        "values kept"
    );
    assert!(
        !page.body.contains("short pw"),
        "passwords are not shown again"
    );

    let page = browser
        .post(
            "/order",
            &[
                ("product", &product.to_string()),
                ("cycle", "weekly"),
                ("domain", "exa mple.com"),
                ("name", "Ada"),
                ("email", "ada@example.com"),
                ("password", "tiny"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    for field in ["cycle", "domain", "password"] {
        assert_field_error(&page, field);
    }
    assert!(page.body.contains("value=\"exa mple.com\""));
    assert!(page.body.contains("id=\"order-form\""));

    let page = browser
        .post(
            "/login",
            &[("email", ""), ("password", ""), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert_field_error(&page, "email");
    assert_field_error(&page, "password");

    let page = browser
        .post("/password/reset", &[("email", "nobody@"), ("csrf", &csrf)])
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert_field_error(&page, "email");
    assert_eq!(written(&env).await, before, "bad input writes nothing");

    // An unknown address gets the same answer as a known one, and no email.
    let page = browser
        .post(
            "/password/reset",
            &[("email", "nobody@example.com"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"reset-sent\""));
    assert_eq!(env.scalar("SELECT COUNT(*) FROM email_outbox").await, 0);

    // A known one: mismatched passwords on the link's form change nothing.
    sign_up(&mut Browser::new(&env.c), "known@example.com").await;
    let page = browser
        .post(
            "/password/reset",
            &[("email", "known@example.com"), ("csrf", &csrf)],
        )
        .await;
    assert!(page.body.contains("id=\"reset-sent\""));
    let link = emailed_link(&env, "password_reset", "known@example.com").await;
    let hash = text(&env, "SELECT password_hash FROM customer_accounts").await;
    let page = browser
        .post(
            &link,
            &[
                ("password", PASSWORD),
                ("password_confirm", "something else entirely"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert_field_error(&page, "password_confirm");
    let short = browser
        .post(
            &link,
            &[
                ("password", "short"),
                ("password_confirm", "short"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_field_error(&short, "password");
    assert_eq!(
        text(&env, "SELECT password_hash FROM customer_accounts").await,
        hash
    );
    assert_eq!(
        browser.get(&link).await.status,
        StatusCode::OK,
        "the link is not spent"
    );
    assert_eq!(
        browser
            .get("/password/reset/not-a-real-token-at-all")
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // Signing up with a taken address.
    let page = browser
        .post(
            "/signup",
            &[
                ("name", "Other"),
                ("email", "KNOWN@example.com"),
                ("password", PASSWORD),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert_field_error(&page, "email");
    assert_eq!(env.scalar("SELECT COUNT(*) FROM customers").await, 1);
    browser.validate_pages();
    finish(env).await;
}
