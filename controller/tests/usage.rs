//! Usage: the store's rows on both backends (history and latest sample, unlimited and unknown
//! kept apart, over-quota episodes that start, carry on and end, the retention sweep, keyset
//! paging of live accounts, the live-service count placement reads), and the `usage-sync` job end to end through a real agent session
//! and the cPanel simulator, on both backends: samples stored and shown on the service, an
//! offline agent's services left as they were and reported, one admin email per over-quota
//! episode across repeated runs, the history route and its 404.

mod fleet_support;

use std::time::{Duration, Instant};

use fleet_support::*;
use mpanel_common::command::{AccountUsage, Amount};
use mpanel_common::ids::{ProductId, ServerId, ServiceId};
use mpanel_common::status::BillingCycle;
use mpanel_common::username::PanelKind;
use mpanel_controller::store::usage::NewUsageSample;
use mpanel_controller::store::{
    DynStore, NewCustomer, NewProduct, NewServer, NewService, Page, Price,
};
use mpanel_e2e::databases::{TestDatabase, TestSqlite};
use reqwest::Method;
use serde_json::{Value, json};

const MB: u64 = 1024 * 1024;
const DAY: i64 = 86_400_000;

/// Runs a store behaviour on a fresh, migrated database of each backend, with raw SQL on the
/// same database for what no store method does.
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = super::TestDatabase::create().await;
                    super::with_store(&db.url, super::$name).await;
                    db.drop_database().await;
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = super::TestSqlite::create();
                    super::with_store(&db.url, super::$name).await;
                    db.remove();
                }
            )+
        }
    };
}

async fn with_store<F, Fut>(url: &str, test: F)
where
    F: FnOnce(DynStore, Sql) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let store = mpanel_controller::store::connect(url).await.unwrap();
    store.migrate().await.unwrap();
    test(store.clone(), Sql::url(url).await).await;
    store.close().await;
}

on_both_backends!(
    samples_go_to_the_history_and_the_newest_is_the_latest,
    unlimited_and_unknown_limits_are_kept_apart,
    an_episode_starts_carries_on_through_notice_and_ends_under_quota,
    only_untold_episodes_are_listed_for_notice,
    pruning_deletes_only_samples_past_the_cutoff,
    live_accounts_are_paged_by_server_and_status,
    a_server_counts_its_live_services_and_refuses_a_placement_past_capacity,
);

