//! The fixed hosting plans each simulated panel knows, and the simulated server's addresses.
//!
//! The plan names match the defaults mpanel's products use (`packages.cpanel = "default"`,
//! `plesk = "Unlimited"`, `directadmin = "default"`, see CONTRACT.md). They are fixed in code:
//! the simulator does not implement `addpkg` or service-plan management.

use crate::SimKind;

/// The simulated server's shared IPv4 address (TEST-NET-1).
pub(crate) const SERVER_IP: &str = "192.0.2.10";
/// Host name reported by the simulated panels.
pub(crate) const HOSTNAME: &str = "panelsim.test";
pub(crate) const NAMESERVERS: [&str; 2] = ["ns1.panelsim.test", "ns2.panelsim.test"];

/// One hosting plan. `None` limits mean unlimited.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    pub name: &'static str,
    pub quota_mb: Option<u64>,
    pub bandwidth_mb: Option<u64>,
    pub max_pop: Option<u64>,
    pub max_sql: Option<u64>,
    pub max_ftp: Option<u64>,
    pub max_sub: Option<u64>,
    pub max_park: Option<u64>,
    pub max_addon: Option<u64>,
    pub max_email_per_hour: Option<u64>,
}

const UNLIMITED: Plan = Plan {
    name: "",
    quota_mb: None,
    bandwidth_mb: None,
    max_pop: None,
    max_sql: None,
    max_ftp: None,
    max_sub: None,
    max_park: None,
    max_addon: None,
    max_email_per_hour: None,
};

const STARTER: Plan = Plan {
    name: "starter",
    quota_mb: Some(1024),
    bandwidth_mb: Some(10240),
    max_pop: Some(5),
    max_sql: Some(2),
    max_ftp: Some(2),
    max_sub: Some(5),
    max_park: Some(1),
    max_addon: Some(0),
    max_email_per_hour: Some(100),
};

const BUSINESS: Plan = Plan {
    name: "business",
    quota_mb: Some(10240),
    bandwidth_mb: None,
    max_pop: Some(50),
    max_sql: Some(20),
    max_ftp: Some(10),
    max_sub: Some(25),
    max_park: Some(5),
    max_addon: Some(5),
    max_email_per_hour: Some(500),
};

const CPANEL_PLANS: [Plan; 3] = [
    Plan {
        name: "default",
        ..UNLIMITED
    },
    STARTER,
    BUSINESS,
];
const DIRECTADMIN_PLANS: [Plan; 3] = [
    Plan {
        name: "default",
        ..UNLIMITED
    },
    STARTER,
    BUSINESS,
];
const PLESK_PLANS: [Plan; 2] = [
    Plan {
        name: "Default Domain",
        ..STARTER
    },
    Plan {
        name: "Unlimited",
        ..UNLIMITED
    },
];

pub(crate) fn plans(kind: SimKind) -> &'static [Plan] {
    match kind {
        SimKind::Cpanel => &CPANEL_PLANS,
        SimKind::Plesk => &PLESK_PLANS,
        SimKind::Directadmin => &DIRECTADMIN_PLANS,
    }
}

/// Plan names are matched exactly (case-sensitive), as the panels store them.
pub(crate) fn plan(kind: SimKind, name: &str) -> Option<&'static Plan> {
    plans(kind).iter().find(|p| p.name == name)
}

/// `Some(n)` as a string, `None` as `"unlimited"`: the panels' string-typed limits.
pub(crate) fn limit_str(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
}
