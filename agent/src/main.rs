use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use clap::{Parser, Subcommand};
use mpanel_agent::acme::AcmeIssuer;
use mpanel_agent::config::{AgentConfig, DEFAULT_CONFIG_PATH};
use mpanel_agent::core::Backoff;
use mpanel_agent::handler::{BuiltinHandler, CommandHandler};
use mpanel_agent::panel::{self, ControlPanel};
use mpanel_agent::panel_commands::PanelCommandHandler;
use mpanel_agent::session::{self, AgentOptions, PanelProbe};
use mpanel_agent::state::StateDir;
use mpanel_agent::{enroll, now_ms};
use tokio_util::sync::CancellationToken;

/// The mpanel agent: dials out to the controller over mutual TLS and drives the local control
/// panel. It opens no inbound port.
///
/// Set up a server in three steps: write /etc/mpanel/agent.toml (the [panel] section names the
/// local cPanel/WHM, Plesk or DirectAdmin API and its token), run `mpanel-agent enroll` with a
/// one-time token from the controller, then start the service (`systemctl enable --now
/// mpanel-agent`, which runs `mpanel-agent run`). `mpanel-agent status` shows where it stands.
/// Logs go to stderr; RUST_LOG sets the filter (default info).
#[derive(Debug, Parser)]
#[command(name = "mpanel-agent", version, about, long_about)]
struct Cli {
    /// Configuration file [default: /etc/mpanel/agent.toml].
    #[arg(long, global = true, value_name = "PATH", env = "MPANEL_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// State directory (key, certificate, CA); overrides `state_dir` in the configuration.
    #[arg(long, global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
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
        Command::Run => run(config, state).await,
        Command::Status => status(&config, &state),
    }
}

struct DriverProbe(Arc<dyn ControlPanel>);

#[async_trait]
impl PanelProbe for DriverProbe {
    async fn probe(&self) -> (Option<u32>, bool) {
        match self.0.list_accounts().await {
            Ok(accounts) => (
                Some(u32::try_from(accounts.len()).unwrap_or(u32::MAX)),
                true,
            ),
            Err(e) => {
                tracing::warn!(error = %e, "the control panel did not answer");
                (None, false)
            }
        }
    }
}

/// The configured panel: its kind as written, and the driver that answers commands and probes.
struct ConfiguredPanel {
    kind: String,
    driver: Arc<dyn ControlPanel>,
}

/// The driver for the `[panel]` section; `None` when there is no such section.
fn build_panel(config: &AgentConfig) -> anyhow::Result<Option<ConfiguredPanel>> {
    let Some(p) = &config.panel else {
        return Ok(None);
    };
    let kind = panel::parse_panel_kind(&p.kind).map_err(|_| {
        anyhow::anyhow!(
            "panel.kind: '{}' is not one of cpanel, plesk, directadmin",
            p.kind
        )
    })?;
    let token = match (&p.token, &p.token_file) {
        (Some(t), _) => panel::Secret::new(t.expose().trim()),
        (None, Some(file)) => panel::Secret::new(
            std::fs::read_to_string(file)
                .with_context(|| format!("panel.token_file: cannot read {}", file.display()))?
                .trim(),
        ),
        (None, None) => anyhow::bail!("panel: set token or token_file"),
    };
    if token.is_empty() {
        anyhow::bail!("panel: the token is empty");
    }
    let driver = panel::build_driver_with(panel::PanelConfig::new(
        kind,
        &p.url,
        &p.user,
        token,
        p.insecure_tls,
    ))
    .map_err(|e| anyhow::anyhow!("panel: {e}"))?;
    Ok(Some(ConfiguredPanel {
        kind: p.kind.clone(),
        driver,
    }))
}

/// What the session does with commands, what it advertises, and how it checks the panel.
struct CommandSetup {
    handler: Arc<dyn CommandHandler>,
    capabilities: Vec<String>,
    probe: Option<Arc<dyn PanelProbe>>,
}

