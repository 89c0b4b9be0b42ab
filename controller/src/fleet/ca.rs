//! The controller's built-in certificate authority (rcgen). It is created on first start and
//! stored with its key sealed under `ENCRYPTION_KEY`; it signs the gRPC server certificate and
//! every agent certificate.
//!
//! Agent certificates are decided entirely here: whatever the CSR asks for (CA:TRUE, other
//! names, server-auth), only its public key is used. The subject, the SAN
//! `urn:mpanel:server:<id>`, client-auth-only usage, CA:FALSE, the lifetime and a random serial
//! are the controller's.

use std::time::Duration;

use aws_lc_rs::digest;
use mpanel_common::ids::ServerId;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use crate::crypto::Cipher;
use crate::store::{CaRecord, DynStore, NewCa};

/// The URI SAN prefix that names the server an agent certificate belongs to.
pub const SERVER_URI_PREFIX: &str = "urn:mpanel:server:";

/// Certificates are back-dated a little so an agent whose clock is slightly behind can use them.
const CLOCK_SKEW: Duration = Duration::from_secs(300);
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const SERVER_CERT_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("certificate signing request is invalid: {0}")]
    InvalidCsr(String),
    #[error("certificate authority: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("certificate authority key cannot be opened: {0}")]
    Key(#[from] crate::crypto::CryptoError),
    #[error("certificate authority: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("random source failed")]
    Random,
}

/// A certificate the CA issued, with what the store records about it.
#[derive(Debug, Clone)]
pub struct SignedCertificate {
    pub pem: String,
    pub der: CertificateDer<'static>,
    /// Lower-case hex, as `agent_certificates.serial` and the revocation set hold it.
    pub serial: String,
    pub not_before_ms: i64,
    pub not_after_ms: i64,
}

pub struct CertificateAuthority {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    fingerprint: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertificateAuthority(sha256 {})", self.fingerprint)
    }
}

/// Lower-case hex SHA-256 of a DER certificate: the CA fingerprint enrollment tokens carry.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, der).as_ref())
}

fn to_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn random_serial() -> Result<(SerialNumber, String), CaError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| CaError::Random)?;
    // A positive DER integer with no leading zero byte, so the hex form is canonical.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok((SerialNumber::from_slice(&bytes), hex::encode(bytes)))
}

