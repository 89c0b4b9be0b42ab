//! Renewals with the clock in the test's hand: a year of monthly invoices across month ends and
//! a leap day, each charged once (one PaymentIntent per invoice on the Stripe double), runs
//! repeated and raced without a duplicate, and dunning: declines, retries on the configured
//! days with a notice each, a later success that lifts an `overdue` suspension (and only that).

mod api_support;
mod billing_support;
mod fleet_support;

use billing_support::{Env, finish, start};
use mpanel_common::billing::{DAY_MS, date_to_ms, format_date, ms_to_date, parse_date};
use mpanel_controller::store::billing::InvoiceFilter;
use mpanel_controller::store::queue::ServiceChange;
use reqwest::Method;
use serde_json::json;

/// A paid checkout whose service the test activates, with its renewals due from `first_due`.
async fn active_service(env: &Env, domain: &str, email: &str, first_due: &str) -> (i64, i64) {
    let product = env.product(&format!("Plan {domain}"), 0).await;
    let (_, _, service, customer) = env.paid_order(product, domain, email, "pm_card_visa").await;
    let job = env.job_of_open_task(service).await.unwrap();
    env.hand.complete(&job, ServiceChange::Activate).await;
    let (status, body) = env
        .request(
            Method::PATCH,
            &format!("/api/services/{service}"),
            Some(json!({ "nextDueDate": first_due })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    (service, customer)
}

async fn service_invoices(
    env: &Env,
    service: i64,
) -> Vec<mpanel_controller::store::billing::Invoice> {
    let mut all = env
        .store()
        .list_invoices(&InvoiceFilter {
            service_id: Some(service),
            page: mpanel_controller::store::Page {
                limit: 1000,
                after_id: None,
            },
            ..InvoiceFilter::default()
        })
        .await
        .unwrap();
    all.reverse();
    all
}

async fn next_due(env: &Env, service: i64) -> i64 {
    env.store()
        .get_service(service.into())
        .await
        .unwrap()
        .next_due_at
        .unwrap()
}

async fn a_year(postgres: bool) {
    let env = start("billing-year", postgres, &[]).await;
    // Billed on the 31st: April has 30 days, February 2028 29.
    let (service, customer) =
        active_service(&env, "year.example.com", "year@example.com", "2027-03-31").await;
    let mut expected = Vec::new();
    for _ in 0..12 {
        let due = next_due(&env, service).await;
        expected.push(format_date(ms_to_date(due)));
        // Seven days before: the invoice. Twice the same day and on two "replicas" at once.
        let before = due - 7 * DAY_MS + 3_600_000;
        let (a, b) = tokio::join!(
            env.billing.run_recurring(before),
            env.billing.run_recurring(before)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let created = a.invoices_created + b.invoices_created;
        assert_eq!(
            created,
            1,
            "one invoice for the period starting {}",
            format_date(ms_to_date(due))
        );
        assert_eq!(
            env.billing
                .run_recurring(before)
                .await
                .unwrap()
                .invoices_created,
            0
        );
        env.drain_billing().await;
        // On the due date: the charge, raced too.
        let on_due = due + 3_600_000;
        let (a, b) = tokio::join!(
            env.billing.run_recurring(on_due),
            env.billing.run_recurring(on_due)
        );
        assert_eq!(a.unwrap().charges_queued + b.unwrap().charges_queued, 1);
        env.drain_billing().await;
        assert_eq!(
            env.billing
                .run_recurring(on_due)
                .await
                .unwrap()
                .charges_queued,
            0
        );
        let moved = next_due(&env, service).await;
        assert!(moved > due, "paying moved the due date on");
    }
    assert_eq!(
        expected,
        [
            "2027-03-31",
            "2027-04-30",
            "2027-05-31",
            "2027-06-30",
            "2027-07-31",
            "2027-08-31",
            "2027-09-30",
            "2027-10-31",
            "2027-11-30",
            "2027-12-31",
            "2028-01-31",
            "2028-02-29",
        ]
    );
    assert_eq!(
        format_date(ms_to_date(next_due(&env, service).await)),
        "2028-03-31"
    );

    let invoices = service_invoices(&env, service).await;
    // The checkout's paid invoice, then the twelve renewals, all paid once.
    assert_eq!(invoices.len(), 13);
    for (i, invoice) in invoices.iter().enumerate() {
        assert_eq!(invoice.status, "paid", "{}", invoice.number);
        assert_eq!(
            invoice.amount_paid_minor, invoice.amount_minor,
            "{}",
            invoice.number
        );
        if i > 0 {
            assert_eq!(
                format_date(ms_to_date(invoice.period_start.unwrap())),
                expected[i - 1]
            );
            let payments = env.store().invoice_payments(invoice.id).await.unwrap();
            assert_eq!(payments.len(), 1, "{}", invoice.number);
        }
    }
    // Numbers are gapless within each year of issue: the checkout's in this year, ten
    // renewals issued in 2027 and two in 2028.
    let mut by_year: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    for i in &invoices {
        let mut parts = i.number.split('-').skip(1);
        let (year, n) = (
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().parse().unwrap(),
        );
        by_year.entry(year).or_default().push(n);
    }
    let this_year = time::OffsetDateTime::now_utc().year().to_string();
    assert_eq!(by_year.remove(&this_year), Some(vec![1]));
    assert_eq!(by_year.remove("2027"), Some((1..=10).collect()));
    assert_eq!(by_year.remove("2028"), Some(vec![1, 2]));
    assert!(by_year.is_empty(), "{by_year:?}");
    // Stripe's side: one PaymentIntent per renewal invoice, each under its invoice's key.
    let state = env.stripe.state().await;
    let intents = state["paymentIntents"].as_array().unwrap();
    let stripe_customer = env
        .store()
        .get_customer(customer.into())
        .await
        .unwrap()
        .stripe_customer_id
        .unwrap();
    let renewals: Vec<_> = intents
        .iter()
        .filter(|pi| {
            pi["customer"] == stripe_customer.as_str() && pi["metadata"]["invoice_id"].is_string()
        })
        .collect();
    assert_eq!(renewals.len(), 12, "{state}");
    for invoice in &invoices[1..] {
        let of_invoice = renewals
            .iter()
            .filter(|pi| pi["metadata"]["invoice_id"] == invoice.id.to_string().as_str())
            .count();
        assert_eq!(of_invoice, 1, "{}", invoice.number);
    }
    finish(env).await;
}

#[tokio::test]
async fn a_year_of_monthly_renewals_invoices_and_charges_each_period_once() {
    a_year(false).await;
}

#[tokio::test]
async fn a_year_of_monthly_renewals_invoices_and_charges_each_period_once_on_postgres() {
    a_year(true).await;
}

/// The service as it is once the panel confirmed a suspension for `reason`, with an account
/// on a server whose agent is not connected (so the controller's worker leaves its tasks
/// waiting for the test to finish). Set directly: no agent serves these tests.
async fn suspend(env: &Env, service: i64, reason: &str) {
    give_account(env, service).await;
    env.exec(&format!(
        "UPDATE services SET status = 'suspended', suspension_reason = '{reason}', suspended_at = 1 WHERE id = {service}"
    ))
    .await;
}

/// An account on a server whose agent is not connected: the controller's worker leaves the
/// service's tasks waiting, for the test to finish them.
async fn give_account(env: &Env, service: i64) {
    let (status, server) = env
        .request(
            Method::POST,
            "/api/servers",
            Some(json!({
                "hostname": format!("web{service}.example.net"), "ipAddress": "192.0.2.10",
                "controlPanel": "cpanel", "controlPanelUrl": "https://192.0.2.10:2087",
                "maxAccounts": 10, "nameserver1": "ns1.example.net", "nameserver2": "ns2.example.net",
            })),
        )
        .await;
    assert_eq!(status, 201, "{server}");
    env.exec(&format!(
        "UPDATE services SET server_id = {}, username = 'user{service}' WHERE id = {service}",
        server["id"]
    ))
    .await;
}

#[tokio::test]
async fn declines_are_retried_on_schedule_with_notices_and_payment_lifts_only_an_overdue_suspension()
 {
    let owned = start("billing-dunning", false, &[("PAYMENT_RETRY_DAYS", "1,3")]).await;
    dunning(&owned).await;
    finish(owned).await;
}

async fn dunning(env: &Env) {
    // Due tomorrow: today is the checkout's own first period.
    let first_due = format_date(ms_to_date(mpanel_controller::store::now_ms() + DAY_MS));
    let (overdue, customer) =
        active_service(env, "overdue.example.com", "owner@example.com", &first_due).await;
    let due = date_to_ms(parse_date(&first_due).unwrap());
    // A second service of the same customer, suspended by an admin.
    let product = env.product("Second plan", 0).await;
    let (_, _, held, _) = env
        .paid_order(
            product,
            "held.example.com",
            "owner@example.com",
            "pm_card_visa",
        )
        .await;
    let job = env.job_of_open_task(held).await.unwrap();
    env.hand.complete(&job, ServiceChange::Activate).await;
    env.request(
        Method::PATCH,
        &format!("/api/services/{held}"),
        Some(json!({ "nextDueDate": first_due })),
    )
    .await;
    suspend(env, overdue, "overdue").await;
    suspend(env, held, "admin").await;

    // The card on file now declines.
    env.store()
        .save_card(
            customer,
            "pm_card_chargeDeclined",
            Some("visa"),
            Some("0002"),
            "test",
        )
        .await
        .unwrap();
    let run = |at: i64| async move {
        let s = env.billing.run_recurring(at).await.unwrap();
        env.drain_billing().await;
        s
    };
    let first = run(due + 3_600_000).await;
    assert_eq!(
        (first.invoices_created, first.charges_queued),
        (2, 2),
        "{first:?}"
    );
    let invoices = [
        service_invoices(env, overdue).await.pop().unwrap(),
        service_invoices(env, held).await.pop().unwrap(),
    ];
    for invoice in &invoices {
        assert_eq!(invoice.status, "unpaid");
        assert_eq!(invoice.charge_attempts, 1);
        assert_eq!(
            invoice.next_charge_at,
            Some(due + DAY_MS),
            "first retry one day after the due date"
        );
        assert!(
            invoice
                .last_charge_error
                .as_deref()
                .unwrap()
                .starts_with("card_declined")
        );
    }
    // Not again before the retry day; then the second attempt, declined, retried on day 3.
    assert_eq!(run(due + DAY_MS - 1).await.charges_queued, 0);
    assert_eq!(run(due + DAY_MS + 1).await.charges_queued, 2);
    let again = env
        .store()
        .get_invoice(invoices[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.charge_attempts, again.next_charge_at),
        (2, Some(due + 3 * DAY_MS))
    );
    // One dunning notice per attempt and invoice.
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM email_outbox WHERE template = 'payment_failed'")
            .await,
        4
    );

    // The customer fixes the card; the day-3 attempt succeeds.
    env.store()
        .save_card(customer, "pm_card_visa", Some("visa"), Some("4242"), "test")
        .await
        .unwrap();
    assert_eq!(run(due + 3 * DAY_MS + 1).await.charges_queued, 2);
    for invoice in &invoices {
        let paid = env.store().get_invoice(invoice.id).await.unwrap().unwrap();
        assert_eq!(paid.status, "paid");
        assert_eq!(paid.charge_attempts, 3);
    }
    // The overdue suspension is being lifted through the lifecycle layer (an unsuspend task
    // for the agent); the admin's stays.
    let lifting = env
        .store()
        .open_task_for_service(overdue.into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lifting.task_type.as_str(), "unsuspend");
    assert!(
        env.store()
            .open_task_for_service(held.into())
            .await
            .unwrap()
            .is_none()
    );
    let job = mpanel_common::JobId::for_task(lifting.id).to_string();
    env.hand.complete(&job, ServiceChange::Unsuspend).await;
    let s = env
        .request(Method::GET, &format!("/api/services/{overdue}"), None)
        .await
        .1;
    assert_eq!(s["status"], "active", "{s}");
    let s = env
        .request(Method::GET, &format!("/api/services/{held}"), None)
        .await
        .1;
    assert_eq!(
        (s["status"].as_str(), s["suspensionReason"].as_str()),
        (Some("suspended"), Some("admin"))
    );
}

#[tokio::test]
async fn a_bank_asking_for_authentication_gets_the_customer_a_payment_link() {
    let env = start("billing-sca", false, &[]).await;
    let tomorrow = mpanel_controller::store::now_ms() + DAY_MS;
    let (service, customer) = active_service(
        &env,
        "sca.example.com",
        "sca@example.com",
        &format_date(ms_to_date(tomorrow)),
    )
    .await;
    env.store()
        .save_card(
            customer,
            "pm_card_authenticationRequired",
            Some("visa"),
            Some("3184"),
            "test",
        )
        .await
        .unwrap();
    let invoice_id = {
        env.billing
            .run_recurring(mpanel_controller::store::now_ms())
            .await
            .unwrap();
        service_invoices(&env, service).await.pop().unwrap().id
    };
    // The admin's "charge now" waits for the attempt and answers 402 with the link.
    let (status, body) = env
        .request(
            Method::POST,
            &format!("/api/invoices/{invoice_id}/pay"),
            None,
        )
        .await;
    if status == 200 {
        panic!("the charge should need authentication: {body}");
    }
    env.drain_billing().await;
    let invoice = env.store().get_invoice(invoice_id).await.unwrap().unwrap();
    assert_eq!(invoice.status, "unpaid");
    let pay_url = invoice.pay_url.clone().expect("a payment link");
    assert!(pay_url.starts_with(&env.stripe.url), "{pay_url}");
    assert_eq!(
        invoice.next_charge_at, None,
        "no blind retry: the customer must act"
    );
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM email_outbox WHERE template = 'payment_action_required'")
            .await,
        1
    );
    // Paying through the link settles the invoice once.
    let session = pay_url.rsplit('/').next().unwrap().to_owned();
    env.stripe
        .complete_checkout(&session, "paid", "pm_card_visa")
        .await;
    env.wait_for("the link's payment", || async {
        let i = env.store().get_invoice(invoice_id).await.unwrap()?;
        (i.status == "paid").then_some(())
    })
    .await;
    assert_eq!(
        env.store()
            .invoice_payments(invoice_id)
            .await
            .unwrap()
            .len(),
        1
    );
    finish(env).await;
}

#[tokio::test]
async fn offline_payments_and_voids_follow_the_invoice_rules() {
    let env = start("billing-offline", false, &[]).await;
    let today = format_date(ms_to_date(mpanel_controller::store::now_ms() + DAY_MS));
    let (service, _) = active_service(&env, "cash.example.com", "cash@example.com", &today).await;
    // No card on file for this one: the invoice waits for an offline payment.
    env.billing
        .run_recurring(mpanel_controller::store::now_ms())
        .await
        .unwrap();
    let invoice = service_invoices(&env, service).await.pop().unwrap();
    let path = format!("/api/invoices/{}", invoice.id);
    let (status, body) = env
        .request(Method::POST, &format!("{path}/payments"), Some(json!({"amount": 400, "currency": "USD", "method": "bank_transfer", "reference": "SEPA 123"})))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["invoice"]["status"], "unpaid");
    assert_eq!(body["invoice"]["amountDue"], 599);
    let got = env
        .request(
            Method::POST,
            &format!("{path}/payments"),
            Some(json!({"amount": 600, "currency": "USD", "method": "cash"})),
        )
        .await;
    api_support::assert_error(&got, 422, "overpayment", Some("amount"));
    let got = env
        .request(
            Method::POST,
            &format!("{path}/payments"),
            Some(json!({"amount": 5, "currency": "EUR", "method": "cash"})),
        )
        .await;
    api_support::assert_error(&got, 422, "currency_mismatch", Some("currency"));
    // Part-paid: not voidable.
    assert_eq!(
        env.request(Method::POST, &format!("{path}/void"), None)
            .await
            .0,
        409
    );
    let (status, body) = env
        .request(
            Method::POST,
            &format!("{path}/payments"),
            Some(json!({"amount": 599, "currency": "USD", "method": "cash"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["invoice"]["status"], "paid");
    let shown = env.request(Method::GET, &path, None).await.1;
    assert_eq!(shown["payments"].as_array().unwrap().len(), 2, "{shown}");
    // The paid period moved the due date on by one cycle.
    let s = env
        .request(Method::GET, &format!("/api/services/{service}"), None)
        .await
        .1;
    assert_ne!(s["nextDueDate"], today.as_str());
    finish(env).await;
}

#[tokio::test]
async fn an_admin_writes_a_one_off_invoice_and_moves_its_due_date() {
    let env = start("billing-manual", false, &[]).await;
    let customer = api_support::customer(&env.c, "manual@example.com").await;
    for (body, code, field) in [
        (
            json!({"customerId": customer, "currency": "USD", "lines": []}),
            "invalid_lines",
            "lines",
        ),
        (
            json!({"customerId": customer, "currency": "USD", "lines": [{"description": "Setup", "amount": 0}]}),
            "invalid_amount",
            "lines[0].amount",
        ),
        (
            json!({"customerId": customer, "currency": "US", "lines": [{"description": "Setup", "amount": 5}]}),
            "invalid_currency",
            "currency",
        ),
        (
            json!({"customerId": customer, "currency": "USD", "taxRateBp": 20000, "lines": [{"description": "Setup", "amount": 5}]}),
            "invalid_tax_rate",
            "taxRateBp",
        ),
        (
            json!({"customerId": customer, "currency": "USD", "dueDate": "soon", "lines": [{"description": "Setup", "amount": 5}]}),
            "invalid_date",
            "dueDate",
        ),
    ] {
        let got = env.request(Method::POST, "/api/invoices", Some(body)).await;
        api_support::assert_error(&got, 400, code, Some(field));
    }
    let got = env
        .request(
            Method::POST,
            "/api/invoices",
            Some(json!({"customerId": 999, "currency": "USD", "lines": [{"description": "Setup", "amount": 5}]})),
        )
        .await;
    api_support::assert_error(&got, 404, "not_found", Some("customerId"));
    assert_eq!(env.scalar("SELECT COUNT(*) FROM invoices").await, 0);

    let (status, invoice) = env
        .request(
            Method::POST,
            "/api/invoices",
            Some(json!({"customerId": customer, "currency": "EUR", "taxRateBp": 1950, "dueDate": "2030-01-15",
                        "lines": [{"description": "Migration of 3 sites", "amount": 4500},
                                  {"description": "Setup", "amount": 1001}]})),
        )
        .await;
    assert_eq!(status, 201, "{invoice}");
    // 5501 at 19.5 % is 1072.695: 1073 cents, half away from zero.
    assert_eq!(
        (
            invoice["subtotal"].as_i64(),
            invoice["tax"].as_i64(),
            invoice["total"].as_i64()
        ),
        (Some(5501), Some(1073), Some(6574))
    );
    assert_eq!(invoice["status"], "unpaid");
    let path = format!("/api/invoices/{}", invoice["id"]);
    let (status, moved) = env
        .request(Method::PATCH, &path, Some(json!({"dueDate": "2030-02-01"})))
        .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["dueAt"], "2030-02-01T00:00:00Z");
    let got = env
        .request(Method::PATCH, &path, Some(json!({"total": 1})))
        .await;
    api_support::assert_error(&got, 400, "invalid_body", Some("total"));
    env.drain_billing().await;
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM email_outbox WHERE template = 'invoice'")
            .await,
        1
    );
    // Voided, it can be neither paid nor moved.
    assert_eq!(
        env.request(Method::POST, &format!("{path}/void"), None)
            .await
            .0,
        200
    );
    let got = env
        .request(Method::PATCH, &path, Some(json!({"dueDate": "2030-03-01"})))
        .await;
    assert_eq!(got.0, 409, "{}", got.1);
    let got = env
        .request(
            Method::POST,
            &format!("{path}/payments"),
            Some(json!({"amount": 100, "currency": "EUR", "method": "cash"})),
        )
        .await;
    api_support::assert_error(&got, 409, "invoice_not_payable", None);
    assert_eq!(env.scalar("SELECT COUNT(*) FROM payments").await, 0);
    finish(env).await;
}

async fn overdue_story(postgres: bool) {
    let env = start(
        "billing-overdue",
        postgres,
        &[("SUSPENSION_GRACE_DAYS", "3")],
    )
    .await;
    let due = date_to_ms(ms_to_date(mpanel_controller::store::now_ms())) + 2 * DAY_MS;
    let (service, customer) = active_service(
        &env,
        "grace.example.com",
        "grace@example.com",
        &format_date(ms_to_date(due)),
    )
    .await;
    give_account(&env, service).await;
    // This customer pays by bank transfer: no card to charge.
    env.exec(&format!(
        "UPDATE customers SET payment_method_id = NULL WHERE id = {customer}"
    ))
    .await;
    assert_eq!(
        env.billing
            .run_recurring(due - DAY_MS)
            .await
            .unwrap()
            .invoices_created,
        1
    );
    env.drain_billing().await;

    // Due on D with three days of grace: nothing on D + 2 (even late in the day) ...
    let before = env
        .billing
        .suspend_overdue(due + 2 * DAY_MS + 23 * 3_600_000)
        .await
        .unwrap();
    assert_eq!(before.suspended, 0, "{before:?}");
    assert!(
        env.store()
            .open_task_for_service(service.into())
            .await
            .unwrap()
            .is_none()
    );
    // ... suspended on D + 3, with one notice, however often the job runs that day.
    let on_day = due + 3 * DAY_MS + 3 * 3_600_000;
    assert_eq!(
        env.billing.suspend_overdue(on_day).await.unwrap().suspended,
        1
    );
    let again = env.billing.suspend_overdue(on_day).await.unwrap();
    assert_eq!(again.suspended, 0, "{again:?}");
    env.drain_billing().await;
    let task = env
        .store()
        .open_task_for_service(service.into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(task.task_type.as_str(), "suspend");
    assert_eq!(task.params["reason"], "overdue");
    let job = mpanel_common::JobId::for_task(task.id).to_string();
    env.hand
        .complete(
            &job,
            ServiceChange::Suspend {
                reason: "overdue".into(),
            },
        )
        .await;
    assert_eq!(
        env.billing
            .suspend_overdue(on_day + DAY_MS)
            .await
            .unwrap()
            .suspended,
        0
    );
    env.drain_billing().await;
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM email_outbox WHERE template = 'service_suspended'")
            .await,
        1
    );

    // A service whose overdue invoice is being charged right now is left alone.
    let (other, other_customer) = active_service(
        &env,
        "charging.example.com",
        "charging@example.com",
        &format_date(ms_to_date(due)),
    )
    .await;
    env.billing.run_recurring(due - DAY_MS).await.unwrap();
    let invoice = service_invoices(&env, other).await.pop().unwrap();
    assert!(
        env.store()
            .customer_card(other_customer)
            .await
            .unwrap()
            .is_some()
    );
    env.exec(&format!(
        "UPDATE invoices SET next_charge_at = NULL WHERE id = {}",
        invoice.id
    ))
    .await;
    let (_, queued) = env
        .store()
        .enqueue_charge(invoice.id, "test")
        .await
        .unwrap()
        .unwrap();
    assert!(queued);
    assert_eq!(
        env.billing.suspend_overdue(on_day).await.unwrap().suspended,
        0
    );
    finish(env).await;
}

#[tokio::test]
async fn an_unpaid_invoice_suspends_its_service_when_the_grace_ends_with_one_notice() {
    overdue_story(false).await;
}

#[tokio::test]
async fn an_unpaid_invoice_suspends_its_service_when_the_grace_ends_with_one_notice_on_postgres() {
    overdue_story(true).await;
}
