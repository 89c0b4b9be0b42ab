//! Fleet benchmark: N simulated agents, each with its own key, certificate and mTLS session,
//! against one real `mpanel-controller serve` process on loopback.
//!
//! `cargo bench -p mpanel-controller --bench fleet -- 1000 10000`
//! (fewer LTO minutes: `CARGO_PROFILE_BENCH_LTO=false CARGO_PROFILE_BENCH_CODEGEN_UNITS=16`).
//!
//! The simulated agents run the real agent library (the session `mpanel-agent run` wires,
//! without a panel, with the real agent's reconnect backoff) in helper processes of their own
//! (this binary started again as `agents`, at most `AGENTS_PER_PROCESS` each), so the
//! controller's numbers are the controller's alone. They dial four loopback addresses
//! (127.0.0.1-4), so no one address pair runs out of ephemeral ports.
//!
//! For each N it prints:
//! - the first connection of the whole fleet at once (no ramp): time until all are connected
//!   and the peak rate the controller accepted, which is its handshake ceiling;
//! - controller RSS per agent and CPU share while the fleet only heartbeats (30 s);
//! - command round-trip p50/p99, measured inside the controller by `Fleet::send_command` and
//!   end to end through the HTTP API;
//! - a reconnect storm: the controller SIGKILLed and started again with the fleet dialling
//!   back; time until all are connected again and the peak rate, against the ceiling.
//!
//! and once, the real agent binary's idle RSS and CPU.
//!
//! A controller holds one descriptor per agent: N is capped below the process's open-files
//! limit (`ulimit -n`), and the run says so.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpanel_agent::config::AgentConfig;
use mpanel_agent::session::{AgentOptions, run as run_agent};
use mpanel_agent::state::StateDir;
use mpanel_agent::wiring::{Parts, session_options};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const CONTROLLER: &str = env!("CARGO_BIN_EXE_mpanel-controller");
/// Simulated agents per helper process.
const AGENTS_PER_PROCESS: usize = 5_000;
/// Loopback addresses the agents dial, round robin.
const ADDRESSES: [&str; 4] = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"];
/// Descriptors the controller needs besides its agents: database, listeners, HTTP clients.
const FD_HEADROOM: usize = 300;

use mpanel_e2e::ports::free_port;
use support::{cpu_ticks, rss_kib, stdin_lines};

mod support;

/// The soft open-files limit a child of this process inherits.
fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        })
        .unwrap_or(1024)
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
    env: HashMap<&'static str, String>,
    grpc_port: u16,
    api: Arc<Api>,
    dir: tempfile::TempDir,
}

