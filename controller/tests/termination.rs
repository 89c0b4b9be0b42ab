//! Non-payment to the end, on both backends, through a real agent session and the cPanel
//! simulator: an unpaid invoice suspends the service when its grace ends; paying it brings the
//! account back within seconds, through the controller's own workers; unpaid, the suspension
//! lasts `TERMINATION_DAYS` (not a day less), then the termination task takes a final backup
//! and removes the account, and the customer gets one notice. The simulator shows the account
//! gone and the archive kept; a restore from that backup brings the account back. A final
//! backup that fails holds the termination, and the task says why.

mod api_support;
mod billing_support;
mod fleet_support;

use std::time::{Duration, Instant};

use billing_support::{Env, finish, start};
use fleet_support::{
    RunningAgent, cpanel_driver, enrolled_agent, run_panel_agent, start_cpanel_sim,
};
use mpanel_common::billing::{DAY_MS, date_to_ms, format_date, ms_to_date};
use mpanel_controller::store::queue::ServiceChange;
use mpanel_panelsim::{FaultKind, ScriptedFault, SimHandle};
use reqwest::Method;
use serde_json::{Value, json};

const HOUR_MS: i64 = 3_600_000;

/// A paid, active service for `domain` whose account `username` lives on a simulated cPanel
/// served by a connected agent. Its renewal is due in two days; the customer has no card (pays
/// by bank transfer), so nothing charges the invoice.
struct Story {
    env: Env,
    sim: SimHandle,
    _agent: RunningAgent,
    _state: tempfile::TempDir,
    service: i64,
    due: i64,
}

