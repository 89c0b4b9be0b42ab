//! The controller's one typed configuration, loaded once at start-up. This is the only module
//! that reads the environment.
//!
//! Sources, highest precedence first: the process environment, a `.env` file in the working
//! directory, and a TOML file given with `--config` (same keys in lower case). A missing or
//! malformed value stops start-up with one line naming the variable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use base64::Engine as _;
use mpanel_common::secret::Secret;

use crate::cron::{JOBS, Schedule, Zone};

/// A configuration problem, always naming the variable it is about.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: &'static str,
    pub message: String,
}

impl ConfigError {
    fn new(key: &'static str, message: impl Into<String>) -> Self {
        Self {
            key,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailProvider {
    Smtp,
    Log,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    None,
    StartTls,
    Tls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret<String>>,
    pub tls: SmtpTls,
}

#[derive(Debug, Clone)]
pub struct StripeConfig {
    pub secret_key: Option<Secret<String>>,
    pub webhook_secret: Option<Secret<String>>,
    pub api_base: String,
    /// `PAYMENT_RETRY_DAYS` (`1,3,5`): after a declined renewal charge, the next attempts are
    /// made this many days after the due date; after the last, the invoice waits for the
    /// customer (and the suspension job).
    pub payment_retry_days: Vec<u32>,
    /// `SUSPEND_ON_DISPUTE` (false): a chargeback suspends the service with reason `dispute`.
    pub suspend_on_dispute: bool,
}

/// PowerDNS Authoritative's HTTP API, for servers whose `dns_provider` is `powerdns`.
#[derive(Debug, Clone)]
pub struct PowerDnsConfig {
    /// `POWERDNS_API_URL`: the webserver's base URL, e.g. `http://127.0.0.1:8081`.
    pub api_url: String,
    /// `POWERDNS_API_KEY`: sent as `X-API-Key`; required with the URL (PowerDNS refuses every
    /// API call without one).
    pub api_key: Secret<String>,
    /// `POWERDNS_SERVER_ID` (`localhost`): the `{server_id}` of the API's paths.
    pub server_id: String,
}

/// Scheduled jobs (see `crate::cron`).
#[derive(Debug, Clone)]
pub struct CronConfig {
    /// `CRON_TIMEZONE` (UTC): the zone schedules are read in.
    pub zone: Zone,
    /// `CRON_LEASE_SECS` (30): how long the leader's lease lasts without renewal; it is renewed
    /// every third of that, and a replica takes over within about one lease of the leader's
    /// death.
    pub lease_secs: u32,
    /// Each job of `cron::JOBS` with its schedule (`CRON_<JOB>`; `None` when `off`).
    pub schedules: Vec<(&'static str, Option<Schedule>)>,
}

impl CronConfig {
    /// The schedule of job `name`; `None` when it is `off` (or unknown).
    pub fn schedule(&self, name: &str) -> Option<&Schedule> {
        self.schedules
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, s)| s.as_ref())
    }
}

/// 32-byte AES-256-GCM keys: the current one and any previous ones kept for decrypting old data.
#[derive(Clone)]
pub struct EncryptionKeys {
    pub current: [u8; 32],
    pub previous: Vec<[u8; 32]>,
}

impl std::fmt::Debug for EncryptionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EncryptionKeys(***, {} previous)", self.previous.len())
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: Secret<String>,
    pub redis_url: Option<Secret<String>>,
    /// Prefix of every Redis key and channel, so several installations can share one Redis.
    pub redis_prefix: String,
    pub http_listen: SocketAddr,
    /// `METRICS_LISTEN`: where `GET /metrics` is served on its own listener (and then only
    /// there). Unset, it is served on `HTTP_LISTEN` without authentication.
    pub metrics_listen: Option<SocketAddr>,
    /// This controller's stable identity among the replicas (`NODE_ID`); unset, the host name
    /// and HTTP port. Lease holders carry it, so a restarted controller recognises its own
    /// in-flight work (see `jobs::node`).
    pub node_id: Option<String>,
    pub grpc_listen: SocketAddr,
    /// Names (DNS or IP) put in the gRPC server certificate, so agents can verify the controller.
    pub grpc_server_names: Vec<String>,
    /// Fleet liveness (see `fleet::heartbeat`): the interval agents are told to beat at
    /// (`AGENT_HEARTBEAT_SECS`, 10), after how long without a beat an agent is `suspect`
    /// (`AGENT_HEARTBEAT_SUSPECT_SECS`, 30 = three missed beats) and `offline`
    /// (`AGENT_OFFLINE_SECS`, 90).
    pub agent_heartbeat_secs: u32,
    pub agent_suspect_secs: u32,
    pub agent_offline_secs: u32,
    /// Lifetime of agent certificates (`AGENT_CERT_LIFETIME_SECS`, 30 days); agents renew at
    /// two thirds of it.
    pub agent_cert_lifetime_secs: u32,
    /// Provisioning workers in this controller (tasks run concurrently up to this many).
    pub provisioning_workers: u32,
    /// First retry delay after a failed step; doubles per attempt (with jitter), capped at 5 min.
    pub provisioning_retry_base_ms: u64,
    /// How long a claimed task stays ours without renewal before another worker may take it.
    pub provisioning_lease_secs: u32,
    /// How long one step waits for the agent's answer.
    pub provisioning_command_timeout_secs: u32,
    pub encryption_keys: Option<EncryptionKeys>,
    /// `ENABLE_CRON` (true): this replica may lead the scheduler. Off, it never queues
    /// scheduled runs but still works the runs others queue.
    pub enable_cron: bool,
    pub cron: CronConfig,
    pub suspension_grace_days: u32,
    pub termination_days: u32,
    pub backup_retention_days: u32,
    /// `USAGE_RETENTION_DAYS` (90): usage samples older than this are pruned by `usage-sync`.
    pub usage_retention_days: u32,
    pub invoice_days_before_renewal: u32,
    pub email_provider: EmailProvider,
    pub smtp: SmtpConfig,
    pub email_from: Option<String>,
    pub support_email: Option<String>,
    pub company_name: Option<String>,
    pub company_domain: Option<String>,
    /// Directory whose files override the built-in email templates (`EMAIL_TEMPLATES_DIR`),
    /// e.g. `welcome.html`; files it lacks fall back to the built-in ones.
    pub email_templates_dir: Option<std::path::PathBuf>,
    /// First retry delay after a failed send (`EMAIL_RETRY_BASE_MS`, 2000); doubles per attempt
    /// (with jitter), capped at 10 min.
    pub email_retry_base_ms: u64,
    pub stripe: StripeConfig,
    /// `PUBLIC_URL`: the address customers and Stripe reach (default `http://` + `HTTP_LISTEN`),
    /// without a trailing slash.
    pub public_url: String,
    /// Unset when `POWERDNS_API_URL` is: servers with `dns_provider = 'powerdns'` then fail
    /// their DNS step, saying so.
    pub powerdns: Option<PowerDnsConfig>,
    /// TTL of the default records of zones the controller writes itself (`DNS_DEFAULT_TTL`,
    /// 3600); panels keep their own default.
    pub dns_default_ttl: u32,
    pub log_filter: String,
    pub log_format: LogFormat,
    /// The web dashboard's sign-in.
    pub admin_login: AdminLoginConfig,
}

/// The web dashboard's sign-in: how long a session lasts and the failed-sign-in limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminLoginConfig {
    /// `ADMIN_SESSION_HOURS` (12): a session ends this long after sign-in.
    pub session_hours: u32,
    /// `ADMIN_LOGIN_MAX_FAILURES` (5): failed sign-ins per email, and per client address, within
    /// the window before further attempts are refused with 429.
    pub max_failures: u32,
    /// `ADMIN_LOGIN_WINDOW_SECS` (900): the window failures are counted over; the lock lifts
    /// once enough of them are older than this.
    pub window_secs: u32,
}

