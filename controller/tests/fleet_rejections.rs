//! The rejection matrix of the agents' endpoint, one test per case, over real TLS on loopback.

mod fleet_support;

use std::sync::Arc;
use std::time::Duration;

use fleet_support::*;
use mpanel_agent::enroll::{EnrollError, enroll};
use mpanel_agent::state::StateDir;
use mpanel_agent::tls;
use mpanel_common::ids::ServerId;
use mpanel_proto::v1::agent_service_client::AgentServiceClient;
use mpanel_proto::v1::{AgentMessage, EnrollRequest, Hello, agent_message, controller_message};
use rustls::pki_types::pem::PemObject as _;
use tokio_stream::wrappers::ReceiverStream;

fn hello(server_id: i64) -> AgentMessage {
    hello_speaking(server_id, mpanel_proto::PROTOCOL_VERSION)
}

fn hello_speaking(server_id: i64, protocol_version: u32) -> AgentMessage {
    AgentMessage {
        body: Some(agent_message::Body::Hello(Hello {
            protocol_version,
            agent_version: "0.0.9-test".into(),
            panel_kind: "cpanel".into(),
            capabilities: vec![],
            server_id,
        })),
    }
}

/// Opens Connect with the given TLS config and Hello; returns the gRPC or transport error text,
/// or `Ok` if the controller accepted the session.
async fn try_connect(
    c: &Controller,
    config: rustls::ClientConfig,
    claim: i64,
) -> Result<(), String> {
    let config = Arc::new(config);
    match connect_once(c, config.clone(), claim).await {
        Ok(()) => Ok(()),
        Err(text) => {
            let alert = tls::diagnose_handshake("127.0.0.1", c.grpc_port, config)
                .await
                .unwrap_or_default();
            Err(format!("{text} / {alert}"))
        }
    }
}

async fn connect_once(
    c: &Controller,
    config: Arc<rustls::ClientConfig>,
    claim: i64,
) -> Result<(), String> {
    let channel = tls::connect("127.0.0.1", c.grpc_port, config, Duration::from_secs(5))
        .await
        .map_err(|e| tls::error_chain(&e))?;
    let mut client = AgentServiceClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(hello(claim)).await.unwrap();
    let response = client
        .connect(ReceiverStream::new(rx))
        .await
        .map_err(|s| format!("{:?}: {} / {}", s.code(), s.message(), tls::error_chain(&s)))?;
    let mut stream = response.into_inner();
    // The first message is the Welcome; an error here is a refusal after the headers.
    match stream.message().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("stream ended".into()),
        Err(s) => Err(format!(
            "{:?}: {} / {}",
            s.code(),
            s.message(),
            tls::error_chain(&s)
        )),
    }
}

fn session_config(state: &StateDir) -> rustls::ClientConfig {
    let key = tls::certified_key(&state.read_cert().unwrap(), &state.read_key().unwrap()).unwrap();
    tls::session_config(&state.read_ca().unwrap(), tls::SwappableIdentity::new(key)).unwrap()
}

