//! `mpanel-agent run`: the tokio shell around `core`. It keeps one outbound mTLS session to the
//! controller, sends Hello and heartbeats, runs commands concurrently through the
//! [`CommandHandler`], renews the certificate over the live session at two thirds of its
//! lifetime (hot-swapping it for the next handshake), and reconnects as `core::Supervisor`
//! decides.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mpanel_common::command::{Command, ErrorClass, Failure, Outcome};
use mpanel_common::load::LoadReport;
use mpanel_proto::convert;
use mpanel_proto::v1::agent_service_client::AgentServiceClient;
use mpanel_proto::v1::{
    AgentMessage, CommandResult, Hello, RenewCertificateRequest, agent_message, controller_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::config::parse_controller_url;
use crate::core::{Backoff, Next, SessionEnd, Supervisor, next_panel_probe_in, renewal_delay};
use crate::handler::CommandHandler;
use crate::state::{SessionStatus, StateDir, StateError};
use crate::tls::{self, SwappableIdentity};
use crate::{load, now_ms};

/// Reports the panel's account count and whether the panel answers.
#[async_trait]
pub trait PanelProbe: Send + Sync {
    async fn probe(&self) -> (Option<u32>, bool);
}

const RENEWAL_RETRY: Duration = Duration::from_secs(60);
/// How long the first panel probe may hold up the first session; a panel slower than this is
/// reported unreachable until a later probe reaches it.
const FIRST_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct AgentOptions {
    /// `https://host:port`.
    pub controller: String,
    pub state: StateDir,
    /// Used until the controller's Welcome says otherwise.
    pub heartbeat: Duration,
    pub accounts_path: PathBuf,
    pub panel_kind: String,
    pub capabilities: Vec<String>,
    pub handler: Arc<dyn CommandHandler>,
    pub panel: Option<Arc<dyn PanelProbe>>,
    pub backoff: Backoff,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("controller: {0}")]
    BadUrl(String),
    #[error("stored identity: {0}")]
    Identity(#[from] tls::IdentityError),
}

/// Validity of a PEM certificate as Unix ms (not_before, not_after).
pub fn cert_validity(cert_pem: &str) -> Option<(i64, i64)> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let v = cert.validity();
    Some((
        v.not_before.timestamp() * 1000,
        v.not_after.timestamp() * 1000,
    ))
}

fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Default)]
struct PanelState {
    accounts: AtomicU32,
    reachable: AtomicBool,
}

impl PanelState {
    /// Keeps a probe's reading for the next heartbeat; returns whether the panel answered.
    fn record(&self, (accounts, reachable): (Option<u32>, bool)) -> bool {
        if let Some(n) = accounts {
            self.accounts.store(n, Ordering::Relaxed);
        }
        self.reachable.store(reachable, Ordering::Relaxed);
        reachable
    }
}

struct Identity {
    swappable: Arc<SwappableIdentity>,
    tls: Arc<rustls::ClientConfig>,
    cert_pem: String,
}

fn load_identity(state: &StateDir) -> Result<Identity, RunError> {
    let cert_pem = state.read_cert()?;
    let key = tls::certified_key(&cert_pem, &state.read_key()?)?;
    let swappable = SwappableIdentity::new(key);
    let tls = Arc::new(tls::session_config(&state.read_ca()?, swappable.clone())?);
    Ok(Identity {
        swappable,
        tls,
        cert_pem,
    })
}

