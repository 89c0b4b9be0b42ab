//! Stripe webhook benchmark: signed events posted to `POST /api/webhooks/stripe` of a real
//! controller started in-process, on SQLite and on PostgreSQL.
//!
//! `cargo bench -p mpanel-controller --bench webhooks -- [orders] [sqlite|postgres|both]`
//! (fewer LTO minutes: `CARGO_PROFILE_BENCH_LTO=false CARGO_PROFILE_BENCH_CODEGEN_UNITS=16`).
//!
//! Prints, per backend:
//! - throughput at 32 concurrent keep-alive connections of `checkout.session.completed` events,
//!   one per open order (each verified, recorded and fulfilled: customer, service, paid invoice,
//!   payment, provisioning task and billing jobs in one transaction), then the same events
//!   delivered again (duplicates: verified, found recorded, nothing written), then as many
//!   events of types the controller only records;
//! - the answer's latency p50/p99/max at half the measured fulfilment rate, paced open-loop for
//!   about 5 s with fresh orders, counted from each event's scheduled send time;
//! - after each run, the rows it must have left (fulfilled orders, services, tasks, payments,
//!   paid invoices, recorded events) and whether they are there;
//! - what bounds each run: CPU per event from `/proc` (the controller's threads, SQLite's
//!   connection threads, the rest of this process, which is mostly the load generator, and the
//!   PostgreSQL server processes of the benchmark's database), how busy the machine's cores
//!   were, and on PostgreSQL what its connections were waiting for (sampled every 20 ms from
//!   `pg_stat_activity`) and how long one commit takes on this machine.
//!
//! Orders are written straight through the store (an open order with a fake Checkout Session),
//! so Stripe is never called: `STRIPE_API_BASE` points at a closed local port. The controller's
//! background workers run as in production: the provisioning worker tries each new service
//! once, finds no server and leaves it waiting (one worker, an hour's retry delay); the billing
//! workers try to save each card (Stripe unreachable: retried later) and queue each receipt.
//! Before each measured run the benchmark waits until the provisioning worker has tried every
//! task so far, and prints that catch-up's cost, so a run's figures carry only the background
//! work done during it. Everything shares this machine's cores with whatever else runs on it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use futures::StreamExt as _;
use mpanel_common::status::BillingCycle;
use mpanel_controller::app::{self, Listeners};
use mpanel_controller::billing::signature;
use mpanel_controller::config::Config;
use mpanel_controller::store::billing::NewOrder;
use mpanel_controller::store::{DynStore, NewProduct, Price, now_ms};
use mpanel_e2e::databases::{TestDatabase, TestSqlite};
use serde_json::json;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// A made-up endpoint secret, only ever shared with this process's own controller.
const WEBHOOK_SECRET: &str = "whsec_benchmark_endpoint_secret";
const CONCURRENCY: usize = 32;
const WARM_UP: usize = 64;
const LATENCY_RUN: Duration = Duration::from_secs(5);
/// Thread names: the controller's runtime; SQLite's connection threads (`sqlx-sqlite-worker-N`,
/// cut to the kernel's 15 characters).
const CONTROLLER_THREAD: &str = "controller";
const SQLITE_THREAD: &str = "sqlx-sqlite-wor";
/// Types the controller has no handler for: recorded, nothing else.
const UNKNOWN_TYPES: [&str; 5] = [
    "customer.updated",
    "payment_method.attached",
    "charge.succeeded",
    "payment_intent.created",
    "invoice.finalized",
];

/// An open checkout order, as the events about it need it.
struct OpenOrder {
    id: i64,
    total: i64,
    session: String,
    customer: String,
    email: String,
}

/// The benchmark's own connections to the controller's database: row counts, and on
/// PostgreSQL what the server's connections are doing.
#[derive(Clone)]
enum Rows {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Rows {
    async fn connect(url: &str) -> Rows {
        if url.starts_with("sqlite:") {
            Rows::Sqlite(sqlx::SqlitePool::connect(url).await.unwrap())
        } else {
            Rows::Postgres(sqlx::PgPool::connect(url).await.unwrap())
        }
    }

    async fn count(&self, sql: &'static str) -> i64 {
        match self {
            Rows::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
            Rows::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        }
    }