fn csr(is_ca: bool) -> (rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["evil.example".to_owned()]).unwrap();
    if is_ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    (key, pem)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_rejects_a_session_without_a_client_certificate() {
    let c = Controller::start(&[]).await;
    let (_id, _dir, state) = enrolled_agent(&c, "a.example.net").await;
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        rustls::pki_types::CertificateDer::pem_slice_iter(state.read_ca().unwrap().as_bytes())
    {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let err = try_connect(&c, config, 0).await.unwrap_err();
    assert!(
        err.contains("Unauthenticated") && err.contains("client certificate is required"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_rejects_a_certificate_from_another_ca() {
    let c = Controller::start(&[]).await;
    let (id, _dir, state) = enrolled_agent(&c, "a.example.net").await;
    let (pem, key, _) = mpanel_controller::fleet::CertificateAuthority::generate().unwrap();
    let foreign = mpanel_controller::fleet::CertificateAuthority::from_pem(
        &pem,
        rcgen::KeyPair::from_pem(&key).unwrap(),
    )
    .unwrap();
    let (agent_key, request) = csr(false);
    let signed = foreign
        .sign_agent_csr(&request, ServerId::new(id), Duration::from_secs(3600))
        .unwrap();
    let identity = tls::certified_key(&signed.pem, &agent_key.serialize_pem()).unwrap();
    let config = tls::session_config(
        &state.read_ca().unwrap(),
        tls::SwappableIdentity::new(identity),
    )
    .unwrap();
    let err = try_connect(&c, config, id).await.unwrap_err();
    assert!(
        err.to_lowercase().contains("unknownca")
            || err.contains("BadCertificate")
            || err.contains("alert"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_rejects_an_expired_certificate() {
    let c = Controller::start(&[("AGENT_CERT_LIFETIME_SECS", "1")]).await;
    let (id, _dir, state) = enrolled_agent(&c, "a.example.net").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let err = try_connect(&c, session_config(&state), id)
        .await
        .unwrap_err();
    assert!(
        err.contains("CertificateExpired") || err.to_lowercase().contains("expired"),
        "{err}"
    );
    // The real agent does not even try; it says it needs a new token.
    let agent = start_agent(&c.grpc_url(), &state);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while state.status().is_none_or(|s| s.state != "needs_enrollment") {
        assert!(std::time::Instant::now() < deadline, "{:?}", state.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        state
            .status()
            .unwrap()
            .detail
            .contains("needs a new enrollment token")
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_rejects_a_revoked_certificate_at_the_handshake() {
    let c = Controller::start(&[]).await;
    let (id, _dir, state) = enrolled_agent(&c, "a.example.net").await;
    try_connect(&c, session_config(&state), id)
        .await
        .expect("accepted before revocation");
    let (status, _) = c
        .request(
            reqwest::Method::POST,
            &format!("/api/servers/{id}/revoke-certificate"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let err = try_connect(&c, session_config(&state), id)
        .await
        .unwrap_err();
    assert!(
        err.contains("CertificateRevoked") || err.contains("revoked"),
        "{err}"
    );
    // Also after a controller restart (the revoked set is loaded from the store).
    let mut c = c;
    c.restart().await;
    let err = try_connect(&c, session_config(&state), id)
        .await
        .unwrap_err();
    assert!(
        err.contains("CertificateRevoked") || err.contains("revoked"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_refuses_a_reused_enrollment_token() {
    let c = Controller::start(&[]).await;
    let id = c.create_server("a.example.net").await;
    let token = c.enrollment_token(id).await;
    let (_d1, s1) = state_dir();
    enroll(&c.grpc_url(), &token, &s1).await.unwrap();
    let (_d2, s2) = state_dir();
    let err = enroll(&c.grpc_url(), &token, &s2).await.unwrap_err();
    assert!(
        matches!(&err, EnrollError::Refused(m) if m.contains("already used")),
        "{err}"
    );
    assert!(s2.read_cert().is_err(), "nothing stored on refusal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_refuses_an_expired_or_unknown_enrollment_token() {
    let c = Controller::start(&[]).await;
    let id = c.create_server("a.example.net").await;
    let token = c.enrollment_token(id).await;
    c.sql("UPDATE enrollment_tokens SET expires_at = 1").await;
    let (_d, s) = state_dir();
    let err = enroll(&c.grpc_url(), &token, &s).await.unwrap_err();
    assert!(
        matches!(&err, EnrollError::Refused(m) if m.contains("expired")),
        "{err}"
    );

    let fingerprint = token.rsplit_once('.').unwrap().1;
    let unknown = format!("mpe_nosuchtoken.{fingerprint}");
    let err = enroll(&c.grpc_url(), &unknown, &s).await.unwrap_err();
    assert!(
        matches!(&err, EnrollError::Refused(m) if m.contains("unknown")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_enrollment_refuses_a_controller_with_the_wrong_ca_fingerprint() {
    let c = Controller::start(&[]).await;
    let id = c.create_server("a.example.net").await;
    let token = c.enrollment_token(id).await;
    let (secret, _) = token.rsplit_once('.').unwrap();
    let wrong = format!("{secret}.{}", "0".repeat(64));
    let (_d, s) = state_dir();
    let err = enroll(&c.grpc_url(), &wrong, &s).await.unwrap_err();
    assert!(
        err.to_string().contains("does not match the fingerprint"),
        "{err}"
    );
    // The token was never presented to an unverified server, so it still works.
    enroll(&c.grpc_url(), &token, &s).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_csr_asking_for_ca_true_yields_a_non_ca_client_certificate() {
    let c = Controller::start(&[]).await;
    let id = c.create_server("a.example.net").await;
    let token = c.enrollment_token(id).await;
    let fingerprint = token.rsplit_once('.').unwrap().1.to_owned();
    let channel = tls::connect(
        "127.0.0.1",
        c.grpc_port,
        Arc::new(tls::enrollment_config(&fingerprint)),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let (_key, request) = csr(true);
    let response = AgentServiceClient::new(channel)
        .enroll(EnrollRequest {
            token,
            csr_pem: request,
            agent_version: "0.0.9-test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let der =
        rustls::pki_types::CertificateDer::from_pem_slice(response.certificate_pem.as_bytes())
            .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert!(!cert.is_ca());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    let san = format!(
        "{:?}",
        cert.subject_alternative_name().unwrap().unwrap().value
    );
    assert!(
        san.contains(&format!("urn:mpanel:server:{id}")) && !san.contains("evil"),
        "{san}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_certificate_for_server_a_cannot_act_as_server_b() {
    let c = Controller::start(&[]).await;
    let (a, _da, state_a) = enrolled_agent(&c, "a.example.net").await;
    let (b, _db, _state_b) = enrolled_agent(&c, "b.example.net").await;
    let err = try_connect(&c, session_config(&state_a), b)
        .await
        .unwrap_err();
    assert!(
        err.contains("PermissionDenied") && err.contains("cannot act as server"),
        "{err}"
    );
    assert_eq!(c.agent(b).await["connected"], false);
    // As itself it is fine.
    try_connect(&c, session_config(&state_a), a).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_refuses_an_agent_of_the_previous_protocol_and_says_to_upgrade_it() {
    let c = Controller::start(&[]).await;
    let (id, _dir, state) = enrolled_agent(&c, "old.example.net").await;
    let previous = mpanel_proto::MIN_AGENT_PROTOCOL_VERSION - 1;

    let channel = tls::connect(
        "127.0.0.1",
        c.grpc_port,
        Arc::new(session_config(&state)),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let mut client = AgentServiceClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(hello_speaking(id, previous)).await.unwrap();
    let mut stream = client
        .connect(ReceiverStream::new(rx))
        .await
        .expect("the refusal is a message, not a transport error")
        .into_inner();
    let first = stream.message().await.unwrap().expect("a SessionClosed");
    let Some(controller_message::Body::Closed(closed)) = first.body else {
        panic!("expected SessionClosed, got {first:?}");
    };
    assert_eq!(closed.code, "agent_too_old");
    for needed in [
        "agent 0.0.9-test".to_owned(),
        format!("protocol {previous}"),
        format!(
            "needs protocol {}",
            mpanel_proto::MIN_AGENT_PROTOCOL_VERSION
        ),
        "upgrade mpanel-agent".to_owned(),
    ] {
        assert!(closed.reason.contains(&needed), "{}", closed.reason);
    }
    // Nothing else follows: no Welcome, no command can reach it.
    assert!(stream.message().await.unwrap_or(None).is_none());

    let a = c.agent(id).await;
    assert_eq!(a["connected"], false, "{a}");
    assert_eq!(a["upgradeRequired"], true, "{a}");
    let refusal = &a["refusedAsTooOld"];
    assert_eq!(refusal["agentVersion"], "0.0.9-test", "{a}");
    assert_eq!(refusal["protocolVersion"], previous, "{a}");
    assert_eq!(
        refusal["requiredProtocolVersion"],
        mpanel_proto::MIN_AGENT_PROTOCOL_VERSION,
        "{a}"
    );
    assert!(
        refusal["reason"]
            .as_str()
            .unwrap()
            .contains("upgrade mpanel-agent"),
        "{a}"
    );

    // The upgraded agent is accepted and the flag clears.
    try_connect(&c, session_config(&state), id).await.unwrap();
    let a = c.agent(id).await;
    assert_eq!(a["upgradeRequired"], false, "{a}");
    assert!(a["refusedAsTooOld"].is_null(), "{a}");
}
