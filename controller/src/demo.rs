//! `mpanel-controller demo`: the whole flow on one machine with nothing installed. It starts the
//! controller on a fresh embedded SQLite database, three panel simulators (cPanel, Plesk,
//! DirectAdmin), and three agents enrolled through the real enrollment path over mTLS; then it
//! orders one hosting service per panel and prints each task's steps as they complete. It keeps
//! running, with the API address and an admin token printed, until Ctrl-C.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mpanel_agent::core::Backoff;
use mpanel_agent::handler::BuiltinHandler;
use mpanel_agent::panel::{PanelConfig, build_driver_with};
use mpanel_agent::panel_commands::PanelCommandHandler;
use mpanel_agent::session::AgentOptions;
use mpanel_agent::state::StateDir;
use mpanel_common::status::{BillingCycle, TaskStatus};
use mpanel_common::username::PanelKind;
use mpanel_panelsim::{SimConfig, SimKind};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::config::{Config, EmailProvider, EncryptionKeys};
use crate::crypto;
use mpanel_common::ids::TaskId;

use crate::store::{self, NewCustomer, NewProduct, NewService, Price};

const DEMO_DB: &str = "mpanel-demo.db";

pub async fn run(mut config: Config) -> anyhow::Result<()> {
    if config.database_url.expose() == crate::config::DEFAULT_DATABASE_URL {
        // A fresh database each run: the simulators' state lives in memory and starts empty.
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{DEMO_DB}{suffix}"));
        }
        config.database_url = format!("sqlite://{DEMO_DB}?mode=rwc").into();
    }
    if config.encryption_keys.is_none() {
        let mut key = [0u8; 32];
        aws_lc_rs::rand::fill(&mut key).map_err(|_| anyhow::anyhow!("random source failed"))?;
        config.encryption_keys = Some(EncryptionKeys {
            current: key,
            previous: Vec::new(),
        });
    }
    config.email_provider = EmailProvider::Log;
    config.provisioning_retry_base_ms = config.provisioning_retry_base_ms.min(500);

    let listeners = app::Listeners::bind(&config).await?;
    let http = listeners.http.local_addr()?;
    let grpc = listeners.grpc.local_addr()?;
    let store = app::open_store(&config).await?;
    let token = crypto::new_token("mpa_")?;
    store
        .create_admin_token("demo", &crypto::token_hash(&token))
        .await?;

    let stop = CancellationToken::new();
    let controller = tokio::spawn(app::run(config, listeners, stop.clone().cancelled_owned()));
    println!("MPANEL_URL=http://{http}");
    println!("MPANEL_TOKEN={token}");

    let result = tokio::select! {
        r = fleet_and_orders(&store, http, grpc, &token, &stop) => r,
        () = app::shutdown_signal() => Ok(Vec::new()),
    };
    let mut running = match result {
        Ok(running) => running,
        Err(e) => {
            stop.cancel();
            let _ = controller.await;
            return Err(e);
        }
    };
    if !stop.is_cancelled() && !running.is_empty() {
        println!(
            "# The demo keeps running: try `curl -H \"Authorization: Bearer $MPANEL_TOKEN\" $MPANEL_URL/api/agents`. Ctrl-C stops everything."
        );
        tokio::select! {
            () = app::shutdown_signal() => {}
            () = stop.cancelled() => {}
        }
    }
    stop.cancel();
    for (agent, sim) in running.drain(..) {
        let _ = agent.await;
        sim.shutdown().await;
    }
    store.close().await;
    controller.await.context("controller task")?
}

type Running = (
    tokio::task::JoinHandle<Result<(), mpanel_agent::session::RunError>>,
    mpanel_panelsim::SimHandle,
);

