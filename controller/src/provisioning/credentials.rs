//! Generated passwords for panel accounts, mailboxes and databases.
//!
//! 20 characters from letters, digits and `-_.`: about 118 bits, and only characters every
//! panel (cPanel, Plesk, DirectAdmin) and MySQL accept without quoting trouble. Each class
//! appears at least once, because panels with a password-strength policy refuse otherwise.

const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const DIGITS: &[u8] = b"23456789";
const SYMBOLS: &[u8] = b"-_.";
pub const PASSWORD_LEN: usize = 20;

#[derive(Debug, thiserror::Error)]
#[error("the system random source failed")]
pub struct RandomError;

/// A uniformly random index below `n`, by rejection sampling (no modulo bias).
fn random_below(n: usize) -> Result<usize, RandomError> {
    let n = u32::try_from(n).map_err(|_| RandomError)?;
    let zone = u32::MAX - (u32::MAX % n);
    loop {
        let mut bytes = [0u8; 4];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| RandomError)?;
        let v = u32::from_le_bytes(bytes);
        if v < zone {
            return Ok((v % n) as usize);
        }
    }
}

pub fn generate_password() -> Result<String, RandomError> {
    let all: Vec<u8> = [LOWER, UPPER, DIGITS, SYMBOLS].concat();
    let mut chars: Vec<u8> = Vec::with_capacity(PASSWORD_LEN);
    for class in [LOWER, UPPER, DIGITS, SYMBOLS] {
        chars.push(class[random_below(class.len())?]);
    }
    while chars.len() < PASSWORD_LEN {
        chars.push(all[random_below(all.len())?]);
    }
    // Shuffle so the guaranteed classes are not always first (Fisher–Yates).
    for i in (1..chars.len()).rev() {
        chars.swap(i, random_below(i + 1)?);
    }
    // Panels dislike a leading symbol; swap one in from the letters if needed.
    if SYMBOLS.contains(&chars[0])
        && let Some(pos) = chars.iter().position(|c| c.is_ascii_alphabetic())
    {
        chars.swap(0, pos);
    }
    String::from_utf8(chars).map_err(|_| RandomError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_varied_and_panel_safe() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let p = generate_password().unwrap();
            assert_eq!(p.len(), PASSWORD_LEN);
            assert!(p.bytes().any(|c| c.is_ascii_lowercase()), "{p}");
            assert!(p.bytes().any(|c| c.is_ascii_uppercase()), "{p}");
            assert!(p.bytes().any(|c| c.is_ascii_digit()), "{p}");
            assert!(p.bytes().any(|c| SYMBOLS.contains(&c)), "{p}");
            assert!(
                p.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || SYMBOLS.contains(&c)),
                "{p}"
            );
            assert!(!SYMBOLS.contains(&p.as_bytes()[0]), "{p}");
            assert!(
                seen.insert(p),
                "a repeated password means a broken random source"
            );
        }
    }
}
