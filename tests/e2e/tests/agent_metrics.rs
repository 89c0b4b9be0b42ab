//! The agent's own metrics over a real session: the `mpanel-agent run` process with
//! `[metrics] listen` serves its session state, counts a reconnect when the controller
//! restarts under it, and times the commands it carries out.

mod support;

use std::time::Duration;

use mpanel_e2e::cluster::{ControllerProcess, TestDir};
use mpanel_e2e::databases::TestSqlite;
use mpanel_e2e::ports::free_port;
use reqwest::Method;
use serde_json::json;
use support::*;

/// The value of one series (name and labels exactly as rendered), 0 when absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(url: &str) -> Result<String, String> {
    let resp = reqwest::get(url).await.map_err(|e| e.to_string())?;
    resp.text().await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reports_its_session_reconnects_and_commands() {
    let dir = TestDir::create("agent-metrics");
    let db = TestSqlite::create();
    let mut controller =
        ControllerProcess::start(&dir, "controller", &[("DATABASE_URL", &db.url)]).await;
    let mut fleet = servers(&dir, &[&controller], &[("cpanel", &[])]).await;
    let server = &mut fleet[0];

    // The metrics listener is opt-in: add it to the agent's configuration and restart it.
    let port = free_port();
    let mut config = std::fs::read_to_string(&server.agent.config_path).unwrap();
    config.push_str(&format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    std::fs::write(&server.agent.config_path, config).unwrap();
    server.agent.restart();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let text = dir
        .wait_for(
            Duration::from_secs(20),
            "the session connected",
            async || {
                let text = scrape(&url).await?;
                if value(&text, "mpanel_agent_session_connected") == 1.0 {
                    Ok(text)
                } else {
                    Err(text)
                }
            },
        )
        .await;
    let reconnects = value(&text, "mpanel_agent_reconnects_total");

    // The controller goes away and comes back: the gauge drops, the counter counts the redial.
    controller.restart().await;
    dir.wait_for(
        Duration::from_secs(30),
        "a reconnect counted and the session open again",
        async || {
            let text = scrape(&url).await?;
            if value(&text, "mpanel_agent_reconnects_total") > reconnects
                && value(&text, "mpanel_agent_session_connected") == 1.0
            {
                Ok(())
            } else {
                Err(text)
            }
        },
    )
    .await;
    controller
        .wait_for_agent_online(server.id, Duration::from_secs(20))
        .await;

    // A command through the controller is timed on the agent, by command and outcome.
    let series =
        "mpanel_agent_handled_command_duration_seconds_count{command=\"ping\",outcome=\"done\"}";
    let before = value(&scrape(&url).await.unwrap(), series);
    for _ in 0..3 {
        let (status, body) = controller
            .api(
                Method::POST,
                &format!("/api/servers/{}/commands", server.id),
                Some(json!({"kind": "ping"})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let after = value(&scrape(&url).await.unwrap(), series);
    assert_eq!(after - before, 3.0, "{series}: {before} → {after}");
}