    /// How long one small committed write takes on PostgreSQL here (the median of 30): a
    /// commit waits for its WAL record to reach the disk.
    async fn commit_time(&self) -> Option<Duration> {
        let Rows::Postgres(pool) = self else {
            return None;
        };
        sqlx::query("CREATE TABLE bench_commit (n INTEGER)")
            .execute(pool)
            .await
            .unwrap();
        let mut times = Vec::new();
        for n in 0..30 {
            let started = Instant::now();
            sqlx::query("INSERT INTO bench_commit (n) VALUES ($1)")
                .bind(n)
                .execute(pool)
                .await
                .unwrap();
            times.push(started.elapsed());
        }
        sqlx::query("DROP TABLE bench_commit")
            .execute(pool)
            .await
            .unwrap();
        times.sort_unstable();
        Some(times[times.len() / 2])
    }

    async fn close(&self) {
        match self {
            Rows::Sqlite(pool) => pool.close().await,
            Rows::Postgres(pool) => pool.close().await,
        }
    }
}

/// What the runs so far must have left in the database.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Expected {
    fulfilled: i64,
    events: i64,
    recorded_only: i64,
}

struct Rig {
    name: &'static str,
    store: DynStore,
    rows: Rows,
    /// The PostgreSQL database's name, to find its server processes.
    database: Option<String>,
    stop: CancellationToken,
    controller: tokio::task::JoinHandle<anyhow::Result<()>>,
    product: i64,
    total: i64,
    webhook: String,
    orders: usize,
    expected: Expected,
}

/// Starts the controller on the controller runtime, with its own database at `database_url`.
async fn start(name: &'static str, database_url: &str, database: Option<String>) -> Rig {
    // A port nothing listens on: any call to Stripe would fail at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stripe_base = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let env: HashMap<String, String> = [
        ("DATABASE_URL", database_url),
        ("ENCRYPTION_KEY", KEY),
        ("HTTP_LISTEN", "127.0.0.1:0"),
        ("GRPC_LISTEN", "127.0.0.1:0"),
        ("EMAIL_PROVIDER", "log"),
        ("EMAIL_FROM", "billing@bench.test"),
        ("RUST_LOG", "warn"),
        ("ENABLE_CRON", "false"),
        ("PROVISIONING_WORKERS", "1"),
        ("PROVISIONING_RETRY_BASE_MS", "3600000"),
        ("STRIPE_SECRET_KEY", "sk_test_benchmark"),
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("STRIPE_API_BASE", &stripe_base),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = Config::from_sources(&env, &HashMap::new(), None).expect("config");
    let listeners = Listeners::bind(&config).await.expect("bind");
    let http = listeners.http.local_addr().unwrap();
    let store = app::open_store(&config).await.expect("store");
    let stop = CancellationToken::new();
    let controller = tokio::spawn(app::run(config, listeners, stop.clone().cancelled_owned()));
    let price = 999;
    let product = store
        .create_product(
            &NewProduct {
                name: "Bench".into(),
                server_group: "bench".into(),
                package_cpanel: "default".into(),
                package_plesk: "Unlimited".into(),
                package_directadmin: "default".into(),
                disk_mb: 1024,
                email_quota_mb: 128,
                databases: 1,
                tax_rate_bp: 2000,
                backup_schedule: mpanel_common::status::BackupSchedule::None,
                prices: vec![Price {
                    billing_cycle: BillingCycle::Monthly,
                    amount_minor: price,
                    currency: "USD".into(),
                }],
            },
            "bench",
        )
        .await
        .unwrap();
    Rig {
        name,
        rows: Rows::connect(database_url).await,
        database,
        store,
        stop,
        controller,
        product: product.id.get(),
        total: price + price / 5,
        webhook: format!("http://{http}/api/webhooks/stripe"),
        orders: 0,
        expected: Expected::default(),
    }
}

impl Rig {
    /// `n` open orders with a (fake) Checkout Session each, as `start_checkout` leaves them.
    async fn open_orders(&mut self, n: usize) -> Vec<OpenOrder> {
        let first = self.orders;
        self.orders += n;
        let store = &self.store;
        let (product, total) = (self.product, self.total);
        futures::stream::iter(first..first + n)
            .map(|i| async move {
                let email = format!("customer{i}@bench.test");
                let order = store
                    .create_order(&NewOrder {
                        email: email.clone(),
                        name: format!("Customer {i}"),
                        customer_id: None,
                        product_id: product,
                        billing_cycle: "monthly".into(),
                        domain: format!("site{i}.bench.test"),
                        subtotal_minor: total - total / 6,
                        tax_minor: total / 6,
                        tax_rate_bp: 2000,
                        total_minor: total,
                        currency: "USD".into(),
                    })
                    .await
                    .unwrap();
                let session = format!("cs_test_bench{i:06}");
                let customer = format!("cus_bench{i:06}");
                store
                    .attach_checkout(
                        order.id,
                        &customer,
                        &session,
                        &format!("https://checkout.bench.test/c/pay/{session}"),
                    )
                    .await
                    .unwrap();
                OpenOrder {
                    id: order.id,
                    total: order.total_minor,
                    session,
                    customer,
                    email,
                }
            })
            .buffered(8)
            .collect()
            .await
    }

