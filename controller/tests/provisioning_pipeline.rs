//! The provisioning pipeline end to end: the real controller (workers, fleet, SQLite), a real
//! agent session, the agent's panel driver and a simulated cPanel.

mod fleet_support;

use std::time::{Duration, Instant};

use fleet_support::*;
use mpanel_common::status::{ServiceStatus, TaskStatus};
use mpanel_controller::config::EncryptionKeys;
use mpanel_controller::crypto::Cipher;
use mpanel_controller::store::{self, DynStore, Task};
use mpanel_panelsim::SimHandle;
use serde_json::json;

struct Rig {
    c: Controller,
    store: DynStore,
    sim: SimHandle,
    agent: RunningAgent,
    _state_dir: tempfile::TempDir,
}

async fn rig(overrides: &[(&str, &str)]) -> Rig {
    let mut env = vec![
        ("PROVISIONING_RETRY_BASE_MS", "50"),
        ("EMAIL_PROVIDER", "log"),
    ];
    env.extend_from_slice(overrides);
    let c = Controller::start(&env).await;
    let (server_id, dir, state) = enrolled_agent(&c, "web1.example.net").await;
    let sim = start_cpanel_sim(|_| {}).await;
    let agent = run_panel_agent(&c, server_id, &state, cpanel_driver(&sim)).await;
    let store = store::connect(&c.db.url).await.unwrap();
    Rig {
        c,
        store,
        sim,
        agent,
        _state_dir: dir,
    }
}

