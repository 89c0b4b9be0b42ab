//! `mpanel-controller` on a simulated clock, for the end-to-end tests of the scheduler: the
//! production `app::run` with the normal configuration, except that scheduled jobs go by the
//! clock `MPANEL_FASTCLOCK_START_MS`, `MPANEL_FASTCLOCK_ANCHOR_MS` and `MPANEL_FASTCLOCK_SPEED`
//! describe (see `mpanel_e2e::fastclock`), which every replica of a test shares. The packaged
//! controller has no such setting; this binary is built only in this test crate.
//!
//! Usage: `mpanel-controller-fastclock serve`, or `token create --admin` as the controller.

use std::process::ExitCode;
use std::sync::Arc;

use mpanel_controller::app::{self, Listeners, RunOptions};
use mpanel_controller::{commands, telemetry};
use mpanel_e2e::fastclock::SimClock;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mpanel-controller-fastclock: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mpanel-controller-fastclock: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(args: &[String]) -> anyhow::Result<()> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let config = commands::load_config(None)?;
    telemetry::init(&config.log_filter, config.log_format);
    match args.as_slice() {
        ["serve"] => {
            let sim = SimClock::from_env().map_err(anyhow::Error::msg)?;
            tracing::info!(
                start_ms = sim.start_ms,
                anchor_ms = sim.anchor_ms,
                speed = sim.speed,
                "scheduled jobs go by a simulated clock"
            );
            config.require_encryption_keys()?;
            let listeners = Listeners::bind(&config).await?;
            let options = RunOptions {
                clock: Arc::new(move || sim.now()),
                clock_speed: sim.speed,
            };
            app::run_with(config, listeners, app::shutdown_signal(), options).await
        }
        ["token", "create", "--admin"] => commands::create_admin_token(&config, "admin").await,
        _ => anyhow::bail!("usage: mpanel-controller-fastclock serve | token create --admin"),
    }
}
