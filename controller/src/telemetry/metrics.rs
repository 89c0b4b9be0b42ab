//! Prometheus metrics: the series' names (one place, so the dashboard and the alert rules in
//! `packaging/` have one list to agree with), the process-wide recorder, the HTTP middleware,
//! and the sampler that turns store counts (queue depths, agents, certificates, cron) into
//! gauges.
//!
//! Labels are bounded by construction: route templates, methods, status codes, queue names,
//! task kinds, steps, command names, outcome words. Never a domain, username or id.
//!
//! The recorder is global to the process (the `metrics` facade allows one), installed on the
//! first `run` and shared by later ones; tests that start several controllers in one process
//! read deltas or presence, not absolute values.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::DynStore;
use crate::store::reporting::MetricsSample;

// ---- names ------------------------------------------------------------------------------------

pub const HTTP_REQUESTS: &str = "mpanel_http_requests_total";
pub const HTTP_DURATION: &str = "mpanel_http_request_duration_seconds";

pub const QUEUE_DEPTH: &str = "mpanel_queue_depth";
pub const QUEUE_OLDEST_AGE: &str = "mpanel_queue_oldest_age_seconds";
pub const JOB_RUNS: &str = "mpanel_job_runs_total";
pub const JOB_DURATION: &str = "mpanel_job_duration_seconds";
pub const JOB_RETRIES: &str = "mpanel_job_retries_total";
pub const TASK_DURATION: &str = "mpanel_task_duration_seconds";
pub const TASK_FAILURES: &str = "mpanel_task_failures_total";
pub const STEP_DURATION: &str = "mpanel_provisioning_step_duration_seconds";

pub const AGENTS: &str = "mpanel_agents";
pub const AGENT_HEARTBEAT_AGE_MAX: &str = "mpanel_agent_heartbeat_age_max_seconds";
pub const AGENT_COMMANDS: &str = "mpanel_agent_commands_total";
pub const AGENT_COMMAND_DURATION: &str = "mpanel_agent_command_duration_seconds";
pub const AGENT_HANDSHAKES_SHED: &str = "mpanel_agent_handshakes_shed_total";

pub const EMAILS_SENT: &str = "mpanel_emails_sent_total";
pub const EMAIL_SEND_FAILURES: &str = "mpanel_email_send_failures_total";

pub const WEBHOOK_EVENTS: &str = "mpanel_stripe_webhook_events_total";
pub const WEBHOOK_SIGNATURE_FAILURES: &str = "mpanel_stripe_webhook_signature_failures_total";
pub const CHARGES: &str = "mpanel_charges_total";

pub const CRON_RUNS: &str = "mpanel_cron_runs_total";
pub const CRON_LAST_SUCCESS: &str = "mpanel_cron_last_success_timestamp_seconds";

pub const CERTIFICATE_SOONEST_EXPIRY: &str = "mpanel_certificate_soonest_expiry_timestamp_seconds";
pub const CERTIFICATES_EXPIRING: &str = "mpanel_certificates_expiring_14d";

pub const SAMPLE_ERRORS: &str = "mpanel_metrics_sample_errors_total";

/// Seconds: from a fast route to a slow provisioning step or a panel command.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// How often the sampler refreshes the store-derived gauges between scrapes.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

