//! The API against its own OpenAPI document, by schemathesis (PyPI package; scripts/test
//! installs it): a real controller on PostgreSQL with a real agent and a simulated cPanel,
//! holding a product, a customer and an active service, is sent generated requests for every
//! documented operation, valid and invalid, with an admin token. No answer may be a 5xx, and
//! every answer must be one its operation documents, with the documented content type, headers
//! and body schema; invalid input must be refused; a missing token must be refused.
//!
//! One operation is left out of the generated requests: `DELETE /api/tokens/{id}` could revoke
//! the token the run itself uses, after which every answer is a 401. Its answers are covered
//! by the scope and token tests (controller/tests/scopes.rs).

mod support;

use std::time::{Duration, Instant};

use mpanel_e2e::cluster::{ControllerProcess, TestDir};
use mpanel_e2e::databases::TestDatabase;
use reqwest::Method;
use serde_json::json;
use support::*;

/// Test cases per operation and phase: enough for every operation to see valid and invalid
/// input of each kind, few enough that the whole run stays within a couple of minutes.
const MAX_EXAMPLES: &str = "20";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let dir = TestDir::create("contract");
    let db = TestDatabase::create().await;
    let controller =
        ControllerProcess::start(&dir, "controller", &[("DATABASE_URL", &db.url)]).await;
    let fleet = servers(&dir, &[&controller], &[("cpanel", &[])]).await;

    // Records for the generated requests to find: ids start at 1, and the generator tries
    // small ids first.
    let (status, product) = controller
        .api(
            Method::POST,
            "/api/products",
            Some(json!({
                "name": "Contract plan",
                "group": "default",
                "packages": {"cpanel": "starter", "plesk": "Unlimited", "directadmin": "default"},
                "quotas": {"diskMb": 1024, "emailQuotaMb": 256, "databases": 2},
                "prices": [{"cycle": "monthly", "amount": 500, "currency": "USD"}]
            })),
        )
        .await;
    assert_eq!(status, 201, "{product}");
    let (status, customer) = controller
        .api(
            Method::POST,
            "/api/customers",
            Some(json!({"email": "owner@contract.example", "name": "Contract Owner"})),
        )
        .await;
    assert_eq!(status, 201, "{customer}");
    let (status, ordered) = controller
        .api(
            Method::POST,
            "/api/services",
            Some(json!({
                "customerId": customer["id"],
                "productId": product["id"],
                "domain": "contract.example",
                "billingCycle": "monthly"
            })),
        )
        .await;
    assert_eq!(status, 201, "{ordered}");
    let service = ordered["service"]["id"].as_i64().unwrap();
    dir.wait_for(Duration::from_secs(30), "the service active", async || {
        let (_, s) = controller
            .api(Method::GET, &format!("/api/services/{service}"), None)
            .await;
        if s["status"] == "active" {
            Ok(())
        } else {
            Err(s.to_string())
        }
    })
    .await;
    let (status, made) = controller
        .api(
            Method::POST,
            "/api/tokens",
            Some(json!({"name": "contract", "scopes": ["read", "write", "billing", "fleet"]})),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().unwrap().to_owned();

    let started = Instant::now();
    let report = dir.path().join("schemathesis");
    let out = tokio::process::Command::new("python3")
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("{}/api/openapi.json", controller.http_url()))
        .args(["--url", &controller.http_url()])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance,\
             negative_data_rejection,ignored_auth,unsupported_method",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", "20261201"])
        .args(["--workers", "2"])
        .args(["--request-timeout", "30"])
        .args(["--exclude-path", "/api/tokens/{id}"])
        .args(["--generation-database", "none"])
        .args(["--report", "junit", "--report-dir"])
        .arg(&report)
        .args(["--no-color", "--output-truncate", "false"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect(
            "schemathesis cannot be run: install the PyPI package with \
             `python3 -m pip install schemathesis` (scripts/test does)",
        );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "schemathesis took {:.1}s\n{}",
        started.elapsed().as_secs_f64(),
        stdout
            .lines()
            .filter(|l| l.contains("operations")
                || l.contains("test cases")
                || l.contains("passed"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        out.status.success(),
        "schemathesis found problems (exit {:?}):\n{stdout}\n{stderr}\ncontroller log:\n{}",
        out.status.code(),
        dir.log_tails(40)
    );
    // It really ran every operation: the summary counts them.
    assert!(
        stdout.contains("operations") && !stdout.contains("0 operations"),
        "{stdout}"
    );
    drop(fleet);
    drop(controller);
    db.drop_database().await;
}
