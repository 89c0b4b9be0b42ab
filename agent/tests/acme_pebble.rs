//! The certificate command with the ACME provider against a real ACME CA: pebble and
//! pebble-challtestsrv (Debian's `pebble` package), the real cPanel driver and the cPanel
//! simulator serving the account's web root over HTTP for HTTP-01. The rate-limit case uses a
//! scripted ACME server, since pebble 2.4 cannot be made to rate-limit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mpanel_agent::acme::{AcmeError, AcmeIssuer, AcmeSettings, IssueRequest, split_chain};
use mpanel_agent::handler::{CommandHandler, Outcome, Reply};
use mpanel_agent::panel::{ControlPanel, PanelConfig, PanelKind, Secret, build_driver_with};
use mpanel_agent::panel_commands::PanelCommandHandler;
use mpanel_common::command::{
    AcmeOrder, Certificate, CertificateDone, CertificateProvider, Command, CreateAccount,
    IssuedCertificate, Waiting,
};
use mpanel_common::{DomainName, ServiceId};
use mpanel_e2e::pebble::{Pebble, PebbleOptions};
use mpanel_panelsim::{SimConfig, SimHandle, SimKind};
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::json;

const TOKEN: &str = "sim-token-acme-41c2";
const USERNAME: &str = "shopacme";
const DOMAIN: &str = "shop.example";

struct Rig {
    sim: SimHandle,
    pebble: Pebble,
    handler: PanelCommandHandler,
    state: tempfile::TempDir,
}

async fn rig(nonce_reject_percent: u8) -> Rig {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut config = SimConfig::new(SimKind::Cpanel, TOKEN);
    config.tls = true;
    config.web_root_http = true;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = mpanel_panelsim::start(config, listener).await.unwrap();
    let mut options = PebbleOptions::new(sim.addr().port());
    options.nonce_reject_percent = nonce_reject_percent;
    let pebble = Pebble::start(options).await.expect("start pebble");
    let driver: Arc<dyn ControlPanel> = build_driver_with(PanelConfig::new(
        PanelKind::Cpanel,
        &sim.base_url(),
        "root",
        Secret::new(TOKEN),
        true,
    ))
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut settings = AcmeSettings::new(pebble.directory_url.clone(), state.path());
    settings.ca_bundle = Some(pebble.ca_bundle());
    settings.dns_resolver = Some(pebble.dns_addr);
    settings.contact_email = Some("hostmaster@host.example".into());
    settings.poll_timeout = Duration::from_secs(60);
    let issuer = Arc::new(AcmeIssuer::new(settings).unwrap());
    let handler = PanelCommandHandler::new(driver).with_acme(issuer);
    let create = Command::CreateAccount(CreateAccount {
        service_id: ServiceId::new(41),
        username: USERNAME.into(),
        domain: DomainName::parse(DOMAIN).unwrap(),
        password: mpanel_common::Secret::new("Acct-Pass-9x7!".into()),
        package: "default".into(),
        contact_email: "owner@shop.example".into(),
        quota_mb: None,
        ip: None,
    });
    let created = handler.handle(create, "k").await;
    assert!(matches!(created, Outcome::Done(_)), "{created:?}");
    Rig {
        sim,
        pebble,
        handler,
        state,
    }
}

impl Rig {
    async fn ssl(&self, ip: &str) -> Outcome {
        let command = Command::Certificate(Certificate {
            username: USERNAME.into(),
            domain: DomainName::parse(DOMAIN).unwrap(),
            provider: CertificateProvider::Acme(AcmeOrder {
                ip: ip.parse().unwrap(),
                names: vec![],
            }),
        });
        self.handler.handle(command, "task:1:step:ssl").await
    }

    async fn issued(&self) -> IssuedCertificate {
        match self.ssl("127.0.0.1").await {
            Outcome::Done(Reply::Certificate(CertificateDone::AcmeIssued(issued))) => issued,
            other => panic!("issuance failed: {other:?}\n{}", self.pebble.log_tail()),
        }
    }

    /// The certificate the simulator holds for the domain.
    fn installed_certificate(&self) -> String {
        let state = self.sim.state_json();
        let certs = state["certificates"].as_array().unwrap();
        let cert = certs
            .iter()
            .find(|c| c["domain"] == DOMAIN)
            .unwrap_or_else(|| panic!("no certificate installed: {certs:?}"));
        assert_eq!(cert["hasKey"], true);
        assert_eq!(cert["hasCabundle"], true);
        cert["cert"].as_str().unwrap().to_owned()
    }

    fn account_files(&self) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(self.state.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("acme-account-"))
            .collect()
    }
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("a PEM certificate")
}