async fn fleet_and_orders(
    store: &store::DynStore,
    http: std::net::SocketAddr,
    grpc: std::net::SocketAddr,
    token: &str,
    stop: &CancellationToken,
) -> anyhow::Result<Vec<Running>> {
    let api = Api {
        base: format!("http://{http}"),
        token: token.to_owned(),
        client: reqwest::Client::new(),
    };
    let grpc_url = format!(
        "https://{}:{}",
        if grpc.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            grpc.ip().to_string()
        },
        grpc.port()
    );
    let state_root = std::env::temp_dir().join(format!("mpanel-demo-{}", std::process::id()));
    let customer = store
        .create_customer(
            &NewCustomer {
                email: "customer@demo.example".into(),
                name: "Demo Customer".into(),
            },
            "demo",
        )
        .await?;

    let mut running = Vec::new();
    let mut tasks: Vec<(PanelKind, TaskId)> = Vec::new();
    for kind in PanelKind::ALL {
        let sim_kind = match kind {
            PanelKind::Cpanel => SimKind::Cpanel,
            PanelKind::Plesk => SimKind::Plesk,
            PanelKind::Directadmin => SimKind::Directadmin,
        };
        let sim_token = crypto::new_token("sim_")?;
        let mut sim_config = SimConfig::new(sim_kind, sim_token.clone());
        sim_config.tls = true;
        let sim = mpanel_panelsim::start(
            sim_config,
            tokio::net::TcpListener::bind("127.0.0.1:0").await?,
        )
        .await?;
        let group = format!("demo-{kind}");
        let server = api
            .post(
                "/api/servers",
                json!({
                    "hostname": format!("{kind}.demo.test"), "ipAddress": "127.0.0.1", "controlPanel": kind.as_str(),
                    "controlPanelUrl": sim.base_url(), "maxAccounts": 100, "location": "local", "group": group,
                    "nameserver1": "ns1.demo.test", "nameserver2": "ns2.demo.test"
                }),
            )
            .await?;
        let server_id = server["id"].as_i64().context("server id")?;
        let enrollment = api
            .post(
                &format!("/api/servers/{server_id}/enrollment-token"),
                json!({}),
            )
            .await?;
        let state = StateDir::new(state_root.join(kind.as_str()));
        mpanel_agent::enroll::enroll(
            &grpc_url,
            enrollment["token"].as_str().context("token")?,
            &state,
        )
        .await
        .context("agent enrollment")?;
        let driver_kind = match kind {
            PanelKind::Cpanel => mpanel_agent::panel::PanelKind::Cpanel,
            PanelKind::Plesk => mpanel_agent::panel::PanelKind::Plesk,
            PanelKind::Directadmin => mpanel_agent::panel::PanelKind::Directadmin,
        };
        let user = if kind == PanelKind::Cpanel {
            "root"
        } else {
            "admin"
        };
        let driver = build_driver_with(PanelConfig::new(
            driver_kind,
            &sim.base_url(),
            user,
            sim_token.into(),
            true,
        ))?;
        let options = AgentOptions {
            controller: grpc_url.clone(),
            state,
            heartbeat: Duration::from_secs(2),
            accounts_path: std::env::temp_dir(),
            panel_kind: kind.as_str().to_owned(),
            capabilities: PanelCommandHandler::COMMANDS
                .iter()
                .map(|c| (*c).to_owned())
                .collect(),
            handler: Arc::new(BuiltinHandler::with_next(Arc::new(
                PanelCommandHandler::new(driver),
            ))),
            panel: None,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(5)),
        };
        let agent = tokio::spawn(mpanel_agent::session::run(options, stop.clone()));
        println!(
            "# {kind}: simulator at {}, agent enrolled as server {server_id}",
            sim.base_url()
        );
        running.push((agent, sim));

        let product = store
            .create_product(
                &NewProduct {
                    name: format!("Starter on {}", kind.product_name()),
                    server_group: group,
                    package_cpanel: "default".into(),
                    package_plesk: "Unlimited".into(),
                    package_directadmin: "default".into(),
                    disk_mb: 10_240,
                    email_quota_mb: 1024,
                    databases: 1,
                    prices: vec![Price {
                        billing_cycle: BillingCycle::Monthly,
                        amount_minor: 999,
                        currency: "USD".into(),
                    }],
                },
                "demo",
            )
            .await?;
        let order = NewService {
            customer_id: customer.id,
            product_id: product.id,
            domain: format!("{kind}-site.example"),
            billing_cycle: BillingCycle::Monthly,
            max_retries: 3,
        };
        let (service, task) = store.create_service_with_task(&order, "demo").await?;
        println!(
            "# {kind}: ordered {} (service {}, job_{})",
            service.domain, service.id, task.id
        );
        tasks.push((kind, task.id));
    }

    follow_tasks(store, &tasks, stop).await?;
    Ok(running)
}

/// Prints each step once as it is recorded, until every task has finished.
async fn follow_tasks(
    store: &store::DynStore,
    tasks: &[(PanelKind, TaskId)],
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let mut printed: HashMap<TaskId, usize> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let mut open = 0;
        for (kind, id) in tasks {
            let task = store.get_task(*id).await?;
            let seen = printed.entry(*id).or_default();
            for step in task.result.0.steps.iter().skip(*seen) {
                let detail = if step.status == "success" {
                    summary(&step.data)
                } else {
                    step.error.clone().unwrap_or_default()
                };
                println!(
                    "[{:<11}] job_{id} {:<13} {:<8} {detail}",
                    kind.as_str(),
                    step.step,
                    step.status
                );
            }
            *seen = task.result.0.steps.len();
            match task.status {
                TaskStatus::Completed => {}
                TaskStatus::Failed => {}
                _ => open += 1,
            }
        }
        if open == 0 {
            break;
        }
        if stop.is_cancelled() || tokio::time::Instant::now() > deadline {
            println!("# some tasks are still running; see GET /api/provisioning/tasks");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (kind, id) in tasks {
        let task = store.get_task(*id).await?;
        let service = store.get_service(task.service_id).await?;
        println!(
            "# {kind}: job_{id} {} -> service {} is {} (user {})",
            task.status,
            service.domain,
            service.status,
            service.username.unwrap_or_default()
        );
    }
    Ok(())
}

/// A step's data as a short `key=value` line, for the console.
fn summary(data: &Value) -> String {
    match data {
        Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| match v {
                Value::Array(items) => format!("{k}=[{} item(s)]", items.len()),
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

struct Api {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Api {
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "POST {path}: {status} {value}");
        Ok(value)
    }
}
