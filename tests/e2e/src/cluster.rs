//! Real mpanel processes for end-to-end tests: controllers (`mpanel-controller serve`), panel
//! simulators (`mpanel-panelsim`) and agents (`mpanel-agent run`), each on loopback ports, each
//! logging to a file in the test's own directory.
//!
//! Every process is SIGKILLed when its handle drops, so a failing test leaves nothing running.
//! Waits have deadlines; when one runs out it panics with the tail of every log, and the test
//! directory is kept (its path is printed) so the whole logs can be read afterwards.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::process::workspace_binary;

/// The 32-byte key every controller of a test shares (64 hex digits).
pub const ENCRYPTION_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// The API token every simulator accepts.
pub const PANEL_TOKEN: &str = "sim-token-e2e";
/// The account every panel simulator holds from the start (`mpanel_panelsim::RESIDENT_USER`;
/// the simulators run here as binaries, so the crate is not linked).
pub const RESIDENT_USER: &str = "hostco";

/// Fast fleet and queue timings, so crashes are noticed and leases expire within seconds.
pub const FAST_TIMINGS: &[(&str, &str)] = &[
    ("AGENT_HEARTBEAT_SECS", "1"),
    ("AGENT_HEARTBEAT_SUSPECT_SECS", "3"),
    ("AGENT_OFFLINE_SECS", "5"),
    ("PROVISIONING_RETRY_BASE_MS", "100"),
    ("PROVISIONING_LEASE_SECS", "5"),
    ("PROVISIONING_COMMAND_TIMEOUT_SECS", "20"),
    ("EMAIL_PROVIDER", "log"),
    ("ENABLE_CRON", "false"),
];

/// The test's directory: one log file per process, agent configurations and state. Removed when
/// the test passes, kept (and named on stderr) when it panics.
#[derive(Debug, Clone)]
pub struct TestDir {
    inner: Arc<TestDirInner>,
}

#[derive(Debug)]
struct TestDirInner {
    path: PathBuf,
    logs: Mutex<Vec<(String, PathBuf)>>,
}

