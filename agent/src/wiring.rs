//! How `mpanel-agent run` is assembled: the configuration's `[panel]` section becomes a panel
//! driver, `[acme]` an ACME issuer, and both become the command handler stack, the advertised
//! capabilities and the panel probe of one session ([`crate::session::run`]).
//!
//! Everything that runs an agent goes through here: the binary (`run`), the demo, the benchmarks
//! and the test harnesses. Those that need to put something of their own in (a driver built
//! against a simulator, an issuer pointed at a test CA, a faster reconnect backoff) do it at the
//! two explicit seams: the [`Parts`] handed to [`session_options`], and the public fields of the
//! [`AgentOptions`] it returns. This module owns no I/O beyond reading the panel token file and
//! the enrollment record.

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::acme::{self, AcmeIssuer};
use crate::config::{AgentConfig, PanelSection};
use crate::core::Backoff;
use crate::handler::{BuiltinHandler, CommandHandler};
use crate::panel::{self, ControlPanel, PanelKind};
use crate::panel_commands::PanelCommandHandler;
use crate::session::{self, AgentOptions, PanelProbe, RunError};
use crate::state::{StateDir, StateError};

/// What stops the agent before its session starts: a configuration it cannot act on, or a
/// state directory without an enrollment. Each message names the setting or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("panel.kind: '{0}' is not one of cpanel, plesk, directadmin")]
    PanelKind(String),
    #[error("panel.token_file: cannot read {path}: {source}")]
    TokenFile {
        path: String,
        source: std::io::Error,
    },
    #[error("panel: set token or token_file")]
    NoToken,
    #[error("panel: the token is empty")]
    EmptyToken,
    #[error("panel: {0}")]
    Driver(#[from] panel::PanelError),
    #[error("acme: {0}")]
    AcmeSettings(String),
    #[error("{0}")]
    Metrics(String),
    #[error("acme: {0}")]
    Acme(#[from] acme::AcmeError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Session(#[from] RunError),
}

/// The local control panel: its kind (sent to the controller in Hello) and the driver that
/// carries out commands and answers the health probe.
#[derive(Clone)]
pub struct Panel {
    pub kind: PanelKind,
    pub driver: Arc<dyn ControlPanel>,
}

impl std::fmt::Debug for Panel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Panel({})", self.kind)
    }
}

/// The pieces a session is built from besides its settings. `from_config` is what the binary
/// uses; a test may build them itself instead.
#[derive(Debug, Default, Clone)]
pub struct Parts {
    /// Without a panel the agent answers only `ping` and `echo`.
    pub panel: Option<Panel>,
    /// Without an issuer `ssl` offers only the panel's AutoSSL.
    pub acme: Option<Arc<AcmeIssuer>>,
}

impl Parts {
    /// The panel driver for `[panel]` and the ACME issuer for `[acme]`, each when present.
    pub fn from_config(config: &AgentConfig) -> Result<Self, SetupError> {
        let panel = config.panel.as_ref().map(build_panel).transpose()?;
        let acme = match &config.acme {
            Some(section) => {
                let settings = section
                    .settings(&config.state_dir)
                    .map_err(SetupError::AcmeSettings)?;
                Some(Arc::new(AcmeIssuer::new(settings)?))
            }
            None => None,
        };
        Ok(Parts { panel, acme })
    }
}

fn build_panel(section: &PanelSection) -> Result<Panel, SetupError> {
    let kind = crate::panel::parse_panel_kind(&section.kind)
        .map_err(|_| SetupError::PanelKind(section.kind.clone()))?;
    let token = match (&section.token, &section.token_file) {
        (Some(token), _) => token.expose().trim().to_owned(),
        (None, Some(file)) => std::fs::read_to_string(file)
            .map_err(|source| SetupError::TokenFile {
                path: file.display().to_string(),
                source,
            })?
            .trim()
            .to_owned(),
        (None, None) => return Err(SetupError::NoToken),
    };
    if token.is_empty() {
        return Err(SetupError::EmptyToken);
    }
    let driver = panel::build_driver_with(panel::PanelConfig::new(
        kind,
        &section.url,
        &section.user,
        panel::Secret::new(token),
        section.insecure_tls,
    ))?;
    Ok(Panel { kind, driver })
}

