//! `mpanel-demo`: the whole flow on one machine with nothing installed but Rust. It starts the
//! controller on a fresh embedded SQLite database, three panel simulators (cPanel, Plesk,
//! DirectAdmin) and three agents enrolled through the real enrollment path over mTLS, each run by
//! `mpanel_agent::run` exactly as `mpanel-agent run` does; then it orders one hosting service per
//! panel through the admin API and prints each task's steps as they complete. It keeps running,
//! with the API address and an admin token printed, until Ctrl-C.
//!
//! A demonstration, not a production binary: it links the simulator and the agent into one
//! process, which the packaged controller and agent never do.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use mpanel_agent::config::{AgentConfig, PanelSection};
use mpanel_common::username::PanelKind;
use mpanel_controller::app;
use mpanel_controller::config::{DEFAULT_DATABASE_URL, EmailProvider, EncryptionKeys};
use mpanel_controller::web::credentials;
use mpanel_controller::{commands, crypto, telemetry};
use mpanel_panelsim::{SimConfig, SimHandle, SimKind};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The whole mpanel fleet on one machine: the controller, three simulated control panels
/// (cPanel, Plesk, DirectAdmin) and three agents enrolled over mutual TLS, all in this process.
///
/// It orders one hosting service per panel, prints every provisioning step as it completes,
/// then keeps running until Ctrl-C. Once the fleet is up it prints lines a shell can `eval`:
/// MPANEL_URL (the admin API), MPANEL_TOKEN (an admin token), and the dashboard's sign-in
/// (MPANEL_ADMIN_EMAIL, MPANEL_ADMIN_PASSWORD; the dashboard is at MPANEL_URL/admin).
///
/// Configuration as for `mpanel-controller serve` (environment, .env, --config): HTTP_LISTEN
/// (default 127.0.0.1:8080), GRPC_LISTEN (default 0.0.0.0:7443), DATABASE_URL (default: a fresh
/// mpanel-demo.db in the working directory, recreated on every run), RUST_LOG. ENCRYPTION_KEY
/// is generated when unset; emails go to the log.
#[derive(Debug, Parser)]
#[command(name = "mpanel-demo", version, about, long_about)]
struct Cli {
    /// TOML file with configuration keys in lower case (environment variables win).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mpanel-demo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(demo(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mpanel-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

const DEMO_DB: &str = "mpanel-demo.db";

async fn demo(cli: Cli) -> anyhow::Result<()> {
    let mut config = commands::load_config(cli.config.as_deref())?;
    telemetry::init(&config.log_filter, config.log_format);
    let names = if config.database_url.expose() == DEFAULT_DATABASE_URL {
        // A fresh database each run: the simulators keep their state in memory and start empty.
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{DEMO_DB}{suffix}"));
        }
        config.database_url = format!("sqlite://{DEMO_DB}?mode=rwc").into();
        Names::default()
    } else {
        // A database of the user's may hold an earlier run's servers, customer and domains.
        Names::unique()
    };
    let generated_key = config.encryption_keys.is_none();
    if generated_key {
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
    let http = loopback_if_unspecified(listeners.http.local_addr()?);
    let grpc = loopback_if_unspecified(listeners.grpc.local_addr()?);
    let token = crypto::new_token("mpa_")?;
    let store = app::open_store(&config).await?;
    store
        .create_admin_token("demo", &crypto::token_hash(&token))
        .await?;
    // A dashboard admin with a one-time password, as `mpanel-controller admin create` makes.
    let admin_email = format!("admin{}@demo.example", names.tag);
    let admin_password = credentials::generated_password()?;
    store
        .create_admin_user(
            &admin_email,
            &credentials::hash_password(&admin_password)?,
            "demo",
        )
        .await?;
    store.close().await;

    let stop = CancellationToken::new();
    let mut controller = tokio::spawn(app::run(config, listeners, stop.clone().cancelled_owned()));
    let api = Api {
        base: format!("http://{http}"),
        token: token.clone(),
        client: reqwest::Client::new(),
    };
    let state_root = tempfile::Builder::new().prefix("mpanel-demo-").tempdir()?;
    let mut fleet = Fleet::default();

    let outcome = tokio::select! {
        r = async {
            fleet.start(&api, &names, &format!("https://{grpc}"), &state_root, &stop).await?;
            println!("MPANEL_URL={}", api.base);
            println!("MPANEL_TOKEN={token}");
            println!("MPANEL_ADMIN_EMAIL={admin_email}");
            println!("MPANEL_ADMIN_PASSWORD={admin_password}");
            println!("# Dashboard: {}/admin (sign in with the two lines above)", api.base);
            let orders = place_orders(&api, &names).await?;
            follow_orders(&api, &orders).await
        } => r.map(|()| true),
        () = app::shutdown_signal() => Ok(false),
        // The controller stopping on its own is the error to report, not what failed after it.
        ended = &mut controller => {
            stop.cancel();
            fleet.stop().await;
            let hint = if generated_key && !names.tag.is_empty() {
                " (ENCRYPTION_KEY is new on every run unless set; a database kept from an \
                 earlier run needs the key it was made with, or a fresh DATABASE_URL)"
            } else {
                ""
            };
            return match ended.context("controller task")? {
                Ok(()) => Err(anyhow::anyhow!("the controller stopped unexpectedly")),
                Err(e) => Err(e.context(format!("the controller stopped{hint}"))),
            };
        }
    };
    if let Ok(true) = outcome {
        println!(
            "# The demo keeps running: try `curl -H \"Authorization: Bearer $MPANEL_TOKEN\" $MPANEL_URL/api/agents`. Ctrl-C stops everything."
        );
        tokio::select! {
            () = app::shutdown_signal() => {}
            () = stop.cancelled() => {}
        }
    }
    stop.cancel();
    fleet.stop().await;
    let stopped = controller.await.context("controller task")?;
    outcome?;
    stopped
}

/// What the demo's servers, customer and domains are called: plain names on the fresh
/// database, names with a per-run tag on a database that may already hold them.
#[derive(Default)]
struct Names {
    tag: String,
}

impl Names {
    fn unique() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        Names {
            tag: format!("-{secs}"),
        }
    }

