//! `mpanel-agent status`: where this agent stands, read from its state directory alone (it
//! never contacts the controller). [`report`] gathers the facts; [`render`] turns them into the
//! lines printed, with the clock passed in, so the wording is tested without files or time.

use std::path::Path;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::AgentConfig;
use crate::session::cert_validity;
use crate::state::{Enrollment, SessionStatus, StateDir, StateError};

/// Everything the status lines are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusFacts {
    pub enrollment: Enrollment,
    /// The configured controller, or the enrolled one.
    pub controller: String,
    /// Validity of the stored certificate (Unix ms), when it is there and readable.
    pub certificate: Option<(i64, i64)>,
    /// What the running agent last recorded, and whether that process is still alive.
    pub session: Option<(SessionStatus, bool)>,
    pub state_dir: String,
}

/// Reads the facts from `state`; fails only when the agent is not enrolled.
pub fn report(config: &AgentConfig, state: &StateDir) -> Result<StatusFacts, StateError> {
    let enrollment = state.enrollment()?;
    let controller = config
        .controller
        .clone()
        .unwrap_or_else(|| enrollment.controller.clone());
    let certificate = state.read_cert().ok().as_deref().and_then(cert_validity);
    let session = state.status().map(|s| {
        let alive = Path::new(&format!("/proc/{}", s.pid)).exists();
        (s, alive)
    });
    Ok(StatusFacts {
        enrollment,
        controller,
        certificate,
        session,
        state_dir: state.dir().display().to_string(),
    })
}

/// The status lines as of `now_ms`, without a trailing newline.
pub fn render(facts: &StatusFacts, now_ms: i64) -> String {
    let when = |ms| when(ms, now_ms);
    let mut lines = vec![
        format!(
            "enrollment:  server {} (enrolled {})",
            facts.enrollment.server_id,
            when(facts.enrollment.enrolled_at_ms)
        ),
        format!("controller:  {}", facts.controller),
    ];
    lines.push(match facts.certificate {
        Some((_, not_after)) if not_after <= now_ms => format!(
            "certificate: EXPIRED {}; this agent needs a new enrollment token",
            when(not_after)
        ),
        Some((_, not_after)) => format!("certificate: expires {}", when(not_after)),
        None => format!("certificate: missing or unreadable in {}", facts.state_dir),
    });
    lines.push(match &facts.session {
        Some((s, true)) => format!(
            "connection:  {} since {} ({})",
            s.state,
            when(s.since_ms),
            s.detail
        ),
        Some((s, false)) => format!(
            "connection:  agent not running (last: {} {})",
            s.state,
            when(s.since_ms)
        ),
        None => "connection:  agent not running".to_owned(),
    });
    lines.join("\n")
}

/// `2026-11-25T08:30:00Z (in 3d)` or `… (5m ago)`.
fn when(ms: i64, now_ms: i64) -> String {
    let date = OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms after the epoch"));
    let secs = (ms - now_ms) / 1000;
    if secs >= 0 {
        format!("{date} (in {})", span(secs))
    } else {
        format!("{date} ({} ago)", span(-secs))
    }
}

/// The largest whole unit: `3d`, `5h`, `12m`, `40s`.
fn span(secs: i64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_595_400_000; // 2026-11-25T08:30:00Z
    const DAY: i64 = 86_400_000;

    fn facts() -> StatusFacts {
        StatusFacts {
            enrollment: Enrollment {
                server_id: 7,
                controller: "https://enrolled.example.net:7443".into(),
                ca_fingerprint: "ab".into(),
                enrolled_at_ms: NOW - 2 * DAY,
            },
            controller: "https://controller.example.net:7443".into(),
            certificate: Some((NOW - 2 * DAY, NOW + 28 * DAY)),
            session: Some((
                SessionStatus {
                    state: "connected".into(),
                    since_ms: NOW - 90_000,
                    detail: "https://controller.example.net:7443".into(),
                    pid: 1,
                },
                true,
            )),
            state_dir: "/var/lib/mpanel-agent".into(),
        }
    }

    #[test]
    fn times_are_rfc3339_utc_with_a_relative_span() {
        assert_eq!(when(NOW, NOW), "2026-11-25T08:30:00Z (in 0s)");
        assert_eq!(when(NOW + 3 * DAY, NOW), "2026-11-28T08:30:00Z (in 3d)");
        assert_eq!(when(NOW - 5 * 60_000, NOW), "2026-11-25T08:25:00Z (5m ago)");
        // Leap day and a date before the epoch, where hand-made calendar code goes wrong.
        assert_eq!(
            when(951_782_400_000, NOW).get(..20),
            Some("2000-02-29T00:00:00Z")
        );
        assert_eq!(when(-1_000, 0), "1969-12-31T23:59:59Z (1s ago)");
    }

    #[test]
    fn a_healthy_agent_reports_every_line() {
        let text = render(&facts(), NOW);
        assert_eq!(
            text,
            "enrollment:  server 7 (enrolled 2026-11-23T08:30:00Z (2d ago))\n\
             controller:  https://controller.example.net:7443\n\
             certificate: expires 2026-12-23T08:30:00Z (in 28d)\n\
             connection:  connected since 2026-11-25T08:28:30Z (1m ago) (https://controller.example.net:7443)"
        );
    }

    #[test]
    fn an_expired_certificate_and_a_dead_process_are_said_plainly() {
        let mut f = facts();
        f.certificate = Some((NOW - 30 * DAY, NOW - DAY));
        f.session.as_mut().unwrap().1 = false;
        let text = render(&f, NOW);
        assert!(
            text.contains("certificate: EXPIRED 2026-11-24T08:30:00Z (1d ago); this agent needs a new enrollment token"),
            "{text}"
        );
        assert!(
            text.contains("connection:  agent not running (last: connected"),
            "{text}"
        );
        f.certificate = None;
        f.session = None;
        let text = render(&f, NOW);
        assert!(
            text.contains("certificate: missing or unreadable in /var/lib/mpanel-agent"),
            "{text}"
        );
        assert!(text.ends_with("connection:  agent not running"), "{text}");
    }
}
