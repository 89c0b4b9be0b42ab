//! Choosing the server for a new service: the least-loaded eligible one.
//!
//! Eligible: status `active` (not draining or disabled), in the product's server group, its
//! agent connected and `online`, its panel reachable, and fewer live services than
//! `max_accounts`. Score (lower is better), each term in 0..=1:
//!
//! `0.6 × accounts/max_accounts + 0.25 × disk used fraction + 0.15 × min(load1/cpus, 1)`
//!
//! Accounts against capacity dominate, because that is the limit an operator sets; disk and CPU
//! break ties between equally full servers. The count is the server's `live_services`, kept by
//! the database as services change; assigning the service (`ServiceStore::assign_server`) raises
//! it under the server's row lock and is refused past `max_accounts`, so two placements racing
//! for the last slot cannot both take it.

use mpanel_common::status::AgentStatus;

use crate::fleet::LoadReport;
use crate::store::PlacementCandidate;

/// Why no server could be chosen, for the task's visible `wait_reason`.
pub fn no_server_reason(group: &str, considered: usize) -> String {
    if considered == 0 {
        format!("waiting for a server: no active server in group '{group}'")
    } else {
        format!(
            "waiting for a server: none of the {considered} active server(s) in group '{group}' \
             has room and a connected, online agent"
        )
    }
}

pub fn score(candidate: &PlacementCandidate, load: Option<&LoadReport>) -> f64 {
    let capacity = f64::from(candidate.server.max_accounts.max(1));
    let accounts = candidate.live_services as f64 / capacity;
    let (disk, cpu) = match load {
        Some(l) => {
            let disk = if l.disk_total_bytes == 0 {
                0.0
            } else {
                1.0 - l.disk_free_bytes as f64 / l.disk_total_bytes as f64
            };
            let cpu = (l.load1 / f64::from(l.cpu_count.max(1))).min(1.0);
            (disk, cpu)
        }
        None => (0.0, 0.0),
    };
    0.6 * accounts + 0.25 * disk + 0.15 * cpu
}

/// Eligible candidates, best first. `live` gives an agent's status and load by server.
pub fn rank(
    candidates: &[PlacementCandidate],
    live: impl Fn(&PlacementCandidate) -> Option<(AgentStatus, Option<LoadReport>)>,
) -> Vec<&PlacementCandidate> {
    let mut eligible: Vec<(f64, &PlacementCandidate)> = candidates
        .iter()
        .filter(|c| c.live_services < i64::from(c.server.max_accounts))
        .filter_map(|c| {
            let (status, load) = live(c)?;
            if status != AgentStatus::Online || load.as_ref().is_some_and(|l| !l.panel_reachable) {
                return None;
            }
            Some((score(c, load.as_ref()), c))
        })
        .collect();
    eligible.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.server.id.cmp(&b.1.server.id)));
    eligible.into_iter().map(|(_, c)| c).collect()
}

#[cfg(test)]
mod tests {
    use mpanel_common::status::ServerStatus;
    use mpanel_common::username::PanelKind;

    use super::*;
    use crate::store::Server;

    fn candidate(id: i64, live: i64, max: i32) -> PlacementCandidate {
        PlacementCandidate {
            server: Server {
                id: id.into(),
                hostname: format!("s{id}"),
                ip_address: "192.0.2.1".into(),
                control_panel: PanelKind::Cpanel,
                control_panel_url: String::new(),
                max_accounts: max,
                status: ServerStatus::Active,
                location: String::new(),
                server_group: "g".into(),
                nameserver1: String::new(),
                nameserver2: String::new(),
                dns_provider: mpanel_common::status::DnsProvider::Panel,
                ssl_provider: mpanel_common::status::SslProvider::Acme,
                created_at: 0,
                updated_at: 0,
            },
            live_services: live,
        }
    }

    fn load(load1: f64, disk_free: u64, reachable: bool) -> LoadReport {
        LoadReport {
            load1,
            load5: 0.0,
            load15: 0.0,
            cpu_count: 2,
            memory_total_bytes: 1,
            memory_available_bytes: 1,
            disk_total_bytes: 100,
            disk_free_bytes: disk_free,
            inodes_total: 1,
            inodes_free: 1,
            account_count: 0,
            panel_reachable: reachable,
            agent_version: String::new(),
            certificate_not_after_ms: 0,
        }
    }

    #[test]
    fn the_emptiest_server_wins_and_full_or_offline_ones_are_skipped() {
        let candidates = [
            candidate(1, 90, 100),
            candidate(2, 10, 100),
            candidate(3, 5, 5),
            candidate(4, 0, 100),
        ];
        let ranked = rank(&candidates, |c| match c.server.id.get() {
            4 => Some((AgentStatus::Offline, None)),
            _ => Some((AgentStatus::Online, Some(load(0.1, 50, true)))),
        });
        let ids: Vec<i64> = ranked.iter().map(|c| c.server.id.get()).collect();
        assert_eq!(ids, [2, 1], "3 is full, 4 is offline");
    }

    #[test]
    fn disk_and_cpu_break_ties_between_equally_full_servers() {
        let candidates = [candidate(1, 10, 100), candidate(2, 10, 100)];
        let ranked = rank(&candidates, |c| match c.server.id.get() {
            1 => Some((AgentStatus::Online, Some(load(2.0, 10, true)))),
            _ => Some((AgentStatus::Online, Some(load(0.0, 90, true)))),
        });
        assert_eq!(ranked[0].server.id.get(), 2);
    }

    #[test]
    fn a_server_whose_panel_is_unreachable_or_agent_unknown_is_not_eligible() {
        let candidates = [candidate(1, 0, 100), candidate(2, 0, 100)];
        let ranked = rank(&candidates, |c| match c.server.id.get() {
            1 => Some((AgentStatus::Online, Some(load(0.0, 90, false)))),
            _ => None,
        });
        assert!(ranked.is_empty());
    }
}
