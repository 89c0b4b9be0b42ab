//! The agent fleet: the built-in CA, enrollment, the agents' mTLS gRPC endpoint, live sessions,
//! heartbeats and commands.
//!
//! [`Fleet`] is the one handle the rest of the controller uses (`AppState.fleet`): the API
//! creates enrollment tokens and revokes certificates through it, the provisioning pipeline
//! sends typed commands with [`Fleet::request`] (or [`Fleet::send_command`]). It owns the in-memory session registry and
//! liveness table; the store keeps what must survive a restart (CA, tokens, certificates, the
//! last known state of each agent).
//!
//! Design choices (see `tls.rs` and `grpc.rs`): one TLS port for enrollment and sessions, with
//! client certificates optional at the handshake and required by `Connect`; our own accept loop
//! so the verified identity is read after the handshake and revoked serials are refused at the
//! handshake and cut mid-session.

pub mod ca;
pub mod commands;
mod grpc;
pub mod heartbeat;
mod hellos;
pub mod tls;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use mpanel_common::command::{Command, Outcome, Request};
use mpanel_common::ids::ServerId;
use mpanel_common::status::AgentStatus;
use mpanel_proto::convert;
use mpanel_proto::v1::{CommandResult, ControllerMessage, controller_message};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

pub use ca::{CertIdentity, CertificateAuthority};
pub use commands::{CommandError, ErrorClass, Reply};
pub use heartbeat::LoadReport;

use crate::config::Config;
use crate::crypto::{self, Cipher};
use crate::store::{AgentHello, AgentRow, DynStore, StoreError, now_ms};
use heartbeat::{LivenessTable, Thresholds};
use tls::RevokedSerials;

/// Enrollment tokens live one hour (contract).
pub const ENROLLMENT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// How often changed liveness rows are written, in one transaction.
const FLUSH_INTERVAL: Duration = Duration::from_secs(2);
/// How often the revoked-serial set is reloaded (revocations made by another replica).
const REVOCATION_RELOAD: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Ca(#[from] ca::CaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("gRPC TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
}

/// What an admin hands to `mpanel-agent enroll`.
#[derive(Debug, Clone)]
pub struct EnrollmentGrant {
    /// `<secret>.<CA fingerprint>`: the agent pins the controller's CA from the token alone.
    pub token: String,
    pub expires_at_ms: i64,
    pub ca_fingerprint: String,
}

/// One agent as `GET /api/agents` shows it: stored state merged with the live session.
#[derive(Debug, Clone)]
pub struct AgentView {
    pub row: AgentRow,
    pub status: AgentStatus,
    pub connected: bool,
    pub connected_at_ms: Option<i64>,
    pub last_heartbeat_ms: Option<i64>,
    pub load: Option<LoadReport>,
    /// Set when the agent's last session was refused because it speaks an older protocol.
    pub too_old: Option<TooOld>,
}

/// An agent refused for speaking an older protocol than this controller needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooOld {
    pub agent_version: String,
    pub protocol_version: u32,
    pub required_protocol_version: u32,
    pub refused_at_ms: i64,
}

impl TooOld {
    /// What the agent, its log and the API say.
    pub fn reason(&self) -> String {
        format!(
            "agent {} speaks protocol {}, this controller needs protocol {} or newer: upgrade mpanel-agent on this server",
            self.agent_version, self.protocol_version, self.required_protocol_version
        )
    }
}

type Outbound = mpsc::Sender<Result<ControllerMessage, tonic::Status>>;

/// Why the registry closed a session; the session task tells the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseReason {
    Replaced,
    Revoked,
    Offline,
}

/// A live session: small on purpose (10,000 of them fit in a few MB besides the connections).
struct SessionEntry {
    session_id: u64,
    serial: String,
    tx: Outbound,
    cancel: CancellationToken,
    reason: Arc<OnceLock<CloseReason>>,
    connected_at_ms: i64,
    /// What the agent advertised in its Hello.
    capabilities: Vec<String>,
}

struct PendingCommand {
    server_id: ServerId,
    session_id: u64,
    reply: oneshot::Sender<CommandResult>,
}

