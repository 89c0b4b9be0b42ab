//! `mpanel-agent enroll`: turns a one-time token into a key (generated here, never sent), a
//! certificate and the controller's CA, stored in the state directory.
//!
//! The token is `<secret>.<sha256 of the controller CA>`, so the very first connection already
//! verifies the controller: the TLS handshake fails unless its chain carries that CA.

use std::sync::Arc;
use std::time::Duration;

use mpanel_proto::v1::EnrollRequest;
use mpanel_proto::v1::agent_service_client::AgentServiceClient;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use crate::config::parse_controller_url;
use crate::state::{Enrollment, StateDir};
use crate::tls;

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(
        "enrollment token is malformed: expected <secret>.<CA fingerprint> as printed by the controller"
    )]
    MalformedToken,
    #[error("controller: {0}")]
    BadUrl(String),
    #[error("cannot reach the controller at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("the controller refused the enrollment: {0}")]
    Refused(String),
    #[error("the controller sent a CA that does not match the token's fingerprint")]
    CaMismatch,
    #[error("the controller's answer is unusable: {0}")]
    BadAnswer(String),
    #[error("key generation failed: {0}")]
    Key(String),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// Splits a token into its secret and the pinned CA fingerprint.
pub fn parse_token(token: &str) -> Result<(&str, String), EnrollError> {
    let (secret, fingerprint) = token
        .trim()
        .rsplit_once('.')
        .ok_or(EnrollError::MalformedToken)?;
    if secret.is_empty()
        || fingerprint.len() != 64
        || !fingerprint.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(EnrollError::MalformedToken);
    }
    Ok((secret, fingerprint.to_ascii_lowercase()))
}

/// Enrolls and stores the result; returns what was stored.
pub async fn enroll(
    controller: &str,
    token: &str,
    state: &StateDir,
) -> Result<Enrollment, EnrollError> {
    let (_, fingerprint) = parse_token(token)?;
    let (host, port) = parse_controller_url(controller).map_err(EnrollError::BadUrl)?;

    // The key is made here and only its CSR leaves the host.
    let key = rcgen::KeyPair::generate().map_err(|e| EnrollError::Key(e.to_string()))?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .and_then(|p| p.serialize_request(&key))
        .and_then(|csr| csr.pem())
        .map_err(|e| EnrollError::Key(e.to_string()))?;

    let config = Arc::new(tls::enrollment_config(&fingerprint));
    let channel = tls::connect(&host, port, config, Duration::from_secs(10))
        .await
        .map_err(|e| EnrollError::Unreachable {
            url: controller.to_owned(),
            detail: tls::error_chain(&e),
        })?;
    let mut client = AgentServiceClient::new(channel);
    let response = client
        .enroll(EnrollRequest {
            token: token.trim().to_owned(),
            csr_pem: csr,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        })
        .await
        .map_err(|status| {
            if matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::Unknown
            ) {
                EnrollError::Unreachable {
                    url: controller.to_owned(),
                    detail: tls::error_chain(&status),
                }
            } else {
                EnrollError::Refused(status.message().to_owned())
            }
        })?
        .into_inner();

    // The CA we keep must be the one the token pinned, not merely whatever the server says.
    let ca_der = CertificateDer::pem_slice_iter(response.ca_chain_pem.as_bytes())
        .next()
        .ok_or_else(|| EnrollError::BadAnswer("no CA certificate".into()))?
        .map_err(|e| EnrollError::BadAnswer(e.to_string()))?;
    if tls::fingerprint(&ca_der) != fingerprint {
        return Err(EnrollError::CaMismatch);
    }
    tls::certified_key(&response.certificate_pem, &key.serialize_pem())
        .map_err(|e| EnrollError::BadAnswer(e.to_string()))?;

    state.ensure()?;
    state.store_ca(&response.ca_chain_pem)?;
    state.store_identity(&key.serialize_pem(), &response.certificate_pem)?;
    let enrollment = Enrollment {
        server_id: response.server_id,
        controller: controller.trim().to_owned(),
        ca_fingerprint: fingerprint,
        enrolled_at_ms: crate::now_ms(),
    };
    state.store_enrollment(&enrollment)?;
    Ok(enrollment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_a_sha256_fingerprint() {
        let fp = "ab".repeat(32);
        let token = format!("mpe_secret.{fp}");
        assert_eq!(parse_token(&token).unwrap(), ("mpe_secret", fp));
        for bad in [
            "",
            "nodot",
            "x.abc",
            &format!(".{}", "a".repeat(64)),
            &format!("s.{}", "g".repeat(64)),
        ] {
            assert!(
                matches!(parse_token(bad), Err(EnrollError::MalformedToken)),
                "{bad}"
            );
        }
    }
}
