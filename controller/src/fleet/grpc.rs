//! The agents' gRPC endpoint: our own accept loop (TLS handshake → identity → HTTP/2 → tonic
//! service) and the `AgentService` implementation.
//!
//! tonic's built-in TLS server cannot refuse revoked serials, cannot cut a live connection and
//! exposes peer certificates only per request; so the loop here does the handshake with
//! tokio-rustls, reads the *verified* peer certificate after it, and injects the identity
//! (server id from the SAN + serial) into every request of that connection. Handlers take the
//! identity from there and from nowhere else.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mpanel_common::ids::ServerId;
use mpanel_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use mpanel_proto::v1::{
    AgentMessage, ControllerMessage, EnrollRequest, EnrollResponse, RenewCertificateResponse,
    SessionClosed, Welcome, agent_message, controller_message,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tower::ServiceExt as _;

use super::ca::{CertIdentity, identity_of};
use super::{CloseReason, Fleet, TooOld};
use crate::crypto::token_hash;
use crate::store::{AgentHello, IssuedCertificate, StoreError, now_ms};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes in progress at once. A handshake costs the controller about a millisecond of
/// CPU, but it lasts one and a half round trips of the agent's network and as long as the agent
/// takes to answer: a limit sized to the CPU alone (64) let slow or distant agents hold every
/// slot while the CPU idled. Without any limit, a fleet dialling back after a restart makes
/// every handshake slower until they all time out together, and the agents back off further
/// and further. Connections past it wait their turn, in order of arrival, for up to
/// `HANDSHAKE_QUEUE_WAIT` (half the agent's connect timeout), at most `HANDSHAKES_WAITING` of
/// them; one arriving when that queue is full is closed at once, so its agent backs off with
/// jitter and dials again instead of waiting out a timeout.
const HANDSHAKES_IN_FLIGHT: usize = 512;
const HANDSHAKES_WAITING: usize = 4096;
const HANDSHAKE_QUEUE_WAIT: Duration = Duration::from_secs(5);
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Per-session outbound queue; commands beyond it wait (back-pressure) rather than buffer.
const OUTBOUND_QUEUE: usize = 16;

/// Admission of TLS handshakes: `admitted` counts those in flight and waiting, `in_flight`
/// those running (see `HANDSHAKES_IN_FLIGHT`).
struct Handshakes {
    admitted: Arc<tokio::sync::Semaphore>,
    in_flight: Arc<tokio::sync::Semaphore>,
}

/// The verified client certificate of the connection a request came on.
#[derive(Debug, Clone)]
struct PeerIdentity(CertIdentity);

pub(super) async fn serve(fleet: Fleet, listener: TcpListener, tls: Arc<rustls::ServerConfig>) {
    let acceptor = TlsAcceptor::from(tls);
    let handshakes = Handshakes {
        admitted: Arc::new(tokio::sync::Semaphore::new(
            HANDSHAKES_IN_FLIGHT + HANDSHAKES_WAITING,
        )),
        in_flight: Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_IN_FLIGHT)),
    };
    let service = AgentServiceServer::new(Endpoint {
        fleet: fleet.clone(),
    });
    let shutdown = fleet.inner.shutdown.clone();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "agent endpoint listening (gRPC over mTLS)");
    }
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(admitted) = handshakes.admitted.clone().try_acquire_owned() else {
            crate::telemetry::metrics::agent_handshake_shed();
            tracing::debug!(%peer, "too many TLS handshakes waiting; connection closed");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(connection(
            fleet.clone(),
            acceptor.clone(),
            service.clone(),
            tcp,
            admitted,
            handshakes.in_flight.clone(),
            peer,
        ));
    }
}

