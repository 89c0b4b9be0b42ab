//! Provisioning pipeline benchmark: 1,000 orders through the real controller (workers, queue,
//! fleet over mTLS), real agent sessions and simulated cPanel panels with no added latency, on
//! SQLite and on PostgreSQL.
//!
//! `cargo bench -p mpanel-controller --bench pipeline -- [orders] [sqlite|postgres|both]`
//! (fewer LTO minutes: `CARGO_PROFILE_BENCH_LTO=false CARGO_PROFILE_BENCH_CODEGEN_UNITS=16`).
//!
//! Prints, per backend: throughput (all orders queued at once by 16 concurrent clients,
//! services/s until the last is active) and paid→active latency p50/p99 at an offered load of
//! 50 orders/s. Latency is
//! `provisioned_at - created_at` of each service, i.e. from the committed order to the committed
//! `active`, everything in between included (queue, placement, six steps, panel calls).
//! Everything shares this machine's cores: the simulators and agents cost CPU the controller
//! would not pay in production, so the figures are a floor.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use mpanel_agent::config::{AgentConfig, PanelSection};
use mpanel_agent::state::StateDir;
use mpanel_common::status::{BillingCycle, ServiceStatus};
use mpanel_controller::app::{self, Listeners};
use mpanel_controller::config::Config;
use mpanel_controller::store::{DynStore, NewCustomer, NewProduct, Page, Price, ServiceFilter};
use mpanel_e2e::databases::{TestDatabase, TestSqlite};
use mpanel_panelsim::{SimConfig, SimKind};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const SERVERS: usize = 4;

struct Rig {
    store: DynStore,
    stop: CancellationToken,
    controller: tokio::task::JoinHandle<anyhow::Result<()>>,
    agents: Vec<tokio::task::JoinHandle<Result<(), mpanel_agent::wiring::SetupError>>>,
    _dirs: Vec<tempfile::TempDir>,
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
    let mut agents = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..SERVERS {
        let mut sim_config = SimConfig::new(SimKind::Cpanel, "bench-token");
        sim_config.tls = true;
        sim_config.seed = i as u64;
        let sim = mpanel_panelsim::start(
            sim_config,
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        )
        .await
        .unwrap();
        let server: serde_json::Value = client
            .post(format!("{api}/api/servers"))
            .bearer_auth(&token)
            .json(&json!({"hostname": format!("bench{i}.test"), "ipAddress": "127.0.0.1", "controlPanel": "cpanel",
                "controlPanelUrl": sim.base_url(), "maxAccounts": 100000, "location": "bench", "group": "bench",
                "nameserver1": "ns1.bench.test", "nameserver2": "ns2.bench.test"}))
            .send().await.unwrap().json().await.unwrap();
        let id = server["id"].as_i64().unwrap();
        let enrollment: serde_json::Value = client
            .post(format!("{api}/api/servers/{id}/enrollment-token"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        mpanel_agent::enroll::enroll(&grpc, enrollment["token"].as_str().unwrap(), &state)
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
                token: Some("bench-token".to_owned().into()),
                insecure_tls: true,
            }),
            acme: None,
            metrics: None,
        };
        agents.push(tokio::spawn(mpanel_agent::run(config, stop.clone())));
        dirs.push(dir);
        std::mem::forget(sim); // lives until the process ends
    }
    // Wait until every agent has sent a heartbeat (placement needs a live report).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let agents: serde_json::Value = client
            .get(format!("{api}/api/agents"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
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
        agents,
        _dirs: dirs,
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

/// Waits until `count` services are active; returns their (created, provisioned) times.
async fn wait_active(store: &DynStore, count: usize, within: Duration) -> Vec<(i64, i64)> {
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
            all.extend(
                batch
                    .into_iter()
                    .map(|s| (s.created_at, s.provisioned_at.unwrap_or(s.created_at))),
            );
            if done {
                break;
            }
        }
        if all.len() >= count {
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
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run_backend(name: &str, url: &str, orders: usize) {
    let rig = start(url).await;
    // Warm-up: connections, statement caches.
    for i in 0..20 {
        order(&rig, i, "warm").await;
    }
    wait_active(&rig.store, 20, Duration::from_secs(60)).await;

    // Throughput: everything queued at once, by 16 concurrent clients (a checkout burst).
    let started = Instant::now();
    futures::stream::iter(0..orders)
        .for_each_concurrent(16, |i| order(&rig, i, "burst"))
        .await;
    let queued = started.elapsed();
    wait_active(&rig.store, 20 + orders, Duration::from_secs(600)).await;
    let elapsed = started.elapsed();
    let rate = orders as f64 / elapsed.as_secs_f64();

    // Latency at an offered 50 orders/s.
    let paced = orders.min(1000);
    let interval = Duration::from_millis(20);
    let t0 = Instant::now();
    for i in 0..paced {
        let due = t0 + interval * u32::try_from(i).unwrap();
        tokio::time::sleep_until(due.into()).await;
        order(&rig, i, "paced").await;
    }
    let all = wait_active(&rig.store, 20 + orders + paced, Duration::from_secs(600)).await;
    let mut latencies: Vec<i64> = all.iter().rev().take(paced).map(|(c, p)| p - c).collect();
    latencies.sort_unstable();
    println!(
        "{name:<8} throughput: {orders} orders queued in {:.2} s, all active after {:.2} s = {rate:.0} services/s",
        queued.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "{name:<8} latency at 50 orders/s ({paced} orders): paid->active p50 {} ms, p99 {} ms, max {} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0)
    );
    rig.stop.cancel();
    for a in rig.agents {
        let _ = a.await;
    }
    let _ = rig.controller.await;
    rig.store.close().await;
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let orders: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let which = args.get(1).map_or("both", String::as_str).to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
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
