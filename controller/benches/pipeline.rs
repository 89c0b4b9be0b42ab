//! Provisioning pipeline benchmark: orders through the real controller (workers, queue, fleet
//! over mTLS) on SQLite and on PostgreSQL, against real agent sessions and simulated cPanel
//! panels with no added latency.
//!
//! `cargo bench -p mpanel-controller --bench pipeline -- [orders] [sqlite|postgres|both]`
//! (fewer LTO minutes: `CARGO_PROFILE_BENCH_LTO=false CARGO_PROFILE_BENCH_CODEGEN_UNITS=16`).
//!
//! The controller runs in this process; the simulators and agents run in a second process (this
//! binary started again as `helpers`), so the CPU figures say what the controller and its
//! database do. Three phases per backend:
//! - **throughput**: every order queued at once by 16 concurrent clients; services/s until the
//!   last is active;
//! - **latency at 50 orders/s** and **at half the measured peak**: paid→active p50/p99/max,
//!   where latency is `provisioned_at - created_at` of each service (committed order to
//!   committed `active`), with where the milliseconds go: the order to its first step done
//!   (queue wait, claim, placement, the account step), each later step (agent round trip, panel,
//!   the step's record), and the completion.
//!
//! Per phase: CPU ms per service of this process (controller and the ordering clients) and of
//! the helpers; on PostgreSQL also the server's CPU ms per service (its processes' CPU time),
//! statements and execution ms per service from `pg_stat_statements`, write transactions per
//! service (transaction ids used), and the top five statements by total time
//! (`PIPELINE_STATEMENTS=all`: every statement, most called first).
//! `pg_stat_statements` needs `shared_preload_libraries = 'pg_stat_statements'` in the server's
//! configuration; without it those figures are left out and the run says so.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use mpanel_agent::config::{AgentConfig, PanelSection};
use mpanel_agent::state::StateDir;
use mpanel_common::status::{BillingCycle, ServiceStatus};
use mpanel_controller::app::{self, Listeners};
use mpanel_controller::config::Config;
use mpanel_controller::store::{
    DynStore, NewCustomer, NewProduct, Page, Price, ServiceFilter, TaskFilter,
};
use mpanel_e2e::databases::{TestDatabase, TestSqlite};
use mpanel_panelsim::{SimConfig, SimKind};
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio_util::sync::CancellationToken;

use support::{cpu_ms, stdin_lines};

mod support;

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const SERVERS: usize = 4;
const SIM_TOKEN: &str = "bench-token";

/// CPU time of every PostgreSQL server process on this machine.
fn postgres_cpu_ms() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_end() == "postgres")
        })
        .map(|pid| cpu_ms(&pid))
        .sum()
}

// --- the helpers process: simulated panels and their agents ------------------------------------