pub const DEFAULT_DATABASE_URL: &str = "sqlite://mpanel.db?mode=rwc";

impl Config {
    /// Reads the process environment, `./.env` and the optional TOML file.
    #[allow(clippy::disallowed_methods)]
    pub fn load(config_file: Option<&Path>) -> Result<Self, ConfigError> {
        let toml_text = match config_file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new("--config", format!("cannot read {}: {e}", path.display()))
            })?),
            None => None,
        };
        let dotenv = match dotenvy::from_filename_iter(".env") {
            Ok(iter) => {
                let mut values = HashMap::new();
                for item in iter {
                    let (k, v) = item.map_err(|e| ConfigError::new(".env", e.to_string()))?;
                    values.insert(k, v);
                }
                values
            }
            Err(e) if e.not_found() => HashMap::new(),
            Err(e) => return Err(ConfigError::new(".env", e.to_string())),
        };
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::from_sources(&env, &dotenv, toml_text.as_deref())
    }

    /// Builds the configuration from explicit sources; `load` and the tests both use it.
    pub fn from_sources(
        env: &HashMap<String, String>,
        dotenv: &HashMap<String, String>,
        toml_text: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let file = match toml_text {
            Some(text) => parse_toml(text)?,
            None => HashMap::new(),
        };
        let src = Sources {
            env,
            dotenv,
            file: &file,
        };

        let redis_url = match src.get("REDIS_URL") {
            Some(url) => Some(url),
            None => match src.get("REDIS_HOST") {
                Some(host) => {
                    let port = src.parse_or("REDIS_PORT", 6379u16, "a port number")?;
                    let auth = match src.get("REDIS_PASSWORD") {
                        Some(pw) => format!(":{pw}@"),
                        None => String::new(),
                    };
                    Some(format!("redis://{auth}{host}:{port}"))
                }
                None => None,
            },
        };
        if let Some(url) = &redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(ConfigError::new(
                "REDIS_URL",
                "must start with redis:// or rediss://",
            ));
        }

        let database_url = src
            .get("DATABASE_URL")
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError::new(
                "DATABASE_URL",
                "must start with sqlite:, postgres:// or postgresql://",
            ));
        }

        let encryption_keys = match src.get("ENCRYPTION_KEY") {
            Some(raw) => {
                let current = parse_encryption_key("ENCRYPTION_KEY", &raw)?;
                let mut previous = Vec::new();
                if let Some(list) = src.get("ENCRYPTION_KEY_PREVIOUS") {
                    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        previous.push(parse_encryption_key("ENCRYPTION_KEY_PREVIOUS", item)?);
                    }
                }
                Some(EncryptionKeys { current, previous })
            }
            None => None,
        };

        let email_provider = match src.get("EMAIL_PROVIDER").as_deref() {
            None | Some("smtp") => EmailProvider::Smtp,
            Some("log") => EmailProvider::Log,
            Some(other) => {
                return Err(ConfigError::new(
                    "EMAIL_PROVIDER",
                    format!("'{other}' is not one of smtp, log"),
                ));
            }
        };
        let smtp_tls = match src.get("SMTP_TLS").as_deref() {
            None | Some("starttls") => SmtpTls::StartTls,
            Some("none") => SmtpTls::None,
            Some("tls") => SmtpTls::Tls,
            Some(other) => {
                return Err(ConfigError::new(
                    "SMTP_TLS",
                    format!("'{other}' is not one of none, starttls, tls"),
                ));
            }
        };
        let powerdns = match src.get("POWERDNS_API_URL") {
            None => None,
            Some(url) => {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ConfigError::new(
                        "POWERDNS_API_URL",
                        "must start with http:// or https://",
                    ));
                }
                let api_key = src.get("POWERDNS_API_KEY").ok_or_else(|| {
                    ConfigError::new("POWERDNS_API_KEY", "required when POWERDNS_API_URL is set")
                })?;
                Some(PowerDnsConfig {
                    api_url: url.trim_end_matches('/').to_owned(),
                    api_key: Secret::from(api_key),
                    server_id: src
                        .get("POWERDNS_SERVER_ID")
                        .unwrap_or_else(|| "localhost".into()),
                })
            }
        };
        let http_listen: SocketAddr = src.parse_or(
            "HTTP_LISTEN",
            SocketAddr::from(([127, 0, 0, 1], 8080)),
            "a socket address like 127.0.0.1:8080",
        )?;
        let public_url = public_url(src.get("PUBLIC_URL"), http_listen)?;
        let dns_default_ttl: u32 = src.parse_or("DNS_DEFAULT_TTL", 3600, "a number of seconds")?;
        if dns_default_ttl == 0 {
            return Err(ConfigError::new(
                "DNS_DEFAULT_TTL",
                "must be at least 1 second",
            ));
        }
        let cron = cron_config(&src)?;
        let admin_login = AdminLoginConfig {
            session_hours: at_least_one(&src, "ADMIN_SESSION_HOURS", 12, "a number of hours")?,
            max_failures: at_least_one(&src, "ADMIN_LOGIN_MAX_FAILURES", 5, "a number")?,
            window_secs: at_least_one(&src, "ADMIN_LOGIN_WINDOW_SECS", 900, "a number of seconds")?,
        };
        let log_format = match src.get("LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::new(
                    "LOG_FORMAT",
                    format!("'{other}' is not one of text, json"),
                ));
            }
        };

        Ok(Config {
            database_url: Secret::from(database_url),
            redis_url: redis_url.map(Secret::from),
            redis_prefix: src.get("REDIS_PREFIX").unwrap_or_else(|| "mpanel".into()),
            node_id: src.get("NODE_ID").filter(|id| !id.trim().is_empty()),
            http_listen,
            metrics_listen: match src.get("METRICS_LISTEN") {
                None => None,
                Some(raw) => Some(raw.parse().map_err(|_| {
                    ConfigError::new(
                        "METRICS_LISTEN",
                        format!("'{raw}' is not a socket address like 127.0.0.1:9464"),
                    )
                })?),
            },
            grpc_listen: src.parse_or(
                "GRPC_LISTEN",
                SocketAddr::from(([0, 0, 0, 0], 7443)),
                "a socket address like 0.0.0.0:7443",
            )?,
            grpc_server_names: src
                .get("GRPC_SERVER_NAMES")
                .unwrap_or_else(|| "localhost,127.0.0.1".into())
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            agent_heartbeat_secs: src.parse_or(
                "AGENT_HEARTBEAT_SECS",
                10,
                "a number of seconds",
            )?,
            agent_suspect_secs: src.parse_or(
                "AGENT_HEARTBEAT_SUSPECT_SECS",
                30,
                "a number of seconds",
            )?,
            agent_offline_secs: src.parse_or("AGENT_OFFLINE_SECS", 90, "a number of seconds")?,
            provisioning_workers: src.parse_or("PROVISIONING_WORKERS", 8, "a number of workers")?,
            provisioning_retry_base_ms: src.parse_or(
                "PROVISIONING_RETRY_BASE_MS",
                2000,
                "a number of milliseconds",
            )?,
            provisioning_lease_secs: src.parse_or(
                "PROVISIONING_LEASE_SECS",
                60,
                "a number of seconds",
            )?,
            provisioning_command_timeout_secs: src.parse_or(
                "PROVISIONING_COMMAND_TIMEOUT_SECS",
                120,
                "a number of seconds",
            )?,
            agent_cert_lifetime_secs: src.parse_or(
                "AGENT_CERT_LIFETIME_SECS",
                30 * 24 * 3600,
                "a number of seconds",
            )?,
            encryption_keys,
            enable_cron: src.parse_bool_or("ENABLE_CRON", true)?,
            cron,
            suspension_grace_days: src.parse_or("SUSPENSION_GRACE_DAYS", 3, "a number of days")?,
            termination_days: src.parse_or("TERMINATION_DAYS", 30, "a number of days")?,
            backup_retention_days: src.parse_or("BACKUP_RETENTION_DAYS", 30, "a number of days")?,
            usage_retention_days: src.parse_or("USAGE_RETENTION_DAYS", 90, "a number of days")?,
            invoice_days_before_renewal: src.parse_or(
                "INVOICE_DAYS_BEFORE_RENEWAL",
                7,
                "a number of days",
            )?,
            email_provider,
            smtp: SmtpConfig {
                host: src.get("SMTP_HOST").unwrap_or_else(|| "localhost".into()),
                port: src.parse_or("SMTP_PORT", 587u16, "a port number")?,
                username: src.get("SMTP_USERNAME"),
                password: src.get("SMTP_PASSWORD").map(Secret::from),
                tls: smtp_tls,
            },
            email_from: src.get("EMAIL_FROM"),
            support_email: src.get("SUPPORT_EMAIL"),
            company_name: src.get("COMPANY_NAME"),
            company_domain: src.get("COMPANY_DOMAIN"),
            email_templates_dir: src.get("EMAIL_TEMPLATES_DIR").map(std::path::PathBuf::from),
            email_retry_base_ms: src.parse_or(
                "EMAIL_RETRY_BASE_MS",
                2000,
                "a number of milliseconds",
            )?,
            stripe: StripeConfig {
                secret_key: src.get("STRIPE_SECRET_KEY").map(Secret::from),
                webhook_secret: src.get("STRIPE_WEBHOOK_SECRET").map(Secret::from),
                api_base: src
                    .get("STRIPE_API_BASE")
                    .unwrap_or_else(|| "https://api.stripe.com".into()),
                payment_retry_days: payment_retry_days(src.get("PAYMENT_RETRY_DAYS"))?,
                suspend_on_dispute: src.parse_bool_or("SUSPEND_ON_DISPUTE", false)?,
            },
            public_url,
            powerdns,
            dns_default_ttl,
            log_filter: src.get("RUST_LOG").unwrap_or_else(|| "info".into()),
            log_format,
            admin_login,
        })
    }

    /// The encryption keys, or the one-line error `serve` stops with when they are missing.
    pub fn require_encryption_keys(&self) -> Result<&EncryptionKeys, ConfigError> {
        self.encryption_keys.as_ref().ok_or_else(|| {
            ConfigError::new(
                "ENCRYPTION_KEY",
                "required: 64 hex digits, base64 of 32 bytes, or a 32-character string",
            )
        })
    }
}