async fn server(store: &DynStore, hostname: &str) -> ServerId {
    store
        .create_server(
            &NewServer {
                hostname: hostname.to_owned(),
                ip_address: "192.0.2.10".to_owned(),
                control_panel: PanelKind::Cpanel,
                control_panel_url: format!("https://{hostname}:2087"),
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
        .unwrap()
        .id
}

/// `n` services placed on `server` with usernames `u0`, `u1`, … (status `pending`, as ordered).
async fn services(store: &DynStore, server: ServerId, n: usize) -> Vec<ServiceId> {
    let product = store
        .create_product(
            &NewProduct {
                name: format!("Basic {}", server.get()),
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
    let ids = ordered(store, product.id, n, &format!("s{}", server.get())).await;
    for (i, id) in ids.iter().enumerate() {
        store.assign_server(*id, server).await.unwrap();
        store
            .set_service_credentials(*id, &format!("u{i}"), "sealed")
            .await
            .unwrap();
    }
    ids
}

/// `n` services of `product` ordered by a new customer `<tag>@example.com`, not yet placed.
async fn ordered(store: &DynStore, product: ProductId, n: usize, tag: &str) -> Vec<ServiceId> {
    let customer = store
        .create_customer(
            &NewCustomer {
                email: format!("{tag}@example.com"),
                name: "C".to_owned(),
            },
            "test",
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        let (service, _) = store
            .create_service_with_task(
                &NewService {
                    customer_id: customer.id,
                    product_id: product,
                    domain: format!("{tag}-{i}.example"),
                    billing_cycle: BillingCycle::Monthly,
                    max_retries: 3,
                    next_due_at: None,
                    billing_day: None,
                },
                "test",
            )
            .await
            .unwrap();
        ids.push(service.id);
    }
    ids
}

fn disk(used_mb: u64, limit: Option<Amount>) -> AccountUsage {
    AccountUsage {
        disk_used: Some(used_mb * MB),
        disk_limit: limit,
        ..AccountUsage::default()
    }
}

fn sample(service: ServiceId, taken_at: i64, usage: AccountUsage) -> NewUsageSample {
    let over_quota = mpanel_controller::usage::is_over_quota(&usage);
    NewUsageSample {
        service_id: service,
        taken_at,
        usage,
        over_quota,
    }
}

async fn samples_go_to_the_history_and_the_newest_is_the_latest(store: DynStore, _sql: Sql) {
    let srv = server(&store, "h.example.net").await;
    let ids = services(&store, srv, 2).await;
    let (a, b) = (ids[0], ids[1]);
    let limit = Some(Amount::Value(1024 * MB));
    let recorded = store
        .record_usage(&[
            sample(a, 1_000, disk(10, limit)),
            sample(b, 1_000, disk(20, limit)),
            sample(a, 3_000, disk(30, limit)),
        ])
        .await
        .unwrap();
    assert!(recorded.iter().all(|r| r.stored), "{recorded:?}");
    // An older sample arriving late joins the history but does not replace the latest; one at
    // an instant already sampled writes nothing.
    let late = store
        .record_usage(&[
            sample(a, 2_000, disk(99, limit)),
            sample(a, 3_000, disk(77, limit)),
        ])
        .await
        .unwrap();
    assert_eq!(
        late.iter().map(|r| r.stored).collect::<Vec<_>>(),
        [true, false]
    );
    let latest = store.latest_usage(a).await.unwrap().unwrap();
    assert_eq!(latest.sample.taken_at, 3_000);
    assert_eq!(latest.sample.usage().disk_used, Some(30 * MB));
    assert_eq!(latest.sample.usage().disk_limit, limit);

    let history = store
        .usage_history(
            a,
            Page {
                limit: 2,
                after_id: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        history.iter().map(|s| s.taken_at).collect::<Vec<_>>(),
        [3_000, 2_000],
        "newest first"
    );
    let rest = store
        .usage_history(
            a,
            Page {
                limit: 2,
                after_id: Some(history[1].id),
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|s| s.taken_at).collect::<Vec<_>>(), [1_000]);
    assert_eq!(rest[0].usage().disk_used, Some(10 * MB));

    let both = store
        .latest_usage_of(&[a, b, ServiceId::new(9_999)])
        .await
        .unwrap();
    let mut seen: Vec<(i64, i64)> = both
        .iter()
        .map(|l| (l.sample.service_id.get(), l.sample.taken_at))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, [(a.get(), 3_000), (b.get(), 1_000)]);
    assert!(store.latest_usage_of(&[]).await.unwrap().is_empty());
    assert!(
        store
            .latest_usage(ServiceId::new(9_999))
            .await
            .unwrap()
            .is_none()
    );
}

async fn unlimited_and_unknown_limits_are_kept_apart(store: DynStore, _sql: Sql) {
    let srv = server(&store, "u.example.net").await;
    let ids = services(&store, srv, 1).await;
    let usage = AccountUsage {
        disk_used: Some(5 * MB),
        disk_limit: Some(Amount::Unlimited),
        bandwidth_used: None,
        bandwidth_limit: None,
        inodes_used: Some(12),
        inodes_limit: Some(Amount::Value(50_000)),
    };
    store
        .record_usage(&[sample(ids[0], 1_000, usage.clone())])
        .await
        .unwrap();
    let latest = store.latest_usage(ids[0]).await.unwrap().unwrap();
    assert_eq!(latest.sample.usage(), usage);
    let history = store.usage_history(ids[0], Page::default()).await.unwrap();
    assert_eq!(history[0].usage(), usage);
}

async fn an_episode_starts_carries_on_through_notice_and_ends_under_quota(
    store: DynStore,
    _sql: Sql,
) {
    let srv = server(&store, "q.example.net").await;
    let id = services(&store, srv, 1).await[0];
    let limit = Some(Amount::Value(100 * MB));
    let record = |t: i64, used: u64| {
        let store = store.clone();
        async move {
            store
                .record_usage(&[sample(id, t, disk(used, limit))])
                .await
                .unwrap()
                .remove(0)
        }
    };
    let under = record(1_000, 50).await;
    assert_eq!(
        (under.over_quota_since, under.newly_over_quota),
        (None, false)
    );
    let over = record(2_000, 150).await;
    assert_eq!(
        (over.over_quota_since, over.newly_over_quota),
        (Some(2_000), true)
    );
    assert!(
        store
            .mark_over_quota_notified(id, 2_000, 2_500)
            .await
            .unwrap()
    );
    assert!(
        !store
            .mark_over_quota_notified(id, 2_000, 2_600)
            .await
            .unwrap(),
        "told once"
    );
    let still = record(3_000, 160).await;
    assert_eq!(
        (still.over_quota_since, still.newly_over_quota),
        (Some(2_000), false)
    );
    let latest = store.latest_usage(id).await.unwrap().unwrap();
    assert_eq!(
        (latest.over_quota_since, latest.over_quota_notified_at),
        (Some(2_000), Some(2_500)),
        "the episode and its notice survive more samples over quota"
    );
    let back = record(4_000, 90).await;
    assert_eq!(back.over_quota_since, None);
    let latest = store.latest_usage(id).await.unwrap().unwrap();
    assert_eq!(
        (latest.over_quota_since, latest.over_quota_notified_at),
        (None, None)
    );
    // A notice for the ended episode changes nothing.
    assert!(
        !store
            .mark_over_quota_notified(id, 2_000, 4_100)
            .await
            .unwrap()
    );
    let again = record(5_000, 200).await;
    assert_eq!(
        (again.over_quota_since, again.newly_over_quota),
        (Some(5_000), true),
        "a second episode"
    );
    let latest = store.latest_usage(id).await.unwrap().unwrap();
    assert_eq!(latest.over_quota_notified_at, None);
}

async fn only_untold_episodes_are_listed_for_notice(store: DynStore, sql: Sql) {
    let srv = server(&store, "n.example.net").await;
    let ids = services(&store, srv, 5).await;
    sql.execute("UPDATE services SET status = 'active'").await;
    sql.execute(&format!(
        "UPDATE services SET status = 'terminated' WHERE id = {}",
        ids[4].get()
    ))
    .await;
    let limit = Some(Amount::Value(100 * MB));
    store
        .record_usage(&[
            sample(ids[0], 1_000, disk(500, limit)),
            sample(ids[1], 1_000, disk(5, limit)),
            sample(ids[2], 1_000, disk(500, limit)),
            sample(ids[3], 1_000, disk(500, limit)),
            // Over quota when it was last sampled, but ended since: not news.
            sample(ids[4], 1_000, disk(500, limit)),
        ])
        .await
        .unwrap();
    assert!(
        store
            .mark_over_quota_notified(ids[2], 1_000, 1_100)
            .await
            .unwrap()
    );
    let first = store.unnotified_over_quota(None, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].latest.sample.service_id, ids[0]);
    assert_eq!(first[0].domain, format!("s{}-0.example", srv.get()));
    assert_eq!(first[0].username.as_deref(), Some("u0"));
    assert_eq!(first[0].server_hostname.as_deref(), Some("n.example.net"));
    assert_eq!(first[0].latest.over_quota_since, Some(1_000));
    let rest = store.unnotified_over_quota(Some(ids[0]), 10).await.unwrap();
    assert_eq!(
        rest.iter()
            .map(|e| e.latest.sample.service_id)
            .collect::<Vec<_>>(),
        [ids[3]]
    );
}

async fn pruning_deletes_only_samples_past_the_cutoff(store: DynStore, _sql: Sql) {
    let srv = server(&store, "p.example.net").await;
    let id = services(&store, srv, 1).await[0];
    let samples: Vec<NewUsageSample> = [100, 200, 300, 400, 500]
        .into_iter()
        .map(|t| sample(id, t, disk(1, None)))
        .collect();
    store.record_usage(&samples).await.unwrap();
    assert_eq!(store.prune_usage(350, 2).await.unwrap(), 2);
    assert_eq!(store.prune_usage(350, 2).await.unwrap(), 1);
    assert_eq!(store.prune_usage(350, 2).await.unwrap(), 0);
    let left = store.usage_history(id, Page::default()).await.unwrap();
    assert_eq!(
        left.iter().map(|s| s.taken_at).collect::<Vec<_>>(),
        [500, 400]
    );
    // The latest sample is kept with the service even when its history row is pruned.
    store.prune_usage(10_000, 100).await.unwrap();
    assert_eq!(
        store
            .latest_usage(id)
            .await
            .unwrap()
            .unwrap()
            .sample
            .taken_at,
        500
    );
}

async fn live_accounts_are_paged_by_server_and_status(store: DynStore, sql: Sql) {
    let a = server(&store, "la.example.net").await;
    let b = server(&store, "lb.example.net").await;
    let on_a = services(&store, a, 5).await;
    services(&store, b, 2).await;
    // Ordered services are pending until provisioned; activate all but the first, and end one.
    let pool_sql = |status: &str, id: ServiceId| {
        format!(
            "UPDATE services SET status = '{status}' WHERE id = {}",
            id.get()
        )
    };
    for id in &on_a[1..] {
        sql.execute(&pool_sql("active", *id)).await;
    }
    sql.execute(&pool_sql("suspended", on_a[2])).await;
    sql.execute(&pool_sql("terminated", on_a[3])).await;
    let first = store.live_accounts_on(a, None, 2).await.unwrap();
    assert_eq!(
        first.iter().map(|l| l.id).collect::<Vec<_>>(),
        [on_a[1], on_a[2]]
    );
    assert_eq!(first[1].username, "u2");
    let rest = store.live_accounts_on(a, Some(on_a[2]), 2).await.unwrap();
    assert_eq!(rest.iter().map(|l| l.id).collect::<Vec<_>>(), [on_a[4]]);
    assert!(
        store
            .live_accounts_on(b, None, 10)
            .await
            .unwrap()
            .is_empty(),
        "pending services are not asked about"
    );
}

/// Each server's `live_services` (what placement reads) follows every change of a service's
/// server or status, made by the store or by any other statement; a placement that would pass
/// `max_accounts` is refused and changes nothing.
async fn a_server_counts_its_live_services_and_refuses_a_placement_past_capacity(
    store: DynStore,
    sql: Sql,
) {
    let a = server(&store, "ca.example.net").await;
    let b = server(&store, "cb.example.net").await;
    let on_a = services(&store, a, 3).await;
    let live = |server: ServerId| {
        let store = store.clone();
        async move {
            let candidates = store.placement_candidates("shared").await.unwrap();
            candidates
                .iter()
                .find(|c| c.server.id == server)
                .map(|c| c.live_services)
                .unwrap()
        }
    };
    let counted = |server: ServerId| {
        format!(
            "SELECT COUNT(*) FROM services WHERE server_id = {} AND status IN ('pending', 'active', 'suspended')",
            server.get()
        )
    };
    assert_eq!((live(a).await, live(b).await), (3, 0));
    let set = |status: &str, id: ServiceId| {
        format!(
            "UPDATE services SET status = '{status}' WHERE id = {}",
            id.get()
        )
    };
    // Live to live changes nothing; leaving the live states counts down, coming back up.
    sql.execute(&set("active", on_a[0])).await;
    sql.execute(&set("suspended", on_a[1])).await;
    assert_eq!(live(a).await, 3);
    sql.execute(&set("terminated", on_a[2])).await;
    assert_eq!(live(a).await, 2);
    sql.execute(&set("active", on_a[2])).await;
    sql.execute(&set("cancelled", on_a[1])).await;
    assert_eq!(live(a).await, 2);
    // Moving a service moves its count.
    sql.execute(&format!(
        "UPDATE services SET server_id = {} WHERE id = {}",
        b.get(),
        on_a[0].get()
    ))
    .await;
    assert_eq!((live(a).await, live(b).await), (1, 1));
    for server in [a, b] {
        assert_eq!(live(server).await, sql.count(&counted(server)).await);
    }

    // Capacity: b takes one more, then refuses; the refused service stays unplaced and b's
    // count stays at its limit.
    sql.execute(&format!(
        "UPDATE servers SET max_accounts = 2 WHERE id = {}",
        b.get()
    ))
    .await;
    let any_product = store.list_products().await.unwrap()[0].id;
    let extra = ordered(&store, any_product, 2, "unplaced").await;
    store.assign_server(extra[0], b).await.unwrap();
    let refused = store.assign_server(extra[1], b).await.unwrap_err();
    assert!(
        matches!(refused, mpanel_controller::store::StoreError::Conflict(ref m) if m.contains("full")),
        "{refused:?}"
    );
    assert_eq!(store.get_service(extra[1]).await.unwrap().server_id, None);
    assert_eq!(live(b).await, 2);
    assert_eq!(sql.count(&counted(b)).await, 2);
    // A service that was never placed, and one deleted, leave the counts right.
    sql.execute(&format!(
        "DELETE FROM provisioning_tasks WHERE service_id = {}",
        extra[0].get()
    ))
    .await;
    sql.execute(&format!(
        "DELETE FROM activity_log WHERE entity_type = 'service' AND entity_id = {}",
        extra[0].get()
    ))
    .await;
    sql.execute(&format!(
        "DELETE FROM services WHERE id = {}",
        extra[0].get()
    ))
    .await;
    assert_eq!(live(b).await, 1);
    store.assign_server(extra[1], b).await.unwrap();
    assert_eq!(live(b).await, sql.count(&counted(b)).await);

    // Placements racing for b's last slot: exactly one takes it.
    sql.execute(&format!(
        "UPDATE servers SET max_accounts = 3 WHERE id = {}",
        b.get()
    ))
    .await;
    let racers = ordered(&store, any_product, 6, "racer").await;
    let placed = futures::future::join_all(racers.iter().map(|&id| {
        let store = store.clone();
        async move { store.assign_server(id, b).await.is_ok() }
    }))
    .await;
    assert_eq!(placed.iter().filter(|ok| **ok).count(), 1, "{placed:?}");
    assert_eq!((live(b).await, sql.count(&counted(b)).await), (3, 3));
}

// ---- raw SQL on either backend --------------------------------------------------------------

enum Sql {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Sql {
    async fn url(url: &str) -> Sql {
        if url.starts_with("sqlite:") {
            Sql::Sqlite(sqlx::SqlitePool::connect(url).await.unwrap())
        } else {
            Sql::Postgres(sqlx::PgPool::connect(url).await.unwrap())
        }
    }

    async fn execute(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Sql::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
            Sql::Postgres(p) => sqlx::query(sql).execute(p).await.map(|_| ()),
        }
        .unwrap();
    }

    async fn count(&self, sql: &str) -> i64 {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Sql::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await,
            Sql::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await,
        }
        .unwrap()
    }

    async fn strings(&self, sql: &str) -> Vec<String> {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Sql::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await,
            Sql::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await,
        }
        .unwrap()
    }
}

// ---- the job, end to end --------------------------------------------------------------------

/// Sets what the simulated panel reports for `username`.
async fn set_panel_usage(sim: &mpanel_panelsim::SimHandle, body: Value) {
    let response = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
        .post(format!("{}/__sim/usage", sim.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

/// Runs `usage-sync` by hand and returns the finished run.
async fn run_sync(c: &Controller) -> Value {
    let (status, body) = c
        .request(Method::POST, "/api/cron/jobs/usage-sync/run", None)
        .await;
    assert!(status == 202 || status == 200, "{status} {body}");
    let id = body["runId"].clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, runs) = c
            .request(Method::GET, "/api/cron/runs?job=usage-sync&limit=5", None)
            .await;
        if let Some(run) = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            && matches!(run["status"].as_str(), Some("succeeded" | "failed"))
        {
            assert_eq!(run["status"], "succeeded", "{run}");
            return run["summary"].clone();
        }
        assert!(Instant::now() < deadline, "the sync never finished: {runs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn service(c: &Controller, id: i64) -> Value {
    let (status, body) = c
        .request(Method::GET, &format!("/api/services/{id}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn over_quota_mail(sql: &Sql) -> Vec<String> {
    sql.strings("SELECT to_address FROM email_outbox WHERE template = 'over_quota' ORDER BY id")
        .await
}

async fn sync_stores_flags_and_tells_once(backend: &str) {
    let pg = if backend == "postgres" {
        Some(TestDatabase::create().await)
    } else {
        None
    };
    let mut env = vec![
        ("SUPPORT_EMAIL", "admin@hosting.example"),
        ("EMAIL_PROVIDER", "log"),
        ("CRON_USAGE_SYNC", "off"),
    ];
    if let Some(db) = &pg {
        env.push(("DATABASE_URL", db.url.as_str()));
    }
    let mut c = Controller::start(&env).await;
    let sql = Sql::url(&c.env["DATABASE_URL"]).await;
    let (online, _dir, state) = enrolled_agent(&c, "usage-a.example.net").await;
    let (offline, _dir2, _state2) = enrolled_agent(&c, "usage-b.example.net").await;
    let sim = start_cpanel_sim(|_| {}).await;
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    // `starter` allows 1024 MB of disk and 10240 MB of bandwidth; `default` is unlimited.
    let seeded = http
        .post(format!("{}/__sim/seed", sim.base_url()))
        .json(&json!({"accounts": [
            {"username": "alpha", "domain": "alpha.example", "package": "starter",
             "usage": {"diskUsedBytes": 100 * MB, "bandwidthUsedBytes": 5 * MB, "inodesUsed": 40}},
            {"username": "bravo", "domain": "bravo.example", "package": "default",
             "usage": {"diskUsedBytes": 5000 * MB}},
            {"username": "charlie", "domain": "charlie.example", "package": "starter",
             "suspended": true},
        ]}))
        .send()
        .await
        .unwrap();
    assert!(seeded.status().is_success());
    sql.execute(
        "INSERT INTO customers (id, email, name, status, created_at, updated_at)
           VALUES (1, 'k@example.com', 'K', 'active', 0, 0)",
    )
    .await;
    sql.execute("INSERT INTO products (id, name, created_at, updated_at) VALUES (1, 'P', 0, 0)")
        .await;
    sql.execute(&format!(
        "INSERT INTO services (id, customer_id, product_id, server_id, domain, username, status,
             billing_cycle, created_at, updated_at) VALUES
           (1, 1, 1, {online}, 'alpha.example', 'alpha', 'active', 'monthly', 0, 0),
           (2, 1, 1, {online}, 'bravo.example', 'bravo', 'active', 'monthly', 0, 0),
           (3, 1, 1, {online}, 'charlie.example', 'charlie', 'suspended', 'monthly', 0, 0),
           (4, 1, 1, {online}, 'gone.example', 'gone', 'terminated', 'monthly', 0, 0),
           (5, 1, 1, {offline}, 'delta.example', 'delta', 'active', 'monthly', 0, 0),
           (6, 1, 1, NULL, 'waiting.example', NULL, 'pending', 'monthly', 0, 0)"
    ))
    .await;
    // The offline server's service has a sample from an earlier run; it must stay as it is.
    let earlier = mpanel_controller::store::now_ms() - DAY;
    sql.execute(&format!(
        "INSERT INTO service_usage_samples (service_id, taken_at, disk_used_bytes, disk_limit_bytes)
           VALUES (5, {earlier}, 7340032, -1)"
    ))
    .await;
    sql.execute(&format!(
        "INSERT INTO service_usage_latest (service_id, sample_id, taken_at, disk_used_bytes,
             disk_limit_bytes) VALUES (5, (SELECT MAX(id) FROM service_usage_samples), {earlier},
             7340032, -1)"
    ))
    .await;
    // A sample past the 90-day retention, to be pruned.
    let ancient = mpanel_controller::store::now_ms() - 91 * DAY;
    sql.execute(&format!(
        "INSERT INTO service_usage_samples (service_id, taken_at, disk_used_bytes)
           VALUES (2, {ancient}, 1)"
    ))
    .await;

    let agent = run_panel_agent(&c, online, &state, cpanel_driver(&sim)).await;

    // First run: three live accounts answered, the offline server's one skipped, nobody over.
    let summary = run_sync(&c).await;
    assert_eq!(summary["servers"], 2, "{summary}");
    assert_eq!(summary["accountsQueried"], 3, "{summary}");
    assert_eq!(summary["stored"], 3, "{summary}");
    assert_eq!(summary["skipped"], 1, "{summary}");
    assert_eq!(summary["skippedReasons"]["agent offline"], 1, "{summary}");
    assert_eq!(summary["overQuota"], 0, "{summary}");
    assert_eq!(summary["pruned"], 1, "{summary}");
    assert!(summary["durationMs"].is_u64(), "{summary}");

    let alpha = service(&c, 1).await;
    assert_eq!(alpha["overQuota"], false, "{alpha}");
    let usage = &alpha["usage"];
    assert_eq!(usage["diskUsedBytes"], 100 * MB, "{alpha}");
    assert_eq!(usage["diskLimitBytes"], 1024 * MB, "{alpha}");
    assert_eq!(usage["bandwidthUsedBytes"], 5 * MB, "{alpha}");
    assert_eq!(usage["bandwidthLimitBytes"], 10240 * MB, "{alpha}");
    assert_eq!(usage["inodesUsed"], 40, "{alpha}");
    assert!(
        usage["takenAt"].as_str().is_some_and(|t| t.contains('T')),
        "{alpha}"
    );
    let bravo = service(&c, 2).await;
    assert_eq!(bravo["usage"]["diskUsedBytes"], 5000 * MB, "{bravo}");
    assert!(
        bravo["usage"]["diskLimitBytes"].is_null(),
        "unlimited: {bravo}"
    );
    assert_eq!(bravo["usage"]["unknown"], json!([]), "{bravo}");
    assert_eq!(bravo["overQuota"], false, "an unlimited disk is never over");
    assert!(
        service(&c, 3).await["usage"].is_object(),
        "suspended accounts are sampled"
    );
    assert!(
        service(&c, 4).await["usage"].is_null(),
        "terminated ones are not"
    );
    let delta = service(&c, 5).await;
    assert_eq!(
        delta["usage"]["diskUsedBytes"],
        7 * MB,
        "untouched: {delta}"
    );
    assert_eq!(
        sql.count("SELECT COUNT(*) FROM service_usage_samples WHERE service_id = 5")
            .await,
        1
    );
    assert_eq!(
        sql.count(&format!(
            "SELECT COUNT(*) FROM service_usage_samples WHERE taken_at = {ancient}"
        ))
        .await,
        0
    );
    // The list carries the same usage, read for the whole page at once.
    let (_, list) = c.request(Method::GET, "/api/services?limit=10", None).await;
    let listed = list["services"].as_array().unwrap();
    assert_eq!(listed.len(), 6, "{list}");
    assert_eq!(listed[0]["usage"]["diskUsedBytes"], 100 * MB, "{list}");
    assert!(listed[5]["usage"].is_null());
    assert!(over_quota_mail(&sql).await.is_empty());

    // Alpha goes over its disk: flagged, and the admin gets one email.
    set_panel_usage(
        &sim,
        json!({"username": "alpha", "diskUsedBytes": 2000 * MB}),
    )
    .await;
    let summary = run_sync(&c).await;
    assert_eq!(summary["overQuota"], 1, "{summary}");
    assert_eq!(summary["newlyOverQuota"], 1, "{summary}");
    assert_eq!(summary["notified"], 1, "{summary}");
    let alpha = service(&c, 1).await;
    assert_eq!(alpha["overQuota"], true, "{alpha}");
    assert!(alpha["overQuotaSince"].is_string(), "{alpha}");
    assert_eq!(alpha["usage"]["overQuota"], true, "{alpha}");
    assert_eq!(over_quota_mail(&sql).await, ["admin@hosting.example"]);

    // Still over on the next runs: no second email.
    for _ in 0..2 {
        let summary = run_sync(&c).await;
        assert_eq!(
            (
                &summary["overQuota"],
                &summary["newlyOverQuota"],
                &summary["notified"]
            ),
            (&json!(1), &json!(0), &json!(0)),
            "{summary}"
        );
    }
    assert_eq!(over_quota_mail(&sql).await.len(), 1);

    // Back under: the flag clears, nothing is sent.
    set_panel_usage(&sim, json!({"username": "alpha", "diskUsedBytes": 10 * MB})).await;
    let summary = run_sync(&c).await;
    assert_eq!(summary["overQuota"], 0, "{summary}");
    let alpha = service(&c, 1).await;
    assert_eq!(alpha["overQuota"], false, "{alpha}");
    assert!(alpha["overQuotaSince"].is_null(), "{alpha}");
    assert_eq!(over_quota_mail(&sql).await.len(), 1);

    // Over again (bandwidth this time): a new episode, a second email.
    set_panel_usage(
        &sim,
        json!({"username": "alpha", "bandwidthUsedBytes": 20_000 * MB}),
    )
    .await;
    let summary = run_sync(&c).await;
    assert_eq!(summary["newlyOverQuota"], 1, "{summary}");
    assert_eq!(summary["notified"], 1, "{summary}");
    assert_eq!(over_quota_mail(&sql).await.len(), 2);
    assert_eq!(service(&c, 1).await["overQuota"], true);

    // The history, newest first, a page at a time.
    let (status, page) = c
        .request(Method::GET, "/api/services/1/usage?limit=4", None)
        .await;
    assert_eq!(status, 200, "{page}");
    let first = page["usage"].as_array().unwrap();
    assert_eq!(first.len(), 4, "{page}");
    assert_eq!(first[0]["bandwidthUsedBytes"], 20_000 * MB, "{page}");
    assert_eq!(first[0]["overQuota"], true, "{page}");
    assert_eq!(first[1]["diskUsedBytes"], 10 * MB, "{page}");
    assert_eq!(first[1]["overQuota"], false, "{page}");
    let cursor = page["nextCursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let (_, rest) = c
        .request(
            Method::GET,
            &format!("/api/services/1/usage?limit=4&cursor={cursor}"),
            None,
        )
        .await;
    let rest = rest["usage"].as_array().unwrap().clone();
    assert_eq!(rest.len(), 2, "six runs, six samples: {rest:?}");
    assert_eq!(rest[1]["diskUsedBytes"], 100 * MB);
    let ids: Vec<i64> = first
        .iter()
        .chain(rest.iter())
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");

    let (status, body) = c
        .request(Method::GET, "/api/services/999/usage", None)
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"]["code"].is_string(), "{body}");
    let (status, body) = c
        .request(Method::GET, "/api/services/1/usage?limit=0", None)
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "limit", "{body}");

    // The agent goes away: every live account on its server is skipped, nothing changes.
    let before = service(&c, 1).await["usage"].clone();
    agent.stop().await;
    c.wait_for_agent(online, Duration::from_secs(15), "offline", |a| {
        a["status"] != "online"
    })
    .await;
    let summary = run_sync(&c).await;
    assert_eq!(summary["stored"], 0, "{summary}");
    assert_eq!(summary["skippedReasons"]["agent offline"], 4, "{summary}");
    assert_eq!(service(&c, 1).await["usage"], before);
    assert_eq!(service(&c, 1).await["overQuota"], true);
    assert_eq!(over_quota_mail(&sql).await.len(), 2);

    sim.shutdown().await;
    c.stop().await;
    if let Some(db) = pg {
        db.drop_database().await;
    }
}

mod job {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_sync_stores_flags_and_tells_once() {
        super::sync_stores_flags_and_tells_once("postgres").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_sync_stores_flags_and_tells_once() {
        super::sync_stores_flags_and_tells_once("sqlite").await;
    }
}
