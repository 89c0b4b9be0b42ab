//! `mpanelctl` against a real controller on loopback: the built binary is run with
//! `MPANEL_URL`/`MPANEL_TOKEN` as an admin would, and what it prints and its exit status are
//! checked against the API's own state (read through the API or the test `Hand`).

mod api_support;
mod fleet_support;

use api_support::{Auth, Body, Hand, one_order, send, start};
use fleet_support::Controller;
use mpanel_common::status::{ProvisioningStep, StepStatus};
use mpanel_controller::store::StepRecord;
use mpanel_controller::store::queue::ServiceChange;
use reqwest::Method;
use serde_json::Value;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }

    /// Asserts exit status `code`, nothing on stdout and exactly one `error: ` line on stderr;
    /// returns that line.
    #[track_caller]
    fn failed(&self, code: i32) -> &str {
        assert_eq!(
            self.code, code,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert_eq!(self.stdout, "", "stderr: {}", self.stderr);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{:?}", self.stderr);
        assert!(lines[0].starts_with("error: "), "{:?}", self.stderr);
        lines[0]
    }
}

/// Runs the binary with exactly the environment given (plus PATH), so no admin's own
/// MPANEL_* variables or config file leak in.
async fn ctl_env(env: &[(&str, &str)], args: &[&str]) -> Run {
    let config_home = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_mpanelctl"));
    cmd.args(args)
        .env_clear()
        .env("XDG_CONFIG_HOME", config_home.path())
        .env("HOME", config_home.path())
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("mpanelctl runs");
    Run {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

async fn ctl(c: &Controller, args: &[&str]) -> Run {
    ctl_env(&[("MPANEL_URL", &c.http), ("MPANEL_TOKEN", &c.token)], args).await
}

#[tokio::test]
async fn an_order_placed_with_the_cli_shows_its_task() {
    let c = start().await;
    let product = ctl(
        &c,
        &[
            "products",
            "add",
            "--name",
            "Starter",
            "--price",
            "monthly:999:USD",
            "--price",
            "annually:9990:USD",
            "--cpanel-package",
            "starter",
            "--disk-mb",
            "1024",
            "--json",
        ],
    )
    .await
    .json();
    let product_id = product["id"].as_i64().unwrap();
    assert_eq!(product["packages"]["cpanel"], "starter");
    assert_eq!(product["quotas"]["diskMb"], 1024);
    assert_eq!(product["prices"].as_array().unwrap().len(), 2);
    let listed = ctl(&c, &["products", "list"]).await;
    let row = listed.ok().lines().find(|l| l.contains("Starter")).unwrap();
    assert!(
        row.contains("9.99 USD monthly") && row.contains("99.90 USD annually"),
        "{row}"
    );

    let customer = ctl(
        &c,
        &[
            "customers",
            "add",
            "--email",
            "ann@example.com",
            "--name",
            "Ann Example",
            "--json",
        ],
    )
    .await
    .json();
    let customer_id = customer["id"].as_i64().unwrap();
    assert_eq!(customer["email"], "ann@example.com");

    let ordered = ctl(
        &c,
        &[
            "services",
            "order",
            "--customer",
            &customer_id.to_string(),
            "--product",
            &product_id.to_string(),
            "--domain",
            "shop.example.com",
            "--cycle",
            "annually",
        ],
    )
    .await;
    let line = ordered.ok();
    // The service and its job, as the API stored them.
    let services = api_support::get(&c, "/api/services").await;
    let service = &services["services"][0];
    assert_eq!(service["domain"], "shop.example.com");
    assert_eq!(service["billingCycle"], "annually");
    assert_eq!(service["customerId"], customer_id);
    let tasks = api_support::get(&c, "/api/provisioning/tasks").await;
    let job = tasks["tasks"][0]["jobId"].as_str().unwrap().to_owned();
    assert_eq!(tasks["tasks"][0]["serviceId"], service["id"]);
    assert!(
        line.contains(&format!("service {} ordered", service["id"])) && line.contains(&job),
        "{line}"
    );

    let shown = ctl(&c, &["tasks", "show", &job]).await;
    let text = shown.ok();
    assert!(text.contains(&job), "{text}");
    assert!(text.contains("provision"), "{text}");
    assert!(
        text.contains("STEP") || text.contains("no steps yet"),
        "{text}"
    );
    // Without the prefix, and as JSON: the API's task.
    let task = ctl(
        &c,
        &["tasks", "show", job.trim_start_matches("job_"), "--json"],
    )
    .await
    .json();
    assert_eq!(task["jobId"], job.as_str());
    assert_eq!(task["type"], "provision");
    assert_eq!(task["serviceId"], service["id"]);
    assert!(task["result"]["steps"].is_array(), "{task}");

    let listed = ctl(&c, &["services", "list"]).await;
    assert!(
        listed.ok().contains("shop.example.com"),
        "{}",
        listed.stdout
    );
    let listed = ctl(
        &c,
        &["tasks", "list", "--service", &service["id"].to_string()],
    )
    .await;
    assert!(listed.ok().contains(&job), "{}", listed.stdout);
}

#[tokio::test]
async fn a_suspension_from_the_cli_queues_the_suspend_task_with_its_reason() {
    let c = start().await;
    let hand = Hand::new(&c).await;
    // An active service with an account on a server whose agent is offline: the worker can
    // only retry (far off), so the suspend task stays open for the test to hold.
    let server = c.create_server("web1.example.net").await;
    assert_eq!(server, 1);
    let (_, _, service, job) = one_order(&c, "suspend.example.com").await;
    hand.complete(&job, ServiceChange::Activate).await;
    c.sql("UPDATE services SET server_id = 1, username = 'suspend1'")
        .await;

    let id = service.to_string();
    let run = ctl(
        &c,
        &[
            "services",
            "suspend",
            &id,
            "--reason",
            "abuse",
            "--note",
            "phishing report",
        ],
    )
    .await;
    let line = run.ok().to_owned();
    assert!(line.starts_with("Suspension queued: job_"), "{line}");
    let suspend_job = line
        .split_whitespace()
        .find(|w| w.starts_with("job_"))
        .unwrap()
        .to_owned();
    let task = hand.task(&suspend_job).await;
    assert_eq!(task.task_type.as_str(), "suspend");
    assert_eq!(task.service_id.get(), service);
    assert_eq!(task.params.0["reason"], "abuse");
    assert_eq!(task.params.0["note"], "phishing report");

    // Held as a worker would hold it, so it stays open while the second suspension is refused.
    let held = hand
        .seize(&suspend_job)
        .await
        .expect("the suspend task is still open");
    // A second suspension while the first is open is the API's 409, named in one line.
    let (status, body) = send(
        &c,
        Method::POST,
        &format!("/api/services/{service}/suspend"),
        Body::None,
        Auth::Admin,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let code = body["error"]["code"].as_str().unwrap();
    let again = ctl(&c, &["services", "suspend", &id]).await;
    let error = again.failed(1);
    assert!(error.ends_with(&format!("({code})")), "{error}");

    hand.store
        .complete_service_task(
            held.id,
            api_support::WORKER,
            ServiceChange::Suspend {
                reason: "abuse".into(),
            },
        )
        .await
        .unwrap();
    let shown = ctl(&c, &["services", "show", &id, "--json"]).await.json();
    assert_eq!(shown["status"], "suspended");
    assert_eq!(shown["suspensionReason"], "abuse");
    let listed = ctl(&c, &["services", "list", "--status", "suspended"]).await;
    assert!(
        listed.ok().contains("suspended (abuse)"),
        "{}",
        listed.stdout
    );
}

#[tokio::test]
async fn a_failed_task_is_watched_to_its_error_and_retried_from_the_cli() {
    let c = start().await;
    let hand = Hand::new(&c).await;
    let (_, _, _, job) = one_order(&c, "retry.example.com").await;
    hand.fail(&job, "the panel refused the account").await;

    let failed = ctl(&c, &["tasks", "failed"]).await;
    let text = failed.ok();
    assert!(
        text.contains(&job) && text.contains("the panel refused the account"),
        "{text}"
    );
    // Watching a failed task ends at once: exit 1, its error in one line.
    let watched = ctl(&c, &["tasks", "watch", &job]).await;
    assert_eq!(watched.code, 1, "{}", watched.stderr);
    assert!(
        watched.stdout.contains(&format!("{job} failed")),
        "{}",
        watched.stdout
    );
    assert_eq!(
        watched.stderr.trim_end(),
        format!("error: {job} failed: the panel refused the account")
    );

    let retried = ctl(&c, &["tasks", "retry", &job]).await;
    let line = retried.ok();
    assert!(
        line.contains("Task re-queued") && line.contains(&job),
        "{line}"
    );
    let task = hand.task(&job).await;
    assert!(task.status.is_open(), "{:?}", task.status);
    let failed = ctl(&c, &["tasks", "failed", "--json"]).await.json();
    assert!(
        failed["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["jobId"] != job.as_str()),
        "{failed}"
    );

    // Retrying a task that is not failed: the API's refusal, with its code, exit 1.
    let path = format!("/api/provisioning/retry/{job}");
    let (status, body) = send(&c, Method::POST, &path, Body::None, Auth::Admin).await;
    assert!((400..500).contains(&status), "{status} {body}");
    let code = body["error"]["code"].as_str().unwrap();
    let again = ctl(&c, &["tasks", "retry", &job]).await;
    assert!(
        again.failed(1).ends_with(&format!("({code})")),
        "{}",
        again.stderr
    );
}

#[tokio::test]
async fn json_output_parses_and_all_follows_every_page() {
    let c = start().await;
    for i in 0..3 {
        ctl(
            &c,
            &[
                "customers",
                "add",
                "--email",
                &format!("c{i}@example.com"),
                "--name",
                "C",
            ],
        )
        .await
        .ok();
    }
    for args in [
        &["servers", "list"][..],
        &["agents", "list"],
        &["products", "list"],
        &["customers", "list"],
        &["services", "list"],
        &["tasks", "list"],
        &["tasks", "failed"],
        &["tasks", "stats"],
        &["invoices", "list"],
        &["cron", "jobs"],
        &["cron", "runs"],
    ] {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let v = ctl(&c, &with_json).await.json();
        assert!(v.is_object(), "{args:?}: {v}");
        // The table form works too.
        ctl(&c, args).await.ok();
    }

    let page = ctl(&c, &["customers", "list", "--limit", "1", "--json"]).await;
    let v = page.json();
    assert_eq!(v["customers"].as_array().unwrap().len(), 1);
    let next = v["nextCursor"].as_str().unwrap().to_owned();
    let table = ctl(&c, &["customers", "list", "--limit", "1"]).await;
    assert!(
        table.stderr.contains(&format!("--cursor {next}")),
        "{}",
        table.stderr
    );
    let second = ctl(
        &c,
        &[
            "customers",
            "list",
            "--limit",
            "1",
            "--cursor",
            &next,
            "--json",
        ],
    )
    .await
    .json();
    assert_ne!(second["customers"][0]["id"], v["customers"][0]["id"]);
    let all = ctl(
        &c,
        &["customers", "list", "--limit", "1", "--all", "--json"],
    )
    .await
    .json();
    let emails: Vec<&str> = all["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails.len(), 3, "{all}");
    for i in 0..3 {
        assert!(
            emails.contains(&format!("c{i}@example.com").as_str()),
            "{all}"
        );
    }
    assert!(all["nextCursor"].is_null());
}

#[tokio::test]
async fn bad_usage_exits_2_with_one_line_and_sends_nothing() {
    let c = start().await;
    for args in [
        &["servres", "list"][..],
        &["services", "suspend", "1", "--reason", "boredom"],
        &["services", "terminate", "1"],
        &["services", "show", "not-a-number"],
        &[
            "products",
            "add",
            "--name",
            "X",
            "--price",
            "monthly:9.99:USD",
        ],
        &["tasks", "show", "job_x"],
        &["tasks", "watch", "job_1", "--interval", "0"],
        &["customers", "list", "--limit", "0"],
        &["cron", "run", "backups?x=1"],
        &["servers"],
        &[],
    ] {
        let run = ctl(&c, args).await;
        let line = run.failed(2);
        assert!(line.len() > "error: ".len() + 5, "{args:?}: {line}");
    }
    let group = ctl(&c, &["servers"]).await;
    let line = group.failed(2);
    assert!(
        line.contains("'mpanelctl servers' requires a subcommand")
            && line.contains("add, list, show"),
        "{line}"
    );
    let bare = ctl(&c, &[]).await;
    let line = bare.failed(2);
    assert!(
        line.starts_with("error: 'mpanelctl' requires a subcommand")
            && line.contains("servers, agents"),
        "{line}"
    );
    // Nothing reached the API.
    assert_eq!(api_support::counts(&c).await, [0, 0, 0, 0]);

    let help = ctl(&c, &["--help"]).await;
    assert!(help.ok().contains("Exit status"), "{}", help.stdout);
    assert!(help.ok().contains("MPANEL_TOKEN"));
    assert!(
        !help.stdout.contains(&c.token),
        "the token is never printed"
    );
    let sub = ctl(&c, &["services", "suspend", "--help"]).await;
    assert!(sub.ok().contains("--reason"), "{}", sub.stdout);
    let version = ctl(&c, &["--version"]).await;
    assert!(version.ok().starts_with("mpanelctl "), "{}", version.stdout);
}

#[tokio::test]
async fn api_refusals_exit_1_naming_the_code() {
    let c = start().await;
    let missing = ctl(&c, &["services", "show", "999999"]).await;
    let line = missing.failed(1);
    assert!(line.ends_with("(not_found)"), "{line}");

    let add = [
        "customers",
        "add",
        "--email",
        "dup@example.com",
        "--name",
        "D",
    ];
    ctl(&c, &add).await.ok();
    let (status, body) = send(
        &c,
        Method::POST,
        "/api/customers",
        Body::Json(serde_json::json!({"email": "dup@example.com", "name": "D"})),
        Auth::Admin,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let dup = ctl(&c, &add).await;
    let line = dup.failed(1);
    assert!(
        line.ends_with(&format!("({})", body["error"]["code"].as_str().unwrap())),
        "{line}"
    );

    // A field the API refuses is named in the line.
    let bad = ctl(
        &c,
        &["customers", "add", "--email", "not-an-email", "--name", "X"],
    )
    .await;
    let line = bad.failed(1);
    assert!(line.starts_with("error: email: "), "{line}");

    // The controller down: exit 1, one line naming the address.
    let unreachable = ctl_env(
        &[("MPANEL_URL", "http://127.0.0.1:9"), ("MPANEL_TOKEN", "x")],
        &["servers", "list"],
    )
    .await;
    assert!(unreachable.failed(1).contains("127.0.0.1:9"));
}

#[tokio::test]
async fn the_token_comes_from_flags_environment_or_config_file_and_is_never_printed() {
    let c = start().await;
    let missing = ctl_env(&[("MPANEL_URL", &c.http)], &["servers", "list"]).await;
    assert!(
        missing.failed(2).contains("MPANEL_TOKEN"),
        "{}",
        missing.stderr
    );

    let wrong = ctl_env(
        &[("MPANEL_URL", &c.http), ("MPANEL_TOKEN", "mpa_wrong-token")],
        &["servers", "list"],
    )
    .await;
    let line = wrong.failed(1);
    assert!(line.ends_with("(unauthorized)"), "{line}");
    assert!(!line.contains("mpa_wrong-token"), "{line}");

    // The flag wins over a wrong environment token.
    let flagged = ctl_env(
        &[("MPANEL_URL", &c.http), ("MPANEL_TOKEN", "mpa_wrong-token")],
        &["servers", "list", "--token", &c.token],
    )
    .await;
    flagged.ok();

    // A config file given by --config; the environment's URL still wins over its URL.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ctl.toml");
    std::fs::write(
        &file,
        format!("url = \"http://127.0.0.1:9\"\ntoken = \"{}\"\n", c.token),
    )
    .unwrap();
    let from_file = ctl_env(
        &[("MPANEL_URL", &c.http)],
        &["--config", file.to_str().unwrap(), "servers", "list"],
    )
    .await;
    from_file.ok();
    // The default place: $XDG_CONFIG_HOME/mpanel/ctl.toml.
    std::fs::create_dir_all(dir.path().join("mpanel")).unwrap();
    std::fs::write(
        dir.path().join("mpanel/ctl.toml"),
        format!("url = \"{}\"\ntoken = \"{}\"\n", c.http, c.token),
    )
    .unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_mpanelctl"));
    let out = cmd
        .args(["products", "list"])
        .env_clear()
        .env("XDG_CONFIG_HOME", dir.path())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // Nothing the CLI prints carries the token, enrollment grants included.
    let id = c.create_server("web1.example.net").await.to_string();
    for args in [
        &["servers", "show", &id][..],
        &["servers", "enrollment-token", &id],
        &["servers", "list", "--json"],
        &["services", "show", "424242"],
    ] {
        let run = ctl(&c, args).await;
        assert!(
            !run.stdout.contains(&c.token) && !run.stderr.contains(&c.token),
            "{args:?}"
        );
    }
}

#[tokio::test]
async fn servers_are_added_drained_enabled_and_enrolled_from_the_cli() {
    let c = start().await;
    let added = ctl(
        &c,
        &[
            "servers",
            "add",
            "--hostname",
            "web2.example.net",
            "--ip",
            "192.0.2.20",
            "--panel",
            "plesk",
            "--panel-url",
            "https://127.0.0.1:8443",
            "--group",
            "eu",
            "--json",
        ],
    )
    .await
    .json();
    let id = added["id"].as_i64().unwrap().to_string();
    assert_eq!(added["controlPanel"], "plesk");
    assert_eq!(added["group"], "eu");

    let drained = ctl(&c, &["servers", "drain", &id]).await;
    assert!(drained.ok().contains("is draining"), "{}", drained.stdout);
    let server = api_support::get(&c, &format!("/api/servers/{id}")).await;
    assert_eq!(server["status"], "draining");
    ctl(&c, &["servers", "enable", &id]).await.ok();
    let server = api_support::get(&c, &format!("/api/servers/{id}")).await;
    assert_eq!(server["status"], "active");
    let listed = ctl(&c, &["servers", "list"]).await;
    assert!(
        listed.ok().contains("web2.example.net"),
        "{}",
        listed.stdout
    );

    let grant = ctl(&c, &["servers", "enrollment-token", &id, "--json"])
        .await
        .json();
    assert!(
        grant["token"].as_str().is_some_and(|t| !t.is_empty()),
        "{grant}"
    );
    assert!(grant["expiresAt"].is_string(), "{grant}");
    let revoked = ctl(&c, &["servers", "revoke", &id, "--json"]).await.json();
    assert!(revoked["revokedSerials"].is_array(), "{revoked}");

    let dup = ctl(
        &c,
        &[
            "servers",
            "add",
            "--hostname",
            "web3.example.net",
            "--ip",
            "not-an-ip",
            "--panel",
            "cpanel",
            "--panel-url",
            "https://127.0.0.1:2087",
        ],
    )
    .await;
    let line = dup.failed(1);
    assert!(line.starts_with("error: ipAddress: "), "{line}");
}

#[tokio::test]
async fn cron_jobs_run_on_demand_and_completions_need_no_token() {
    let c = start().await;
    let jobs = ctl(&c, &["cron", "jobs", "--json"]).await.json();
    let name = jobs["jobs"][0]["name"].as_str().unwrap().to_owned();
    let run = ctl(&c, &["cron", "run", &name, "--json"]).await.json();
    let run_id = run["runId"].clone();
    assert!(!run_id.is_null(), "{run}");
    let runs = ctl(&c, &["cron", "runs", "--job", &name, "--json"])
        .await
        .json();
    assert!(
        runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == run_id),
        "{runs}"
    );
    let unknown = ctl(&c, &["cron", "run", "no-such-job"]).await;
    assert!(
        unknown.failed(1).ends_with("(unknown_job)"),
        "{}",
        unknown.stderr
    );

    for shell in ["bash", "zsh", "fish"] {
        let out = ctl_env(&[], &["completions", shell]).await;
        let script = out.ok();
        assert!(
            script.contains("mpanelctl") && script.contains("enrollment-token"),
            "{shell}"
        );
    }
    ctl_env(&[], &["completions", "tcsh"]).await.failed(2);
}

#[tokio::test]
async fn watch_prints_each_step_once_as_it_finishes_and_exits_0_when_the_task_completes() {
    let c = start().await;
    let hand = Hand::new(&c).await;
    let (_, _, _, job) = one_order(&c, "watch.example.com").await;

    // Nothing moves it: the watch gives up after its timeout, exit 1.
    let waited = ctl(
        &c,
        &[
            "tasks",
            "watch",
            &job,
            "--interval",
            "0.1",
            "--timeout",
            "0.3",
        ],
    )
    .await;
    assert_eq!(waited.code, 1, "{}", waited.stderr);
    assert!(
        waited
            .stderr
            .contains(&format!("{job} is still pending after ")),
        "{}",
        waited.stderr
    );

    let task = hand.seize(&job).await.unwrap();
    let watcher = tokio::process::Command::new(env!("CARGO_BIN_EXE_mpanelctl"))
        .args([
            "tasks",
            "watch",
            &job,
            "--interval",
            "0.1",
            "--timeout",
            "30",
        ])
        .env_clear()
        .env("MPANEL_URL", &c.http)
        .env("MPANEL_TOKEN", &c.token)
        .env("XDG_CONFIG_HOME", "/nonexistent")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(400));
    pause().await;
    for (step, data) in [
        (
            ProvisioningStep::Account,
            serde_json::json!({"username": "watchexa"}),
        ),
        (
            ProvisioningStep::Dns,
            serde_json::json!({"zone_id": "z1", "records": 4}),
        ),
    ] {
        let record = StepRecord {
            step: step.into(),
            status: StepStatus::Success,
            data,
            error: None,
            finished_at: Some(1),
        };
        hand.store
            .record_step(task.id, api_support::WORKER, &record)
            .await
            .unwrap();
        pause().await;
    }
    hand.store
        .complete_service_task(task.id, api_support::WORKER, ServiceChange::Activate)
        .await
        .unwrap();
    let out = watcher.wait_with_output().await.unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with(&format!("{job} processing")),
        "{stdout}"
    );
    let account = lines
        .iter()
        .position(|l| l.trim_start().starts_with("account"))
        .unwrap();
    let dns = lines
        .iter()
        .position(|l| l.trim_start().starts_with("dns"))
        .unwrap();
    assert!(account < dns, "{stdout}");
    assert!(
        lines[account].contains("success") && lines[account].contains("watchexa"),
        "{stdout}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.trim_start().starts_with("account"))
            .count(),
        1,
        "each step once: {stdout}"
    );
    assert_eq!(
        lines.last().unwrap(),
        &format!("{job} completed"),
        "{stdout}"
    );

    let shown = ctl(&c, &["tasks", "show", &job]).await;
    let text = shown.ok();
    let row = text.lines().find(|l| l.starts_with("dns")).unwrap();
    assert!(
        row.contains("success") && row.contains("\"records\":4"),
        "{text}"
    );
}

#[tokio::test]
async fn invoices_are_listed_and_shown_in_major_units_and_a_refused_charge_names_its_code() {
    let c = start().await;
    let customer = api_support::customer(&c, "billed@example.com").await;
    let (status, invoice) = c
        .request(
            Method::POST,
            "/api/invoices",
            Some(serde_json::json!({
                "customerId": customer,
                "currency": "EUR",
                "lines": [{"description": "Setup fee", "amount": 4900}],
            })),
        )
        .await;
    assert_eq!(status, 201, "{invoice}");
    let id = invoice["id"].to_string();
    let number = invoice["number"].as_str().unwrap();

    let listed = ctl(
        &c,
        &["invoices", "list", "--customer", &customer.to_string()],
    )
    .await;
    let row = listed.ok().lines().find(|l| l.contains(number)).unwrap();
    assert!(row.contains("unpaid") && row.contains("49.00 EUR"), "{row}");
    let none = ctl(&c, &["invoices", "list", "--status", "paid", "--json"])
        .await
        .json();
    assert_eq!(none["invoices"].as_array().unwrap().len(), 0, "{none}");

    let shown = ctl(&c, &["invoices", "show", &id]).await;
    let text = shown.ok();
    let line = text.lines().find(|l| l.starts_with("Setup fee")).unwrap();
    assert!(line.ends_with("49.00 EUR"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("total") && l.ends_with("49.00 EUR")),
        "{text}"
    );

    // No saved card (and no Stripe): the API refuses the charge before queuing anything.
    let path = format!("/api/invoices/{id}/pay");
    let (status, body) = send(&c, Method::POST, &path, Body::None, Auth::Admin).await;
    assert!(status >= 400, "{status} {body}");
    let code = body["error"]["code"].as_str().unwrap();
    let pay = ctl(&c, &["invoices", "pay", &id]).await;
    assert!(
        pay.failed(1).ends_with(&format!("({code})")),
        "{}",
        pay.stderr
    );
}

#[tokio::test]
async fn wait_follows_a_queued_task_to_its_end_and_exits_1_when_it_fails() {
    let c = start().await;
    let hand = Hand::new(&c).await;
    // Active, but with no account on any server: the worker fails its suspension for good.
    let (_, _, service, job) = one_order(&c, "nowhere.example.com").await;
    hand.complete(&job, ServiceChange::Activate).await;

    let run = ctl(&c, &["services", "suspend", &service.to_string(), "--wait"]).await;
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let first = run.stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("Suspension queued: job_"),
        "{}",
        run.stdout
    );
    let suspend_job = first.rsplit(' ').next().unwrap();
    assert!(
        run.stdout
            .lines()
            .any(|l| l == format!("{suspend_job} failed")),
        "{}",
        run.stdout
    );
    assert_eq!(
        run.stderr.trim_end(),
        format!("error: {suspend_job} failed: service {service} has no account to suspend")
    );
    let task = hand.task(suspend_job).await;
    assert_eq!(task.status.as_str(), "failed");
}

#[tokio::test]
async fn tokens_are_created_with_scopes_listed_and_revoked_and_the_audit_log_shows_it() {
    let c = start().await;
    let made = ctl(
        &c,
        &[
            "tokens",
            "create",
            "monitoring",
            "--scope",
            "read",
            "--expires",
            "2099-01-01",
        ],
    )
    .await;
    let token = made.ok().trim().to_owned();
    assert!(token.starts_with("mpa_"), "{}", made.stdout);
    assert!(made.stderr.contains("shown once"), "{}", made.stderr);
    // The new token reads but may not manage tokens.
    let as_monitoring = ctl_env(
        &[("MPANEL_URL", &c.http), ("MPANEL_TOKEN", &token)],
        &["services", "list", "--json"],
    )
    .await;
    as_monitoring.json();
    let refused = ctl_env(
        &[("MPANEL_URL", &c.http), ("MPANEL_TOKEN", &token)],
        &["tokens", "list"],
    )
    .await;
    assert!(
        refused.failed(1).ends_with("(forbidden)"),
        "{}",
        refused.stderr
    );

    let listed = ctl(&c, &["tokens", "list", "--json"]).await.json();
    let entry = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "monitoring")
        .unwrap()
        .clone();
    assert_eq!(entry["scopes"], serde_json::json!(["read"]));
    assert!(!listed.to_string().contains(&token));
    let id = entry["id"].to_string();
    let table = ctl(&c, &["tokens", "list"]).await;
    assert!(table.ok().contains("monitoring"), "{}", table.stdout);
    ctl(&c, &["tokens", "revoke", &id]).await.ok();
    let again = ctl(&c, &["tokens", "revoke", &id]).await;
    assert!(
        again.failed(1).ends_with("(already_revoked)"),
        "{}",
        again.stderr
    );
    let bad = ctl(&c, &["tokens", "create", "x", "--scope", "root"]).await;
    assert!(bad.failed(1).contains("scopes[0]"), "{}", bad.stderr);
    ctl(&c, &["tokens", "create", "x"]).await.failed(2);

    let log = ctl(
        &c,
        &[
            "activity",
            "--target",
            &format!("admin_token:{id}"),
            "--json",
        ],
    )
    .await
    .json();
    let actions: Vec<&str> = log["activity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["admin_token.revoked", "admin_token.created"],
        "{log}"
    );
    // `--json` carries each entry's before and after whole; the table a compact CHANGE column.
    assert_eq!(
        log["activity"][0]["before"],
        serde_json::json!({ "revokedAt": null }),
        "{log}"
    );
    assert!(
        log["activity"][0]["after"]["revokedAt"].is_string(),
        "{log}"
    );
    let table = ctl(&c, &["activity", "--target", &format!("admin_token:{id}")]).await;
    let out = table.ok();
    assert!(out.contains("CHANGE"), "{out}");
    assert!(out.contains("revokedAt: -→"), "{out}");
    assert!(
        out.contains("+ ") && out.contains("name=monitoring"),
        "{out}"
    );
}
