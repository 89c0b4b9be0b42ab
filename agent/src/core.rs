//! The agent's decisions, without I/O: reconnect backoff with jitter, when to renew a
//! certificate (the agent's own, and the sites' ACME ones), when to ask the panel for its health
//! again, and what a failed or closed session means (retry, or stop and ask for a new
//! enrollment token). How a panel's answer is classed (retry, permanent, auth, conflict) is
//! decided the same way, beside the drivers, in `panel::http`. Time and randomness come in as arguments, so every decision is tested
//! without a network or a clock. `session.rs` is the tokio shell that acts on them.

use std::time::Duration;

/// Exponential backoff with "equal jitter": the delay is uniformly drawn from
/// `[cap/2, cap]` where `cap = min(max, base * 2^attempt)`. Half the delay is guaranteed (no
/// hot loop), half is random (10,000 agents reconnecting after a controller restart spread
/// out instead of arriving together).
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            attempt: 0,
        }
    }

    /// The delay before the next attempt; `random_unit` is uniform in `[0, 1)`.
    pub fn next_delay(&mut self, random_unit: f64) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(20));
        let cap = self.base.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let unit = random_unit.clamp(0.0, 1.0);
        cap / 2 + cap.mul_f64(unit / 2.0)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(500), Duration::from_secs(60))
    }
}

/// When a certificate valid over `[not_before, not_after]` (Unix ms) should be renewed: at two
/// thirds of its lifetime, leaving a third for retries if the issuer is away (Let's Encrypt's
/// advice when the CA offers no renewal information).
pub fn renewal_due_at(not_before_ms: i64, not_after_ms: i64) -> i64 {
    let lifetime = not_after_ms.saturating_sub(not_before_ms).max(0);
    not_before_ms.saturating_add(lifetime / 3 * 2)
}

/// How often the panel is asked for its account count: listing accounts is not free on a
/// panel with thousands of them, and the number moves slowly.
pub const PANEL_PROBE_INTERVAL: Duration = Duration::from_secs(60);
/// After a failed probe the panel is asked again soon: one transient error must not keep the
/// server out of placement (which skips unreachable panels) for a whole probe interval.
pub const PANEL_REPROBE_INTERVAL: Duration = Duration::from_secs(5);

/// When to probe the panel next, given whether the last probe reached it.
pub fn next_panel_probe_in(reachable: bool) -> Duration {
    if reachable {
        PANEL_PROBE_INTERVAL
    } else {
        PANEL_REPROBE_INTERVAL
    }
}

/// How long to wait before renewing, from `now_ms`; zero when already due.
pub fn renewal_delay(not_before_ms: i64, not_after_ms: i64, now_ms: i64) -> Duration {
    let due = renewal_due_at(not_before_ms, not_after_ms);
    Duration::from_millis(u64::try_from(due - now_ms).unwrap_or(0))
}

/// How a session ended, as far as the agent can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The controller closed it on purpose (`SessionClosed.code`).
    Closed { code: String, reason: String },
    /// Connect or stream failure; the text is the full error chain.
    Failed(String),
    /// The local certificate is past its expiry; connecting is pointless.
    CertificateExpired,
}

/// What the shell should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Reconnect(Duration),
    /// Stop connecting and wait for a new enrollment (the message is logged once).
    NeedsEnrollment(String),
}

/// Why the controller will never accept this certificate again.
fn needs_enrollment(end: &SessionEnd) -> Option<String> {
    const HINT: &str = "run `mpanel-agent enroll --controller URL --token TOKEN` with a new token";
    match end {
        SessionEnd::CertificateExpired => Some(format!(
            "the agent certificate has expired; this agent needs a new enrollment token: {HINT}"
        )),
        SessionEnd::Closed { code, .. } if code == "revoked" => Some(format!(
            "the controller revoked this agent's certificate; this agent needs a new enrollment token: {HINT}"
        )),
        SessionEnd::Failed(text) => {
            let lower = text.to_ascii_lowercase();
            if lower.contains("certificaterevoked") || lower.contains("certificate revoked") {
                Some(format!(
                    "the controller revoked this agent's certificate; this agent needs a new enrollment token: {HINT}"
                ))
            } else if lower.contains("certificateexpired") || lower.contains("certificate expired")
            {
                Some(format!(
                    "the controller says this agent's certificate has expired; this agent needs a new enrollment token: {HINT}"
                ))
            } else if lower.contains("is not enrolled") || lower.contains("cannot act as server") {
                Some(format!(
                    "the controller refused this agent's identity ({}); this agent needs a new enrollment token: {HINT}",
                    text.lines().next().unwrap_or_default()
                ))
            } else {
                None
            }
        }
        SessionEnd::Closed { .. } => None,
    }
}

/// The reconnect policy: a pure state machine over session outcomes.
#[derive(Debug, Default)]
pub struct Supervisor {
    backoff: Backoff,
}

