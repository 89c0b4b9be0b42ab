//! Helpers for the API route tests: a controller on a fresh database, a `Hand` that plays the
//! provisioning worker through a second store handle, raw requests with or without a token,
//! and the contract's error body checked in one place.

#![allow(dead_code)]

use mpanel_common::ids::TaskId;
use mpanel_controller::store::queue::ServiceChange;
use mpanel_controller::store::{self, DynStore, Task};
use reqwest::Method;
use serde_json::{Value, json};

use crate::fleet_support::Controller;

/// A controller on SQLite (or on `database_url`), its workers off so no task moves unless a
/// test moves it.
pub async fn start_with(database_url: Option<&str>) -> Controller {
    // Workers cannot be switched off; one, backing off for minutes once it finds no server,
    // leaves tasks where the tests put them.
    let mut overrides = vec![
        ("PROVISIONING_WORKERS", "1"),
        ("PROVISIONING_RETRY_BASE_MS", "600000"),
    ];
    if let Some(url) = database_url {
        overrides.push(("DATABASE_URL", url));
    }
    Controller::start(&overrides).await
}

pub async fn start() -> Controller {
    start_with(None).await
}

/// Plays the provisioning worker through a second handle on the controller's database. The
/// controller's own workers run too (they cannot be switched off), so a test takes the exact
/// task it means with one conditional UPDATE instead of racing them with `claim_next_task`.
pub struct Hand {
    pub store: DynStore,
    sqlite: Option<sqlx::SqlitePool>,
    pg: Option<sqlx::PgPool>,
}

pub const WORKER: &str = "test-worker";

/// Takes a task that is pending (due or not) or whose lease expired, for an hour.
const SEIZE_SQL: &str = "UPDATE provisioning_tasks
     SET status = 'processing', lease_holder = 'test-worker', lease_expires_at = $2 + 3600000,
         attempts = attempts + 1, updated_at = $2
     WHERE id = $1
       AND (status = 'pending' OR (status = 'processing' AND lease_expires_at < $2))";

impl Hand {
    pub async fn new(c: &Controller) -> Hand {
        let url = c.env["DATABASE_URL"].clone();
        let store = store::connect(&url).await.unwrap();
        if url.starts_with("sqlite:") {
            Hand {
                store,
                sqlite: Some(sqlx::SqlitePool::connect(&url).await.unwrap()),
                pg: None,
            }
        } else {
            Hand {
                store,
                sqlite: None,
                pg: Some(sqlx::PgPool::connect(&url).await.unwrap()),
            }
        }
    }

    async fn seize_once(&self, id: i64) -> u64 {
        let now = store::now_ms();
        if let Some(pool) = &self.sqlite {
            sqlx::query(SEIZE_SQL)
                .bind(id)
                .bind(now)
                .execute(pool)
                .await
                .unwrap()
                .rows_affected()
        } else {
            let pool = self.pg.as_ref().unwrap();
            sqlx::query(SEIZE_SQL)
                .bind(id)
                .bind(now)
                .execute(pool)
                .await
                .unwrap()
                .rows_affected()
        }
    }