// ---- the recorder -----------------------------------------------------------------------------

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder on the first call; later calls return the same handle.
/// If another recorder was installed first (an embedding program's), metrics still render
/// from a recorder of our own that is simply not the global one: the endpoint works, empty.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("the bucket list is not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics stays empty");
            }
            describe();
            register_known_series();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests by route template, method and status"
    );
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "HTTP request latency");
    describe_gauge!(QUEUE_DEPTH, "Rows of a work queue by kind and state");
    describe_gauge!(
        QUEUE_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest row of a work queue by kind and state"
    );
    describe_counter!(JOB_RUNS, "Attempts of queued jobs by queue and outcome");
    describe_histogram!(JOB_DURATION, Unit::Seconds, "Duration of a job attempt");
    describe_counter!(
        JOB_RETRIES,
        "Job attempts that failed and were scheduled again"
    );
    describe_histogram!(
        TASK_DURATION,
        Unit::Seconds,
        "Provisioning task attempts by kind"
    );
    describe_counter!(
        TASK_FAILURES,
        "Failed provisioning task attempts by kind and class"
    );
    describe_histogram!(
        STEP_DURATION,
        Unit::Seconds,
        "Provisioning steps by step and outcome"
    );
    describe_gauge!(AGENTS, "Agents by status");
    describe_gauge!(
        AGENT_HEARTBEAT_AGE_MAX,
        Unit::Seconds,
        "The oldest last heartbeat among online and suspect agents"
    );
    describe_counter!(
        AGENT_COMMANDS,
        "Commands sent to agents by command and outcome"
    );
    describe_counter!(
        AGENT_HANDSHAKES_SHED,
        "Agent connections closed unanswered because too many TLS handshakes were in flight"
    );
    describe_histogram!(
        AGENT_COMMAND_DURATION,
        Unit::Seconds,
        "Command round trip to an agent by command"
    );
    describe_counter!(EMAILS_SENT, "Emails handed to the transport");
    describe_counter!(EMAIL_SEND_FAILURES, "Failed email sends by class");
    describe_counter!(WEBHOOK_EVENTS, "Verified Stripe events by type and outcome");
    describe_counter!(
        WEBHOOK_SIGNATURE_FAILURES,
        "Stripe webhook requests refused for their signature, by reason"
    );
    describe_counter!(CHARGES, "Off-session charge attempts by outcome");
    describe_counter!(CRON_RUNS, "Runs of scheduled jobs by job and outcome");
    describe_gauge!(
        CRON_LAST_SUCCESS,
        Unit::Seconds,
        "When each scheduled job last succeeded (Unix time)"
    );
    describe_gauge!(
        CERTIFICATE_SOONEST_EXPIRY,
        Unit::Seconds,
        "The soonest expiry among issued certificates (Unix time)"
    );
    describe_gauge!(
        CERTIFICATES_EXPIRING,
        "Issued certificates expiring within 14 days"
    );
    describe_counter!(SAMPLE_ERRORS, "Store samples for the gauges that failed");
}

/// Counters with a small known label set start at zero, so `rate()` and `increase()` see the
/// first event and a dashboard shows 0 rather than "no data". `increment(0)` registers without
/// changing a value another controller in the process may already have counted.
fn register_known_series() {
    for queue in crate::store::lease_queue::QUEUES {
        for outcome in ["completed", "retry", "wait", "failed", "lease_lost"] {
            counter!(JOB_RUNS, "queue" => queue.name, "outcome" => outcome).increment(0);
        }
        counter!(JOB_RETRIES, "queue" => queue.name).increment(0);
    }
    for kind in mpanel_common::status::TaskKind::ALL {
        for class in ["retryable", "permanent"] {
            counter!(TASK_FAILURES, "kind" => kind.as_str(), "class" => class).increment(0);
        }
    }
    counter!(EMAILS_SENT).increment(0);
    for class in ["transient", "permanent"] {
        counter!(EMAIL_SEND_FAILURES, "class" => class).increment(0);
    }
    for reason in [
        "signature_missing",
        "signature_invalid",
        "signature_timestamp",
        "signature_mismatch",
    ] {
        counter!(WEBHOOK_SIGNATURE_FAILURES, "reason" => reason).increment(0);
    }
    for outcome in ["applied", "duplicate", "error"] {
        counter!(WEBHOOK_EVENTS, "type" => "other", "outcome" => outcome).increment(0);
    }
    for outcome in CHARGE_OUTCOMES {
        counter!(CHARGES, "outcome" => *outcome).increment(0);
    }
    counter!(SAMPLE_ERRORS).increment(0);
}

/// Registers the runs of each scheduled job at zero (the registry is known only at start).
pub fn register_cron_jobs<'a>(jobs: impl IntoIterator<Item = &'a str>) {
    for job in jobs {
        for outcome in ["succeeded", "failed"] {
            counter!(CRON_RUNS, "cron_job" => job.to_owned(), "outcome" => outcome).increment(0);
        }
    }
}

/// The kinds of `billing_jobs` rows.
const BILLING_KINDS: &[&str] = &[
    "charge",
    "save_card",
    "invoice_email",
    "unsuspend",
    "dispute_suspend",
    "cancel_service",
];

