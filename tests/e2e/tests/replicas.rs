//! Scale-out: two controller replicas on one PostgreSQL database and one Redis, each serving the
//! agents connected to it, and Redis losing everything mid-run. The database is the truth:
//! no order is lost, none runs twice at once, none yields two accounts.

mod support;

use std::time::{Duration, Instant};

use mpanel_e2e::cluster::{ControllerProcess, TestDir};
use mpanel_e2e::databases::TestDatabase;
use support::*;

const REDIS: &str = "redis://127.0.0.1:6379";

/// A Redis connection on database `db`, or a failure saying Redis is needed.
async fn redis(db: u8) -> redis::aio::MultiplexedConnection {
    let url = format!("{REDIS}/{db}");
    let client = redis::Client::open(url.as_str()).expect("redis url");
    match tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => panic!(
            "Redis is required for this test and is not reachable at {url}: {e}. Run \
             scripts/test, which starts it, or `redis-server --port 6379`."
        ),
        Err(_) => panic!("Redis at {url} did not answer within 5 s"),
    }
}

/// A replica's environment: the shared database, Redis on its own DB index and key prefix.
fn replica_env<'a>(
    db: &'a TestDatabase,
    redis_url: &'a str,
    prefix: &'a str,
) -> [(&'a str, &'a str); 4] {
    [
        ("DATABASE_URL", db.url.as_str()),
        ("REDIS_URL", redis_url),
        ("REDIS_PREFIX", prefix),
        ("PROVISIONING_WORKERS", "8"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_database_and_redis_provision_500_orders_each_once() {
    let start = Instant::now();
    let mut conn = redis(13).await;
    let _: () = redis::cmd("FLUSHDB").query_async(&mut conn).await.unwrap();
    let dir = TestDir::create("replicas");
    let db = TestDatabase::create().await;
    let redis_url = format!("{REDIS}/13");
    let prefix = format!("e2e-{}", &db.name[db.name.len() - 8..]);
    let env = replica_env(&db, &redis_url, &prefix);
    // One after the other: the first start creates the agents' CA in the database, the second
    // loads it, so both present certificates from the same CA.
    let a = ControllerProcess::start(&dir, "replica-a", &env).await;
    let b = ControllerProcess::start(&dir, "replica-b", &env).await;
    // Servers alternate between the replicas: 0 and 2 dial A, 1 and 3 dial B.
    let fleet = servers(
        &dir,
        &[&a, &b],
        &[
            ("cpanel", &[]),
            ("plesk", &[]),
            ("directadmin", &[]),
            ("cpanel", &[]),
        ],
    )
    .await;
    let orders = Orders::open(&db).await;
    eprintln!("two replicas and four agents up after {:.1}s", secs(start));
    orders.place("rp", 500).await;
    eprintln!("500 orders placed after {:.1}s", secs(start));
    orders
        .wait_all_finished(&dir, Duration::from_secs(100))
        .await;
    let histogram = orders.attempts_histogram().await;
    eprintln!(
        "all finished after {:.1}s: {:?}; attempts: {histogram:?}",
        secs(start),
        orders.task_counts().await
    );
    assert_all_active_with_one_account_each(&dir, &orders, &fleet, 500).await;
    // Nothing failed, so no task had a reason to be tried more than its budget allows; more
    // would mean two workers ran it (a lease taken over while its holder still worked).
    let over: Vec<_> = orders
        .tasks()
        .await
        .into_iter()
        .filter(|t| t.attempts > t.max_retries)
        .collect();
    assert!(over.is_empty(), "tasks tried beyond their budget: {over:?}");
    // Both replicas did work: each served the agents connected to it.
    let mut per_server = Vec::new();
    for s in &fleet {
        per_server.push(s.sim.usernames().await.len());
    }
    eprintln!("accounts per server (A, B, A, B): {per_server:?}");
    assert!(
        per_server.iter().all(|n| *n > 0),
        "every server, on either replica, got orders: {per_server:?}"
    );

    // Retries cross replicas: two transient panel errors per server make tasks retry, and a
    // retry is claimed by whichever replica is free, often not the one its agent is connected
    // to. That replica cannot reach the agent; the task must wait for the right one, not spend
    // its retry budget (two errors leave one attempt to spare, so any extra spending fails it).
    for (s, path) in fleet.iter().zip([
        "createacct",
        "/api/v2/domains",
        "CMD_API_ACCOUNT_USER",
        "createacct",
    ]) {
        s.sim
            .script_faults(
                serde_json::json!({"kind": "server_error", "pathContains": path, "times": 2}),
            )
            .await;
    }
    orders.place("rx", 40).await;
    orders
        .wait_all_finished(&dir, Duration::from_secs(60))
        .await;
    let waits = dir.count_in_logs("waiting for the agent of server");
    eprintln!(
        "with retries, finished after {:.1}s: {:?}; attempts: {:?}; waits on the other replica: {waits}",
        secs(start),
        orders.task_counts().await,
        orders.attempts_histogram().await
    );
    assert_all_active_with_one_account_each(&dir, &orders, &fleet, 540).await;
    let retried = orders
        .tasks()
        .await
        .iter()
        .filter(|t| t.attempts > 1)
        .count();
    assert!(retried > 0, "the scripted errors made no task retry");
    drop(fleet);
    drop((a, b));
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_flush_mid_run_loses_no_order() {
    let start = Instant::now();
    let mut conn = redis(14).await;
    let dir = TestDir::create("redis-flush");
    let db = TestDatabase::create().await;
    let redis_url = format!("{REDIS}/14");
    let prefix = format!("e2e-{}", &db.name[db.name.len() - 8..]);
    let env = replica_env(&db, &redis_url, &prefix);
    let a = ControllerProcess::start(&dir, "replica-a", &env).await;
    let b = ControllerProcess::start(&dir, "replica-b", &env).await;
    let fleet = servers(
        &dir,
        &[&a, &b],
        &[
            ("cpanel", &["--latency-ms", "5"]),
            ("plesk", &["--latency-ms", "5"]),
        ],
    )
    .await;
    let orders = Orders::open(&db).await;
    orders.place("rf", 150).await;
    orders
        .wait_completed_at_least(&dir, 50, Duration::from_secs(60))
        .await;
    let _: () = redis::cmd("FLUSHDB").query_async(&mut conn).await.unwrap();
    let at_flush = orders.task_counts().await;
    eprintln!(
        "Redis DB 14 flushed after {:.1}s: {at_flush:?}",
        secs(start)
    );
    assert!(
        at_flush.get("completed").copied().unwrap_or(0) < 150,
        "the flush must come mid-run: {at_flush:?}"
    );
    // Orders keep arriving after the flush, through both replicas' wake-ups.
    orders.place("rg", 30).await;
    orders
        .wait_all_finished(&dir, Duration::from_secs(90))
        .await;
    eprintln!(
        "all finished after {:.1}s; attempts: {:?}",
        secs(start),
        orders.attempts_histogram().await
    );
    assert_all_active_with_one_account_each(&dir, &orders, &fleet, 180).await;
    drop(fleet);
    drop((a, b));
    db.drop_database().await;
}