impl CertificateAuthority {
    /// Loads the active CA, or creates and stores one on first start.
    pub async fn load_or_create(store: &DynStore, cipher: &Cipher) -> Result<Self, CaError> {
        if let Some(record) = store.active_certificate_authority().await? {
            return Self::from_record(&record, cipher);
        }
        let (cert_pem, key_pem, not_after) = Self::generate()?;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| CaError::InvalidCsr(e.to_string()))?;
        let record = store
            .insert_certificate_authority(&NewCa {
                cert_pem,
                key_encrypted: cipher.seal_str(&key_pem)?,
                fingerprint: fingerprint(&der),
                not_after,
            })
            .await?;
        tracing::info!(fingerprint = %record.fingerprint, "created the agents' certificate authority");
        Self::from_record(&record, cipher)
    }

    fn from_record(record: &CaRecord, cipher: &Cipher) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(&cipher.open_string(&record.key_encrypted)?)?;
        Self::from_pem(&record.cert_pem, key)
    }

    /// A CA from its certificate and key (tests use it to build a foreign CA).
    pub fn from_pem(cert_pem: &str, key: KeyPair) -> Result<Self, CaError> {
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| CaError::InvalidCsr(e.to_string()))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            fingerprint: fingerprint(&cert_der),
            cert_der,
            issuer,
        })
    }

    /// A fresh self-signed CA: (certificate PEM, key PEM, not_after ms).
    pub fn generate() -> Result<(String, String, i64), CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "mpanel agent CA");
        dn.push(DnType::OrganizationName, "mpanel");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + CA_LIFETIME;
        params.serial_number = Some(random_serial()?.0);
        let cert = params.self_signed(&key)?;
        Ok((cert.pem(), key.serialize_pem(), to_ms(params.not_after)))
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Signs an agent's CSR for `server_id`. Only the CSR's public key (and its proof of
    /// possession, checked by rcgen) is used; every extension it requests is discarded.
    pub fn sign_agent_csr(
        &self,
        csr_pem: &str,
        server_id: ServerId,
        lifetime: Duration,
    ) -> Result<SignedCertificate, CaError> {
        let mut request = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError::InvalidCsr(e.to_string()))?;
        let (serial, serial_hex) = random_serial()?;
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("mpanel-server-{server_id}"));
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(
            format!("{SERVER_URI_PREFIX}{server_id}").try_into()?,
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        // Back-dated for skew, but never by more than a tenth of the lifetime: agents renew at
        // two thirds of [not_before, not_after], and short test lifetimes must keep that point
        // in the future.
        params.not_before = now - CLOCK_SKEW.min(lifetime / 10);
        params.not_after = now + lifetime;
        params.serial_number = Some(serial);
        params.use_authority_key_identifier_extension = true;
        // Replace, never merge: the request's own parameters (is_ca, SANs, EKUs, custom
        // extensions) are attacker-controlled.
        request.params = params;
        let cert = request.signed_by(&self.issuer)?;
        Ok(SignedCertificate {
            pem: cert.pem(),
            der: cert.der().clone(),
            serial: serial_hex,
            not_before_ms: to_ms(request.params.not_before),
            not_after_ms: to_ms(request.params.not_after),
        })
    }

    /// A fresh key and certificate for the gRPC endpoint, valid for `names` (DNS names or IP
    /// addresses). The chain is [server, CA], so an agent that pins the CA by fingerprint finds
    /// it in the handshake itself.
    pub fn issue_server_identity(
        &self,
        names: &[String],
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "mpanel controller");
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + SERVER_CERT_LIFETIME;
        params.serial_number = Some(random_serial()?.0);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((vec![cert.der().clone(), self.cert_der.clone()], key_der))
    }
}

/// What the controller reads from a verified agent certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    pub server_id: ServerId,
    pub serial: String,
    pub not_after_ms: i64,
}

/// Lower-case hex serial of a DER certificate (as `SignedCertificate::serial`).
pub fn serial_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(hex::encode(cert.raw_serial()))
}

/// The server id (from the `urn:mpanel:server:<id>` SAN), serial and expiry of an agent
/// certificate; `None` when it names no server.
pub fn identity_of(der: &[u8]) -> Option<CertIdentity> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let id = san.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => uri.strip_prefix(SERVER_URI_PREFIX)?.parse::<i64>().ok(),
        _ => None,
    })?;
    Some(CertIdentity {
        server_id: ServerId::new(id),
        serial: hex::encode(cert.raw_serial()),
        not_after_ms: cert.validity().not_after.timestamp().saturating_mul(1000),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> CertificateAuthority {
        let (pem, key, _) = CertificateAuthority::generate().unwrap();
        CertificateAuthority::from_pem(&pem, KeyPair::from_pem(&key).unwrap()).unwrap()
    }

    #[test]
    fn agent_certificates_ignore_what_the_csr_asks_for() {
        let ca = ca();
        let key = KeyPair::generate().unwrap();
        let mut asked = CertificateParams::new(vec!["evil.example".to_owned()]).unwrap();
        asked.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        asked.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let csr = asked.serialize_request(&key).unwrap().pem().unwrap();
        let signed = ca
            .sign_agent_csr(&csr, ServerId::new(42), Duration::from_secs(3600))
            .unwrap();

        let (_, cert) = x509_parser::parse_x509_certificate(&signed.der).unwrap();
        assert!(!cert.is_ca());
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(!bc.value.ca);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let id = identity_of(&signed.der).unwrap();
        assert_eq!(id.server_id, ServerId::new(42));
        assert_eq!(id.serial, signed.serial);
        assert!(!format!("{:?}", cert.subject_alternative_name()).contains("evil"));
    }

    #[test]
    fn garbage_csrs_are_refused() {
        let err = ca().sign_agent_csr("not a csr", ServerId::new(1), Duration::from_secs(60));
        assert!(matches!(err, Err(CaError::InvalidCsr(_))));
    }
}