/// Commands every agent answers, panel or not.
const BUILTIN_COMMANDS: [&str; 2] = ["ping", "echo"];

/// The capabilities an agent with these parts advertises in Hello: the builtins, the panel
/// commands when there is a panel, and ACME issuance when there is also an issuer.
pub fn capabilities(has_panel: bool, has_acme: bool) -> Vec<String> {
    let mut capabilities: Vec<String> = BUILTIN_COMMANDS.iter().map(|c| (*c).to_owned()).collect();
    if has_panel {
        capabilities.extend(
            PanelCommandHandler::COMMANDS
                .iter()
                .map(|c| (*c).to_owned()),
        );
        if has_acme {
            capabilities.push(acme::CAPABILITY.to_owned());
        }
    }
    capabilities
}

/// The handler stack: the builtins, then the panel commands (with ACME when there is an
/// issuer). The only place the stack is composed.
fn command_handler(parts: &Parts) -> Arc<dyn CommandHandler> {
    let Some(panel) = &parts.panel else {
        return Arc::new(BuiltinHandler::default());
    };
    let mut commands = PanelCommandHandler::new(Arc::clone(&panel.driver));
    if let Some(issuer) = &parts.acme {
        commands = commands.with_acme(Arc::clone(issuer));
    }
    Arc::new(BuiltinHandler::with_next(Arc::new(commands)))
}

/// Health reports from the panel: its account count, and whether it answered at all.
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

/// The session settings for `config` with `parts`. The controller is the configured one, or
/// the one this state directory enrolled with.
pub fn session_options(config: &AgentConfig, parts: Parts) -> Result<AgentOptions, SetupError> {
    let state = StateDir::new(&config.state_dir);
    let controller = match &config.controller {
        Some(url) => url.clone(),
        None => state.enrollment()?.controller,
    };
    let handler = command_handler(&parts);
    let capabilities = capabilities(parts.panel.is_some(), parts.acme.is_some());
    let (panel_kind, probe) = match parts.panel {
        Some(panel) => (
            panel.kind.as_str().to_owned(),
            Some(Arc::new(DriverProbe(panel.driver)) as Arc<dyn PanelProbe>),
        ),
        None => (String::new(), None),
    };
    Ok(AgentOptions {
        controller,
        state,
        heartbeat: config.heartbeat_interval(),
        accounts_path: config.accounts_path.clone(),
        panel_kind,
        capabilities,
        handler,
        panel: probe,
        backoff: Backoff::default(),
    })
}