    fn cpu(&self) -> CpuSample {
        CpuSample::take(self.database.as_deref())
    }

    /// Checks the rows against what the runs so far must have left, and prints them.
    async fn verify(&self, run: &str) -> bool {
        let e = self.expected;
        let checks: [(&str, &'static str, i64); 8] = [
            (
                "fulfilled orders",
                "SELECT COUNT(*) FROM orders WHERE status = 'fulfilled'",
                e.fulfilled,
            ),
            ("services", "SELECT COUNT(*) FROM services", e.fulfilled),
            (
                "provisioning tasks",
                "SELECT COUNT(*) FROM provisioning_tasks",
                e.fulfilled,
            ),
            (
                "paid invoices",
                "SELECT COUNT(*) FROM invoices WHERE status = 'paid'",
                e.fulfilled,
            ),
            ("payments", "SELECT COUNT(*) FROM payments", e.fulfilled),
            (
                "webhook_events",
                "SELECT COUNT(*) FROM webhook_events",
                e.events,
            ),
            (
                "of them fulfilling",
                "SELECT COUNT(*) FROM webhook_events WHERE outcome = 'fulfilled'",
                e.fulfilled,
            ),
            (
                "recorded only",
                "SELECT COUNT(*) FROM webhook_events WHERE outcome = 'recorded'",
                e.recorded_only,
            ),
        ];
        let mut ok = true;
        let mut listed = Vec::new();
        for (what, sql, want) in checks {
            let got = self.rows.count(sql).await;
            ok &= got == want;
            listed.push(if got == want {
                format!("{what} {got}")
            } else {
                format!("{what} {got} (expected {want})")
            });
        }
        println!(
            "{:<8}   check after {run}: {} - {}",
            self.name,
            if ok { "OK" } else { "WRONG" },
            listed.join(", ")
        );
        ok
    }

    /// Waits (at most two minutes) until the provisioning worker has tried every task made so
    /// far, so that the next run's figures do not carry this run's background work; prints
    /// what that catch-up cost per task.
    async fn settle(&self, after: &str) {
        const UNTRIED: &str = "SELECT COUNT(*) FROM provisioning_tasks
             WHERE status IN ('pending', 'processing') AND wait_reason IS NULL";
        let untried = self.rows.count(UNTRIED).await;
        if untried == 0 {
            return;
        }
        let before = self.cpu();
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.rows.count(UNTRIED).await > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let cpu = self.cpu().since(&before);
        println!(
            "{:<8}   background after {after}: the provisioning worker still had {untried} new tasks to try; took {:.2} s; {}",
            self.name,
            cpu.wall.as_secs_f64(),
            cpu.describe("task", usize::try_from(untried).unwrap_or(1))
        );
        let left = self.rows.count(UNTRIED).await;
        if left > 0 {
            println!(
                "{:<8}   ({left} still untried after two minutes)",
                self.name
            );
        }
    }

    /// The background work done so far (none of it part of an answer).
    async fn background(&self) -> String {
        format!(
            "provisioning tasks tried (each waiting for a server) {}, billing jobs done {}, retrying {}, emails sent {}",
            self.rows
                .count("SELECT COUNT(*) FROM provisioning_tasks WHERE wait_reason IS NOT NULL")
                .await,
            self.rows
                .count("SELECT COUNT(*) FROM billing_jobs WHERE status = 'done'")
                .await,
            self.rows
                .count(
                    "SELECT COUNT(*) FROM billing_jobs WHERE status = 'pending' AND attempts > 0"
                )
                .await,
            self.rows
                .count("SELECT COUNT(*) FROM email_outbox WHERE status = 'sent'")
                .await,
        )
    }
}

// ---- events and deliveries --------------------------------------------------------------------

/// A `checkout.session.completed` event for `order`, paid in full, shaped like Stripe's.
fn completed_event(event_id: &str, order: &OpenOrder, created: i64) -> Bytes {
    let body = json!({
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": "checkout.session.completed",
        "data": {"object": {
            "id": order.session,
            "object": "checkout.session",
            "mode": "payment",
            "status": "complete",
            "payment_status": "paid",
            "customer": order.customer,
            "customer_details": {"email": order.email, "name": "Bench Customer"},
            "amount_subtotal": order.total,
            "amount_total": order.total,
            "currency": "usd",
            "metadata": {"order_id": order.id.to_string()},
            "client_reference_id": format!("order-{}", order.id),
            "payment_intent": format!("pi_bench{:06}", order.id),
            "payment_method_types": ["card"],
            "success_url": "https://panel.bench.test/api/checkout/success?session_id={CHECKOUT_SESSION_ID}",
            "cancel_url": "https://panel.bench.test/",
            "url": null,
            "created": created - 60,
            "expires_at": created + 86_400,
        }},
    });
    Bytes::from(serde_json::to_vec(&body).unwrap())
}

/// An event of a type the controller only records.
fn unknown_event(i: usize, created: i64) -> Bytes {
    let event_type = UNKNOWN_TYPES[i % UNKNOWN_TYPES.len()];
    let body = json!({
        "id": format!("evt_bench_other{i:06}"),
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": event_type,
        "data": {"object": {
            "id": format!("obj_bench{i:06}"),
            "object": event_type.split('.').next().unwrap_or("object"),
            "created": created,
            "livemode": false,
            "metadata": {},
        }},
    });
    Bytes::from(serde_json::to_vec(&body).unwrap())
}

/// Each body with a `Stripe-Signature` made now (Stripe signs each delivery, retries too).
fn signed(bodies: &[Bytes]) -> Vec<(Bytes, String)> {
    let now = now_ms() / 1000;
    bodies
        .iter()
        .map(|b| (b.clone(), signature::sign(b, WEBHOOK_SECRET, now)))
        .collect()
}

type Answer = Result<Duration, String>;

/// Posts one delivery; the time to the whole answer, or what went wrong.
async fn deliver(client: &reqwest::Client, url: &str, body: Bytes, sig: &str) -> Answer {
    let started = Instant::now();
    let resp = client
        .post(url)
        .header("content-type", "application/json")
        .header("stripe-signature", sig)
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    if status != 200 || text != r#"{"received":true}"# {
        return Err(format!("{status}: {text}"));
    }
    Ok(started.elapsed())
}

