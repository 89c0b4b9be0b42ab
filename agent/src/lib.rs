//! The mpanel agent: a small daemon on every hosting server. It dials out to the controller over
//! mutual TLS, runs the controller's commands against the local control panel, and reports load.
//! It opens no inbound port, unless `[metrics] listen` asks for a local metrics endpoint.
//!
//! Layout: `core` holds the decisions (backoff, renewal timing, what a closed session means) as
//! pure code; `session`, `enroll` and `tls` are the tokio/rustls shell around it; `load` reads the
//! host's numbers; `handler` is where commands land; `panel` drives the local control panel; `acme` issues
//! certificates for its sites. `wiring` assembles all of it from the configuration: [`run`] is
//! `mpanel-agent run`, and what the demo, the benchmarks and the tests start too. `status` is
//! `mpanel-agent status`; `telemetry` sets up the log.

pub mod acme;
pub mod config;
pub mod core;
pub mod enroll;
pub mod handler;
pub mod load;
pub mod panel;
pub mod panel_commands;
pub mod session;
pub mod state;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod wiring;

pub use wiring::run;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
