//! [`LoadReport`], what an agent reports in each heartbeat: the host's load and the state of its
//! panel. The agent fills it, `mpanel_proto::convert` carries it, the controller keeps the last
//! one per agent (`agents.last_load`, camelCase JSON) and places new services by it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadReport {
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    pub cpu_count: u32,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    /// The partition holding the accounts.
    pub disk_total_bytes: u64,
    pub disk_free_bytes: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
    pub account_count: u32,
    pub panel_reachable: bool,
    pub agent_version: String,
    /// When the agent's client certificate expires, Unix milliseconds.
    pub certificate_not_after_ms: i64,
}
