//! Fleet benchmark: N simulated agents, each with its own key, certificate and mTLS session,
//! against one real `mpanel-controller serve` process on loopback.
//!
//! `cargo bench -p mpanel-controller --bench fleet -- 1000 10000`
//! (fewer LTO minutes: `CARGO_PROFILE_BENCH_LTO=false CARGO_PROFILE_BENCH_CODEGEN_UNITS=16`).
//!
//! For each N it prints: agents connected, controller RSS, controller CPU share while the fleet
//! only heartbeats (10 s), command round-trip p50/p99 (measured inside the controller by
//! `Fleet::send_command`, and end to end through the HTTP API), and the real agent binary's idle
//! RSS. The simulated agents run the real agent library (the session `mpanel-agent run` wires,
//! without a panel) in this process, so the controller's numbers are the controller's alone.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpanel_agent::config::AgentConfig;
use mpanel_agent::core::Backoff;
use mpanel_agent::session::{AgentOptions, run as run_agent};
use mpanel_agent::state::StateDir;
use mpanel_agent::wiring::{Parts, session_options};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const CONTROLLER: &str = env!("CARGO_BIN_EXE_mpanel-controller");

use mpanel_e2e::ports::free_port;

fn proc_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// utime + stime of a process, in clock ticks (100 Hz on Linux).
fn proc_cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let stime: u64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    utime + stime
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

