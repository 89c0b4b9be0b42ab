//! Agent liveness. The latest heartbeat of every agent lives in memory; a flusher writes the
//! changed ones to the store in one transaction every few seconds, and a sweeper marks agents
//! `suspect` after missed beats and `offline` after the TTL.
//!
//! Liveness is only a report: nothing here touches a host's accounts. A reconnecting agent goes
//! back to `online` and that is all (operators of other fleets lost sites to "node came back,
//! reschedule everything").

use std::collections::HashMap;

use mpanel_common::ids::ServerId;
use mpanel_common::status::AgentStatus;

use crate::store::{AgentLiveness, AgentRow};

/// The load an agent last reported, as persisted in `agents.last_load` and shown by the API.
pub use mpanel_common::load::LoadReport;

#[derive(Debug, Clone)]
pub struct Liveness {
    pub status: AgentStatus,
    pub last_beat_ms: Option<i64>,
    pub load: Option<LoadReport>,
    /// Changed since the last flush.
    dirty: bool,
}

/// Liveness thresholds in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub suspect_ms: i64,
    pub offline_ms: i64,
}

/// The in-memory table. Plain data and pure transitions; the fleet wraps it in a mutex and
/// drives it from the session handlers and background tasks.
#[derive(Debug, Default)]
pub struct LivenessTable {
    agents: HashMap<ServerId, Liveness>,
}

impl LivenessTable {
    /// Seeds the table from the store at start-up, so agents that were online when the previous
    /// controller stopped are swept to suspect/offline if they do not come back.
    pub fn seed(&mut self, rows: &[AgentRow]) {
        for row in rows {
            let Ok(status) = row.status.parse::<AgentStatus>() else {
                continue;
            };
            let load = row
                .last_load
                .as_ref()
                .and_then(|j| serde_json::from_value::<LoadReport>(j.0.clone()).ok());
            self.agents.insert(
                row.server_id,
                Liveness {
                    status,
                    last_beat_ms: row.last_heartbeat_at,
                    load,
                    dirty: false,
                },
            );
        }
    }

    pub fn get(&self, server_id: ServerId) -> Option<&Liveness> {
        self.agents.get(&server_id)
    }

    /// A beat (or a Hello) from the agent: it is online now.
    pub fn beat(&mut self, server_id: ServerId, now_ms: i64, load: Option<LoadReport>) {
        let entry = self.agents.entry(server_id).or_insert(Liveness {
            status: AgentStatus::Pending,
            last_beat_ms: None,
            load: None,
            dirty: true,
        });
        if entry.status != AgentStatus::Online
            && entry.status.can_transition_to(AgentStatus::Online)
        {
            entry.status = AgentStatus::Online;
        }
        entry.last_beat_ms = Some(now_ms);
        if load.is_some() {
            entry.load = load;
        }
        entry.dirty = true;
    }

    /// A new enrollment: the agent starts over as `pending`.
    pub fn enrolled(&mut self, server_id: ServerId) {
        self.agents.insert(
            server_id,
            Liveness {
                status: AgentStatus::Pending,
                last_beat_ms: None,
                load: None,
                dirty: false,
            },
        );
    }

    pub fn revoked(&mut self, server_id: ServerId) {
        if let Some(entry) = self.agents.get_mut(&server_id) {
            entry.status = AgentStatus::Revoked;
            entry.dirty = false;
        }
    }

    pub fn remove(&mut self, server_id: ServerId) {
        self.agents.remove(&server_id);
    }

    /// Applies the thresholds; returns the agents that just went offline (their sessions, if
    /// any are left half-open, are closed by the caller).
    pub fn sweep(&mut self, now_ms: i64, t: Thresholds) -> Vec<ServerId> {
        let mut went_offline = Vec::new();
        for (server_id, entry) in &mut self.agents {
            let Some(last) = entry.last_beat_ms else {
                continue;
            };
            let silent = now_ms - last;
            let next = if silent >= t.offline_ms {
                AgentStatus::Offline
            } else if silent >= t.suspect_ms {
                AgentStatus::Suspect
            } else {
                continue;
            };
            if entry.status != next && entry.status.can_transition_to(next) {
                entry.status = next;
                entry.dirty = true;
                if next == AgentStatus::Offline {
                    went_offline.push(*server_id);
                }
            }
        }
        went_offline
    }

    /// The changed rows since the last call, marking them clean.
    pub fn take_dirty(&mut self) -> Vec<AgentLiveness> {
        self.agents
            .iter_mut()
            .filter(|(_, e)| e.dirty)
            .map(|(server_id, e)| {
                e.dirty = false;
                AgentLiveness {
                    server_id: *server_id,
                    status: e.status.as_str().to_owned(),
                    last_heartbeat_at: e.last_beat_ms,
                    last_load: e.load.as_ref().and_then(|l| serde_json::to_value(l).ok()),
                }
            })
            .collect()
    }

    /// Puts rows back after a failed flush, so the next flush retries them.
    pub fn mark_dirty(&mut self, rows: &[AgentLiveness]) {
        for row in rows {
            if let Some(e) = self.agents.get_mut(&row.server_id) {
                e.dirty = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        suspect_ms: 30_000,
        offline_ms: 90_000,
    };

    #[test]
    fn silence_makes_an_agent_suspect_then_offline_and_a_beat_brings_it_back() {
        let mut table = LivenessTable::default();
        let id = ServerId::new(7);
        table.beat(id, 0, None);
        assert_eq!(table.get(id).unwrap().status, AgentStatus::Online);
        assert!(table.sweep(29_999, T).is_empty());
        assert_eq!(table.get(id).unwrap().status, AgentStatus::Online);
        table.sweep(30_000, T);
        assert_eq!(table.get(id).unwrap().status, AgentStatus::Suspect);
        assert_eq!(table.sweep(90_000, T), vec![id]);
        assert_eq!(table.get(id).unwrap().status, AgentStatus::Offline);
        assert!(
            table.sweep(200_000, T).is_empty(),
            "offline is reported once"
        );
        table.beat(id, 200_001, None);
        assert_eq!(table.get(id).unwrap().status, AgentStatus::Online);
    }

    #[test]
    fn only_changed_rows_are_flushed() {
        let mut table = LivenessTable::default();
        table.beat(ServerId::new(1), 0, None);
        table.beat(ServerId::new(2), 0, None);
        assert_eq!(table.take_dirty().len(), 2);
        assert!(table.take_dirty().is_empty());
        table.beat(ServerId::new(2), 10, None);
        let rows = table.take_dirty();
        assert_eq!(rows.len(), 1);
        table.mark_dirty(&rows);
        assert_eq!(table.take_dirty().len(), 1);
    }

    #[test]
    fn revoked_agents_are_not_revived_by_the_sweeper_or_beats() {
        let mut table = LivenessTable::default();
        let id = ServerId::new(3);
        table.beat(id, 0, None);
        table.revoked(id);
        table.sweep(1_000_000, T);
        table.beat(id, 1_000_001, None);
        assert_eq!(table.get(id).unwrap().status, AgentStatus::Revoked);
    }
}
