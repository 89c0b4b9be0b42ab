//! The `service-suspension` run over many overdue services, on SQLite and PostgreSQL.
//!
//! `cargo bench -p mpanel-controller --bench overdue -- [services] [sqlite|postgres|both]`
//! (fewer LTO minutes: `CARGO_PROFILE_BENCH_LTO=false CARGO_PROFILE_BENCH_CODEGEN_UNITS=16`).
//!
//! Writes N active services, each with an invoice unpaid past its grace (bulk inserts, not
//! timed), then times one `Billing::suspend_overdue` run: for each service a checked
//! suspension task with its activity row (the lifecycle layer's transaction) and the queued
//! notice. No controller runs meanwhile, so the figure is the run's own database work.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use mpanel_controller::billing::Billing;
use mpanel_controller::config::Config;
use mpanel_controller::jobs::Dispatcher;
use mpanel_controller::store::{self, DynStore, now_ms};
use mpanel_e2e::databases::{TestDatabase, TestSqlite};

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const DAY_MS: i64 = 86_400_000;

/// The rows, written with a handful of multi-row statements in the dialect both share.
fn seed_sql(n: usize, due: i64) -> Vec<String> {
    let mut out = vec![
        "INSERT INTO customers (email, name, status, created_at, updated_at) VALUES ('bench@example.com', 'Bench', 'active', 0, 0)".to_owned(),
        "INSERT INTO products (name, created_at, updated_at) VALUES ('Bench', 0, 0)".to_owned(),
    ];
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let services: Vec<String> = chunk
            .iter()
            .map(|i| format!("(1, 1, 'o{i}.example.com', 'active', 'monthly', {due}, 1, 0, 0)"))
            .collect();
        out.push(format!(
            "INSERT INTO services (customer_id, product_id, domain, status, billing_cycle, next_due_at, billing_day, created_at, updated_at) VALUES {}",
            services.join(", ")
        ));
        let invoices: Vec<String> = chunk
            .iter()
            .map(|i| {
                format!(
                    "('B-{i}', 1, {}, {due}, 'unpaid', 999, 'USD', {due}, 0, 0, 999, '[]', {due})",
                    i + 1
                )
            })
            .collect();
        out.push(format!(
            "INSERT INTO invoices (number, customer_id, service_id, period_start, status, amount_minor, currency, due_at, created_at, updated_at, subtotal_minor, lines, issued_at) VALUES {}",
            invoices.join(", ")
        ));
    }
    out
}

async fn seed(url: &str, n: usize, due: i64) {
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        for sql in seed_sql(n, due) {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        for sql in seed_sql(n, due) {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
    }
}

async fn run(label: &str, url: &str, n: usize) {
    let env: HashMap<String, String> = [("DATABASE_URL", url), ("ENCRYPTION_KEY", KEY)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let config = Arc::new(Config::from_sources(&env, &HashMap::new(), None).expect("config"));
    let store: DynStore = store::connect(url).await.unwrap();
    store.migrate().await.unwrap();
    let now = now_ms();
    let due =
        mpanel_common::billing::date_to_ms(mpanel_common::billing::ms_to_date(now)) - 10 * DAY_MS;
    seed(url, n, due).await;
    let billing = Billing::new(store.clone(), Dispatcher::new(), None, config);
    let started = Instant::now();
    let summary = billing.suspend_overdue(now).await.expect("run");
    let took = started.elapsed();
    let again = Instant::now();
    let second = billing.suspend_overdue(now).await.expect("second run");
    println!(
        "{label:>8}: {} services suspended in {:.2} s ({:.0} services/s, {:.2} ms each); a second run the same day (their suspensions queued): {} suspended, {} skipped in {:.2} s",
        summary.suspended,
        took.as_secs_f64(),
        summary.suspended as f64 / took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / summary.suspended.max(1) as f64,
        second.suspended,
        second.skipped.len(),
        again.elapsed().as_secs_f64(),
    );
    assert_eq!(
        summary.suspended as usize, n,
        "every overdue service suspended"
    );
    assert_eq!(second.suspended, 0, "a second run suspends nothing twice");
    store.close().await;
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let which = args.get(1).map_or("both", String::as_str);
    println!("service-suspension over {n} overdue services");
    if which != "postgres" {
        let db = TestSqlite::create();
        run("sqlite", &db.url, n).await;
        db.remove();
    }
    if which != "sqlite" {
        let db = TestDatabase::create().await;
        run("postgres", &db.url, n).await;
        db.drop_database().await;
    }
}
