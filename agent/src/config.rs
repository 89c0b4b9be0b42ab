//! The agent's configuration file (`/etc/mpanel/agent.toml`, `--config PATH` or
//! `MPANEL_AGENT_CONFIG`). Only `controller` is needed to run; the `[panel]` and `[acme]`
//! sections are read here and handed to the panel driver and the ACME client.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mpanel_common::Secret;
use serde::Deserialize;

pub const DEFAULT_CONFIG_PATH: &str = "/etc/mpanel/agent.toml";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/mpanel-agent";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// `https://host:port` of the controller's agent endpoint.
    pub controller: Option<String>,
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The partition whose disk and inode usage heartbeats report.
    #[serde(default = "default_accounts_path")]
    pub accounts_path: PathBuf,
    /// Heartbeat interval when the controller does not say (seconds).
    #[serde(default = "default_heartbeat_secs")]
    pub heartbeat_secs: u32,
    pub panel: Option<PanelSection>,
    pub acme: Option<AcmeSection>,
    pub metrics: Option<MetricsSection>,
}

/// `[metrics]`: where to serve `GET /metrics` (a local address such as `127.0.0.1:9465`).
/// Absent, the agent opens no port. `--metrics-listen` (`MPANEL_AGENT_METRICS_LISTEN`) sets or
/// overrides it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    pub listen: Option<String>,
}

/// The environment variable of `--metrics-listen`, which sets `[metrics] listen`.
pub const METRICS_LISTEN_ENV: &str = "MPANEL_AGENT_METRICS_LISTEN";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanelSection {
    pub kind: String,
    pub url: String,
    #[serde(default = "default_panel_user")]
    pub user: String,
    pub token_file: Option<PathBuf>,
    /// Masked in `Debug`, so printing the configuration cannot leak it.
    pub token: Option<Secret<String>>,
    #[serde(default)]
    pub insecure_tls: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeSection {
    pub directory: Option<String>,
    pub email: Option<String>,
    pub ca_bundle: Option<String>,
    /// `host:port` of the DNS server the "does this domain point here yet" check asks; the
    /// system resolver when absent (tests point it at pebble-challtestsrv).
    pub dns_resolver: Option<String>,
}

impl AcmeSection {
    /// The issuer's settings; `state_dir` keeps the ACME account.
    pub fn settings(&self, state_dir: &Path) -> Result<crate::acme::AcmeSettings, String> {
        let directory = match self.directory.as_deref().map(str::trim) {
            None | Some("") => crate::acme::LETS_ENCRYPT.to_owned(),
            Some(d) if d.starts_with("https://") => d.to_owned(),
            Some(d) => return Err(format!("acme.directory: '{d}' must start with https://")),
        };
        let mut settings = crate::acme::AcmeSettings::new(directory, state_dir);
        settings.contact_email = self
            .email
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_owned);
        settings.ca_bundle = self
            .ca_bundle
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        settings.dns_resolver = match self.dns_resolver.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(r) => Some(r.parse().map_err(|_| {
                format!("acme.dns_resolver: '{r}' is not an address like 127.0.0.1:53")
            })?),
        };
        Ok(settings)
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

fn default_accounts_path() -> PathBuf {
    PathBuf::from("/home")
}

fn default_heartbeat_secs() -> u32 {
    10
}

fn default_panel_user() -> String {
    "root".to_owned()
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            controller: None,
            state_dir: default_state_dir(),
            accounts_path: default_accounts_path(),
            heartbeat_secs: default_heartbeat_secs(),
            panel: None,
            acme: None,
            metrics: None,
        }
    }
}

impl AgentConfig {
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: AgentConfig = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.display().to_string(),
            message: e.message().to_owned(),
        })?;
        if let Some(url) = &config.controller {
            parse_controller_url(url).map_err(|message| ConfigError::Invalid {
                path: path.display().to_string(),
                message: format!("controller: {message}"),
            })?;
        }
        config
            .metrics_listen()
            .map_err(|message| ConfigError::Invalid {
                path: path.display().to_string(),
                message,
            })?;
        if let Some(acme) = &config.acme {
            acme.settings(&config.state_dir)
                .map_err(|message| ConfigError::Invalid {
                    path: path.display().to_string(),
                    message,
                })?;
        }
        Ok(config)
    }

    /// Reads `path`; a missing file is an empty configuration only when `optional`.
    pub fn load(path: &Path, optional: bool) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(ConfigError::Invalid {
                path: path.display().to_string(),
                message: format!("cannot read: {e}"),
            }),
        }
    }

    /// `--metrics-listen` / `MPANEL_AGENT_METRICS_LISTEN`, which win over `[metrics] listen`.
    pub fn override_metrics_listen(&mut self, listen: &str) -> Result<(), ConfigError> {
        self.metrics = Some(MetricsSection {
            listen: Some(listen.to_owned()),
        });
        self.metrics_listen()
            .map(|_| ())
            .map_err(|message| ConfigError::Invalid {
                path: METRICS_LISTEN_ENV.to_owned(),
                message,
            })
    }

    /// The address of the metrics endpoint, if one is configured.
    pub fn metrics_listen(&self) -> Result<Option<std::net::SocketAddr>, String> {
        match self
            .metrics
            .as_ref()
            .and_then(|m| m.listen.as_deref())
            .map(str::trim)
        {
            None | Some("") => Ok(None),
            Some(raw) => raw.parse().map(Some).map_err(|_| {
                format!("metrics.listen: '{raw}' is not a socket address like 127.0.0.1:9465")
            }),
        }
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.heartbeat_secs.max(1)))
    }
}

