//! Backups: the store's rows on both backends (pending → completed/failed, the retention
//! query, marking deleted once), and the `backup-cleanup` job end to end through a real agent
//! session and the cPanel simulator: it deletes exactly the expired archives (file on the
//! panel and row), a second run changes nothing, and a row whose file could not be deleted
//! (a panel failure, an agent offline) stays for the next run.

mod backends;
mod fleet_support;

use std::time::{Duration, Instant};

use fleet_support::*;
use mpanel_common::ids::{ServerId, ServiceId};
use mpanel_common::status::BillingCycle;
use mpanel_common::username::PanelKind;
use mpanel_controller::store::{
    BackupPurpose, DynStore, NewCustomer, NewProduct, NewServer, NewService, Price,
};
use mpanel_panelsim::{FaultKind, ScriptedFault, SimHandle};
use reqwest::Method;
use serde_json::{Value, json};

const DAY: i64 = 86_400_000;

on_both_backends!(
    a_backup_goes_from_pending_to_completed_or_failed_once,
    only_completed_backups_older_than_the_cutoff_are_expired_oldest_first,
    a_backup_is_marked_deleted_once,
    a_service_is_due_a_scheduled_backup_once_its_interval_has_passed,
    an_archive_written_over_an_older_one_supersedes_its_row,
);

/// A service placed on a server, with the account username `shop`.
async fn placed_service(store: &DynStore) -> (ServiceId, ServerId) {
    let server = store
        .create_server(
            &NewServer {
                hostname: "backup.example.net".to_owned(),
                ip_address: "192.0.2.10".to_owned(),
                control_panel: PanelKind::Cpanel,
                control_panel_url: "https://backup.example.net:2087".to_owned(),
                max_accounts: 500,
                location: "fra1".to_owned(),
                server_group: "shared".to_owned(),
                nameserver1: "ns1.example.net".to_owned(),
                nameserver2: "ns2.example.net".to_owned(),
                dns_provider: mpanel_common::status::DnsProvider::Panel,
                ssl_provider: mpanel_common::status::SslProvider::Acme,
            },
            "test",
        )
        .await
        .unwrap();
    let customer = store
        .create_customer(
            &NewCustomer {
                email: "b@example.com".to_owned(),
                name: "B".to_owned(),
            },
            "test",
        )
        .await
        .unwrap();
    let product = store
        .create_product(
            &NewProduct {
                name: "Basic".to_owned(),
                server_group: "shared".to_owned(),
                package_cpanel: "default".to_owned(),
                package_plesk: "Unlimited".to_owned(),
                package_directadmin: "default".to_owned(),
                disk_mb: 1024,
                email_quota_mb: 100,
                databases: 1,
                tax_rate_bp: 0,
                backup_schedule: mpanel_common::status::BackupSchedule::None,
                prices: vec![Price {
                    billing_cycle: BillingCycle::Monthly,
                    amount_minor: 500,
                    currency: "EUR".to_owned(),
                }],
            },
            "test",
        )
        .await
        .unwrap();
    let (service, _) = store
        .create_service_with_task(
            &NewService {
                customer_id: customer.id,
                product_id: product.id,
                domain: "shop.example".to_owned(),
                billing_cycle: BillingCycle::Monthly,
                max_retries: 3,
                next_due_at: None,
                billing_day: None,
            },
            "test",
        )
        .await
        .unwrap();
    store.assign_server(service.id, server.id).await.unwrap();
    (service.id, server.id)
}

async fn a_backup_goes_from_pending_to_completed_or_failed_once(store: DynStore) {
    let (service, server) = placed_service(&store).await;
    let pending = store
        .record_backup_pending(service, server, BackupPurpose::Manual, 1_000)
        .await
        .unwrap();
    assert_eq!(
        (pending.status.as_str(), pending.location.as_str()),
        ("pending", "")
    );
    assert_eq!(pending.server_id, Some(server.get()));
    let done = store
        .complete_backup(pending.id, "backup-a.tar.gz", 4096)
        .await
        .unwrap();
    assert_eq!(
        (
            done.status.as_str(),
            done.location.as_str(),
            done.size_bytes
        ),
        ("completed", "backup-a.tar.gz", 4096)
    );
    // A completed backup is no longer pending: neither finishing nor failing it again works.
    assert!(store.complete_backup(pending.id, "x", 1).await.is_err());
    assert!(store.fail_backup(pending.id).await.is_err());

    let other = store
        .record_backup_pending(service, server, BackupPurpose::Manual, 2_000)
        .await
        .unwrap();
    assert_eq!(store.fail_backup(other.id).await.unwrap().status, "failed");
    let listed = store.service_backups(service).await.unwrap();
    assert_eq!(
        listed.iter().map(|b| b.id).collect::<Vec<_>>(),
        [other.id, pending.id],
        "newest first"
    );
}

