//! What the agent reports about an issued certificate, read from its PEM: issuer, serial,
//! validity, and when to renew. Plain functions, no I/O.

use rustls::pki_types::pem::PemObject as _;
use x509_parser::prelude::{FromDer as _, X509Certificate};

/// The facts the controller records in `ssl_certificates`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    /// The issuer's distinguished name, RFC 4514 style (`CN=Pebble Intermediate CA 1d3d11`).
    pub issuer: String,
    /// The serial number as lowercase hex without separators.
    pub serial: String,
    /// Unix milliseconds.
    pub not_before_ms: i64,
    /// Unix milliseconds.
    pub not_after_ms: i64,
    /// The DNS names the certificate covers.
    pub names: Vec<String>,
}

/// The PEM blocks of a chain, leaf first, each re-emitted with its armour.
pub fn split_chain(chain_pem: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = chain_pem;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(end) = rest[start..].find(END) else {
            break;
        };
        let stop = start + end + END.len();
        blocks.push(format!("{}\n", &rest[start..stop]));
        rest = &rest[stop..];
    }
    blocks
}

/// Reads the facts of the first certificate in `pem`.
pub fn certificate_facts(pem: &str) -> Result<CertificateFacts, String> {
    let first = split_chain(pem)
        .into_iter()
        .next()
        .ok_or_else(|| "no PEM certificate".to_owned())?;
    let der = rustls::pki_types::CertificateDer::pem_slice_iter(first.as_bytes())
        .next()
        .ok_or_else(|| "no PEM certificate".to_owned())?
        .map_err(|e| format!("bad PEM certificate: {e}"))?;
    let (_, cert) =
        X509Certificate::from_der(&der).map_err(|e| format!("bad X.509 certificate: {e}"))?;
    let validity = cert.validity();
    let names = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(CertificateFacts {
        issuer: cert.issuer().to_string(),
        serial: hex::encode(cert.raw_serial())
            .trim_start_matches("00")
            .to_owned(),
        not_before_ms: validity.not_before.timestamp().saturating_mul(1000),
        not_after_ms: validity.not_after.timestamp().saturating_mul(1000),
        names,
    })
}

/// When to renew: the same rule as the agent's own certificate (`core::renewal_due_at`), two
/// thirds of the way through its life, as Let's Encrypt recommends when the CA offers no
/// renewal information (ARI).
pub fn renew_after_ms(not_before_ms: i64, not_after_ms: i64) -> i64 {
    crate::core::renewal_due_at(not_before_ms, not_after_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_at_two_thirds_of_the_lifetime() {
        let day = 86_400_000;
        assert_eq!(renew_after_ms(0, 90 * day), 60 * day);
        assert_eq!(renew_after_ms(10, 10), 10);
    }

    #[test]
    fn facts_come_from_the_leaf_of_a_chain() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["shop.example".into(), "www.shop.example".into()])
                .unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x0a, 0xbc]));
        let leaf = params.self_signed(&key).unwrap().pem();
        let chain = format!("{leaf}\n{leaf}");
        assert_eq!(split_chain(&chain).len(), 2);
        let facts = certificate_facts(&chain).unwrap();
        assert_eq!(facts.serial, "0abc");
        assert_eq!(facts.names, ["shop.example", "www.shop.example"]);
        assert!(facts.not_after_ms > facts.not_before_ms);
        assert!(facts.issuer.contains("CN="), "{}", facts.issuer);
    }
}
