//! What the resilience tests share: a fleet of real processes on one PostgreSQL database, orders
//! placed through the controller's store library (the same transaction the API uses), and the
//! checks of the invariants — every order active (or visibly failed), one account per service.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use mpanel_common::status::BillingCycle;
use mpanel_controller::store::{self, DynStore, NewCustomer, NewProduct, NewService, Price};
use mpanel_e2e::cluster::{AgentProcess, ControllerProcess, SimProcess, TestDir};
use mpanel_e2e::databases::TestDatabase;
use sqlx::PgPool;

pub const KINDS: [&str; 3] = ["cpanel", "plesk", "directadmin"];

/// One hosting server: its simulated panel, its agent, and its id in the controller.
pub struct Server {
    pub id: i64,
    pub sim: SimProcess,
    pub agent: AgentProcess,
}

/// Creates a server for each `(kind, simulator args)`, enrolls an agent for it against
/// `controllers[i % len]`, and waits until each agent is online there.
pub async fn servers(
    dir: &TestDir,
    controllers: &[&ControllerProcess],
    panels: &[(&str, &[&str])],
) -> Vec<Server> {
    let mut out = Vec::new();
    for (i, (kind, args)) in panels.iter().enumerate() {
        let sim = SimProcess::start(dir, &format!("sim{i}-{kind}"), kind, args).await;
        let controller = controllers[i % controllers.len()];
        let id = controller
            .create_server(&format!("web{i}.example.net"), &sim)
            .await;
        let agent =
            AgentProcess::enroll_and_start(dir, &format!("agent{i}"), controller, &sim, id).await;
        out.push(Server { id, sim, agent });
    }
    for (i, s) in out.iter().enumerate() {
        controllers[i % controllers.len()]
            .wait_for_agent_online(s.id, Duration::from_secs(20))
            .await;
    }
    out
}

/// One controller process, `controller`, on `db`, with eight provisioning workers.
pub async fn controller_on(dir: &TestDir, db: &TestDatabase) -> ControllerProcess {
    ControllerProcess::start(
        dir,
        "controller",
        &[("DATABASE_URL", &db.url), ("PROVISIONING_WORKERS", "8")],
    )
    .await
}

/// The orders of one test, and direct reads of the database behind them.
pub struct Orders {
    pub store: DynStore,
    pub pool: PgPool,
    customer: mpanel_common::ids::CustomerId,
    product: mpanel_common::ids::ProductId,
}

