//! The fleet end to end over real TLS on loopback: enrollment, the session, heartbeats in
//! `/api/agents`, commands, offline detection, reconnects after a controller restart, session
//! takeover, renewal over the live session, revocation mid-session, and connections past the
//! handshakes in flight closed at once.

mod fleet_support;

use std::time::{Duration, Instant};

use fleet_support::*;
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_enrolled_agent_connects_and_its_heartbeat_shows_in_api_agents() {
    let c = Controller::start(&[]).await;
    let (id, _dir, state) = enrolled_agent(&c, "web1.example.net").await;

    #[cfg(unix)]
    for path in [state.key_path(), state.cert_path(), state.ca_path()] {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600,
            "{}",
            path.display()
        );
    }
    let before = c.agent(id).await;
    assert_eq!(before["status"], "pending");
    assert_eq!(before["connected"], false);

    let agent = start_agent(&c.grpc_url(), &state);
    let a = c
        .wait_for_agent(id, Duration::from_secs(10), "a heartbeat with load", |a| {
            a["connected"] == true
                && a["status"] == "online"
                && a["load"]["cpuCount"].as_u64().unwrap_or(0) >= 1
        })
        .await;
    assert!(a["load"]["memoryTotalBytes"].as_u64().unwrap() > 0);
    assert!(a["load"]["diskTotalBytes"].as_u64().unwrap() > 0);
    assert!(a["lastHeartbeatAt"].as_str().unwrap().contains('T'));
    assert!(a["certificateExpiresAt"].is_string());
    assert_eq!(a["hostname"], "web1.example.net");
    assert_eq!(a["panelKind"], "cpanel");

    // Commands round-trip through the session.
    let (status, body) = c
        .request(
            Method::POST,
            &format!("/api/servers/{id}/commands"),
            Some(json!({"kind": "echo", "payload": {"x": 1}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], json!({"x": 1}));

    // Heartbeats are persisted in batches; after a restart the stored state is still there.
    agent.stop().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut c = c;
    c.restart().await;
    let a = c.agent(id).await;
    assert!(a["lastHeartbeatAt"].is_string(), "{a}");
    assert!(a["load"]["cpuCount"].as_u64().unwrap_or(0) >= 1, "{a}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_command_to_an_offline_agent_fails_fast_and_is_retryable() {
    let c = Controller::start(&[]).await;
    let (id, _dir, _state) = enrolled_agent(&c, "off.example.net").await;
    let started = Instant::now();
    let (status, body) = c
        .request(
            Method::POST,
            &format!("/api/servers/{id}/commands"),
            Some(json!({"kind": "ping"})),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "agent_offline");
    assert!(started.elapsed() < Duration::from_secs(1));
    let (status, body) = c
        .request(
            Method::POST,
            &format!("/api/servers/{id}/commands"),
            Some(json!({"kind": "rm -rf"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "kind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_killed_agent_goes_suspect_then_offline_within_the_ttl() {
    let c = Controller::start(&[]).await;
    let (id, dir, _state) = enrolled_agent(&c, "kill.example.net").await;
    // A real process, killed with SIGKILL: no goodbye on the wire.
    std::fs::write(dir.path().join("none.toml"), "accounts_path = \"/\"\n").unwrap();
    let mut child =
        std::process::Command::new(mpanel_e2e::process::workspace_binary("mpanel-agent"))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("run")
            .env("MPANEL_AGENT_CONFIG", dir.path().join("none.toml"))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
    c.wait_for_agent(id, Duration::from_secs(15), "online", |a| {
        a["status"] == "online" && a["connected"] == true
    })
    .await;
    child.kill().unwrap();
    let _ = child.wait();
    let killed = Instant::now();
    c.wait_for_agent(id, Duration::from_secs(10), "suspect", |a| {
        a["status"] == "suspect" || a["status"] == "offline"
    })
    .await;
    c.wait_for_agent(id, Duration::from_secs(10), "offline", |a| {
        a["status"] == "offline"
    })
    .await;
    // AGENT_OFFLINE_SECS=5, beats every second, sweeps twice a second.
    assert!(
        killed.elapsed() < Duration::from_secs(7),
        "offline after {:?}",
        killed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_agent_reconnects_by_itself_after_a_controller_restart() {
    let mut c = Controller::start(&[]).await;
    let (id, _dir, state) = enrolled_agent(&c, "restart.example.net").await;
    let agent = start_agent(&c.grpc_url(), &state);
    let first = c
        .wait_for_agent(id, Duration::from_secs(10), "online", |a| {
            a["connected"] == true
        })
        .await;
    c.restart().await;
    let again = c
        .wait_for_agent(id, Duration::from_secs(15), "reconnected", |a| {
            a["connected"] == true && a["status"] == "online"
        })
        .await;
    assert_ne!(first["connectedAt"], again["connectedAt"]);
    let (status, body) = c
        .request(
            Method::POST,
            &format!("/api/servers/{id}/commands"),
            Some(json!({"kind": "ping"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_second_session_of_the_same_agent_replaces_the_first() {
    let c = Controller::start(&[]).await;
    let (id, _dir, state) = enrolled_agent(&c, "twice.example.net").await;
    let one = start_agent(&c.grpc_url(), &state);
    let first = c
        .wait_for_agent(id, Duration::from_secs(10), "online", |a| {
            a["connected"] == true
        })
        .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let two = start_agent(&c.grpc_url(), &state);
    let second = c
        .wait_for_agent(id, Duration::from_secs(10), "a newer session", |a| {
            a["connected"] == true && a["connectedAt"] != first["connectedAt"]
        })
        .await;
    assert_eq!(second["connected"], true);
    // Whichever session is current answers commands: never a "session already exists" dead end.
    let (status, body) = c
        .request(
            Method::POST,
            &format!("/api/servers/{id}/commands"),
            Some(json!({"kind": "ping"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    one.stop().await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_certificate_renews_over_the_live_session_without_dropping_it() {
    // 9 s certificates: renewal at 6 s.
    let c = Controller::start(&[("AGENT_CERT_LIFETIME_SECS", "9")]).await;
    let (id, _dir, state) = enrolled_agent(&c, "renew.example.net").await;
    let original = read(&state.cert_path());
    let agent = start_agent(&c.grpc_url(), &state);
    let first = c
        .wait_for_agent(id, Duration::from_secs(10), "online", |a| {
            a["connected"] == true
        })
        .await;
    let serial = first["certificateSerial"].clone();
    let renewed = c
        .wait_for_agent(id, Duration::from_secs(15), "a renewed certificate", |a| {
            a["certificateSerial"] != serial
        })
        .await;
    // The controller records the new serial when it signs; the agent stores the certificate
    // when the reply reaches it, a moment later.
    let stored_by = Instant::now() + Duration::from_secs(5);
    while read(&state.cert_path()) == original && Instant::now() < stored_by {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(
        read(&state.cert_path()),
        original,
        "the renewed certificate is stored"
    );
    assert_eq!(
        renewed["connectedAt"], first["connectedAt"],
        "the session was not dropped"
    );
    // Past the original certificate's expiry the same session still carries commands.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (status, body) = c
        .request(
            Method::POST,
            &format!("/api/servers/{id}/commands"),
            Some(json!({"kind": "ping"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(c.agent(id).await["connectedAt"], first["connectedAt"]);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_revocation_closes_the_live_session_within_a_second() {
    let c = Controller::start(&[]).await;
    let (id, _dir, state) = enrolled_agent(&c, "revoke.example.net").await;
    let agent = start_agent(&c.grpc_url(), &state);
    c.wait_for_agent(id, Duration::from_secs(10), "online", |a| {
        a["connected"] == true
    })
    .await;
    let (status, body) = c
        .request(
            Method::POST,
            &format!("/api/servers/{id}/revoke-certificate"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let revoked_at = Instant::now();
    c.wait_for_agent(id, Duration::from_secs(1), "session closed", |a| {
        a["connected"] == false && a["status"] == "revoked"
    })
    .await;
    assert!(revoked_at.elapsed() <= Duration::from_secs(1));
    // The agent stops reconnecting and says it needs a new token.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if state.status().is_some_and(|s| {
            s.state == "needs_enrollment" && s.detail.contains("needs a new enrollment token")
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "agent status: {:?}",
            state.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A new token brings it back without restarting the agent.
    let token = c.enrollment_token(id).await;
    mpanel_agent::enroll::enroll(&c.grpc_url(), &token, &state)
        .await
        .unwrap();
    c.wait_for_agent(
        id,
        Duration::from_secs(15),
        "back after re-enrollment",
        |a| a["connected"] == true && a["status"] == "online",
    )
    .await;
    agent.stop().await;
}

/// Connections past the controller's TLS handshakes in flight wait their turn; past the waiting
/// room they are closed at once, not left to time out; a waiting agent gets in as soon as a
/// slot frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_connections_past_the_handshakes_in_flight_wait_and_past_the_queue_are_closed() {
    use tokio::io::AsyncReadExt as _;

    let mut c = Controller::start(&[]).await;
    let (id, _dir, state) = enrolled_agent(&c, "storm.example.net").await;
    let addr = format!("127.0.0.1:{}", c.grpc_port);
    // Connections that never say a word: 512 hold every handshake slot, 4,096 fill the queue.
    let mut silent = Vec::new();
    for _ in 0..(512 + 4096) {
        silent.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut extra = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(4), extra.read(&mut buf))
        .await
        .expect("closed at once, not after a wait");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the connection is closed: {read:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let metrics = reqwest::get(format!("{}/metrics", c.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let shed = metrics
        .lines()
        .find(|l| l.starts_with("mpanel_agent_handshakes_shed_total"))
        .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok());
    assert!(shed.is_some_and(|n| n >= 1.0), "{metrics}");

    // Only the 512 in flight remain: an agent waits its turn and is let in once one of them
    // goes away, well before its connect timeout.
    let in_flight = silent.split_off(512);
    drop(in_flight);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let agent = start_agent(&c.grpc_url(), &state);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(c.agent(id).await["connected"], false, "all slots are taken");
    silent.pop();
    c.wait_for_agent(id, Duration::from_secs(5), "connected", |a| {
        a["connected"] == true
    })
    .await;
    agent.stop().await;
    c.stop().await;
}