/// A session that lived this long was healthy; the next failure starts the backoff over.
pub const STABLE_SESSION: Duration = Duration::from_secs(30);

impl Supervisor {
    pub fn new(backoff: Backoff) -> Self {
        Self { backoff }
    }

    pub fn after_session(&mut self, end: &SessionEnd, lasted: Duration, random_unit: f64) -> Next {
        if let Some(message) = needs_enrollment(end) {
            return Next::NeedsEnrollment(message);
        }
        if lasted >= STABLE_SESSION {
            self.backoff.reset();
        }
        // A newer session of ours took over (we were a zombie): do not fight it.
        if matches!(end, SessionEnd::Closed { code, .. } if code == "replaced") {
            return Next::Reconnect(
                self.backoff
                    .next_delay(random_unit)
                    .max(Duration::from_secs(5)),
            );
        }
        Next::Reconnect(self.backoff.next_delay(random_unit))
    }

    /// A new certificate appeared (re-enrollment): connect promptly.
    pub fn reenrolled(&mut self) {
        self.backoff.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_keeps_half_of_it() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let lows: Vec<_> = (0..6).map(|_| b.next_delay(0.0)).collect();
        assert_eq!(
            lows,
            [500, 1000, 2000, 4000, 4000, 4000]
                .map(Duration::from_millis)
                .to_vec()
        );
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        assert_eq!(b.next_delay(0.999_999).as_millis(), 999);
        b.reset();
        assert_eq!(b.attempt(), 0);
    }

    #[test]
    fn jitter_spreads_agents_over_the_window() {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..10 {
            let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(60));
            seen.insert(b.next_delay(f64::from(i) / 10.0).as_millis());
        }
        assert_eq!(seen.len(), 10);
        assert!(seen.iter().all(|ms| (5000..10000).contains(ms)));
    }

    #[test]
    fn renewal_happens_at_two_thirds_of_the_lifetime() {
        assert_eq!(renewal_due_at(0, 30_000), 20_000);
        assert_eq!(renewal_delay(0, 30_000, 5_000), Duration::from_secs(15));
        assert_eq!(renewal_delay(0, 30_000, 25_000), Duration::ZERO);
        let day = 86_400_000;
        assert_eq!(renewal_due_at(1_000, 1_000 + 30 * day), 1_000 + 20 * day);
    }

    #[test]
    fn renewal_time_never_overflows_on_absurd_validity() {
        assert_eq!(renewal_due_at(10, 10), 10);
        assert_eq!(renewal_due_at(10, 0), 10);
        assert!(renewal_due_at(0, i64::MAX) > 0);
        assert_eq!(renewal_delay(0, i64::MAX, i64::MAX), Duration::ZERO);
    }

    #[test]
    fn an_unreachable_panel_is_probed_again_long_before_a_reachable_one() {
        assert_eq!(next_panel_probe_in(true), PANEL_PROBE_INTERVAL);
        assert!(next_panel_probe_in(false) < PANEL_PROBE_INTERVAL / 4);
    }

    #[test]
    fn transport_failures_retry_with_growing_delays() {
        let mut s = Supervisor::new(Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(60),
        ));
        let end = SessionEnd::Failed("connection refused".into());
        let a = s.after_session(&end, Duration::ZERO, 0.0);
        let b = s.after_session(&end, Duration::ZERO, 0.0);
        assert_eq!(a, Next::Reconnect(Duration::from_millis(500)));
        assert_eq!(b, Next::Reconnect(Duration::from_secs(1)));
        // A long healthy session resets the backoff.
        let c = s.after_session(&end, STABLE_SESSION, 0.0);
        assert_eq!(c, Next::Reconnect(Duration::from_millis(500)));
    }

    #[test]
    fn revoked_or_expired_certificates_stop_reconnecting() {
        let mut s = Supervisor::default();
        for end in [
            SessionEnd::CertificateExpired,
            SessionEnd::Closed {
                code: "revoked".into(),
                reason: String::new(),
            },
            SessionEnd::Failed("transport error: received fatal alert: CertificateRevoked".into()),
            SessionEnd::Failed("received fatal alert: CertificateExpired".into()),
        ] {
            match s.after_session(&end, Duration::ZERO, 0.5) {
                Next::NeedsEnrollment(msg) => {
                    assert!(msg.contains("needs a new enrollment token"), "{msg}");
                }
                other => panic!("{end:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn a_replaced_session_waits_before_coming_back() {
        let mut s = Supervisor::default();
        let end = SessionEnd::Closed {
            code: "replaced".into(),
            reason: String::new(),
        };
        let Next::Reconnect(d) = s.after_session(&end, Duration::ZERO, 0.0) else {
            panic!()
        };
        assert!(d >= Duration::from_secs(5));
        let shutdown = SessionEnd::Closed {
            code: "shutdown".into(),
            reason: String::new(),
        };
        assert!(matches!(
            s.after_session(&shutdown, Duration::ZERO, 0.0),
            Next::Reconnect(_)
        ));
    }
}