/// `pipeline helpers <grpc-url>`: starts the simulators and prints `sim <url>` for each, reads one
/// `token <enrollment-token>` per simulator, enrols and runs an agent for each, prints `ready`,
/// and runs until its stdin closes.
async fn helpers(grpc: String) {
    let mut sims = Vec::new();
    for i in 0..SERVERS {
        let mut sim_config = SimConfig::new(SimKind::Cpanel, SIM_TOKEN);
        sim_config.tls = true;
        sim_config.seed = i as u64;
        let sim = mpanel_panelsim::start(
            sim_config,
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        )
        .await
        .unwrap();
        println!("sim {}", sim.base_url());
        sims.push(sim);
    }
    let mut lines = stdin_lines();
    let stop = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    for (i, sim) in sims.iter().enumerate() {
        let line = lines.recv().await.expect("a token per simulator");
        let token = line.strip_prefix("token ").expect("token line");
        let state = StateDir::new(dir.path().join(format!("agent{i}")));
        mpanel_agent::enroll::enroll(&grpc, token, &state)
            .await
            .unwrap();
        // The agent as `mpanel-agent run` starts it, from its configuration.
        let config = AgentConfig {
            controller: Some(grpc.clone()),
            state_dir: state.dir().to_owned(),
            accounts_path: std::env::temp_dir(),
            heartbeat_secs: 2,
            panel: Some(PanelSection {
                kind: "cpanel".into(),
                url: sim.base_url(),
                user: "root".into(),
                token_file: None,
                token: Some(SIM_TOKEN.to_owned().into()),
                insecure_tls: true,
            }),
            acme: None,
            metrics: None,
        };
        tokio::spawn(mpanel_agent::run(config, stop.clone()));
    }
    println!("ready");
    while lines.recv().await.is_some() {}
    stop.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// An admin API request's JSON answer.
async fn answer(request: reqwest::RequestBuilder, token: &str) -> serde_json::Value {
    request
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

struct Helpers {
    child: tokio::process::Child,
    pid: String,
    stdin: Option<tokio::process::ChildStdin>,
}

impl Helpers {
    /// Starts the helpers process and registers a server for each of its simulators.
    async fn start(grpc: &str, api: &str, token: &str, client: &reqwest::Client) -> Helpers {
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args(["helpers", grpc])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the helpers process");
        let pid = child.id().unwrap().to_string();
        let mut stdin = child.stdin.take().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        for i in 0..SERVERS {
            let line = out.next_line().await.unwrap().expect("a simulator");
            let url = line.strip_prefix("sim ").expect("sim line");
            let server = answer(
                client.post(format!("{api}/api/servers")).json(
                    &json!({"hostname": format!("bench{i}.test"), "ipAddress": "127.0.0.1",
                    "controlPanel": "cpanel", "controlPanelUrl": url, "maxAccounts": 100000,
                    "location": "bench", "group": "bench",
                    "nameserver1": "ns1.bench.test", "nameserver2": "ns2.bench.test"}),
                ),
                token,
            )
            .await;
            let id = server["id"].as_i64().unwrap();
            let enrollment = answer(
                client.post(format!("{api}/api/servers/{id}/enrollment-token")),
                token,
            )
            .await;
            let line = format!("token {}\n", enrollment["token"].as_str().unwrap());
            stdin.write_all(line.as_bytes()).await.unwrap();
        }
        stdin.flush().await.unwrap();
        assert_eq!(
            out.next_line().await.unwrap().as_deref(),
            Some("ready"),
            "helpers did not start"
        );
        Helpers {
            child,
            pid,
            stdin: Some(stdin),
        }
    }

    async fn stop(mut self) {
        drop(self.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

// --- PostgreSQL's own counters -----------------------------------------------------------------

/// Reads `pg_stat_statements`, transaction ids and server CPU for the benchmark's database.
struct PgProbe {
    pool: sqlx::PgPool,
    dbid: i64,
}

struct PgMark {
    xid: i64,
    cpu_ms: f64,
    updates: HashMap<String, (i64, i64)>,
}

/// Leaves the probe's own statements out of the figures.
const NOT_PROBE: &str =
    "query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE '%pg_current_xact_id%'";

impl PgProbe {
    async fn connect(url: &str) -> Option<PgProbe> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .ok()?;
        let ready = async {
            sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                .execute(&pool)
                .await?;
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_stat_statements")
                .fetch_one(&pool)
                .await
        }
        .await;
        if let Err(e) = ready {
            println!(
                "postgres (pg_stat_statements unavailable: {e}; add shared_preload_libraries = 'pg_stat_statements' to the server's configuration for statement figures)"
            );
            return None;
        }
        let dbid = sqlx::query_scalar(
            "SELECT oid::bigint FROM pg_database WHERE datname = current_database()",
        )
        .fetch_one(&pool)
        .await
        .ok()?;
        Some(PgProbe { pool, dbid })
    }

    async fn mark(&self) -> PgMark {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT pg_stat_statements_reset(0, {}, 0)",
            self.dbid
        )))
        .execute(&self.pool)
        .await
        .unwrap();
        PgMark {
            xid: self.xid().await,
            cpu_ms: postgres_cpu_ms(),
            updates: self.updates().await,
        }
    }

    /// Row updates per table, and how many of them were heap-only (HOT: no index touched).
    async fn updates(&self) -> HashMap<String, (i64, i64)> {
        // Backends report their counters when a transaction ends, at most once a second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        sqlx::query_as::<_, (String, i64, i64)>(
            "SELECT relname::text, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
        .into_iter()
        .map(|(table, all, hot)| (table, (all, hot)))
        .collect()
    }

    async fn xid(&self) -> i64 {
        sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Prints the database's figures since `mark`, per service.
    async fn report(&self, name: &str, mark: &PgMark, services: usize) {
        let cpu = postgres_cpu_ms() - mark.cpu_ms;
        // Each `mark`/`xid` read uses one transaction id of its own.
        let writes = (self.xid().await - mark.xid - 1).max(0);
        let (calls, tx_calls, exec_ms): (i64, i64, f64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT COALESCE(SUM(calls), 0)::bigint,
                    COALESCE(SUM(calls) FILTER (WHERE upper(query) IN ('BEGIN', 'COMMIT', 'ROLLBACK')), 0)::bigint,
                    COALESCE(SUM(total_exec_time), 0)::float8
             FROM pg_stat_statements WHERE dbid = {} AND {NOT_PROBE}",
            self.dbid
        )))
        .fetch_one(&self.pool)
        .await
        .unwrap();
        let per = |x: f64| x / services.max(1) as f64;
        println!(
            "{name:<8}   database: {:.2} ms server CPU, {:.1} statements (+{:.1} BEGIN/COMMIT), {:.2} ms execution, {:.1} write transactions per service",
            per(cpu),
            per((calls - tx_calls) as f64),
            per(tx_calls as f64),
            per(exec_ms),
            per(writes as f64)
        );
        let mut updated: Vec<(String, i64, i64)> = self
            .updates()
            .await
            .into_iter()
            .map(|(table, (all, hot))| {
                let (all0, hot0) = mark.updates.get(&table).copied().unwrap_or_default();
                (table, all - all0, hot - hot0)
            })
            .filter(|(_, all, _)| *all >= services as i64)
            .collect();
        updated.sort_by_key(|(_, all, _)| -all);
        let updated: Vec<String> = updated
            .iter()
            .map(|(table, all, hot)| {
                format!(
                    "{table} {:.1} ({:.0} % HOT)",
                    per(*all as f64),
                    100.0 * *hot as f64 / (*all).max(1) as f64
                )
            })
            .collect();
        println!(
            "{name:<8}   row updates per service: {}",
            updated.join(", ")
        );
        // `PIPELINE_STATEMENTS=all`: every statement, by calls, not only the top five.
        let all = std::env::vars().any(|(k, v)| k == "PIPELINE_STATEMENTS" && v == "all");
        let top: Vec<(i64, f64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT calls, total_exec_time, query FROM pg_stat_statements
             WHERE dbid = {} AND {NOT_PROBE} ORDER BY {} LIMIT {}",
            self.dbid,
            if all {
                "calls DESC"
            } else {
                "total_exec_time DESC"
            },
            if all { 1000 } else { 5 }
        )))
        .fetch_all(&self.pool)
        .await
        .unwrap();
        for (calls, total, query) in top {
            let query: String = query.split_whitespace().collect::<Vec<_>>().join(" ");
            let short: String = query.chars().take(110).collect();
            println!(
                "{name:<8}     {:>5.1} % {:>7} calls {:>6.3} ms each  {short}",
                100.0 * total / exec_ms.max(f64::MIN_POSITIVE),
                calls,
                total / calls.max(1) as f64
            );
        }
    }
}