/// Accepts the three key spellings the contract allows. Hex is tried first because 64 hex digits
/// never decode to exactly 32 bytes as base64, and a 32-character string never decodes to 32
/// bytes as base64 either, so the three forms cannot be confused.
fn parse_encryption_key(key: &'static str, raw: &str) -> Result<[u8; 32], ConfigError> {
    let raw = raw.trim();
    if raw.len() == 64
        && raw.bytes().all(|b| b.is_ascii_hexdigit())
        && let Ok(bytes) = hex::decode(raw)
    {
        return to_key(key, &bytes);
    }
    if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(raw)
        && bytes.len() == 32
    {
        return to_key(key, &bytes);
    }
    if raw.len() == 32 {
        return to_key(key, raw.as_bytes());
    }
    Err(ConfigError::new(
        key,
        "must be 64 hex digits, base64 of 32 bytes, or a 32-character string",
    ))
}

fn to_key(key: &'static str, bytes: &[u8]) -> Result<[u8; 32], ConfigError> {
    bytes
        .try_into()
        .map_err(|_| ConfigError::new(key, "must be 32 bytes"))
}

fn parse_toml(text: &str) -> Result<HashMap<String, String>, ConfigError> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| ConfigError::new("--config", e.message().to_owned()))?;
    let mut values = HashMap::new();
    for (k, v) in table {
        let value = match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                return Err(ConfigError::new(
                    "--config",
                    format!("key '{k}' must be a string, number or boolean"),
                ));
            }
        };
        values.insert(k.to_ascii_uppercase(), value);
    }
    Ok(values)
}