/// `mpanel-agent run`: wires the panel driver, ACME and the command handlers from `config`,
/// then keeps the session to the controller until `shutdown` is cancelled. Fails only for a
/// local setup it cannot act on (bad `[panel]`/`[acme]`, not enrolled, unreadable state).
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), SetupError> {
    let parts = Parts::from_config(&config)?;
    match &parts.panel {
        Some(p) => tracing::info!(kind = %p.kind, "panel commands enabled"),
        None => tracing::info!("no [panel] section: only ping and echo are answered"),
    }
    if parts.acme.is_some() {
        tracing::info!("ACME issuance enabled");
    }
    let options = session_options(&config, parts)?;
    let metrics_addr = config.metrics_listen().map_err(SetupError::Metrics)?;
    if let Some(addr) = metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            SetupError::Metrics(format!("metrics.listen: cannot listen on {addr}: {e}"))
        })?;
        crate::telemetry::metrics::install();
        tracing::info!(%addr, "metrics listening");
        tokio::spawn(crate::telemetry::metrics::serve(listener, shutdown.clone()));
    }
    session::run(options, shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::AgentConfig;

    fn parse(text: &str) -> AgentConfig {
        AgentConfig::parse(text, Path::new("agent.toml")).unwrap()
    }

    #[test]
    fn capabilities_grow_with_the_panel_and_acme() {
        assert_eq!(capabilities(false, false), ["ping", "echo"]);
        // An issuer without a panel has nowhere to install a certificate.
        assert_eq!(capabilities(false, true), ["ping", "echo"]);
        let with_panel = capabilities(true, false);
        assert!(with_panel.iter().any(|c| c == "create_account"));
        assert!(!with_panel.iter().any(|c| c == acme::CAPABILITY));
        let with_acme = capabilities(true, true);
        assert_eq!(with_acme.len(), with_panel.len() + 1);
        assert!(with_acme.iter().any(|c| c == acme::CAPABILITY));
    }

    #[test]
    fn a_panel_section_becomes_a_driver_of_its_kind() {
        let config =
            parse("[panel]\nkind = \"WHM\"\nurl = \"https://127.0.0.1:2087\"\ntoken = \" tok \"\n");
        let parts = Parts::from_config(&config).unwrap();
        assert_eq!(parts.panel.unwrap().kind, PanelKind::Cpanel);
        assert!(parts.acme.is_none());
    }

    #[test]
    fn bad_panel_sections_name_the_setting() {
        let cases = [
            (
                "[panel]\nkind = \"ispconfig\"\nurl = \"https://h\"\ntoken = \"t\"\n",
                "panel.kind: 'ispconfig'",
            ),
            (
                "[panel]\nkind = \"plesk\"\nurl = \"https://h\"\n",
                "panel: set token or token_file",
            ),
            (
                "[panel]\nkind = \"plesk\"\nurl = \"https://h\"\ntoken = \"  \"\n",
                "panel: the token is empty",
            ),
            (
                "[panel]\nkind = \"plesk\"\nurl = \"https://h\"\ntoken_file = \"/nonexistent/panel.token\"\n",
                "panel.token_file: cannot read /nonexistent/panel.token",
            ),
        ];
        for (text, expected) in cases {
            let err = Parts::from_config(&parse(text)).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{text}: {err}");
        }
    }

    #[test]
    fn options_use_the_enrolled_controller_unless_one_is_configured() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = AgentConfig {
            state_dir: dir.path().join("state"),
            ..AgentConfig::default()
        };
        // Not enrolled and no controller: the state directory is named in the error.
        let Err(err) = session_options(&config, Parts::default()) else {
            panic!("options without an enrollment or a controller");
        };
        assert!(matches!(err, SetupError::State(_)), "{err}");
        assert!(err.to_string().contains("not enrolled"), "{err}");

        config.controller = Some("https://controller.example.net:7443".into());
        config.heartbeat_secs = 3;
        let options = session_options(&config, Parts::default()).unwrap();
        assert_eq!(options.controller, "https://controller.example.net:7443");
        assert_eq!(options.heartbeat, std::time::Duration::from_secs(3));
        assert_eq!(options.capabilities, ["ping", "echo"]);
        assert_eq!(options.panel_kind, "");
        assert!(options.panel.is_none());
    }

    #[test]
    fn a_panel_makes_the_session_probe_it_and_name_its_kind() {
        let dir = tempfile::tempdir().unwrap();
        let config = AgentConfig {
            controller: Some("https://127.0.0.1:7443".into()),
            state_dir: dir.path().to_owned(),
            ..AgentConfig::default()
        };
        let driver = panel::build_driver_with(panel::PanelConfig::new(
            PanelKind::Directadmin,
            "https://127.0.0.1:2222",
            "admin",
            panel::Secret::new("t"),
            true,
        ))
        .unwrap();
        let parts = Parts {
            panel: Some(Panel {
                kind: PanelKind::Directadmin,
                driver,
            }),
            acme: None,
        };
        let options = session_options(&config, parts).unwrap();
        assert_eq!(options.panel_kind, "directadmin");
        assert!(options.panel.is_some());
        assert!(options.capabilities.iter().any(|c| c == "create_database"));
    }
}
