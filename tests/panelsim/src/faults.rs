//! Failure injection: scripted one-shot faults and the seeded random fail rate.
//!
//! This module only decides *whether* and *which* fault applies to a call; the panel modules
//! decide what that fault looks like on the wire (each panel has its own auth error, 5xx shape
//! and duplicate-object error).

use std::str::FromStr;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};

/// What a scripted fault does to the matching call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with the panel's authentication error, even with a good token.
    AuthFailure,
    /// Hold the request for 30 s (or until shutdown), then answer 504; nothing changes.
    Timeout,
    /// HTTP 500 in the panel's error shape; nothing changes.
    ServerError,
    /// The panel's "already exists" error for this call, without doing anything.
    AlreadyExists,
    /// Do the call (e.g. create the account), then answer with the failure envelope anyway.
    PartialSuccess,
}

impl FaultKind {
    /// The snake_case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::AuthFailure => "auth_failure",
            FaultKind::Timeout => "timeout",
            FaultKind::ServerError => "server_error",
            FaultKind::AlreadyExists => "already_exists",
            FaultKind::PartialSuccess => "partial_success",
        }
    }
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auth_failure" => Ok(FaultKind::AuthFailure),
            "timeout" => Ok(FaultKind::Timeout),
            "server_error" => Ok(FaultKind::ServerError),
            "already_exists" => Ok(FaultKind::AlreadyExists),
            "partial_success" => Ok(FaultKind::PartialSuccess),
            other => Err(format!("unknown fault kind '{other}'")),
        }
    }
}

/// A fault armed for the next `times` API calls whose target contains `path_contains`.
///
/// The target is the request path, `?`, the query string and, for form-encoded bodies, `&` and
/// the body: so `"createacct"`, `"CMD_API_ACCOUNT_USER"`, `"/api/v2/clients"` and
/// `"cpanel.function=add_pop"` all work. `None` matches every API call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScriptedFault {
    pub kind: FaultKind,
    #[serde(default)]
    pub path_contains: Option<String>,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

impl ScriptedFault {
    /// A fault for the next single API call, whatever its path.
    pub fn once(kind: FaultKind) -> Self {
        ScriptedFault {
            kind,
            path_contains: None,
            times: 1,
        }
    }

    /// A fault for the next `times` calls whose target contains `path_contains`.
    pub fn on(kind: FaultKind, path_contains: impl Into<String>, times: u32) -> Self {
        ScriptedFault {
            kind,
            path_contains: Some(path_contains.into()),
            times,
        }
    }
}

/// Scripted faults in arrival order, plus the seeded RNG behind `fail_rate`.
pub(crate) struct FaultPlan {
    scripted: Vec<ScriptedFault>,
    rng: StdRng,
    fail_rate: f64,
}

impl FaultPlan {
    pub(crate) fn new(seed: u64, fail_rate: f64) -> Self {
        FaultPlan {
            scripted: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
            fail_rate,
        }
    }

    /// Arm a fault. `times == 0` arms nothing.
    pub(crate) fn push(&mut self, fault: ScriptedFault) {
        if fault.times > 0 {
            self.scripted.push(fault);
        }
    }

    /// The first armed fault matching `target`, used up by one.
    pub(crate) fn take_scripted(&mut self, target: &str) -> Option<FaultKind> {
        let index = self.scripted.iter().position(|f| {
            f.path_contains
                .as_deref()
                .is_none_or(|needle| target.contains(needle))
        })?;
        let fault = &mut self.scripted[index];
        let kind = fault.kind;
        fault.times -= 1;
        if fault.times == 0 {
            self.scripted.remove(index);
        }
        Some(kind)
    }

    /// Draw once against `fail_rate`. Draws only when the rate is non-zero, so a given seed and
    /// call sequence always fail the same calls.
    pub(crate) fn roll_transient(&mut self) -> bool {
        self.fail_rate > 0.0 && self.rng.random::<f64>() < self.fail_rate
    }

    pub(crate) fn pending(&self) -> &[ScriptedFault] {
        &self.scripted
    }

    pub(crate) fn clear(&mut self) {
        self.scripted.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_fault_fires_only_on_matching_targets_and_only_n_times() {
        let mut plan = FaultPlan::new(0, 0.0);
        plan.push(ScriptedFault::on(
            FaultKind::PartialSuccess,
            "createacct",
            2,
        ));
        assert_eq!(
            plan.take_scripted("/json-api/listaccts?api.version=1"),
            None
        );
        assert_eq!(
            plan.take_scripted("/json-api/createacct?api.version=1"),
            Some(FaultKind::PartialSuccess)
        );
        assert_eq!(
            plan.take_scripted("/json-api/createacct"),
            Some(FaultKind::PartialSuccess)
        );
        assert_eq!(plan.take_scripted("/json-api/createacct"), None);
        assert!(plan.pending().is_empty());
    }

    #[test]
    fn zero_times_arms_nothing() {
        let mut plan = FaultPlan::new(0, 0.0);
        plan.push(ScriptedFault {
            kind: FaultKind::Timeout,
            path_contains: None,
            times: 0,
        });
        assert_eq!(plan.take_scripted("/anything"), None);
    }

    #[test]
    fn fail_rate_is_deterministic_for_a_seed() {
        let draws = |seed| {
            let mut plan = FaultPlan::new(seed, 0.5);
            (0..32).map(|_| plan.roll_transient()).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert!(draws(7).iter().any(|f| *f) && draws(7).iter().any(|f| !*f));
        let mut never = FaultPlan::new(1, 0.0);
        assert!((0..100).all(|_| !never.roll_transient()));
    }

    #[test]
    fn wire_format_is_snake_case_kind_and_camel_case_fields() {
        let fault: ScriptedFault = serde_json::from_str(
            r#"{"kind":"partial_success","pathContains":"createacct","times":1}"#,
        )
        .unwrap();
        assert_eq!(
            fault,
            ScriptedFault::on(FaultKind::PartialSuccess, "createacct", 1)
        );
        let default_times: ScriptedFault = serde_json::from_str(r#"{"kind":"timeout"}"#).unwrap();
        assert_eq!(default_times, ScriptedFault::once(FaultKind::Timeout));
        assert_eq!(
            "server_error".parse::<FaultKind>(),
            Ok(FaultKind::ServerError)
        );
    }
}
