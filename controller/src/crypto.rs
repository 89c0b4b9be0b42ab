//! Secrets at rest and random credentials.
//!
//! Sealed values are `v1:<key id>:<base64(nonce || ciphertext || tag)>` under AES-256-GCM. The key
//! id (first 8 hex digits of SHA-256 of the key) lets a rotated key set open old values: the
//! current key seals, the previous keys only open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::config::EncryptionKeys;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value uses key {0}, which is not configured")]
    UnknownKey(String),
    #[error("sealed value failed authentication")]
    Authentication,
    #[error("the system random source failed")]
    Random,
}

struct Key {
    id: String,
    key: LessSafeKey,
}

/// Seals and opens secrets with the configured keys. Cheap to share behind an `Arc`.
pub struct Cipher {
    current: Key,
    previous: Vec<Key>,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cipher(key id {})", self.current.id)
    }
}

fn make_key(bytes: &[u8; 32]) -> Key {
    let id = hex::encode(&digest::digest(&digest::SHA256, bytes).as_ref()[..4]);
    // A 32-byte key is always accepted by AES-256-GCM.
    let unbound = UnboundKey::new(&AES_256_GCM, bytes).expect("32-byte AES-256 key");
    Key {
        id,
        key: LessSafeKey::new(unbound),
    }
}

impl Cipher {
    pub fn new(keys: &EncryptionKeys) -> Self {
        Cipher {
            current: make_key(&keys.current),
            previous: keys.previous.iter().map(make_key).collect(),
        }
    }

    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    pub fn seal(&self, plaintext: &[u8]) -> Result<String, CryptoError> {
        let mut nonce_bytes = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce_bytes).map_err(|_| CryptoError::Random)?;
        let mut buffer = plaintext.to_vec();
        self.current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(self.current.id.as_bytes()),
                &mut buffer,
            )
            .map_err(|_| CryptoError::Random)?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buffer);
        Ok(format!("v1:{}:{}", self.current.id, STANDARD.encode(out)))
    }

    pub fn seal_str(&self, plaintext: &str) -> Result<String, CryptoError> {
        self.seal(plaintext.as_bytes())
    }

    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, CryptoError> {
        let mut parts = sealed.splitn(3, ':');
        let (Some("v1"), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CryptoError::Malformed);
        };
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == key_id)
            .ok_or_else(|| CryptoError::UnknownKey(key_id.to_owned()))?;
        let raw = STANDARD.decode(body).map_err(|_| CryptoError::Malformed)?;
        if raw.len() < NONCE_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Malformed)?;
        let mut buffer = ciphertext.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(key.id.as_bytes()), &mut buffer)
            .map_err(|_| CryptoError::Authentication)?;
        Ok(plain.to_vec())
    }

    pub fn open_string(&self, sealed: &str) -> Result<String, CryptoError> {
        String::from_utf8(self.open(sealed)?).map_err(|_| CryptoError::Malformed)
    }
}

/// Lower-case hex SHA-256, used to store bearer and enrollment tokens: they are long random
/// strings, so a fast hash is enough and lets the lookup be an index probe.
pub fn token_hash(token: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, token.as_bytes()).as_ref())
}

/// A new random bearer token with a recognisable prefix (`mpa_` for admin tokens, ...).
pub fn new_token(prefix: &str) -> Result<String, CryptoError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| CryptoError::Random)?;
    Ok(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(current: u8, previous: &[u8]) -> EncryptionKeys {
        EncryptionKeys {
            current: [current; 32],
            previous: previous.iter().map(|b| [*b; 32]).collect(),
        }
    }

    #[test]
    fn sealed_values_open_to_the_plaintext_and_hide_it() {
        let cipher = Cipher::new(&keys(1, &[]));
        let sealed = cipher.seal_str("hunter2-password").unwrap();
        assert!(!sealed.contains("hunter2"));
        assert!(sealed.starts_with(&format!("v1:{}:", cipher.key_id())));
        assert_eq!(cipher.open_string(&sealed).unwrap(), "hunter2-password");
        assert_ne!(
            sealed,
            cipher.seal_str("hunter2-password").unwrap(),
            "nonces must differ"
        );
    }

    #[test]
    fn tampered_values_fail_authentication() {
        let cipher = Cipher::new(&keys(1, &[]));
        let sealed = cipher.seal_str("secret").unwrap();
        let (head, body) = sealed.rsplit_once(':').unwrap();
        let mut raw = STANDARD.decode(body).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let tampered = format!("{head}:{}", STANDARD.encode(raw));
        assert!(matches!(
            cipher.open(&tampered),
            Err(CryptoError::Authentication)
        ));
        assert!(matches!(
            cipher.open("garbage"),
            Err(CryptoError::Malformed)
        ));
    }

    #[test]
    fn rotated_keys_still_open_old_values_but_seal_with_the_new_key() {
        let old = Cipher::new(&keys(1, &[]));
        let sealed_old = old.seal_str("legacy").unwrap();
        let rotated = Cipher::new(&keys(2, &[1]));
        assert_eq!(rotated.open_string(&sealed_old).unwrap(), "legacy");
        assert_ne!(rotated.key_id(), old.key_id());
        let without_old = Cipher::new(&keys(2, &[]));
        assert!(matches!(
            without_old.open(&sealed_old),
            Err(CryptoError::UnknownKey(_))
        ));
    }

    #[test]
    fn tokens_are_long_random_and_prefixed() {
        let a = new_token("mpa_").unwrap();
        let b = new_token("mpa_").unwrap();
        assert!(a.starts_with("mpa_") && a.len() > 40);
        assert_ne!(a, b);
        assert_eq!(token_hash(&a), token_hash(&a));
        assert_ne!(token_hash(&a), token_hash(&b));
        assert_eq!(token_hash(&a).len(), 64);
    }
}
