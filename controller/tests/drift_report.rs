//! `GET /api/servers/:id/drift` end to end: a real agent session, the cPanel driver, and a
//! simulator seeded with an orphan account, a suspension mismatch, and no account for one
//! active service.

mod fleet_support;

use fleet_support::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_report_names_the_orphan_the_missing_account_and_the_state_mismatch() {
    let c = Controller::start(&[]).await;
    let (server_id, _dir, state) = enrolled_agent(&c, "drift.example.net").await;

    let sim = start_cpanel_sim(|_| {}).await;
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let seeded = http
        .post(format!("{}/__sim/seed", sim.base_url()))
        .json(&json!({"accounts": [
            {"username": "inorder", "domain": "inorder.example", "package": "default", "suspended": false},
            {"username": "stray", "domain": "stray.example", "package": "default", "suspended": false},
            {"username": "wrongstate", "domain": "wrongstate.example", "package": "default", "suspended": false}
        ]}))
        .send()
        .await
        .unwrap();
    assert!(
        seeded.status().is_success(),
        "{}",
        seeded.text().await.unwrap()
    );

    // The controller's side: three services on this server.
    c.sql(
        "INSERT INTO customers (id, email, name, status, created_at, updated_at)
           VALUES (1, 'd@example.com', 'D', 'active', 0, 0)",
    )
    .await;
    c.sql("INSERT INTO products (id, name, created_at, updated_at) VALUES (1, 'P', 0, 0)")
        .await;
    c.sql("INSERT INTO services (customer_id, product_id, server_id, domain, username, status, billing_cycle, created_at, updated_at) VALUES
           (1, 1, (SELECT MIN(id) FROM servers), 'inorder.example', 'inorder', 'active', 'monthly', 0, 0),
           (1, 1, (SELECT MIN(id) FROM servers), 'gone.example', 'gone', 'active', 'monthly', 0, 0),
           (1, 1, (SELECT MIN(id) FROM servers), 'wrongstate.example', 'wrongstate', 'suspended', 'monthly', 0, 0)").await;

    let agent = run_panel_agent(&c, server_id, &state, cpanel_driver(&sim)).await;

    let (status, report) = c
        .request(
            Method::GET,
            &format!("/api/servers/{server_id}/drift"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{report}");
    // The three seeded accounts and the hosting company's own one the simulator starts with.
    assert_eq!(report["accountsOnPanel"], 4);
    assert_eq!(report["servicesOnServer"], 3);
    assert_eq!(report["clean"], false);
    let mut orphans: Vec<String> = report["orphans"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["username"].as_str().map(str::to_owned))
        .collect();
    orphans.sort();
    // An account no service claims is an orphan, the panel's resident one included.
    assert_eq!(orphans, [mpanel_panelsim::RESIDENT_USER, "stray"]);
    let missing: Vec<_> = report["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["username"].clone())
        .collect();
    assert_eq!(missing, [json!("gone")]);
    let mismatches = report["stateMismatches"].as_array().unwrap();
    assert_eq!(mismatches.len(), 1);
    assert_eq!(mismatches[0]["username"], "wrongstate");
    assert_eq!(mismatches[0]["serviceStatus"], "suspended");
    assert_eq!(mismatches[0]["panelSuspended"], false);

    // An unknown server is 404.
    let (status, _) = c
        .request(Method::GET, "/api/servers/9999/drift", None)
        .await;
    assert_eq!(status, 404);

    agent.stop().await;
    let (status, body) = c
        .request(
            Method::GET,
            &format!("/api/servers/{server_id}/drift"),
            None,
        )
        .await;
    assert_eq!(status, 503, "an offline agent cannot report drift: {body}");
    assert_eq!(body["error"]["code"], "agent_offline");
    sim.shutdown().await;
}