/// Posts every delivery, `CONCURRENCY` at a time (closed loop: each connection sends its next
/// event when the last is answered).
async fn burst(
    client: &reqwest::Client,
    url: &str,
    deliveries: Vec<(Bytes, String)>,
) -> Vec<Answer> {
    futures::stream::iter(deliveries)
        .map(|(body, sig)| async move { deliver(client, url, body, &sig).await })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await
}

/// Posts delivery `i` at `i / rate` seconds from the start whatever the answers before (open
/// loop); each latency counts from the scheduled time, so a stalled controller shows.
async fn paced(
    client: &reqwest::Client,
    url: &str,
    deliveries: Vec<Bytes>,
    rate: f64,
) -> Vec<Answer> {
    let started = tokio::time::Instant::now();
    let mut answers = Vec::with_capacity(deliveries.len());
    for (i, body) in deliveries.into_iter().enumerate() {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due).await;
        // Signed at its send time, as Stripe does.
        let sig = signature::sign(&body, WEBHOOK_SECRET, now_ms() / 1000);
        let (client, url) = (client.clone(), url.to_owned());
        answers.push(tokio::spawn(async move {
            deliver(&client, &url, body, &sig)
                .await
                .map(|_| due.elapsed())
        }));
    }
    let mut results = Vec::with_capacity(answers.len());
    for a in answers {
        results.push(a.await.unwrap());
    }
    results
}

// ---- measuring --------------------------------------------------------------------------------

