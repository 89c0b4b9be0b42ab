//! The agent's optional metrics endpoint: commands run through the session's path
//! (`session::run_command_for`) against a simulated cPanel that refuses the agent's token show
//! up as a handled command with its outcome and as a panel error of class `auth`; the endpoint
//! answers only `GET /metrics`; `[metrics] listen` is checked when the configuration is read.

use std::path::Path;
use std::sync::Arc;

use mpanel_agent::config::AgentConfig;
use mpanel_agent::handler::{BuiltinHandler, CommandHandler};
use mpanel_agent::panel::{PanelConfig, PanelKind, build_driver_with};
use mpanel_agent::panel_commands::PanelCommandHandler;
use mpanel_agent::session::run_command_for;
use mpanel_agent::telemetry::metrics;
use mpanel_common::command::Command;
use mpanel_proto::v1;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(base: &str, path: &str) -> (u16, String) {
    let resp = reqwest::get(format!("{base}{path}")).await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn panel_errors_and_command_durations_are_served_on_the_metrics_listener() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    metrics::install();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(metrics::serve(listener, stop.clone()));

    let mut sim = mpanel_panelsim::SimConfig::new(mpanel_panelsim::SimKind::Cpanel, "sim-token");
    sim.tls = true;
    let sim = mpanel_panelsim::start(sim, TcpListener::bind("127.0.0.1:0").await.unwrap())
        .await
        .unwrap();
    // A token the panel does not know: every panel command fails with class `auth`.
    let driver = build_driver_with(PanelConfig::new(
        PanelKind::Cpanel,
        &sim.base_url(),
        "root",
        "not-the-token".into(),
        true,
    ))
    .unwrap();
    let handler: Arc<dyn CommandHandler> = Arc::new(BuiltinHandler::with_next(Arc::new(
        PanelCommandHandler::new(driver),
    )));

    let (status, before) = scrape(&base, "/metrics").await;
    assert_eq!(status, 200);
    let errors = r#"mpanel_agent_panel_errors_total{panel="cpanel",class="auth"}"#;
    let listed = r#"mpanel_agent_handled_command_duration_seconds_count{command="list_accounts",outcome="auth"}"#;
    let pinged =
        r#"mpanel_agent_handled_command_duration_seconds_count{command="ping",outcome="done"}"#;
    let errors_before = value(&before, errors);

    for (i, request) in [Command::ListAccounts, Command::ListAccounts, Command::Ping]
        .into_iter()
        .enumerate()
    {
        let command = v1::Command {
            id: i.to_string(),
            idempotency_key: format!("k{i}"),
            deadline_unix_ms: 0,
            request: Some(request.into()),
        };
        run_command_for(handler.clone(), command, "cpanel").await;
    }

    let (status, after) = scrape(&base, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(value(&after, errors) - errors_before, 2.0, "{after}");
    assert!(value(&after, listed) >= 2.0, "{after}");
    assert!(value(&after, pinged) >= 1.0, "{after}");
    // `ping` is no panel command: a failure of it would not be a panel error either.
    assert!(!after.contains(r#"panel_errors_total{panel="cpanel",class="permanent"}"#));
    assert!(
        after.contains("mpanel_agent_session_connected 0"),
        "{after}"
    );
    assert!(after.contains("mpanel_agent_reconnects_total"), "{after}");

    let (status, _) = scrape(&base, "/").await;
    assert_eq!(status, 404);
    stop.cancel();
}

#[test]
fn metrics_listen_is_read_and_a_bad_address_names_the_setting() {
    let path = Path::new("agent.toml");
    let config =
        AgentConfig::parse("[metrics]\nlisten = \"127.0.0.1:9465\"\n", path).expect("valid");
    assert_eq!(
        config.metrics_listen().unwrap().map(|a| a.to_string()),
        Some("127.0.0.1:9465".to_owned())
    );
    assert_eq!(
        AgentConfig::parse("", path)
            .unwrap()
            .metrics_listen()
            .unwrap(),
        None
    );
    let err = AgentConfig::parse("[metrics]\nlisten = \"9465\"\n", path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("metrics.listen") && err.contains("'9465'"),
        "{err}"
    );
}