struct Sources<'a> {
    env: &'a HashMap<String, String>,
    dotenv: &'a HashMap<String, String>,
    file: &'a HashMap<String, String>,
}

impl Sources<'_> {
    /// The value of `key` from the first source that sets it to something non-empty.
    fn get(&self, key: &str) -> Option<String> {
        [self.env, self.dotenv, self.file]
            .into_iter()
            .find_map(|m| m.get(key).filter(|v| !v.trim().is_empty()))
            .map(|v| v.trim().to_owned())
    }

    fn parse_or<T: std::str::FromStr>(
        &self,
        key: &'static str,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|_| ConfigError::new(key, format!("'{raw}' is not {expected}"))),
        }
    }

    fn parse_bool_or(&self, key: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key).map(|v| v.to_ascii_lowercase()).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some("false" | "0" | "no" | "off") => Ok(false),
            Some(other) => Err(ConfigError::new(
                key,
                format!("'{other}' is not true or false"),
            )),
        }
    }
}

/// `CRON_TIMEZONE`, `CRON_LEASE_SECS` and every job's `CRON_<JOB>`: a cron expression, or
/// `off`.
fn cron_config(src: &Sources<'_>) -> Result<CronConfig, ConfigError> {
    let zone = match src.get("CRON_TIMEZONE") {
        None => Zone::utc(),
        Some(raw) => Zone::parse(&raw).map_err(|m| ConfigError::new("CRON_TIMEZONE", m))?,
    };
    let lease_secs: u32 = src.parse_or("CRON_LEASE_SECS", 30, "a number of seconds")?;
    if lease_secs == 0 {
        return Err(ConfigError::new(
            "CRON_LEASE_SECS",
            "must be at least 1 second",
        ));
    }
    let mut schedules = Vec::with_capacity(JOBS.len());
    for job in JOBS {
        let schedule = match src.get(job.config_key) {
            Some(raw) if raw.eq_ignore_ascii_case("off") => None,
            raw => {
                let expression = raw.as_deref().unwrap_or(job.default_schedule);
                Some(
                    Schedule::parse(expression, &zone)
                        .map_err(|m| ConfigError::new(job.config_key, m))?,
                )
            }
        };
        schedules.push((job.name, schedule));
    }
    Ok(CronConfig {
        zone,
        lease_secs,
        schedules,
    })
}

