//! The `usage-sync` run over many accounts on several servers, on SQLite and PostgreSQL.
//!
//! `cargo bench -p mpanel-controller --bench usage_sync -- [accounts] [servers] [sqlite|postgres|both]`
//! or, without the release build, `cargo test -p mpanel-controller --bench usage_sync -- …`
//! (defaults: 1000 accounts on 10 servers, both backends).
//!
//! Each server is a simulated cPanel (plain HTTP, in this process) with its own enrolled agent
//! (the real agent library and cPanel driver, over the real mTLS session) and a share of the
//! accounts, seeded with `POST /__sim/seed` (one in ten over its disk quota); the services are
//! written straight into the controller's database (not timed). A run is started through
//! `POST /api/cron/jobs/usage-sync/run` and timed until it has finished; the second run finds
//! the over-quota episodes already told. Everything shares the machine's cores, so the figure
//! includes the panels' and the agents' own work: per account two WHM calls (`listaccts`,
//! `showbw`), one command round trip and one sample written.

#[path = "../tests/fleet_support/mod.rs"]
mod fleet_support;

use std::time::{Duration, Instant};

use fleet_support::{Controller, cpanel_driver, enrolled_agent, run_panel_agent};
use mpanel_e2e::databases::TestDatabase;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const MB: u64 = 1024 * 1024;

enum Sql {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Sql {
    async fn connect(url: &str) -> Sql {
        if url.starts_with("sqlite:") {
            Sql::Sqlite(sqlx::SqlitePool::connect(url).await.unwrap())
        } else {
            Sql::Postgres(sqlx::PgPool::connect(url).await.unwrap())
        }
    }

    async fn execute(&self, sql: String) {
        let sql = sqlx::AssertSqlSafe(sql);
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
}

/// Starts `usage-sync` by hand and waits for it; returns the run's summary and the wall time
/// from the request to the finished run as seen through the API.
async fn run_sync(c: &Controller) -> (Value, Duration) {
    let started = Instant::now();
    let (status, body) = c
        .request(reqwest::Method::POST, "/api/cron/jobs/usage-sync/run", None)
        .await;
    assert!(status == 202 || status == 200, "{status} {body}");
    let id = body["runId"].clone();
    loop {
        let (_, runs) = c
            .request(
                reqwest::Method::GET,
                "/api/cron/runs?job=usage-sync&limit=5",
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
            assert_eq!(run["status"], "succeeded", "{run}");
            return (run["summary"].clone(), started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the run never finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn bench(label: &str, database_url: Option<&str>, accounts: usize, servers: usize) {
    let mut env = vec![
        ("EMAIL_PROVIDER", "log"),
        ("SUPPORT_EMAIL", "admin@bench.example"),
        ("CRON_USAGE_SYNC", "off"),
        ("RUST_LOG", "warn"),
    ];
    if let Some(url) = database_url {
        env.push(("DATABASE_URL", url));
    }
    let mut c = Controller::start(&env).await;
    let sql = Sql::connect(&c.env["DATABASE_URL"]).await;
    sql.execute(
        "INSERT INTO customers (id, email, name, status, created_at, updated_at)
           VALUES (1, 'bench@example.com', 'Bench', 'active', 0, 0)"
            .to_owned(),
    )
    .await;
    sql.execute(
        "INSERT INTO products (id, name, created_at, updated_at) VALUES (1, 'P', 0, 0)".to_owned(),
    )
    .await;
    let http = reqwest::Client::new();
    let mut sims = Vec::new();
    let mut agents = Vec::new();
    let mut dirs = Vec::new();
    let mut service_id = 0usize;
    let mut over = 0usize;
    for s in 0..servers {
        let share = accounts / servers + usize::from(s < accounts % servers);
        let mut config =
            mpanel_panelsim::SimConfig::new(mpanel_panelsim::SimKind::Cpanel, "sim-token");
        config.seed = s as u64;
        let sim = mpanel_panelsim::start(config, TcpListener::bind("127.0.0.1:0").await.unwrap())
            .await
            .unwrap();
        let (server_id, dir, state) = enrolled_agent(&c, &format!("usage{s}.bench.example")).await;
        let mut seeded = Vec::with_capacity(share);
        let mut rows = Vec::with_capacity(share);
        for i in 0..share {
            service_id += 1;
            let username = format!("b{s}u{i}");
            let domain = format!("{username}.bench.example");
            // One in ten over its 1024 MB disk; the rest well under it, or unlimited.
            let (package, disk) = match i % 10 {
                0 => ("starter", 2000 * MB),
                1..=5 => ("starter", (100 + i as u64) * MB),
                _ => ("default", (500 + i as u64) * MB),
            };
            over += usize::from(i % 10 == 0);
            seeded.push(
                json!({"username": username, "domain": domain, "package": package,
                "usage": {"diskUsedBytes": disk, "bandwidthUsedBytes": (i as u64) * MB,
                          "inodesUsed": i}}),
            );
            rows.push(format!(
                "({service_id}, 1, 1, {server_id}, '{domain}', '{username}', 'active', 'monthly', 0, 0)"
            ));
        }
        let response = http
            .post(format!("{}/__sim/seed", sim.base_url()))
            .json(&json!({ "accounts": seeded }))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        for chunk in rows.chunks(500) {
            sql.execute(format!(
                "INSERT INTO services (id, customer_id, product_id, server_id, domain, username,
                     status, billing_cycle, created_at, updated_at) VALUES {}",
                chunk.join(", ")
            ))
            .await;
        }
        agents.push(run_panel_agent(&c, server_id, &state, cpanel_driver(&sim)).await);
        sims.push(sim);
        dirs.push(dir);
    }

    let (first, wall) = run_sync(&c).await;
    assert_eq!(first["stored"], accounts, "{first}");
    assert_eq!(first["overQuota"], over, "{first}");
    assert_eq!(first["notified"], over, "{first}");
    let run_ms = first["durationMs"].as_u64().unwrap();
    println!(
        "{label:>8}: {accounts} accounts on {servers} servers: run {run_ms} ms \
         ({:.0} accounts/s), {:.0} ms from the API request to the finished run; \
         {} over quota, {} emails queued",
        accounts as f64 * 1000.0 / run_ms.max(1) as f64,
        wall.as_secs_f64() * 1000.0,
        first["overQuota"],
        first["notified"],
    );
    let (second, _) = run_sync(&c).await;
    let run_ms = second["durationMs"].as_u64().unwrap();
    println!(
        "{label:>8}: second run {run_ms} ms ({:.0} accounts/s); {} over quota, {} newly, {} emails",
        accounts as f64 * 1000.0 / run_ms.max(1) as f64,
        second["overQuota"],
        second["newlyOverQuota"],
        second["notified"],
    );
    assert_eq!(second["notified"], 0, "{second}");
    assert_eq!(
        sql.count("SELECT COUNT(*) FROM service_usage_samples")
            .await,
        2 * accounts as i64
    );
    for agent in agents {
        agent.stop().await;
    }
    for sim in sims {
        sim.shutdown().await;
    }
    drop(dirs);
    c.stop().await;
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let accounts: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let servers: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let which = args.get(2).map_or("both", String::as_str);
    println!("usage-sync over {accounts} accounts on {servers} simulated cPanel servers");
    if which != "postgres" {
        bench("sqlite", None, accounts, servers).await;
    }
    if which != "sqlite" {
        let db = TestDatabase::create().await;
        bench("postgres", Some(&db.url), accounts, servers).await;
        db.drop_database().await;
    }
}
