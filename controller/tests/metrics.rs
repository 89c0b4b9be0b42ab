//! `GET /metrics`: scraped while a burst of orders is provisioned through a real agent session
//! and a simulated cPanel (queue, step, command and agent series move, no domain leaks into a
//! label); served only on `METRICS_LISTEN` when that is set; and every series the Grafana
//! dashboard and the Prometheus alert rules in `packaging/` query is one the controller
//! exports. The rules themselves are checked and unit-tested with `promtool`.

mod backends;
mod fleet_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fleet_support::*;
use mpanel_common::status::TaskStatus;
use mpanel_controller::store::{self, DynStore, Task};

/// One sample of the text format: name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format (comments skipped). Label values here never hold quotes
/// or commas, which the parser checks rather than assumes.
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                let mut labels = BTreeMap::new();
                for pair in body.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').expect("label is k=v");
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or_else(|| panic!("unquoted label value in {line}"));
                    assert!(!v.contains('"'), "unexpected quote in {line}");
                    labels.insert(k.to_owned(), v.to_owned());
                }
                (name.to_owned(), labels)
            }
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// The sum of the samples named `name` whose labels include all of `want`.
fn total(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

async fn scrape(url: &str) -> (u16, String) {
    let resp = reqwest::get(url).await.expect("GET /metrics");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.text().await.unwrap();
    if status == 200 {
        assert_eq!(
            content_type.as_deref(),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
    }
    (status, body)
}

async fn metrics_of(url: &str) -> (String, Vec<Sample>) {
    let (status, body) = scrape(url).await;
    assert_eq!(status, 200, "{body}");
    let samples = parse(&body);
    (body, samples)
}

struct Rig {
    c: Controller,
    store: DynStore,
    _sim: mpanel_panelsim::SimHandle,
    _agent: RunningAgent,
    _state_dir: tempfile::TempDir,
}

async fn rig() -> Rig {
    let c = Controller::start(&[
        ("PROVISIONING_RETRY_BASE_MS", "50"),
        ("EMAIL_PROVIDER", "log"),
        ("PROVISIONING_WORKERS", "2"),
    ])
    .await;
    let (server_id, dir, state) = enrolled_agent(&c, "web1.example.net").await;
    let sim = start_cpanel_sim(|_| {}).await;
    let agent = run_panel_agent(&c, server_id, &state, cpanel_driver(&sim)).await;
    let store = store::connect(&c.db.url).await.unwrap();
    Rig {
        c,
        store,
        _sim: sim,
        _agent: agent,
        _state_dir: dir,
    }
}

async fn all_finished(store: &DynStore, tasks: &[Task]) -> bool {
    for t in tasks {
        let t = store.get_task(t.id).await.unwrap();
        if !matches!(t.status, TaskStatus::Completed | TaskStatus::Failed) {
            return false;
        }
    }
    true
}

const BURST: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisioning_burst_moves_the_queue_step_command_and_agent_series() {
    let r = rig().await;
    let url = format!("{}/metrics", r.c.http);
    // Unset METRICS_LISTEN: served on the API port, without a token.
    let (_, before) = metrics_of(&url).await;
    assert!(
        total(&before, "mpanel_agents", &[("status", "online")]) >= 1.0,
        "the online agent is counted"
    );
    let steps_before = total(
        &before,
        "mpanel_provisioning_step_duration_seconds_count",
        &[("step", "account"), ("outcome", "success")],
    );
    let creates_before = total(
        &before,
        "mpanel_agent_command_duration_seconds_count",
        &[("command", "create_account")],
    );
    let completed_before = total(
        &before,
        "mpanel_job_runs_total",
        &[("queue", "provisioning"), ("outcome", "completed")],
    );

    let mut tasks = Vec::new();
    for i in 0..BURST {
        tasks.push(store_order(&r.store, &format!("shop{i}.example")).await);
    }
    // Scraped while the burst runs: the queue shows work waiting or in hand.
    let mut most_queued = 0.0f64;
    let mut scrapes = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, samples) = metrics_of(&url).await;
        scrapes += 1;
        let queued = total(
            &samples,
            "mpanel_queue_depth",
            &[("queue", "provisioning"), ("state", "pending")],
        ) + total(
            &samples,
            "mpanel_queue_depth",
            &[("queue", "provisioning"), ("state", "processing")],
        );
        most_queued = most_queued.max(queued);
        if all_finished(&r.store, &tasks).await {
            break;
        }
        assert!(Instant::now() < deadline, "the burst did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for t in &tasks {
        let t = r.store.get_task(t.id).await.unwrap();
        assert_eq!(t.status, TaskStatus::Completed, "{:?}", t.error);
    }
    assert!(
        most_queued >= 1.0,
        "no scrape of {scrapes} saw a pending or processing task"
    );

    // The sampler runs on every scrape: the finished burst leaves nothing queued. (Polled: in a
    // process shared with other tests, another controller's sampler writes the same gauges.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let (after_body, after) = loop {
        let (body, samples) = metrics_of(&url).await;
        let open = total(
            &samples,
            "mpanel_queue_depth",
            &[("queue", "provisioning"), ("state", "pending")],
        ) + total(
            &samples,
            "mpanel_queue_depth",
            &[("queue", "provisioning"), ("state", "processing")],
        );
        if open == 0.0 {
            break (body, samples);
        }
        assert!(
            Instant::now() < deadline,
            "the queue gauges never drained: {open}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let steps = total(
        &after,
        "mpanel_provisioning_step_duration_seconds_count",
        &[("step", "account"), ("outcome", "success")],
    ) - steps_before;
    assert!(steps >= BURST as f64, "account steps counted: {steps}");
    for step in ["dns", "ssl", "email", "database", "welcome_email"] {
        assert!(
            total(
                &after,
                "mpanel_provisioning_step_duration_seconds_count",
                &[("step", step), ("outcome", "success")]
            ) >= BURST as f64,
            "step {step} not timed"
        );
    }
    let creates = total(
        &after,
        "mpanel_agent_command_duration_seconds_count",
        &[("command", "create_account")],
    ) - creates_before;
    assert!(
        creates >= BURST as f64,
        "create_account round trips: {creates}"
    );
    let completed = total(
        &after,
        "mpanel_job_runs_total",
        &[("queue", "provisioning"), ("outcome", "completed")],
    ) - completed_before;
    assert!(completed >= BURST as f64, "completed tasks: {completed}");
    assert!(
        total(
            &after,
            "mpanel_task_duration_seconds_count",
            &[("kind", "provision")]
        ) >= BURST as f64
    );
    assert!(total(&after, "mpanel_agents", &[("status", "online")]) >= 1.0);
    // The welcome emails went through the outbox.
    assert!(total(&after, "mpanel_emails_sent_total", &[]) >= 1.0);
    // HTTP series carry the route template, never the path with its id.
    assert!(
        total(
            &after,
            "mpanel_http_requests_total",
            &[
                ("route", "/api/servers/{id}/enrollment-token"),
                ("method", "POST"),
                ("status", "201")
            ]
        ) >= 1.0,
        "{after_body}"
    );
    // Bounded labels: no domain, username or host name of the burst appears anywhere.
    for leaked in ["shop0.example", "example.net", "owner@"] {
        assert!(!after_body.contains(leaked), "{leaked} in /metrics");
    }
    assert!(
        after
            .iter()
            .filter(|s| s.name.starts_with("mpanel_http_requests_total"))
            .all(|s| s
                .labels
                .get("route")
                .is_some_and(|r| !r.chars().any(|c| c.is_ascii_digit()))),
        "a route label holds an id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listen_serves_metrics_on_its_own_port_and_the_api_port_answers_404() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let c = Controller::start(&[("METRICS_LISTEN", listen.as_str())]).await;
    let (_, samples) = metrics_of(&format!("http://{listen}/metrics")).await;
    assert!(samples.iter().any(|s| s.name == "mpanel_queue_depth"));
    assert!(
        samples
            .iter()
            .any(|s| s.name == "mpanel_http_requests_total")
    );
    let (status, body) = scrape(&format!("{}/metrics", c.http)).await;
    assert_eq!(status, 404, "{body}");
    // The API is still there.
    let (status, _) = c.request(reqwest::Method::GET, "/api/agents", None).await;
    assert_eq!(status, 200);
}

#[test]
fn a_malformed_metrics_listen_is_refused_naming_the_variable() {
    let env: std::collections::HashMap<String, String> = [
        ("DATABASE_URL", "sqlite::memory:"),
        ("METRICS_LISTEN", "9464"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let err = mpanel_controller::config::Config::from_sources(
        &env,
        &std::collections::HashMap::new(),
        None,
    )
    .unwrap_err();
    assert_eq!(err.key, "METRICS_LISTEN");
    assert!(err.to_string().contains("'9464'"), "{err}");
}

fn packaging() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging")
}

/// promtool ships in Debian's `prometheus` package (scripts/test installs it). A missing
/// promtool fails the test: the rules would otherwise go unchecked.
fn promtool(args: &[&str], dir: &Path) -> String {
    let out = std::process::Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}); install the Debian package `prometheus` \
                 (scripts/test does)"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn promtool_accepts_the_alert_rules_and_their_unit_tests_pass() {
    let dir = packaging().join("prometheus");
    let checked = promtool(&["check", "rules", "mpanel-alerts.yml"], &dir);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", "mpanel-alerts.test.yml"], &dir);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// Every `mpanel_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("mpanel_") {
        let start = i + at;
        // Part of a longer identifier (`xmpanel_`) is not a name.
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start + "mpanel_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        if !preceded {
            names.insert(text[start..end].to_owned());
        }
        i = end;
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_series_the_dashboard_and_the_alert_rules_query_is_exported() {
    let dashboard = std::fs::read_to_string(packaging().join("grafana/mpanel-fleet.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    let mut exprs = String::new();
    fn collect(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if k == "expr" {
                        out.push_str(v.as_str().unwrap_or_default());
                        out.push('\n');
                    } else {
                        collect(v, out);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    collect(&parsed, &mut exprs);
    let rules = std::fs::read_to_string(packaging().join("prometheus/mpanel-alerts.yml")).unwrap();
    let from_dashboard = metric_names(&exprs);
    let from_rules = metric_names(&rules);
    assert!(
        from_dashboard.len() >= 15 && from_rules.len() >= 6,
        "the files name too few series to be read right: {from_dashboard:?} {from_rules:?}"
    );
    let queried: BTreeSet<String> = from_dashboard.union(&from_rules).cloned().collect();

    // Activity: one order through a real agent (steps, commands, tasks, emails, HTTP) and a
    // scheduled job run by hand (its last success).
    let r = rig().await;
    let task = store_order(&r.store, "metrics.example").await;
    let (status, body) =
        r.c.request(
            reqwest::Method::POST,
            "/api/cron/jobs/backup-cleanup/run",
            None,
        )
        .await;
    assert!(status == 202 || status == 200, "{status} {body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let exported = loop {
        let (_, samples) = metrics_of(&format!("{}/metrics", r.c.http)).await;
        let names: BTreeSet<String> = samples.iter().map(|s| s.name.clone()).collect();
        let missing: Vec<_> = queried
            .iter()
            .filter(|n| !names.contains(*n))
            .cloned()
            .collect();
        let done = all_finished(&r.store, std::slice::from_ref(&task)).await;
        if done && missing.is_empty() {
            break names;
        }
        assert!(
            Instant::now() < deadline,
            "queried but not exported: {missing:?} (the task finished: {done})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The comparison is real: a name the controller does not export is missing.
    assert!(!exported.contains("mpanel_no_such_series"));
    assert!(queried.iter().all(|n| exported.contains(n)));
}

on_both_backends!(the_metrics_sample_reads_queues_cron_and_certificates);

/// The sampler's query on each backend: open rows by queue, kind and state with the oldest
/// one's age, the last success of a scheduled job, and no certificate yet.
async fn the_metrics_sample_reads_queues_cron_and_certificates(store: DynStore) {
    let now = mpanel_controller::store::now_ms();
    let empty = store.metrics_sample(now).await.unwrap();
    assert!(empty.queues.is_empty(), "{empty:?}");
    assert_eq!(empty.soonest_certificate_expiry_ms, None);
    assert_eq!(empty.certificates_expiring_14d, 0);
    assert_eq!(empty.oldest_heartbeat_ms, None);

    store_order(&store, "one.example").await;
    store_order(&store, "two.example").await;
    store
        .queue_email("k1", "a@b.example", "welcome", "Hello", "sealed")
        .await
        .unwrap();
    let (run, _) = store
        .request_manual_cron_run("backup-cleanup", now, "test")
        .await
        .unwrap();
    let claimed = store
        .claim_next_cron_run("metrics-test", 60_000)
        .await
        .unwrap()
        .expect("the queued run");
    assert_eq!(claimed.id, run.id);
    store
        .complete_cron_run(run.id, "metrics-test", &serde_json::json!({}))
        .await
        .unwrap();
    store
        .request_manual_cron_run("backup-cleanup", now + 1, "test")
        .await
        .unwrap();

    let sample = store.metrics_sample(now + 5_000).await.unwrap();
    let depth = |queue: &str, kind: &str, state: &str| {
        sample
            .queues
            .iter()
            .find(|q| q.queue == queue && q.kind == kind && q.state == state)
            .map(|q| (q.depth, q.oldest_ms))
    };
    let (tasks, oldest) = depth("provisioning", "provision", "pending").expect("pending tasks");
    assert_eq!(tasks, 2);
    let oldest = oldest.expect("oldest task time");
    assert!(
        oldest >= now - 60_000 && oldest <= now + 60_000,
        "{oldest} vs {now}"
    );
    assert_eq!(depth("email", "email", "queued").map(|d| d.0), Some(1));
    assert_eq!(
        depth("cron", "backup-cleanup", "queued").map(|d| d.0),
        Some(1)
    );
    // A finished run is history, not depth.
    assert_eq!(depth("cron", "backup-cleanup", "running"), None);
    let (job, at) = sample
        .cron_last_success
        .iter()
        .find(|(job, _)| job == "backup-cleanup")
        .expect("the run's success");
    assert_eq!(job, "backup-cleanup");
    assert!(*at >= now - 60_000, "{at}");
}
