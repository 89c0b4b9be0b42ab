//! Shared harness for the fleet tests: a controller running in-process on loopback ports (real
//! TLS, real SQLite), admin HTTP helpers, and agents assembled by the agent library's own wiring
//! (`mpanel_agent::wiring`, what `mpanel-agent run` uses), with a driver or issuer of the
//! test's own put in through `Parts` and a faster reconnect backoff.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpanel_agent::config::AgentConfig;
use mpanel_agent::core::Backoff;
use mpanel_agent::session::{AgentOptions, run as run_agent};
use mpanel_agent::state::StateDir;
use mpanel_agent::wiring::{Panel, Parts, session_options};
use mpanel_controller::app::{self, Listeners};
use mpanel_controller::config::Config;
use mpanel_controller::crypto;
use mpanel_e2e::databases::TestSqlite;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// A concrete path for a route template: every `{param}` becomes `value`.
pub fn concrete(template: &str, value: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        out.push_str(value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

pub struct Controller {
    pub http: String,
    pub grpc_port: u16,
    /// The gRPC socket, bound once and kept across restarts: each run listens on a copy of it,
    /// so the port cannot be taken by anyone else while the controller is down.
    grpc_socket: std::net::TcpListener,
    pub token: String,
    pub db: TestSqlite,
    pub env: HashMap<String, String>,
    stop: Option<(CancellationToken, JoinHandle<anyhow::Result<()>>)>,
    client: reqwest::Client,
}

impl Controller {
    /// Starts a controller with fast fleet timings unless `overrides` says otherwise.
    pub async fn start(overrides: &[(&str, &str)]) -> Controller {
        init();
        let db = TestSqlite::create();
        let mut env: HashMap<String, String> = [
            ("DATABASE_URL", db.url.as_str()),
            ("ENCRYPTION_KEY", KEY),
            ("GRPC_SERVER_NAMES", "localhost,127.0.0.1"),
            ("AGENT_HEARTBEAT_SECS", "1"),
            ("AGENT_HEARTBEAT_SUSPECT_SECS", "3"),
            ("AGENT_OFFLINE_SECS", "5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in overrides {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        let config = Config::from_sources(&env, &HashMap::new(), None).expect("config");
        let store = app::open_store(&config).await.expect("store");
        let token = crypto::new_token("mpa_").unwrap();
        store
            .create_admin_token("test", &crypto::token_hash(&token))
            .await
            .unwrap();
        store.close().await;
        let grpc_socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the gRPC port");
        grpc_socket
            .set_nonblocking(true)
            .expect("non-blocking socket");
        let mut c = Controller {
            http: String::new(),
            grpc_port: grpc_socket.local_addr().unwrap().port(),
            grpc_socket,
            token,
            db,
            env,
            stop: None,
            client: reqwest::Client::new(),
        };
        c.launch().await;
        c
    }

    async fn launch(&mut self) {
        let config = Config::from_sources(&self.env, &HashMap::new(), None).expect("config");
        let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc =
            TcpListener::from_std(self.grpc_socket.try_clone().expect("copy the gRPC socket"))
                .expect("gRPC listener");
        self.http = format!("http://{}", http.local_addr().unwrap());
        let cancel = CancellationToken::new();
        let stopped = cancel.clone();
        let handle = tokio::spawn(app::run(
            config,
            Listeners {
                http,
                grpc,
                metrics: None,
            },
            async move {
                stopped.cancelled().await;
            },
        ));
        self.stop = Some((cancel, handle));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(r) = self
                .client
                .get(format!("{}/healthz", self.http))
                .send()
                .await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("controller did not come up");
    }

    pub fn grpc_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.grpc_port)
    }

    pub async fn stop(&mut self) {
        if let Some((cancel, handle)) = self.stop.take() {
            cancel.cancel();
            handle.await.unwrap().unwrap();
        }
    }

    /// Stops and starts again on the same gRPC port and database. Agents dialling while it is
    /// down wait in the socket's backlog until the new run accepts them.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.http))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn create_server(&self, hostname: &str) -> i64 {
        let (status, body) = self
            .request(
                reqwest::Method::POST,
                "/api/servers",
                Some(json!({
                    "hostname": hostname,
                    "ipAddress": "192.0.2.10",
                    "controlPanel": "cpanel",
                    "controlPanelUrl": "https://127.0.0.1:2087",
                    "maxAccounts": 500,
                    "location": "test",
                    "group": "default",
                    "nameserver1": "ns1.example.net",
                    "nameserver2": "ns2.example.net"
                })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_i64().unwrap()
    }

    pub async fn enrollment_token(&self, server_id: i64) -> String {
        let (status, body) = self
            .request(
                reqwest::Method::POST,
                &format!("/api/servers/{server_id}/enrollment-token"),
                None,
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    pub async fn agent(&self, server_id: i64) -> Value {
        let (status, body) = self
            .request(reqwest::Method::GET, "/api/agents", None)
            .await;
        assert_eq!(status, 200, "{body}");
        body["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["serverId"] == server_id)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Polls `/api/agents` until `check` holds for the agent, or panics after `within`.
    pub async fn wait_for_agent(
        &self,
        server_id: i64,
        within: Duration,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let a = self.agent(server_id).await;
            if check(&a) {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {a}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn sql(&self, query: &'static str) {
        let pool = sqlx::SqlitePool::connect(&self.db.url).await.unwrap();
        sqlx::query(query).execute(&pool).await.unwrap();
        pool.close().await;
    }

    pub async fn ca(&self) -> mpanel_controller::fleet::CertificateAuthority {
        let config = Config::from_sources(&self.env, &HashMap::new(), None).unwrap();
        let store = app::open_store(&config).await.unwrap();
        let cipher = crypto::Cipher::new(config.encryption_keys.as_ref().unwrap());
        let ca = mpanel_controller::fleet::CertificateAuthority::load_or_create(&store, &cipher)
            .await
            .unwrap();
        store.close().await;
        ca
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Some((cancel, _)) = self.stop.take() {
            cancel.cancel();
        }
    }
}

pub fn state_dir() -> (tempfile::TempDir, StateDir) {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path().join("state"));
    (dir, state)
}

/// Enrolls a fresh agent for a new server; returns (server id, state).
pub async fn enrolled_agent(c: &Controller, hostname: &str) -> (i64, tempfile::TempDir, StateDir) {
    let id = c.create_server(hostname).await;
    let token = c.enrollment_token(id).await;
    let (dir, state) = state_dir();
    let e = mpanel_agent::enroll::enroll(&c.grpc_url(), &token, &state)
        .await
        .expect("enroll");
    assert_eq!(e.server_id, id);
    (id, dir, state)
}

pub struct RunningAgent {
    pub cancel: CancellationToken,
    pub handle: JoinHandle<Result<(), mpanel_agent::session::RunError>>,
}

impl RunningAgent {
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.handle.await;
    }
}

/// The configuration an agent under test runs with: this controller, this state, 1 s heartbeats.
pub fn agent_config(controller: &str, state: &StateDir) -> AgentConfig {
    AgentConfig {
        controller: Some(controller.to_owned()),
        state_dir: state.dir().to_owned(),
        accounts_path: PathBuf::from("/"),
        heartbeat_secs: 1,
        ..AgentConfig::default()
    }
}

/// The session `mpanel-agent run` would start with `parts`, reconnecting faster than in
/// production so tests of restarts and rejections stay short.
pub fn agent_options_with(controller: &str, state: &StateDir, parts: Parts) -> AgentOptions {
    let mut options =
        session_options(&agent_config(controller, state), parts).expect("agent wiring");
    options.backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
    options
}

/// An agent without a panel (it answers `ping` and `echo`), on a server registered as cPanel.
pub fn agent_options(controller: &str, state: &StateDir) -> AgentOptions {
    let mut options = agent_options_with(controller, state, Parts::default());
    options.panel_kind = "cpanel".into();
    options
}

/// `Parts` with the cPanel driver `driver` (and no ACME issuer).
pub fn cpanel_parts(driver: Arc<dyn mpanel_agent::panel::ControlPanel>) -> Parts {
    Parts {
        panel: Some(Panel {
            kind: mpanel_agent::panel::PanelKind::Cpanel,
            driver,
        }),
        acme: None,
    }
}

pub fn start_agent(controller: &str, state: &StateDir) -> RunningAgent {
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(run_agent(agent_options(controller, state), cancel.clone()));
    RunningAgent { cancel, handle }
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// Starts a simulated cPanel over HTTPS (`configure` may adjust the defaults); its token is
/// `sim-token`.
pub async fn start_cpanel_sim(
    configure: impl FnOnce(&mut mpanel_panelsim::SimConfig),
) -> mpanel_panelsim::SimHandle {
    let mut config = mpanel_panelsim::SimConfig::new(mpanel_panelsim::SimKind::Cpanel, "sim-token");
    config.tls = true;
    configure(&mut config);
    mpanel_panelsim::start(config, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the panel simulator did not start: {e:#} (a simulator with a mariadb_url needs \
                 MariaDB: start it or point MPANEL_TEST_MARIADB_URL at one)"
            )
        })
}

/// The cPanel driver for a simulator started by `start_cpanel_sim`.
pub fn cpanel_driver(
    sim: &mpanel_panelsim::SimHandle,
) -> Arc<dyn mpanel_agent::panel::ControlPanel> {
    mpanel_agent::panel::build_driver_with(mpanel_agent::panel::PanelConfig::new(
        mpanel_agent::panel::PanelKind::Cpanel,
        &sim.base_url(),
        "root",
        "sim-token".into(),
        true,
    ))
    .unwrap()
}

/// Runs the agent of `server_id` with `options` and waits until the controller sees it online.
pub async fn run_agent_until_online(
    c: &Controller,
    server_id: i64,
    options: AgentOptions,
) -> RunningAgent {
    let cancel = CancellationToken::new();
    let agent = RunningAgent {
        cancel: cancel.clone(),
        handle: tokio::spawn(run_agent(options, cancel)),
    };
    c.wait_for_agent(server_id, Duration::from_secs(10), "online", |a| {
        a["status"] == "online"
    })
    .await;
    agent
}

/// Runs the agent of `server_id` with the panel commands answered by `driver`.
pub async fn run_panel_agent(
    c: &Controller,
    server_id: i64,
    state: &StateDir,
    driver: Arc<dyn mpanel_agent::panel::ControlPanel>,
) -> RunningAgent {
    let options = agent_options_with(&c.grpc_url(), state, cpanel_parts(driver));
    run_agent_until_online(c, server_id, options).await
}

/// A new customer's order through the store (the first product, made when there is none):
/// the `pending` service's provisioning task.
pub async fn store_order(
    store: &mpanel_controller::store::DynStore,
    domain: &str,
) -> mpanel_controller::store::Task {
    use mpanel_common::status::BillingCycle;
    use mpanel_controller::store::{NewCustomer, NewProduct, NewService, Price};

    let customer = store
        .create_customer(
            &NewCustomer {
                email: format!("owner@{domain}"),
                name: "Owner".into(),
            },
            "test",
        )
        .await
        .unwrap();
    let product = match store.list_products().await.unwrap().into_iter().next() {
        Some(p) => p,
        None => store
            .create_product(
                &NewProduct {
                    name: "Basic".into(),
                    server_group: "default".into(),
                    package_cpanel: "default".into(),
                    package_plesk: "Unlimited".into(),
                    package_directadmin: "default".into(),
                    disk_mb: 1024,
                    email_quota_mb: 256,
                    databases: 1,
                    tax_rate_bp: 0,
                    backup_schedule: mpanel_common::status::BackupSchedule::None,
                    prices: vec![Price {
                        billing_cycle: BillingCycle::Monthly,
                        amount_minor: 500,
                        currency: "USD".into(),
                    }],
                },
                "test",
            )
            .await
            .unwrap(),
    };
    let new = NewService {
        customer_id: customer.id,
        product_id: product.id,
        domain: domain.to_owned(),
        billing_cycle: BillingCycle::Monthly,
        max_retries: 3,
        next_due_at: None,
        billing_day: None,
    };
    store
        .create_service_with_task(&new, "test")
        .await
        .unwrap()
        .1
}