struct Controller {
    child: Child,
    http: String,
    grpc: String,
    token: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_controller() -> Controller {
    let dir = tempfile::tempdir().unwrap();
    let db = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let (http_port, grpc_port) = (free_port(), free_port());
    let env: HashMap<&str, String> = [
        ("DATABASE_URL", db),
        ("ENCRYPTION_KEY", KEY.to_owned()),
        ("HTTP_LISTEN", format!("127.0.0.1:{http_port}")),
        ("GRPC_LISTEN", format!("127.0.0.1:{grpc_port}")),
        ("GRPC_SERVER_NAMES", "127.0.0.1,localhost".to_owned()),
        ("AGENT_HEARTBEAT_SECS", "10".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ]
    .into_iter()
    .collect();
    let out = Command::new(CONTROLLER)
        .args(["token", "create", "--admin", "--name", "bench"])
        .current_dir(dir.path())
        .envs(&env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let child = Command::new(CONTROLLER)
        .arg("serve")
        .current_dir(dir.path())
        .envs(&env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let c = Controller {
        child,
        http: format!("http://127.0.0.1:{http_port}"),
        grpc: format!("https://127.0.0.1:{grpc_port}"),
        token,
        client: reqwest::Client::new(),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if c.client
            .get(format!("{}/healthz", c.http))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("controller did not start");
}

impl Controller {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.http))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn connected(&self) -> u64 {
        let r = self
            .client
            .get(format!("{}/api/agents", self.http))
            .bearer_auth(&self.token)
            .send()
            .await;
        match r {
            Ok(r) => r
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v["connected"].as_u64())
                .unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// Creates a server and enrolls a fresh identity for it.
    async fn enroll_one(&self, i: usize, root: &std::path::Path) -> (i64, StateDir) {
        let (status, server) = self
            .post(
                "/api/servers",
                json!({
                    "hostname": format!("sim{i}.bench.example"),
                    "ipAddress": "192.0.2.1",
                    "controlPanel": "cpanel",
                    "controlPanelUrl": "https://127.0.0.1:2087",
                    "maxAccounts": 500
                }),
            )
            .await;
        assert_eq!(status, 201, "{server}");
        let id = server["id"].as_i64().unwrap();
        let (status, grant) = self
            .post(&format!("/api/servers/{id}/enrollment-token"), json!({}))
            .await;
        assert_eq!(status, 201, "{grant}");
        let state = StateDir::new(root.join(format!("a{i}")));
        let token = grant["token"].as_str().unwrap().to_owned();
        let mut attempt = 0;
        loop {
            match mpanel_agent::enroll::enroll(&self.grpc, &token, &state).await {
                Ok(_) => break,
                Err(e)
                    if attempt < 5
                        && !matches!(e, mpanel_agent::enroll::EnrollError::Refused(_)) =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("enroll {i}: {e}"),
            }
        }
        (id, state)
    }
}

/// An agent without a panel (it answers `ping` and `echo`), on a server registered as cPanel.
fn options(grpc: &str, state: &StateDir) -> AgentOptions {
    let config = AgentConfig {
        controller: Some(grpc.to_owned()),
        state_dir: state.dir().to_owned(),
        accounts_path: "/".into(),
        heartbeat_secs: 10,
        ..AgentConfig::default()
    };
    let mut options = session_options(&config, Parts::default()).expect("agent wiring");
    options.panel_kind = "cpanel".into();
    // Thousands of agents: a gentler backoff than a single agent's default.
    options.backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    options
}

async fn bench(n: usize) {
    println!("== N = {n} simulated agents, heartbeats every 10 s ==");
    let c = Arc::new(start_controller().await);
    let pid = c.child.id();
    let root = tempfile::tempdir().unwrap();

    let started = Instant::now();
    let mut enrolled = Vec::with_capacity(n);
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let c = c.clone();
        let root = root.path().to_owned();
        let permit = sem.clone().acquire_owned().await.unwrap();
        tasks.spawn(async move {
            let r = c.enroll_one(i, &root).await;
            drop(permit);
            r
        });
    }
    while let Some(r) = tasks.join_next().await {
        enrolled.push(r.unwrap());
    }
    println!(
        "enrolled:                 {n} in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let stop = CancellationToken::new();
    let started = Instant::now();
    let ids: Vec<i64> = enrolled.iter().map(|(id, _)| *id).collect();
    for (k, (_, state)) in enrolled.into_iter().enumerate() {
        tokio::spawn(run_agent(options(&c.grpc, &state), stop.clone()));
        // Ramp up instead of a SYN flood; real fleets arrive with jittered backoff too.
        if k % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut connected = 0;
    while Instant::now() < deadline {
        connected = c.connected().await;
        if connected as usize >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "agents connected:         {connected}/{n} after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Let the connect storm settle, then measure a quiet heartbeat-only window.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let window = Duration::from_secs(30);
    let (t0, c0) = (Instant::now(), proc_cpu_ticks(pid));
    tokio::time::sleep(window).await;
    let (t1, c1) = (Instant::now(), proc_cpu_ticks(pid));
    let cpu_share = (c1 - c0) as f64 / 100.0 / (t1 - t0).as_secs_f64();
    let rss = proc_rss_kib(pid);
    println!(
        "controller RSS:           {:.1} MiB ({:.1} KiB per agent)",
        rss as f64 / 1024.0,
        rss as f64 / n.max(1) as f64
    );
    println!(
        "controller CPU share:     {:.1} % of one core (heartbeats only, 30 s window)",
        cpu_share * 100.0
    );

    // Command round trips: sequential pings to random agents, 2 in flight.
    let samples = 2000.min(n * 20);
    let mut inside = Vec::with_capacity(samples);
    let mut end_to_end = Vec::with_capacity(samples);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..samples {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let id = ids[(seed % ids.len() as u64) as usize];
        let t = Instant::now();
        let (status, body) = c
            .post(
                &format!("/api/servers/{id}/commands"),
                json!({"kind": "ping", "timeoutMs": 5000}),
            )
            .await;
        let e2e = t.elapsed().as_secs_f64() * 1000.0;
        if status == 200 {
            inside.push(body["roundTripMs"].as_f64().unwrap_or(f64::NAN));
            end_to_end.push(e2e);
        }
    }
    inside.sort_by(f64::total_cmp);
    end_to_end.sort_by(f64::total_cmp);
    println!(
        "command round-trip:       p50 {:.2} ms, p99 {:.2} ms (controller→agent→controller, {} ok of {samples})",
        percentile(&inside, 0.5),
        percentile(&inside, 0.99),
        inside.len()
    );
    println!(
        "  via HTTP API:           p50 {:.2} ms, p99 {:.2} ms",
        percentile(&end_to_end, 0.5),
        percentile(&end_to_end, 0.99)
    );
    println!(
        "controller RSS after:     {:.1} MiB",
        proc_rss_kib(pid) as f64 / 1024.0
    );

    stop.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// The real `mpanel-agent run` binary, connected and idle for 20 s.
async fn idle_agent_rss(c: &Controller, root: &std::path::Path) {
    let agent_bin = std::path::Path::new(CONTROLLER).with_file_name("mpanel-agent");
    if !agent_bin.exists() {
        println!(
            "real agent idle RSS:      (skipped: build it first with `cargo build --release -p mpanel-agent`)"
        );
        return;
    }
    let (_, state) = c.enroll_one(999_999, root).await;
    std::fs::write(root.join("agent.toml"), "accounts_path = \"/\"\n").unwrap();
    let mut child = Command::new(&agent_bin)
        .arg("--config")
        .arg(root.join("agent.toml"))
        .arg("--state-dir")
        .arg(state.dir())
        .arg("run")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let (t0, c0) = (Instant::now(), proc_cpu_ticks(child.id()));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let cpu = (proc_cpu_ticks(child.id()) - c0) as f64 / 100.0 / t0.elapsed().as_secs_f64();
    println!(
        "real agent idle RSS:      {:.1} MiB (idle CPU {:.2} % of one core)",
        proc_rss_kib(child.id()) as f64 / 1024.0,
        cpu * 100.0
    );
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000]
    } else {
        sizes
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for (k, n) in sizes.iter().enumerate() {
            bench(*n).await;
            if k == 0 {
                let c = start_controller().await;
                let root = tempfile::tempdir().unwrap();
                idle_agent_rss(&c, root.path()).await;
            }
        }
    });
}