async fn wait_for_task(
    store: &DynStore,
    task: &Task,
    within: Duration,
    what: &str,
    done: impl Fn(&Task) -> bool,
) -> Task {
    let deadline = Instant::now() + within;
    loop {
        let t = store.get_task(task.id).await.unwrap();
        if done(&t) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "task never reached {what}: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn finished(t: &Task) -> bool {
    matches!(t.status, TaskStatus::Completed | TaskStatus::Failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_becomes_an_active_service_with_six_successful_steps_and_one_account() {
    let r = rig(&[]).await;
    let task = store_order(&r.store, "shop.example").await;
    let done = wait_for_task(
        &r.store,
        &task,
        Duration::from_secs(30),
        "completion",
        finished,
    )
    .await;
    assert_eq!(done.status, TaskStatus::Completed, "{:?}", done.error);
    let steps: Vec<_> = done
        .result
        .0
        .steps
        .iter()
        .map(|s| (s.step.as_str(), s.status.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("account", "success"),
            ("dns", "success"),
            ("ssl", "success"),
            ("email", "success"),
            ("database", "success"),
            ("welcome_email", "success")
        ]
    );
    let data = |i: usize| done.result.0.steps[i].data.clone();
    assert!(data(0)["username"].is_string());
    assert_eq!(data(1)["zone_id"], "shop.example");
    // Counts are numbers (the contract's types); the records themselves go under another name.
    assert!(data(1)["records"].as_u64().unwrap() >= 5, "{}", data(1));
    assert_eq!(
        data(1)["record_list"].as_array().unwrap().len() as u64,
        data(1)["records"].as_u64().unwrap()
    );
    assert_eq!(data(2)["provider"], "autossl");
    assert_eq!(data(3)["default_email"], "admin@shop.example");
    assert_eq!(data(4)["databases_created"], 1, "{}", data(4));
    assert_eq!(data(4)["database_names"].as_array().unwrap().len(), 1);
    assert_eq!(data(5)["queued"], true);
    let key = data(5)["outbox_key"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while r.store.email_status(&key).await.unwrap().as_deref() != Some("sent") {
        assert!(
            Instant::now() < deadline,
            "the welcome email was never sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let service = r.store.get_service(done.service_id).await.unwrap();
    assert_eq!(service.status, ServiceStatus::Active);
    assert!(service.provisioned_at.is_some() && service.provisioning_error.is_none());
    let username = service.username.clone().unwrap();
    assert_eq!(data(0)["username"], username.as_str());

    // Credentials are sealed at rest and open with the controller's key.
    let cipher = Cipher::new(&EncryptionKeys {
        current: hex_key(KEY),
        previous: vec![],
    });
    for sealed in [
        &service.password_encrypted,
        &service.mailbox_password_encrypted,
        &service.database_password_encrypted,
    ] {
        let sealed = sealed.as_deref().expect("secret stored");
        assert!(sealed.starts_with("v1:"));
        assert_eq!(cipher.open_string(sealed).unwrap().len(), 20);
    }
    // No step's data carries a secret.
    let password = cipher
        .open_string(service.password_encrypted.as_deref().unwrap())
        .unwrap();
    assert!(
        !serde_json::to_string(&done.result.0)
            .unwrap()
            .contains(&password)
    );

    let state = r.sim.state_json();
    let accounts: Vec<_> = state["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["username"] == username.as_str())
        .collect();
    assert_eq!(accounts.len(), 1, "{state}");
    // Ours and the panel's resident account, nothing else.
    assert_eq!(state["accounts"].as_array().unwrap().len(), 2, "{state}");
    r.agent.stop().await;
    r.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_panel_fails_the_task_visibly_and_a_retry_succeeds_once_it_heals() {
    let r = rig(&[]).await;
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let fault = http
        .post(format!("{}/__sim/faults", r.sim.base_url()))
        .json(&json!({"kind": "server_error", "pathContains": "createacct", "times": 1000}))
        .send()
        .await
        .unwrap();
    assert!(fault.status().is_success());
    let task = store_order(&r.store, "broken.example").await;
    let failed = wait_for_task(
        &r.store,
        &task,
        Duration::from_secs(30),
        "a final state",
        finished,
    )
    .await;
    assert_eq!(failed.status, TaskStatus::Failed);
    assert_eq!(failed.attempts, 3);
    assert!(failed.error.is_some());
    let service = r.store.get_service(failed.service_id).await.unwrap();
    assert_eq!(
        service.status,
        ServiceStatus::Pending,
        "a failed order stays pending"
    );
    assert!(service.provisioning_error.is_some());
    assert_eq!(failed.result.0.steps[0].status, "failed");

    let cleared = http
        .delete(format!("{}/__sim/faults", r.sim.base_url()))
        .send()
        .await
        .unwrap();
    assert!(cleared.status().is_success());
    r.store.requeue_failed_task(task.id, "test").await.unwrap();
    let healed = wait_for_task(
        &r.store,
        &task,
        Duration::from_secs(30),
        "completion",
        |t| t.status == TaskStatus::Completed,
    )
    .await;
    assert_eq!(healed.result.0.steps.len(), 6);
    let service = r.store.get_service(healed.service_id).await.unwrap();
    assert_eq!(service.status, ServiceStatus::Active);
    assert!(service.provisioning_error.is_none());
    let state = r.sim.state_json();
    let ours: Vec<_> = state["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["username"] != mpanel_panelsim::RESIDENT_USER)
        .collect();
    assert_eq!(ours.len(), 1, "{state}");
    r.agent.stop().await;
    r.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_eligible_server_the_task_waits_with_a_reason_and_runs_when_one_appears() {
    let r = rig(&[]).await;
    r.c.sql("UPDATE servers SET status = 'draining'").await;
    let task = store_order(&r.store, "later.example").await;
    let waiting = wait_for_task(
        &r.store,
        &task,
        Duration::from_secs(10),
        "a wait reason",
        |t| t.wait_reason.is_some(),
    )
    .await;
    assert_eq!(waiting.status, TaskStatus::Pending);
    assert!(
        waiting
            .wait_reason
            .as_deref()
            .unwrap()
            .contains("waiting for a server"),
        "{:?}",
        waiting.wait_reason
    );
    r.c.sql("UPDATE servers SET status = 'active'").await;
    let done = wait_for_task(
        &r.store,
        &task,
        Duration::from_secs(30),
        "completion",
        finished,
    )
    .await;
    assert_eq!(done.status, TaskStatus::Completed, "{:?}", done.error);
    r.agent.stop().await;
    r.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_tasks_suspend_unsuspend_and_terminate_through_the_panel() {
    let r = rig(&[]).await;
    let task = store_order(&r.store, "cycle.example").await;
    let done = wait_for_task(
        &r.store,
        &task,
        Duration::from_secs(30),
        "completion",
        finished,
    )
    .await;
    assert_eq!(done.status, TaskStatus::Completed, "{:?}", done.error);
    let service_id = done.service_id;
    let life = mpanel_controller::lifecycle::Lifecycle::new(
        r.store.clone(),
        mpanel_controller::jobs::Dispatcher::new(),
    );
    let admin = mpanel_controller::lifecycle::Actor::Admin(1);
    for (kind, expected, suspended) in [
        (
            mpanel_common::status::TaskKind::Suspend,
            ServiceStatus::Suspended,
            Some(true),
        ),
        (
            mpanel_common::status::TaskKind::Unsuspend,
            ServiceStatus::Active,
            Some(false),
        ),
        (
            mpanel_common::status::TaskKind::Terminate,
            ServiceStatus::Terminated,
            None,
        ),
    ] {
        use mpanel_common::status::{SuspensionReason, TaskKind};
        let t = match kind {
            TaskKind::Suspend => {
                life.suspend(
                    &admin,
                    service_id,
                    SuspensionReason::Abuse,
                    Some("report 7"),
                )
                .await
            }
            TaskKind::Unsuspend => life.unsuspend(&admin, service_id).await,
            _ => life.terminate(&admin, service_id).await,
        }
        .unwrap();
        let t = wait_for_task(
            &r.store,
            &t,
            Duration::from_secs(30),
            "completion",
            finished,
        )
        .await;
        assert_eq!(t.status, TaskStatus::Completed, "{kind:?}: {:?}", t.error);
        let service = r.store.get_service(service_id).await.unwrap();
        assert_eq!(service.status, expected);
        if expected == ServiceStatus::Suspended {
            assert_eq!(service.suspension_reason.as_deref(), Some("abuse"));
        }
        let accounts: Vec<_> = r.sim.state_json()["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["username"] != mpanel_panelsim::RESIDENT_USER)
            .cloned()
            .collect();
        match suspended {
            Some(s) => assert_eq!(accounts[0]["suspended"], s, "{accounts:?}"),
            None => assert!(accounts.is_empty(), "terminated: {accounts:?}"),
        }
    }
    r.agent.stop().await;
    r.sim.shutdown().await;
}

fn hex_key(hex: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}