// --- the controller under test -----------------------------------------------------------------

struct Rig {
    store: DynStore,
    stop: CancellationToken,
    controller: tokio::task::JoinHandle<anyhow::Result<()>>,
    helpers: Helpers,
    customer: mpanel_common::ids::CustomerId,
    product: mpanel_common::ids::ProductId,
    api: String,
    token: String,
    client: reqwest::Client,
}

async fn start(database_url: &str) -> Rig {
    let env: HashMap<String, String> = [
        ("DATABASE_URL", database_url),
        ("ENCRYPTION_KEY", KEY),
        ("HTTP_LISTEN", "127.0.0.1:0"),
        ("GRPC_LISTEN", "127.0.0.1:0"),
        ("EMAIL_PROVIDER", "log"),
        ("RUST_LOG", "warn"),
        ("PROVISIONING_WORKERS", "32"),
        ("PROVISIONING_RETRY_BASE_MS", "200"),
        ("AGENT_HEARTBEAT_SECS", "2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = Config::from_sources(&env, &HashMap::new(), None).expect("config");
    let listeners = Listeners::bind(&config).await.expect("bind");
    let http = listeners.http.local_addr().unwrap();
    let grpc = format!(
        "https://127.0.0.1:{}",
        listeners.grpc.local_addr().unwrap().port()
    );
    let store = app::open_store(&config).await.expect("store");
    let token = mpanel_controller::crypto::new_token("mpa_").unwrap();
    store
        .create_admin_token("bench", &mpanel_controller::crypto::token_hash(&token))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let controller = tokio::spawn(app::run(config, listeners, stop.clone().cancelled_owned()));
    let client = reqwest::Client::new();
    let api = format!("http://{http}");
    let helpers = Helpers::start(&grpc, &api, &token, &client).await;
    // Wait until every agent has sent a heartbeat (placement needs a live report).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let agents = answer(client.get(format!("{api}/api/agents")), &token).await;
        let online = agents["agents"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|x| x["status"] == "online").count());
        if online == SERVERS {
            break;
        }
        assert!(Instant::now() < deadline, "agents did not come online");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let customer = store
        .create_customer(
            &NewCustomer {
                email: "bench@bench.test".into(),
                name: "Bench".into(),
            },
            "bench",
        )
        .await
        .unwrap();
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
                tax_rate_bp: 0,
                backup_schedule: mpanel_common::status::BackupSchedule::None,
                prices: vec![Price {
                    billing_cycle: BillingCycle::Monthly,
                    amount_minor: 100,
                    currency: "USD".into(),
                }],
            },
            "bench",
        )
        .await
        .unwrap();
    Rig {
        store,
        stop,
        controller,
        helpers,
        customer: customer.id,
        product: product.id,
        api,
        token,
        client,
    }
}