async fn only_completed_backups_older_than_the_cutoff_are_expired_oldest_first(store: DynStore) {
    let (service, server) = placed_service(&store).await;
    let mut ids = Vec::new();
    for (created, complete) in [
        (300, true),
        (100, true),
        (200, false),
        (900, true),
        (100, true),
    ] {
        let row = store
            .record_backup_pending(service, server, BackupPurpose::Manual, created)
            .await
            .unwrap();
        if complete {
            store
                .complete_backup(row.id, &format!("b{}", row.id), 1)
                .await
                .unwrap();
        }
        ids.push(row.id);
    }
    let expired = store.expired_backups(500, None, 100).await.unwrap();
    // Oldest first, ties by id; the pending one and the one at 900 are not due.
    assert_eq!(
        expired.iter().map(|b| b.id).collect::<Vec<_>>(),
        [ids[1], ids[4], ids[0]]
    );
    // Paging continues after the last row seen.
    let first = store.expired_backups(500, None, 2).await.unwrap();
    let last = first.last().unwrap();
    let rest = store
        .expired_backups(500, Some((last.created_at, last.id)), 2)
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|b| b.id).collect::<Vec<_>>(), [ids[0]]);
}

async fn a_backup_is_marked_deleted_once(store: DynStore) {
    let (service, server) = placed_service(&store).await;
    let row = store
        .record_backup_pending(service, server, BackupPurpose::Manual, 100)
        .await
        .unwrap();
    // A pending backup has nothing on the panel to have deleted.
    assert!(!store.mark_backup_deleted(row.id, 5_000).await.unwrap());
    store.complete_backup(row.id, "b.tar.gz", 1).await.unwrap();
    assert!(store.mark_backup_deleted(row.id, 5_000).await.unwrap());
    assert!(!store.mark_backup_deleted(row.id, 6_000).await.unwrap());
    let listed = store.service_backups(service).await.unwrap();
    assert_eq!(
        (listed[0].status.as_str(), listed[0].deleted_at),
        ("deleted", Some(5_000))
    );
    assert!(
        store
            .expired_backups(i64::MAX, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_service_is_due_a_scheduled_backup_once_its_interval_has_passed(store: DynStore) {
    use mpanel_common::status::BackupSchedule;
    use mpanel_controller::store::{ProductPatch, ScheduleIntervals};
    let intervals = ScheduleIntervals {
        daily: DAY - 3_600_000,
        weekly: 7 * DAY - 3_600_000,
        monthly: 30 * DAY - 3_600_000,
    };
    let (service, server) = placed_service(&store).await;
    let now = 100 * DAY;
    let due = |at: i64| {
        let store = store.clone();
        async move {
            store
                .services_due_backup(at, intervals, DAY, 0, 100)
                .await
                .unwrap()
        }
    };
    // The username is set when the account exists; without it nothing can be backed up.
    store
        .set_service_credentials(service, "shop", "sealed")
        .await
        .unwrap();
    let task = store
        .claim_next_task("test-worker", 60_000)
        .await
        .unwrap()
        .unwrap();
    store
        .complete_service_task(
            task.id,
            "test-worker",
            mpanel_controller::store::queue::ServiceChange::Activate,
        )
        .await
        .unwrap();
    assert!(due(now).await.is_empty(), "a product without a schedule");
    let product = store.get_service(service).await.unwrap().product_id;
    store
        .update_product(
            product,
            &ProductPatch {
                backup_schedule: Some(BackupSchedule::Weekly),
                ..ProductPatch::default()
            },
            "test",
        )
        .await
        .unwrap();
    assert_eq!(due(now).await, [service], "never backed up");

    let taken = store
        .record_backup_pending(service, server, BackupPurpose::Scheduled, now)
        .await
        .unwrap();
    assert!(due(now + 1).await.is_empty(), "a backup is running");
    // A pending row older than the window died with its controller: it stands for nothing.
    assert_eq!(due(now + DAY + 1).await, [service]);
    store
        .complete_backup(taken.id, "b.tar.gz", 1)
        .await
        .unwrap();
    assert!(due(now + 6 * DAY).await.is_empty());
    assert!(due(now + 7 * DAY - 3_600_000 - 1).await.is_empty());
    assert_eq!(due(now + 7 * DAY - 3_600_000).await, [service]);
    // A failed backup does not count: the next run tries again.
    let failed = store
        .record_backup_pending(service, server, BackupPurpose::Scheduled, now + 7 * DAY)
        .await
        .unwrap();
    store.fail_backup(failed.id).await.unwrap();
    assert_eq!(due(now + 7 * DAY + 1).await, [service]);
    // Paging: nothing after the last id.
    assert!(
        store
            .services_due_backup(now + 7 * DAY + 1, intervals, DAY, service.get(), 100)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn an_archive_written_over_an_older_one_supersedes_its_row(store: DynStore) {
    let (service, server) = placed_service(&store).await;
    let first = store
        .record_backup_pending(service, server, BackupPurpose::Scheduled, 1_000)
        .await
        .unwrap();
    store
        .complete_backup(first.id, "/home/cpmove-shop.tar.gz", 10)
        .await
        .unwrap();
    let other = store
        .record_backup_pending(service, server, BackupPurpose::Manual, 1_500)
        .await
        .unwrap();
    store
        .complete_backup(other.id, "backup-other.tar.gz", 10)
        .await
        .unwrap();
    let second = store
        .record_backup_pending(service, server, BackupPurpose::Scheduled, 2_000)
        .await
        .unwrap();
    store
        .complete_backup(second.id, "/home/cpmove-shop.tar.gz", 20)
        .await
        .unwrap();
    let status = |id: i64| {
        let store = store.clone();
        async move { store.get_backup(id).await.unwrap().status }
    };
    // The panel wrote the new archive over the first: the first row has no file of its own,
    // so the retention sweep must never delete "its" file (the new one).
    assert_eq!(status(first.id).await, "deleted");
    assert_eq!(status(second.id).await, "completed");
    assert_eq!(status(other.id).await, "completed", "another archive");
    assert!(
        store
            .expired_backups(10_000, None, 10)
            .await
            .unwrap()
            .iter()
            .all(|b| b.id != first.id)
    );
}

// ---- the job, end to end --------------------------------------------------------------------

fn sim_backups(state: &Value, owner: &str) -> Vec<String> {
    let mut names: Vec<String> = state["backups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["owner"] == owner && b["ready"] == true)
        .map(|b| b["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

/// Takes `n` backups of `owner` into its home on the simulator directly (UAPI
/// `Backup::fullbackup_to_homedir`, as earlier agent versions did) and returns their names.
async fn panel_backups(sim: &SimHandle, owner: &str, n: usize) -> Vec<String> {
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let mut names = Vec::new();
    for _ in 0..n {
        let before = sim_backups(&sim.state_json(), owner);
        let started = http
            .post(format!("{}/json-api/cpanel", sim.base_url()))
            .header("Authorization", "whm root:sim-token")
            .form(&[
                ("cpanel_jsonapi_user", owner),
                ("cpanel_jsonapi_apiversion", "3"),
                ("cpanel_jsonapi_module", "Backup"),
                ("cpanel_jsonapi_func", "fullbackup_to_homedir"),
            ])
            .send()
            .await
            .unwrap();
        assert!(started.status().is_success());
        let deadline = Instant::now() + Duration::from_secs(10);
        let name = loop {
            let now = sim_backups(&sim.state_json(), owner);
            if let Some(new) = now.into_iter().find(|n| !before.contains(n)) {
                break new;
            }
            assert!(Instant::now() < deadline, "the backup was never written");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        names.push(name);
        // cPanel names archives to the second.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
    }
    names
}

async fn rows(c: &Controller) -> Vec<(i64, String, String)> {
    let pool = sqlx::SqlitePool::connect(&c.db.url).await.unwrap();
    let rows: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT id, location, status FROM backups ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    rows
}

async fn insert_backup(c: &Controller, location: &str, age_days: i64) {
    let pool = sqlx::SqlitePool::connect(&c.db.url).await.unwrap();
    let created = mpanel_controller::store::now_ms() - age_days * DAY;
    sqlx::query(
        "INSERT INTO backups (service_id, server_id, location, size_bytes, status, created_at)
         VALUES (1, (SELECT MIN(id) FROM servers), $1, 1, 'completed', $2)",
    )
    .bind(location)
    .bind(created)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

/// Runs `backup-cleanup` by hand and returns the finished run.
async fn run_cleanup(c: &Controller) -> Value {
    run_job(c, "backup-cleanup").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_deletes_exactly_the_expired_backups_and_a_second_run_changes_nothing() {
    let c = Controller::start(&[("BACKUP_RETENTION_DAYS", "30")]).await;
    let (server_id, _dir, state) = enrolled_agent(&c, "backups.example.net").await;
    let sim = start_cpanel_sim(|_| {}).await;
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let seeded = http
        .post(format!("{}/__sim/seed", sim.base_url()))
        .json(&json!({"accounts": [{"username": "keeper", "domain": "keeper.example"}]}))
        .send()
        .await
        .unwrap();
    assert!(seeded.status().is_success());
    c.sql(
        "INSERT INTO customers (id, email, name, status, created_at, updated_at)
           VALUES (1, 'k@example.com', 'K', 'active', 0, 0)",
    )
    .await;
    c.sql("INSERT INTO products (id, name, created_at, updated_at) VALUES (1, 'P', 0, 0)")
        .await;
    c.sql("INSERT INTO services (id, customer_id, product_id, server_id, domain, username, status, billing_cycle, created_at, updated_at) VALUES
           (1, 1, 1, (SELECT MIN(id) FROM servers), 'keeper.example', 'keeper', 'active', 'monthly', 0, 0)").await;

    // Four archives on the panel: two past the retention, two within it; one more expired
    // row whose file is already gone from the panel.
    let names = panel_backups(&sim, "keeper", 4).await;
    insert_backup(&c, &names[0], 45).await;
    insert_backup(&c, &names[1], 31).await;
    insert_backup(&c, &names[2], 29).await;
    insert_backup(&c, &names[3], 1).await;
    insert_backup(&c, "backup-01.01.2020_00-00-00_keeper.tar.gz", 60).await;

    let agent = run_panel_agent(&c, server_id, &state, cpanel_driver(&sim)).await;

    // The panel fails the first delete: that row stays, the others go.
    sim.script(ScriptedFault::on(FaultKind::ServerError, "trash_file", 1));
    let run = run_cleanup(&c).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let summary = &run["summary"];
    assert_eq!(summary["expired"], 3, "{summary}");
    assert_eq!(summary["deleted"], 1, "{summary}");
    assert_eq!(summary["alreadyGone"], 1, "{summary}");
    assert_eq!(summary["left"], 1, "{summary}");
    assert_eq!(
        summary["leftReasons"]["delete failed (retryable)"], 1,
        "{summary}"
    );
    assert_eq!(
        sim_backups(&sim.state_json(), "keeper"),
        [names[0].clone(), names[2].clone(), names[3].clone()]
    );
    let after_first = rows(&c).await;
    assert_eq!(
        after_first
            .iter()
            .map(|(_, _, s)| s.as_str())
            .collect::<Vec<_>>(),
        ["completed", "deleted", "completed", "completed", "deleted"]
    );

    // The next run deletes the one left; the run after that has nothing to do.
    let run = run_cleanup(&c).await;
    assert_eq!(run["summary"]["deleted"], 1, "{run}");
    assert_eq!(run["summary"]["left"], 0, "{run}");
    assert_eq!(
        sim_backups(&sim.state_json(), "keeper"),
        [names[2].clone(), names[3].clone()]
    );
    let run = run_cleanup(&c).await;
    assert_eq!(
        (
            &run["summary"]["expired"],
            &run["summary"]["deleted"],
            &run["summary"]["left"]
        ),
        (&json!(0), &json!(0), &json!(0)),
        "{run}"
    );
    assert_eq!(
        sim_backups(&sim.state_json(), "keeper"),
        [names[2].clone(), names[3].clone()]
    );

    // With the agent offline an expired row stays, and says why.
    insert_backup(&c, &names[2], 40).await;
    agent.stop().await;
    c.wait_for_agent(server_id, Duration::from_secs(15), "offline", |a| {
        a["status"] != "online"
    })
    .await;
    let run = run_cleanup(&c).await;
    assert_eq!(run["summary"]["left"], 1, "{run}");
    assert_eq!(run["summary"]["leftReasons"]["agent offline"], 1, "{run}");
    assert_eq!(rows(&c).await.last().unwrap().2, "completed");
    assert_eq!(sim_backups(&sim.state_json(), "keeper").len(), 2);
    sim.shutdown().await;
}

/// Runs `job` by hand and returns the finished run.
async fn run_job(c: &Controller, job: &str) -> Value {
    let (status, body) = c
        .request(Method::POST, &format!("/api/cron/jobs/{job}/run"), None)
        .await;
    assert!(status == 202 || status == 200, "{status} {body}");
    let id = body["runId"].clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, runs) = c
            .request(
                Method::GET,
                &format!("/api/cron/runs?job={job}&limit=5"),
                None,
            )
            .await;
        if let Some(run) = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            && matches!(run["status"].as_str(), Some("succeeded" | "failed"))
        {
            return run.clone();
        }
        assert!(Instant::now() < deadline, "{job} never finished: {runs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backups_job_takes_one_backup_per_scheduled_service_and_none_twice() {
    let c = Controller::start(&[]).await;
    let (server_id, _dir, state) = enrolled_agent(&c, "scheduled.example.net").await;
    let sim = start_cpanel_sim(|_| {}).await;
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
        .post(format!("{}/__sim/seed", sim.base_url()))
        .json(&json!({"accounts": [
            {"username": "daily", "domain": "daily.example"},
            {"username": "never", "domain": "never.example"}
        ]}))
        .send()
        .await
        .unwrap();
    c.sql(
        "INSERT INTO customers (id, email, name, status, created_at, updated_at)
           VALUES (1, 's@example.com', 'S', 'active', 0, 0)",
    )
    .await;
    c.sql("INSERT INTO products (id, name, created_at, updated_at) VALUES (1, 'Daily', 0, 0), (2, 'None', 0, 0)")
        .await;
    // The schedule is a product setting, validated by the API.
    let (status, body) = c
        .request(
            Method::PATCH,
            "/api/products/1",
            Some(json!({"backupSchedule": "hourly"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "backupSchedule", "{body}");
    let (status, body) = c
        .request(
            Method::PATCH,
            "/api/products/1",
            Some(json!({"backupSchedule": "daily"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["backupSchedule"], "daily");
    c.sql("INSERT INTO services (id, customer_id, product_id, server_id, domain, username, status, billing_cycle, created_at, updated_at) VALUES
           (1, 1, 1, (SELECT MIN(id) FROM servers), 'daily.example', 'daily', 'active', 'monthly', 0, 0),
           (2, 1, 2, (SELECT MIN(id) FROM servers), 'never.example', 'never', 'active', 'monthly', 0, 0),
           (3, 1, 1, NULL, 'unplaced.example', NULL, 'pending', 'monthly', 0, 0)").await;
    let agent = run_panel_agent(&c, server_id, &state, cpanel_driver(&sim)).await;

    let run = run_job(&c, "backups").await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        (&run["summary"]["due"], &run["summary"]["taken"]),
        (&json!(1), &json!(1)),
        "{run}"
    );
    let (_, listed) = c
        .request(Method::GET, "/api/services/1/backups", None)
        .await;
    assert_eq!(listed["backups"][0]["purpose"], "scheduled", "{listed}");
    assert_eq!(listed["backups"][0]["status"], "completed", "{listed}");
    let location = listed["backups"][0]["location"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(sim_backups(&sim.state_json(), "daily"), [location]);
    assert!(sim_backups(&sim.state_json(), "never").is_empty());

    // The same day again: nothing is due.
    let run = run_job(&c, "backups").await;
    assert_eq!(run["summary"]["due"], 0, "{run}");
    assert_eq!(sim_backups(&sim.state_json(), "daily").len(), 1);

    // A backup the panel cannot take is recorded failed, counted, and due again next run.
    c.sql("UPDATE backups SET created_at = created_at - 86400000")
        .await;
    agent.stop().await;
    c.wait_for_agent(server_id, Duration::from_secs(15), "offline", |a| {
        a["status"] != "online"
    })
    .await;
    let run = run_job(&c, "backups").await;
    assert_eq!(
        (&run["summary"]["due"], &run["summary"]["failed"]),
        (&json!(1), &json!(1)),
        "{run}"
    );
    assert_eq!(run["summary"]["failures"]["agent offline"], 1, "{run}");
    let (_, listed) = c
        .request(Method::GET, "/api/services/1/backups", None)
        .await;
    assert_eq!(listed["backups"][0]["status"], "failed", "{listed}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_backup_is_taken_through_the_agent_and_recorded() {
    let c = Controller::start(&[]).await;
    let (server_id, _dir, state) = enrolled_agent(&c, "takes.example.net").await;
    let sim = start_cpanel_sim(|_| {}).await;
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    http.post(format!("{}/__sim/seed", sim.base_url()))
        .json(&json!({"accounts": [{"username": "taker", "domain": "taker.example"}]}))
        .send()
        .await
        .unwrap();
    c.sql(
        "INSERT INTO customers (id, email, name, status, created_at, updated_at)
           VALUES (1, 't@example.com', 'T', 'active', 0, 0)",
    )
    .await;
    c.sql("INSERT INTO products (id, name, created_at, updated_at) VALUES (1, 'P', 0, 0)")
        .await;
    c.sql("INSERT INTO services (id, customer_id, product_id, server_id, domain, username, status, billing_cycle, created_at, updated_at) VALUES
           (1, 1, 1, (SELECT MIN(id) FROM servers), 'taker.example', 'taker', 'active', 'monthly', 0, 0),
           (2, 1, 1, NULL, 'unplaced.example', NULL, 'pending', 'monthly', 0, 0)").await;
    let agent = run_panel_agent(&c, server_id, &state, cpanel_driver(&sim)).await;

    let (status, taken) = c
        .request(Method::POST, "/api/services/1/backups", None)
        .await;
    assert_eq!(status, 201, "{taken}");
    assert_eq!(taken["status"], "completed");
    let location = taken["location"].as_str().unwrap().to_owned();
    // A server-level pkgacct archive, which outlives the account; WHM's list gives no size.
    assert_eq!(location, "cpmove-taker.tar.gz");
    assert_eq!(sim_backups(&sim.state_json(), "taker"), [location.as_str()]);
    assert_eq!(taken["sizeBytes"], 0, "{taken}");

    let (status, listed) = c
        .request(Method::GET, "/api/services/1/backups", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["backups"][0]["id"], taken["id"]);
    assert_eq!(listed["backups"][0]["location"], location.as_str());

    let (status, body) = c
        .request(Method::POST, "/api/services/2/backups", None)
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "service_not_placed");
    let (status, _) = c
        .request(Method::GET, "/api/services/99/backups", None)
        .await;
    assert_eq!(status, 404);

    // An offline agent: 503, and the attempt is recorded as failed.
    agent.stop().await;
    c.wait_for_agent(server_id, Duration::from_secs(15), "offline", |a| {
        a["status"] != "online"
    })
    .await;
    let (status, body) = c
        .request(Method::POST, "/api/services/1/backups", None)
        .await;
    assert_eq!(status, 503, "{body}");
    let (_, listed) = c
        .request(Method::GET, "/api/services/1/backups", None)
        .await;
    assert_eq!(listed["backups"][0]["status"], "failed", "{listed}");
    assert_eq!(listed["backups"].as_array().unwrap().len(), 2);
    sim.shutdown().await;
}