    fn hostname(&self, kind: PanelKind) -> String {
        format!("{kind}{}.demo.test", self.tag)
    }

    /// Each panel's server is alone in its group, so each order lands on the panel it names.
    fn group(&self, kind: PanelKind) -> String {
        format!("demo-{kind}{}", self.tag)
    }

    fn product(&self, kind: PanelKind) -> String {
        format!("Starter on {}{}", kind.product_name(), self.tag)
    }

    fn domain(&self, kind: PanelKind) -> String {
        format!("{kind}-site{}.example", self.tag)
    }

    fn email(&self) -> String {
        format!("customer{}@demo.example", self.tag)
    }
}

/// A listener on 0.0.0.0 or [::] is reached on loopback here.
fn loopback_if_unspecified(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// The simulators and the agents driving them.
#[derive(Default)]
struct Fleet {
    members: Vec<(PanelKind, SimHandle, JoinHandle<()>)>,
}

impl Fleet {
    /// For each panel kind: a simulator, its server in the controller, an agent enrolled with a
    /// one-time token and started; then waits until the controller sees every agent online.
    async fn start(
        &mut self,
        api: &Api,
        names: &Names,
        grpc_url: &str,
        state_root: &tempfile::TempDir,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        for kind in PanelKind::ALL {
            let sim_token = crypto::new_token("sim_")?;
            let mut sim_config = SimConfig::new(sim_kind(kind), sim_token.clone());
            sim_config.tls = true;
            let sim = mpanel_panelsim::start(
                sim_config,
                tokio::net::TcpListener::bind("127.0.0.1:0").await?,
            )
            .await
            .with_context(|| format!("the {kind} simulator"))?;
            let server = api
                .post(
                    "/api/servers",
                    &json!({
                        "hostname": names.hostname(kind), "ipAddress": "127.0.0.1",
                        "controlPanel": kind.as_str(), "controlPanelUrl": sim.base_url(),
                        "maxAccounts": 100, "location": "local", "group": names.group(kind),
                        "nameserver1": "ns1.demo.test", "nameserver2": "ns2.demo.test"
                    }),
                )
                .await?;
            let server_id = server["id"].as_i64().context("server id")?;
            let enrollment = api
                .post(
                    &format!("/api/servers/{server_id}/enrollment-token"),
                    &json!({}),
                )
                .await?;
            let config = AgentConfig {
                controller: Some(grpc_url.to_owned()),
                state_dir: state_root.path().join(kind.as_str()),
                accounts_path: std::env::temp_dir(),
                heartbeat_secs: 2,
                panel: Some(PanelSection {
                    kind: kind.as_str().to_owned(),
                    url: sim.base_url(),
                    user: panel_user(kind).to_owned(),
                    token_file: None,
                    token: Some(sim_token.into()),
                    // The simulator's certificate is self-signed, as local panels' often are.
                    insecure_tls: true,
                }),
                acme: None,
                metrics: None,
            };
            mpanel_agent::enroll::enroll(
                grpc_url,
                enrollment["token"].as_str().context("enrollment token")?,
                &mpanel_agent::state::StateDir::new(&config.state_dir),
            )
            .await
            .with_context(|| format!("enrolling the {kind} agent"))?;
            let shutdown = stop.clone();
            let agent = tokio::spawn(async move {
                if let Err(e) = mpanel_agent::run(config, shutdown).await {
                    tracing::error!(panel = %kind, error = %e, "the demo agent stopped");
                }
            });
            println!(
                "# {kind}: simulator at {}, agent enrolled as server {server_id}",
                sim.base_url()
            );
            self.members.push((kind, sim, agent));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let agents = api.get("/api/agents").await?;
            let online = agents["agents"]
                .as_array()
                .map_or(0, |a| a.iter().filter(|a| a["status"] == "online").count());
            if online >= self.members.len() {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "only {online} of {} agents came online within a minute: {agents}",
                self.members.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn stop(self) {
        for (_, sim, agent) in self.members {
            let _ = agent.await;
            sim.shutdown().await;
        }
    }
}

fn sim_kind(kind: PanelKind) -> SimKind {
    match kind {
        PanelKind::Cpanel => SimKind::Cpanel,
        PanelKind::Plesk => SimKind::Plesk,
        PanelKind::Directadmin => SimKind::Directadmin,
    }
}

/// The admin user each simulated panel's token belongs to.
fn panel_user(kind: PanelKind) -> &'static str {
    match kind {
        PanelKind::Cpanel => "root",
        PanelKind::Plesk | PanelKind::Directadmin => "admin",
    }
}

struct Order {
    kind: PanelKind,
    job_id: String,
    service_id: i64,
}

/// One customer, and per panel a product placed in that panel's group and one service of it.
async fn place_orders(api: &Api, names: &Names) -> anyhow::Result<Vec<Order>> {
    let customer = api
        .post(
            "/api/customers",
            &json!({"email": names.email(), "name": "Demo Customer"}),
        )
        .await?;
    let customer_id = customer["id"].as_i64().context("customer id")?;
    let mut orders = Vec::new();
    for kind in PanelKind::ALL {
        let product = api
            .post(
                "/api/products",
                &json!({
                    "name": names.product(kind), "group": names.group(kind),
                    "packages": {"cpanel": "default", "plesk": "Unlimited", "directadmin": "default"},
                    "quotas": {"diskMb": 10_240, "emailQuotaMb": 1024, "databases": 1},
                    "prices": [{"cycle": "monthly", "amount": 999, "currency": "USD"}]
                }),
            )
            .await?;
        let product_id = product["id"].as_i64().context("product id")?;
        let domain = names.domain(kind);
        let placed = api
            .post(
                "/api/services",
                &json!({"customerId": customer_id, "productId": product_id,
                        "domain": domain, "billingCycle": "monthly"}),
            )
            .await?;
        let service_id = placed["service"]["id"].as_i64().context("service id")?;
        let job_id = placed["jobId"].as_str().context("jobId")?.to_owned();
        println!("# {kind}: ordered {domain} (service {service_id}, {job_id})");
        orders.push(Order {
            kind,
            job_id,
            service_id,
        });
    }
    Ok(orders)
}

/// Prints each step once as it is recorded, until every task has finished (or two minutes
/// have passed), then each service's state.
async fn follow_orders(api: &Api, orders: &[Order]) -> anyhow::Result<()> {
    let mut printed: HashMap<&str, usize> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let mut open = 0;
        for order in orders {
            let task = api
                .get(&format!("/api/provisioning/tasks/{}", order.job_id))
                .await?;
            let steps = task["result"]["steps"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let seen = printed.entry(order.job_id.as_str()).or_default();
            for step in steps.iter().skip(*seen) {
                let status = step["status"].as_str().unwrap_or_default();
                let detail = if status == "success" {
                    summary(&step["data"])
                } else {
                    step["error"].as_str().unwrap_or_default().to_owned()
                };
                println!(
                    "[{:<11}] {} {:<13} {status:<8} {detail}",
                    order.kind.as_str(),
                    order.job_id,
                    step["step"].as_str().unwrap_or_default(),
                );
            }
            *seen = steps.len();
            if !matches!(task["status"].as_str(), Some("completed" | "failed")) {
                open += 1;
            }
        }
        if open == 0 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            println!("# some tasks are still running; see GET /api/provisioning/tasks");
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for order in orders {
        let task = api
            .get(&format!("/api/provisioning/tasks/{}", order.job_id))
            .await?;
        let service = api
            .get(&format!("/api/services/{}", order.service_id))
            .await?;
        println!(
            "# {}: {} {} -> service {} is {} (user {})",
            order.kind,
            order.job_id,
            task["status"].as_str().unwrap_or("unknown"),
            service["domain"].as_str().unwrap_or_default(),
            service["status"].as_str().unwrap_or("unknown"),
            service["username"].as_str().unwrap_or("-"),
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

/// The admin API, as `mpanelctl` or curl would use it.
struct Api {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Api {
    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let request = self.client.post(format!("{}{path}", self.base)).json(body);
        self.send("POST", path, request).await
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let request = self.client.get(format!("{}{path}", self.base));
        self.send("GET", path, request).await
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<Value> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status.is_success(), "{method} {path}: {status} {value}");
        Ok(value)
    }
}