/// Places an order the way a paid checkout does: `POST /api/services`, which commits the
/// service and its task together and wakes the workers.
async fn order(rig: &Rig, n: usize, tag: &str) {
    let resp = rig
        .client
        .post(format!("{}/api/services", rig.api))
        .bearer_auth(&rig.token)
        .json(
            &json!({"customerId": rig.customer.get(), "productId": rig.product.get(),
            "domain": format!("{tag}{n}.bench.test"), "billingCycle": "monthly"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        201,
        "{}",
        resp.text().await.unwrap_or_default()
    );
}

/// One active service: its id, and when it was ordered and became active.
#[derive(Clone, Copy)]
struct Done {
    id: i64,
    created: i64,
    active: i64,
}

/// Waits until `count` services are active; returns them, oldest first.
async fn wait_active(store: &DynStore, count: usize, within: Duration) -> Vec<Done> {
    let deadline = Instant::now() + within;
    loop {
        let mut all = Vec::new();
        let mut page = Page {
            limit: 1000,
            after_id: None,
        };
        loop {
            let batch = store
                .list_services(&ServiceFilter {
                    status: Some(ServiceStatus::Active),
                    page,
                    ..ServiceFilter::default()
                })
                .await
                .unwrap();
            page.after_id = batch.last().map(|s| s.id.get());
            let done = batch.len() < 1000;
            all.extend(batch.into_iter().map(|s| Done {
                id: s.id.get(),
                created: s.created_at,
                active: s.provisioned_at.unwrap_or(s.created_at),
            }));
            if done {
                break;
            }
        }
        if all.len() >= count {
            all.sort_by_key(|d| d.id);
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {count} services became active",
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// What every phase measures: CPU of both processes and, on PostgreSQL, the database's counters.
struct Meter<'a> {
    name: &'a str,
    helpers_pid: String,
    pg: Option<&'a PgProbe>,
    pg_mark: Option<PgMark>,
    own_ms: f64,
    helpers_ms: f64,
}

impl<'a> Meter<'a> {
    async fn start(name: &'a str, rig: &Rig, pg: Option<&'a PgProbe>) -> Meter<'a> {
        let pg_mark = match pg {
            Some(p) => Some(p.mark().await),
            None => None,
        };
        Meter {
            name,
            helpers_pid: rig.helpers.pid.clone(),
            pg,
            pg_mark,
            own_ms: cpu_ms("self"),
            helpers_ms: cpu_ms(&rig.helpers.pid),
        }
    }

    async fn report(self, services: usize) {
        let per = |x: f64| x / services.max(1) as f64;
        println!(
            "{:<8}   CPU per service: controller {:.2} ms, helpers (simulators and agents) {:.2} ms",
            self.name,
            per(cpu_ms("self") - self.own_ms),
            per(cpu_ms(&self.helpers_pid) - self.helpers_ms)
        );
        if let (Some(pg), Some(mark)) = (self.pg, &self.pg_mark) {
            pg.report(self.name, mark, services).await;
        }
    }
}

/// Where the milliseconds of each service went, from its task's step records: order to the
/// first step done, each later step, and the completion. Means and p99s over `done`.
async fn breakdown(name: &str, store: &DynStore, done: &[Done]) {
    let ids: std::collections::HashSet<i64> = done.iter().map(|d| d.id).collect();
    let by_id: HashMap<i64, Done> = done.iter().map(|d| (d.id, *d)).collect();
    let mut segments: BTreeMap<usize, (String, Vec<i64>)> = BTreeMap::new();
    let mut page = Page {
        limit: 1000,
        after_id: None,
    };
    let mut seen = 0;
    while seen < ids.len() {
        let tasks = store
            .list_tasks(&TaskFilter {
                status: None,
                service_id: None,
                only_uncleared: false,
                page,
            })
            .await
            .unwrap();
        let Some(last) = tasks.last() else { break };
        page.after_id = Some(last.id.get());
        for task in tasks {
            let Some(d) = by_id.get(&task.service_id.get()) else {
                continue;
            };
            seen += 1;
            let mut previous = d.created;
            let steps = &task.result.0.steps;
            for (k, step) in steps.iter().enumerate() {
                let at = step.finished_at.unwrap_or(previous);
                let label = if k == 0 {
                    format!("order to {} done", step.step)
                } else {
                    step.step.to_string()
                };
                segments
                    .entry(k)
                    .or_insert_with(|| (label, Vec::new()))
                    .1
                    .push(at - previous);
                previous = at;
            }
            segments
                .entry(steps.len())
                .or_insert_with(|| ("completion".into(), Vec::new()))
                .1
                .push(d.active - previous);
        }
    }
    let parts: Vec<String> = segments
        .into_values()
        .map(|(label, mut ms)| {
            ms.sort_unstable();
            let mean = ms.iter().sum::<i64>() as f64 / ms.len().max(1) as f64;
            format!("{label} {mean:.1}/{}", percentile(&ms, 0.99))
        })
        .collect();
    println!(
        "{name:<8}   where it goes (mean/p99 ms): {}",
        parts.join(", ")
    );
}

/// Sum and count of each successful provisioning step's duration in the controller's metrics
/// (the agent round trip, the panel's work and the controller's share of the step, not its
/// record), by step.
fn step_seconds() -> BTreeMap<String, (f64, f64)> {
    let text = mpanel_controller::telemetry::metrics::install().render();
    let mut steps: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("mpanel_provisioning_step_duration_seconds_") else {
            continue;
        };
        let (kind, rest) = rest.split_once('{').unwrap_or_default();
        if !rest.contains("outcome=\"success\"") {
            continue;
        }
        let Some(step) = rest
            .split("step=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
        else {
            continue;
        };
        let value: f64 = rest
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let entry = steps.entry(step.to_owned()).or_default();
        match kind {
            "sum" => entry.0 = value,
            "count" => entry.1 = value,
            _ => {}
        }
    }
    steps
}

/// Orders `count` services at `per_second` and reports their paid→active latency.
async fn paced(
    name: &str,
    rig: &Rig,
    pg: Option<&PgProbe>,
    before: usize,
    count: usize,
    per_second: f64,
    tag: &str,
) {
    let meter = Meter::start(name, rig, pg).await;
    let steps_before = step_seconds();
    let interval = Duration::from_secs_f64(1.0 / per_second);
    let t0 = Instant::now();
    for i in 0..count {
        tokio::time::sleep_until((t0 + interval.mul_f64(i as f64)).into()).await;
        order(rig, i, tag).await;
    }
    let all = wait_active(&rig.store, before + count, Duration::from_secs(600)).await;
    let done = &all[before..];
    let mut latencies: Vec<i64> = done.iter().map(|d| d.active - d.created).collect();
    latencies.sort_unstable();
    println!(
        "{name:<8} latency at {per_second:.0} orders/s ({count} orders): paid->active p50 {} ms, p99 {} ms, max {} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0)
    );
    meter.report(count).await;
    breakdown(name, &rig.store, done).await;
    let steps: Vec<String> = step_seconds()
        .into_iter()
        .map(|(step, (sum, n))| {
            let (sum0, n0) = steps_before.get(&step).copied().unwrap_or_default();
            let mean_ms = 1000.0 * (sum - sum0) / (n - n0).max(1.0);
            format!("{step} {mean_ms:.1}")
        })
        .collect();
    println!(
        "{name:<8}   each step's own time, agent round trip and panel included (mean ms): {}",
        steps.join(", ")
    );
}

async fn run_backend(name: &str, url: &str, orders: usize) {
    let rig = start(url).await;
    let pg = if url.starts_with("postgres") {
        PgProbe::connect(url).await
    } else {
        None
    };
    // Warm-up: connections, statement caches.
    for i in 0..20 {
        order(&rig, i, "warm").await;
    }
    wait_active(&rig.store, 20, Duration::from_secs(60)).await;
    let mut before = 20;

    // Throughput: everything queued at once, by 16 concurrent clients (a checkout burst).
    let meter = Meter::start(name, &rig, pg.as_ref()).await;
    let started = Instant::now();
    futures::stream::iter(0..orders)
        .for_each_concurrent(16, |i| order(&rig, i, "burst"))
        .await;
    let queued = started.elapsed();
    wait_active(&rig.store, before + orders, Duration::from_secs(600)).await;
    let elapsed = started.elapsed();
    let rate = orders as f64 / elapsed.as_secs_f64();
    println!(
        "{name:<8} throughput: {orders} orders queued in {:.2} s, all active after {:.2} s = {rate:.0} services/s",
        queued.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    meter.report(orders).await;
    before += orders;

    let count = orders.min(1000);
    paced(name, &rig, pg.as_ref(), before, count, 50.0, "paced").await;
    before += count;
    paced(name, &rig, pg.as_ref(), before, count, rate / 2.0, "half").await;

    rig.stop.cancel();
    rig.helpers.stop().await;
    let _ = rig.controller.await;
    rig.store.close().await;
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    if args.first().map(String::as_str) == Some("helpers") {
        let grpc = args.get(1).expect("helpers <grpc-url>").clone();
        runtime.block_on(helpers(grpc));
        return;
    }
    let orders: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let which = args.get(1).map_or("both", String::as_str).to_owned();
    runtime.block_on(async {
        if which == "sqlite" || which == "both" {
            let db = TestSqlite::create();
            run_backend("sqlite", &db.url, orders).await;
            db.remove();
        }
        if which == "postgres" || which == "both" {
            let db = TestDatabase::create().await;
            run_backend("postgres", &db.url, orders).await;
            db.drop_database().await;
        }
    });
}