/// `PAYMENT_RETRY_DAYS`: comma-separated, increasing day offsets.
fn payment_retry_days(raw: Option<String>) -> Result<Vec<u32>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(vec![1, 3, 5]);
    };
    let mut days = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let d: u32 = part.parse().map_err(|_| {
            ConfigError::new(
                "PAYMENT_RETRY_DAYS",
                format!("'{part}' is not a number of days"),
            )
        })?;
        if days.last().is_some_and(|last| *last >= d) {
            return Err(ConfigError::new(
                "PAYMENT_RETRY_DAYS",
                "the days must increase, such as 1,3,5",
            ));
        }
        days.push(d);
    }
    Ok(days)
}

/// `PUBLIC_URL`, or `http://` + `HTTP_LISTEN`; an http(s) URL without a trailing slash.
/// A positive count (`key`, `default` when unset).
fn at_least_one(
    src: &Sources<'_>,
    key: &'static str,
    default: u32,
    expected: &str,
) -> Result<u32, ConfigError> {
    let value: u32 = src.parse_or(key, default, expected)?;
    if value == 0 {
        return Err(ConfigError::new(key, "must be at least 1"));
    }
    Ok(value)
}

fn public_url(raw: Option<String>, http_listen: SocketAddr) -> Result<String, ConfigError> {
    let Some(raw) = raw else {
        return Ok(format!("http://{http_listen}"));
    };
    let url = reqwest::Url::parse(&raw)
        .map_err(|e| ConfigError::new("PUBLIC_URL", format!("'{raw}' is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ConfigError::new(
            "PUBLIC_URL",
            format!("'{raw}' must be an http:// or https:// address"),
        ));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = Config::from_sources(&env(&[]), &env(&[]), None).unwrap();
        assert_eq!(c.database_url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(c.http_listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.grpc_listen.to_string(), "0.0.0.0:7443");
        assert!(c.redis_url.is_none());
        assert!(c.enable_cron);
        assert_eq!(
            (
                c.suspension_grace_days,
                c.termination_days,
                c.backup_retention_days
            ),
            (3, 30, 30)
        );
        assert_eq!(c.invoice_days_before_renewal, 7);
        assert_eq!(c.usage_retention_days, 90);
        assert_eq!(c.email_provider, EmailProvider::Smtp);
        assert_eq!(
            (c.smtp.host.as_str(), c.smtp.port, c.smtp.tls),
            ("localhost", 587, SmtpTls::StartTls)
        );
        assert_eq!(c.stripe.api_base, "https://api.stripe.com");
        assert!(c.encryption_keys.is_none());
        assert!(
            c.require_encryption_keys()
                .unwrap_err()
                .to_string()
                .starts_with("ENCRYPTION_KEY:")
        );
    }

    #[test]
    fn environment_beats_dotenv_beats_toml() {
        let toml = "http_listen = \"127.0.0.1:1\"\nsmtp_port = 2525\nsmtp_host = \"file\"\ncompany_name = \"File Co\"";
        let dotenv = env(&[("HTTP_LISTEN", "127.0.0.1:2"), ("SMTP_HOST", "dotenv")]);
        let e = env(&[("HTTP_LISTEN", "127.0.0.1:3")]);
        let c = Config::from_sources(&e, &dotenv, Some(toml)).unwrap();
        assert_eq!(c.http_listen.port(), 3);
        assert_eq!(c.smtp.host, "dotenv");
        assert_eq!(c.smtp.port, 2525);
        assert_eq!(c.company_name.as_deref(), Some("File Co"));
    }

    #[test]
    fn encryption_key_accepts_hex_base64_and_32_characters() {
        let hex_key = "00".repeat(31) + "ff";
        let k = parse_encryption_key("ENCRYPTION_KEY", &hex_key).unwrap();
        assert_eq!(k[31], 0xff);
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(
            parse_encryption_key("ENCRYPTION_KEY", &b64).unwrap(),
            [7u8; 32]
        );
        let plain = "abcdefghijklmnopqrstuvwxyz012345";
        assert_eq!(
            &parse_encryption_key("ENCRYPTION_KEY", plain).unwrap(),
            plain.as_bytes()
        );
        for bad in ["short", &"g".repeat(64), &"a".repeat(33)] {
            let err = parse_encryption_key("ENCRYPTION_KEY", bad).unwrap_err();
            assert_eq!(err.key, "ENCRYPTION_KEY");
        }
    }

    #[test]
    fn malformed_values_name_their_variable() {
        let cases = [
            ("HTTP_LISTEN", "not-an-address"),
            ("GRPC_LISTEN", "7443"),
            ("METRICS_LISTEN", "localhost"),
            ("DATABASE_URL", "mysql://x"),
            ("ENABLE_CRON", "maybe"),
            ("SUSPENSION_GRACE_DAYS", "-1"),
            ("SMTP_PORT", "99999"),
            ("SMTP_TLS", "ssl"),
            ("EMAIL_PROVIDER", "carrier-pigeon"),
            ("LOG_FORMAT", "xml"),
            ("REDIS_URL", "http://localhost"),
            ("ENCRYPTION_KEY", "too-short"),
            ("POWERDNS_API_URL", "127.0.0.1:8081"),
            ("DNS_DEFAULT_TTL", "0"),
            ("CRON_RECURRING_BILLING", "0 25 * * *"),
            ("CRON_SERVICE_SUSPENSION", "every night"),
            ("CRON_TIMEZONE", "Mars/Olympus_Mons"),
            ("CRON_LEASE_SECS", "0"),
            ("ADMIN_SESSION_HOURS", "0"),
            ("ADMIN_LOGIN_MAX_FAILURES", "many"),
            ("ADMIN_LOGIN_WINDOW_SECS", "0"),
        ];
        for (key, value) in cases {
            let err = Config::from_sources(&env(&[(key, value)]), &env(&[]), None).unwrap_err();
            assert_eq!(err.key, key, "{key}={value} gave {err}");
            assert!(err.to_string().starts_with(&format!("{key}: ")));
        }
    }

    #[test]
    fn admin_sign_in_settings_have_defaults_and_can_be_set() {
        let c = Config::from_sources(&env(&[]), &env(&[]), None).unwrap();
        assert_eq!(
            c.admin_login,
            AdminLoginConfig {
                session_hours: 12,
                max_failures: 5,
                window_secs: 900,
            }
        );
        let e = env(&[
            ("ADMIN_SESSION_HOURS", "1"),
            ("ADMIN_LOGIN_MAX_FAILURES", "3"),
            ("ADMIN_LOGIN_WINDOW_SECS", "2"),
        ]);
        let c = Config::from_sources(&e, &env(&[]), None).unwrap();
        assert_eq!(
            (
                c.admin_login.session_hours,
                c.admin_login.max_failures,
                c.admin_login.window_secs
            ),
            (1, 3, 2)
        );
    }

    #[test]
    fn redis_can_be_given_as_host_port_password() {
        let e = env(&[
            ("REDIS_HOST", "cache"),
            ("REDIS_PORT", "6380"),
            ("REDIS_PASSWORD", "pw"),
        ]);
        let c = Config::from_sources(&e, &env(&[]), None).unwrap();
        assert_eq!(c.redis_url.unwrap().expose(), "redis://:pw@cache:6380");
    }

    #[test]
    fn secrets_are_masked_in_debug_output() {
        let e = env(&[
            ("DATABASE_URL", "postgres://u:dbpass@h/db"),
            ("SMTP_PASSWORD", "smtppass"),
            ("STRIPE_SECRET_KEY", "sk_test_secret"),
            ("ENCRYPTION_KEY", "abcdefghijklmnopqrstuvwxyz012345"),
        ]);
        let c = Config::from_sources(&e, &env(&[]), None).unwrap();
        let debug = format!("{c:?}");
        for secret in ["dbpass", "smtppass", "sk_test_secret", "abcdefghijklmnop"] {
            assert!(!debug.contains(secret), "{secret} leaked into {debug}");
        }
    }

    #[test]
    fn powerdns_is_off_by_default_and_needs_a_key_when_its_url_is_set() {
        let c = Config::from_sources(&env(&[]), &env(&[]), None).unwrap();
        assert!(c.powerdns.is_none());
        assert_eq!(c.dns_default_ttl, 3600);
        let err = Config::from_sources(
            &env(&[("POWERDNS_API_URL", "http://127.0.0.1:8081")]),
            &env(&[]),
            None,
        )
        .unwrap_err();
        assert_eq!(err.key, "POWERDNS_API_KEY");
        let c = Config::from_sources(
            &env(&[
                ("POWERDNS_API_URL", "http://127.0.0.1:8081/"),
                ("POWERDNS_API_KEY", "pdns-secret-key"),
                ("DNS_DEFAULT_TTL", "300"),
            ]),
            &env(&[]),
            None,
        )
        .unwrap();
        let pdns = c.powerdns.as_ref().unwrap();
        assert_eq!(pdns.api_url, "http://127.0.0.1:8081");
        assert_eq!(pdns.server_id, "localhost");
        assert_eq!(c.dns_default_ttl, 300);
        assert!(!format!("{c:?}").contains("pdns-secret-key"));
    }

    #[test]
    fn cron_schedules_default_can_be_overridden_or_switched_off() {
        let c = Config::from_sources(&env(&[]), &env(&[]), None).unwrap();
        assert_eq!(c.cron.zone.name(), "UTC");
        assert_eq!(c.cron.lease_secs, 30);
        let expr = |c: &Config, job: &str| c.cron.schedule(job).map(|s| s.expression().to_owned());
        assert_eq!(expr(&c, "recurring-billing").as_deref(), Some("0 2 * * *"));
        assert_eq!(expr(&c, "service-suspension").as_deref(), Some("0 3 * * *"));
        assert_eq!(expr(&c, "ssl-renewals").as_deref(), Some("30 * * * *"));
        assert_eq!(
            expr(&c, "ssl-renewal-reminders").as_deref(),
            Some("0 4 * * *")
        );
        let toml = "cron_recurring_billing = \"30 4 * * *\"\ncron_timezone = \"+02:00\"";
        let c = Config::from_sources(
            &env(&[("CRON_SERVICE_SUSPENSION", "OFF"), ("CRON_LEASE_SECS", "2")]),
            &env(&[]),
            Some(toml),
        )
        .unwrap();
        assert_eq!(expr(&c, "recurring-billing").as_deref(), Some("30 4 * * *"));
        assert_eq!(expr(&c, "service-suspension"), None);
        assert_eq!(c.cron.zone.name(), "+02:00");
        assert_eq!(c.cron.lease_secs, 2);
    }

    #[test]
    fn toml_file_errors_are_reported() {
        let err = Config::from_sources(&env(&[]), &env(&[]), Some("http_listen = [")).unwrap_err();
        assert_eq!(err.key, "--config");
    }
}
