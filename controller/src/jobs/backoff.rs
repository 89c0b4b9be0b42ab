//! Retry delays: exponential from a base, capped, with ±25 % jitter so a burst of failures
//! (a panel outage) does not come back as a burst of retries.

/// `base × 2^(attempt−1)`, capped at `max_ms`, times a jitter in [0.75, 1.25].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base_ms: u64,
    pub max_ms: u64,
}

impl Backoff {
    /// The delay after `attempts` attempts begun, with a random jitter.
    pub fn delay_ms(&self, attempts: i32) -> u64 {
        let mut byte = [0u8; 1];
        let _ = aws_lc_rs::rand::fill(&mut byte);
        self.delay_with_jitter(attempts, 0.75 + f64::from(byte[0]) / 255.0 * 0.5)
    }

    /// The delay for a given `jitter` in [0.75, 1.25]; the cap holds after jitter too.
    pub fn delay_with_jitter(&self, attempts: i32, jitter: f64) -> u64 {
        let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(0);
        let delay = self
            .base_ms
            .max(1)
            .saturating_mul(1u64 << exp)
            .min(self.max_ms);
        ((delay as f64 * jitter) as u64).min(self.max_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_base_and_stops_at_the_cap() {
        let b = Backoff {
            base_ms: 2000,
            max_ms: 600_000,
        };
        assert_eq!(b.delay_with_jitter(1, 1.0), 2000);
        assert_eq!(b.delay_with_jitter(2, 1.0), 4000);
        assert_eq!(b.delay_with_jitter(5, 1.0), 32_000);
        assert_eq!(b.delay_with_jitter(12, 1.0), 600_000);
        assert_eq!(b.delay_with_jitter(1000, 1.25), 600_000);
        assert_eq!(b.delay_with_jitter(1, 0.75), 1500);
        assert_eq!(b.delay_with_jitter(0, 1.0), 2000);
        assert_eq!(b.delay_with_jitter(-3, 1.0), 2000);
    }

    #[test]
    fn jitter_stays_within_a_quarter_either_way() {
        let b = Backoff {
            base_ms: 1000,
            max_ms: 60_000,
        };
        for _ in 0..200 {
            let d = b.delay_ms(3);
            assert!((3000..=5000).contains(&d), "{d}");
        }
    }
}