/// `https://host:port` → (host, port). The port defaults to 7443 (`GRPC_LISTEN`'s default).
pub fn parse_controller_url(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .trim()
        .strip_prefix("https://")
        .ok_or_else(|| format!("'{url}' must start with https://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("'{url}' has no host"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("'{url}' has a bad IPv6 host"))?;
        (host.to_owned(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("'{url}' has a bad port"))?,
        None => 7443,
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_example_parses() {
        let text = r#"
controller = "https://controller.example.net:7443"
state_dir = "/var/lib/mpanel-agent"
[panel]
kind = "cpanel"
url = "https://127.0.0.1:2087"
user = "root"
token_file = "/etc/mpanel/panel.token"
insecure_tls = false
[acme]
directory = "https://acme-v02.api.letsencrypt.org/directory"
email = "hostmaster@example.net"
ca_bundle = ""
"#;
        let c = AgentConfig::parse(text, Path::new("agent.toml")).unwrap();
        assert_eq!(c.panel.unwrap().kind, "cpanel");
        assert_eq!(c.accounts_path, PathBuf::from("/home"));
        assert_eq!(c.heartbeat_secs, 10);
        let acme = c.acme.unwrap().settings(Path::new("/s")).unwrap();
        assert_eq!(acme.ca_bundle, None);
        assert_eq!(acme.dns_resolver, None);
        assert_eq!(
            acme.contact_email.as_deref(),
            Some("hostmaster@example.net")
        );
    }

    #[test]
    fn acme_test_settings_name_a_resolver_and_a_ca() {
        let text = "[acme]\ndirectory = \"https://127.0.0.1:14000/dir\"\nca_bundle = \"/tmp/ca.pem\"\ndns_resolver = \"127.0.0.1:8053\"\n";
        let c = AgentConfig::parse(text, Path::new("a.toml")).unwrap();
        let acme = c.acme.unwrap().settings(Path::new("/s")).unwrap();
        assert_eq!(acme.dns_resolver, Some("127.0.0.1:8053".parse().unwrap()));
        assert_eq!(acme.ca_bundle, Some(PathBuf::from("/tmp/ca.pem")));
        let err =
            AgentConfig::parse("[acme]\ndns_resolver = \"x\"\n", Path::new("a.toml")).unwrap_err();
        assert!(err.to_string().contains("acme.dns_resolver"), "{err}");
    }

    #[test]
    fn an_inline_panel_token_is_read_and_masked_in_debug() {
        let text =
            "[panel]\nkind = \"plesk\"\nurl = \"https://127.0.0.1:8443\"\ntoken = \"tok-51f0\"\n";
        let c = AgentConfig::parse(text, Path::new("agent.toml")).unwrap();
        let panel = c.panel.clone().unwrap();
        assert_eq!(panel.token.unwrap().expose(), "tok-51f0");
        assert!(!format!("{c:?}").contains("tok-51f0"));
    }

    #[test]
    fn bad_files_name_the_file_and_the_problem() {
        let err = AgentConfig::parse("controller = \"http://x\"", Path::new("a.toml")).unwrap_err();
        assert!(err.to_string().starts_with("a.toml: controller:"), "{err}");
        let err = AgentConfig::parse("contoller = 1", Path::new("a.toml")).unwrap_err();
        assert!(err.to_string().contains("contoller"), "{err}");
    }

    #[test]
    fn controller_urls() {
        assert_eq!(
            parse_controller_url("https://h:1").unwrap(),
            ("h".into(), 1)
        );
        assert_eq!(
            parse_controller_url("https://h").unwrap(),
            ("h".into(), 7443)
        );
        assert_eq!(
            parse_controller_url("https://[::1]:9/").unwrap(),
            ("::1".into(), 9)
        );
        assert!(parse_controller_url("h:1").is_err());
    }
}