/// Runs until `shutdown`. Returns an error only for a broken local setup (no enrollment, bad
/// state files); everything the network does is handled by reconnecting.
pub async fn run(opts: AgentOptions, shutdown: CancellationToken) -> Result<(), RunError> {
    let (host, port) = parse_controller_url(&opts.controller).map_err(RunError::BadUrl)?;
    let server_id = opts.state.enrollment().map(|e| e.server_id).unwrap_or(0);
    let mut identity = load_identity(&opts.state)?;
    let panel_state = Arc::new(PanelState::default());
    if let Some(panel) = opts.panel.clone() {
        // The first reading comes before the first session, so the first heartbeat tells the
        // controller the truth: placement skips a server whose panel is reported unreachable,
        // and a guess either way would hold for a whole heartbeat interval.
        let first = tokio::select! {
            reading = tokio::time::timeout(FIRST_PROBE_TIMEOUT, panel.probe()) => reading.unwrap_or((None, false)),
            () = shutdown.cancelled() => return Ok(()),
        };
        let mut reachable = panel_state.record(first);
        let panel_state = panel_state.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(next_panel_probe_in(reachable)) => {}
                }
                reachable = panel_state.record(panel.probe().await);
            }
        });
    }

    let mut supervisor = Supervisor::new(opts.backoff.clone());
    let set_status = |state: &str, detail: &str| {
        crate::telemetry::metrics::session_state(state);
        let _ = opts.state.store_status(&SessionStatus {
            state: state.to_owned(),
            since_ms: now_ms(),
            detail: detail.to_owned(),
            pid: std::process::id(),
        });
    };
    loop {
        let started = Instant::now();
        let expired = cert_validity(&identity.cert_pem).is_some_and(|(_, na)| na <= now_ms());
        let end = if expired {
            SessionEnd::CertificateExpired
        } else {
            set_status("connecting", &opts.controller);
            let session = Session {
                opts: &opts,
                host: &host,
                port,
                server_id,
                identity: &mut identity,
                panel: &panel_state,
                set_status: &set_status,
            };
            tokio::select! {
                end = session.run() => end,
                () = shutdown.cancelled() => SessionEnd::Closed { code: "shutdown".into(), reason: "agent stopping".into() },
            }
        };
        if shutdown.is_cancelled() {
            set_status("disconnected", "agent stopped");
            return Ok(());
        }
        match supervisor.after_session(&end, started.elapsed(), random_unit()) {
            Next::Reconnect(delay) => {
                let detail = match &end {
                    SessionEnd::Closed { reason, .. } => reason.clone(),
                    SessionEnd::Failed(text) => text.clone(),
                    SessionEnd::CertificateExpired => "certificate expired".into(),
                };
                crate::telemetry::metrics::reconnect();
                tracing::warn!(error = %detail, retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), "session to the controller ended; reconnecting");
                set_status("disconnected", &detail);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shutdown.cancelled() => return Ok(()),
                }
            }
            Next::NeedsEnrollment(message) => {
                // One clear line, then quiet: nothing changes until someone enrols again.
                tracing::error!("{message}");
                set_status("needs_enrollment", &message);
                let old = identity.cert_pem.clone();
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(5)) => {}
                        () = shutdown.cancelled() => return Ok(()),
                    }
                    if opts.state.read_cert().is_ok_and(|c| c != old)
                        && let Ok(fresh) = load_identity(&opts.state)
                    {
                        tracing::info!("a new certificate was enrolled; reconnecting");
                        identity = fresh;
                        supervisor.reenrolled();
                        break;
                    }
                }
            }
        }
    }
}

struct Session<'a, F: Fn(&str, &str)> {
    opts: &'a AgentOptions,
    host: &'a str,
    port: u16,
    server_id: i64,
    identity: &'a mut Identity,
    panel: &'a PanelState,
    set_status: &'a F,
}

fn send_now(tx: &mpsc::Sender<AgentMessage>, body: agent_message::Body) {
    // The queue is small and drained by the HTTP/2 stream; a full queue means the connection
    // is stuck, and the session will notice that on its own.
    let _ = tx.try_send(AgentMessage { body: Some(body) });
}

