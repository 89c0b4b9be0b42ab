//! `/__sim/*`, scripted faults common to all kinds, shutdown and the binary's CLI contract.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{TOKEN, client, unique};
use mpanel_panelsim::{FaultKind, ScriptedFault, SimConfig, SimKind};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn seeded_orphan_accounts_are_visible_through_the_panel_api() {
    let sim = common::start_kind(SimKind::Cpanel).await;
    let http = client();
    let orphan = unique("o");
    let response = http
        .post(format!("{}/__sim/seed", sim.base_url()))
        .json(
            &json!({"accounts": [{"username": orphan, "domain": format!("{orphan}.test"),
                                     "package": "starter", "suspended": true}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"seeded": {"accounts": 1}})
    );

    let listed: Value = http
        .get(format!(
            "{}/json-api/listaccts?api.version=1",
            sim.base_url()
        ))
        .header("Authorization", format!("whm root:{TOKEN}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let acct = listed["data"]["acct"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["user"] == orphan.as_str())
        .expect("the seeded account is listed beside the resident one");
    assert_eq!(acct["user"], orphan.as_str());
    assert_eq!(acct["plan"], "starter");
    assert_eq!(acct["suspended"], 1);

    let again = http
        .post(format!("{}/__sim/seed", sim.base_url()))
        .json(&json!({"accounts": [{"username": orphan}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let bad = http
        .post(format!("{}/__sim/seed", sim.base_url()))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    let state: Value = http
        .get(format!("{}/__sim/state", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state, sim.state_json());
    assert_eq!(state["kind"], "cpanel");
    assert_eq!(common::ours(&state)[0]["domain"], format!("{orphan}.test"));
    assert!(
        common::our_zones(&state)[0]["records"]
            .as_array()
            .unwrap()
            .len()
            > 3
    );
    // Control routes are not API calls.
    assert_eq!(state["callCounts"], json!({"listaccts": 1}));
}

#[tokio::test]
async fn plesk_and_directadmin_seeds_fill_their_own_views() {
    let plesk = common::start_kind(SimKind::Plesk).await;
    let http = client();
    http.post(format!("{}/__sim/seed", plesk.base_url()))
        .json(&json!({"accounts": [{"username": "orphan1", "domain": "orphan1.test", "package": "Unlimited"}]}))
        .send()
        .await
        .unwrap();
    let domains: Value = http
        .get(format!(
            "{}/api/v2/domains?name=orphan1.test",
            plesk.base_url()
        ))
        .header("X-API-Key", TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(domains[0]["name"], "orphan1.test");
    assert_eq!(common::ours(&plesk.state_json())[0]["package"], "Unlimited");

    let da = common::start_kind(SimKind::Directadmin).await;
    http.post(format!("{}/__sim/seed", da.base_url()))
        .json(&json!({"accounts": [{"username": "orphan2", "domain": "orphan2.test", "package": "default"}]}))
        .send()
        .await
        .unwrap();
    let users = http
        .get(format!("{}/CMD_API_SHOW_ALL_USERS", da.base_url()))
        .basic_auth("admin", Some(TOKEN))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(users, "list[]=hostco&list[]=orphan2");
}

#[tokio::test]
async fn faults_can_be_listed_cleared_and_are_validated() {
    let sim = common::start_kind(SimKind::Plesk).await;
    let http = client();
    let url = format!("{}/__sim/faults", sim.base_url());
    let armed: Value = http
        .post(&url)
        .json(&json!([{"kind": "server_error", "times": 2}, {"kind": "timeout", "pathContains": "/never"}]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(armed["pending"].as_array().unwrap().len(), 2);
    let invalid = http
        .post(&url)
        .json(&json!({"kind": "explode"}))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);

    // server_error: HTTP 500 in Plesk's shape, twice, then normal again.
    for _ in 0..2 {
        let response = http
            .get(format!("{}/api/v2/clients", sim.base_url()))
            .header("X-API-Key", TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.json::<Value>().await.unwrap()["code"], 500);
    }
    let listed: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["pending"][0]["kind"], "timeout");
    assert_eq!(listed["pending"][0]["pathContains"], "/never");
    http.delete(&url).send().await.unwrap();
    assert_eq!(sim.state_json()["pendingFaults"], json!([]));
    let ok = http
        .get(format!("{}/api/v2/clients", sim.base_url()))
        .header("X-API-Key", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn auth_failure_fault_uses_each_panels_auth_error() {
    let http = client();
    let cpanel = common::start_kind(SimKind::Cpanel).await;
    cpanel.script(ScriptedFault::once(FaultKind::AuthFailure));
    let response = http
        .get(format!(
            "{}/json-api/listaccts?api.version=1",
            cpanel.base_url()
        ))
        .header("Authorization", format!("whm root:{TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let da = common::start_kind(SimKind::Directadmin).await;
    da.script(ScriptedFault::once(FaultKind::AuthFailure));
    let response = http
        .get(format!("{}/CMD_API_SHOW_ALL_USERS", da.base_url()))
        .basic_auth("admin", Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("DirectAdmin Login"));
}

#[tokio::test]
async fn timeout_fault_holds_the_call_changes_nothing_and_does_not_block_shutdown() {
    let sim = common::start_kind(SimKind::Cpanel).await;
    sim.script(ScriptedFault::on(FaultKind::Timeout, "createacct", 1));
    let impatient = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let started = Instant::now();
    let result = impatient
        .get(format!(
            "{}/json-api/createacct?api.version=1&username=slowpoke&domain=slow.test",
            sim.base_url()
        ))
        .header("Authorization", format!("whm root:{TOKEN}"))
        .send()
        .await;
    assert!(result.expect_err("the call times out").is_timeout());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(common::ours(&sim.state_json()).is_empty());

    // A held request in flight must not stall shutdown.
    let url = format!("{}/json-api/listaccts?api.version=1", sim.base_url());
    sim.script(ScriptedFault::once(FaultKind::Timeout));
    let held = tokio::spawn(async move {
        client()
            .get(url)
            .header("Authorization", format!("whm root:{TOKEN}"))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = Instant::now();
    sim.shutdown().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(6),
        "shutdown took {:?}",
        stopping.elapsed()
    );
    let _ = held.await;
}

#[tokio::test]
async fn latency_is_added_to_api_calls_only() {
    let sim = common::start(SimConfig {
        latency_ms: 300,
        ..common::config(SimKind::Directadmin)
    })
    .await;
    let http = client();
    let started = Instant::now();
    http.get(format!("{}/__sim/state", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(300));
    let started = Instant::now();
    http.get(format!("{}/CMD_API_SHOW_ALL_USERS", sim.base_url()))
        .basic_auth("admin", Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn plain_http_simulator_serves_the_api_and_reports_its_url() {
    let sim = common::start(SimConfig::new(SimKind::Plesk, TOKEN)).await;
    assert!(sim.base_url().starts_with("http://127.0.0.1:"));
    assert!(sim.certificate_pem().is_none());
    let response = reqwest::Client::new()
        .get(format!("{}/api/v2/cli/commands", sim.base_url()))
        .header("X-API-Key", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn dropping_the_handle_keeps_serving_and_shutdown_stops() {
    let sim = common::start_kind(SimKind::Plesk).await;
    let url = format!("{}/__sim/state", sim.base_url());
    let second = common::start_kind(SimKind::Plesk).await;
    drop(sim);
    assert_eq!(
        client().get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    let second_url = format!("{}/__sim/state", second.base_url());
    second.shutdown().await;
    assert!(client().get(&second_url).send().await.is_err());
}

#[tokio::test]
async fn start_refuses_bad_configuration() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = mpanel_panelsim::start(
        SimConfig {
            fail_rate: 1.5,
            ..SimConfig::new(SimKind::Cpanel, "t")
        },
        listener,
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("fail_rate"));
    assert_eq!(
        "directadmin".parse::<SimKind>().unwrap(),
        SimKind::Directadmin
    );
    assert!("whm".parse::<SimKind>().is_err());
}

#[test]
fn binary_prints_its_url_serves_and_exits_cleanly_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mpanel-panelsim"))
        .args([
            "--kind",
            "directadmin",
            "--listen",
            "127.0.0.1:0",
            "--token",
            TOKEN,
            "--tls",
            "--seed",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the binary");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the first line");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("got {line:?}"))
        .to_owned();
    assert!(url.starts_with("https://127.0.0.1:"));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let state: Value = runtime.block_on(async {
        client()
            .get(format!("{url}/__sim/state"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(state["kind"], "directadmin");
    // Close the client's connections; an idle HTTP/2 peer that is never polled would make the
    // server wait for its GOAWAY ping until the drain timeout.
    drop(runtime);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn binary_bad_usage_exits_2_with_one_line() {
    for args in [
        vec![
            "--kind",
            "joomla",
            "--listen",
            "127.0.0.1:0",
            "--token",
            "t",
        ],
        vec!["--listen", "127.0.0.1:0"],
        vec!["--kind", "plesk", "--listen", "nowhere", "--token", "t"],
        vec![
            "--kind",
            "plesk",
            "--listen",
            "127.0.0.1:0",
            "--token",
            "t",
            "--fail-rate",
            "7",
        ],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_mpanel-panelsim"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(output.stdout.is_empty());
    }
    let help = Command::new(env!("CARGO_BIN_EXE_mpanel-panelsim"))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--web-root-http"));
    let version = Command::new(env!("CARGO_BIN_EXE_mpanel-panelsim"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(version.status.code(), Some(0));
}

/// The records of `domain`'s zone as (relative name, type, value).
fn zone_rows(state: &Value, domain: &str) -> Vec<(String, String, String)> {
    let zone = state["zones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["domain"] == domain)
        .cloned()
        .unwrap_or_else(|| panic!("no zone {domain}: {state}"));
    zone["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let name = r["name"].as_str().unwrap();
            let relative = name
                .strip_suffix(&format!(".{domain}"))
                .unwrap_or("@")
                .to_owned();
            (
                relative,
                r["type"].as_str().unwrap().to_owned(),
                r["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_simulator_starts_with_a_resident_account_and_its_panels_default_zone() {
    use mpanel_panelsim::{RESIDENT_DOMAIN, RESIDENT_USER};
    for kind in [SimKind::Cpanel, SimKind::Plesk, SimKind::Directadmin] {
        let sim = common::start_kind(kind).await;
        let state = sim.state_json();
        let accounts = common::accounts(&state);
        assert_eq!(accounts.len(), 1, "{kind:?}: {state}");
        assert_eq!(accounts[0]["username"], RESIDENT_USER);
        assert_eq!(accounts[0]["domain"], RESIDENT_DOMAIN);
        assert_eq!(state["domains"][0]["owner"], RESIDENT_USER);

        let rows = zone_rows(&state, RESIDENT_DOMAIN);
        let at = |name: &str| -> Vec<String> {
            rows.iter()
                .filter(|(n, _, _)| n == name)
                .map(|(_, t, _)| t.clone())
                .collect()
        };
        // What each panel's default template puts at `www` and `mail`.
        let (www, mail) = match kind {
            SimKind::Cpanel => ("CNAME", "CNAME"),
            SimKind::Plesk => ("CNAME", "A"),
            SimKind::Directadmin => ("A", "A"),
        };
        assert_eq!(at("www"), [www], "{kind:?}: {rows:?}");
        assert_eq!(at("mail"), [mail], "{kind:?}: {rows:?}");
        assert_eq!(at("ftp").len(), 1, "{kind:?}: {rows:?}");
        let mx: Vec<&String> = rows
            .iter()
            .filter(|(n, t, _)| n == "@" && t == "MX")
            .map(|(_, _, v)| v)
            .collect();
        let expected_mx = match kind {
            SimKind::Cpanel => RESIDENT_DOMAIN.to_owned(),
            SimKind::Plesk | SimKind::Directadmin => format!("mail.{RESIDENT_DOMAIN}"),
        };
        assert_eq!(mx, [&expected_mx], "{kind:?}");
        assert!(
            rows.iter()
                .any(|(n, t, v)| n == "@" && t == "TXT" && v.starts_with("v=spf1")),
            "{kind:?}: {rows:?}"
        );
        // No name holds a CNAME beside other data.
        for (name, rtype, _) in &rows {
            if rtype == "CNAME" {
                assert_eq!(at(name).len(), 1, "{kind:?}: {name}");
            }
        }
        sim.shutdown().await;
    }
}
