//! A request can be followed: its `x-request-id` (the client's, or one the controller makes)
//! comes back in the response, is kept on the task it queued and on its activity rows, and the
//! JSON log lines of the task's run carry it beside the task id.

mod api_support;
mod fleet_support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleet_support::Controller;
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<Value> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// JSON lines, as `LOG_FORMAT=json` writes them.
fn capture_json_logs() -> Captured {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "info,mpanel_controller=debug",
        ))
        .with_writer(move || writer.clone())
        .try_init()
        .expect("this test binary installs the only subscriber");
    captured
}

async fn post(c: &Controller, path: &str, body: Value, id: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", c.http))
        .bearer_auth(&c.token)
        .json(&body);
    if let Some(id) = id {
        req = req.header("x-request-id", id);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_followed_into_its_task_its_activity_rows_and_its_logs() {
    let logs = capture_json_logs();
    let c = Controller::start(&[("PROVISIONING_RETRY_BASE_MS", "100")]).await;
    let customer = api_support::customer(&c, "owner@follow.example").await;
    let product = api_support::product(&c, "Plan", "default").await;

    let resp = post(
        &c,
        "/api/services",
        json!({"customerId": customer, "productId": product, "domain": "follow.example", "billingCycle": "monthly"}),
        Some("order-7f3a"),
    )
    .await;
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["x-request-id"], "order-7f3a");
    let body: Value = resp.json().await.unwrap();
    let service = body["service"]["id"].as_i64().unwrap();

    // The task remembers the request, and so does the order's activity row.
    let (_, tasks) = c
        .request(
            Method::GET,
            &format!("/api/provisioning/tasks?serviceId={service}"),
            None,
        )
        .await;
    let task = &tasks["tasks"][0];
    assert_eq!(task["requestId"], "order-7f3a", "{tasks}");
    let task_id = task["id"].as_i64().unwrap();
    let (_, log) = c
        .request(
            Method::GET,
            &format!("/api/activity?target=service:{service}"),
            None,
        )
        .await;
    assert!(
        log["activity"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["requestId"] == "order-7f3a"),
        "{log}"
    );

    // No server exists, so the worker's attempt waits; its log lines carry both ids.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let of_task: Vec<Value> = logs
            .lines()
            .into_iter()
            .filter(|l| {
                l["spans"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s["task_id"] == task_id))
            })
            .collect();
        if !of_task.is_empty() {
            for line in &of_task {
                let span = line["spans"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|s| s["name"] == "task")
                    .unwrap();
                assert_eq!(span["request_id"], "order-7f3a", "{line}");
                assert_eq!(span["kind"], "provision", "{line}");
            }
            break;
        }
        assert!(Instant::now() < deadline, "no log line of task {task_id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The request's own lines carry its id too.
    assert!(
        logs.lines()
            .iter()
            .any(|l| l["spans"].as_array().is_some_and(|s| s
                .iter()
                .any(|s| s["name"] == "request" && s["request_id"] == "order-7f3a"))),
        "no line of the request"
    );

    // An id that could forge a log line is replaced by one of the controller's.
    let resp = post(
        &c,
        "/api/customers",
        json!({"email": "second@follow.example", "name": "Second"}),
        Some("bad id; forged=1"),
    )
    .await;
    let made = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(made.starts_with("req_") && made.len() == 28, "{made}");
    // Without one, every answer still names its request, a refusal included.
    let resp = reqwest::Client::new()
        .get(format!("{}/api/services", c.http))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let other = resp.headers()["x-request-id"].to_str().unwrap();
    assert!(other.starts_with("req_") && other != made, "{other}");
}
