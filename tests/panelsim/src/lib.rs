//! Simulated cPanel/WHM, Plesk and DirectAdmin HTTP APIs for mpanel's tests and demo.
//!
//! The simulator owns an in-memory "hosting server" (accounts, sites, DNS zones, mailboxes,
//! databases, certificates, web-root files) and serves it through the real API paths, auth
//! schemes, envelopes and quirks of one panel kind, as written down in
//! the panel API reference (`panel-apis.md`). It does not own the agent's drivers and makes no
//! attempt to be a full panel: only the calls mpanel needs are simulated, and every choice the
//! reference marks UNCONFIRMED is listed in this crate's README.
//!
//! Test-only control routes live under `/__sim/*` (no auth): state, scripted faults, seeding.
//! Optional extras: a self-signed HTTPS listener, real MariaDB databases and users, and an
//! ACME HTTP-01 responder fed by the panels' own file-writing calls.

mod backups;
mod catalog;
mod control;
mod cpanel;
mod directadmin;
mod dns;
mod faults;
mod mariadb;
mod pem;
mod plesk;
mod reply;
mod request;
mod routes;
mod server;
mod sim;
mod state;
mod tls;
mod webroot;

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use faults::{FaultKind, ScriptedFault};
pub use state::{RESIDENT_DOMAIN, RESIDENT_USER};

/// Which panel the simulator impersonates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimKind {
    /// cPanel & WHM (WHM API 1 plus UAPI through WHM), real port 2087.
    Cpanel,
    /// Plesk Obsidian (REST API v2, CLI gateway, XML API for certificates), real port 8443.
    Plesk,
    /// DirectAdmin (legacy `CMD_API_*`, a sliver of the new `/api`), real port 2222.
    Directadmin,
}

impl SimKind {
    /// The lower-case name used on the command line and in `/__sim/state`.
    pub fn as_str(self) -> &'static str {
        match self {
            SimKind::Cpanel => "cpanel",
            SimKind::Plesk => "plesk",
            SimKind::Directadmin => "directadmin",
        }
    }
}

impl fmt::Display for SimKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an unknown panel kind name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown panel kind '{0}': expected cpanel, plesk or directadmin")]
pub struct UnknownKind(pub String);

impl FromStr for SimKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpanel" => Ok(SimKind::Cpanel),
            "plesk" => Ok(SimKind::Plesk),
            "directadmin" => Ok(SimKind::Directadmin),
            _ => Err(UnknownKind(s.to_owned())),
        }
    }
}

/// Everything a simulator instance needs; the same knobs as the command line.
#[derive(Clone)]
pub struct SimConfig {
    /// Panel to impersonate.
    pub kind: SimKind,
    /// The API token (cPanel `whm root:<token>`, Plesk `X-API-Key`, DirectAdmin password/key).
    pub token: String,
    /// Added to every API call (not to `/__sim/*`).
    pub latency_ms: u64,
    /// Probability (0.0–1.0) that an API call fails with the panel's transient 5xx and changes nothing.
    pub fail_rate: f64,
    /// Seeds the fail-rate RNG and the deterministic quirks (WHM string results, DA auth variant).
    pub seed: u64,
    /// Serve HTTPS with a self-signed certificate made at start.
    pub tls: bool,
    /// When set (e.g. `mysql://root@127.0.0.1:3306`), database calls create real MariaDB objects.
    pub mariadb_url: Option<String>,
    /// Serve `GET /.well-known/acme-challenge/<token>` (plain HTTP too, on the same listener).
    pub web_root_http: bool,
}

impl SimConfig {
    /// A plain-HTTP simulator with no latency, no random failures and seed 0.
    pub fn new(kind: SimKind, token: impl Into<String>) -> Self {
        SimConfig {
            kind,
            token: token.into(),
            latency_ms: 0,
            fail_rate: 0.0,
            seed: 0,
            tls: false,
            mariadb_url: None,
            web_root_http: false,
        }
    }
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("kind", &self.kind)
            .field("token", &"<redacted>")
            .field("latency_ms", &self.latency_ms)
            .field("fail_rate", &self.fail_rate)
            .field("seed", &self.seed)
            .field("tls", &self.tls)
            .field("mariadb_url", &self.mariadb_url.as_ref().map(|_| "<set>"))
            .field("web_root_http", &self.web_root_http)
            .finish()
    }
}

/// A running simulator.
///
/// Dropping the handle does not stop the server (it keeps serving until the Tokio runtime
/// shuts down, as at the end of a `#[tokio::test]`); `shutdown` stops it and waits.
pub struct SimHandle {
    addr: SocketAddr,
    tls: bool,
    sim: Arc<sim::Sim>,
    certificate_pem: Option<String>,
    task: JoinHandle<()>,
}

impl fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimHandle")
            .field("kind", &self.sim.config.kind)
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    /// `https://127.0.0.1:PORT` (or `http://…` without TLS).
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Which panel this instance impersonates.
    pub fn kind(&self) -> SimKind {
        self.sim.config.kind
    }

    /// The same document as `GET /__sim/state`.
    pub fn state_json(&self) -> serde_json::Value {
        self.sim.state_json()
    }

    /// Queue a scripted fault, as `POST /__sim/faults` does.
    pub fn script(&self, fault: ScriptedFault) {
        self.sim.script(fault);
    }

    /// The self-signed certificate (PEM) served when TLS is on, for clients that want to pin it.
    pub fn certificate_pem(&self) -> Option<&str> {
        self.certificate_pem.as_deref()
    }

    /// Stop accepting, let in-flight requests finish (bounded: held `Timeout` faults wake up,
    /// other connections get 5 s), and wait for the server task.
    pub async fn shutdown(self) {
        self.sim.request_stop();
        let _ = self.task.await;
    }
}

/// Start a simulator on `listener` and return once it accepts connections.
pub async fn start(config: SimConfig, listener: TcpListener) -> anyhow::Result<SimHandle> {
    if config.token.is_empty() {
        anyhow::bail!("token: must not be empty");
    }
    if !(0.0..=1.0).contains(&config.fail_rate) || config.fail_rate.is_nan() {
        anyhow::bail!("fail_rate: {} is not between 0.0 and 1.0", config.fail_rate);
    }
    let addr = listener
        .local_addr()
        .context("reading the listener's address")?;

    let tls = if config.tls {
        Some(tls::self_signed().context("making the self-signed TLS certificate")?)
    } else {
        None
    };
    let mariadb = match &config.mariadb_url {
        Some(url) => Some(
            mariadb::MariaDb::connect(url)
                .await
                .with_context(|| format!("connecting to MariaDB at {}", mariadb::redact(url)))?,
        ),
        None => None,
    };

    let sim = Arc::new(sim::Sim::new(config, mariadb));
    let stopped = sim.stop_signal();
    let app = routes::router(Arc::clone(&sim));
    let certificate_pem = tls.as_ref().map(|t| t.certificate_pem.clone());
    let acceptor = tls.map(|t| t.acceptor);
    let task = tokio::spawn(server::serve(listener, app, acceptor, stopped));
    tracing::info!(kind = %sim.config.kind, %addr, tls = certificate_pem.is_some(), "panel simulator listening");

    Ok(SimHandle {
        addr,
        tls: certificate_pem.is_some(),
        sim,
        certificate_pem,
        task,
    })
}