struct FleetInner {
    store: DynStore,
    ca: CertificateAuthority,
    revoked: Arc<RevokedSerials>,
    /// Bumped on every revocation; connections re-check their serial when it changes.
    revocations: watch::Sender<u64>,
    sessions: Mutex<HashMap<ServerId, SessionEntry>>,
    pending: Mutex<HashMap<u64, PendingCommand>>,
    liveness: Mutex<LivenessTable>,
    /// Agents whose last Hello was refused as too old, until one of them connects again.
    too_old: Mutex<HashMap<ServerId, TooOld>>,
    /// The Hello writer's queue (`hellos.rs`).
    hellos: mpsc::Sender<hellos::PendingHello>,
    next_id: AtomicU64,
    heartbeat_secs: u32,
    thresholds: Thresholds,
    cert_lifetime: Duration,
    shutdown: CancellationToken,
}

/// The handle to the fleet; cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<FleetInner>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fleet({:?})", self.inner.ca)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these maps leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Fleet {
    /// Loads (or creates) the CA, the revoked serials and the agents' last state, and starts
    /// the flusher, sweeper and revocation reloader; they stop with `shutdown`.
    pub async fn start(
        store: DynStore,
        cipher: &Cipher,
        config: &Config,
        shutdown: CancellationToken,
    ) -> Result<Fleet, FleetError> {
        let ca = CertificateAuthority::load_or_create(&store, cipher).await?;
        let revoked = Arc::new(RevokedSerials::default());
        revoked.replace(store.revoked_certificate_serials().await?);
        let mut liveness = LivenessTable::default();
        liveness.seed(&store.list_agents().await?);
        let (hellos, queue) = mpsc::channel(hellos::QUEUE);
        tokio::spawn(hellos::writer(store.clone(), queue));
        let fleet = Fleet {
            inner: Arc::new(FleetInner {
                store,
                ca,
                revoked,
                revocations: watch::channel(0).0,
                sessions: Mutex::new(HashMap::new()),
                pending: Mutex::new(HashMap::new()),
                liveness: Mutex::new(liveness),
                too_old: Mutex::new(HashMap::new()),
                hellos,
                next_id: AtomicU64::new(1),
                heartbeat_secs: config.agent_heartbeat_secs.max(1),
                thresholds: Thresholds {
                    suspect_ms: i64::from(config.agent_suspect_secs) * 1000,
                    offline_ms: i64::from(config.agent_offline_secs) * 1000,
                },
                cert_lifetime: Duration::from_secs(u64::from(config.agent_cert_lifetime_secs)),
                shutdown,
            }),
        };
        tokio::spawn(fleet.clone().background());
        Ok(fleet)
    }

    /// Serves the agents' endpoint on `listener` until shutdown. The server certificate is
    /// issued afresh from the CA at every start for `names` (`GRPC_SERVER_NAMES`).
    pub async fn serve(&self, listener: TcpListener, names: &[String]) -> Result<(), FleetError> {
        let (chain, key) = self.inner.ca.issue_server_identity(names)?;
        let config = tls::server_config(
            self.inner.ca.cert_der().clone(),
            chain,
            key,
            self.inner.revoked.clone(),
        )?;
        grpc::serve(self.clone(), listener, Arc::new(config)).await;
        Ok(())
    }

    pub fn ca_fingerprint(&self) -> &str {
        self.inner.ca.fingerprint()
    }

    pub fn ca_pem(&self) -> &str {
        self.inner.ca.cert_pem()
    }

    /// A one-use enrollment token for `server_id`, valid one hour; only its hash is stored.
    pub async fn create_enrollment_token(
        &self,
        server_id: ServerId,
        actor: &str,
    ) -> Result<EnrollmentGrant, FleetError> {
        let secret = crypto::new_token("mpe_")?;
        let expires_at_ms = now_ms() + i64::try_from(ENROLLMENT_TOKEN_TTL.as_millis()).unwrap_or(0);
        self.inner
            .store
            .create_enrollment_token(
                server_id,
                &crypto::token_hash(&secret),
                expires_at_ms,
                actor,
            )
            .await?;
        let fingerprint = self.ca_fingerprint().to_owned();
        Ok(EnrollmentGrant {
            token: format!("{secret}.{fingerprint}"),
            expires_at_ms,
            ca_fingerprint: fingerprint,
        })
    }

    /// Revokes every certificate of the server: new handshakes are refused at once and a live
    /// session is closed (the connection too) before this returns.
    pub async fn revoke(
        &self,
        server_id: ServerId,
        actor: &str,
    ) -> Result<Vec<String>, FleetError> {
        let serials = self
            .inner
            .store
            .revoke_agent_certificates(server_id, actor)
            .await?;
        self.apply_revocation(server_id, serials.clone());
        tracing::warn!(
            server_id = server_id.get(),
            count = serials.len(),
            "agent certificates revoked"
        );
        Ok(serials)
    }

    fn apply_revocation(&self, server_id: ServerId, serials: Vec<String>) {
        let revoked_live = {
            let sessions = lock(&self.inner.sessions);
            sessions
                .get(&server_id)
                .is_some_and(|s| serials.contains(&s.serial))
        };
        self.inner.revoked.extend(serials);
        lock(&self.inner.liveness).revoked(server_id);
        if revoked_live {
            self.close_session(server_id, CloseReason::Revoked);
        }
        self.inner.revocations.send_modify(|g| *g += 1);
    }

    /// Forgets a deleted server: closes its session and drops its liveness.
    pub fn forget_server(&self, server_id: ServerId) {
        self.close_session(server_id, CloseReason::Revoked);
        lock(&self.inner.liveness).remove(server_id);
        lock(&self.inner.too_old).remove(&server_id);
    }

    pub fn is_connected(&self, server_id: ServerId) -> bool {
        lock(&self.inner.sessions).contains_key(&server_id)
    }

    pub fn connected_count(&self) -> usize {
        lock(&self.inner.sessions).len()
    }

    /// Whether the server's agent is connected and advertised `capability` in its Hello.
    pub fn has_capability(&self, server_id: ServerId, capability: &str) -> bool {
        lock(&self.inner.sessions)
            .get(&server_id)
            .is_some_and(|s| s.capabilities.iter().any(|c| c == capability))
    }

    /// The load the agent last reported, for placement.
    pub fn latest_load(&self, server_id: ServerId) -> Option<(AgentStatus, Option<LoadReport>)> {
        lock(&self.inner.liveness)
            .get(server_id)
            .map(|l| (l.status, l.load.clone()))
    }

    /// Every enrolled agent, stored state merged with the live view.
    pub async fn agents(&self) -> Result<Vec<AgentView>, FleetError> {
        let rows = self.inner.store.list_agents().await?;
        let sessions = lock(&self.inner.sessions);
        let liveness = lock(&self.inner.liveness);
        let too_old = lock(&self.inner.too_old);
        Ok(rows
            .into_iter()
            .map(|row| {
                let live = liveness.get(row.server_id);
                let session = sessions.get(&row.server_id);
                let stored_status = row.status.parse().unwrap_or(AgentStatus::Pending);
                AgentView {
                    status: if stored_status == AgentStatus::Revoked {
                        stored_status
                    } else {
                        live.map_or(stored_status, |l| l.status)
                    },
                    connected: session.is_some(),
                    connected_at_ms: session.map(|s| s.connected_at_ms),
                    last_heartbeat_ms: live.and_then(|l| l.last_beat_ms).or(row.last_heartbeat_at),
                    load: live.and_then(|l| l.load.clone()),
                    too_old: too_old.get(&row.server_id).cloned(),
                    row,
                }
            })
            .collect())
    }

    /// Sends `request` to the server's agent and waits for its reply until `deadline`; the
    /// reply type is the one that answers the request (anything else is `BadReply`).
    pub async fn request<R: Request>(
        &self,
        server_id: ServerId,
        request: R,
        idempotency_key: &str,
        deadline: Duration,
    ) -> Result<R::Reply, CommandError> {
        let command: Command = request.into();
        let sent = command.name();
        let reply = self
            .send_command(server_id, command, idempotency_key, deadline)
            .await?;
        R::reply(reply).map_err(|other| CommandError::BadReply {
            server: server_id,
            problem: format!("a '{}' reply to '{sent}'", other.command_name()),
        })
    }

    /// Sends a command to the server's agent and waits for its result until `deadline`.
    /// An agent that is not connected fails at once with the retryable `Offline`.
    pub async fn send_command(
        &self,
        server_id: ServerId,
        command: Command,
        idempotency_key: &str,
        deadline: Duration,
    ) -> Result<Reply, CommandError> {
        let name = command.name();
        let started = std::time::Instant::now();
        let result = self
            .send_command_timed(server_id, command, idempotency_key, deadline)
            .await;
        let outcome = match &result {
            Ok(_) => "done",
            Err(CommandError::Offline(_)) => "offline",
            Err(CommandError::Disconnected(_)) => "disconnected",
            Err(CommandError::Timeout(_)) => "timeout",
            Err(CommandError::Waiting(_)) => "waiting",
            Err(CommandError::Failed { .. }) => "failed",
            Err(CommandError::BadReply { .. }) => "bad_reply",
        };
        crate::telemetry::metrics::agent_command(name, outcome, started.elapsed());
        result
    }

    async fn send_command_timed(
        &self,
        server_id: ServerId,
        command: Command,
        idempotency_key: &str,
        deadline: Duration,
    ) -> Result<Reply, CommandError> {
        let until = tokio::time::Instant::now() + deadline;
        let (tx, session_id) = {
            let sessions = lock(&self.inner.sessions);
            let s = sessions
                .get(&server_id)
                .ok_or(CommandError::Offline(server_id))?;
            (s.tx.clone(), s.session_id)
        };
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply_tx, reply_rx) = oneshot::channel();
        lock(&self.inner.pending).insert(
            id,
            PendingCommand {
                server_id,
                session_id,
                reply: reply_tx,
            },
        );
        let deadline_ms = now_ms() + i64::try_from(deadline.as_millis()).unwrap_or(i64::MAX / 2);
        let message = ControllerMessage {
            body: Some(controller_message::Body::Command(
                mpanel_proto::v1::Command {
                    id: id.to_string(),
                    idempotency_key: idempotency_key.to_owned(),
                    deadline_unix_ms: deadline_ms,
                    request: Some(command.into()),
                },
            )),
        };
        let outcome = async {
            tx.send(Ok(message))
                .await
                .map_err(|_| CommandError::Offline(server_id))?;
            reply_rx
                .await
                .map_err(|_| CommandError::Disconnected(server_id))
        };
        let result = match tokio::time::timeout_at(until, outcome).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => {
                lock(&self.inner.pending).remove(&id);
                return Err(e);
            }
            Err(_) => {
                lock(&self.inner.pending).remove(&id);
                return Err(CommandError::Timeout(server_id));
            }
        };
        match convert::outcome_from_wire(result.outcome) {
            Ok(Outcome::Done(reply)) => Ok(reply),
            Ok(Outcome::Waiting(waiting)) => Err(CommandError::Waiting(waiting)),
            Ok(Outcome::Failed(f)) => Err(CommandError::Failed {
                class: f.class,
                message: f.message,
            }),
            Err(e) => Err(CommandError::BadReply {
                server: server_id,
                problem: e.to_string(),
            }),
        }
    }

    // ----- used by the session handlers in grpc.rs -----

    fn store(&self) -> &DynStore {
        &self.inner.store
    }

    fn ca(&self) -> &CertificateAuthority {
        &self.inner.ca
    }

    fn is_revoked(&self, serial: &str) -> bool {
        self.inner.revoked.contains(serial)
    }

    fn revocation_watch(&self) -> watch::Receiver<u64> {
        self.inner.revocations.subscribe()
    }

    /// Registers a new session, replacing (and closing) an older one of the same agent: a
    /// restarted agent whose old TCP connection is not yet known dead must never be locked out.
    fn register_session(
        &self,
        server_id: ServerId,
        serial: String,
        tx: Outbound,
        capabilities: Vec<String>,
    ) -> (u64, CancellationToken, Arc<OnceLock<CloseReason>>) {
        lock(&self.inner.too_old).remove(&server_id);
        let session_id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let cancel = self.inner.shutdown.child_token();
        let reason = Arc::new(OnceLock::new());
        let entry = SessionEntry {
            session_id,
            serial,
            tx,
            cancel: cancel.clone(),
            reason: reason.clone(),
            connected_at_ms: now_ms(),
            capabilities,
        };
        let old = lock(&self.inner.sessions).insert(server_id, entry);
        if let Some(old) = old {
            let _ = old.reason.set(CloseReason::Replaced);
            old.cancel.cancel();
            tracing::info!(
                server_id = server_id.get(),
                "a newer session replaced the agent's previous one"
            );
        }
        (session_id, cancel, reason)
    }

    fn close_session(&self, server_id: ServerId, reason: CloseReason) {
        let entry = lock(&self.inner.sessions).remove(&server_id);
        if let Some(entry) = entry {
            let _ = entry.reason.set(reason);
            entry.cancel.cancel();
        }
    }

    /// Called when a session task ends: unregisters it (unless a newer one replaced it) and
    /// fails its in-flight commands as `Disconnected`.
    fn session_ended(&self, server_id: ServerId, session_id: u64) {
        {
            let mut sessions = lock(&self.inner.sessions);
            if sessions
                .get(&server_id)
                .is_some_and(|s| s.session_id == session_id)
            {
                sessions.remove(&server_id);
            }
        }
        // Dropping the reply senders wakes the waiters with `Disconnected`.
        lock(&self.inner.pending).retain(|_, p| p.session_id != session_id);
    }

    /// Remembers an agent refused for its protocol, for `GET /api/agents`.
    fn refused_too_old(&self, server_id: ServerId, refusal: TooOld) {
        lock(&self.inner.too_old).insert(server_id, refusal);
    }

    /// Records the agent's Hello (batched with others arriving at the same time); `false` when
    /// the agent is not enrolled.
    async fn record_hello(&self, server_id: ServerId, hello: AgentHello) -> Result<bool, String> {
        let (done, outcome) = oneshot::channel();
        self.inner
            .hellos
            .send(hellos::PendingHello {
                server_id,
                hello,
                done,
            })
            .await
            .map_err(|_| "the Hello writer has stopped".to_owned())?;
        outcome
            .await
            .map_err(|_| "the Hello writer has stopped".to_owned())?
    }

    fn hello(&self, server_id: ServerId) {
        lock(&self.inner.liveness).beat(server_id, now_ms(), None);
    }

    fn heartbeat(&self, server_id: ServerId, load: LoadReport) {
        lock(&self.inner.liveness).beat(server_id, now_ms(), Some(load));
    }

    /// Delivers an agent's result, only if that command was sent to this very server.
    fn command_result(&self, server_id: ServerId, result: CommandResult) {
        let Ok(id) = result.id.parse::<u64>() else {
            return;
        };
        let mut pending = lock(&self.inner.pending);
        match pending.get(&id) {
            Some(p) if p.server_id == server_id => {
                if let Some(p) = pending.remove(&id) {
                    let _ = p.reply.send(result);
                }
            }
            Some(_) => {
                tracing::warn!(
                    server_id = server_id.get(),
                    command = id,
                    "agent answered a command sent to another server; ignored"
                );
            }
            None => {}
        }
    }

    async fn enrolled(&self, server_id: ServerId, superseded: Vec<String>) {
        if !superseded.is_empty() {
            self.apply_revocation(server_id, superseded);
        }
        lock(&self.inner.liveness).enrolled(server_id);
    }

    // ----- background work -----

    async fn background(self) {
        let mut flush = tokio::time::interval(FLUSH_INTERVAL);
        let mut sweep = tokio::time::interval(Duration::from_millis(500));
        let mut reload = tokio::time::interval(REVOCATION_RELOAD);
        for timer in [&mut flush, &mut sweep, &mut reload] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                () = self.inner.shutdown.cancelled() => break,
                _ = flush.tick() => self.flush().await,
                _ = sweep.tick() => self.sweep(),
                _ = reload.tick() => self.reload_revocations().await,
            }
        }
        // Last state on the way out, so a restart starts from it.
        self.flush().await;
    }

    async fn flush(&self) {
        let batch = lock(&self.inner.liveness).take_dirty();
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.inner.store.save_agent_liveness(&batch).await {
            tracing::warn!(error = %e, rows = batch.len(), "could not persist heartbeats; will retry");
            lock(&self.inner.liveness).mark_dirty(&batch);
        }
    }

    fn sweep(&self) {
        let offline = lock(&self.inner.liveness).sweep(now_ms(), self.inner.thresholds);
        for server_id in offline {
            tracing::warn!(
                server_id = server_id.get(),
                "agent offline: no heartbeat within the TTL"
            );
            // A half-open connection would keep a dead session registered and swallow commands.
            self.close_session(server_id, CloseReason::Offline);
        }
    }

    async fn reload_revocations(&self) {
        match self.inner.store.revoked_certificate_serials().await {
            Ok(serials) => {
                let newly: Vec<(ServerId, String)> = {
                    let sessions = lock(&self.inner.sessions);
                    sessions
                        .iter()
                        .filter(|(_, s)| serials.contains(&s.serial) && !self.is_revoked(&s.serial))
                        .map(|(id, s)| (*id, s.serial.clone()))
                        .collect()
                };
                self.inner.revoked.extend(serials);
                for (server_id, serial) in newly {
                    self.apply_revocation(server_id, vec![serial]);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not reload revoked certificates"),
        }
    }
}