impl Orders {
    pub async fn open(db: &TestDatabase) -> Orders {
        let store = store::connect(&db.url).await.expect("store");
        store.migrate().await.expect("migrations");
        let pool = PgPool::connect(&db.url).await.expect("pool");
        let customer = store
            .create_customer(
                &NewCustomer {
                    email: "owner@orders.example".into(),
                    name: "Owner".into(),
                },
                "e2e",
            )
            .await
            .expect("customer");
        let product = store
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
                "e2e",
            )
            .await
            .expect("product");
        Orders {
            store,
            pool,
            customer: customer.id,
            product: product.id,
        }
    }

    /// Places `n` paid orders (service + provisioning task, `max_retries` 3). Domains are
    /// `q<tag><00000>.example`, so each order's generated username is its own (the first eight
    /// characters differ).
    pub async fn place(&self, tag: &str, n: usize) {
        assert_eq!(tag.len(), 2, "two-letter tags keep usernames distinct");
        let domains: Vec<String> = (0..n).map(|i| format!("q{tag}{i:05}.example")).collect();
        self.place_domains(&domains).await;
    }

    /// Places a paid order for each domain, as [`Orders::place`] does.
    pub async fn place_domains(&self, domains: &[impl AsRef<str>]) {
        // Eight at a time, as a busy shop's checkouts would arrive.
        const CONCURRENT: usize = 8;
        let mut set = tokio::task::JoinSet::new();
        for lane in 0..CONCURRENT {
            let store = self.store.clone();
            let (customer, product) = (self.customer, self.product);
            let mine: Vec<String> = domains
                .iter()
                .skip(lane)
                .step_by(CONCURRENT)
                .map(|d| d.as_ref().to_owned())
                .collect();
            set.spawn(async move {
                for domain in mine {
                    let new = NewService {
                        customer_id: customer,
                        product_id: product,
                        domain,
                        billing_cycle: BillingCycle::Monthly,
                        max_retries: 3,
                        next_due_at: None,
                        billing_day: None,
                    };
                    store
                        .create_service_with_task(&new, "e2e")
                        .await
                        .expect("order");
                }
            });
        }
        while let Some(r) = set.join_next().await {
            r.expect("placing orders");
        }
    }

    /// Task count by status.
    pub async fn task_counts(&self) -> BTreeMap<String, i64> {
        sqlx::query_as::<_, (String, i64)>(
            "SELECT status, COUNT(*) FROM provisioning_tasks GROUP BY status",
        )
        .fetch_all(&self.pool)
        .await
        .expect("task counts")
        .into_iter()
        .collect()
    }

    pub async fn count(&self, status: &str) -> i64 {
        self.task_counts().await.get(status).copied().unwrap_or(0)
    }

    /// Waits until every task is `completed` or `failed`.
    pub async fn wait_all_finished(&self, dir: &TestDir, within: Duration) {
        dir.wait_for(within, "every task completed or failed", async || {
            let counts = self.task_counts().await;
            let open: i64 = counts
                .iter()
                .filter(|(s, _)| !matches!(s.as_str(), "completed" | "failed"))
                .map(|(_, n)| n)
                .sum();
            if open == 0 {
                Ok(())
            } else {
                Err(format!("{counts:?}"))
            }
        })
        .await;
    }

    /// Waits until at least `n` tasks are completed.
    pub async fn wait_completed_at_least(&self, dir: &TestDir, n: i64, within: Duration) {
        dir.wait_for(within, &format!("{n} completed tasks"), async || {
            let counts = self.task_counts().await;
            if counts.get("completed").copied().unwrap_or(0) >= n {
                Ok(())
            } else {
                Err(format!("{counts:?}"))
            }
        })
        .await;
    }

    /// Services: (id, status, username, server id, provisioning error).
    pub async fn services(&self) -> Vec<ServiceRow> {
        sqlx::query_as::<_, ServiceRow>(
            "SELECT id, status, username, server_id, provisioning_error FROM services ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .expect("services")
    }

    /// Tasks: (id, service id, status, attempts, max retries, error).
    pub async fn tasks(&self) -> Vec<TaskRow> {
        sqlx::query_as::<_, TaskRow>(
            "SELECT id, service_id, status, attempts, max_retries, error
             FROM provisioning_tasks ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .expect("tasks")
    }

    /// How many tasks needed each number of attempts.
    pub async fn attempts_histogram(&self) -> BTreeMap<i32, usize> {
        let mut h = BTreeMap::new();
        for t in self.tasks().await {
            *h.entry(t.attempts).or_default() += 1;
        }
        h
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ServiceRow {
    pub id: i64,
    pub status: String,
    pub username: Option<String>,
    pub server_id: Option<i64>,
    pub provisioning_error: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskRow {
    pub id: i64,
    pub service_id: i64,
    pub status: String,
    pub attempts: i32,
    pub max_retries: i32,
    pub error: Option<String>,
}

/// Every service `active`, and each simulator holds exactly the accounts of the services placed
/// on its server: one per service, none extra, none twice.
pub async fn assert_all_active_with_one_account_each(
    dir: &TestDir,
    orders: &Orders,
    servers: &[Server],
    expected: usize,
) {
    let services = orders.services().await;
    let not_active: Vec<_> = services.iter().filter(|s| s.status != "active").collect();
    if services.len() != expected || !not_active.is_empty() {
        let tasks = orders.tasks().await;
        let stuck: Vec<_> = tasks.iter().filter(|t| t.status != "completed").collect();
        dir.fail(&format!(
            "expected {expected} active services, have {} services, {} not active: {:?}\n\
             tasks not completed: {stuck:?}",
            services.len(),
            not_active.len(),
            not_active.iter().take(10).collect::<Vec<_>>()
        ));
    }
    assert_one_account_per_service(dir, &services, servers).await;
}

/// Each simulator's accounts are exactly the usernames of the services on its server (placed
/// services without an account are reported too).
pub async fn assert_one_account_per_service(
    dir: &TestDir,
    services: &[ServiceRow],
    servers: &[Server],
) {
    let mut expected: HashMap<i64, Vec<String>> = HashMap::new();
    for s in services.iter().filter(|s| s.status == "active") {
        let (Some(server), Some(username)) = (s.server_id, s.username.clone()) else {
            dir.fail(&format!("active service without server or username: {s:?}"));
        };
        expected.entry(server).or_default().push(username);
    }
    for server in servers {
        let mut on_panel = server.sim.usernames().await;
        on_panel.sort();
        let mut duplicates = on_panel.clone();
        duplicates.dedup();
        if duplicates.len() != on_panel.len() {
            dir.fail(&format!(
                "{} holds an account twice: {on_panel:?}",
                server.sim.kind
            ));
        }
        let mut wanted = expected.remove(&server.id).unwrap_or_default();
        wanted.sort();
        // Services that failed visibly may have left an account; only active ones are
        // required, and nothing may be on the panel that no service owns.
        let owned: std::collections::HashSet<&str> = services
            .iter()
            .filter(|s| s.server_id == Some(server.id))
            .filter_map(|s| s.username.as_deref())
            .collect();
        let missing: Vec<_> = wanted
            .iter()
            .filter(|u| on_panel.binary_search(u).is_err())
            .collect();
        let extra: Vec<_> = on_panel
            .iter()
            .filter(|u| !owned.contains(u.as_str()))
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            dir.fail(&format!(
                "{} (server {}): accounts missing for active services {missing:?}, accounts \
                 no service owns {extra:?} ({} on the panel, {} active services here)",
                server.sim.kind,
                server.id,
                on_panel.len(),
                wanted.len()
            ));
        }
    }
}

/// Seconds since `start`, for the timing lines the tests print.
pub fn secs(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}
