//! A failing control panel never leaves an order stuck: each ends `active` or visibly `failed`
//! with its error within a bounded time, and failed orders succeed once the panel heals and an
//! admin requeues them.

mod support;

use std::time::{Duration, Instant};

use mpanel_common::ids::TaskId;
use mpanel_e2e::cluster::TestDir;
use mpanel_e2e::databases::TestDatabase;
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panel_failing_30_percent_of_calls_leaves_every_order_active_or_visibly_failed() {
    let start = Instant::now();
    let dir = TestDir::create("panel-fail-rate");
    let db = TestDatabase::create().await;
    let controller = controller_on(&dir, &db).await;
    let fleet = servers(
        &dir,
        &[&controller],
        &[("cpanel", &["--fail-rate", "0.3", "--seed", "7"])],
    )
    .await;
    let orders = Orders::open(&db).await;
    orders.place("fr", 40).await;
    // Bounded: three attempts with a 100 ms base backoff (plus waits while the agent's probe
    // finds the panel unreachable), so nothing may stay pending or processing for long. Which
    // orders get through is up to chance; the invariant is that none is stuck or doubled.
    orders
        .wait_all_finished(&dir, Duration::from_secs(60))
        .await;
    let counts = orders.task_counts().await;
    eprintln!(
        "all finished after {:.1}s: {counts:?}; attempts: {:?}",
        secs(start),
        orders.attempts_histogram().await
    );
    let services = orders.services().await;
    let tasks = orders.tasks().await;
    assert_eq!(tasks.len(), 40);
    for t in &tasks {
        let s = services.iter().find(|s| s.id == t.service_id).unwrap();
        match t.status.as_str() {
            "completed" => assert_eq!(s.status, "active", "{t:?} {s:?}"),
            "failed" => {
                assert!(t.error.is_some(), "a failed task names its error: {t:?}");
                assert_eq!(
                    t.attempts, t.max_retries,
                    "failed only when out of retries: {t:?}"
                );
                assert_eq!(s.status, "pending", "a failed order stays pending: {s:?}");
                assert!(
                    s.provisioning_error.is_some(),
                    "the service shows why: {s:?}"
                );
            }
            other => panic!("task {} ended {other}", t.id),
        }
    }
    // No username on the panel twice, none that no service owns, every active one present.
    assert_one_account_per_service(&dir, &services, &fleet).await;
    drop(fleet);
    drop(controller);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_failed_by_a_panel_outage_succeed_once_it_heals_and_they_are_requeued() {
    let start = Instant::now();
    let dir = TestDir::create("panel-outage");
    let db = TestDatabase::create().await;
    let controller = controller_on(&dir, &db).await;
    let fleet = servers(&dir, &[&controller], &[("cpanel", &[])]).await;
    // The panel's DNS API answers 500 for a long while: the account step succeeds, DNS fails.
    fleet[0]
        .sim
        .script_faults(
            json!({"kind": "server_error", "pathContains": "dns_zone", "times": 100_000}),
        )
        .await;
    let orders = Orders::open(&db).await;
    orders.place("po", 20).await;
    orders
        .wait_all_finished(&dir, Duration::from_secs(60))
        .await;
    let counts = orders.task_counts().await;
    eprintln!("outage finished after {:.1}s: {counts:?}", secs(start));
    assert_eq!(
        counts.get("failed").copied(),
        Some(20),
        "every order fails visibly while the DNS API is down: {counts:?}"
    );
    for t in orders.tasks().await {
        assert_eq!(t.attempts, 3, "{t:?}");
        assert!(t.error.as_deref().is_some_and(|e| !e.is_empty()), "{t:?}");
    }

    fleet[0].sim.clear_faults().await;
    for t in orders.tasks().await {
        orders
            .store
            .requeue_failed_task(TaskId::from(t.id), "test")
            .await
            .expect("requeue");
    }
    orders
        .wait_all_finished(&dir, Duration::from_secs(60))
        .await;
    eprintln!(
        "healed and finished after {:.1}s: {:?}",
        secs(start),
        orders.task_counts().await
    );
    assert_all_active_with_one_account_each(&dir, &orders, &fleet, 20).await;
    drop(fleet);
    drop(controller);
    db.drop_database().await;
}
