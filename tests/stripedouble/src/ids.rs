//! Object ids in Stripe's style: a type prefix and random letters and digits
//! (`cus_` + 14, `pi_`/`ch_`/`evt_`... + 24, `cs_test_` + 58), and the clock.

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `prefix` followed by `len` random characters from `[0-9A-Za-z]`.
pub(crate) fn new_id(prefix: &str, len: usize) -> String {
    let mut bytes = vec![0u8; len];
    // Ids only need to be unique within one process; the clock-and-counter fallback keeps them
    // unique if the system's randomness is unavailable.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let seed = COUNTER.fetch_add(1, Ordering::Relaxed) ^ now_nanos();
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (seed >> ((i % 8) * 8)) as u8 ^ i as u8;
        }
    }
    let mut id = String::with_capacity(prefix.len() + len);
    id.push_str(prefix);
    id.extend(
        bytes
            .iter()
            .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char),
    );
    id
}

/// Unix seconds now.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_prefix_the_length_and_differ() {
        let a = new_id("pi_", 24);
        let b = new_id("pi_", 24);
        assert!(a.starts_with("pi_"));
        assert_eq!(a.len(), 27);
        assert!(a[3..].bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
