//! Logging set-up for `mpanel-agent`: the `RUST_LOG` filter (default `info`), text lines on
//! stderr. Colour only when stderr is a terminal, as the controller does: under systemd stderr
//! is the journal, and escape codes there (or in a redirected file) are noise in every line.
//! The optional metrics endpoint lives in [`metrics`].

pub mod metrics;

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