/// The controller's HTTP API and enrolment, shareable across tasks.
struct Api {
    http: String,
    /// Where enrolment dials.
    grpc: String,
    token: String,
    client: reqwest::Client,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_controller(dir: &std::path::Path, env: &HashMap<&'static str, String>) -> Child {
    Command::new(CONTROLLER)
        .arg("serve")
        .current_dir(dir)
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn start_controller() -> Controller {
    let dir = tempfile::tempdir().unwrap();
    let db = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let (http_port, grpc_port) = (free_port(), free_port());
    let env: HashMap<&'static str, String> = [
        ("DATABASE_URL", db),
        ("ENCRYPTION_KEY", KEY.to_owned()),
        ("HTTP_LISTEN", format!("127.0.0.1:{http_port}")),
        // Every loopback address the agents dial.
        ("GRPC_LISTEN", format!("0.0.0.0:{grpc_port}")),
        (
            "GRPC_SERVER_NAMES",
            format!("{},localhost", ADDRESSES.join(",")),
        ),
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
    let child = spawn_controller(dir.path(), &env);
    let c = Controller {
        child,
        env,
        grpc_port,
        api: Arc::new(Api {
            http: format!("http://127.0.0.1:{http_port}"),
            grpc: format!("https://{}:{grpc_port}", ADDRESSES[0]),
            token,
            client: reqwest::Client::new(),
        }),
        dir,
    };
    c.wait_healthy().await;
    c
}

impl Controller {
    fn grpc(&self, k: usize) -> String {
        format!(
            "https://{}:{}",
            ADDRESSES[k % ADDRESSES.len()],
            self.grpc_port
        )
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self
                .api
                .client
                .get(format!("{}/healthz", self.api.http))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("controller did not start");
    }

    /// SIGKILL, then the same controller (database, ports, settings) started again.
    async fn kill_and_restart(&mut self) -> Instant {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let restarted = Instant::now();
        self.child = spawn_controller(self.dir.path(), &self.env);
        self.wait_healthy().await;
        restarted
    }

    /// Polls the connected count until `n` (or `within`); prints when it reached half, 90 %
    /// and all, and the peak rate over any one second.
    async fn watch_connects(&self, what: &str, n: usize, since: Instant, within: Duration) {
        let mut samples: Vec<(f64, u64)> = vec![(0.0, self.api.connected().await)];
        let mut marks: Vec<(u64, f64)> = Vec::new();
        while since.elapsed() < within {
            let now = self.api.connected().await;
            let t = since.elapsed().as_secs_f64();
            samples.push((t, now));
            for (label, frac) in [(50, 0.5), (90, 0.9), (100, 1.0)] {
                if now as f64 >= frac * n as f64 && !marks.iter().any(|(l, _)| *l == label) {
                    marks.push((label, t));
                }
            }
            if now as usize >= n {
                break;
            }
            // Each look lists every agent through the API: not too often.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // Peak: the most connections gained over any window of about a second.
        let mut peak = 0.0f64;
        for (i, &(t0, c0)) in samples.iter().enumerate() {
            if let Some(&(t1, c1)) = samples[i..].iter().find(|(t, _)| *t - t0 >= 1.0) {
                peak = peak.max(c1.saturating_sub(c0) as f64 / (t1 - t0));
            }
        }
        let last = samples.last().map_or(0, |s| s.1);
        let at = |label: u64| {
            marks
                .iter()
                .find(|(l, _)| *l == label)
                .map_or_else(|| "-".to_owned(), |(_, t)| format!("{t:.1} s"))
        };
        println!(
            "{what:<25} {last}/{n} connected; half after {}, 90 % after {}, all after {}; peak {peak:.0} connections/s",
            at(50),
            at(90),
            at(100)
        );
        // Connected every 10 s: whether the controller was busy all along or the fleet was
        // waiting out its backoff.
        let mut timeline = Vec::new();
        let mut next = 10.0;
        for &(t, count) in &samples {
            if t >= next {
                timeline.push(format!("{next:.0} s {count}"));
                next += 10.0;
            }
        }
        println!("  connected every 10 s:   {}", timeline.join(", "));
        println!(
            "  turned away so far:     {} connections (handshake queue full, or no slot in time)",
            self.api.handshakes_shed().await
        );
    }
}

/// An agent without a panel (it answers `ping` and `echo`), on a server registered as cPanel,
/// with the real agent's reconnect backoff.
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
    options
}

/// `fleet agents`: reads `<controller-url> <state-dir>` lines until `go`, then runs an agent for
/// each at once, until stdin closes.
async fn agents_process() {
    let mut lines = stdin_lines();
    let mut wanted = Vec::new();
    while let Some(line) = lines.recv().await {
        if line == "go" {
            break;
        }
        let (url, dir) = line.split_once(' ').expect("<url> <state-dir>");
        wanted.push((url.to_owned(), StateDir::new(std::path::PathBuf::from(dir))));
    }
    let stop = CancellationToken::new();
    for (url, state) in &wanted {
        tokio::spawn(run_agent(options(url, state), stop.clone()));
    }
    while lines.recv().await.is_some() {}
    stop.cancel();
}

/// The helper processes running the simulated agents.
struct AgentProcesses {
    children: Vec<(tokio::process::Child, Option<tokio::process::ChildStdin>)>,
}

impl AgentProcesses {
    async fn start(c: &Controller, states: &[(i64, StateDir)]) -> AgentProcesses {
        let mut children = Vec::new();
        for (p, chunk) in states.chunks(AGENTS_PER_PROCESS).enumerate() {
            let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
                .arg("agents")
                .stdin(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("start an agents process");
            let mut stdin = child.stdin.take().unwrap();
            let mut text = String::new();
            for (k, (_, state)) in chunk.iter().enumerate() {
                let url = c.grpc(p * AGENTS_PER_PROCESS + k);
                text.push_str(&format!("{url} {}\n", state.dir().display()));
            }
            stdin.write_all(text.as_bytes()).await.unwrap();
            children.push((child, Some(stdin)));
        }
        AgentProcesses { children }
    }

    /// Every process starts all its agents at once.
    async fn go(&mut self) {
        for (_, stdin) in &mut self.children {
            let s = stdin.as_mut().unwrap();
            s.write_all(b"go\n").await.unwrap();
            s.flush().await.unwrap();
        }
    }

    fn rss_mib(&self) -> f64 {
        self.children
            .iter()
            .filter_map(|(c, _)| c.id())
            .map(|pid| rss_kib(&pid.to_string()))
            .sum::<u64>() as f64
            / 1024.0
    }

    async fn stop(mut self) {
        for (child, stdin) in &mut self.children {
            drop(stdin.take());
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
    }
}

async fn bench(asked: usize) {
    let limit = open_files_limit();
    let n = asked.min(limit.saturating_sub(FD_HEADROOM));
    if n < asked {
        println!(
            "== {asked} agents asked; the open-files limit is {limit} per process (ulimit -n), and the controller holds one per agent: N = {n} =="
        );
    } else {
        println!("== N = {n} simulated agents, heartbeats every 10 s ==");
    }
    let mut c = start_controller().await;
    let root = tempfile::tempdir().unwrap();

    let started = Instant::now();
    let mut enrolled = Vec::with_capacity(n);
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let api = c.api.clone();
        let root = root.path().to_owned();
        let permit = sem.clone().acquire_owned().await.unwrap();
        tasks.spawn(async move {
            let r = api.enroll_one(i, &root).await;
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

    let mut processes = AgentProcesses::start(&c, &enrolled).await;
    let started = Instant::now();
    processes.go().await;
    c.watch_connects(
        "first connection, all at once:",
        n,
        started,
        Duration::from_secs(300),
    )
    .await;

    // Let the connect storm settle, then measure a quiet heartbeat-only window.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let pid = c.child.id();
    let window = Duration::from_secs(30);
    let (t0, c0) = (Instant::now(), cpu_ticks(&pid.to_string()));
    tokio::time::sleep(window).await;
    let (t1, c1) = (Instant::now(), cpu_ticks(&pid.to_string()));
    let cpu_share = (c1 - c0) as f64 / 100.0 / (t1 - t0).as_secs_f64();
    let rss = rss_kib(&pid.to_string());
    println!(
        "controller RSS:           {:.1} MiB ({:.1} KiB per agent)",
        rss as f64 / 1024.0,
        rss as f64 / n.max(1) as f64
    );
    println!(
        "controller CPU share:     {:.1} % of one core (heartbeats only, 30 s window)",
        cpu_share * 100.0
    );
    println!(
        "simulated agents' RSS:    {:.1} MiB in {} processes",
        processes.rss_mib(),
        processes.children.len()
    );

    // Command round trips: sequential pings to random agents.
    let ids: Vec<i64> = enrolled.iter().map(|(id, _)| *id).collect();
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
            .api
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

    // Reconnect storm: the controller dies and comes back; every agent dials again on its own
    // jittered backoff.
    let restarted = c.kill_and_restart().await;
    let cpu0 = cpu_ticks(&c.child.id().to_string());
    c.watch_connects("reconnect storm:", n, restarted, Duration::from_secs(300))
        .await;
    println!(
        "  controller CPU:         {:.1} s while the fleet reconnected ({:.1} s since the restart)",
        (cpu_ticks(&c.child.id().to_string()) - cpu0) as f64 / 100.0,
        restarted.elapsed().as_secs_f64()
    );
    processes.stop().await;
}

impl Api {
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

    /// `mpanel_agent_handshakes_shed_total` of the running controller.
    async fn handshakes_shed(&self) -> u64 {
        let text = match self
            .client
            .get(format!("{}/metrics", self.http))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        text.lines()
            .find(|l| l.starts_with("mpanel_agent_handshakes_shed_total"))
            .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .map_or(0, |n| n as u64)
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

/// The real `mpanel-agent run` binary, connected and idle for 20 s.
async fn idle_agent_rss(c: &Controller, root: &std::path::Path) {
    let agent_bin = std::path::Path::new(CONTROLLER).with_file_name("mpanel-agent");
    if !agent_bin.exists() {
        println!(
            "real agent idle RSS:      (skipped: build it first with `cargo build --release -p mpanel-agent`)"
        );
        return;
    }
    let (_, state) = c.api.enroll_one(999_999, root).await;
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
    let (t0, c0) = (Instant::now(), cpu_ticks(&child.id().to_string()));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let cpu = (cpu_ticks(&child.id().to_string()) - c0) as f64 / 100.0 / t0.elapsed().as_secs_f64();
    println!(
        "real agent idle RSS:      {:.1} MiB (idle CPU {:.2} % of one core)",
        rss_kib(&child.id().to_string()) as f64 / 1024.0,
        cpu * 100.0
    );
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if args.first().map(String::as_str) == Some("agents") {
        runtime.block_on(agents_process());
        return;
    }
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000]
    } else {
        sizes
    };
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
