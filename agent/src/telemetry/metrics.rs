//! The agent's Prometheus metrics, served only when `[metrics] listen` (or
//! `MPANEL_AGENT_METRICS_LISTEN`) names a local address: session state, reconnects, how long
//! commands take here, and panel errors by class. The agent otherwise opens no port.
//!
//! Labels are bounded: command names, outcome and error-class words, the panel kind.

use std::sync::OnceLock;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use mpanel_common::command::{Command, Outcome};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const SESSION_CONNECTED: &str = "mpanel_agent_session_connected";
pub const RECONNECTS: &str = "mpanel_agent_reconnects_total";
pub const HANDLED_COMMAND_DURATION: &str = "mpanel_agent_handled_command_duration_seconds";
pub const PANEL_ERRORS: &str = "mpanel_agent_panel_errors_total";

const BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once; later calls return the same handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics stays empty");
            }
            metrics::describe_gauge!(
                SESSION_CONNECTED,
                "1 while the session to the controller is open"
            );
            metrics::describe_counter!(RECONNECTS, "Sessions that ended and were dialled again");
            metrics::describe_histogram!(
                HANDLED_COMMAND_DURATION,
                metrics::Unit::Seconds,
                "Commands carried out here, by command and outcome"
            );
            metrics::describe_counter!(
                PANEL_ERRORS,
                "Failed panel commands by panel and error class"
            );
            gauge!(SESSION_CONNECTED).set(0.0);
            counter!(RECONNECTS).increment(0);
            handle
        })
        .clone()
}

pub fn session_state(state: &str) {
    gauge!(SESSION_CONNECTED).set(if state == "connected" { 1.0 } else { 0.0 });
}

pub fn reconnect() {
    counter!(RECONNECTS).increment(1);
}

/// One command carried out: `command` is its name (`None`: it could not be read), `panel` the
/// kind of panel this agent drives (empty without one).
pub fn command_handled(
    command: Option<&'static str>,
    outcome: &Outcome,
    elapsed: Duration,
    panel: &str,
) {
    let name = command.unwrap_or("unreadable");
    let word = match outcome {
        Outcome::Done(_) => "done",
        Outcome::Waiting(_) => "waiting",
        Outcome::Failed(f) => f.class.as_str(),
    };
    histogram!(HANDLED_COMMAND_DURATION, "command" => name, "outcome" => word)
        .record(elapsed.as_secs_f64());
    if let Outcome::Failed(f) = outcome
        && !panel.is_empty()
        && Command::PANEL_COMMANDS.contains(&name)
    {
        let panel = match panel {
            "cpanel" => "cpanel",
            "plesk" => "plesk",
            "directadmin" => "directadmin",
            _ => "other",
        };
        counter!(PANEL_ERRORS, "panel" => panel, "class" => f.class.as_str()).increment(1);
    }
}

/// Serves `GET /metrics` (anything else is 404) on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, shutdown: CancellationToken) {
    let handle = install();
    loop {
        let (stream, _) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let handle = handle.clone();
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let handle = handle.clone();
            async move { Ok::<_, std::convert::Infallible>(respond(&request, &handle)) }
        });
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

fn respond<B>(request: &Request<B>, handle: &PrometheusHandle) -> Response<Full<Bytes>> {
    if request.method() != Method::GET || request.uri().path() != "/metrics" {
        let mut r = Response::new(Full::new(Bytes::from_static(b"not found\n")));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    }
    let mut r = Response::new(Full::new(Bytes::from(handle.render())));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}