async fn connection(
    fleet: Fleet,
    acceptor: TlsAcceptor,
    service: AgentServiceServer<Endpoint>,
    tcp: TcpStream,
    admitted: tokio::sync::OwnedSemaphorePermit,
    in_flight: Arc<tokio::sync::Semaphore>,
    peer: std::net::SocketAddr,
) {
    let Ok(Ok(turn)) = tokio::time::timeout(HANDSHAKE_QUEUE_WAIT, in_flight.acquire_owned()).await
    else {
        crate::telemetry::metrics::agent_handshake_shed();
        tracing::debug!(%peer, "no TLS handshake slot in time; connection closed");
        return;
    };
    let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
    drop((turn, admitted));
    let tls = match accepted {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "agent TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "agent TLS handshake timed out");
            return;
        }
    };
    // Read after the handshake completed: only now is the certificate verified.
    let identity = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|leaf| identity_of(leaf));
    let serial = identity.as_ref().map(|i| i.serial.clone());
    let ext = identity.map(PeerIdentity);
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        if let Some(id) = &ext {
            req.extensions_mut().insert(id.clone());
        }
        service.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder.max_concurrent_streams(64);
    let conn = builder.serve_connection(TokioIo::new(tls), svc);
    tokio::pin!(conn);
    let mut revocations = fleet.revocation_watch();
    let shutdown = fleet.inner.shutdown.clone();
    let revoked = async {
        let Some(serial) = serial else {
            return std::future::pending().await;
        };
        loop {
            if fleet.is_revoked(&serial) {
                return;
            }
            if revocations.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    };
    tokio::select! {
        result = &mut conn => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "agent connection ended with an error");
            }
        }
        () = revoked => {
            // Give the session task a moment to deliver SessionClosed, then cut the connection.
            let _ = tokio::time::timeout(Duration::from_millis(200), &mut conn).await;
            tracing::info!(%peer, "closed the connection of a revoked certificate");
        }
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut conn).await;
        }
    }
}

struct Endpoint {
    fleet: Fleet,
}

fn token_refusal(message: &str) -> Status {
    Status::unauthenticated(format!(
        "{message}; create a new one with POST /api/servers/<id>/enrollment-token"
    ))
}

fn identity<T>(request: &Request<T>, fleet: &Fleet) -> Result<CertIdentity, Status> {
    let Some(PeerIdentity(id)) = request.extensions().get::<PeerIdentity>().cloned() else {
        return Err(Status::unauthenticated(
            "a client certificate is required: enrol this agent with a token first",
        ));
    };
    // The handshake checked both, but an HTTP/2 connection can outlive a revocation or the
    // certificate itself.
    if fleet.is_revoked(&id.serial) {
        return Err(Status::permission_denied(
            "certificate revoked: this agent needs a new enrollment token",
        ));
    }
    if id.not_after_ms <= now_ms() {
        return Err(Status::unauthenticated(
            "certificate expired: this agent needs a new enrollment token",
        ));
    }
    Ok(id)
}