/// Verifies `leaf` for `name` as a TLS client would, trusting only pebble's root.
async fn assert_chains_to_pebble_root(pebble: &Pebble, leaf: &str, name: &str) {
    let root = pebble.root_pem().await.unwrap();
    let intermediate = pebble.intermediate_pem().await.unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(&root)).unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    verifier
        .verify_server_cert(
            &der(leaf),
            &[der(&intermediate)],
            &ServerName::try_from(name.to_owned()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .unwrap_or_else(|e| {
            panic!("the installed certificate does not chain to pebble's root: {e}")
        });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acme_certificate_from_pebble_is_installed_and_chains_to_its_root() {
    let r = rig(0).await;
    let data = r.issued().await;
    assert_eq!(data.names, [DOMAIN.to_owned(), format!("www.{DOMAIN}")]);
    assert!(data.issuer.contains("Pebble"), "{data:?}");
    let serial = &data.serial;
    assert!(!serial.is_empty() && serial.chars().all(|c| c.is_ascii_hexdigit()));
    let now = mpanel_agent::now_ms();
    assert!(
        data.not_before_ms <= now + 60_000 && data.not_after_ms > now,
        "{data:?}"
    );

    let leaf = r.installed_certificate();
    assert_eq!(
        split_chain(&leaf).len(),
        1,
        "the leaf alone is the certificate"
    );
    assert_chains_to_pebble_root(&r.pebble, &leaf, DOMAIN).await;
    assert_chains_to_pebble_root(&r.pebble, &leaf, &format!("www.{DOMAIN}")).await;
    // The challenge answers went through the panel into the account's web root.
    let state = r.sim.state_json();
    let files = state["webRootFiles"].as_array().unwrap();
    assert!(
        files.iter().any(|f| f["urlPath"]
            .as_str()
            .is_some_and(|p| p.starts_with("/.well-known/acme-challenge/"))),
        "{files:?}"
    );

    // The account was created once and kept, private to root.
    let accounts = r.account_files();
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&accounts[0])
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Again, with www now pointing elsewhere: the same account, authorisations the CA may
    // still hold valid are skipped, and www is left out instead of failing the site.
    r.pebble
        .add_a(&format!("www.{DOMAIN}"), &["192.0.2.99"])
        .await
        .unwrap();
    let again = r.issued().await;
    assert_eq!(again.names, [DOMAIN.to_owned()]);
    assert_ne!(again.serial, data.serial);
    assert_eq!(r.account_files(), accounts);
    assert_chains_to_pebble_root(&r.pebble, &r.installed_certificate(), DOMAIN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuance_succeeds_when_the_ca_rejects_half_the_nonces() {
    let r = rig(50).await;
    r.issued().await;
    assert_chains_to_pebble_root(&r.pebble, &r.installed_certificate(), DOMAIN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_not_pointing_here_waits_for_dns_without_any_acme_order() {
    let r = rig(0).await;
    // challtestsrv answers 127.0.0.1 for every name; this server is 192.0.2.10.
    let outcome = r.ssl("192.0.2.10").await;
    let Outcome::Waiting(Waiting::Dns { reason }) = outcome else {
        panic!("did not wait for DNS for a domain pointing elsewhere: {outcome:?}");
    };
    assert!(reason.contains("127.0.0.1"), "{reason}");
    assert!(reason.contains("192.0.2.10"), "{reason}");
    // Nothing reached the CA: no account was even created, and no challenge was written.
    assert!(r.account_files().is_empty());
    let state = r.sim.state_json();
    assert!(
        state["webRootFiles"].as_array().unwrap().is_empty(),
        "{state}"
    );
    assert!(state["certificates"].as_array().unwrap().is_empty());
}

/// A scripted ACME server: a directory, nonces, an account, and `rateLimited` for every order.
async fn rate_limiting_ca() -> SocketAddr {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let base = base.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let base = base.clone();
                    async move {
                        let response = hyper::Response::builder()
                            .header("Replay-Nonce", format!("nonce-{}", mpanel_agent::now_ms()));
                        let response = match req.uri().path() {
                            "/dir" => response.status(200).body(
                                json!({
                                    "newNonce": format!("{base}/nonce"),
                                    "newAccount": format!("{base}/account"),
                                    "newOrder": format!("{base}/order"),
                                    "revokeCert": format!("{base}/revoke"),
                                    "keyChange": format!("{base}/key-change"),
                                })
                                .to_string(),
                            ),
                            "/nonce" => response.status(200).body(String::new()),
                            "/account" => response
                                .status(201)
                                .header("Location", format!("{base}/account/1"))
                                .header("Content-Type", "application/json")
                                .body(json!({"status": "valid"}).to_string()),
                            _ => response
                                .status(429)
                                .header("Retry-After", "120")
                                .header("Content-Type", "application/problem+json")
                                .body(
                                    json!({
                                        "type": "urn:ietf:params:acme:error:rateLimited",
                                        "detail": "too many new orders recently",
                                        "status": 429,
                                    })
                                    .to_string(),
                                ),
                        };
                        Ok::<_, std::convert::Infallible>(response.unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_order_is_retryable_after_the_cas_retry_after() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = rate_limiting_ca().await;
    let mut config = SimConfig::new(SimKind::Cpanel, TOKEN);
    config.web_root_http = true;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = mpanel_panelsim::start(config, listener).await.unwrap();
    let driver = build_driver_with(PanelConfig::new(
        PanelKind::Cpanel,
        &sim.base_url(),
        "root",
        Secret::new(TOKEN),
        false,
    ))
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let issuer =
        AcmeIssuer::new(AcmeSettings::new(format!("http://{ca}/dir"), state.path())).unwrap();
    // `localhost` resolves to 127.0.0.1 through the system resolver, so the DNS check passes
    // and the order is what the CA refuses.
    let request = IssueRequest {
        username: USERNAME.into(),
        domain: "localhost".into(),
        ip: "127.0.0.1".parse().unwrap(),
        names: vec![],
    };
    let err = issuer.issue(driver.as_ref(), &request).await.unwrap_err();
    let AcmeError::RateLimited {
        detail,
        retry_after,
    } = &err
    else {
        panic!("not a rate limit: {err:?}");
    };
    assert!(detail.contains("too many new orders"), "{detail}");
    let wait = retry_after
        .expect("the Retry-After header is kept")
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(
        (Duration::from_secs(100)..=Duration::from_secs(120)).contains(&wait),
        "{wait:?}"
    );
    assert!(err.is_retryable());
    let message = err.to_string();
    assert!(message.contains("retry after 1"), "{message}");
}