impl Drop for TestDirInner {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test directory kept: {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

impl TestDir {
    pub fn create(name: &str) -> TestDir {
        let path = std::env::temp_dir().join(format!(
            "mpanel-e2e-{name}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TestDir {
            inner: Arc::new(TestDirInner {
                path,
                logs: Mutex::new(Vec::new()),
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// A log file for a process, opened for appending (a restarted process continues it).
    pub(crate) fn log(&self, name: &str) -> (PathBuf, File) {
        let path = self.inner.path.join(format!("{name}.log"));
        let file = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        let mut logs = self.inner.logs.lock().unwrap_or_else(|p| p.into_inner());
        if !logs.iter().any(|(n, _)| n == name) {
            logs.push((name.to_owned(), path.clone()));
        }
        (path, file)
    }

    /// The whole log of process `name` so far (empty if it wrote none).
    pub fn read_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.inner.path.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// The last `lines` lines of every process's log.
    pub fn log_tails(&self, lines: usize) -> String {
        let logs = self
            .inner
            .logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut out = String::new();
        for (name, path) in logs {
            let text = tail(&path, lines);
            out.push_str(&format!(
                "----- {name} ({}) -----\n{text}\n",
                path.display()
            ));
        }
        out
    }

    /// How many lines of all logs contain `needle`.
    pub fn count_in_logs(&self, needle: &str) -> usize {
        let logs = self
            .inner
            .logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        logs.iter()
            .map(|(_, path)| {
                std::fs::read_to_string(path)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains(needle))
                    .count()
            })
            .sum()
    }

    /// Panics with `message` and the tail of every log.
    pub fn fail(&self, message: &str) -> ! {
        panic!(
            "{message}\n\nlogs (last lines of each; all in {}):\n{}",
            self.path().display(),
            self.log_tails(25)
        )
    }

    /// Polls `probe` every 100 ms until it returns `Some`, or fails the test after `within`
    /// naming `what` and showing the last value `describe` gave.
    pub async fn wait_for<T>(
        &self,
        within: Duration,
        what: &str,
        mut probe: impl AsyncFnMut() -> Result<T, String>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            match probe().await {
                Ok(v) => return v,
                Err(last) if Instant::now() >= deadline => self.fail(&format!(
                    "timed out after {within:?} waiting for {what}; last seen: {last}"
                )),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return "(no log)".to_owned();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut text = String::new();
    let _ = f.read_to_string(&mut text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A port that was free a moment ago on 127.0.0.1, outside the ephemeral range. Another test
/// can still pick it before ours binds it; the starters below notice (the child exits) and try
/// again with a new one.
pub use crate::ports::free_port;

/// An HTTP client for the controller API and the simulators' self-signed HTTPS.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(15))
        .build()
        .expect("http client")
}

/// A child process that is SIGKILLed when dropped.
#[derive(Debug)]
pub(crate) struct Running {
    child: Option<Child>,
}

impl Running {
    pub(crate) fn spawn(mut cmd: Command, what: &str) -> Running {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Running { child: Some(child) }
    }

    /// Sends `signal` to the process, if it runs.
    pub(crate) fn signal(&self, signal: nix::sys::signal::Signal) {
        if let Some(child) = self.child.as_ref() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
            let _ = nix::sys::signal::kill(pid, signal);
        }
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` once the process has exited.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited after `grace`.
    fn terminate(&mut self, grace: Duration) {
        if let Some(child) = self.child.as_mut() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    self.child = None;
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill9();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A command for a workspace binary: empty environment (plus `PATH`), run in the test
/// directory (so no `.env` of the developer's is read), stdout and stderr to `log`.
pub(crate) fn command(binary: &str, dir: &Path, log: &File) -> Command {
    let mut cmd = Command::new(workspace_binary(binary));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info,sqlx=warn,h2=warn,tower=warn,hyper=warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log.try_clone().expect("log handle"));
    cmd
}

/// One `mpanel-controller serve` process, restartable on the same ports and database.
#[derive(Debug)]
pub struct ControllerProcess {
    pub name: String,
    pub http_port: u16,
    pub grpc_port: u16,
    /// An admin token made with `token create --admin` before the first start.
    pub admin_token: String,
    /// The workspace binary that runs: `mpanel-controller`, or a test build of it.
    binary: String,
    env: Vec<(String, String)>,
    dir: TestDir,
    process: Running,
    client: reqwest::Client,
}

impl ControllerProcess {
    /// Creates an admin token, then starts `serve` with `env` (which must hold `DATABASE_URL`;
    /// the encryption key and fast timings are added unless `env` sets them) and waits until
    /// `/healthz` answers.
    pub async fn start(dir: &TestDir, name: &str, env: &[(&str, &str)]) -> ControllerProcess {
        Self::start_binary(dir, name, "mpanel-controller", env).await
    }

    /// [`ControllerProcess::start`] with another workspace binary that takes the controller's
    /// `serve` and `token create --admin` (`mpanel-controller-fastclock`).
    pub async fn start_binary(
        dir: &TestDir,
        name: &str,
        binary: &str,
        env: &[(&str, &str)],
    ) -> ControllerProcess {
        let mut full: Vec<(String, String)> = vec![
            ("ENCRYPTION_KEY".into(), ENCRYPTION_KEY.into()),
            ("GRPC_SERVER_NAMES".into(), "localhost,127.0.0.1".into()),
        ];
        full.extend(
            FAST_TIMINGS
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        for (k, v) in env {
            full.retain(|(key, _)| key != k);
            full.push(((*k).to_owned(), (*v).to_owned()));
        }
        assert!(
            full.iter().any(|(k, _)| k == "DATABASE_URL"),
            "ControllerProcess::start needs DATABASE_URL"
        );
        let admin_token = create_admin_token(dir, name, binary, &full);
        let mut c = ControllerProcess {
            name: name.to_owned(),
            http_port: 0,
            grpc_port: 0,
            admin_token,
            binary: binary.to_owned(),
            env: full,
            dir: dir.clone(),
            process: Running { child: None },
            client: http_client(),
        };
        // A port taken between our probe and the child's bind: pick new ones, once.
        for attempt in 0..2 {
            c.http_port = free_port();
            c.grpc_port = free_port();
            if c.launch(Duration::from_secs(30)).await {
                return c;
            }
            eprintln!("{name}: did not come up (attempt {attempt}); retrying with new ports");
        }
        dir.fail(&format!("controller {name} did not start"));
    }

    /// Spawns `serve` on the current ports; false if it exited before answering `/healthz`.
    async fn launch(&mut self, within: Duration) -> bool {
        let (_, log) = self.dir.log(&self.name);
        let mut cmd = command(&self.binary, self.dir.path(), &log);
        cmd.arg("serve")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("HTTP_LISTEN", format!("127.0.0.1:{}", self.http_port))
            .env("GRPC_LISTEN", format!("127.0.0.1:{}", self.grpc_port));
        self.process = Running::spawn(cmd, "mpanel-controller serve");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.process.exited().is_some() {
                return false;
            }
            if let Ok(r) = self
                .client
                .get(format!("{}/healthz", self.http_url()))
                .send()
                .await
                && r.status().is_success()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.process.kill9();
        false
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The agents' endpoint, as agents dial it.
    pub fn grpc_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.grpc_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// SIGKILL: no shutdown path runs, leases stay held until they expire.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// SIGSTOP: the process freezes as a whole (a long pause, a frozen VM) until
    /// [`ControllerProcess::resume`]; its sockets stay open and its leases run out.
    pub fn pause(&self) {
        self.process.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// SIGCONT after [`ControllerProcess::pause`].
    pub fn resume(&self) {
        self.process.signal(nix::sys::signal::Signal::SIGCONT);
    }

    /// SIGTERM and wait (SIGKILL after 15 s).
    pub fn stop(&mut self) {
        self.process.terminate(Duration::from_secs(15));
    }

    /// Starts `serve` again on the same ports and database. The old sockets may linger for a
    /// moment, so a start that exits at once is retried for up to 15 s.
    pub async fn restart(&mut self) {
        self.process.kill9();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.launch(Duration::from_secs(30)).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.dir
            .fail(&format!("controller {} did not restart", self.name));
    }

    /// A dashboard admin, made as an operator does: `admin create --email … --password-stdin`.
    pub fn create_admin(&self, email: &str, password: &str) {
        use std::io::Write;
        let (log_path, log) = self.dir.log(&format!("{}-admin", self.name));
        let mut cmd = command(&self.binary, self.dir.path(), &log);
        cmd.args(["admin", "create", "--email", email, "--password-stdin"])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run mpanel-controller admin create: {e}"));
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(format!("{password}\n").as_bytes())
                .expect("write the password");
        }
        let status = child.wait().expect("admin create");
        if !status.success() {
            self.dir.fail(&format!(
                "`admin create --email {email}` failed ({status}); see {}",
                log_path.display()
            ));
        }
    }

    /// An admin API call; answers (status, JSON body or `null`).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.http_url()))
            .bearer_auth(&self.admin_token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => self
                .dir
                .fail(&format!("{method} {path} on {}: {e}", self.name)),
        };
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `POST /api/servers` for a server whose panel is `sim`; answers the server id.
    pub async fn create_server(&self, hostname: &str, sim: &SimProcess) -> i64 {
        let (status, body) = self
            .api(
                reqwest::Method::POST,
                "/api/servers",
                Some(json!({
                    "hostname": hostname,
                    "ipAddress": "192.0.2.10",
                    "controlPanel": sim.kind,
                    "controlPanelUrl": sim.url,
                    "maxAccounts": 1000,
                    "location": "e2e",
                    "group": "default",
                    "nameserver1": "ns1.example.net",
                    "nameserver2": "ns2.example.net",
                    // The panel's own AutoSSL: the simulators install it at once, where ACME
                    // would need a reachable ACME server.
                    "sslProvider": "autossl"
                })),
            )
            .await;
        if status != 201 {
            self.dir
                .fail(&format!("POST /api/servers answered {status}: {body}"));
        }
        body["id"].as_i64().expect("server id")
    }

    /// `POST /api/servers/{id}/enrollment-token`.
    pub async fn enrollment_token(&self, server_id: i64) -> String {
        let (status, body) = self
            .api(
                reqwest::Method::POST,
                &format!("/api/servers/{server_id}/enrollment-token"),
                None,
            )
            .await;
        if status != 201 {
            self.dir
                .fail(&format!("enrollment token answered {status}: {body}"));
        }
        body["token"].as_str().expect("token").to_owned()
    }

    /// This controller's view of an agent (`/api/agents` entry), or `null`.
    pub async fn agent(&self, server_id: i64) -> Value {
        let (status, body) = self.api(reqwest::Method::GET, "/api/agents", None).await;
        if status != 200 {
            return Value::Null;
        }
        body["agents"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["serverId"] == server_id).cloned())
            .unwrap_or(Value::Null)
    }

    /// Waits until the agent of `server_id` holds a session with this controller and is online.
    pub async fn wait_for_agent_online(&self, server_id: i64, within: Duration) {
        self.dir
            .wait_for(
                within,
                &format!("the agent of server {server_id} online at {}", self.name),
                async || {
                    let a = self.agent(server_id).await;
                    if a["connected"] == true && a["status"] == "online" {
                        Ok(())
                    } else {
                        Err(a.to_string())
                    }
                },
            )
            .await;
    }
}

fn create_admin_token(dir: &TestDir, name: &str, binary: &str, env: &[(String, String)]) -> String {
    let (log_path, log) = dir.log(&format!("{name}-token"));
    let mut cmd = command(binary, dir.path(), &log);
    cmd.args(["token", "create", "--admin"])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::piped());
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run mpanel-controller token create: {e}"));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || !token.starts_with("mpa_") {
        dir.fail(&format!(
            "`{binary} token create --admin` failed ({}); see {}",
            out.status,
            log_path.display()
        ));
    }
    token
}

/// One `mpanel-panelsim --tls` process. Its state lives in memory: a restart would lose it, so
/// there is no restart, only faults.
#[derive(Debug)]
pub struct SimProcess {
    /// `cpanel`, `plesk` or `directadmin`.
    pub kind: String,
    /// `https://127.0.0.1:PORT`, as the simulator printed it.
    pub url: String,
    dir: TestDir,
    process: Running,
    client: reqwest::Client,
}

impl SimProcess {
    /// Starts a simulator of `kind` with `extra_args` (e.g. `--latency-ms 200`,
    /// `--fail-rate 0.3 --seed 7`) and waits for its `listening on <url>` line.
    pub async fn start(dir: &TestDir, name: &str, kind: &str, extra_args: &[&str]) -> SimProcess {
        let (log_path, log) = dir.log(name);
        let mut cmd = command("mpanel-panelsim", dir.path(), &log);
        cmd.args([
            "--kind",
            kind,
            "--listen",
            "127.0.0.1:0",
            "--token",
            PANEL_TOKEN,
            "--tls",
        ])
        .args(extra_args)
        .env("RUST_LOG", "warn");
        let mut process = Running::spawn(cmd, "mpanel-panelsim");
        let url = dir
            .wait_for(
                Duration::from_secs(20),
                &format!("{name} to print its address"),
                async || {
                    if let Some(status) = process.exited() {
                        return Err(format!("exited with {status}"));
                    }
                    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                    text.lines()
                        .find_map(|l| l.strip_prefix("listening on "))
                        .map(|u| u.trim().to_owned())
                        .ok_or_else(|| "no `listening on` line yet".to_owned())
                },
            )
            .await;
        SimProcess {
            kind: kind.to_owned(),
            url,
            dir: dir.clone(),
            process,
            client: http_client(),
        }
    }

    /// `GET /__sim/state`.
    pub async fn state(&self) -> Value {
        let r = self
            .client
            .get(format!("{}/__sim/state", self.url))
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
            Ok(r) => self.dir.fail(&format!(
                "{} /__sim/state answered {}",
                self.kind,
                r.status()
            )),
            Err(e) => self
                .dir
                .fail(&format!("{} /__sim/state failed: {e}", self.kind)),
        }
    }

    /// The usernames of the accounts on this panel besides the hosting company's own one every
    /// simulator starts with, in state order (duplicates kept). That one must still be there:
    /// mpanel never touches an account it did not make.
    pub async fn usernames(&self) -> Vec<String> {
        let state = self.state().await;
        let all: Vec<String> = state["accounts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|a| a["username"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if !all.iter().any(|u| u == RESIDENT_USER) {
            self.dir.fail(&format!(
                "{}: the resident account {RESIDENT_USER} is gone: {all:?}",
                self.kind
            ));
        }
        all.into_iter().filter(|u| u != RESIDENT_USER).collect()
    }

    /// `POST /__sim/faults` with one fault or an array of them.
    pub async fn script_faults(&self, faults: Value) {
        let r = self
            .client
            .post(format!("{}/__sim/faults", self.url))
            .json(&faults)
            .send()
            .await;
        if !matches!(&r, Ok(r) if r.status().is_success()) {
            self.dir
                .fail(&format!("{} POST /__sim/faults: {r:?}", self.kind));
        }
    }

    /// `DELETE /__sim/faults`.
    pub async fn clear_faults(&self) {
        let r = self
            .client
            .delete(format!("{}/__sim/faults", self.url))
            .send()
            .await;
        if !matches!(&r, Ok(r) if r.status().is_success()) {
            self.dir
                .fail(&format!("{} DELETE /__sim/faults: {r:?}", self.kind));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }
}

/// One `mpanel-agent run` process for one server, with its `agent.toml` and state directory.
#[derive(Debug)]
pub struct AgentProcess {
    pub name: String,
    pub server_id: i64,
    pub config_path: PathBuf,
    dir: TestDir,
    process: Running,
}

impl AgentProcess {
    /// Writes `agent.toml` (controller: `controller`'s gRPC URL, panel: `sim`), enrolls with a
    /// fresh token for `server_id` (`mpanel-agent enroll`), then starts `mpanel-agent run`.
    pub async fn enroll_and_start(
        dir: &TestDir,
        name: &str,
        controller: &ControllerProcess,
        sim: &SimProcess,
        server_id: i64,
    ) -> AgentProcess {
        let home = dir.path().join(name);
        std::fs::create_dir_all(home.join("accounts")).expect("agent directory");
        let config_path = home.join("agent.toml");
        let config = format!(
            "controller = \"{controller}\"\nstate_dir = \"{state}\"\naccounts_path = \"{accounts}\"\n\
             heartbeat_secs = 1\n\n[panel]\nkind = \"{kind}\"\nurl = \"{url}\"\nuser = \"{user}\"\n\
             token = \"{PANEL_TOKEN}\"\ninsecure_tls = true\n",
            controller = controller.grpc_url(),
            state = home.join("state").display(),
            accounts = home.join("accounts").display(),
            kind = sim.kind,
            url = sim.url,
            // WHM logs in as root; Plesk and DirectAdmin as admin.
            user = if sim.kind == "cpanel" {
                "root"
            } else {
                "admin"
            },
        );
        std::fs::write(&config_path, config).expect("write agent.toml");
        let token = controller.enrollment_token(server_id).await;
        let (log_path, log) = dir.log(name);
        let mut cmd = command("mpanel-agent", dir.path(), &log);
        cmd.arg("--config")
            .arg(&config_path)
            .args(["enroll", "--controller", &controller.grpc_url(), "--token"])
            .arg(&token);
        let status = cmd
            .status()
            .unwrap_or_else(|e| panic!("cannot run mpanel-agent enroll: {e}"));
        if !status.success() {
            dir.fail(&format!(
                "mpanel-agent enroll for server {server_id} failed ({status}); see {}",
                log_path.display()
            ));
        }
        let mut agent = AgentProcess {
            name: name.to_owned(),
            server_id,
            config_path,
            dir: dir.clone(),
            process: Running { child: None },
        };
        agent.launch();
        agent
    }

    fn launch(&mut self) {
        let (_, log) = self.dir.log(&self.name);
        let mut cmd = command("mpanel-agent", self.dir.path(), &log);
        cmd.arg("--config").arg(&self.config_path).arg("run");
        self.process = Running::spawn(cmd, "mpanel-agent run");
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// SIGKILL: the session drops without a goodbye, commands in hand are lost.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Starts `mpanel-agent run` again with the same configuration and state.
    pub fn restart(&mut self) {
        self.process.kill9();
        self.launch();
    }
}