/// What an off-session charge attempt can end as.
pub const CHARGE_OUTCOMES: &[&str] = &[
    "paid",
    "declined",
    "authentication_required",
    "retry",
    "skipped",
    "error",
];

// ---- HTTP -------------------------------------------------------------------------------------

/// Counts and times every request by its route template (`/api/services/{id}`), never its path.
pub async fn track_http(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let elapsed = started.elapsed().as_secs_f64();
    counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    histogram!(HTTP_DURATION, "route" => route, "method" => method).record(elapsed);
    response
}

fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

// ---- events from the workers ------------------------------------------------------------------

/// One attempt of a queued job: `outcome` is `completed`, `retry`, `wait`, `failed` or
/// `lease_lost`.
pub fn job_attempt(queue: &'static str, outcome: &'static str, elapsed: Duration) {
    counter!(JOB_RUNS, "queue" => queue, "outcome" => outcome).increment(1);
    histogram!(JOB_DURATION, "queue" => queue, "outcome" => outcome).record(elapsed.as_secs_f64());
    if outcome == "retry" {
        counter!(JOB_RETRIES, "queue" => queue).increment(1);
    }
}

/// One attempt of a provisioning task; `failure` is the class of its failure, if it failed.
pub fn task_attempt(kind: &'static str, failure: Option<&'static str>, elapsed: Duration) {
    histogram!(TASK_DURATION, "kind" => kind).record(elapsed.as_secs_f64());
    if let Some(class) = failure {
        counter!(TASK_FAILURES, "kind" => kind, "class" => class).increment(1);
    }
}

pub fn step(step: &'static str, outcome: &'static str, elapsed: Duration) {
    histogram!(STEP_DURATION, "step" => step, "outcome" => outcome).record(elapsed.as_secs_f64());
}

pub fn agent_command(command: &'static str, outcome: &'static str, elapsed: Duration) {
    counter!(AGENT_COMMANDS, "command" => command, "outcome" => outcome).increment(1);
    histogram!(AGENT_COMMAND_DURATION, "command" => command).record(elapsed.as_secs_f64());
}

pub fn agent_handshake_shed() {
    counter!(AGENT_HANDSHAKES_SHED).increment(1);
}

pub fn email_sent() {
    counter!(EMAILS_SENT).increment(1);
}

pub fn email_failed(class: &'static str) {
    counter!(EMAIL_SEND_FAILURES, "class" => class).increment(1);
}

/// Stripe's event types are open-ended; those mpanel acts on keep their name, the rest are
/// `other`.
pub fn webhook_event(event_type: &str, outcome: &'static str) {
    const KNOWN: &[&str] = &[
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "charge.refunded",
        "charge.dispute.created",
        "invoice.paid",
    ];
    let event_type = KNOWN
        .iter()
        .find(|k| **k == event_type)
        .copied()
        .unwrap_or("other");
    counter!(WEBHOOK_EVENTS, "type" => event_type, "outcome" => outcome).increment(1);
}

pub fn webhook_signature_failure(reason: &'static str) {
    counter!(WEBHOOK_SIGNATURE_FAILURES, "reason" => reason).increment(1);
}

pub fn charge(outcome: &'static str) {
    counter!(CHARGES, "outcome" => outcome).increment(1);
}

/// A run of a scheduled job; job names come from the controller's own registry.
pub fn cron_run(job: &str, outcome: &'static str) {
    counter!(CRON_RUNS, "cron_job" => job.to_owned(), "outcome" => outcome).increment(1);
    if outcome == "succeeded" {
        gauge!(CRON_LAST_SUCCESS, "cron_job" => job.to_owned()).set(unix_now_secs());
    }
}

fn unix_now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

// ---- the store sampler ------------------------------------------------------------------------

/// Refreshes the gauges read from the store. A label set seen before and absent now (a queue
/// state that emptied) is set to zero rather than left at its last value.
#[derive(Clone)]
pub struct Sampler {
    store: DynStore,
    seen: std::sync::Arc<Mutex<Seen>>,
}

#[derive(Default)]
struct Seen {
    queues: HashSet<(String, String, String)>,
    agents: HashSet<String>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sampler")
    }
}