async fn story(postgres: bool, name: &str, domain: &str, username: &str) -> Story {
    let env = start(
        name,
        postgres,
        &[
            ("SUSPENSION_GRACE_DAYS", "3"),
            ("TERMINATION_DAYS", "10"),
            ("PROVISIONING_RETRY_BASE_MS", "200"),
            ("PROVISIONING_WORKERS", "2"),
        ],
    )
    .await;
    // The order is paid and activated before any server exists, so the controller's own
    // worker cannot place it; the account is then the simulator's.
    let product = env.product(&format!("Plan {domain}"), 0).await;
    let (_, _, service, customer) = env
        .paid_order(product, domain, &format!("owner@{domain}"), "pm_card_visa")
        .await;
    let job = env.job_of_open_task(service).await.unwrap();
    env.hand.complete(&job, ServiceChange::Activate).await;
    let due = date_to_ms(ms_to_date(mpanel_controller::store::now_ms())) + 2 * DAY_MS;
    let (status, body) = env
        .request(
            Method::PATCH,
            &format!("/api/services/{service}"),
            Some(json!({ "nextDueDate": format_date(ms_to_date(due)) })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    env.exec(&format!(
        "UPDATE customers SET payment_method_id = NULL WHERE id = {customer}"
    ))
    .await;

    let (server_id, state_dir, state) = enrolled_agent(&env.c, &format!("web.{domain}")).await;
    let sim = start_cpanel_sim(|_| {}).await;
    let seeded = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
        .post(format!("{}/__sim/seed", sim.base_url()))
        .json(&json!({"accounts": [{"username": username, "domain": domain}]}))
        .send()
        .await
        .unwrap();
    assert!(seeded.status().is_success());
    env.exec(&format!(
        "UPDATE services SET server_id = {server_id}, username = '{username}' WHERE id = {service}"
    ))
    .await;
    let agent = run_panel_agent(&env.c, server_id, &state, cpanel_driver(&sim)).await;
    Story {
        env,
        sim,
        _agent: agent,
        _state: state_dir,
        service,
        due,
    }
}

async fn service(env: &Env, id: i64) -> Value {
    let (status, body) = env
        .request(Method::GET, &format!("/api/services/{id}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until the service's status is `want` (the job runner carries out its tasks).
async fn wait_status(env: &Env, id: i64, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let s = service(env, id).await;
        if s["status"] == want {
            return s;
        }
        let task = env.store().open_task_for_service(id.into()).await.unwrap();
        assert!(
            Instant::now() < deadline,
            "service {id} never became {want}: {s}; open task: {task:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sim_account<'a>(state: &'a Value, username: &str) -> Option<&'a Value> {
    state["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["username"] == username)
}

fn sim_backups(state: &Value, owner: &str) -> Vec<String> {
    state["backups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["owner"] == owner && b["ready"] == true)
        .map(|b| b["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Invoices the renewal and lets the grace pass: the service ends suspended for `overdue`, on
/// the panel too. Answers the instant of the suspension.
async fn suspend_for_non_payment(s: &Story, username: &str) -> i64 {
    let env = &s.env;
    assert_eq!(
        env.billing
            .run_recurring(s.due - DAY_MS)
            .await
            .unwrap()
            .invoices_created,
        1
    );
    env.drain_billing().await;
    let suspended = env
        .billing
        .suspend_overdue(s.due + 3 * DAY_MS + 3 * HOUR_MS)
        .await
        .unwrap();
    assert_eq!(suspended.suspended, 1, "{suspended:?}");
    let shown = wait_status(env, s.service, "suspended").await;
    assert_eq!(shown["suspensionReason"], "overdue", "{shown}");
    assert_eq!(
        sim_account(&s.sim.state_json(), username).unwrap()["suspended"],
        true
    );
    env.store()
        .get_service(s.service.into())
        .await
        .unwrap()
        .suspended_at
        .unwrap()
}

async fn overdue_to_termination_and_back(postgres: bool) {
    let name = if postgres { "term-pg" } else { "term-lite" };
    let s = story(postgres, name, "grace.example.com", "grace").await;
    let env = &s.env;
    let suspended_at = suspend_for_non_payment(&s, "grace").await;

    // Suspended on day S with ten termination days: nothing on S + 9, even late that day ...
    let day_s = date_to_ms(ms_to_date(suspended_at));
    let early = env
        .billing
        .terminate_overdue(day_s + 9 * DAY_MS + 23 * HOUR_MS)
        .await
        .unwrap();
    assert_eq!(early.queued, 0, "{early:?}");
    assert!(
        env.store()
            .open_task_for_service(s.service.into())
            .await
            .unwrap()
            .is_none()
    );
    // ... terminated from S + 10 on, once, however often the job runs.
    let on_day = day_s + 10 * DAY_MS + 3 * HOUR_MS;
    let run = env.billing.terminate_overdue(on_day).await.unwrap();
    assert_eq!(run.queued, 1, "{run:?}");
    let again = env.billing.terminate_overdue(on_day).await.unwrap();
    assert_eq!(again.queued, 0, "{again:?}");
    wait_status(env, s.service, "terminated").await;

    // The account is gone from the panel; the final backup was taken first and is kept.
    let state = s.sim.state_json();
    assert!(sim_account(&state, "grace").is_none(), "{state}");
    let (status, listed) = env
        .request(
            Method::GET,
            &format!("/api/services/{}/backups", s.service),
            None,
        )
        .await;
    assert_eq!(status, 200, "{listed}");
    let backups = listed["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 1, "{listed}");
    assert_eq!(
        (&backups[0]["purpose"], &backups[0]["status"]),
        (&json!("final"), &json!("completed")),
        "{listed}"
    );
    let location = backups[0]["location"].as_str().unwrap().to_owned();
    assert!(
        sim_backups(&state, "grace").contains(&location),
        "{location} not on the panel: {state}"
    );
    let (_, tasks) = env
        .request(
            Method::GET,
            &format!("/api/provisioning/tasks?serviceId={}", s.service),
            None,
        )
        .await;
    let terminate = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "terminate")
        .cloned()
        .unwrap_or(Value::Null);
    assert!(
        terminate.to_string().contains(&location),
        "the task names its final backup: {tasks}"
    );
    // One notice, queued once the account was gone.
    env.drain_billing().await;
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM email_outbox WHERE template = 'service_terminated'")
            .await,
        1
    );
    assert_eq!(
        env.billing
            .terminate_overdue(on_day + DAY_MS)
            .await
            .unwrap()
            .queued,
        0
    );

    // Bad restores change nothing.
    let path = format!("/api/services/{}/restore", s.service);
    let got = env.request(Method::POST, &path, Some(json!({}))).await;
    api_support::assert_error(&got, 400, "invalid_body", Some("backupId"));
    let got = env
        .request(Method::POST, &path, Some(json!({"backupId": 0})))
        .await;
    api_support::assert_error(&got, 400, "invalid_id", Some("backupId"));
    let got = env
        .request(Method::POST, &path, Some(json!({"backupId": 9999})))
        .await;
    assert!(got.0 == 404 || got.0 == 422, "{got:?}");
    assert_eq!(got.1["error"]["field"], "backupId", "{got:?}");
    assert_eq!(service(env, s.service).await["status"], "terminated");

    // A restore from the final backup brings the account back on its server.
    let backup_id = backups[0]["id"].as_i64().unwrap();
    let (status, queued) = env
        .request(Method::POST, &path, Some(json!({"backupId": backup_id})))
        .await;
    assert_eq!(status, 202, "{queued}");
    let back = wait_status(env, s.service, "active").await;
    assert!(back["terminatedAt"].is_null(), "{back}");
    let state = s.sim.state_json();
    let account = sim_account(&state, "grace").unwrap_or_else(|| panic!("{state}"));
    assert_eq!(account["domain"], "grace.example.com");
    // Restoring a live service is refused.
    let got = env
        .request(Method::POST, &path, Some(json!({"backupId": backup_id})))
        .await;
    assert_eq!(got.0, 409, "{got:?}");

    let Story { env, sim, .. } = s;
    sim.shutdown().await;
    finish(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overdue_service_is_terminated_after_a_final_backup_and_restored_from_it() {
    overdue_to_termination_and_back(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overdue_service_is_terminated_after_a_final_backup_and_restored_from_it_on_postgres() {
    overdue_to_termination_and_back(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_backup_that_fails_holds_the_termination_and_says_so() {
    let s = story(false, "term-held", "held.example.com", "held").await;
    let env = &s.env;
    let suspended_at = suspend_for_non_payment(&s, "held").await;
    // The panel refuses every backup from now on.
    s.sim.script(ScriptedFault::on(
        FaultKind::ServerError,
        "start_background_pkgacct",
        100,
    ));
    let on_day = date_to_ms(ms_to_date(suspended_at)) + 10 * DAY_MS + 3 * HOUR_MS;
    assert_eq!(
        env.billing.terminate_overdue(on_day).await.unwrap().queued,
        1
    );
    let task = env
        .store()
        .open_task_for_service(s.service.into())
        .await
        .unwrap()
        .unwrap();
    let job = mpanel_common::JobId::for_task(task.id).to_string();
    let deadline = Instant::now() + Duration::from_secs(40);
    let failed = loop {
        let t = env.hand.task(&job).await;
        if t.status.as_str() == "failed" {
            break t;
        }
        assert!(Instant::now() < deadline, "the task never failed: {t:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let error = failed.error.clone().unwrap_or_default();
    assert!(
        error.contains("final backup failed, so the account is kept"),
        "{error}"
    );
    // Nothing was removed: the service is still suspended, the account still on the panel,
    // every attempt's backup recorded as failed, and no termination notice.
    let shown = service(env, s.service).await;
    assert_eq!(shown["status"], "suspended", "{shown}");
    assert!(sim_account(&s.sim.state_json(), "held").is_some());
    let (_, listed) = env
        .request(
            Method::GET,
            &format!("/api/services/{}/backups", s.service),
            None,
        )
        .await;
    let backups = listed["backups"].as_array().unwrap();
    assert!(!backups.is_empty(), "{listed}");
    assert!(
        backups
            .iter()
            .all(|b| b["status"] == "failed" && b["purpose"] == "final"),
        "{listed}"
    );
    env.drain_billing().await;
    assert_eq!(
        env.scalar("SELECT COUNT(*) FROM email_outbox WHERE template = 'service_terminated'")
            .await,
        0
    );
    let Story { env, sim, .. } = s;
    sim.shutdown().await;
    finish(env).await;
}

async fn paying_lifts_the_suspension(postgres: bool) {
    let name = if postgres { "pay-pg" } else { "pay-lite" };
    let s = story(postgres, name, "payer.example.com", "payer").await;
    let env = &s.env;
    suspend_for_non_payment(&s, "payer").await;
    let (_, invoices) = env
        .request(
            Method::GET,
            &format!("/api/invoices?serviceId={}&status=unpaid", s.service),
            None,
        )
        .await;
    let invoice = invoices["invoices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["status"] == "unpaid")
        .unwrap_or_else(|| panic!("{invoices}"))
        .clone();
    let paid_at = Instant::now();
    let (status, body) = env
        .request(
            Method::POST,
            &format!("/api/invoices/{}/payments", invoice["id"]),
            Some(json!({
                "amount": invoice["total"].as_i64().or(invoice["amount"].as_i64()).unwrap(),
                "currency": invoice["currency"],
                "method": "bank_transfer"
            })),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    // The controller's own workers lift the suspension through the agent.
    let shown = wait_status(env, s.service, "active").await;
    let took = paid_at.elapsed();
    assert!(shown["suspensionReason"].is_null(), "{shown}");
    assert_eq!(
        sim_account(&s.sim.state_json(), "payer").unwrap()["suspended"],
        false
    );
    eprintln!("paid -> active on the panel in {took:?}");
    // Nothing is terminated afterwards.
    let later = mpanel_controller::store::now_ms() + 40 * DAY_MS;
    assert_eq!(
        env.billing.terminate_overdue(later).await.unwrap().queued,
        0
    );
    let Story { env, sim, .. } = s;
    sim.shutdown().await;
    finish(env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_an_overdue_invoice_brings_the_suspended_service_back_within_seconds() {
    paying_lifts_the_suspension(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_an_overdue_invoice_brings_the_suspended_service_back_within_seconds_on_postgres() {
    paying_lifts_the_suspension(true).await;
}