/// What one run measured.
struct Measured {
    elapsed: Duration,
    latencies: Vec<Duration>,
    failures: Vec<String>,
    cpu: CpuUse,
    waits: Option<Waits>,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `load` on the load generator's runtime while sampling CPU and, on PostgreSQL, waits.
fn measure(
    rig: &Rig,
    controller_rt: &Runtime,
    load_rt: &Runtime,
    load: impl Future<Output = Vec<Answer>>,
) -> Measured {
    let sampler = WaitSampler::start(controller_rt, &rig.rows);
    let before = rig.cpu();
    let started = Instant::now();
    let answers = load_rt.block_on(load);
    let elapsed = started.elapsed();
    let cpu = rig.cpu().since(&before);
    let waits = sampler.map(|s| s.finish(controller_rt));
    let mut latencies = Vec::with_capacity(answers.len());
    let mut failures = Vec::new();
    for a in answers {
        match a {
            Ok(d) => latencies.push(d),
            Err(e) => failures.push(e),
        }
    }
    latencies.sort_unstable();
    Measured {
        elapsed,
        latencies,
        failures,
        cpu,
        waits,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// What held a closed-loop run back, from its CPU and wait figures.
fn bound(m: &Measured) -> String {
    let cpu = &m.cpu;
    let busy = cpu.machine_percent();
    let ours = cpu.share_percent(cpu.process) + cpu.share_percent(cpu.postgres);
    let each = ms(m.elapsed) / m.latencies.len().max(1) as f64;
    if let Some(w) = &m.waits {
        let samples = f64::from(w.samples.max(1));
        let locked = w.locked.values().sum::<u64>() as f64 / samples;
        let wal = w.wal as f64 / samples;
        if locked >= 1.0 && locked >= wal {
            let query = w
                .locked
                .iter()
                .max_by_key(|(_, v)| **v)
                .map_or("", |(q, _)| q.as_str());
            return format!(
                "a row lock held until commit: on average {locked:.1} connections waited for it in `{query}`, \
                 so these transactions commit one after another ({each:.2} ms each)"
            );
        }
        if wal >= 1.0 {
            return format!(
                "commits: on average {wal:.1} connections waited for the WAL to reach the disk"
            );
        }
    }
    if busy >= 90.0 {
        return format!(
            "CPU: the machine's cores were {busy:.0} % busy, {ours:.0} % for this benchmark (process and its database)"
        );
    }
    if m.waits.is_none() {
        return format!(
            "SQLite's one writer: write transactions run one after another, {each:.2} ms each; \
             the cores were only {busy:.0} % busy"
        );
    }
    format!(
        "neither CPU ({busy:.0} % busy) nor locks: the round trips of {CONCURRENCY} requests at a time"
    )
}

fn report(name: &str, what: &str, m: &Measured) {
    let n = m.latencies.len();
    println!(
        "{name:<8} {what}: {n} events in {:.2} s = {:.0} events/s; answer p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        m.elapsed.as_secs_f64(),
        m.rate(),
        ms(percentile(&m.latencies, 0.5)),
        ms(percentile(&m.latencies, 0.99)),
        ms(m.latencies.last().copied().unwrap_or_default()),
    );
    if !m.failures.is_empty() {
        println!(
            "{name:<8}   {} deliveries FAILED, first: {}",
            m.failures.len(),
            m.failures[0]
        );
    }
    println!(
        "{name:<8}   {}",
        m.cpu.describe("event", n + m.failures.len())
    );
    if let Some(w) = &m.waits {
        println!("{name:<8}   {}", w.describe());
    }
}

/// `report`, and what bounded the run (a closed-loop one: its rate is the controller's).
fn report_bound(name: &str, what: &str, m: &Measured) {
    report(name, what, m);
    println!("{name:<8}   bound by {}", bound(m));
}

// ---- CPU accounting ---------------------------------------------------------------------------

/// CPU time in clock ticks, read from `/proc`.
#[derive(Debug, Default, Clone, Copy)]
struct CpuSample {
    at: Option<Instant>,
    /// This process (threads that ended included).
    process: u64,
    controller: u64,
    sqlite: u64,
    /// The server processes of the benchmark's PostgreSQL database.
    postgres: u64,
    machine_busy: u64,
    machine_total: u64,
}

/// The CPU a run used: the difference of two samples.
#[derive(Debug, Default, Clone, Copy)]
struct CpuUse {
    wall: Duration,
    process: u64,
    controller: u64,
    sqlite: u64,
    postgres: u64,
    machine_busy: u64,
    machine_total: u64,
}

/// The command name and utime + stime of a `/proc/…/stat` line.
fn stat_ticks(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // Counted from the state (field 3 of the line): utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((&stat[open + 1..close], utime + stime))
}

fn read_ticks(path: &std::path::Path) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    stat_ticks(&stat).map(|(c, t)| (c.to_owned(), t))
}

impl CpuSample {
    /// Reads the counters now; `database`: the PostgreSQL database whose server processes
    /// (their title names it) are counted.
    fn take(database: Option<&str>) -> CpuSample {
        let mut s = CpuSample {
            at: Some(Instant::now()),
            ..CpuSample::default()
        };
        s.process = read_ticks("/proc/self/stat".as_ref()).map_or(0, |(_, t)| t);
        for task in std::fs::read_dir("/proc/self/task").into_iter().flatten() {
            let Ok(task) = task else { continue };
            if let Some((comm, ticks)) = read_ticks(&task.path().join("stat")) {
                if comm.starts_with(CONTROLLER_THREAD) {
                    s.controller += ticks;
                } else if comm.starts_with(SQLITE_THREAD) {
                    s.sqlite += ticks;
                }
            }
        }
        if let Some(database) = database {
            for p in std::fs::read_dir("/proc").into_iter().flatten() {
                let Ok(p) = p else { continue };
                if !p
                    .file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                {
                    continue;
                }
                let title = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
                let title = String::from_utf8_lossy(&title);
                if title.starts_with("postgres:")
                    && title.split_whitespace().any(|w| w == database)
                    && let Some((_, ticks)) = read_ticks(&p.path().join("stat"))
                {
                    s.postgres += ticks;
                }
            }
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/stat")
            && let Some(cpu) = stat.lines().next()
        {
            let v: Vec<u64> = cpu
                .split_whitespace()
                .skip(1)
                .take(8)
                .filter_map(|x| x.parse().ok())
                .collect();
            s.machine_total = v.iter().sum();
            // Everything but idle and iowait.
            s.machine_busy = s
                .machine_total
                .saturating_sub(v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0));
        }
        s
    }

    fn since(&self, before: &CpuSample) -> CpuUse {
        CpuUse {
            wall: match (self.at, before.at) {
                (Some(a), Some(b)) => a - b,
                _ => Duration::ZERO,
            },
            process: self.process.saturating_sub(before.process),
            controller: self.controller.saturating_sub(before.controller),
            sqlite: self.sqlite.saturating_sub(before.sqlite),
            postgres: self.postgres.saturating_sub(before.postgres),
            machine_busy: self.machine_busy.saturating_sub(before.machine_busy),
            machine_total: self.machine_total.saturating_sub(before.machine_total),
        }
    }
}

fn ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

impl CpuUse {
    /// How busy the machine's cores were, in percent.
    fn machine_percent(&self) -> f64 {
        if self.machine_total == 0 {
            0.0
        } else {
            self.machine_busy as f64 / self.machine_total as f64 * 100.0
        }
    }

    /// `ticks` as a percentage of all the cores' time during the run.
    fn share_percent(&self, ticks: u64) -> f64 {
        let core_seconds = (self.wall.as_secs_f64() * cores() as f64).max(f64::EPSILON);
        ticks as f64 / ticks_per_second() / core_seconds * 100.0
    }

    /// CPU per unit of work, and each part's share of the machine's cores.
    fn describe(&self, what: &str, count: usize) -> String {
        let hz = ticks_per_second();
        let per = |ticks: u64| ticks as f64 / hz * 1000.0 / count.max(1) as f64;
        let other = self.process.saturating_sub(self.controller + self.sqlite);
        let busy = self.machine_percent();
        let share = |ticks: u64| self.share_percent(ticks);
        let postgres = if self.postgres > 0 {
            format!(
                ", its PostgreSQL server processes {:.2} ms",
                per(self.postgres)
            )
        } else {
            String::new()
        };
        format!(
            "CPU per {what}: {:.2} ms in this process (controller {:.2}, SQLite threads {:.2}, load generator and rest {:.2}){postgres}; \
             of the {} cores this process used {:.0} %, PostgreSQL {:.0} %, the machine was {busy:.0} % busy",
            per(self.process),
            per(self.controller),
            per(self.sqlite),
            per(other),
            cores(),
            share(self.process),
            share(self.postgres),
        )
    }
}

// ---- PostgreSQL waits -------------------------------------------------------------------------

/// What the server's connections to the benchmark's database were doing, summed over samples.
#[derive(Debug, Default)]
struct Waits {
    samples: u32,
    /// Running a statement on CPU.
    running: u64,
    /// Waiting for a row or transaction lock, by the statement that waits.
    locked: HashMap<String, u64>,
    /// Waiting for the WAL to reach the disk (their own commit's flush or another's).
    wal: u64,
    /// Other waits (I/O, buffers …).
    other: u64,
    /// Inside a transaction, waiting for the controller's next statement.
    in_transaction: u64,
}

impl Waits {
    fn describe(&self) -> String {
        let n = f64::from(self.samples.max(1));
        let avg = |v: u64| v as f64 / n;
        let locked: u64 = self.locked.values().sum();
        let top = self
            .locked
            .iter()
            .max_by_key(|(_, v)| **v)
            .map(|(q, v)| {
                format!(
                    " ({:.0} % of them in `{q}`)",
                    *v as f64 * 100.0 / locked as f64
                )
            })
            .unwrap_or_default();
        format!(
            "PostgreSQL connections of this database, {} samples: on average {:.1} waiting for a row lock{top}, \
             {:.1} for the WAL flush of a commit, {:.1} on other waits, {:.1} running, {:.1} idle in a transaction (waiting for the controller)",
            self.samples,
            avg(locked),
            avg(self.wal),
            avg(self.other),
            avg(self.running),
            avg(self.in_transaction),
        )
    }
}

/// Samples `pg_stat_activity` every 20 ms until finished.
struct WaitSampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Waits>,
}

impl WaitSampler {
    fn start(rt: &Runtime, rows: &Rows) -> Option<WaitSampler> {
        let Rows::Postgres(pool) = rows else {
            return None;
        };
        let pool = pool.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = rt.spawn(async move {
            let mut waits = Waits::default();
            while !stopped.load(Ordering::Relaxed) {
                let rows: Vec<(String, Option<String>, Option<String>, String)> = sqlx::query_as(
                    "SELECT state, wait_event_type, wait_event, left(query, 40)
                     FROM pg_stat_activity
                     WHERE datname = current_database() AND pid <> pg_backend_pid()
                       AND state IN ('active', 'idle in transaction')",
                )
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
                waits.samples += 1;
                for (state, kind, event, query) in rows {
                    match (state.as_str(), kind.as_deref(), event.as_deref()) {
                        ("idle in transaction", ..) => waits.in_transaction += 1,
                        (_, Some("Lock"), _) => {
                            let query = query.split_whitespace().collect::<Vec<_>>().join(" ");
                            *waits.locked.entry(query).or_default() += 1;
                        }
                        (_, Some("IO" | "LWLock"), Some(e)) if e.starts_with("WAL") => {
                            waits.wal += 1;
                        }
                        (_, None, _) => waits.running += 1,
                        _ => waits.other += 1,
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            waits
        });
        Some(WaitSampler { stop, task })
    }

    fn finish(self, rt: &Runtime) -> Waits {
        self.stop.store(true, Ordering::Relaxed);
        rt.block_on(self.task).unwrap()
    }
}

// ---- the runs ---------------------------------------------------------------------------------

fn run_backend(
    controller_rt: &Runtime,
    load_rt: &Runtime,
    name: &'static str,
    url: &str,
    database: Option<String>,
    orders: usize,
) -> bool {
    let mut rig = controller_rt.block_on(start(name, url, database));
    let client = load_rt.block_on(async {
        reqwest::Client::builder()
            .pool_max_idle_per_host(CONCURRENCY * 2)
            .build()
            .unwrap()
    });
    let webhook = rig.webhook.clone();
    let mut ok = true;
    let created = now_ms() / 1000;
    if let Some(commit) = controller_rt.block_on(rig.rows.commit_time()) {
        println!(
            "{name:<8} one commit (a one-row insert) takes {:.2} ms on this machine now",
            ms(commit)
        );
    }

    // Warm-up: connections, statement caches.
    let warm = controller_rt.block_on(rig.open_orders(WARM_UP));
    let bodies: Vec<Bytes> = warm
        .iter()
        .map(|o| completed_event(&format!("evt_bench_warm{:06}", o.id), o, created))
        .collect();
    let m = measure(
        &rig,
        controller_rt,
        load_rt,
        burst(&client, &webhook, signed(&bodies)),
    );
    assert!(m.failures.is_empty(), "warm-up: {:?}", m.failures.first());
    rig.expected.fulfilled += WARM_UP as i64;
    rig.expected.events += WARM_UP as i64;
    controller_rt.block_on(rig.settle("the warm-up"));

    // (a) Throughput: fulfilment.
    let open = controller_rt.block_on(rig.open_orders(orders));
    let bodies: Vec<Bytes> = open
        .iter()
        .map(|o| completed_event(&format!("evt_bench_paid{:06}", o.id), o, created))
        .collect();
    let fulfil = measure(
        &rig,
        controller_rt,
        load_rt,
        burst(&client, &webhook, signed(&bodies)),
    );
    report_bound(
        name,
        &format!("fulfil     (verified+recorded+fulfilled, {CONCURRENCY} concurrent)"),
        &fulfil,
    );
    rig.expected.fulfilled += orders as i64;
    rig.expected.events += orders as i64;
    ok &= fulfil.failures.is_empty();
    ok &= controller_rt.block_on(rig.verify("fulfil"));
    controller_rt.block_on(rig.settle("fulfil"));

    // The same events again, as Stripe's retries and replays deliver them.
    let again = measure(
        &rig,
        controller_rt,
        load_rt,
        burst(&client, &webhook, signed(&bodies)),
    );
    report_bound(
        name,
        &format!("duplicates (the same events again: no-ops, {CONCURRENCY} concurrent)"),
        &again,
    );
    ok &= again.failures.is_empty();
    ok &= controller_rt.block_on(rig.verify("duplicates"));

    // Types without a handler: recorded, nothing else.
    let first = rig.expected.events as usize;
    let others: Vec<Bytes> = (first..first + orders)
        .map(|i| unknown_event(i, created))
        .collect();
    let recorded = measure(
        &rig,
        controller_rt,
        load_rt,
        burst(&client, &webhook, signed(&others)),
    );
    report_bound(
        name,
        &format!(
            "unknown    ({} other types, recorded only, {CONCURRENCY} concurrent)",
            UNKNOWN_TYPES.len()
        ),
        &recorded,
    );
    rig.expected.events += orders as i64;
    rig.expected.recorded_only += orders as i64;
    ok &= recorded.failures.is_empty();
    ok &= controller_rt.block_on(rig.verify("unknown types"));

    // (b) Latency at half the fulfilment rate, open loop, fresh orders.
    let rate = (fulfil.rate() / 2.0).max(1.0);
    let count = (rate * LATENCY_RUN.as_secs_f64()).ceil() as usize;
    let open = controller_rt.block_on(rig.open_orders(count));
    let bodies: Vec<Bytes> = open
        .iter()
        .map(|o| completed_event(&format!("evt_bench_paced{:06}", o.id), o, now_ms() / 1000))
        .collect();
    let latency = measure(
        &rig,
        controller_rt,
        load_rt,
        paced(&client, &webhook, bodies, rate),
    );
    report(
        name,
        &format!("latency    (fulfil, open loop at {rate:.0} events/s = half the fulfil rate)"),
        &latency,
    );
    rig.expected.fulfilled += count as i64;
    rig.expected.events += count as i64;
    ok &= latency.failures.is_empty();
    ok &= controller_rt.block_on(rig.verify("latency run"));
    controller_rt.block_on(rig.settle("the latency run"));
    println!(
        "{name:<8}   background work in all: {}",
        controller_rt.block_on(rig.background())
    );

    rig.stop.cancel();
    let Rig {
        controller,
        store,
        rows,
        ..
    } = rig;
    controller_rt.block_on(async {
        let _ = controller.await;
        rows.close().await;
        store.close().await;
    });
    ok
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let orders: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let which = args.get(1).map_or("both", String::as_str).to_owned();
    // The controller runs on a runtime of its own and the load generator on this thread, so
    // /proc tells their CPU apart by thread name.
    let controller_rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name(CONTROLLER_THREAD)
        .enable_all()
        .build()
        .unwrap();
    let load_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "webhooks: {orders} orders per run, {CONCURRENCY} concurrent keep-alive connections, {} cores, load average before: {}",
        cores(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "          controller in-process, Stripe never called, cron off; background workers running: \
         provisioning (PROVISIONING_WORKERS=1, PROVISIONING_RETRY_BASE_MS=3600000: each new service \
         is tried once, finds no server and waits), billing (saving cards: Stripe unreachable, \
         retried later; receipts), email (to the log)"
    );
    let mut ok = true;
    if which == "sqlite" || which == "both" {
        let db = TestSqlite::create();
        ok &= run_backend(&controller_rt, &load_rt, "sqlite", &db.url, None, orders);
        db.remove();
    }
    if which == "postgres" || which == "both" {
        let db = controller_rt.block_on(TestDatabase::create());
        ok &= run_backend(
            &controller_rt,
            &load_rt,
            "postgres",
            &db.url,
            Some(db.name.clone()),
            orders,
        );
        controller_rt.block_on(db.drop_database());
    }
    drop(load_rt);
    controller_rt.shutdown_timeout(Duration::from_secs(10));
    assert!(
        ok,
        "a run left the wrong rows or had failed deliveries (see above)"
    );
}
