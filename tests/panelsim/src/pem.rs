//! PEM sanity checks for certificate installs (no X.509 parsing: the simulator checks shape,
//! not trust).

use base64::Engine as _;

/// Whether `pem` holds at least one PEM block of `label` with a base64 body.
pub(crate) fn has_pem_block(pem: &str, label: &str) -> bool {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let Some(start) = pem.find(&begin) else {
        return false;
    };
    let rest = &pem[start + begin.len()..];
    let Some(stop) = rest.find(&end) else {
        return false;
    };
    let body: String = rest[..stop].split_whitespace().collect();
    !body.is_empty()
        && base64::engine::general_purpose::STANDARD
            .decode(body)
            .is_ok()
}

/// A private key in any of the usual PEM labels.
pub(crate) fn has_private_key(pem: &str) -> bool {
    ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"]
        .iter()
        .any(|l| has_pem_block(pem, l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_are_recognised() {
        let cert = "-----BEGIN CERTIFICATE-----\nTUlJQg==\n-----END CERTIFICATE-----\n";
        assert!(has_pem_block(cert, "CERTIFICATE"));
        assert!(!has_pem_block("garbage", "CERTIFICATE"));
        assert!(!has_pem_block(
            "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----",
            "CERTIFICATE"
        ));
        assert!(has_private_key(
            "-----BEGIN EC PRIVATE KEY-----\nTUlJQg==\n-----END EC PRIVATE KEY-----"
        ));
    }
}
