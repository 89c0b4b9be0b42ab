//! The gRPC endpoint's TLS: a rustls `ServerConfig` whose client verifier
//!
//! * accepts connections *without* a client certificate, because `Enroll` must work before the
//!   agent has one (every other RPC checks for the verified identity itself, see `grpc.rs`);
//! * verifies a presented certificate against the built-in CA (WebPKI: chain, validity,
//!   client-auth usage), so a foreign-CA or expired certificate fails the handshake;
//! * refuses revoked serials at handshake time, from an in-memory set the fleet keeps current.
//!
//! One port serves both, as the contract says (`GRPC_LISTEN`, "enrollment on the same port").

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};

use super::ca::serial_of;

/// Serials that must not connect. Read on every handshake, written on revocation.
#[derive(Debug, Default)]
pub struct RevokedSerials {
    serials: RwLock<HashSet<String>>,
}

impl RevokedSerials {
    pub fn contains(&self, serial: &str) -> bool {
        self.serials
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(serial)
    }

    pub fn extend(&self, serials: impl IntoIterator<Item = String>) {
        self.serials
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(serials);
    }

    pub fn replace(&self, serials: impl IntoIterator<Item = String>) {
        let set: HashSet<String> = serials.into_iter().collect();
        *self.serials.write().unwrap_or_else(|e| e.into_inner()) = set;
    }
}

#[derive(Debug)]
struct RevocationAwareVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: Arc<RevokedSerials>,
}

impl ClientCertVerifier for RevocationAwareVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        match serial_of(end_entity) {
            Some(serial) if !self.revoked.contains(&serial) => Ok(verified),
            Some(serial) => {
                tracing::warn!(serial, "refused a revoked agent certificate");
                Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
            }
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::BadEncoding,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The endpoint's TLS configuration (TLS 1.3 and 1.2, ALPN h2).
pub fn server_config(
    ca_der: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    revoked: Arc<RevokedSerials>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(ca_der)?;
    let inner = WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let verifier = Arc::new(RevocationAwareVerifier { inner, revoked });
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}
