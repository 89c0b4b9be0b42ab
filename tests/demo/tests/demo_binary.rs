//! `mpanel-demo` as a newcomer runs it: on ephemeral ports with its own SQLite file, it prints
//! the two shell-ready lines once the fleet is up, provisions one service per panel, answers the
//! admin API with the printed token, and stops cleanly on Ctrl-C (SIGINT).

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

struct Demo {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    /// Waits for a stdout line for which `pick` returns something.
    fn wait_for<T>(&mut self, within: Duration, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = pick(&line);
                    self.seen.push(line);
                    if let Some(found) = found {
                        return found;
                    }
                }
                Err(_) => panic!(
                    "mpanel-demo did not print what was expected within {within:?}; it printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_provisions_one_service_per_panel_and_hands_out_a_working_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mpanel-demo"))
        .current_dir(dir.path())
        .env("HTTP_LISTEN", "127.0.0.1:0")
        .env("GRPC_LISTEN", "127.0.0.1:0")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", db.display()),
        )
        .env("RUST_LOG", "warn")
        .env_remove("ENCRYPTION_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut demo = Demo {
        child,
        lines,
        seen: Vec::new(),
    };

    let url = demo.wait_for(Duration::from_secs(90), |l| {
        l.strip_prefix("MPANEL_URL=").map(str::to_owned)
    });
    let token = demo.wait_for(Duration::from_secs(5), |l| {
        l.strip_prefix("MPANEL_TOKEN=").map(str::to_owned)
    });
    let admin_email = demo.wait_for(Duration::from_secs(5), |l| {
        l.strip_prefix("MPANEL_ADMIN_EMAIL=").map(str::to_owned)
    });
    let admin_password = demo.wait_for(Duration::from_secs(5), |l| {
        l.strip_prefix("MPANEL_ADMIN_PASSWORD=").map(str::to_owned)
    });
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(
        !url.ends_with(":0"),
        "the bound port, not the requested 0: {url}"
    );

    // One order per panel, each reported active.
    let mut active = Vec::new();
    while active.len() < 3 {
        let kind = demo.wait_for(Duration::from_secs(120), |l| {
            let (kind, rest) = l.strip_prefix("# ")?.split_once(": ")?;
            rest.contains(" -> service ").then(|| {
                assert!(
                    rest.contains("completed") && rest.contains(" is active "),
                    "{l}"
                );
                kind.to_owned()
            })
        });
        active.push(kind);
    }
    active.sort();
    assert_eq!(active, ["cpanel", "directadmin", "plesk"]);

    // The printed lines work as they are, as curl or mpanelctl would use them.
    let client = reqwest::Client::new();
    let agents: Value = client
        .get(format!("{url}/api/agents"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let agents = agents["agents"].as_array().unwrap();
    sign_in_to_the_dashboard(&url, &admin_email, &admin_password).await;
    assert_eq!(agents.len(), 3, "{agents:?}");
    assert!(agents.iter().all(|a| a["status"] == "online"), "{agents:?}");
    let services: Value = client
        .get(format!("{url}/api/services"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let services = services["services"].as_array().unwrap();
    assert_eq!(services.len(), 3, "{services:?}");
    assert!(
        services.iter().all(|s| s["status"] == "active"),
        "{services:?}"
    );
    assert!(db.exists(), "DATABASE_URL was not used");

    // Ctrl-C stops everything and exits 0.
    let pid = Pid::from_raw(i32::try_from(demo.child.id()).unwrap());
    kill(pid, Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = demo.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "mpanel-demo did not stop on SIGINT"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.code(), Some(0));
}

/// Signs in to the dashboard with the printed email and password, as a browser would: the form's
/// CSRF cookie and field, then the session cookie and the redirect to `/admin`.
async fn sign_in_to_the_dashboard(url: &str, email: &str, password: &str) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = client
        .get(format!("{url}/admin/login"))
        .send()
        .await
        .unwrap();
    let cookie = form
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .to_owned();
    let body = form.text().await.unwrap();
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker).expect("a CSRF field") + marker.len();
    let csrf = &body[start..start + body[start..].find('"').unwrap()];
    let signed_in = client
        .post(format!("{url}/admin/login"))
        .header("cookie", cookie)
        .form(&[("email", email), ("password", password), ("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303, "{:?}", signed_in.headers());
    assert_eq!(signed_in.headers()["location"], "/admin");
    assert!(
        signed_in.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("mpanel_admin_session=")
    );
}