#[tonic::async_trait]
impl AgentService for Endpoint {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let req = request.into_inner();
        let (secret, fingerprint) = req
            .token
            .trim()
            .split_once('.')
            .ok_or_else(|| token_refusal("enrollment token is malformed"))?;
        if fingerprint != self.fleet.ca_fingerprint() {
            return Err(token_refusal(
                "enrollment token was issued by another controller CA",
            ));
        }
        let store = self.fleet.store();
        let token = store
            .find_enrollment_token(&token_hash(secret))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .ok_or_else(|| token_refusal("enrollment token is unknown"))?;
        if token.used_at.is_some() {
            return Err(token_refusal("enrollment token was already used"));
        }
        if token.expires_at <= now_ms() {
            return Err(token_refusal("enrollment token has expired"));
        }
        let lifetime = self.fleet.inner.cert_lifetime;
        let signed = self
            .fleet
            .ca()
            .sign_agent_csr(&req.csr_pem, token.server_id, lifetime)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let issued = IssuedCertificate {
            server_id: token.server_id,
            serial: signed.serial.clone(),
            not_before: signed.not_before_ms,
            not_after: signed.not_after_ms,
        };
        let superseded = match store
            .complete_enrollment(token.id, &issued, &req.agent_version)
            .await
        {
            Ok(s) => s,
            Err(StoreError::Conflict(_)) => {
                return Err(token_refusal("enrollment token was already used"));
            }
            Err(e) => return Err(Status::internal(e.to_string())),
        };
        self.fleet.enrolled(token.server_id, superseded).await;
        tracing::info!(server_id = token.server_id.get(), serial = %signed.serial, "agent enrolled");
        Ok(Response::new(EnrollResponse {
            certificate_pem: signed.pem,
            ca_chain_pem: self.fleet.ca_pem().to_owned(),
            server_id: token.server_id.get(),
            not_after_unix_ms: signed.not_after_ms,
        }))
    }

    type ConnectStream = ReceiverStream<Result<ControllerMessage, Status>>;

    async fn connect(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let id = identity(&request, &self.fleet)?;
        let server_id = id.server_id;
        let mut inbound = request.into_inner();

        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("expected Hello as the first message"))??;
        let Some(AgentMessage {
            body: Some(agent_message::Body::Hello(hello)),
        }) = first
        else {
            return Err(Status::invalid_argument(
                "expected Hello as the first message",
            ));
        };
        if hello.server_id != 0 && hello.server_id != server_id.get() {
            tracing::warn!(
                server_id = server_id.get(),
                claimed = hello.server_id,
                "agent claimed another server's identity"
            );
            return Err(Status::permission_denied(format!(
                "this certificate belongs to server {server_id}; it cannot act as server {}",
                hello.server_id
            )));
        }
        let known = self
            .fleet
            .record_hello(
                server_id,
                AgentHello {
                    agent_version: hello.agent_version.clone(),
                    panel_kind: hello.panel_kind.clone(),
                    capabilities: hello.capabilities.clone(),
                },
            )
            .await
            .map_err(Status::internal)?;
        if !known {
            return Err(Status::permission_denied(format!(
                "server {server_id} is not enrolled (deleted?): this agent needs a new enrollment token"
            )));
        }
        if let Some(refusal) = too_old(&hello.agent_version, hello.protocol_version, now_ms()) {
            return Ok(Response::new(self.refuse_too_old(server_id, refusal)));
        }

        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let (session_id, cancel, reason) = self.fleet.register_session(
            server_id,
            id.serial.clone(),
            tx.clone(),
            hello.capabilities.clone(),
        );
        self.fleet.hello(server_id);
        let _ = tx
            .send(Ok(ControllerMessage {
                body: Some(controller_message::Body::Welcome(Welcome {
                    protocol_version: mpanel_proto::PROTOCOL_VERSION,
                    server_id: server_id.get(),
                    heartbeat_interval_secs: self.fleet.inner.heartbeat_secs,
                })),
            }))
            .await;
        tracing::info!(server_id = server_id.get(), version = %hello.agent_version, "agent session open");

        let fleet = self.fleet.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    () = cancel.cancelled() => {
                        let (code, text, status) = match reason.get() {
                            Some(CloseReason::Replaced) => ("replaced", "a newer session of this agent replaced this one", None),
                            Some(CloseReason::Revoked) => ("revoked", "certificate revoked: this agent needs a new enrollment token",
                                Some(Status::permission_denied("certificate revoked: this agent needs a new enrollment token"))),
                            Some(CloseReason::Offline) => ("offline", "no heartbeat within the TTL", None),
                            None => ("shutdown", "the controller is shutting down", None),
                        };
                        let _ = tx.try_send(Ok(ControllerMessage {
                            body: Some(controller_message::Body::Closed(SessionClosed {
                                reason: text.to_owned(),
                                code: code.to_owned(),
                            })),
                        }));
                        if let Some(status) = status {
                            let _ = tx.try_send(Err(status));
                        }
                        break;
                    }
                    message = inbound.message() => message,
                };
                match message {
                    Ok(Some(AgentMessage { body: Some(body) })) => {
                        handle(&fleet, &id, &tx, body).await;
                    }
                    Ok(Some(AgentMessage { body: None })) => {}
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(server_id = server_id.get(), error = %e, "agent stream error");
                        break;
                    }
                }
            }
            fleet.session_ended(server_id, session_id);
            tracing::info!(server_id = server_id.get(), "agent session closed");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The machine code of the `SessionClosed` that refuses an agent speaking an older protocol.
pub const AGENT_TOO_OLD: &str = "agent_too_old";