impl Sampler {
    /// Every known queue, kind and state starts in the seen set, so its gauges read 0 from the
    /// first scrape instead of appearing only once a row exists.
    pub fn new(store: DynStore) -> Self {
        let mut queues = HashSet::new();
        let mut add = |queue: &str, kinds: &[&str], states: &[&str]| {
            for kind in kinds {
                for state in states {
                    queues.insert((queue.to_owned(), (*kind).to_owned(), (*state).to_owned()));
                }
            }
        };
        let task_kinds: Vec<&str> = mpanel_common::status::TaskKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect();
        add(
            "provisioning",
            &task_kinds,
            &["pending", "processing", "failed"],
        );
        add("email", &["email"], &["queued", "sending", "failed"]);
        add(
            "billing",
            BILLING_KINDS,
            &["pending", "processing", "failed"],
        );
        let cron_jobs: Vec<&str> = crate::cron::JOBS.iter().map(|j| j.name).collect();
        add("cron", &cron_jobs, &["queued", "running"]);
        let agents = ["pending", "online", "suspect", "offline", "revoked"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        Self {
            store,
            seen: std::sync::Arc::new(Mutex::new(Seen { queues, agents })),
        }
    }

    /// Samples now; a failure is logged and counted, the gauges keep their last values.
    pub async fn sample(&self) {
        match self.store.metrics_sample(crate::store::now_ms()).await {
            Ok(sample) => self.apply(&sample),
            Err(e) => {
                counter!(SAMPLE_ERRORS).increment(1);
                tracing::warn!(error = %e, "cannot sample the store for metrics");
            }
        }
    }

    /// Samples every [`SAMPLE_EVERY`] until `shutdown`.
    pub async fn run(self, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            self.sample().await;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(SAMPLE_EVERY) => {}
            }
        }
    }

    fn apply(&self, sample: &MetricsSample) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let seen = &mut *seen;
        let mut queues_now = HashSet::new();
        for q in &sample.queues {
            let key = (q.queue.clone(), q.kind.clone(), q.state.clone());
            let labels = [
                ("queue", q.queue.clone()),
                ("kind", q.kind.clone()),
                ("state", q.state.clone()),
            ];
            #[allow(clippy::cast_precision_loss)]
            gauge!(QUEUE_DEPTH, &labels).set(q.depth as f64);
            let age = q.oldest_ms.map_or(0.0, |t| {
                ms_to_secs(sample.now_ms.saturating_sub(t)).max(0.0)
            });
            gauge!(QUEUE_OLDEST_AGE, &labels).set(age);
            queues_now.insert(key);
        }
        for (queue, kind, state) in seen.queues.difference(&queues_now) {
            let labels = [
                ("queue", queue.clone()),
                ("kind", kind.clone()),
                ("state", state.clone()),
            ];
            gauge!(QUEUE_DEPTH, &labels).set(0.0);
            gauge!(QUEUE_OLDEST_AGE, &labels).set(0.0);
        }
        seen.queues.extend(queues_now);

        let mut agents_now = HashSet::new();
        for (status, count) in &sample.agents {
            #[allow(clippy::cast_precision_loss)]
            gauge!(AGENTS, "status" => status.clone()).set(*count as f64);
            agents_now.insert(status.clone());
        }
        for status in seen.agents.difference(&agents_now) {
            gauge!(AGENTS, "status" => status.clone()).set(0.0);
        }
        seen.agents.extend(agents_now);
        gauge!(AGENT_HEARTBEAT_AGE_MAX).set(sample.oldest_heartbeat_ms.map_or(0.0, |t| {
            ms_to_secs(sample.now_ms.saturating_sub(t)).max(0.0)
        }));

        for (job, at) in &sample.cron_last_success {
            gauge!(CRON_LAST_SUCCESS, "cron_job" => job.clone()).set(ms_to_secs(*at));
        }
        // No issued certificate: no expiry to watch; +Inf would never compare as "soon".
        if let Some(at) = sample.soonest_certificate_expiry_ms {
            gauge!(CERTIFICATE_SOONEST_EXPIRY).set(ms_to_secs(at));
        }
        #[allow(clippy::cast_precision_loss)]
        gauge!(CERTIFICATES_EXPIRING).set(sample.certificates_expiring_14d as f64);
    }
}

#[allow(clippy::cast_precision_loss)]
fn ms_to_secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}
