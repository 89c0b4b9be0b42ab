//! Paid orders survive crashes of real processes: the controller SIGKILLed mid-run and started
//! again on the same database and ports (it takes back its own in-flight tasks at once), and an
//! agent SIGKILLed while its steps run.

mod support;

use std::time::{Duration, Instant};

use mpanel_e2e::cluster::{ControllerProcess, TestDir};
use mpanel_e2e::databases::TestDatabase;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_mid_run_and_restarted_finishes_every_order_with_one_account_each() {
    let start = Instant::now();
    let dir = TestDir::create("controller-crash");
    let db = TestDatabase::create().await;
    // Ten-minute leases: the tasks in flight at the kill finish within the test's 90 s only
    // because the restarted controller, the same node, takes them back at once.
    let mut controller = ControllerProcess::start(
        &dir,
        "controller",
        &[
            ("DATABASE_URL", &db.url),
            ("PROVISIONING_WORKERS", "8"),
            ("PROVISIONING_LEASE_SECS", "600"),
        ],
    )
    .await;
    let fleet = servers(
        &dir,
        &[&controller],
        &[
            ("cpanel", &["--latency-ms", "5"]),
            ("plesk", &["--latency-ms", "5"]),
            ("directadmin", &["--latency-ms", "5"]),
        ],
    )
    .await;
    let orders = Orders::open(&db).await;
    eprintln!("fleet up after {:.1}s", secs(start));

    orders.place("cr", 200).await;
    orders
        .wait_completed_at_least(&dir, 66, Duration::from_secs(60))
        .await;
    let at_kill = orders.task_counts().await;
    controller.kill9();
    eprintln!("controller killed after {:.1}s: {at_kill:?}", secs(start));
    let finished = at_kill.get("completed").copied().unwrap_or(0);
    assert!(
        finished < 200,
        "the crash must come mid-run, yet all 200 had finished: {at_kill:?}"
    );

    let in_flight = at_kill.get("processing").copied().unwrap_or(0);
    controller.restart().await;
    eprintln!("controller restarted after {:.1}s", secs(start));
    orders
        .wait_all_finished(&dir, Duration::from_secs(90))
        .await;
    if in_flight > 0 {
        let log = dir.read_log("controller");
        assert!(
            log.contains("took back the rows this node's previous process left in flight"),
            "{in_flight} tasks were in flight at the kill; the restart must say it took them back"
        );
    }
    eprintln!(
        "all finished after {:.1}s; attempts: {:?}",
        secs(start),
        orders.attempts_histogram().await
    );
    assert_all_active_with_one_account_each(&dir, &orders, &fleet, 200).await;
    let per_server: Vec<usize> = {
        let mut v = Vec::new();
        for s in &fleet {
            v.push(s.sim.usernames().await.len());
        }
        v
    };
    assert_eq!(per_server.iter().sum::<usize>(), 200, "{per_server:?}");
    drop(fleet);
    drop(controller);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_step_and_restarted_converges_without_duplicate_accounts() {
    let start = Instant::now();
    let dir = TestDir::create("agent-crash");
    let db = TestDatabase::create().await;
    let controller = controller_on(&dir, &db).await;
    // One slow panel (every call takes 200 ms), so its steps are in flight when the agent dies.
    let mut fleet = servers(
        &dir,
        &[&controller],
        &[("cpanel", &["--latency-ms", "200"]), ("plesk", &[])],
    )
    .await;
    let orders = Orders::open(&db).await;
    orders.place("ag", 30).await;

    // Kill the slow server's agent once one of its tasks is part-way through its steps.
    let slow = fleet[0].id;
    dir.wait_for(
        Duration::from_secs(30),
        "a task on the slow server with a step done and more to run",
        async || {
            let busy: Option<i64> = sqlx::query_scalar(
                "SELECT t.id FROM provisioning_tasks t JOIN services s ON s.id = t.service_id
                 WHERE s.server_id = $1 AND t.status = 'processing'
                   AND t.result::text LIKE '%\"success\"%'
                 LIMIT 1",
            )
            .bind(slow)
            .fetch_optional(&orders.pool)
            .await
            .map_err(|e| e.to_string())?;
            busy.ok_or_else(|| "none yet".to_owned())
        },
    )
    .await;
    fleet[0].agent.kill9();
    let at_kill = orders.task_counts().await;
    eprintln!("agent killed after {:.1}s: {at_kill:?}", secs(start));
    tokio::time::sleep(Duration::from_secs(1)).await;
    fleet[0].agent.restart();
    controller
        .wait_for_agent_online(slow, Duration::from_secs(20))
        .await;
    eprintln!("agent back after {:.1}s", secs(start));

    orders
        .wait_all_finished(&dir, Duration::from_secs(90))
        .await;
    eprintln!(
        "all finished after {:.1}s; attempts: {:?}",
        secs(start),
        orders.attempts_histogram().await
    );
    assert_all_active_with_one_account_each(&dir, &orders, &fleet, 30).await;
    let on_slow = orders
        .services()
        .await
        .iter()
        .filter(|s| s.server_id == Some(slow))
        .count();
    assert!(
        on_slow > 0,
        "the test only proves something if orders ran on the slow server"
    );
    drop(fleet);
    drop(controller);
    db.drop_database().await;
}