/// Whether an agent announcing `protocol_version` must be refused: the command messages changed
/// incompatibly at [`mpanel_proto::MIN_AGENT_PROTOCOL_VERSION`], and an older agent could
/// neither read a command nor answer one.
fn too_old(agent_version: &str, protocol_version: u32, now_ms: i64) -> Option<TooOld> {
    (protocol_version < mpanel_proto::MIN_AGENT_PROTOCOL_VERSION).then(|| TooOld {
        agent_version: agent_version.to_owned(),
        protocol_version,
        required_protocol_version: mpanel_proto::MIN_AGENT_PROTOCOL_VERSION,
        refused_at_ms: now_ms,
    })
}

impl Endpoint {
    /// Answers the Hello of a too-old agent with one `SessionClosed` and ends the stream; no
    /// session is registered, so no command can reach it.
    fn refuse_too_old(
        &self,
        server_id: ServerId,
        refusal: TooOld,
    ) -> ReceiverStream<Result<ControllerMessage, Status>> {
        let reason = refusal.reason();
        tracing::warn!(
            server_id = server_id.get(),
            agent_version = %refusal.agent_version,
            agent_protocol = refusal.protocol_version,
            needed_protocol = refusal.required_protocol_version,
            "refused an agent too old for this controller: upgrade mpanel-agent on this server"
        );
        self.fleet.refused_too_old(server_id, refusal);
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(Ok(ControllerMessage {
            body: Some(controller_message::Body::Closed(SessionClosed {
                reason,
                code: AGENT_TOO_OLD.to_owned(),
            })),
        }));
        ReceiverStream::new(rx)
    }
}

async fn handle(
    fleet: &Fleet,
    id: &CertIdentity,
    tx: &mpsc::Sender<Result<ControllerMessage, Status>>,
    body: agent_message::Body,
) {
    let server_id: ServerId = id.server_id;
    match body {
        agent_message::Body::Heartbeat(beat) => fleet.heartbeat(server_id, (&beat).into()),
        agent_message::Body::CommandResult(result) => fleet.command_result(server_id, result),
        agent_message::Body::Hello(_) => {}
        agent_message::Body::RenewCertificate(req) => {
            // Signed for the identity of this connection, whatever the CSR says.
            let signed =
                match fleet
                    .ca()
                    .sign_agent_csr(&req.csr_pem, server_id, fleet.inner.cert_lifetime)
                {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(server_id = server_id.get(), error = %e, "renewal refused");
                        return;
                    }
                };
            let issued = IssuedCertificate {
                server_id,
                serial: signed.serial.clone(),
                not_before: signed.not_before_ms,
                not_after: signed.not_after_ms,
            };
            if let Err(e) = fleet.store().record_renewed_certificate(&issued).await {
                tracing::warn!(server_id = server_id.get(), error = %e, "could not record a renewed certificate");
                return;
            }
            tracing::info!(server_id = server_id.get(), serial = %signed.serial, "agent certificate renewed");
            let _ = tx
                .send(Ok(ControllerMessage {
                    body: Some(controller_message::Body::Certificate(
                        RenewCertificateResponse {
                            certificate_pem: signed.pem,
                            ca_chain_pem: fleet.ca_pem().to_owned(),
                            not_after_unix_ms: signed.not_after_ms,
                        },
                    )),
                }))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_older_than_the_needed_protocol_are_refused_with_a_clear_reason() {
        let needed = mpanel_proto::MIN_AGENT_PROTOCOL_VERSION;
        assert_eq!(too_old("0.2.0", needed, 1), None);
        assert_eq!(too_old("0.3.0", needed + 1, 1), None);
        let refusal = too_old("0.1.0", needed - 1, 7).expect("refused");
        assert_eq!(refusal.required_protocol_version, needed);
        assert_eq!(refusal.refused_at_ms, 7);
        let reason = refusal.reason();
        assert!(reason.contains("agent 0.1.0"), "{reason}");
        assert!(
            reason.contains(&format!("protocol {}", needed - 1)),
            "{reason}"
        );
        assert!(reason.contains("upgrade mpanel-agent"), "{reason}");
    }
}