    /// Takes `job_id` from the queue, waiting while a controller worker holds it. `None` when
    /// the task finished meanwhile.
    pub async fn seize(&self, job_id: &str) -> Option<Task> {
        let id: i64 = job_id.strip_prefix("job_").unwrap().parse().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if self.seize_once(id).await == 1 {
                return Some(self.store.get_task(TaskId::new(id)).await.unwrap());
            }
            let task = self.store.get_task(TaskId::new(id)).await.unwrap();
            if !task.status.is_open() {
                return None;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{job_id} stayed held by a worker"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Drives `job_id` to `failed`, as a worker out of attempts would.
    pub async fn fail(&self, job_id: &str, error: &str) {
        let task = self.seize(job_id).await.expect("an open task");
        self.store.fail_task(task.id, WORKER, error).await.unwrap();
    }

    /// Drives `job_id` to `completed`, changing its service as the worker would.
    pub async fn complete(&self, job_id: &str, change: ServiceChange) {
        let task = self.seize(job_id).await.expect("an open task");
        self.store
            .complete_service_task(task.id, WORKER, change)
            .await
            .unwrap();
    }

    /// Completes `job_id` unless the controller's worker finished it first; says which.
    pub async fn complete_if_open(&self, job_id: &str, change: ServiceChange) -> bool {
        let Some(task) = self.seize(job_id).await else {
            return false;
        };
        self.store
            .complete_service_task(task.id, WORKER, change)
            .await
            .unwrap();
        true
    }

    /// Finishes `job_id` whatever the controller's worker made of it, so the service has no
    /// open task afterwards.
    pub async fn settle(&self, job_id: &str) {
        if let Some(task) = self.seize(job_id).await {
            self.store.complete_task(task.id, WORKER).await.unwrap();
        }
    }

    pub async fn task(&self, job_id: &str) -> Task {
        let id: i64 = job_id.strip_prefix("job_").unwrap().parse().unwrap();
        self.store.get_task(TaskId::new(id)).await.unwrap()
    }
}

/// How a request authenticates.
#[derive(Debug, Clone, Copy)]
pub enum Auth {
    Admin,
    Missing,
    Wrong,
}

/// What a request carries.
#[derive(Debug, Clone)]
pub enum Body {
    None,
    Json(Value),
    /// Sent as-is with `Content-Type: application/json`.
    Raw(String),
    /// Sent as-is without a content type.
    Plain(String),
}

pub async fn send(
    c: &Controller,
    method: Method,
    path: &str,
    body: Body,
    auth: Auth,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method, format!("{}{path}", c.http));
    req = match auth {
        Auth::Admin => req.bearer_auth(&c.token),
        Auth::Missing => req,
        Auth::Wrong => req.bearer_auth("mpa_not-a-real-token"),
    };
    req = match body {
        Body::None => req,
        Body::Json(v) => req.json(&v),
        Body::Raw(s) => req
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(s),
        Body::Plain(s) => req.body(s),
    };
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub async fn get(c: &Controller, path: &str) -> Value {
    let (status, body) = c.request(Method::GET, path, None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Asserts the contract's error body: `{"error":{"code","message","field"}}`.
#[track_caller]
pub fn assert_error(got: &(u16, Value), status: u16, code: &str, field: Option<&str>) {
    let (got_status, body) = got;
    assert_eq!(*got_status, status, "{body}");
    let error = &body["error"];
    assert_eq!(error["code"], code, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    match field {
        Some(f) => assert_eq!(error["field"], f, "{body}"),
        None => assert!(error["field"].is_null(), "{body}"),
    }
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["error"], "{body}");
}

/// How many products, customers, services and tasks exist: proof that a refusal wrote nothing.
pub async fn counts(c: &Controller) -> [usize; 4] {
    let len = |v: &Value, key: &str| v[key].as_array().unwrap().len();
    [
        len(&get(c, "/api/products").await, "products"),
        len(&get(c, "/api/customers?limit=500").await, "customers"),
        len(&get(c, "/api/services?limit=500").await, "services"),
        len(&get(c, "/api/provisioning/tasks?limit=500").await, "tasks"),
    ]
}

pub fn product_body(name: &str, group: &str) -> Value {
    json!({
        "name": name,
        "group": group,
        "packages": {"cpanel": "starter", "plesk": "Unlimited", "directadmin": "default"},
        "quotas": {"diskMb": 1024, "emailQuotaMb": 256, "databases": 2},
        "prices": [
            {"cycle": "monthly", "amount": 999, "currency": "USD"},
            {"cycle": "annually", "amount": 9990, "currency": "USD"}
        ]
    })
}

pub async fn product(c: &Controller, name: &str, group: &str) -> i64 {
    let (status, body) = c
        .request(
            Method::POST,
            "/api/products",
            Some(product_body(name, group)),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

pub async fn customer(c: &Controller, email: &str) -> i64 {
    let (status, body) = c
        .request(
            Method::POST,
            "/api/customers",
            Some(json!({"email": email, "name": "Ann Example"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

/// Orders a monthly service; returns (service id, job id).
pub async fn order(c: &Controller, customer: i64, product: i64, domain: &str) -> (i64, String) {
    let (status, body) = c
        .request(
            Method::POST,
            "/api/services",
            Some(json!({
                "customerId": customer,
                "productId": product,
                "domain": domain,
                "billingCycle": "monthly"
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (
        body["service"]["id"].as_i64().unwrap(),
        body["jobId"].as_str().unwrap().to_owned(),
    )
}

/// A customer, a product and one ordered service: (customer, product, service, job id).
pub async fn one_order(c: &Controller, domain: &str) -> (i64, i64, i64, String) {
    let customer = customer(c, &format!("owner@{domain}")).await;
    let product = product(c, &format!("Plan for {domain}"), "default").await;
    let (service, job) = order(c, customer, product, domain).await;
    (customer, product, service, job)
}
