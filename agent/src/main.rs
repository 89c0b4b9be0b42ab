//! `mpanel-agent`: the command line. Everything it runs lives in the library
//! (`mpanel_agent::run`, `enroll`, `status`); this file parses arguments, sets up the log,
//! loads the configuration and turns an error into one line on stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mpanel_agent::config::{AgentConfig, DEFAULT_CONFIG_PATH};
use mpanel_agent::state::StateDir;
use mpanel_agent::{enroll, now_ms, status, telemetry};
use tokio_util::sync::CancellationToken;

/// The mpanel agent: dials out to the controller over mutual TLS and drives the local control
/// panel. It opens no inbound port (a local metrics endpoint only with `[metrics] listen`).
///
/// Set up a server in three steps: write /etc/mpanel/agent.toml (the [panel] section names the
/// local cPanel/WHM, Plesk or DirectAdmin API and its token), run `mpanel-agent enroll` with a
/// one-time token from the controller, then start the service (`systemctl enable --now
/// mpanel-agent`, which runs `mpanel-agent run`). `mpanel-agent status` shows where it stands.
/// Logs go to stderr, in colour only on a terminal; RUST_LOG sets the filter (default info).
#[derive(Debug, Parser)]
#[command(name = "mpanel-agent", version, about, long_about)]
struct Cli {
    /// Configuration file [default: /etc/mpanel/agent.toml].
    #[arg(long, global = true, value_name = "PATH", env = "MPANEL_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// State directory (key, certificate, CA); overrides `state_dir` in the configuration.
    #[arg(long, global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Serve Prometheus metrics on this local address (e.g. 127.0.0.1:9465); overrides
    /// `[metrics] listen` in the configuration. Unset in both, the agent opens no port.
    #[arg(
        long,
        global = true,
        value_name = "ADDR",
        env = "MPANEL_AGENT_METRICS_LISTEN"
    )]
    metrics_listen: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Exchange a one-time token for a certificate; the key is generated here and never leaves.
    ///
    /// The token comes from the controller (POST /api/servers/:id/enrollment-token, valid one
    /// hour, one use) and pins the controller's CA by its fingerprint: a CA that does not match
    /// is refused. The private key, the signed certificate, the CA and the enrollment
    /// record are written mode 0600 to the state directory (/var/lib/mpanel-agent by default).
    /// Run it again with a new token to re-enroll, e.g. after a revocation.
    Enroll {
        /// The controller's agent endpoint, e.g. https://controller.example.net:7443
        #[arg(long)]
        controller: String,
        /// The token printed by POST /api/servers/:id/enrollment-token.
        #[arg(long)]
        token: String,
    },
    /// Keep the session to the controller open until SIGTERM/SIGINT, carrying out its commands.
    ///
    /// With a [panel] section in the configuration (kind, url, user, token or token_file,
    /// insecure_tls) the agent also carries out the provisioning and account commands
    /// (create_account, ensure_dns, ssl, create_mailbox, create_database, suspend_account,
    /// unsuspend_account, terminate_account, change_package, change_password, list_accounts,
    /// usage) through that panel and reports its health; without one it answers only ping and
    /// echo.
    Run,
    /// Print enrollment, controller, certificate expiry and connection state.
    ///
    /// Reads the state directory only; it does not contact the controller. The connection line
    /// is what the running agent last recorded (connected, reconnecting, …), or "agent not
    /// running". Fails when the agent is not enrolled.
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    telemetry::init();
    // Two worker threads are plenty for one session and a few commands, and keep idle memory low.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mpanel-agent: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mpanel-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(cli: &Cli) -> anyhow::Result<AgentConfig> {
    let (path, optional) = match &cli.config {
        Some(p) => (p.clone(), false),
        None => (PathBuf::from(DEFAULT_CONFIG_PATH), true),
    };
    let mut config = AgentConfig::load(&path, optional)?;
    if let Some(dir) = &cli.state_dir {
        config.state_dir = dir.clone();
    }
    if let Some(listen) = cli
        .metrics_listen
        .as_deref()
        .filter(|l| !l.trim().is_empty())
    {
        config.override_metrics_listen(listen)?;
    }
    Ok(config)
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let config = load_config(&cli)?;
    let state = StateDir::new(&config.state_dir);
    match cli.command {
        Command::Enroll { controller, token } => {
            let e = enroll::enroll(&controller, &token, &state).await?;
            println!(
                "enrolled as server {} with {controller}; state in {}",
                e.server_id,
                state.dir().display()
            );
            Ok(())
        }
        Command::Run => {
            tracing::info!(version = env!("CARGO_PKG_VERSION"), state_dir = %state.dir().display(), "mpanel-agent starting");
            let shutdown = CancellationToken::new();
            let trigger = shutdown.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                trigger.cancel();
            });
            mpanel_agent::run(config, shutdown).await?;
            Ok(())
        }
        Command::Status => {
            let facts = status::report(&config, &state)?;
            println!("{}", status::render(&facts, now_ms()));
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
