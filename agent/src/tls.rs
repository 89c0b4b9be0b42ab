//! The agent's side of mutual TLS.
//!
//! * Enrollment: the agent has no CA yet, only the fingerprint in its token. [`PinnedCa`]
//!   accepts the controller only if the handshake's chain contains a CA certificate with that
//!   SHA-256 fingerprint and the server certificate verifies against it (WebPKI, name included).
//! * Sessions: the stored CA is the only root; the client certificate comes from
//!   [`SwappableIdentity`], which renewal replaces in place, so the next handshake uses the new
//!   certificate without rebuilding anything and the current session is untouched.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Lower-case hex SHA-256 of a DER certificate, as the controller computes it.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref())
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

#[derive(Debug)]
pub struct PinnedCa {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

impl PinnedCa {
    pub fn new(fingerprint: &str) -> Self {
        Self {
            fingerprint: fingerprint.to_ascii_lowercase(),
            provider: provider(),
        }
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| fingerprint(c) == self.fingerprint)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the controller's CA does not match the fingerprint in the enrollment token"
                        .into(),
                )
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The agent's client certificate, replaceable while connections use it.
#[derive(Debug)]
pub struct SwappableIdentity {
    current: RwLock<Arc<CertifiedKey>>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("private key: {0}")]
    Key(String),
}

/// Builds rustls' signing identity from PEM; refuses a key that does not match the certificate.
pub fn certified_key(cert_pem: &str, key_pem: &str) -> Result<CertifiedKey, IdentityError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| IdentityError::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(IdentityError::Certificate("no certificate in PEM".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| IdentityError::Key(e.to_string()))?;
    let ck = CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| IdentityError::Key(e.to_string()))?;
    Ok(ck)
}

impl SwappableIdentity {
    pub fn new(key: CertifiedKey) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::new(key)),
        })
    }

    pub fn swap(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ResolvesClientCert for SwappableIdentity {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// TLS for enrollment: no client certificate, controller pinned by fingerprint.
pub fn enrollment_config(ca_fingerprint: &str) -> rustls::ClientConfig {
    let mut config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa::new(ca_fingerprint)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

/// TLS for sessions: the stored CA as the only root, the swappable client certificate.
pub fn session_config(
    ca_pem: &str,
    identity: Arc<SwappableIdentity>,
) -> Result<rustls::ClientConfig, IdentityError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| IdentityError::Certificate(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| IdentityError::Certificate(e.to_string()))?;
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_cert_resolver(identity);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Opens one HTTP/2 channel over TLS to `host:port`. tonic is given a plain `http://` URI and
/// our connector, so the TLS configuration (pinning, swappable identity) is entirely ours.
pub async fn connect(
    host: &str,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    timeout: std::time::Duration,
) -> Result<Channel, tonic::transport::Error> {
    connect_observed(host, port, tls, timeout, &Arc::default()).await
}

/// [`connect`], setting `handshake_done` once our side of the TLS handshake has completed: only
/// then can a failure be the controller refusing our certificate. Before it, the controller
/// was down, unreachable or turned the connection away (too many handshakes at once).
pub async fn connect_observed(
    host: &str,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    timeout: std::time::Duration,
    handshake_done: &Arc<AtomicBool>,
) -> Result<Channel, tonic::transport::Error> {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let host = host.to_owned();
    let done = handshake_done.clone();
    let connector = tower::service_fn(move |_uri: Uri| {
        let tls = tls.clone();
        let host = host.clone();
        let done = done.clone();
        async move {
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(host)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await?;
            done.store(true, Ordering::Relaxed);
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }
    });
    Endpoint::from_shared(format!("http://{authority}"))?
        .connect_timeout(timeout)
        .http2_keep_alive_interval(std::time::Duration::from_secs(30))
        .keep_alive_timeout(std::time::Duration::from_secs(20))
        .connect_with_connector(connector)
        .await
}

/// The full chain of an error, one line: transport errors hide the TLS alert several levels down.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Why the controller refuses our TLS handshake, if it does. With TLS 1.3 the server judges the
/// client certificate after the client already considers the handshake done, so HTTP/2 only
/// sees "connection closed"; a bare handshake followed by one read surfaces the server's alert
/// (`CertificateRevoked`, `CertificateExpired`, `UnknownCA`...). Used only after a failure.
pub async fn diagnose_handshake(
    host: &str,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
) -> Option<String> {
    use tokio::io::AsyncReadExt as _;
    let probe = async {
        let tcp = TcpStream::connect((host, port)).await?;
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let mut stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await?;
        let mut byte = [0u8; 1];
        // The server speaks first in HTTP/2 (its SETTINGS frame), so an accepted handshake
        // yields data here, a refused one yields the alert.
        stream.read(&mut byte).await.map(|_| ())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(3), probe).await {
        Ok(Err(e)) => Some(error_chain(&e)),
        _ => None,
    }
}
