//! Admin credentials: what an admin's email and password must look like, and the argon2id
//! hashing of passwords. Hashing is deliberately slow (tens of milliseconds), so callers on the
//! async runtime go through [`verify_password_blocking`].

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest: hashing cost does not depend on it much, but an unbounded one is pointless.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// A deliverable-looking address (one `@`, a plain local part, a domain with a dot), trimmed
/// and lower-cased; the error says what is wrong with it.
pub fn email_address(raw: &str) -> Result<String, String> {
    let value = raw.trim().to_lowercase();
    if value.is_empty() || value.len() > 254 {
        return Err("must be an email address of at most 254 characters".into());
    }
    let Some((local, domain)) = value.split_once('@') else {
        return Err(format!("'{}' must contain @", shown(&value)));
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    if !local_ok {
        return Err(format!("'{}' is not a valid address", shown(&value)));
    }
    match mpanel_common::domain::DomainName::parse(domain) {
        Ok(d) if d.as_str().contains('.') => Ok(format!("{local}@{}", d.as_str())),
        Ok(_) => Err(format!(
            "'{}': the domain after @ must contain a dot",
            shown(&value)
        )),
        Err(e) => Err(format!("'{}': the domain after @ {e}", shown(&value))),
    }
}

fn shown(value: &str) -> String {
    value.chars().take(60).collect()
}

/// Refuses a password too short or too long to be a deliberate choice.
pub fn check_new_password(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(format!("must be at least {MIN_PASSWORD_CHARS} characters"));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(format!("must be at most {MAX_PASSWORD_CHARS} characters"));
    }
    Ok(())
}

/// The argon2id PHC string of `password`, with a fresh random salt.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

/// Whether `password` matches the PHC string `hash`; a malformed hash matches nothing.
pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// [`verify_password`] off the async runtime. With no hash (no such admin, or a disabled one)
/// the password is checked against a throwaway hash anyway, so the answer takes as long whether
/// the email exists or not; it is then always `false`.
pub async fn verify_password_blocking(password: String, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || match hash {
        Some(hash) => verify_password(&password, &hash),
        None => {
            let _ = verify_password(&password, throwaway_hash());
            false
        }
    })
    .await
    .unwrap_or(false)
}

fn throwaway_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let random = crate::crypto::new_token("").unwrap_or_default();
        hash_password(&random).unwrap_or_default()
    })
}

/// A one-time password for `admin create` without `--password-stdin`: 32 URL-safe characters
/// (192 bits).
pub fn generated_password() -> anyhow::Result<String> {
    let token =
        crate::crypto::new_token("").map_err(|e| anyhow::anyhow!("cannot make a password: {e}"))?;
    Ok(token.chars().take(32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_lower_cased_and_checked() {
        assert_eq!(
            email_address(" Ops@Example.COM ").unwrap(),
            "ops@example.com"
        );
        for bad in [
            "",
            "ops",
            "ops@",
            "@example.com",
            "ops@localhost",
            "a..b@example.com",
        ] {
            assert!(email_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(check_new_password("elevenchars").is_err());
        assert!(check_new_password("twelve chars").is_ok());
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("correct horse battery", "not a hash"));
    }
}