/// The ACME issuer for the `[acme]` section; `None` without one (then `ssl` offers only the
/// panel's AutoSSL).
fn build_acme(config: &AgentConfig) -> anyhow::Result<Option<Arc<AcmeIssuer>>> {
    let Some(section) = &config.acme else {
        return Ok(None);
    };
    let settings = section
        .settings(&config.state_dir)
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(Some(Arc::new(AcmeIssuer::new(settings)?)))
}

/// With a panel, the agent carries out the panel commands behind the builtins; without one it
/// answers only `ping` and `echo`.
fn command_setup(panel: Option<&ConfiguredPanel>, acme: Option<Arc<AcmeIssuer>>) -> CommandSetup {
    let mut capabilities: Vec<String> = vec!["ping".into(), "echo".into()];
    let Some(panel) = panel else {
        return CommandSetup {
            handler: Arc::new(BuiltinHandler::default()),
            capabilities,
            probe: None,
        };
    };
    capabilities.extend(
        PanelCommandHandler::COMMANDS
            .iter()
            .map(|c| (*c).to_owned()),
    );
    let mut commands = PanelCommandHandler::new(Arc::clone(&panel.driver));
    if let Some(issuer) = acme {
        capabilities.push(mpanel_agent::acme::CAPABILITY.to_owned());
        commands = commands.with_acme(issuer);
    }
    CommandSetup {
        handler: Arc::new(BuiltinHandler::with_next(Arc::new(commands))),
        capabilities,
        probe: Some(Arc::new(DriverProbe(Arc::clone(&panel.driver)))),
    }
}

async fn run(config: AgentConfig, state: StateDir) -> anyhow::Result<()> {
    let enrollment = state.enrollment()?;
    let controller = config.controller.clone().unwrap_or(enrollment.controller);
    let panel = build_panel(&config)?;
    match &panel {
        Some(p) => tracing::info!(kind = %p.kind, "panel commands enabled"),
        None => tracing::info!("no [panel] section: only ping and echo are answered"),
    }
    let acme = build_acme(&config)?;
    if acme.is_some() {
        tracing::info!("ACME issuance enabled");
    }
    let commands = command_setup(panel.as_ref(), acme);
    let options = AgentOptions {
        controller,
        state,
        heartbeat: config.heartbeat_interval(),
        accounts_path: config.accounts_path.clone(),
        panel_kind: panel.map(|p| p.kind).unwrap_or_default(),
        capabilities: commands.capabilities,
        handler: commands.handler,
        panel: commands.probe,
        backoff: Backoff::default(),
    };
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        trigger.cancel();
    });
    session::run(options, shutdown).await?;
    Ok(())
}

fn when(ms: i64) -> String {
    let secs = (ms - now_ms()) / 1000;
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    let date = humantime_rfc3339(t);
    if secs >= 0 {
        format!("{date} (in {})", span(secs))
    } else {
        format!("{date} ({} ago)", span(-secs))
    }
}

fn span(secs: i64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// RFC 3339 in UTC without a date library: days from the epoch to a civil date.
fn humantime_rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn status(config: &AgentConfig, state: &StateDir) -> anyhow::Result<()> {
    let enrollment = state.enrollment()?;
    println!(
        "enrollment:  server {} (enrolled {})",
        enrollment.server_id,
        when(enrollment.enrolled_at_ms)
    );
    println!(
        "controller:  {}",
        config
            .controller
            .as_deref()
            .unwrap_or(&enrollment.controller)
    );
    match state
        .read_cert()
        .ok()
        .as_deref()
        .and_then(session::cert_validity)
    {
        Some((_, not_after)) if not_after <= now_ms() => {
            println!(
                "certificate: EXPIRED {}; this agent needs a new enrollment token",
                when(not_after)
            );
        }
        Some((_, not_after)) => println!("certificate: expires {}", when(not_after)),
        None => println!(
            "certificate: missing or unreadable in {}",
            state.dir().display()
        ),
    }
    let running = |pid: u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
    match state.status() {
        Some(s) if running(s.pid) => {
            println!(
                "connection:  {} since {} ({})",
                s.state,
                when(s.since_ms),
                s.detail
            );
        }
        Some(s) => println!(
            "connection:  agent not running (last: {} {})",
            s.state,
            when(s.since_ms)
        ),
        None => println!("connection:  agent not running"),
    }
    Ok(())
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
