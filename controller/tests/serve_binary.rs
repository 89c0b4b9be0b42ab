//! The `mpanel-controller` binary as an operator runs it: start-up on the embedded default,
//! one-line errors with the contract's exit codes, and graceful shutdown on SIGTERM.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn controller(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mpanel-controller"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("RUST_LOG", "info");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .expect("run mpanel-controller")
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Starts `serve` and returns the child and the address it logged.
fn start_serving(dir: &Path, extra_env: &[(&str, &str)]) -> (Child, String) {
    let mut cmd = controller(dir);
    cmd.arg("serve")
        .env("ENCRYPTION_KEY", KEY)
        .env("HTTP_LISTEN", "127.0.0.1:0")
        .env("GRPC_LISTEN", "127.0.0.1:0")
        .envs(extra_env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn serve");
    let stderr = child.stderr.take().expect("stderr");
    // Read stderr on a thread so a silent child cannot hang the test past its deadline.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line
                .contains("controller listening")
                .then(|| {
                    line.split("addr=")
                        .nth(1)
                        .and_then(|r| r.split_whitespace().next())
                })
                .flatten()
            {
                let _ = tx.send(addr.to_owned());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => (child, addr),
        Err(_) => {
            let _ = child.kill();
            panic!("serve did not report its address in time");
        }
    }
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn serve_with_only_an_encryption_key_runs_on_sqlite_and_answers_health_checks() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start_serving(dir.path(), &[]);
    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready: serde_json::Value = client
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["database"], "sqlite");
    let missing = client
        .get(format!("http://{addr}/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert!(
        dir.path().join("mpanel.db").exists(),
        "the embedded default is ./mpanel.db"
    );
    let status = terminate(&mut child);
    assert!(
        status.success(),
        "graceful shutdown exits 0, got {status:?}"
    );
}

#[test]
fn an_unreachable_database_url_exits_1_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(controller(dir.path())
        .arg("serve")
        .env("ENCRYPTION_KEY", KEY)
        .env("HTTP_LISTEN", "127.0.0.1:0")
        .env("GRPC_LISTEN", "127.0.0.1:0")
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/nothing"));
    assert_eq!(out.status.code(), Some(1));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("DATABASE_URL"), "{lines:?}");
}

#[test]
fn a_malformed_database_url_exits_1_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(controller(dir.path())
        .arg("serve")
        .env("ENCRYPTION_KEY", KEY)
        .env("DATABASE_URL", "mysql://x/y"));
    assert_eq!(out.status.code(), Some(1));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("DATABASE_URL:"), "{lines:?}");
}

#[test]
fn serve_without_an_encryption_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(controller(dir.path()).arg("serve"));
    assert_eq!(out.status.code(), Some(1));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("ENCRYPTION_KEY"), "{lines:?}");
    assert!(
        !dir.path().join("mpanel.db").exists(),
        "nothing is created before the check"
    );
}

#[test]
fn bad_usage_exits_2_and_version_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let bad = run(controller(dir.path()).arg("no-such-command"));
    assert_eq!(bad.status.code(), Some(2));
    let version = run(controller(dir.path()).arg("--version"));
    assert_eq!(version.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
    let help = run(controller(dir.path()).arg("--help"));
    assert_eq!(help.status.code(), Some(0));
    let help = String::from_utf8_lossy(&help.stdout);
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    // The contract's commands, and `admin` for the web dashboard's sign-in accounts.
    assert_eq!(
        commands,
        ["serve", "migrate", "token", "admin", "help"],
        "{help}"
    );
    // The demo is its own binary (mpanel-demo); the production controller has no such command.
    let demo = run(controller(dir.path()).arg("demo"));
    assert_eq!(demo.status.code(), Some(2));
}

#[test]
fn migrate_then_token_create_prints_a_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let migrate = run(controller(dir.path()).arg("migrate"));
    assert_eq!(
        migrate.status.code(),
        Some(0),
        "{:?}",
        stderr_lines(&migrate)
    );
    let token = run(controller(dir.path()).args(["token", "create", "--admin", "--name", "ops"]));
    assert_eq!(token.status.code(), Some(0), "{:?}", stderr_lines(&token));
    let printed = String::from_utf8_lossy(&token.stdout).trim().to_owned();
    assert!(
        printed.starts_with("mpa_") && printed.len() > 40,
        "{printed}"
    );
    let db = std::fs::read(dir.path().join("mpanel.db")).unwrap();
    let needle = printed.as_bytes();
    assert!(
        !db.windows(needle.len()).any(|w| w == needle),
        "the token itself must not be stored"
    );
    let without_flag = run(controller(dir.path()).args(["token", "create"]));
    assert_eq!(without_flag.status.code(), Some(2));
}