impl<F: Fn(&str, &str)> Session<'_, F> {
    /// Adds the controller's TLS alert to an opaque "connection closed" failure.
    async fn explain(&self, text: String) -> String {
        match tls::diagnose_handshake(self.host, self.port, self.identity.tls.clone()).await {
            Some(alert) => format!("{text}: handshake refused: {alert}"),
            None => text,
        }
    }

    async fn run(self) -> SessionEnd {
        let opts = self.opts;
        let handshake_done = Arc::new(AtomicBool::new(false));
        let channel = match tls::connect_observed(
            self.host,
            self.port,
            self.identity.tls.clone(),
            Duration::from_secs(10),
            &handshake_done,
        )
        .await
        {
            Ok(c) => c,
            // A second handshake to read the controller's alert only where there can be one:
            // a fleet dialling back into a busy controller must not double its handshakes.
            Err(e) if handshake_done.load(Ordering::Relaxed) => {
                return SessionEnd::Failed(self.explain(tls::error_chain(&e)).await);
            }
            Err(e) => return SessionEnd::Failed(tls::error_chain(&e)),
        };
        let mut client = AgentServiceClient::new(channel);
        let (tx, rx) = mpsc::channel::<AgentMessage>(64);
        send_now(
            &tx,
            agent_message::Body::Hello(Hello {
                protocol_version: mpanel_proto::PROTOCOL_VERSION,
                agent_version: env!("CARGO_PKG_VERSION").to_owned(),
                panel_kind: opts.panel_kind.clone(),
                capabilities: opts.capabilities.clone(),
                server_id: self.server_id,
            }),
        );
        let mut inbound = match client.connect(ReceiverStream::new(rx)).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                let text = format!("{}: {}", status.message(), tls::error_chain(&status));
                return SessionEnd::Failed(self.explain(text).await);
            }
        };
        (self.set_status)("connected", &opts.controller);
        tracing::info!(controller = %opts.controller, "session to the controller open");

        let mut heartbeat = tokio::time::interval(opts.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut not_before, mut not_after) =
            cert_validity(&self.identity.cert_pem).unwrap_or((0, i64::MAX / 2));
        let renewal = tokio::time::sleep(renewal_delay(not_before, not_after, now_ms()));
        tokio::pin!(renewal);
        let mut pending_key: Option<rcgen::KeyPair> = None;

        loop {
            tokio::select! {
                _ = heartbeat.tick() => {
                    let load = LoadReport {
                        account_count: self.panel.accounts.load(Ordering::Relaxed),
                        panel_reachable: opts.panel.is_none() || self.panel.reachable.load(Ordering::Relaxed),
                        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
                        certificate_not_after_ms: not_after,
                        ..load::read(&opts.accounts_path)
                    };
                    send_now(&tx, agent_message::Body::Heartbeat(load.into()));
                }
                () = &mut renewal => {
                    // A new key per certificate: renewal also rotates the key.
                    let csr = rcgen::KeyPair::generate().ok().and_then(|key| {
                        let csr = rcgen::CertificateParams::new(Vec::<String>::new()).ok()?.serialize_request(&key).ok()?.pem().ok()?;
                        Some((key, csr))
                    });
                    if let Some((key, csr)) = csr {
                        tracing::info!("renewing the agent certificate");
                        pending_key = Some(key);
                        send_now(&tx, agent_message::Body::RenewCertificate(RenewCertificateRequest { csr_pem: csr }));
                    }
                    // Until an answer arrives, ask again later.
                    renewal.as_mut().reset(tokio::time::Instant::now() + RENEWAL_RETRY);
                }
                message = inbound.message() => {
                    let body = match message {
                        Ok(Some(m)) => m.body,
                        Ok(None) => return SessionEnd::Failed("the controller ended the session".into()),
                        Err(status) => return SessionEnd::Failed(format!("{}: {}", status.message(), tls::error_chain(&status))),
                    };
                    match body {
                        Some(controller_message::Body::Welcome(w)) if w.heartbeat_interval_secs > 0 => {
                            let every = Duration::from_secs(u64::from(w.heartbeat_interval_secs));
                            heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                            heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        }
                        Some(controller_message::Body::Welcome(_)) => {}
                        Some(controller_message::Body::Command(command)) => {
                            let handler = opts.handler.clone();
                            let tx = tx.clone();
                            let panel = opts.panel_kind.clone();
                            tokio::spawn(async move {
                                let result = run_command_for(handler, command, &panel).await;
                                let _ = tx.send(AgentMessage { body: Some(agent_message::Body::CommandResult(result)) }).await;
                            });
                        }
                        Some(controller_message::Body::Certificate(response)) => {
                            let Some(key) = pending_key.take() else { continue };
                            let key_pem = key.serialize_pem();
                            match tls::certified_key(&response.certificate_pem, &key_pem) {
                                Ok(certified) => {
                                    if let Err(e) = opts.state.store_identity(&key_pem, &response.certificate_pem) {
                                        tracing::error!(error = %e, "cannot store the renewed certificate; keeping the old one");
                                        continue;
                                    }
                                    self.identity.swappable.swap(certified);
                                    self.identity.cert_pem = response.certificate_pem;
                                    (not_before, not_after) = cert_validity(&self.identity.cert_pem).unwrap_or((not_before, not_after));
                                    renewal.as_mut().reset(tokio::time::Instant::now() + renewal_delay(not_before, not_after, now_ms()));
                                    tracing::info!(not_after_ms = not_after, "agent certificate renewed; the session continues");
                                }
                                Err(e) => tracing::error!(error = %e, "the controller's renewed certificate is unusable"),
                            }
                        }
                        Some(controller_message::Body::Closed(closed)) => {
                            return SessionEnd::Closed { code: closed.code, reason: closed.reason };
                        }
                        None => {}
                    }
                }
            }
        }
    }
}

/// Runs one wire command through `handler` as the session does: read and checked by
/// `mpanel_proto::convert` (a refusal is permanent), bounded by its deadline, answered as a wire
/// result.
pub async fn run_command(
    handler: Arc<dyn CommandHandler>,
    command: mpanel_proto::v1::Command,
) -> CommandResult {
    run_command_for(handler, command, "").await
}

/// [`run_command`] on an agent driving a `panel` (`cpanel`, …; empty without one), counted in
/// the agent's metrics by command and outcome, and its panel errors by class.
pub async fn run_command_for(
    handler: Arc<dyn CommandHandler>,
    command: mpanel_proto::v1::Command,
    panel: &str,
) -> CommandResult {
    let started = Instant::now();
    let typed = convert::command_from_wire(command.request);
    let name = typed.as_ref().ok().map(Command::name);
    let outcome = match typed {
        // Read the same way on every retry: permanent.
        Err(e) => Outcome::Failed(Failure::permanent(e.to_string())),
        Ok(typed) if command.deadline_unix_ms > 0 => {
            let left = u64::try_from(command.deadline_unix_ms - now_ms()).unwrap_or(0);
            tokio::time::timeout(
                Duration::from_millis(left),
                handler.handle(typed, &command.idempotency_key),
            )
            .await
            .unwrap_or_else(|_| {
                Outcome::Failed(Failure::new(
                    ErrorClass::Retryable,
                    "the command's deadline passed on the agent",
                ))
            })
        }
        Ok(typed) => handler.handle(typed, &command.idempotency_key).await,
    };
    crate::telemetry::metrics::command_handled(name, &outcome, started.elapsed(), panel);
    CommandResult {
        id: command.id,
        outcome: Some(outcome.into()),
    }
}
